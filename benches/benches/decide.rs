//! decide + apply throughput on one core, for the three shapes of authorization the core
//! sees most: a plain same-currency approval, an approval funded by conversion, and a kid's
//! approval checked against five active controls.
//!
//! Each measured operation is one `decide` of a new authorization and the `apply_owned` of its
//! events, on an account that keeps its holds (the account is rebuilt every batch so it stays
//! within the open-hold bound). Commands are built before timing starts.
//!
//! Run: `cargo bench -p tandem-benches --bench decide`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::{Duration, Instant};

use tandem_core::testkit::{self, World, auth, currency, member, money};
use tandem_core::{
    AccountKind, Actor, AmountLimit, Channel, Command, CommandBody, Controls, Country,
    DecisionContext, LimitScope, Mcc, Money, Role, Window, WindowLimit, apply, apply_owned, decide,
};

/// Authorizations per fresh account; below the open-hold bound.
const BATCH: usize = 4_096;

struct Shape {
    world: World,
    commands: Vec<Command>,
}

fn commands(card: &str, amount: Money, count: usize) -> Vec<Command> {
    (0..count)
        .map(|i| Command {
            key: testkit::key(&format!("bench-{i}")),
            actor: Actor::Network,
            body: CommandBody::Authorize {
                authorization: auth(&format!("a{i}")),
                spend: testkit::spend(card, amount),
                single_message: false,
            },
            references: Vec::new(),
        })
        .collect()
}

fn plain() -> Shape {
    let mut world = World::open(AccountKind::Joint);
    world.add_member("m2", Role::Owner);
    world.issue_card("c1", "m2");
    world.deposit("owner", money(900_000_000_000, "EUR"));
    Shape {
        world,
        commands: commands("c1", money(2_500, "EUR"), BATCH),
    }
}

fn fx() -> Shape {
    let mut world = World::open(AccountKind::Group);
    world.add_member("m2", Role::Member);
    world.issue_card("c1", "m2");
    world.deposit("owner", money(900_000_000_000, "EUR"));
    world.deposit("m2", money(500_000_000_000, "GBP"));
    Shape {
        world,
        commands: commands("c1", money(2_500, "USD"), BATCH),
    }
}

fn kid() -> Shape {
    let mut world = World::open(AccountKind::Kid);
    world.add_member("parent", Role::Guardian);
    world.add_member("kid", Role::Child);
    world.issue_card("c1", "kid");
    world.deposit("parent", money(900_000_000_000, "EUR"));
    let eur = currency("EUR");
    let limit = |window, amount_minor, count| WindowLimit {
        scope: LimitScope::All,
        window,
        amount: Some(AmountLimit {
            currency: eur,
            amount_minor,
        }),
        count,
    };
    let controls = Controls {
        // 1: per transaction, 2: daily amount and count, 3: monthly amount, 4: blocked
        // categories, 5: blocked countries and channels.
        per_transaction: Some(AmountLimit {
            currency: eur,
            amount_minor: 10_000,
        }),
        window_limits: vec![
            limit(Window::Day, 900_000_000_000, Some(1_000_000)),
            limit(Window::Month, 900_000_000_000, None),
        ],
        blocked_mccs: [5813, 5921, 5993]
            .into_iter()
            .map(|c| Mcc::new(c).unwrap())
            .collect(),
        allowed_mccs: None,
        channels: tandem_core::Channels::default()
            .with(Channel::Atm, false)
            .with(Channel::Magstripe, false),
        blocked_countries: ["RU", "KP"]
            .into_iter()
            .map(|c| Country::new(c).unwrap())
            .collect(),
    };
    let outcome = world.as_member(
        "parent",
        CommandBody::SetMemberControls {
            member: member("kid"),
            controls,
        },
    );
    assert!(matches!(outcome, tandem_core::Outcome::Accepted { .. }));
    Shape {
        world,
        commands: commands("c1", money(700, "EUR"), BATCH),
    }
}

fn run(c: &mut Criterion, name: &str, build: fn() -> Shape) {
    let template = build();
    // Every command in the batch must be an approval, or the bench measures declines.
    {
        let mut probe = template.world.account.clone();
        let ctx = DecisionContext {
            now: template.world.now,
            rates: &template.world.rates,
            policy: &template.world.policy,
        };
        for command in &template.commands {
            let decision = decide(&probe, command, &ctx).expect("decides");
            assert!(
                decision.outcome.is_approved(),
                "{name}: {:?}",
                decision.outcome
            );
            for event in &decision.events {
                apply(&mut probe, event);
            }
        }
        probe.validate().expect("invariants hold after the batch");
    }
    let mut group = c.benchmark_group("decide_apply");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter_custom(|iterations| {
            let ctx = DecisionContext {
                now: template.world.now,
                rates: &template.world.rates,
                policy: &template.world.policy,
            };
            let mut elapsed = Duration::ZERO;
            let mut done = 0u64;
            while done < iterations {
                let mut account = template.world.account.clone();
                let take = usize::try_from((iterations - done).min(BATCH as u64)).expect("fits");
                let start = Instant::now();
                for command in &template.commands[..take] {
                    let decision = decide(&account, command, &ctx).expect("decides");
                    black_box(&decision.outcome);
                    for event in decision.events {
                        apply_owned(&mut account, event);
                    }
                }
                elapsed += start.elapsed();
                done += take as u64;
                drop(black_box(account));
            }
            elapsed
        });
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    run(c, "plain_approval", plain);
    run(c, "fx_approval", fx);
    run(c, "kid_five_controls", kid);
}

criterion_group! {
    name = decide_apply;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4)).sample_size(30);
    targets = benches
}
criterion_main!(decide_apply);
