//! Does a hot account slow as it ages? One account, `--callers` callers each running
//! lifecycles (a hold, then its final clearing) on the real engine and actors, durable, until
//! `--lifecycles` have run; every 100,000 lifecycles (a window) it reports the lifecycles per
//! second, each command's latency percentiles and the checkpoints taken in that window, with
//! the account's retained history at the end. Issue 20's goal 2: the checkpoint time does not
//! grow from the first window to the last, and p99.9 of the last is ≤ 1.5× the first.
//!
//! ```text
//! cargo run --release -p tandem-benches --example ageing -- [--lifecycles 1000000] [--callers 32] [--window 100000]
//!     [--leave-open 10] [--hold-expiry-ms 2000 --sweep-every-ms 1000]
//! ```
//!
//! `--leave-open P` leaves P lifecycles in a hundred open (authorized, never cleared), as real
//! traffic does (issue 35): with the default expiry (7 days) the account fills to its
//! open-hold limit and stays there, declining new holds 05 (`too_many_open_holds`, counted,
//! not a failure); with `--hold-expiry-ms` and `--sweep-every-ms` the sweeper expires them
//! and the account reaches a steady state.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tandem_actors::{AccountSystem, SystemConfig};
use tandem_core::testkit::{auth, card, good_expiry, member, money, spend, standard_rates};
use tandem_core::{AccountId, AccountKind, Actor, Command, CommandBody, IdempotencyKey, Role};
use tandem_storage::{Engine, EngineConfig};

/// Lifecycles completed so far, read when a checkpoint finishes to place it in its window.
static DONE: AtomicU64 = AtomicU64::new(0);
/// `(lifecycles done, seconds)` of every checkpoint the engine reports
/// (`tandem_checkpoint_seconds`).
static CHECKPOINTS: Mutex<Vec<(u64, f64)>> = Mutex::new(Vec::new());

/// A metrics recorder that keeps only the checkpoint histogram's samples.
struct CheckpointRecorder;

struct CheckpointSamples;

impl metrics::HistogramFn for CheckpointSamples {
    fn record(&self, seconds: f64) {
        let done = DONE.load(Ordering::Relaxed);
        CHECKPOINTS.lock().expect("samples").push((done, seconds));
    }
}

impl metrics::Recorder for CheckpointRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::noop()
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        if key.name() == "tandem_checkpoint_seconds" {
            metrics::Histogram::from_arc(Arc::new(CheckpointSamples))
        } else {
            metrics::Histogram::noop()
        }
    }
}

fn flag(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
}

fn command(key: String, actor: Actor, body: CommandBody) -> Command {
    Command::new(IdempotencyKey::new(&key).expect("key"), actor, body)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram")
}

