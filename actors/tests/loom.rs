//! Model checks of the snapshot cell under loom (run: `RUSTFLAGS="--cfg loom" cargo test
//! -p tandem-actors --test loom --release`, which `.ci/run` does). Loom explores every
//! interleaving of the threads below against the production `cell.rs`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use tandem_actors::cell::SnapshotCell;

/// A snapshot as published: a sequence number and a payload derived from it, so a torn or
/// mixed value would show.
#[derive(Debug)]
struct Snap {
    seq: u64,
    payload: u64,
}

fn snap(seq: u64) -> Arc<Snap> {
    Arc::new(Snap {
        seq,
        payload: seq * 1_000 + 7,
    })
}

#[test]
fn readers_see_whole_snapshots_and_never_go_back() {
    loom::model(|| {
        let cell = Arc::new(SnapshotCell::new(Snap { seq: 0, payload: 7 }));
        let writer = {
            let cell = cell.clone();
            thread::spawn(move || {
                cell.publish(snap(1));
                cell.publish(snap(2));
            })
        };
        let reader = {
            let cell = cell.clone();
            thread::spawn(move || {
                let first = cell.load();
                let second = cell.load();
                for s in [&first, &second] {
                    assert_eq!(s.payload, s.seq * 1_000 + 7, "a snapshot is never torn");
                }
                assert!(
                    second.seq >= first.seq,
                    "a later load never returns an older snapshot"
                );
                first
            })
        };
        writer.join().unwrap();
        let held = reader.join().unwrap();
        // What a reader held stays valid after newer snapshots replaced it.
        assert_eq!(held.payload, held.seq * 1_000 + 7);
        assert_eq!(cell.load().seq, 2, "the last publish wins");
    });
}

#[test]
fn two_readers_agree_with_the_publish_order() {
    loom::model(|| {
        let cell = Arc::new(SnapshotCell::new(Snap { seq: 0, payload: 7 }));
        let writer = {
            let cell = cell.clone();
            thread::spawn(move || cell.publish(snap(1)))
        };
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let cell = cell.clone();
                thread::spawn(move || cell.load().seq)
            })
            .collect();
        writer.join().unwrap();
        for reader in readers {
            let seen = reader.join().unwrap();
            assert!(seen == 0 || seen == 1);
        }
        assert_eq!(cell.load().seq, 1);
    });
}
