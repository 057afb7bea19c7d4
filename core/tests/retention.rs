//! Retention by count (`limits.rs`): however busy an account is, it keeps at most
//! `CLOSED_LIFECYCLES_KEPT_MAX` closed lifecycles, `OUTCOMES_KEPT_MAX` recorded outcomes and
//! `TOMBSTONES_KEPT_MAX` tombstones, forgetting the oldest in the decision that passes a
//! limit; open lifecycles and their outcomes are never forgotten that way, and replay
//! rebuilds exactly the same state.

use tandem_core::decide::history_items_scanned;
use tandem_core::limits::{
    CLOSED_LIFECYCLES_KEPT_MAX, OUTCOMES_KEPT_MAX, TOMBSTONES_KEPT_MAX, kept_after_trim,
};
use tandem_core::testkit::{World, auth, key, money, spend};
use tandem_core::{
    AccountKind, Actor, Command, CommandBody, Decision, DecisionContext, DeclineReason, Event,
    Outcome, apply, decide,
};

/// Decides and applies without `World`'s per-step validation (which is linear in the
/// history): this test validates every few hundred steps instead.
fn step(world: &mut World, key_text: &str, body: CommandBody) -> Decision {
    let ctx = DecisionContext {
        now: world.now,
        rates: &world.rates,
        policy: &world.policy,
    };
    let command = Command::new(key(key_text), Actor::Network, body);
    let decision = decide(&world.account, &command, &ctx).expect("decides");
    for event in &decision.events {
        apply(&mut world.account, event);
    }
    world.log.extend(decision.events.iter().cloned());
    world.advance_ms(1);
    decision
}

fn authorize(id: &str) -> CommandBody {
    CommandBody::Authorize {
        authorization: auth(id),
        spend: spend("c1", money(100, "EUR")),
        single_message: false,
    }
}

fn clear(id: &str) -> CommandBody {
    CommandBody::Clear {
        authorization: auth(id),
        spend: spend("c1", money(100, "EUR")),
        final_clearing: true,
    }
}

fn closed(world: &World) -> usize {
    world.account.authorizations.len() - world.account.open_holds
}

fn forgotten_batches(decisions: &[Decision]) -> usize {
    decisions
        .iter()
        .filter(|d| {
            d.events
                .iter()
                .any(|e| matches!(e, Event::Forgotten { .. }))
        })
        .count()
}

#[test]
fn a_busy_account_keeps_a_bounded_history_and_its_open_holds() {
    let mut world = World::open(AccountKind::Joint);
    world.issue_card("c1", "owner");
    world.deposit("owner", money(100_000_000, "EUR"));
    // A hold opened first and left open through everything that follows.
    let first = step(&mut world, "open-0100", authorize("open"));
    assert!(first.outcome.is_approved());

    let lifecycles = CLOSED_LIFECYCLES_KEPT_MAX + CLOSED_LIFECYCLES_KEPT_MAX / 2;
    let mut decisions = Vec::new();
    for n in 0..lifecycles {
        decisions.push(step(
            &mut world,
            &format!("a{n}"),
            authorize(&format!("l{n}")),
        ));
        decisions.push(step(&mut world, &format!("c{n}"), clear(&format!("l{n}"))));
        assert!(
            closed(&world) <= CLOSED_LIFECYCLES_KEPT_MAX,
            "closed {}",
            closed(&world)
        );
        // The open hold's outcome is pinned and not counted against the limit.
        assert!(world.account.unpinned_outcomes() <= OUTCOMES_KEPT_MAX);
        assert_eq!(world.account.pinned_outcomes(), 1);
        if n % 512 == 0 {
            world.account.validate().expect("valid");
        }
    }
    world.account.validate().expect("valid");
    assert!(
        closed(&world) >= kept_after_trim(CLOSED_LIFECYCLES_KEPT_MAX),
        "no more is forgotten than the trim: {}",
        closed(&world)
    );
    // Forgetting comes in batches, not on every decision.
    let batches = forgotten_batches(&decisions);
    assert!(
        (1..=2 * lifecycles / (CLOSED_LIFECYCLES_KEPT_MAX / 8)).contains(&batches),
        "{batches} decisions forgot something"
    );

    // The open hold and its outcome are kept: its repeat gets the first answer.
    let repeat = step(&mut world, "open-0100", authorize("open"));
    assert!(
        repeat.replayed,
        "the open hold's repeat is answered from its outcome"
    );
    assert_eq!(repeat.outcome, first.outcome);
    // The newest lifecycle is remembered: its repeat gets the first answer.
    let newest = lifecycles - 1;
    let again = step(
        &mut world,
        &format!("a{newest}"),
        authorize(&format!("l{newest}")),
    );
    assert!(again.replayed);
    // The oldest is past the window: its repeat is a new authorization (docs/domain-model.md 8.4).
    assert!(!world.account.authorizations.contains_key(&auth("l0")));
    let late = step(&mut world, "a0", authorize("l0"));
    assert!(!late.replayed);
    assert!(late.outcome.is_approved(), "{:?}", late.outcome);

    world.assert_replay_matches();
}

