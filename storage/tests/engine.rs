//! The engine on real files: records committed through the Raft log come back from sled,
//! across restarts, and many accounts' records share one group commit.

use std::sync::atomic::Ordering;
use tandem_core::testkit::{World, money, spend};
use tandem_core::{AccountKind, Event, Role};
use tandem_storage::{AccountRecord, Engine, EngineConfig, ExpiryMove};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Drives one account through a few decisions, keeping each decision's events apart.
/// The expiry move of a record that leaves the account's earliest expiry at `to`, as an
/// actor makes it: from what `indexed` held, none if it does not move.
fn moved(indexed: &mut Option<i64>, to: Option<i64>) -> Option<ExpiryMove> {
    let from = std::mem::replace(indexed, to);
    (from != to).then_some(ExpiryMove { from, to })
}

fn decisions(id: &str) -> (World, Vec<Vec<Event>>) {
    let mut world = World::unopened(id);
    let mut batches = Vec::new();
    let mut mark = 0;
    let mut cut = |world: &World, batches: &mut Vec<Vec<Event>>| {
        batches.push(world.log[mark..].to_vec());
        mark = world.log.len();
    };
    world.platform(tandem_core::CommandBody::OpenAccount {
        kind: AccountKind::Joint,
    });
    cut(&world, &mut batches);
    world.add_member("owner", Role::Owner);
    world.issue_card(&format!("{id}-card"), "owner");
    cut(&world, &mut batches);
    world.deposit("owner", money(100_000, "EUR"));
    cut(&world, &mut batches);
    world.authorize("a1", spend(&format!("{id}-card"), money(2_500, "EUR")));
    cut(&world, &mut batches);
    (world, batches)
}

#[test]
fn committed_records_reload_exactly_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (world, batches) = decisions("acct-1");
    runtime().block_on(async {
        let engine = Engine::open(EngineConfig::new(dir.path())).await.unwrap();
        let mut seq = 0;
        let mut indexed = None;
        for (i, events) in batches.iter().enumerate() {
            // Snapshot with the third batch, to exercise the tail being folded.
            let snapshot = if i == 2 {
                let mut partial = tandem_core::Account::new(world.account.id.clone());
                for event in batches[..=i].iter().flatten() {
                    tandem_core::apply(&mut partial, event);
                }
                Some(partial)
            } else {
                None
            };
            let record = AccountRecord::from_events(
                &world.account.id,
                seq,
                events,
                moved(
                    &mut indexed,
                    world.account.next_expiry().map(|t| t.millis()),
                ),
                snapshot.as_ref(),
            )
            .unwrap();
            seq += events.len() as u64;
            let index = engine.submit(record).await.unwrap().unwrap();
            assert!(index > 0);
        }
        let loaded = engine.reader().load_account(&world.account.id).unwrap();
        assert_eq!(loaded, world.account);
        let card = tandem_core::CardId::new("acct-1-card").unwrap();
        assert_eq!(
            engine.reader().card_account(&card).unwrap(),
            Some(world.account.id.clone())
        );
        // A PAN link is in the directory as soon as its write is answered.
        let link = AccountRecord::pan_links(
            &world.account.id,
            vec![(b"pan-hash-1".to_vec(), card.clone())],
        );
        engine.submit(link).await.unwrap().unwrap();
        assert_eq!(
            engine.reader().pan_card(b"pan-hash-1").unwrap(),
            Some((world.account.id.clone(), card.clone()))
        );
        assert_eq!(engine.reader().pan_card(b"pan-hash-2").unwrap(), None);
        // The directory's cache remembers "not linked"; the link that follows replaces it.
        assert_eq!(engine.reader().cached_pan_card(b"pan-hash-2"), Some(None));
        let link = AccountRecord::pan_links(
            &world.account.id,
            vec![(b"pan-hash-2".to_vec(), card.clone())],
        );
        engine.submit(link).await.unwrap().unwrap();
        assert_eq!(
            engine.reader().pan_card(b"pan-hash-2").unwrap(),
            Some((world.account.id.clone(), card.clone()))
        );
        engine.shutdown().await;
    });
    runtime().block_on(async {
        let engine = Engine::open(EngineConfig::new(dir.path())).await.unwrap();
        let loaded = engine.reader().load_account(&world.account.id).unwrap();
        assert_eq!(
            loaded, world.account,
            "a restart rebuilds the account exactly"
        );
        let due = engine.reader().due_expiries(i64::MAX - 1, 10).unwrap();
        assert_eq!(due.len(), 1, "the open hold is in the expiry index");
        // The card and PAN directories come back with the state.
        let card = tandem_core::CardId::new("acct-1-card").unwrap();
        assert_eq!(
            engine.reader().card_account(&card).unwrap(),
            Some(world.account.id.clone())
        );
        assert_eq!(
            engine.reader().cached_card_account(&card),
            Some(Some(world.account.id.clone()))
        );
        assert_eq!(
            engine.reader().pan_card(b"pan-hash-1").unwrap(),
            Some((world.account.id.clone(), card.clone()))
        );
        assert_eq!(
            engine.reader().pan_card(b"pan-hash-2").unwrap(),
            Some((world.account.id.clone(), card))
        );
        engine.shutdown().await;
    });
}

