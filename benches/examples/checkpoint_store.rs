//! The checkpoint store side by side: sled (what `storage/src/checkpoint.rs` writes today)
//! beside fjall (an LSM store), on the two shapes issue 20's unmet goals measure.
//!
//! - `registered N DIR`: N accounts' keys, as the state machine lays them out (an account's
//!   snapshot and one event chunk, two card links, two PAN links, one expiry entry), written
//!   in checkpoint batches of 10,000 accounts, each made durable. Then a fresh process opens
//!   the store and reports its RSS when open and after reading 10,000 accounts (goal 1: what
//!   a registered account costs a node that is not serving it). A reader beside the writes
//!   reports how long a read waits while checkpoints run.
//! - `hot CHECKPOINTS DIR`: one account's checkpoints as a hot account writes them (a 1 MiB
//!   snapshot overwritten and a 4 MiB chunk of new events each time, history kept), each made
//!   durable; the mean time of a checkpoint per tenth of the run (goal 2: does it grow as the
//!   store grows).
//!
//! `cargo run --release -p tandem-benches --example checkpoint_store -- sled|fjall MODE N DIR`
//!
//! Both stores get the same 64 MiB cache (the engine's default for sled). Values are
//! pseudo-random bytes, so compression gains nothing on either side.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tandem_benches::rss_bytes;

const BATCH_ACCOUNTS: usize = 10_000;
const CACHE_BYTES: u64 = 64 * 1024 * 1024;
const SNAPSHOT_BYTES: usize = 1_200;
const EVENTS_BYTES: usize = 600;
const HOT_SNAPSHOT_BYTES: usize = 1 << 20;
const HOT_EVENTS_BYTES: usize = 4 << 20;

/// One checkpoint's writes.
type Batch = Vec<(Vec<u8>, Vec<u8>)>;

enum Store {
    Sled(sled::Db),
    Fjall(fjall::Database, fjall::Keyspace),
}

impl Store {
    fn open(kind: &str, dir: &Path) -> Self {
        match kind {
            "sled" => Store::Sled(
                sled::Config::new()
                    .path(dir)
                    .cache_capacity(CACHE_BYTES)
                    .flush_every_ms(None)
                    .open()
                    .expect("sled opens"),
            ),
            "fjall" => {
                let db = fjall::Database::builder(dir)
                    .cache_size(CACHE_BYTES)
                    .open()
                    .expect("fjall opens");
                let state = db
                    .keyspace("state", fjall::KeyspaceCreateOptions::default)
                    .expect("keyspace");
                Store::Fjall(db, state)
            }
            other => panic!("unknown store {other}: sled or fjall"),
        }
    }

    /// Writes one checkpoint atomically and makes it durable.
    fn checkpoint(&self, batch: Batch) {
        match self {
            Store::Sled(db) => {
                let mut writes = sled::Batch::default();
                for (key, value) in batch {
                    writes.insert(key, value);
                }
                db.apply_batch(writes).expect("sled batch");
                db.flush().expect("sled flush");
            }
            Store::Fjall(db, state) => {
                let mut writes = db.batch();
                for (key, value) in batch {
                    writes.insert(state, key, value);
                }
                writes.commit().expect("fjall batch");
                db.persist(fjall::PersistMode::SyncData)
                    .expect("fjall persist");
            }
        }
    }

    fn get(&self, key: &[u8]) -> Option<usize> {
        match self {
            Store::Sled(db) => db.get(key).expect("sled get").map(|v| v.len()),
            Store::Fjall(_, state) => state.get(key).expect("fjall get").map(|v| v.len()),
        }
    }
}

/// Pseudo-random bytes (xorshift), so neither store gains by compressing.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn account(i: usize) -> String {
    format!("acct-{i}")
}

