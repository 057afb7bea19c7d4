//! A workload for the crash test: runs the real engine on a data directory and drives
//! concurrent authorizations across a few shared accounts, printing `ACK <account> <id>
//! <amount>` for every approval it was answered (answers come only once durable). The crash
//! test kills it with SIGKILL at random points and checks what survived.
//!
//! With a fourth argument `report-syncs` it also prints `SYNCED <index>` each time an
//! fdatasync of the log returns (before any answer that depends on it), and, each time a
//! checkpoint is durable (before the log may be purged up to it and before the next one
//! writes), copies sled's files to `<data-dir>/checkpoint-copy` and prints `CHECKPOINT
//! <index>`: what a power cut would leave of sled, for the power-cut test.
//!
//! Usage: `tandem-crash-worker <data-dir> <run> <accounts> [report-syncs]`

use std::io::Write;
use std::sync::Arc;
use tandem_actors::{AccountSystem, SystemConfig};
use tandem_core::testkit::{auth, card, good_expiry, member, money, spend, standard_rates};
use tandem_core::{
    AccountId, AccountKind, Actor, Command, CommandBody, IdempotencyKey, Outcome, Role,
};
use tandem_storage::{Engine, EngineConfig};

fn command(key: String, actor: Actor, body: CommandBody) -> Command {
    Command::new(IdempotencyKey::new(&key).expect("key"), actor, body)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(&args[1]);
    let run: u64 = args[2].parse().expect("run number");
    let accounts: usize = args[3].parse().expect("account count");
    // Frequent checkpoints (every 200 entries or 100 ms): each writes sled, fsyncs it and lets
    // the log be purged, so restarts stay quick and kills also land around checkpoints and
    // purges.
    let report_syncs = args.get(4).is_some_and(|a| a == "report-syncs");
    let stdout = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let sync_observer: Option<tandem_storage::log_store::SyncObserver> = report_syncs.then(|| {
        let stdout = stdout.clone();
        Arc::new(move |index: u64| {
            let mut out = stdout.lock().unwrap_or_else(|p| p.into_inner());
            writeln!(out, "SYNCED {index}").ok();
            out.flush().ok();
        }) as tandem_storage::log_store::SyncObserver
    });
    let checkpoint_observer: Option<tandem_storage::checkpoint::CheckpointObserver> = report_syncs
        .then(|| {
            let stdout = stdout.clone();
            let dir = dir.clone();
            Arc::new(move |index: u64| {
                tandem_tests::power::save_checkpoint_copy(&dir).expect("copy sled's files");
                let mut out = stdout.lock().unwrap_or_else(|p| p.into_inner());
                writeln!(out, "CHECKPOINT {index}").ok();
                out.flush().ok();
            }) as tandem_storage::checkpoint::CheckpointObserver
        });
    let engine_config = EngineConfig {
        snapshot_every_entries: 200,
        checkpoint_every: std::time::Duration::from_millis(100),
        sync_observer,
        checkpoint_observer,
        ..EngineConfig::new(&dir)
    };
    let started = std::time::Instant::now();
    let engine = Engine::open(engine_config).await.expect("engine opens");
    eprintln!("engine open in {:.1?}", started.elapsed());
    let config = SystemConfig {
        snapshot_every_events: 64,
        snapshot_events_per_record: 1,
        ..SystemConfig::default()
    };
    let system = AccountSystem::start(engine, config, standard_rates())
        .await
        .expect("system starts");
    for a in 0..accounts {
        let account = AccountId::new(&format!("acct-{a}")).expect("id");
        let setup = [
            CommandBody::OpenAccount {
                kind: AccountKind::Joint,
            },
            CommandBody::AddMember {
                member: member("owner"),
                role: Role::Owner,
            },
            CommandBody::IssueCard {
                card: card(&format!("card-{a}")),
                member: member("owner"),
                expiry: good_expiry(),
            },
            CommandBody::Deposit {
                member: member("owner"),
                amount: money(1_000_000_000, "EUR"),
            },
        ];
        // Fixed keys: after a restart these are answered from the recorded outcomes.
        for (i, body) in setup.into_iter().enumerate() {
            system
                .execute(
                    &account,
                    command(format!("setup-{i}"), Actor::Platform, body),
                )
                .await
                .expect("setup");
        }
    }
    {
        let mut out = stdout.lock().unwrap_or_else(|p| p.into_inner());
        writeln!(out, "READY").ok();
        out.flush().ok();
    }
    let mut tasks = Vec::new();
    for worker in 0..32u64 {
        let system = system.clone();
        let stdout = stdout.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                n += 1;
                let a = ((worker * 7919 + n) as usize) % accounts;
                let account = AccountId::new(&format!("acct-{a}")).expect("id");
                let id = format!("r{run}-w{worker}-n{n}");
                let amount = 100 + (n % 50) as i64;
                let body = CommandBody::Authorize {
                    authorization: auth(&id),
                    spend: spend(&format!("card-{a}"), money(amount, "EUR")),
                    single_message: false,
                };
                if let Ok(Outcome::Approved { .. }) = system
                    .execute(&account, command(format!("k-{id}"), Actor::Network, body))
                    .await
                {
                    let mut out = stdout.lock().expect("stdout");
                    writeln!(out, "ACK acct-{a} {id} {amount}").ok();
                    out.flush().ok();
                }
            }
        }));
    }
    for task in tasks {
        task.await.ok();
    }
}