#[test]
fn concurrent_accounts_share_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let accounts: Vec<(World, Vec<Vec<Event>>)> =
        (0..64).map(|i| decisions(&format!("acct-{i}"))).collect();
    runtime().block_on(async {
        let engine = Engine::open(EngineConfig::new(dir.path())).await.unwrap();
        let mut answers = Vec::new();
        for (world, batches) in &accounts {
            let all: Vec<Event> = batches.iter().flatten().cloned().collect();
            let record =
                AccountRecord::from_events(&world.account.id, 0, &all, None, None).unwrap();
            answers.push(engine.submit(record));
        }
        for answer in answers {
            answer.await.unwrap().unwrap();
        }
        let records = engine.stats().records.load(Ordering::Relaxed);
        let batches = engine.stats().batches.load(Ordering::Relaxed);
        assert_eq!(records, 64);
        assert!(
            batches < records,
            "64 records took {batches} log writes: no group commit"
        );
        for (world, _) in &accounts {
            assert_eq!(
                engine.reader().load_account(&world.account.id).unwrap(),
                world.account
            );
        }
        engine.shutdown().await;
    });
}

/// Checkpoints far apart: nothing applied reaches sled until one is asked for.
fn rare_checkpoints(dir: &std::path::Path) -> EngineConfig {
    EngineConfig {
        snapshot_every_entries: 1_000_000_000,
        checkpoint_every: std::time::Duration::from_secs(3_600),
        ..EngineConfig::new(dir)
    }
}

/// Restarts the engine on `dir` and checks the account comes back exactly as `world` has it.
fn reopens_with(dir: &std::path::Path, world: &World) {
    runtime().block_on(async {
        let engine = Engine::open(rare_checkpoints(dir)).await.unwrap();
        assert_eq!(
            engine.reader().load_account(&world.account.id).unwrap(),
            world.account
        );
        engine.shutdown().await;
    });
}

/// sled is a checkpoint: what was applied after it lives in memory, and a restart replays it
/// from the log's tail; a checkpoint then puts it in sled up to the index it names.
#[test]
fn the_tail_after_the_last_checkpoint_is_replayed_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (world, batches) = decisions("acct-tail");
    let card = tandem_core::CardId::new("acct-tail-card").unwrap();
    runtime().block_on(async {
        let engine = Engine::open(rare_checkpoints(dir.path())).await.unwrap();
        let all: Vec<Event> = batches.iter().flatten().cloned().collect();
        let mut record = AccountRecord::from_events(
            &world.account.id,
            0,
            &all,
            moved(&mut None, Some(1_000)),
            None,
        )
        .unwrap();
        record.cards = vec![card.clone()];
        engine.submit(record).await.unwrap().unwrap();
        // Applied and readable, but no checkpoint holds it yet.
        assert_eq!(
            engine.reader().load_account(&world.account.id).unwrap(),
            world.account
        );
        assert_eq!(engine.reader().applied().unwrap(), None);
        engine.shutdown().await;
    });
    runtime().block_on(async {
        let engine = Engine::open(rare_checkpoints(dir.path())).await.unwrap();
        assert_eq!(
            engine.reader().load_account(&world.account.id).unwrap(),
            world.account,
            "the tail was not replayed"
        );
        assert_eq!(
            engine.reader().card_account(&card).unwrap(),
            Some(world.account.id.clone())
        );
        assert_eq!(
            engine.reader().due_expiries(1_000, 10).unwrap(),
            vec![(1_000, world.account.id.clone())]
        );
        assert_eq!(
            engine.reader().due_expiries(i64::MAX, 10).unwrap(),
            vec![(1_000, world.account.id.clone())],
            "the replayed tail moved the expiry index's entry, and only there"
        );
        let covered = engine
            .checkpoint()
            .await
            .unwrap()
            .expect("something applied");
        let in_sled = engine.reader().applied().unwrap().expect("checkpointed");
        assert_eq!(in_sled.index, covered);
        engine.shutdown().await;
    });
    // After the checkpoint the same state comes from sled, with the expiry index's entry.
    reopens_with(dir.path(), &world);
    runtime().block_on(async {
        let engine = Engine::open(rare_checkpoints(dir.path())).await.unwrap();
        assert_eq!(
            engine.reader().due_expiries(i64::MAX, 10).unwrap(),
            vec![(1_000, world.account.id.clone())]
        );
        engine.shutdown().await;
    });
}

