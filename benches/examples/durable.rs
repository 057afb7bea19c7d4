//! In-process, durable (fdatasync'd group commit) authorization throughput and latency: the
//! real engine and account actors, no network.
//!
//! ```text
//! cargo run --release -p tandem-benches --example durable -- \
//!     [--accounts 10000] [--concurrency 512] [--seconds 10] [--rate 0] [--data DIR] \
//!     [--financial true] [--writes-in-flight 4] [--checkpoint-ms 1000]
//! ```
//!
//! `--rate 0` runs closed-loop (`--concurrency` callers, each waiting for its answer) to find
//! the maximum; `--rate N` runs open-loop: requests are scheduled at N per second (Poisson
//! arrivals) and latency is measured from the scheduled time, so a stall shows up in the
//! percentiles. Prints throughput, latency percentiles, and fdatasyncs per answered request.

/// The engine runs under the `tandem` binary's allocator, so it is measured under it too:
/// glibc's malloc spent a tenth of this benchmark zeroing fresh pages and growing its heap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use hdrhistogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tandem_actors::{AccountSystem, SystemConfig};
use tandem_core::testkit::{auth, card, good_expiry, member, money, spend, standard_rates};
use tandem_core::{
    AccountId, AccountKind, Actor, Command, CommandBody, IdempotencyKey, Outcome, Role,
};
use tandem_storage::{Engine, EngineConfig};

struct Options {
    accounts: usize,
    concurrency: usize,
    seconds: u64,
    rate: u64,
    data: Option<std::path::PathBuf>,
    /// Single-message (0200) spends, which post at once: a hot account's holds would
    /// otherwise pile up to the open-hold bound.
    financial: bool,
    /// Log writes handed to openraft at once (the engine's `writes_in_flight_max`).
    writes_in_flight: Option<usize>,
    /// Time between checkpoints (the engine's `checkpoint_every`), in milliseconds.
    checkpoint_ms: Option<u64>,
}

fn options() -> Options {
    let mut options = Options {
        accounts: 10_000,
        concurrency: 512,
        seconds: 10,
        rate: 0,
        data: None,
        financial: false,
        writes_in_flight: None,
        checkpoint_ms: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).cloned().unwrap_or_default();
        match pair[0].as_str() {
            "--accounts" => options.accounts = value.parse().expect("--accounts N"),
            "--concurrency" => options.concurrency = value.parse().expect("--concurrency N"),
            "--seconds" => options.seconds = value.parse().expect("--seconds N"),
            "--rate" => options.rate = value.parse().expect("--rate N"),
            "--data" => options.data = Some(value.into()),
            "--financial" => options.financial = value == "true",
            "--checkpoint-ms" => {
                options.checkpoint_ms = Some(value.parse().expect("--checkpoint-ms N"))
            }
            "--writes-in-flight" => {
                options.writes_in_flight = Some(value.parse().expect("--writes-in-flight N"))
            }
            other => panic!("unknown option {other}"),
        }
    }
    options
}

fn command(key: String, actor: Actor, body: CommandBody) -> Command {
    Command {
        key: IdempotencyKey::new(&key).expect("key"),
        actor,
        body,
        references: Vec::new(),
    }
}

fn account_id(a: usize) -> AccountId {
    AccountId::new(&format!("acct-{a}")).expect("id")
}