fn main() {
    let lifecycles = flag("--lifecycles", 1_000_000);
    let callers = flag("--callers", 32);
    let window = flag("--window", 100_000).max(1);
    // The control: the same lifecycles spread over this many accounts, none of which ages.
    let accounts = flag("--accounts", 1).max(1);
    let leave_open = flag("--leave-open", 0).min(100);
    let hold_expiry_ms = flag("--hold-expiry-ms", 0);
    let sweep_every_ms = flag("--sweep-every-ms", 60_000).max(1);
    static DECLINED: AtomicU64 = AtomicU64::new(0);
    let windows = lifecycles.div_ceil(window) as usize;
    metrics::set_global_recorder(CheckpointRecorder).expect("recorder");
    // As `tandem serve` does (see the resident example).
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and only sets a flag on this
    // process; it cannot affect memory safety.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::current_dir()
        .expect("cwd")
        .join("target")
        .join(format!("bench-ageing-{}", std::process::id()));
    runtime.block_on(async {
        let mut engine_config = EngineConfig::new(&dir);
        if let Some(mb) = std::env::args().position(|a| a == "--checkpoint-cache-mb").map(|_| flag("--checkpoint-cache-mb", 64)) {
            engine_config.checkpoint = tandem_storage::CheckpointSettings {
                cache_bytes: mb * 1024 * 1024,
                ..tandem_storage::CheckpointSettings::default()
            };
        }
        let engine = Engine::open(engine_config).await.expect("engine");
        let mut config = SystemConfig {
            idle_timeout: None,
            in_flight_max: 1 << 20,
            sweep_every: std::time::Duration::from_millis(sweep_every_ms),
            ..SystemConfig::default()
        };
        if hold_expiry_ms > 0 {
            config.policy.hold_expiry_ms = hold_expiry_ms as i64;
        }
        let system = AccountSystem::start(engine, config, standard_rates()).await.expect("system");
        let ids: Vec<AccountId> = (0..accounts)
            .map(|a| AccountId::new(&if accounts == 1 { "hot".to_owned() } else { format!("acct-{a}") }).expect("id"))
            .collect();
        for (a, account) in ids.iter().enumerate() {
        let setup = [
            CommandBody::OpenAccount { kind: AccountKind::Joint },
            CommandBody::AddMember { member: member("owner"), role: Role::Owner },
            CommandBody::IssueCard { card: card(&format!("c{a}")), member: member("owner"), expiry: good_expiry() },
            CommandBody::Deposit { member: member("owner"), amount: money(900_000_000_000, "EUR") },
        ];
        for (i, body) in setup.into_iter().enumerate() {
            system.execute(account, command(format!("setup-{i}"), Actor::Platform, body)).await.expect("setup");
        }
        }
        let ids = Arc::new(ids);

        let next = Arc::new(AtomicU64::new(0));
        let ends: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; windows]));
        let latencies: Arc<Mutex<Vec<Histogram<u64>>>> =
            Arc::new(Mutex::new((0..windows).map(|_| histogram()).collect()));
        let begin = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..callers {
            let (system, ids, next, ends, latencies) =
                (system.clone(), ids.clone(), next.clone(), ends.clone(), latencies.clone());
            tasks.push(tokio::spawn(async move {
                let mut local: Vec<Histogram<u64>> = (0..windows).map(|_| histogram()).collect();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= lifecycles {
                        break;
                    }
                    let w = (n / window) as usize;
                    let id = format!("l{n}");
                    let a = (n % accounts) as usize;
                    let (account, card_name) = (&ids[a], format!("c{a}"));
                    let mut steps = vec![
                        (format!("a{n}"), CommandBody::Authorize { authorization: auth(&id), spend: spend(&card_name, money(100, "EUR")), single_message: false }),
                    ];
                    if n % 100 >= leave_open {
                        steps.push((format!("c{n}"), CommandBody::Clear { authorization: auth(&id), spend: spend(&card_name, money(100, "EUR")), final_clearing: true }));
                    }
                    for (key, body) in steps {
                        let sent = Instant::now();
                        let outcome = system.execute(account, command(key, Actor::Network, body)).await;
                        local[w].saturating_record(sent.elapsed().as_micros() as u64);
                        match outcome {
                            Ok(outcome) if outcome.response_code().as_str() == "00" => {}
                            // A full account declines new holds (when some are left open).
                            Ok(tandem_core::Outcome::Declined { reason: tandem_core::DeclineReason::TooManyOpenHolds, .. }) if leave_open > 0 => {
                                DECLINED.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            other => panic!("lifecycle {n}: {other:?}"),
                        }
                    }
                    let done = DONE.fetch_add(1, Ordering::Relaxed) + 1;
                    if done.is_multiple_of(window) || done == lifecycles {
                        ends.lock().expect("ends")[((done - 1) / window) as usize] = Some(Instant::now());
                    }
                }
                let mut all = latencies.lock().expect("latencies");
                for (total, mine) in all.iter_mut().zip(local) {
                    total.add(mine).expect("same bounds");
                }
            }));
        }
        for task in tasks {
            task.await.expect("caller");
        }
        let elapsed = begin.elapsed();
        let ends = ends.lock().expect("ends").clone();
        let latencies = std::mem::take(&mut *latencies.lock().expect("latencies"));
        let checkpoints = CHECKPOINTS.lock().expect("samples").clone();
        println!(
            "{lifecycles} lifecycles ({} commands) on {accounts} account(s), {callers} callers, in {:.1?}: {:.0} lifecycles/s",
            2 * lifecycles,
            elapsed,
            lifecycles as f64 / elapsed.as_secs_f64()
        );
        println!("window (lifecycles)   lifecycles/s   latency us p50   p99   p99.9   max   checkpoints n   mean ms   max ms");
        let mut start = begin;
        for (w, end) in ends.iter().enumerate() {
            let end = end.unwrap_or(start);
            let seconds = end.duration_since(start).as_secs_f64().max(1e-9);
            let first = w as u64 * window;
            let last = ((w as u64 + 1) * window).min(lifecycles);
            let taken: Vec<f64> = checkpoints
                .iter()
                .filter(|(done, _)| *done > first && *done <= last)
                .map(|(_, s)| s * 1000.0)
                .collect();
            let h = &latencies[w];
            println!(
                "{first:>8}-{last:<9}   {:>12.0}   {:>14} {:>5} {:>7} {:>6}   {:>13}   {:>7}   {:>6}",
                (last - first) as f64 / seconds,
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max(),
                taken.len(),
                if taken.is_empty() { "-".to_owned() } else { format!("{:.1}", taken.iter().sum::<f64>() / taken.len() as f64) },
                if taken.is_empty() { "-".to_owned() } else { format!("{:.1}", taken.iter().cloned().fold(0.0, f64::max)) },
            );
            start = end;
        }
        let held = system.committed_account(&ids[0]).await.expect("account");
        println!(
            "the (first) account keeps {} lifecycles ({} open), {} outcomes, {} tombstones; {} events; {} authorizations declined 05 at the open-hold limit",
            held.authorizations.len(),
            held.open_holds,
            held.outcomes.len(),
            held.tombstones.len(),
            held.seq,
            DECLINED.load(Ordering::Relaxed)
        );
        system.shutdown().await;
    });
    std::fs::remove_dir_all(&dir).ok();
}