/// An account's records applied one by one go to sled as one value per checkpoint (sled's
/// insert was the checkpoint's cost), and read back the same: whole, from any sequence
/// number, and with later records after them, across restarts.
#[test]
fn a_checkpoint_joins_an_accounts_records_into_one_value() {
    let dir = tempfile::tempdir().unwrap();
    let (world, batches) = decisions("acct-joined");
    let (first, last) = batches.split_at(batches.len() - 1);
    let submit = |engine: &Engine, seq: usize, events: &[Event]| {
        let record =
            AccountRecord::from_events(&world.account.id, seq as u64, events, None, None).unwrap();
        engine.submit(record)
    };
    let count = |dir: &std::path::Path| stored_keys(dir, b"a:acct-joined\0e");
    runtime().block_on(async {
        let engine = Engine::open(rare_checkpoints(dir.path())).await.unwrap();
        let mut seq = 0;
        for events in first {
            submit(&engine, seq, events).await.unwrap().unwrap();
            seq += events.len();
        }
        engine
            .checkpoint()
            .await
            .unwrap()
            .expect("something applied");
        engine.shutdown().await;
    });
    assert_eq!(
        count(dir.path()),
        1,
        "one value for the checkpoint's records"
    );
    runtime().block_on(async {
        let engine = Engine::open(rare_checkpoints(dir.path())).await.unwrap();
        let seq: usize = first.iter().map(Vec::len).sum();
        submit(&engine, seq, &last[0]).await.unwrap().unwrap();
        engine
            .checkpoint()
            .await
            .unwrap()
            .expect("something applied");
        let reader = engine.reader();
        assert_eq!(
            reader.load_account(&world.account.id).unwrap(),
            world.account
        );
        for from in 0..world.log.len() as u64 {
            let mut seen = Vec::new();
            reader
                .each_event(&world.account.id, from, |seq, event| {
                    seen.push((seq, event));
                    true
                })
                .unwrap();
            let expected: Vec<_> = (from..)
                .zip(world.log[from as usize..].iter().cloned())
                .collect();
            assert_eq!(seen, expected, "events from {from}");
        }
        engine.shutdown().await;
    });
    assert_eq!(
        count(dir.path()),
        2,
        "the second checkpoint's record is a value of its own"
    );
    reopens_with(dir.path(), &world);
}

/// Reads race checkpoints: a checkpoint joins a layer's records under the first one's key,
/// so a key found in memory can be gone from memory and sled a moment later. Every read from
/// any sequence number still sees every committed event from there on, contiguously.
#[test]
fn reads_racing_checkpoints_miss_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let (mut world, mut batches) = decisions("acct-race");
    let card = "acct-race-card";
    for i in 0..400 {
        let mark = world.log.len();
        world.authorize(&format!("r{i}"), spend(card, money(1, "EUR")));
        batches.push(world.log[mark..].to_vec());
    }
    let id = world.account.id.clone();
    runtime().block_on(async {
        let engine = Engine::open(rare_checkpoints(dir.path())).await.unwrap();
        let reader = engine.reader().clone();
        let committed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let checker = {
            let (committed, stop, id) = (committed.clone(), stop.clone(), id.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(Ordering::Acquire) {
                    let known = committed.load(Ordering::Acquire);
                    // The last few events: the ones still in a layer a checkpoint is writing.
                    let from = known.saturating_sub(1 + reads % 8);
                    let mut next = from;
                    reader
                        .each_event(&id, from, |seq, _| {
                            assert_eq!(seq, next, "reading from {from}: a gap");
                            next += 1;
                            true
                        })
                        .unwrap();
                    assert!(
                        next >= known,
                        "reading from {from} ended at {next} of {known}"
                    );
                    reads += 1;
                }
                reads
            })
        };
        let mut seq = 0u64;
        for (i, events) in batches.iter().enumerate() {
            let record = AccountRecord::from_events(&id, seq, events, None, None).unwrap();
            engine.submit(record).await.unwrap().unwrap();
            seq += events.len() as u64;
            committed.store(seq, Ordering::Release);
            if i % 4 == 3 {
                engine.checkpoint().await.unwrap();
            }
        }
        stop.store(true, Ordering::Release);
        let reads = checker.join().expect("no read missed an event");
        assert!(reads > 0);
        engine.shutdown().await;
    });
}

