//! A lifecycle named by a card network's other keys (`Command::references`, ISO 8583 DE 90):
//! later messages find it under any of them, a reversal that comes first leaves its
//! tombstone where the original will look, and the references go when the lifecycle does.

use tandem_core::testkit::{World, auth, key, money, spend};
use tandem_core::{
    AccountKind, Actor, Command, CommandBody, DeclineReason, Event, LifecycleState, Outcome, Role,
};

/// An account with 100.00 EUR and a card `c1` for its owner.
fn funded() -> World {
    let mut world = World::open(AccountKind::Joint);
    world.add_member("m2", Role::Member);
    world.issue_card("c1", "owner");
    world.deposit("owner", money(10_000, "EUR"));
    world
}

fn network(key_text: &str, body: CommandBody, references: &[&str]) -> Command {
    Command {
        key: key(key_text),
        actor: Actor::Network,
        body,
        references: references.iter().map(|r| auth(r)).collect(),
    }
}

fn authorize(id: &str, cents: i64) -> CommandBody {
    CommandBody::Authorize {
        authorization: auth(id),
        spend: spend("c1", money(cents, "EUR")),
        single_message: false,
    }
}

fn reverse(id: &str) -> CommandBody {
    CommandBody::Reverse {
        authorization: auth(id),
        replacement: None,
    }
}

fn held(world: &World) -> i64 {
    world.balance("EUR").1
}

#[test]
fn a_reversal_by_the_originals_other_key_releases_its_hold() {
    let mut world = funded();
    // The original: opened under its retrieval key, with its DE 90 form as another key.
    let opened = world.run_command(network("m1", authorize("rrn-1", 4_000), &["de90-1"]));
    assert!(
        matches!(opened.outcome, Outcome::Approved { ref authorization, .. } if *authorization == auth("rrn-1"))
    );
    assert!(opened.events.contains(&Event::Referenced {
        reference: auth("de90-1"),
        authorization: auth("rrn-1"),
    }));
    assert_eq!(held(&world), 4_000);

    // A reversal with a new retrieval key whose DE 90 names the original.
    let reversed = world.run_command(network("m2", reverse("de90-1"), &["rrn-2"]));
    assert_eq!(reversed.outcome.response_code().as_str(), "00");
    assert_eq!(
        held(&world),
        0,
        "the hold is released, not left until expiry"
    );
    assert_eq!(
        world.account.authorizations[&auth("rrn-1")].state,
        LifecycleState::Reversed
    );
    assert!(
        world.account.tombstones.is_empty(),
        "a matched reversal leaves no tombstone"
    );
    world.assert_replay_matches();
}

#[test]
fn a_partial_reversal_by_the_other_key_reduces_the_matched_hold() {
    let mut world = funded();
    world.run_command(network("m1", authorize("rrn-1", 4_000), &["de90-1"]));
    let body = CommandBody::Reverse {
        authorization: auth("de90-1"),
        replacement: Some(money(1_500, "EUR")),
    };
    world.run_command(network("m2", body, &["rrn-2"]));
    assert_eq!(held(&world), 1_500);
    world.assert_replay_matches();
}

#[test]
fn a_reversal_before_its_original_voids_it_under_either_key() {
    let mut world = funded();
    // The reversal names the original by DE 90 before the original arrives.
    world.run_command(network("m2", reverse("de90-1"), &["rrn-2"]));
    assert!(world.account.tombstones.contains_key(&auth("de90-1")));
    let late = world.run_command(network("m1", authorize("rrn-1", 4_000), &["de90-1"]));
    assert!(matches!(
        late.outcome,
        Outcome::Declined {
            reason: DeclineReason::VoidedByEarlierReversal,
            ..
        }
    ));
    assert_eq!(held(&world), 0);
    assert!(world.account.authorizations.is_empty());
    world.assert_replay_matches();
}

#[test]
fn an_advice_that_opens_a_lifecycle_is_found_by_its_retrieval_key_later() {
    let mut world = funded();
    // A stand-in advice whose original never reached us: opened under the DE 90 key.
    let advise = CommandBody::Advise {
        authorization: auth("de90-1"),
        spend: spend("c1", money(2_000, "EUR")),
        network_approved: true,
    };
    world.run_command(network("m1", advise, &["rrn-1"]));
    assert_eq!(held(&world), 2_000);
    assert_eq!(world.account.references[&auth("rrn-1")], auth("de90-1"));
    // A completion without DE 90 names it by its retrieval key.
    let clear = CommandBody::Clear {
        authorization: auth("rrn-1"),
        spend: spend("c1", money(2_000, "EUR")),
        final_clearing: true,
    };
    world.run_command(network("m2", clear, &[]));
    assert_eq!(held(&world), 0);
    assert_eq!(
        world.balance("EUR").0,
        8_000,
        "posted once, not force-posted again"
    );
    world.assert_replay_matches();
}

#[test]
fn a_taken_reference_is_not_moved_and_references_go_with_their_lifecycle() {
    let mut world = funded();
    world.run_command(network("m1", authorize("rrn-1", 1_000), &["de90-1"]));
    // A second original claiming the same other key does not take it over.
    let second = world.run_command(network("m2", authorize("rrn-2", 1_000), &["de90-1"]));
    assert!(
        matches!(second.outcome, Outcome::Declined { .. }),
        "the other key names a lifecycle already: the second original is that lifecycle's id used again"
    );
    assert_eq!(world.account.references[&auth("de90-1")], auth("rrn-1"));

    // Reverse it, then let retention pass: the sweep forgets the lifecycle and its reference.
    world.run_command(network("m3", reverse("rrn-1"), &[]));
    world.advance_ms(400 * 24 * 3_600_000);
    world.platform(CommandBody::Sweep);
    assert!(world.account.authorizations.is_empty());
    assert!(world.account.references.is_empty());
    world.assert_replay_matches();
}

#[test]
fn commands_without_references_find_lifecycles_as_before() {
    let mut world = funded();
    world.run_command(network("m1", authorize("a1", 1_000), &[]));
    world.run_command(network("m2", reverse("a1"), &[]));
    assert_eq!(held(&world), 0);
    assert!(world.account.references.is_empty());
    let _ = world.account.authorizations[&auth("a1")].state;
}
