//! Crash safety: run the real engine in a child process, drive concurrent authorizations,
//! `kill -9` it at a random moment, restart, repeat; then check that every approval the
//! worker was told about is there exactly once, nothing is half-applied, and every invariant
//! holds. The second test also cuts power after each kill: the log keeps only its synced
//! entries and a random part of what followed, and the checkpoint store goes back to a copy
//! of its files taken right after its last durable checkpoint (`tandem_tests::power`).
//! Rounds: `TANDEM_CRASH_ROUNDS` (default 6); seed: `TANDEM_SEED`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tandem_core::{AccountId, AuthorizationId, LifecycleState};
use tandem_storage::{Engine, EngineConfig};

const ACCOUNTS: usize = 4;

/// A small deterministic generator, so a failing seed replays.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn every_acknowledged_approval_survives_kill_9_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let acknowledged = crash_rounds(dir.path(), false);
    check(dir.path(), &acknowledged);
}

#[test]
fn every_acknowledged_approval_survives_power_cuts_that_keep_only_synced_log_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let acknowledged = crash_rounds(dir.path(), true);
    check(dir.path(), &acknowledged);
}

/// Runs the worker on `dir`, kills it at random moments (cutting power after each kill when
/// `power_cuts`), and answers every approval it acknowledged: id → (account, amount).
fn crash_rounds(dir: &std::path::Path, power_cuts: bool) -> BTreeMap<String, (String, i64)> {
    let rounds = env_number("TANDEM_CRASH_ROUNDS", 6);
    let seed = env_number("TANDEM_SEED", 0x5eed);
    eprintln!("crash test seed {seed} (TANDEM_SEED), {rounds} rounds, power cuts: {power_cuts}");
    let mut random = Lcg(seed);
    let mut acknowledged: BTreeMap<String, (String, i64)> = BTreeMap::new();
    // The last log entry any fdatasync covered, over all runs so far.
    let mut synced: Option<u64> = None;
    // Power cuts that put the store back to a checkpoint (rather than to nothing).
    let mut restored = 0;
    for run in 0..rounds {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tandem-crash-worker"))
            .arg(dir)
            .arg(run.to_string())
            .arg(ACCOUNTS.to_string())
            .args(power_cuts.then_some("report-syncs"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("worker starts");
        let stdout = child.stdout.take().unwrap();
        let (lines, receiver) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait for the worker to be serving, then let it run a random while and kill it.
        let started = Instant::now();
        let mut ready = false;
        while !ready && started.elapsed() < Duration::from_secs(60) {
            if let Ok(line) = receiver.recv_timeout(Duration::from_millis(100)) {
                ready = line == "READY";
            }
        }
        assert!(ready, "worker never became ready in run {run}");
        std::thread::sleep(Duration::from_millis(50 + random.next(400)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        reader.join().ok();
        let mut this_run = 0;
        for line in receiver.try_iter() {
            let parts: Vec<&str> = line.split(' ').collect();
            if parts.len() == 4 && parts[0] == "ACK" {
                acknowledged.insert(
                    parts[2].to_string(),
                    (parts[1].to_string(), parts[3].parse().unwrap()),
                );
                this_run += 1;
            }
            if parts.len() == 2 && parts[0] == "SYNCED" {
                let index: u64 = parts[1].parse().unwrap();
                synced = Some(synced.map_or(index, |s| s.max(index)));
            }
        }
        eprintln!("run {run}: {this_run} approvals acknowledged before SIGKILL");
        if power_cuts && let Some(synced) = synced {
            let keep_extra = random.next(1_001) as f64 / 1_000.0;
            let cut = tandem_tests::power::cut(dir, synced, keep_extra)
                .unwrap_or_else(|e| panic!("power cut after run {run}: {e}"));
            // The store keeps only its last durable checkpoint; the next run replays the log
            // after it.
            let from_checkpoint = tandem_tests::power::restore_store(dir)
                .unwrap_or_else(|e| panic!("restoring the store after run {run}: {e}"));
            restored += usize::from(from_checkpoint);
            eprintln!(
                "run {run}: power cut, log synced through entry {synced}: {cut:?}; store {}",
                if from_checkpoint {
                    "back to its last checkpoint"
                } else {
                    "empty"
                }
            );
        }
    }
    assert!(
        !acknowledged.is_empty(),
        "no approval was ever acknowledged"
    );
    if power_cuts {
        assert!(
            restored > 0,
            "no power cut came after a checkpoint: the test did not exercise recovery from one"
        );
    }
    acknowledged
}

/// Reopens `dir` in-process, as a restart would, and checks every account against what was
/// acknowledged.
fn check(dir: &std::path::Path, acknowledged: &BTreeMap<String, (String, i64)>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let engine = Engine::open(EngineConfig::new(dir))
            .await
            .expect("engine reopens after SIGKILL");
        let mut found: BTreeSet<String> = BTreeSet::new();
        let mut accounts = BTreeMap::new();
        for a in 0..ACCOUNTS {
            let id = AccountId::new(&format!("acct-{a}")).unwrap();
            let account = engine.reader().load_account(&id).expect("account loads");
            account
                .validate()
                .unwrap_or_else(|v| panic!("acct-{a} after crashes: {v}"));
            let held: i64 = account
                .authorizations
                .values()
                .filter(|r| r.state.is_open())
                .map(|r| r.residual_minor())
                .sum();
            assert_eq!(
                account
                    .balance(tandem_core::testkit::currency("EUR"))
                    .held_minor,
                held
            );
            for record in account.authorizations.values() {
                assert_eq!(
                    record.state,
                    LifecycleState::Pending,
                    "{} is half-applied",
                    record.id
                );
                assert!(
                    found.insert(record.id.to_string()),
                    "{} exists twice",
                    record.id
                );
            }
            accounts.insert(format!("acct-{a}"), account);
        }
        for (id, (account, amount)) in acknowledged {
            let record = accounts[account]
                .authorizations
                .get(&AuthorizationId::new(id).unwrap())
                .unwrap_or_else(|| panic!("acknowledged approval {id} on {account} was lost"));
            assert_eq!(
                record.authorized_minor, *amount,
                "{id} holds the acknowledged amount"
            );
        }
        eprintln!(
            "{} acknowledged approvals all present; {} durable in total",
            acknowledged.len(),
            found.len()
        );
        engine.shutdown().await;
    });
}