#[test]
fn commits_and_barriers_are_answered_in_submission_order() {
    let dir = tempfile::tempdir().unwrap();
    let accounts: Vec<(World, Vec<Vec<Event>>)> =
        (0..8).map(|i| decisions(&format!("ordered-{i}"))).collect();
    runtime().block_on(async {
        let faults = tandem_storage::WriteFaults::default();
        let config = EngineConfig {
            write_faults: faults.clone(),
            ..EngineConfig::new(dir.path())
        };
        let engine = Engine::open(config).await.unwrap();
        let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (all_done, mut finished) = tokio::sync::mpsc::unbounded_channel();
        let done = |label: String| {
            let heard = heard.clone();
            let all_done = all_done.clone();
            tandem_storage::Done::new(move |result| {
                heard.lock().unwrap().push((label, result.is_ok()));
                let _ = all_done.send(());
            })
        };
        // Nothing in flight: a barrier is answered at once.
        engine
            .reserve()
            .unwrap()
            .submit(None, done("idle barrier".into()));
        finished.recv().await.unwrap();
        // Slow writes keep records in flight while barriers queue behind them.
        faults.delay_writes(std::time::Duration::from_millis(20));
        let mut expected = Vec::new();
        for (i, (world, batches)) in accounts.iter().enumerate() {
            let all: Vec<Event> = batches.iter().flatten().cloned().collect();
            let record =
                AccountRecord::from_events(&world.account.id, 0, &all, None, None).unwrap();
            engine
                .reserve()
                .unwrap()
                .submit(Some(record), done(format!("record {i}")));
            engine
                .reserve()
                .unwrap()
                .submit(None, done(format!("barrier {i}")));
            expected.push(format!("record {i}"));
            expected.push(format!("barrier {i}"));
        }
        for _ in 0..expected.len() {
            finished.recv().await.unwrap();
        }
        faults.delay_writes(std::time::Duration::ZERO);
        let heard = heard.lock().unwrap().clone();
        assert_eq!(heard[0], ("idle barrier".to_string(), true));
        let order: Vec<String> = heard[1..].iter().map(|(l, _)| l.clone()).collect();
        assert_eq!(order, expected, "answers left submission order");
        assert!(heard.iter().all(|(_, ok)| *ok), "{heard:?}");
        // Every record a barrier waited behind is applied by the time the barrier is heard.
        for (world, _) in &accounts {
            assert_eq!(
                engine.reader().load_account(&world.account.id).unwrap(),
                world.account
            );
        }
        engine.shutdown().await;
    });
}

#[test]
fn a_submission_the_engine_drops_is_told_it_is_shutting_down() {
    let (told, heard) = std::sync::mpsc::channel();
    let done = tandem_storage::Done::new(move |result| {
        let _ = told.send(result);
    });
    drop(done);
    assert_eq!(
        heard.try_recv().unwrap(),
        Err(tandem_storage::CommitError::ShuttingDown)
    );
}

#[test]
fn a_pan_keeps_its_first_owner_even_if_a_second_link_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let first = (
        tandem_core::AccountId::new("owner-1").unwrap(),
        tandem_core::CardId::new("card-1").unwrap(),
    );
    let second = (
        tandem_core::AccountId::new("owner-2").unwrap(),
        tandem_core::CardId::new("card-2").unwrap(),
    );
    runtime().block_on(async {
        let engine = Engine::open(EngineConfig::new(dir.path())).await.unwrap();
        let link = |(account, card): &(tandem_core::AccountId, tandem_core::CardId)| {
            AccountRecord::pan_links(account, vec![(b"one-pan".to_vec(), card.clone())])
        };
        engine.submit(link(&first)).await.unwrap().unwrap();
        // In separate log entries, and then both in one.
        engine.submit(link(&second)).await.unwrap().unwrap();
        let answers = [engine.submit(link(&second)), engine.submit(link(&first))];
        for answer in answers {
            answer.await.unwrap().unwrap();
        }
        assert_eq!(
            engine.reader().pan_card(b"one-pan").unwrap(),
            Some(first.clone())
        );
        // The same link again is no conflict.
        engine.submit(link(&first)).await.unwrap().unwrap();
        engine.checkpoint().await.unwrap();
        engine.submit(link(&second)).await.unwrap().unwrap();
        engine.shutdown().await;
    });
    // After a restart (checkpoint plus a replayed tail), the first owner still stands.
    runtime().block_on(async {
        let engine = Engine::open(EngineConfig::new(dir.path())).await.unwrap();
        assert_eq!(
            engine.reader().pan_card(b"one-pan").unwrap(),
            Some(first.clone())
        );
        engine.shutdown().await;
    });
}

