//! Retention by count (`limits.rs`): however busy an account is, it keeps at most
//! `CLOSED_LIFECYCLES_KEPT_MAX` closed lifecycles, `OUTCOMES_KEPT_MAX` recorded outcomes and
//! `TOMBSTONES_KEPT_MAX` tombstones, forgetting the oldest in the decision that passes a
//! limit; open lifecycles and their outcomes are never forgotten that way, and replay
//! rebuilds exactly the same state.

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
        assert!(world.account.outcomes.len() <= OUTCOMES_KEPT_MAX);
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