/// One registered account's keys, laid out as `storage/src/keys.rs` lays them out.
fn account_keys(i: usize, batch: &mut Batch) {
    let id = account(i);
    let prefix = |tag: &[u8]| [b"a:".as_slice(), id.as_bytes(), b"\0", tag].concat();
    batch.push((prefix(b"s"), noise(i as u64, SNAPSHOT_BYTES)));
    batch.push((
        [prefix(b"e"), 0u64.to_be_bytes().to_vec()].concat(),
        noise(!(i as u64), EVENTS_BYTES),
    ));
    for card in 0..2u64 {
        let card_id = format!("{id}-card-{card}");
        batch.push((
            [b"c:".as_slice(), card_id.as_bytes()].concat(),
            id.as_bytes().to_vec(),
        ));
        let hash = noise((i as u64) << 1 | card, 32);
        batch.push((
            [b"p:".as_slice(), &hash].concat(),
            [id.as_bytes(), card_id.as_bytes()].concat(),
        ));
    }
    let at = (1_700_000_000_000u64 + i as u64) ^ (1 << 63);
    batch.push((
        [b"x:".as_slice(), &at.to_be_bytes(), id.as_bytes()].concat(),
        Vec::new(),
    ));
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => disk_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

fn registered(kind: &str, n: usize, dir: &Path) {
    let started = Instant::now();
    {
        let store = std::sync::Arc::new(Store::open(kind, dir));
        // A reader beside the checkpoints, as a cold account's load or a card lookup runs
        // beside them in the engine: how long does a read wait?
        let written = std::sync::Arc::new(AtomicUsize::new(0));
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let reader = {
            let (store, written, done) = (store.clone(), written.clone(), done.clone());
            std::thread::spawn(move || {
                let mut waits = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
                let mut k = 0usize;
                while !done.load(Ordering::Acquire) {
                    let upto = written.load(Ordering::Acquire);
                    if upto == 0 {
                        std::thread::yield_now();
                        continue;
                    }
                    k = k.wrapping_add(7_919);
                    let id = account(k % upto);
                    let key = [b"c:".as_slice(), id.as_bytes(), b"-card-0"].concat();
                    let asked = Instant::now();
                    assert!(store.get(&key).is_some(), "a written card link is read");
                    waits.saturating_record(asked.elapsed().as_micros() as u64);
                }
                waits
            })
        };
        let mut next = 0;
        while next < n {
            let end = (next + BATCH_ACCOUNTS).min(n);
            let mut batch = Vec::with_capacity((end - next) * 7);
            for i in next..end {
                account_keys(i, &mut batch);
            }
            store.checkpoint(batch);
            written.store(end, Ordering::Release);
            next = end;
        }
        done.store(true, Ordering::Release);
        let waits = reader.join().expect("reader");
        println!(
            "{kind}: {} reads beside the checkpoints: p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
            waits.len(),
            waits.value_at_quantile(0.5),
            waits.value_at_quantile(0.99),
            waits.value_at_quantile(0.999),
            waits.max()
        );
    }
    println!(
        "{kind}: {n} accounts written in {:.1} s, {} on disk",
        started.elapsed().as_secs_f64(),
        mib(disk_bytes(dir))
    );
    // A fresh process, so nothing of the writing stays in its heap.
    let status = std::process::Command::new(std::env::current_exe().expect("own path"))
        .args([kind, "open", &n.to_string()])
        .arg(dir)
        .status()
        .expect("reopen runs");
    assert!(status.success(), "the reopening process failed");
}

fn reopen(kind: &str, n: usize, dir: &Path) {
    let before = rss_bytes();
    let started = Instant::now();
    let store = Store::open(kind, dir);
    let open_ms = started.elapsed().as_millis();
    let at_open = rss_bytes();
    let mut found = 0;
    for k in 0..BATCH_ACCOUNTS {
        let i = (k.wrapping_mul(7_919)) % n;
        let id = account(i);
        found += usize::from(
            store
                .get(&[b"a:".as_slice(), id.as_bytes(), b"\0s"].concat())
                .is_some(),
        );
        found += usize::from(
            store
                .get(&[b"c:".as_slice(), id.as_bytes(), b"-card-0"].concat())
                .is_some(),
        );
    }
    assert_eq!(found, 2 * BATCH_ACCOUNTS, "every key read back");
    let after_reads = rss_bytes();
    println!(
        "{kind}: reopened {n} accounts in {open_ms} ms; RSS before open {}, open {}, after reading 10,000 accounts {} ({:.0} B per registered account above the process before open)",
        mib(before),
        mib(at_open),
        mib(after_reads),
        after_reads.saturating_sub(before) as f64 / n as f64
    );
}

fn hot(kind: &str, checkpoints: usize, dir: &Path) {
    let store = Store::open(kind, dir);
    let mut times: Vec<Duration> = Vec::with_capacity(checkpoints);
    for seq in 0..checkpoints {
        let batch = vec![
            (b"a:hot\0s".to_vec(), noise(seq as u64, HOT_SNAPSHOT_BYTES)),
            (
                [b"a:hot\0e".as_slice(), &(seq as u64).to_be_bytes()].concat(),
                noise(!(seq as u64), HOT_EVENTS_BYTES),
            ),
        ];
        let started = Instant::now();
        store.checkpoint(batch);
        times.push(started.elapsed());
    }
    let tenth = (checkpoints / 10).max(1);
    println!("{kind}: {checkpoints} hot checkpoints of 5 MiB, mean ms per tenth:");
    for (part, chunk) in times.chunks(tenth).enumerate() {
        let mean = chunk.iter().sum::<Duration>().as_secs_f64() * 1e3 / chunk.len() as f64;
        let max = chunk.iter().max().expect("one").as_secs_f64() * 1e3;
        println!("  tenth {:>2}: mean {mean:>7.1} · max {max:>7.1}", part + 1);
    }
    println!("  {} on disk", mib(disk_bytes(dir)));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: checkpoint_store sled|fjall registered|hot N DIR";
    let [kind, mode, n, dir] = args.as_slice() else {
        panic!("{usage}");
    };
    let n: usize = n.parse().expect(usage);
    let dir = PathBuf::from(dir);
    match mode.as_str() {
        "registered" => registered(kind, n, &dir),
        "open" => reopen(kind, n, &dir),
        "hot" => hot(kind, n, &dir),
        _ => panic!("{usage}"),
    }
}