/// The card and PAN directories are not loaded at open: a lookup reads the checkpoint and
/// keeps what it read in a cache that never holds more than it is given, and an entry it
/// forgot is read again.
#[test]
fn the_directories_are_read_when_asked_for_within_a_bounded_cache() {
    let dir = tempfile::tempdir().unwrap();
    let owner = |i: usize| {
        (
            tandem_core::AccountId::new(&format!("owner-{i}")).unwrap(),
            tandem_core::CardId::new(&format!("card-{i}")).unwrap(),
        )
    };
    let pan = |i: usize| format!("pan-{i}").into_bytes();
    let config = || {
        let mut config = EngineConfig::new(dir.path());
        config.checkpoint.directory_cache_entries = 64;
        config
    };
    runtime().block_on(async {
        let engine = Engine::open(config()).await.unwrap();
        for i in 0..300 {
            let (account, card) = owner(i);
            engine
                .submit(AccountRecord::pan_links(&account, vec![(pan(i), card)]))
                .await
                .unwrap()
                .unwrap();
        }
        assert!(engine.reader().directory_cached() <= 64);
        engine.checkpoint().await.unwrap();
        engine.shutdown().await;
    });
    runtime().block_on(async {
        let engine = Engine::open(config()).await.unwrap();
        assert_eq!(
            engine.reader().directory_cached(),
            0,
            "nothing loaded at open"
        );
        assert_eq!(engine.reader().cached_pan_card(&pan(7)), None);
        assert_eq!(engine.reader().pan_card(&pan(7)).unwrap(), Some(owner(7)));
        assert_eq!(
            engine.reader().cached_pan_card(&pan(7)),
            Some(Some(owner(7)))
        );
        assert_eq!(engine.reader().directory_cached(), 1);
        // Twice over every PAN: each answer is right though the cache holds at most 64.
        for _ in 0..2 {
            for i in 0..300 {
                assert_eq!(engine.reader().pan_card(&pan(i)).unwrap(), Some(owner(i)));
                assert!(engine.reader().directory_cached() <= 64);
            }
        }
        assert_eq!(engine.reader().pan_card(b"no-such-pan").unwrap(), None);
        engine.shutdown().await;
    });
}

/// The card directory keeps a card id's first owner the same way, decided from committed
/// state alone.
#[test]
fn a_card_id_keeps_its_first_owner_even_if_a_second_account_commits_it() {
    let dir = tempfile::tempdir().unwrap();
    let card = tandem_core::CardId::new("shared-card").unwrap();
    let first = tandem_core::AccountId::new("card-owner-1").unwrap();
    let second = tandem_core::AccountId::new("card-owner-2").unwrap();
    let issued = |account: &tandem_core::AccountId| {
        let mut record = AccountRecord::pan_links(account, Vec::new());
        record.cards = vec![card.clone()];
        record
    };
    runtime().block_on(async {
        let engine = Engine::open(rare_checkpoints(dir.path())).await.unwrap();
        engine.submit(issued(&first)).await.unwrap().unwrap();
        engine.submit(issued(&second)).await.unwrap().unwrap();
        // Again, both at once (often in one log entry), the second first.
        let answers = [
            engine.submit(issued(&second)),
            engine.submit(issued(&first)),
        ];
        for answer in answers {
            answer.await.unwrap().unwrap();
        }
        assert_eq!(
            engine.reader().card_account(&card).unwrap(),
            Some(first.clone())
        );
        engine.checkpoint().await.unwrap();
        engine.submit(issued(&second)).await.unwrap().unwrap();
        engine.shutdown().await;
    });
    runtime().block_on(async {
        let engine = Engine::open(rare_checkpoints(dir.path())).await.unwrap();
        assert_eq!(
            engine.reader().card_account(&card).unwrap(),
            Some(first.clone()),
            "after a checkpoint and a replayed tail"
        );
        engine.shutdown().await;
    });
}

/// Committed accounts in memory: an account at rest (no actor holds it, as on a node with no
/// actors) is kept current by every committed record, applied once; a lent one is left to its
/// actor; and one nobody touches leaves memory at the second durable checkpoint after.
#[test]
fn an_idle_node_lets_accounts_at_rest_leave_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (world, batches) = decisions("acct-idle");
    let id = world.account.id.clone();
    runtime().block_on(async {
        let config = EngineConfig {
            snapshot_every_entries: 1_000_000_000,
            checkpoint_every: std::time::Duration::from_millis(20),
            ..EngineConfig::new(dir.path())
        };
        let engine = Engine::open(config).await.unwrap();
        let mut seq = 0;
        for events in &batches {
            let record = AccountRecord::from_events(&id, seq, events, None, None).unwrap();
            seq += events.len() as u64;
            engine.submit(record).await.unwrap().unwrap();
        }
        engine.checkpoint().await.unwrap();
        // Read once, then nothing more is written: no checkpoint has anything to write.
        engine.reader().load_resting(&id).unwrap();
        let accounts = engine.reader().accounts();
        assert_eq!(accounts.resting(), 1);
        let mut waited = 0;
        while accounts.resting() > 0 && waited < 500 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            waited += 1;
        }
        assert_eq!(
            accounts.resting(),
            0,
            "idle and clean: it left memory with no new write"
        );
        assert_eq!(engine.reader().load_account(&id).unwrap(), world.account);
        engine.shutdown().await;
    });
}