#[test]
fn tombstones_are_bounded_and_the_newest_still_voids_its_original() {
    let mut world = World::open(AccountKind::Joint);
    world.issue_card("c1", "owner");
    world.deposit("owner", money(100_000, "EUR"));
    let reversals = TOMBSTONES_KEPT_MAX + TOMBSTONES_KEPT_MAX / 2;
    for n in 0..reversals {
        step(
            &mut world,
            &format!("r{n}"),
            CommandBody::Reverse {
                authorization: auth(&format!("t{n}")),
                replacement: None,
            },
        );
        assert!(world.account.tombstones.len() <= TOMBSTONES_KEPT_MAX);
    }
    world.account.validate().expect("valid");
    let newest = reversals - 1;
    let original = step(&mut world, "late", authorize(&format!("t{newest}")));
    assert!(
        matches!(
            original.outcome,
            Outcome::Declined {
                reason: DeclineReason::VoidedByEarlierReversal,
                ..
            }
        ),
        "{:?}",
        original.outcome
    );
    assert!(!world.account.tombstones.contains_key(&auth("t0")));
    world.assert_replay_matches();
}

/// Retained history each decision of `commands` looks at, on average and at most, run on
/// `world` (`tandem_core::history_items_scanned`).
fn history_walked(world: &mut World, commands: &[Command]) -> (f64, u64) {
    let ctx_world = (world.rates.clone(), world.policy.clone());
    let mut most = 0;
    let before = history_items_scanned();
    for command in commands {
        let ctx = DecisionContext {
            now: world.now,
            rates: &ctx_world.0,
            policy: &ctx_world.1,
        };
        let start = history_items_scanned();
        let decision = decide(&world.account, command, &ctx).expect("decides");
        most = most.max(history_items_scanned() - start);
        assert!(
            decision.outcome.is_approved() || matches!(decision.outcome, Outcome::Accepted { .. }),
            "{:?}",
            decision.outcome
        );
        for event in &decision.events {
            apply(&mut world.account, event);
        }
        world.advance_ms(1);
    }
    let total = history_items_scanned() - before;
    (total as f64 / commands.len() as f64, most)
}

