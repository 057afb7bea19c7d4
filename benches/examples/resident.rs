//! Memory per resident account, and recovery time, on the real engine:
//!
//! ```text
//! cargo run --release -p tandem-benches --example resident -- [ACCOUNTS] [DATA_DIR|-] [IDLE_MS] [HOLDS]
//! ```
//!
//! With IDLE_MS, actors passivate after that long idle: the resident set stays bounded however
//! many accounts are registered (HOLDS open holds per account, default 5). A node is then
//! started afresh on the same data in a process of its own (`--node`), and reports its memory
//! once ready and after card traffic on 10,000 of the accounts has passivated.
//!
//! Provisions ACCOUNTS (default 100,000) typical accounts — 2 members, 2 cards, a deposit and
//! 5 open holds — keeps every actor resident, and reports the process's resident set (RSS)
//! per account, with the checkpoint store's cache set explicitly. Then it stops, reopens the same data
//! directory as a restart would, and reports the time back to ready (engine open and replay)
//! and to every account loaded.
//!
//! It runs under mimalloc (as `tandem` does) through a counting wrapper, so it also reports the
//! live heap per resident account and what one committed account holds, field by field (each
//! field's heap measured as the live bytes its clone allocates, plus the struct's inline
//! size): the breakdown issue 20 asks for before shrinking anything.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tandem_actors::{AccountSystem, SystemConfig};
use tandem_benches::rss_bytes;
use tandem_core::testkit::{auth, card, good_expiry, member, money, spend, standard_rates};
use tandem_core::{
    Account, AccountId, AccountKind, Actor, Command, CommandBody, IdempotencyKey, Role,
};
use tandem_storage::{CheckpointSettings, Engine, EngineConfig};

const CHECKPOINT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// mimalloc, counting the bytes live on the heap.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// Live bytes in allocations of the last size class (64 KiB and more), which counts them
/// only by number.
static LARGE: AtomicUsize = AtomicUsize::new(0);

/// Live allocations by size (8-byte classes up to 64 KiB, the last class holds the rest): the
/// actors' own allocations are the difference before and after they stop.
static BY_SIZE: [AtomicUsize; 8192] = [const { AtomicUsize::new(0) }; 8192];

fn size_class(size: usize) -> usize {
    (size / 8).min(BY_SIZE.len() - 1)
}

fn live_by_size() -> Vec<usize> {
    BY_SIZE.iter().map(|c| c.load(Ordering::Relaxed)).collect()
}

fn grew(by: usize) {
    BY_SIZE[size_class(by)].fetch_add(1, Ordering::Relaxed);
    if size_class(by) == BY_SIZE.len() - 1 {
        LARGE.fetch_add(by, Ordering::Relaxed);
    }
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    COUNT.fetch_add(1, Ordering::Relaxed);
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is passed to mimalloc unchanged; the counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: the caller's contract for `alloc` is passed on.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrank(layout.size());
        // SAFETY: the caller's contract for `dealloc` is passed on.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: the caller's contract for `alloc_zeroed` is passed on.
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size);
        shrank(layout.size());
        // SAFETY: the caller's contract for `realloc` is passed on.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn shrank(by: usize) {
    LIVE.fetch_sub(by, Ordering::Relaxed);
    BY_SIZE[size_class(by)].fetch_sub(1, Ordering::Relaxed);
    if size_class(by) == BY_SIZE.len() - 1 {
        LARGE.fetch_sub(by, Ordering::Relaxed);
    }
}

fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// The heap bytes a clone of `value` holds: what `value` itself holds, as the clone keeps the
/// same capacities for maps and sets (strings and vectors are cloned to their length).
fn heap_of<T: Clone>(value: &T) -> usize {
    let before = live_bytes();
    let copy = value.clone();
    let held = live_bytes().saturating_sub(before);
    drop(copy);
    held
}