#[test]
fn committed_records_keep_the_accounts_at_rest_current() {
    let dir = tempfile::tempdir().unwrap();
    let (world, batches) = decisions("acct-rest");
    let id = world.account.id.clone();
    runtime().block_on(async {
        let engine = Engine::open(rare_checkpoints(dir.path())).await.unwrap();
        let accounts = engine.reader().accounts();
        let seq_of = |accounts: &tandem_storage::Accounts| accounts.read(&id, |r| r.seq);
        assert_eq!(
            seq_of(accounts),
            None,
            "nothing is in memory before it is read"
        );
        let mut seq = 0;
        let submit = |events: &[Event], seq: &mut u64| {
            let record = AccountRecord::from_events(&id, *seq, events, None, None).unwrap();
            *seq += events.len() as u64;
            engine.submit(record)
        };
        submit(&batches[0], &mut seq).await.unwrap().unwrap();
        // Loaded from the checkpoint once, then kept.
        let loaded = engine.reader().load_resting(&id).unwrap();
        assert_eq!(loaded.seq, seq);
        assert_eq!(seq_of(accounts), Some(seq));
        // Later records are applied to it in memory, each once.
        for events in &batches[1..] {
            submit(events, &mut seq).await.unwrap().unwrap();
        }
        let held = accounts.read(&id, |r| r.clone()).unwrap();
        assert_eq!(
            held, world.account,
            "the records were applied in memory exactly once"
        );
        assert_eq!(held, engine.reader().load_account(&id).unwrap());
        // Lent to an actor: records are its business; given back, it is at rest again.
        let (lease, resting) = accounts.lend(&id);
        let resting = resting.expect("it was at rest");
        assert_eq!(
            seq_of(accounts),
            None,
            "a lent account is not read from memory"
        );
        accounts.give_back(&id, lease, resting);
        assert_eq!(seq_of(accounts), Some(seq));
        // A stale lease gives nothing back.
        let (stale, _) = accounts.lend(&id);
        let (lease, _) = accounts.lend(&id);
        let mut wrong = world.account.clone();
        wrong.seq += 1_000;
        accounts.give_back(&id, stale, wrong);
        assert!(accounts.is_lent(&id), "the stale lease changed nothing");
        accounts.end_lease(&id, lease);
        assert_eq!(
            accounts.resting(),
            0,
            "an ended lease leaves it to the checkpoint"
        );
        // Back at rest, then untouched across two checkpoints: it leaves memory.
        engine.reader().load_resting(&id).unwrap();
        assert_eq!(accounts.resting(), 1);
        engine.checkpoint().await.unwrap();
        assert_eq!(accounts.resting(), 1, "touched since the last checkpoint");
        // A checkpoint needs something newly applied: another account's write.
        let other = tandem_core::AccountId::new("acct-other").unwrap();
        let link = AccountRecord::pan_links(&other, Vec::new());
        engine.submit(link).await.unwrap().unwrap();
        engine.checkpoint().await.unwrap();
        assert_eq!(accounts.resting(), 0, "idle and clean: it left memory");
        assert_eq!(engine.reader().load_account(&id).unwrap(), world.account);
        engine.shutdown().await;
    });
}