/// Issue 35: what a decision costs beyond its own command does not grow with the holds an
/// account keeps open. With 9,500 holds open (and their outcomes pinned) and the history at
/// its count limits, a decision of the lifecycle mix looks at a bounded number of retained
/// items on average: the retention scan runs once per eighth of a limit, not per decision.
#[test]
fn retained_history_walked_per_decision_stays_bounded_at_the_open_hold_limit() {
    let mut empty = World::aged(0);
    let mut full = World::aged(9_500);
    assert_eq!(full.account.open_holds, 9_500);
    assert!(full.account.pinned_outcomes() >= 9_500 + 950);
    assert!(full.account.unpinned_outcomes() > kept_after_trim(OUTCOMES_KEPT_MAX));
    full.account.validate().expect("valid");

    let commands = tandem_core::testkit::lifecycle_mix("mix", 8_192);
    let (at_zero, _) = history_walked(&mut empty, &commands);
    let (at_limit, most) = history_walked(&mut full, &commands);
    // The index `apply` kept in step is the one the state gives afresh.
    // (A copy starts without the index and builds its own from the state.)
    let mut fresh = full.account.clone();
    assert!(fresh.retention.built().is_none());
    let probe = tandem_core::testkit::lifecycle_mix("probe", 64);
    let ctx = DecisionContext {
        now: full.now,
        rates: &full.rates,
        policy: &full.policy,
    };
    for command in &probe {
        let kept = decide(&full.account, command, &ctx).expect("decides");
        let rebuilt = decide(&fresh, command, &ctx).expect("decides");
        assert_eq!(kept, rebuilt, "the kept index and a fresh one decide alike");
        for event in &kept.events {
            apply(&mut full.account, event);
            apply(&mut fresh, event);
        }
    }
    full.account.validate().expect("valid after the mix");
    // The mix leaves the open holds alone (but for the last lifecycle of it and of the
    // probe, each perhaps cut in two).
    assert!((9_500..=9_502).contains(&full.account.open_holds));
    assert!(full.account.unpinned_outcomes() <= OUTCOMES_KEPT_MAX);
    assert!(closed(&full) <= CLOSED_LIFECYCLES_KEPT_MAX);
    // Retention walks only what it forgets, oldest first from the retention index: a couple
    // of items a decision, at 0 open holds and at 9,500 alike. Before issue 35 every decision
    // at 9,500 walked every outcome (about 19,000).
    eprintln!(
        "retained items walked per decision: {at_zero:.2} at 0 open holds, {at_limit:.2} at 9,500; at most {most} in one"
    );
    assert!(
        at_limit <= 4.0,
        "{at_limit:.2} retained items walked per decision at 9,500 open holds (at 0: {at_zero:.2})"
    );
    assert!(
        at_limit <= at_zero * 1.1 + 0.1,
        "{at_limit:.2} walked per decision at 9,500 open holds, {at_zero:.2} at 0"
    );
    // One decision forgets at most `SWEEP_ITEMS_MAX` of each kind, and walks little more.
    assert!(most <= 2 * 1_024 + 64, "one decision walked {most}");
}

/// A sweep expiring holds of a full account looks at the due holds and walks
/// the history once, not once per expired hold.
#[test]
fn a_sweep_of_a_full_account_costs_little_per_expired_hold() {
    let mut world = World::aged(9_500);
    world.advance_ms(world.policy.hold_expiry_ms);
    let ctx = DecisionContext {
        now: world.now,
        rates: &world.rates,
        policy: &world.policy,
    };
    let sweep = Command::new(key("sweep-1"), Actor::Platform, CommandBody::Sweep);
    let before = history_items_scanned();
    let decision = decide(&world.account, &sweep, &ctx).expect("decides");
    let walked = history_items_scanned() - before;
    let expired = decision
        .events
        .iter()
        .filter(|e| matches!(e, Event::Movement(m) if m.cause == tandem_core::Cause::Expired))
        .count();
    assert_eq!(expired, tandem_core::limits::SWEEP_EXPIRIES_MAX);
    let history = world.account.authorizations.len()
        + world.account.outcomes.len()
        + world.account.tombstones.len();
    assert!(
        walked as usize <= expired + history,
        "the sweep walked {walked} items for {expired} expiries over {history} kept"
    );
    for event in &decision.events {
        apply(&mut world.account, event);
    }
    world.account.validate().expect("valid after the sweep");
    assert_eq!(world.account.open_holds, 9_500 - expired);
}

/// A sweep forgets what is past retention from the retention index when the account has one,
/// and by a walk of the history when it has none: the same items either way.
#[test]
fn a_sweep_forgets_the_same_past_retention_with_or_without_the_index() {
    let mut world = World::aged(2_000);
    assert!(world.account.retention.built().is_some());
    world.advance_ms(world.policy.outcome_retention_ms + world.policy.hold_expiry_ms);
    let ctx = DecisionContext {
        now: world.now,
        rates: &world.rates,
        policy: &world.policy,
    };
    let sweep = Command::new(key("sweep-late"), Actor::Platform, CommandBody::Sweep);
    let with_index = decide(&world.account, &sweep, &ctx).expect("decides");
    let walked = world.account.clone();
    assert!(walked.retention.built().is_none());
    let without_index = decide(&walked, &sweep, &ctx).expect("decides");
    assert_eq!(with_index, without_index);
    let forgotten = with_index
        .events
        .iter()
        .find_map(|e| match e {
            Event::Forgotten {
                outcomes,
                authorizations,
                ..
            } => Some((outcomes.len(), authorizations.len())),
            _ => None,
        })
        .expect("the sweep forgets what is past retention");
    assert_eq!(forgotten, (1_024, 1_024), "a full cap of each kind");
    for event in &with_index.events {
        apply(&mut world.account, event);
    }
    world.account.validate().expect("valid after the sweep");
}