/// What one committed account holds, field by field.
fn breakdown(account: &Account) -> Vec<(&'static str, usize)> {
    let mut parts = vec![
        (
            "inline (size_of::<Account>)",
            std::mem::size_of::<Account>(),
        ),
        ("balances", heap_of(&account.balances)),
        ("members", heap_of(&account.members)),
        ("positions", heap_of(&account.positions)),
        ("overdrafts", heap_of(&account.overdrafts)),
        (
            "cards (with their controls and usage)",
            heap_of(&account.cards),
        ),
        ("split rule", heap_of(&account.split_rule)),
        ("funding policy", heap_of(&account.funding_policy)),
        (
            "authorizations (open and retained lifecycles)",
            heap_of(&account.authorizations),
        ),
        ("outcomes (recorded answers)", heap_of(&account.outcomes)),
        ("tombstones", heap_of(&account.tombstones)),
        ("references", heap_of(&account.references)),
        ("open expiries", heap_of(&account.open_expiries)),
    ];
    let total = parts.iter().map(|(_, bytes)| bytes).sum();
    parts.push(("whole account", total));
    parts
}

/// The size classes whose live count fell most between `before` and `after`, per `per`.
fn print_largest_differences(what: &str, before: &[usize], after: &[usize], per: usize) {
    if per == 0 {
        return;
    }
    // What went, and (fewer lines) what came in its place: a moved value is freed in one
    // size class and allocated in another.
    for (went, lines) in [(true, 12), (false, 4)] {
        let mut changed: Vec<(usize, usize)> = before
            .iter()
            .zip(after)
            .enumerate()
            .filter(|(_, (b, a))| if went { b > a } else { a > b })
            .map(|(class, (b, a))| (class * 8, b.abs_diff(*a)))
            .collect();
        changed.sort_by_key(|(size, count)| std::cmp::Reverse(size.max(&8) * count));
        let heading = if went { "went" } else { "came" };
        println!("{what}, {heading} (size class: count, bytes):");
        for (size, count) in changed.into_iter().take(lines) {
            println!(
                "  {size:>6}..{:<6} {:>6.2} {:>8.0}",
                size + 7,
                count as f64 / per as f64,
                (size * count) as f64 / per as f64
            );
        }
    }
}

/// The runtime the example's engine and actors run on: two workers, as the machine has cores.
fn two_workers() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `bytes` per one of `count`, or a dash when there are none (passivated: nothing resident).
fn per(bytes: usize, count: usize) -> String {
    if count == 0 {
        "-".to_owned()
    } else {
        format!("{:.0}", bytes as f64 / count as f64)
    }
}

fn command(key: &str, actor: Actor, body: CommandBody) -> Command {
    Command {
        key: IdempotencyKey::new(key).expect("key"),
        actor,
        body,
        references: Vec::new(),
    }
}

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut config = EngineConfig::new(dir);
    config.checkpoint = CheckpointSettings {
        cache_bytes: CHECKPOINT_CACHE_BYTES,
        ..CheckpointSettings::default()
    };
    config
}