/// Data directories from before the expiry index moved to memory hold a `w:` pointer beside
/// each account's `x:` entry: the entry is found from `x:` alone, and the pointers go at open.
/// They keep their checkpoint in sled, which moves into the store at that open.
#[test]
fn an_older_expiry_index_is_read_and_its_pointers_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let account = tandem_core::AccountId::new("old-layout").unwrap();
    let at: i64 = 1_700_000_000_000;
    {
        let db = sled::open(dir.path().join(tandem_storage::LEGACY_SLED_DIR)).unwrap();
        let mut x = b"x:".to_vec();
        x.extend_from_slice(&((at as u64) ^ (1 << 63)).to_be_bytes());
        x.extend_from_slice(account.as_str().as_bytes());
        db.insert(x, Vec::<u8>::new()).unwrap();
        let w = [b"w:".as_slice(), account.as_str().as_bytes()].concat();
        db.insert(w, tandem_storage::codec::encode_value(&at).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    runtime().block_on(async {
        let engine = Engine::open(rare_checkpoints(dir.path())).await.unwrap();
        assert_eq!(
            engine.reader().due_expiries(at, 10).unwrap(),
            vec![(at, account.clone())]
        );
        // The account's hold closes: its entry moves out of the index.
        let mut record = AccountRecord::pan_links(&account, Vec::new());
        record.expiry = Some(ExpiryMove {
            from: Some(at),
            to: None,
        });
        engine.submit(record).await.unwrap().unwrap();
        assert!(engine.reader().due_expiries(at, 10).unwrap().is_empty());
        engine.checkpoint().await.unwrap();
        engine.shutdown().await;
    });
    assert!(
        !dir.path().join(tandem_storage::LEGACY_SLED_DIR).exists(),
        "sled's checkpoint moved into the store"
    );
    assert_eq!(
        stored_keys(dir.path(), b"w:"),
        0,
        "the old pointers are gone"
    );
    assert_eq!(stored_keys(dir.path(), b"x:"), 0, "the moved entry is gone");
}

/// Records of log format 1 say where an account's expiry entry moved to but not from: the
/// first one read makes the state machine read every entry, and those move from then on,
/// beside records that say both.
#[test]
fn format_1_records_move_the_expiry_entries_they_do_not_locate() {
    let dir = tempfile::tempdir().unwrap();
    let config = rare_checkpoints(dir.path());
    let faults = config.write_faults.clone();
    let a = tandem_core::AccountId::new("acct-format1-a").unwrap();
    let b = tandem_core::AccountId::new("acct-format1-b").unwrap();
    // Written in format 1 (which drops `from`: it says a wrong one here to show it is unused).
    let format1 = |account: &tandem_core::AccountId, to: Option<i64>| {
        let mut record = AccountRecord::pan_links(account, Vec::new());
        record.expiry = Some(ExpiryMove { from: None, to });
        record
    };
    let format2 = |account: &tandem_core::AccountId, from: Option<i64>, to: Option<i64>| {
        let mut record = AccountRecord::pan_links(account, Vec::new());
        record.expiry = Some(ExpiryMove { from, to });
        record
    };
    runtime().block_on(async {
        let engine = Engine::open(config).await.unwrap();
        engine
            .submit(format2(&a, None, Some(1_000)))
            .await
            .unwrap()
            .unwrap();
        engine
            .submit(format2(&b, None, Some(2_000)))
            .await
            .unwrap()
            .unwrap();
        // In sled, beside what is only in memory.
        engine.checkpoint().await.unwrap();
        engine
            .submit(format2(&b, Some(2_000), Some(2_500)))
            .await
            .unwrap()
            .unwrap();
        faults.write_log_format_1(true);
        engine
            .submit(format1(&a, Some(3_000)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            engine.reader().due_expiries(i64::MAX, 10).unwrap(),
            vec![(2_500, b.clone()), (3_000, a.clone())],
            "a's entry moved from where the state had it"
        );
        engine.submit(format1(&b, None)).await.unwrap().unwrap();
        faults.write_log_format_1(false);
        engine
            .submit(format2(&a, Some(3_000), Some(500)))
            .await
            .unwrap()
            .unwrap();
        faults.write_log_format_1(true);
        engine
            .submit(format1(&a, Some(4_000)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            engine.reader().due_expiries(i64::MAX, 10).unwrap(),
            vec![(4_000, a.clone())],
            "format-1 moves follow the format-2 moves between them"
        );
        engine.shutdown().await;
    });
    // The same log replayed after a restart leaves the same entries.
    runtime().block_on(async {
        let engine = Engine::open(rare_checkpoints(dir.path())).await.unwrap();
        assert_eq!(
            engine.reader().due_expiries(i64::MAX, 10).unwrap(),
            vec![(4_000, a.clone())]
        );
        engine.shutdown().await;
    });
}

/// Keys starting with `prefix` in the checkpoint store of the stopped engine in `data_dir`.
fn stored_keys(data_dir: &std::path::Path, prefix: &[u8]) -> usize {
    let db = fjall::Database::builder(data_dir.join(tandem_storage::CHECKPOINT_DIR))
        .open()
        .unwrap();
    let state = db
        .keyspace("state", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    state.prefix(prefix).count()
}

fn setting(name: &str, value: Option<&str>) -> tandem_storage::Setting {
    tandem_storage::Setting {
        name: name.to_owned(),
        value: value.map(|v| v.as_bytes().to_vec()),
    }
}

fn setting_of(engine: &Engine, name: &str) -> Option<String> {
    let view = engine.reader().settings().current();
    view.get(name)
        .map(|v| String::from_utf8(v.to_vec()).unwrap())
}

/// Settings (API keys, FX rates) are log entries: applied when answered, replayed from the
/// log after a restart, kept by a checkpoint, and carried by a backup into a restored node.
#[test]
fn settings_are_applied_replayed_checkpointed_and_backed_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    runtime().block_on(async {
        let engine = Engine::open(rare_checkpoints(&data)).await.unwrap();
        engine
            .submit_settings(vec![
                setting("api-key:a", Some("one")),
                setting("api-key:b", Some("two")),
            ])
            .await
            .unwrap()
            .unwrap();
        engine
            .submit_settings(vec![setting("api-key:a", None), setting("fx", Some("r1"))])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(setting_of(&engine, "api-key:a"), None, "removed");
        assert_eq!(setting_of(&engine, "api-key:b").as_deref(), Some("two"));
        engine.shutdown().await;
    });
    assert_eq!(stored_keys(&data, b"s:"), 0, "not checkpointed yet");
    runtime().block_on(async {
        let engine = Engine::open(rare_checkpoints(&data)).await.unwrap();
        assert_eq!(setting_of(&engine, "fx").as_deref(), Some("r1"), "replayed");
        assert_eq!(setting_of(&engine, "api-key:a"), None);
        engine.checkpoint().await.unwrap();
        engine.shutdown().await;
    });
    assert_eq!(stored_keys(&data, b"s:"), 2, "checkpointed: b and fx");
    let backup = dir.path().join("backup");
    let restored = dir.path().join("restored");
    runtime().block_on(async {
        let engine = Engine::open(rare_checkpoints(&data)).await.unwrap();
        assert_eq!(setting_of(&engine, "api-key:b").as_deref(), Some("two"));
        engine.backup(&data, &backup).await.unwrap();
        engine.shutdown().await;
        tandem_storage::restore(&backup, &restored).await.unwrap();
        let engine = Engine::open(rare_checkpoints(&restored)).await.unwrap();
        assert_eq!(setting_of(&engine, "fx").as_deref(), Some("r1"));
        assert_eq!(setting_of(&engine, "api-key:b").as_deref(), Some("two"));
        assert_eq!(setting_of(&engine, "api-key:a"), None);
        engine.shutdown().await;
    });
}

/// Every entry carries the leader's clock; every node keeps the latest it applied as its time
/// floor, through a restart that replays the log and one that starts from a checkpoint.
#[test]
fn the_time_floor_follows_committed_entries_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let before = tandem_core::Timestamp::now().millis();
    let floor = runtime().block_on(async {
        let engine = Engine::open(rare_checkpoints(dir.path())).await.unwrap();
        assert_eq!(engine.reader().time_floor(), 0, "nothing committed yet");
        engine
            .submit_settings(vec![setting("t", Some("1"))])
            .await
            .unwrap()
            .unwrap();
        let floor = engine.reader().time_floor();
        assert!(floor >= before, "the entry's time is its leader's clock");
        engine.shutdown().await;
        floor
    });
    runtime().block_on(async {
        let engine = Engine::open(rare_checkpoints(dir.path())).await.unwrap();
        assert_eq!(engine.reader().time_floor(), floor, "replayed from the log");
        engine.checkpoint().await.unwrap();
        engine.shutdown().await;
    });
    runtime().block_on(async {
        let engine = Engine::open(rare_checkpoints(dir.path())).await.unwrap();
        assert!(
            engine.reader().time_floor() >= floor,
            "kept by the checkpoint (and raised by the entries since)"
        );
        engine.shutdown().await;
    });
}

/// A snapshot handed out to be sent (or backed up) reads the state at its index while writes
/// go on, and holds every checkpoint while it is held: openraft purges the log after each
/// one, and a purge past the snapshot would leave its follower short of the entries after it.
#[test]
fn a_snapshot_being_sent_reads_its_index_and_holds_the_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let config = EngineConfig {
            snapshot_every_entries: 2,
            checkpoint_every: std::time::Duration::from_millis(20),
            ..EngineConfig::new(dir.path())
        };
        let engine = Engine::open(config).await.unwrap();
        engine
            .submit_settings(vec![setting("a", Some("1"))])
            .await
            .unwrap()
            .unwrap();
        engine.checkpoint().await.unwrap();
        let held = engine.raft().metrics().borrow().snapshot;
        let snapshot = engine.raft().get_snapshot().await.unwrap().unwrap();
        let index = snapshot.meta.last_log_id.unwrap().index;
        for i in 0..10 {
            engine
                .submit_settings(vec![setting(&format!("b{i}"), Some("2"))])
                .await
                .unwrap()
                .unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            engine.raft().metrics().borrow().snapshot,
            held,
            "no checkpoint while a snapshot is held, 10 entries and 15 periods later"
        );
        let records: Vec<(Vec<u8>, Vec<u8>)> = snapshot
            .snapshot
            .records()
            .unwrap()
            .collect::<std::io::Result<_>>()
            .unwrap();
        assert!(records.iter().any(|(key, _)| key == b"s:a"));
        assert!(
            !records.iter().any(|(key, _)| key.starts_with(b"s:b")),
            "the snapshot is the state at its index, not what came after"
        );
        drop(snapshot);
        engine
            .raft()
            .wait(Some(std::time::Duration::from_secs(10)))
            .metrics(
                |m| m.snapshot.is_some_and(|s| s.index >= index + 10),
                "checkpoints resume once the snapshot is let go",
            )
            .await
            .unwrap();
        engine.shutdown().await;
    });
}
