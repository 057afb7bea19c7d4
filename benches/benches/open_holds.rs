//! Does a decision cost more on an account that keeps many holds open? decide + apply of the
//! settled lifecycle mix (`testkit::lifecycle_mix`: a hold, one in ten incremented, then its
//! clearing) on a hot account that keeps 0, 1,000, 5,000 or 9,500 holds open with its retained
//! history at its count limits (`World::aged`), so every decision pays whatever retention
//! costs. Issue 35's goal: the 9,500 figure within 1.3× of the 0 figure.
//!
//! The account is not rebuilt between batches: it runs on, as an actor's copy does, through a
//! ring of commands long enough that each lifecycle and outcome of one turn is forgotten
//! before the next turn sends it again, one millisecond apart. The allocator is mimalloc, as
//! in `tandem serve` (decision 0020): with glibc's, a large account's heap makes every
//! allocation dearer and the figure measures the allocator.
//!
//! Run: `cargo bench -p tandem-benches --bench open_holds`.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

use tandem_core::testkit::{self, World};
use tandem_core::{DecisionContext, apply_owned, decide};

fn open_holds(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide_apply_open_holds");
    group.throughput(Throughput::Elements(1));
    let commands = testkit::lifecycle_mix("bench", 65_536);
    for open in [0, 1_000, 5_000, 9_500] {
        let world = World::aged(open);
        let mut account = world.account.clone();
        let mut next = 0;
        group.bench_function(format!("lifecycle_mix_{open}_open"), |b| {
            b.iter(|| {
                let command = &commands[next % commands.len()];
                // A millisecond a command, so the oldest retained is the one sent longest ago.
                let ctx = DecisionContext {
                    now: world.now.saturating_add_millis(next as i64),
                    rates: &world.rates,
                    policy: &world.policy,
                };
                next += 1;
                let decision = decide(&account, command, &ctx).expect("decides");
                black_box(&decision.outcome);
                for event in decision.events {
                    apply_owned(&mut account, event);
                }
            });
        });
        assert!(
            account.open_holds >= open && account.open_holds <= open + 1,
            "the mix keeps {open} holds open (one more if it stopped inside a lifecycle): {}",
            account.open_holds
        );
    }
    group.finish();
}

criterion_group! {
    name = decide_apply_open_holds;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4)).sample_size(30);
    targets = open_holds
}
criterion_main!(decide_apply_open_holds);