fn main() {
    // As `tandem serve` does (server/src/main.rs): with transparent huge pages, mimalloc's
    // partly used pages count as whole 2 MiB pages (about 3 KB more RSS per account here).
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and only sets a flag on this
    // process; it cannot affect memory safety.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "--node") {
        return reopened_node(&args[2..]);
    }
    let accounts: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let idle: Option<std::time::Duration> = args
        .get(3)
        .and_then(|a| a.parse().ok())
        .map(std::time::Duration::from_millis);
    let holds: i64 = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(5);
    let dir = args
        .get(2)
        .filter(|d| d.as_str() != "-")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::current_dir()
                .expect("cwd")
                .join("target")
                .join(format!("bench-resident-{}", std::process::id()))
        });
    let runtime = two_workers();
    let baseline = rss_bytes();
    let baseline_heap = live_bytes();
    let events = runtime.block_on(async {
        let engine = Engine::open(config(&dir)).await.expect("engine");
        let system_config = SystemConfig { idle_timeout: idle, ..SystemConfig::default() };
        let system = AccountSystem::start(engine, system_config, standard_rates()).await.expect("system");
        let started = Instant::now();
        let mut tasks = Vec::new();
        for chunk in 0..256usize {
            let system: Arc<AccountSystem> = system.clone();
            tasks.push(tokio::spawn(async move {
                for a in (chunk..accounts).step_by(256) {
                    let account = AccountId::new(&format!("acct-{a}")).expect("id");
                    let mut steps = vec![
                        (Actor::Platform, CommandBody::OpenAccount { kind: AccountKind::Joint }),
                        (Actor::Platform, CommandBody::AddMember { member: member("ana"), role: Role::Owner }),
                        (Actor::Platform, CommandBody::AddMember { member: member("ben"), role: Role::Owner }),
                        (Actor::Platform, CommandBody::IssueCard { card: card(&format!("a{a}")), member: member("ana"), expiry: good_expiry() }),
                        (Actor::Platform, CommandBody::IssueCard { card: card(&format!("b{a}")), member: member("ben"), expiry: good_expiry() }),
                        (Actor::Platform, CommandBody::Deposit { member: member("ana"), amount: money(100_000, "EUR") }),
                    ];
                    for h in 0..holds {
                        let card_name = if h % 2 == 0 { format!("a{a}") } else { format!("b{a}") };
                        steps.push((
                            Actor::Network,
                            CommandBody::Authorize { authorization: auth(&format!("h{h}")), spend: spend(&card_name, money(1_000 + h, "EUR")), single_message: false },
                        ));
                    }
                    for (i, (actor, body)) in steps.into_iter().enumerate() {
                        system.execute(&account, command(&format!("s{i}"), actor, body)).await.expect("provision");
                    }
                }
            }));
        }
        for task in tasks {
            task.await.expect("provisioning");
        }
        if let Some(idle) = idle {
            // Passivation: wait for idle actors to stop and give their accounts back, so what
            // is measured is accounts resident at rest (in memory, with no actor).
            let waited = Instant::now();
            // Accounts at rest that nobody touches leave memory at the checkpoint after next.
            while system.resident_accounts() + system.accounts_at_rest() > 0
                && waited.elapsed() < idle * 4 + std::time::Duration::from_secs(10)
            {
                tokio::time::sleep(idle / 4).await;
            }
            println!(
                "after {:.1?} idle: {} actors resident, {} accounts at rest in memory",
                waited.elapsed(),
                system.resident_accounts(),
                system.accounts_at_rest()
            );
        }
        let resident = system.resident_accounts();
        let rss = rss_bytes();
        println!(
            "{accounts} accounts provisioned in {:.1?}; resident actors {resident}; RSS {:.0} MiB (baseline {:.0} MiB, checkpoint cache {} MiB): {} bytes per resident account",
            started.elapsed(),
            rss as f64 / 1048576.0,
            baseline as f64 / 1048576.0,
            CHECKPOINT_CACHE_BYTES / 1048576,
            per(rss.saturating_sub(baseline) as usize, resident),
        );
        println!(
            "per registered account: RSS {:.0} bytes, live heap {:.0} bytes",
            (rss.saturating_sub(baseline)) as f64 / accounts.max(1) as f64,
            live_bytes().saturating_sub(baseline_heap) as f64 / accounts.max(1) as f64,
        );
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .map_or(String::new(), |l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        };
        println!(
            "RSS: anonymous {}, file-backed {}, shared memory {}",
            field("RssAnon:"),
            field("RssFile:"),
            field("RssShmem:")
        );
        let heap = live_bytes().saturating_sub(baseline_heap);
        println!(
            "live heap {:.0} MiB (peak {:.0} MiB while provisioning; {} allocations): {} bytes per resident account (RSS above it is pages the allocator keeps)",
            heap as f64 / 1048576.0,
            PEAK.load(Ordering::Relaxed) as f64 / 1048576.0,
            COUNT.load(Ordering::Relaxed),
            per(heap, resident),
        );
        let first = AccountId::new("acct-0").expect("id");
        let account = system.committed_account(&first).await.expect("acct-0");
        println!("one committed account (acct-0, {} events), heap bytes by field:", account.seq);
        for (part, bytes) in breakdown(&account) {
            println!("  {part:<48} {bytes:>8}");
        }
        println!(
            "  inline sizes: Member {}, Card {}, Authorization {}, RecordedOutcome {}, Controls {}",
            std::mem::size_of::<tandem_core::Member>(),
            std::mem::size_of::<tandem_core::Card>(),
            std::mem::size_of::<tandem_core::Authorization>(),
            std::mem::size_of::<tandem_core::account::RecordedOutcome>(),
            std::mem::size_of::<tandem_core::Controls>(),
        );
        let events = system.snapshot(&first).await.expect("snapshot").seq * accounts as u64;
        let with_actors = live_by_size();
        let large_with_actors = LARGE.load(Ordering::Relaxed);
        system.clone().shutdown().await;
        // The actors stopped and gave their accounts back to the engine's accounts at rest,
        // which leave memory at the next checkpoint: what went is each actor's own cost (task,
        // mailbox, view, snapshot), plus the accounts that left.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let at_rest = live_bytes().saturating_sub(baseline_heap);
        println!(
            "after the actors stop ({} accounts still at rest in the engine): live heap {:.0} MiB; {} bytes per actor went (with the accounts that left memory)",
            system.accounts_at_rest(),
            at_rest as f64 / 1048576.0,
            per(heap.saturating_sub(at_rest), resident),
        );
        print_largest_differences("the actors' own allocations, per actor", &with_actors, &live_by_size(), resident);
        println!(
            "  allocations of 64 KiB or more: {:.0} MiB with the actors, {:.0} MiB after",
            large_with_actors as f64 / 1048576.0,
            LARGE.load(Ordering::Relaxed) as f64 / 1048576.0
        );
        println!("holders of the account system: {}", Arc::strong_count(&system));
        let with_engine = live_by_size();
        drop(system);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let rest = live_bytes().saturating_sub(baseline_heap);
        println!(
            "after the engine is dropped: live heap {:.0} MiB; the engine held {:.0} bytes per account (accounts at rest, directories, layers, log)",
            rest as f64 / 1048576.0,
            at_rest.saturating_sub(rest) as f64 / accounts.max(1) as f64,
        );
        print_largest_differences("the engine's allocations, per account", &with_engine, &live_by_size(), accounts);
        (events, live_by_size(), live_bytes())
    });
    let (events, with_runtime, before_runtime_drop) = events;
    drop(runtime);
    println!(
        "after the runtime is dropped: {:.0} bytes per account more freed",
        before_runtime_drop.saturating_sub(live_bytes()) as f64 / accounts.max(1) as f64
    );
    print_largest_differences(
        "held until the runtime went, per account",
        &with_runtime,
        &live_by_size(),
        accounts,
    );
    let runtime = two_workers();
    runtime.block_on(async {
        let started = Instant::now();
        let engine = Engine::open(config(&dir)).await.expect("engine reopens");
        let ready = started.elapsed();
        let mut loaded = 0usize;
        for a in 0..accounts {
            let account = engine.reader().load_account(&AccountId::new(&format!("acct-{a}")).expect("id")).expect("loads");
            loaded += usize::from(account.open_holds as i64 == holds);
        }
        println!(
            "restart with {accounts} accounts and about {events} events: ready (log replayed) in {:.2?}; every account loaded in {:.2?} ({loaded} with their {holds} holds)",
            ready,
            started.elapsed()
        );
    });
    if let Some(idle) = idle {
        // A node started afresh on the same data, in a process of its own: its memory owes
        // nothing to the provisioning above (whose peak the allocator keeps in this one).
        let status = std::process::Command::new(std::env::current_exe().expect("this example"))
            .arg("--node")
            .arg(&dir)
            .arg(accounts.to_string())
            .arg(idle.as_millis().to_string())
            .status()
            .expect("the reopened node runs");
        assert!(status.success(), "the reopened node failed: {status}");
    }
    if args.get(2).is_none_or(|d| d == "-") {
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// Card traffic on this many of the registered accounts, spread evenly, in the reopened node.
const NODE_SAMPLE: usize = 10_000;

/// `--node DATA_DIR ACCOUNTS IDLE_MS`: opens the data directory as `tandem` would after a
/// restart, reports RSS and the live heap once ready, then again after one authorization on
/// each of [`NODE_SAMPLE`] accounts (each loaded, decided, its card found in the directories)
/// and the passivation that follows.
fn reopened_node(args: &[String]) {
    let dir = std::path::PathBuf::from(&args[0]);
    let accounts: usize = args[1].parse().expect("ACCOUNTS");
    let idle = std::time::Duration::from_millis(args[2].parse().expect("IDLE_MS"));
    let runtime = two_workers();
    let baseline = rss_bytes();
    let baseline_heap = live_bytes();
    let baseline_by_size = live_by_size();
    let report = |when: &str| {
        let (rss, heap) = (
            rss_bytes().saturating_sub(baseline),
            live_bytes().saturating_sub(baseline_heap),
        );
        println!(
            "reopened node, {when}: RSS {:.0} MiB, live heap {:.0} MiB; per registered account: RSS {:.0} bytes, live heap {:.0} bytes",
            rss as f64 / 1048576.0,
            heap as f64 / 1048576.0,
            rss as f64 / accounts.max(1) as f64,
            heap as f64 / accounts.max(1) as f64,
        );
    };
    runtime.block_on(async {
        let started = Instant::now();
        let engine = Engine::open(config(&dir)).await.expect("engine reopens");
        let system_config = SystemConfig {
            idle_timeout: Some(idle),
            ..SystemConfig::default()
        };
        let system = AccountSystem::start(engine, system_config, standard_rates())
            .await
            .expect("system");
        println!(
            "reopened node with {accounts} registered accounts: ready in {:.2?}",
            started.elapsed()
        );
        report("ready");
        // Arguments swapped: the classes that grew since before the open.
        print_largest_differences(
            "what the ready node holds, per registered account",
            &live_by_size(),
            &baseline_by_size,
            accounts,
        );
        let step = (accounts / NODE_SAMPLE).max(1);
        let traffic = Instant::now();
        let mut tasks = Vec::new();
        for lane in 0..64usize {
            let system: Arc<AccountSystem> = system.clone();
            tasks.push(tokio::spawn(async move {
                for a in (0..accounts).step_by(step).skip(lane).step_by(64) {
                    let account = AccountId::new(&format!("acct-{a}")).expect("id");
                    let found = system
                        .card_account(&card(&format!("a{a}")))
                        .await
                        .expect("directory");
                    assert_eq!(
                        found.as_ref(),
                        Some(&account),
                        "the card directory finds acct-{a}"
                    );
                    let body = CommandBody::Authorize {
                        authorization: auth("after-restart"),
                        spend: spend(&format!("a{a}"), money(500, "EUR")),
                        single_message: false,
                    };
                    system
                        .execute(&account, command("after-restart", Actor::Network, body))
                        .await
                        .expect("authorize");
                }
            }));
        }
        for task in tasks {
            task.await.expect("traffic");
        }
        let sampled = accounts.div_ceil(step);
        println!(
            "one authorization on each of {sampled} accounts in {:.2?}",
            traffic.elapsed()
        );
        let waited = Instant::now();
        while system.resident_accounts() + system.accounts_at_rest() > 0
            && waited.elapsed() < idle * 4 + std::time::Duration::from_secs(10)
        {
            tokio::time::sleep(idle / 4).await;
        }
        report(&format!(
            "after passivation ({} actors, {} accounts at rest, {} directory entries cached)",
            system.resident_accounts(),
            system.accounts_at_rest(),
            system.directory_cached()
        ));
    });
}