async fn provision(system: &Arc<AccountSystem>, accounts: usize) {
    let mut tasks = Vec::new();
    for chunk in 0..64usize {
        let system = system.clone();
        tasks.push(tokio::spawn(async move {
            for a in (chunk..accounts).step_by(64) {
                let account = account_id(a);
                let steps = [
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
                        amount: money(900_000_000_000, "EUR"),
                    },
                ];
                for (i, body) in steps.into_iter().enumerate() {
                    system
                        .execute(
                            &account,
                            command(format!("setup-{i}"), Actor::Platform, body),
                        )
                        .await
                        .expect("setup");
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("provisioning");
    }
}

/// A Sweep-free authorization on a pseudo-randomly chosen account.
fn authorization(n: u64, accounts: usize, financial: bool) -> (AccountId, Command) {
    let a = (n.wrapping_mul(2_654_435_761) as usize) % accounts;
    let id = format!("n{n}");
    let body = CommandBody::Authorize {
        authorization: auth(&id),
        spend: spend(&format!("card-{a}"), money(100 + (n % 900) as i64, "EUR")),
        single_message: financial,
    };
    (
        account_id(a),
        command(format!("k{id}"), Actor::Network, body),
    )
}

fn main() {
    let options = options();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let scratch = tempfile_dir(&options);
    runtime.block_on(async {
        let mut config = EngineConfig::new(&scratch);
        if let Some(writes) = options.writes_in_flight {
            config.writes_in_flight_max = writes;
        }
        if let Some(ms) = options.checkpoint_ms {
            config.checkpoint_every = std::time::Duration::from_millis(ms);
        }
        let engine = Engine::open(config).await.expect("engine");
        let system_config = SystemConfig { idle_timeout: None, in_flight_max: 1 << 20, ..SystemConfig::default() };
        let system = AccountSystem::start(engine, system_config, standard_rates()).await.expect("system");
        let started = Instant::now();
        provision(&system, options.accounts).await;
        eprintln!("provisioned {} accounts in {:.1?}", options.accounts, started.elapsed());

        let batches_before = system.log_stats().batches.load(Ordering::Relaxed);
        let next = Arc::new(AtomicU64::new(0));
        let answered = Arc::new(AtomicU64::new(0));
        let approved = Arc::new(AtomicU64::new(0));
        let histogram = Arc::new(std::sync::Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram")));
        let deadline = Instant::now() + Duration::from_secs(options.seconds);
        let begin = Instant::now();
        let mut tasks = Vec::new();
        if options.rate == 0 {
            for _ in 0..options.concurrency {
                let (system, next, answered, approved, histogram) =
                    (system.clone(), next.clone(), answered.clone(), approved.clone(), histogram.clone());
                let accounts = options.accounts;
                let financial = options.financial;
                tasks.push(tokio::spawn(async move {
                    let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
                    while Instant::now() < deadline {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let (account, command) = authorization(n, accounts, financial);
                        let sent = Instant::now();
                        let outcome = system.execute(&account, command).await;
                        local.saturating_record(sent.elapsed().as_micros() as u64);
                        answered.fetch_add(1, Ordering::Relaxed);
                        if matches!(outcome, Ok(Outcome::Approved { .. })) {
                            approved.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    histogram.lock().expect("histogram").add(&local).expect("same bounds");
                }));
            }
        } else {
            // Open loop: Poisson arrivals at `rate`, latency from the scheduled send time.
            let mut scheduled = begin;
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            let mut n = 0u64;
            while scheduled < deadline {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let uniform = ((seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                let gap = -uniform.ln() / options.rate as f64;
                scheduled += Duration::from_secs_f64(gap);
                if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                    tokio::time::sleep(wait).await;
                }
                let (account, command) = authorization(n, options.accounts, options.financial);
                n += 1;
                let (system, answered, approved, histogram) = (system.clone(), answered.clone(), approved.clone(), histogram.clone());
                let due = scheduled;
                tasks.push(tokio::spawn(async move {
                    let outcome = system.execute(&account, command).await;
                    let latency = Instant::now().saturating_duration_since(due).as_micros() as u64;
                    histogram.lock().expect("histogram").saturating_record(latency);
                    answered.fetch_add(1, Ordering::Relaxed);
                    if matches!(outcome, Ok(Outcome::Approved { .. })) {
                        approved.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
        }
        for task in tasks {
            task.await.expect("load task");
        }
        let elapsed = begin.elapsed().as_secs_f64();
        let answered = answered.load(Ordering::Relaxed);
        let approved = approved.load(Ordering::Relaxed);
        let batches = system.log_stats().batches.load(Ordering::Relaxed) - batches_before;
        let histogram = histogram.lock().expect("histogram");
        println!(
            "accounts {} mode {} answered {} approved {} in {:.1}s: {:.0}/s; latency us p50 {} p90 {} p99 {} p99.9 {} max {}; log writes (fdatasync) {} = {:.4} per answer, {:.1} answers per write",
            options.accounts,
            if options.rate == 0 { format!("closed-loop x{}", options.concurrency) } else { format!("open-loop {}/s", options.rate) },
            answered,
            approved,
            elapsed,
            answered as f64 / elapsed,
            histogram.value_at_quantile(0.50),
            histogram.value_at_quantile(0.90),
            histogram.value_at_quantile(0.99),
            histogram.value_at_quantile(0.999),
            histogram.max(),
            batches,
            batches as f64 / answered.max(1) as f64,
            answered as f64 / batches.max(1) as f64,
        );
    });
    // The engine's tasks (openraft, a checkpoint in flight) still write files until the
    // runtime stops; removing the directory before that left it behind.
    runtime.shutdown_timeout(Duration::from_secs(10));
    if options.data.is_none() {
        std::fs::remove_dir_all(&scratch).ok();
    }
}

fn tempfile_dir(options: &Options) -> std::path::PathBuf {
    match &options.data {
        Some(dir) => dir.clone(),
        None => {
            // On the same disk as the build, not a RAM disk: fdatasync must be real.
            let dir = std::env::current_dir()
                .expect("cwd")
                .join("target")
                .join(format!("bench-durable-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("scratch dir");
            dir
        }
    }
}
