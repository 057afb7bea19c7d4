//! Regression tests from the first review of the core: each pins the correct behaviour where
//! the review found a bug (two panics in `apply`, limit bypasses, a replayed wrong answer, lost
//! money on withdrawals, unbounded growth), plus behaviour checked and found correct.

use tandem_core::testkit::{DAY_MS, World, auth, card, good_expiry, key, member, money, spend};
use tandem_core::usage::UsageSubject;
use tandem_core::{
    AccountKind, Actor, AmountLimit, CommandBody, Controls, DeclineReason, LifecycleState,
    LimitScope, Money, Outcome, RejectReason, Role, Spend, Window, WindowLimit,
};

fn eur(amount_minor: i64) -> Money {
    money(amount_minor, "EUR")
}

fn usd(amount_minor: i64) -> Money {
    money(amount_minor, "USD")
}

fn daily(amount: Money) -> WindowLimit {
    WindowLimit {
        scope: LimitScope::All,
        window: Window::Day,
        amount: Some(AmountLimit {
            currency: amount.currency,
            amount_minor: amount.amount_minor,
        }),
        count: None,
    }
}

fn with_daily(amount: Money) -> Controls {
    Controls {
        window_limits: vec![daily(amount)],
        ..Controls::default()
    }
}

fn authorize(id: &str, s: Spend) -> CommandBody {
    CommandBody::Authorize {
        authorization: auth(id),
        spend: s,
        single_message: false,
    }
}

fn is_approved(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Approved { .. })
}

fn is_accepted(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Accepted { .. })
}

/// Joint account, owner with card c1 and 1000.00 EUR.
fn funded() -> World {
    let mut world = World::open(AccountKind::Joint);
    world.issue_card("c1", "owner");
    world.deposit("owner", eur(100_000));
    world
}

// ----- 1. (fixed) usage restoration can panic in apply ---------------------------------------------

/// A limit's currency is changed twice within one window (EUR -> USD -> EUR). The USD charge
/// resets the (scope, window) counter, the next EUR charge resets it again, and the EUR charge
/// of the first, still-open hold is then restored against a counter that never contained it:
/// `Usage::apply` asserts "usage restored below zero" -> panic in `apply` (and on every replay
/// of the log afterwards).
#[test]
fn a_restoration_after_the_limit_currency_changed_twice_leaves_the_new_counter_alone() {
    let mut world = funded();
    world.platform(CommandBody::SetMemberControls {
        member: member("owner"),
        controls: with_daily(eur(50_000)),
    });
    assert!(is_approved(
        &world.authorize("a1", spend("c1", eur(10_000)))
    ));
    world.platform(CommandBody::SetMemberControls {
        member: member("owner"),
        controls: with_daily(usd(50_000)),
    });
    assert!(is_approved(&world.authorize("a2", spend("c1", eur(100)))));
    world.platform(CommandBody::SetMemberControls {
        member: member("owner"),
        controls: with_daily(eur(50_000)),
    });
    assert!(is_approved(&world.authorize("a3", spend("c1", eur(100)))));
    // Reversing a1 restores -10_000 EUR against a counter holding 100 EUR: panics.
    world.network(CommandBody::Reverse {
        authorization: auth("a1"),
        replacement: None,
    });
    let (used, _) = world.usage(
        &UsageSubject::Member(member("owner")),
        LimitScope::All,
        Window::Day,
        Some("EUR"),
    );
    assert!(used >= 0);
}

// ----- 2. (fixed) card replacement resets card-level limits ----------------------------------------

/// The owner gives bob's card a 100.00 EUR daily limit. Bob spends it, then replaces his own
/// card (permitted for a member): the new card copies the controls but starts with empty usage,
/// so bob spends another 100.00 the same day.
#[test]
fn a_replacement_card_inherits_the_old_cards_usage() {
    let mut world = funded();
    world.add_member("bob", Role::Member);
    world.issue_card("cb", "bob");
    assert!(is_accepted(&world.platform(CommandBody::SetCardControls {
        card: card("cb"),
        controls: with_daily(eur(10_000)),
    })));
    assert!(is_approved(
        &world.authorize("a1", spend("cb", eur(10_000)))
    ));
    let over = world.authorize("a2", spend("cb", eur(100)));
    assert!(
        matches!(
            over,
            Outcome::Declined {
                reason: DeclineReason::AmountLimitExceeded,
                ..
            }
        ),
        "{over:?}"
    );
    assert!(is_accepted(&world.as_member(
        "bob",
        CommandBody::ReplaceCard {
            card: card("cb"),
            new_card: card("cb2"),
            expiry: good_expiry(),
        }
    )));
    let after = world.authorize("a3", spend("cb2", eur(10_000)));
    assert!(
        !is_approved(&after),
        "card daily limit bypassed by replacing the card: {after:?}"
    );
}

// ----- 3. (fixed) timed-out single-message (0200) spend is never undone ----------------------------

/// A 0200 financial request posts at once. Our answer was late (edge answered 91), and the
/// network's stand-in declined it (advice, network_approved = false). The debit must go; it
/// stays, and repeats of the 0200 still answer 00 although the edge said 91.
#[test]
fn a_timed_out_single_message_spend_is_credited_back() {
    let mut world = funded();
    world.run_keyed(
        key("k-0200"),
        Actor::Network,
        CommandBody::Authorize {
            authorization: auth("f1"),
            spend: spend("c1", eur(4_000)),
            single_message: true,
        },
    );
    assert_eq!(world.balance("EUR").0, 96_000);
    world.network(CommandBody::MarkTimedOut {
        authorization: auth("f1"),
        original_key: key("k-0200"),
    });
    let repeat = world
        .run_keyed(
            key("k-0200"),
            Actor::Network,
            CommandBody::Authorize {
                authorization: auth("f1"),
                spend: spend("c1", eur(4_000)),
                single_message: true,
            },
        )
        .outcome;
    world.network(CommandBody::Advise {
        authorization: auth("f1"),
        spend: spend("c1", eur(4_000)),
        network_approved: false,
    });
    assert_eq!(
        world.balance("EUR").0,
        100_000,
        "stand-in declined the 0200, but the debit stayed (repeat answered {repeat:?})"
    );
}

// ----- 4. (fixed) stand-in advice in another currency on a timed-out lifecycle ---------------------

/// The TimedOut branch of `advise` does not check the advice currency against the lifecycle's
/// (the open branch does). The hold is planned in USD terms but recorded on a EUR lifecycle:
/// a EUR leg holding 92.23 "covers" 100.00 EUR. Invariant `leg under-holds its part` breaks,
/// and a later 100.00 EUR clearing would post only 92.23.
#[test]
fn a_stand_in_advice_in_another_currency_does_not_revive_a_timed_out_lifecycle() {
    let mut world = funded();
    world.run_keyed(
        key("k-a1"),
        Actor::Network,
        authorize("a1", spend("c1", eur(10_000))),
    );
    world.network(CommandBody::MarkTimedOut {
        authorization: auth("a1"),
        original_key: key("k-a1"),
    });
    // Panics in World (invariant broken) if the currency is not checked.
    world.network(CommandBody::Advise {
        authorization: auth("a1"),
        spend: spend("c1", usd(10_000)),
        network_approved: true,
    });
    let record = &world.account.authorizations[&auth("a1")];
    assert!(
        record
            .legs
            .iter()
            .all(|l| l.amount_minor >= l.covers_minor || l.currency != record.spend_currency())
    );
}

// ----- 5. (fixed) MarkTimedOut trusts original_key -------------------------------------------------

/// An increment of a1 is not durable in time and the edge marks *that* message timed out.
/// `mark_timed_out` never compares `original_key` with the lifecycle's `origin_key`, so it
/// releases the whole hold, including the original approval the network already has.
#[test]
fn a_timed_out_increment_leaves_the_original_hold_in_place() {
    let mut world = funded();
    world.run_keyed(
        key("k-a1"),
        Actor::Network,
        authorize("a1", spend("c1", eur(10_000))),
    );
    world.run_keyed(
        key("k-inc"),
        Actor::Network,
        CommandBody::Increment {
            authorization: auth("a1"),
            amount: eur(2_000),
        },
    );
    world.network(CommandBody::MarkTimedOut {
        authorization: auth("a1"),
        original_key: key("k-inc"),
    });
    assert!(
        world.balance("EUR").1 >= 10_000,
        "the approved 100.00 hold was released by the increment's time-out: held {:?}",
        world.balance("EUR")
    );
}

// ----- 6. (fixed) settlements overflow positions -> panic in apply ---------------------------------

/// `record_settlement` checks nothing about the positions it moves (deposit does). A member may
/// record settlements as payer with no money behind them; after ~9.2 million 999_999_999_999
/// settlements (state set directly here to stay fast) the next one overflows `position` and
/// `apply` panics ("position overflow") instead of `decide` rejecting it.
#[test]
fn a_settlement_that_would_overflow_a_position_is_refused() {
    let mut world = World::open(AccountKind::Group);
    world.add_member("bob", Role::Member);
    world.deposit("owner", eur(1));
    // Reachable by repeated RecordSettlement{from: owner, to: bob, 999_999_999_999}.
    let big = i64::MAX - 10;
    world
        .account
        .positions
        .get_mut(&member("owner"))
        .unwrap()
        .insert(tandem_core::testkit::currency("EUR"), big + 1);
    world
        .account
        .positions
        .get_mut(&member("bob"))
        .unwrap()
        .insert(tandem_core::testkit::currency("EUR"), -big);
    world.account.validate().expect("state is consistent");
    let outcome = world.as_member(
        "owner",
        CommandBody::RecordSettlement {
            from: member("owner"),
            to: member("bob"),
            amount: eur(1_000),
        },
    );
    assert!(matches!(
        outcome,
        Outcome::Rejected {
            reason: RejectReason::AmountOutOfRange
        }
    ));
}

// ----- 7. (fixed) idempotency: different commands replayed -----------------------------------------

/// The fingerprint of a spend is (kind, card, amount): the authorization id is not in it. A
/// second, different authorization (a2) that reuses a1's key on the same card for the same
/// amount is answered with a1's approval, and no hold is placed for a2.
#[test]
fn a_key_reused_for_another_authorization_gets_94_not_the_first_answer() {
    let mut world = funded();
    world.run_keyed(
        key("k"),
        Actor::Network,
        authorize("a1", spend("c1", eur(1_000))),
    );
    let second = world.run_keyed(
        key("k"),
        Actor::Network,
        authorize("a2", spend("c1", eur(1_000))),
    );
    assert!(
        !second.replayed,
        "a2 was answered with a1's recorded outcome: {:?}",
        second.outcome
    );
}

/// A member (an app key) sends card traffic with a key the network will use later. The
/// permission refusal is recorded under that key with the same fingerprint, and the network's
/// real authorization is then "replayed" the member's refusal: keys are not scoped by actor.
#[test]
fn a_refused_member_cannot_claim_a_key_the_network_uses_later() {
    let mut world = funded();
    world.add_member("bob", Role::Member);
    let refused = world
        .run_keyed(
            key("net-key-1"),
            Actor::Member(member("bob")),
            authorize("a1", spend("c1", eur(1_000))),
        )
        .outcome;
    assert!(matches!(refused, Outcome::Rejected { .. }));
    let real = world.run_keyed(
        key("net-key-1"),
        Actor::Network,
        authorize("a1", spend("c1", eur(1_000))),
    );
    assert!(
        is_approved(&real.outcome),
        "the network's authorization got the member's refusal: {:?}",
        real.outcome
    );
}

// ----- 8. (fixed) withdrawals expire silently; completing later is refused -------------------------

/// A withdrawal hold is swept after the hold window like a card hold, but unlike a card
/// clearing after expiry, completing it afterwards is refused: money that left the account is
/// never debited from the ledger.
#[test]
fn a_withdrawal_never_expires_and_completes_days_later() {
    let mut world = funded();
    assert!(is_approved(&world.as_member(
        "owner",
        CommandBody::Withdraw {
            withdrawal: auth("w1"),
            member: member("owner"),
            amount: eur(30_000),
        }
    )));
    world.advance_ms(8 * DAY_MS);
    world.platform(CommandBody::Sweep);
    let done = world.platform(CommandBody::CompleteWithdrawal {
        withdrawal: auth("w1"),
    });
    assert_eq!(
        world.balance("EUR").0,
        70_000,
        "payout completed but ledger not debited ({done:?})"
    );
}

// ----- 9. (fixed) per-transaction limit bypassed by increments -------------------------------------

/// A guardian caps a child at 50.00 per transaction. Increments are checked only on their own
/// amount, so one transaction grows to 120.00.
#[test]
fn increments_count_against_the_per_transaction_limit_with_the_original() {
    let mut world = World::open(AccountKind::Kid);
    world.add_member("mum", Role::Guardian);
    world.add_member("kid", Role::Child);
    world.issue_card("ck", "kid");
    world.deposit("mum", eur(100_000));
    assert!(is_accepted(&world.as_member(
        "mum",
        CommandBody::SetMemberControls {
            member: member("kid"),
            controls: Controls {
                per_transaction: Some(AmountLimit {
                    currency: tandem_core::testkit::currency("EUR"),
                    amount_minor: 5_000,
                }),
                ..Controls::default()
            },
        }
    )));
    assert!(is_approved(&world.authorize("a1", spend("ck", eur(4_000)))));
    world.network(CommandBody::Increment {
        authorization: auth("a1"),
        amount: eur(4_000),
    });
    world.network(CommandBody::Increment {
        authorization: auth("a1"),
        amount: eur(4_000),
    });
    let total = world.account.authorizations[&auth("a1")].authorized_minor;
    assert!(total <= 5_000, "one transaction authorized {total} > 5_000");
}

// ----- 10. (fixed) overdrawn accounts are not tightened ---------------------------------------------

/// domain.md B: after an overdrawing advice, "mark the account OVERDRAWN, tighten further auths
/// until cured". Nothing in `authorize` looks at overdrafts: with EUR overdrawn (and the
/// overdraft attributed), a GBP spend is approved as usual.
#[test]
fn an_overdrawn_account_approves_nothing_new_until_cured() {
    let mut world = World::open(AccountKind::Joint);
    world.issue_card("c1", "owner");
    world.deposit("owner", eur(1_000));
    world.deposit("owner", money(50_000, "GBP"));
    // EUR spends are funded from EUR only, so the advice overdraws EUR and leaves GBP alone.
    world.platform(CommandBody::SetFundingPolicy {
        policy: tandem_core::FundingPolicy::Priority { currencies: vec![] },
    });
    world.network(CommandBody::Advise {
        authorization: auth("s1"),
        spend: spend("c1", eur(5_000)),
        network_approved: true,
    });
    assert!(world.balance("EUR").2 < 0);
    assert!(world.account.is_overdrawn());
    let next = world.authorize("a2", spend("c1", money(1_000, "GBP")));
    assert!(
        !is_approved(&next),
        "overdrawn account approved a new spend: {next:?}"
    );
}

// ----- 11. (fixed) one lifecycle grows without bound ----------------------------------------------

/// Every increment appends a new leg (and new usage charges) to the lifecycle, even in the same
/// currency, and there is no cap on increments per lifecycle. Each Movement event carries the
/// whole record, so N increments cost O(N) state and O(N^2) log bytes.
#[test]
fn increments_fold_into_the_existing_legs_and_charges() {
    let mut world = funded();
    world.platform(CommandBody::SetMemberControls {
        member: member("owner"),
        controls: with_daily(eur(100_000)),
    });
    world.authorize("a1", spend("c1", eur(100)));
    for _ in 0..300 {
        world.network(CommandBody::Increment {
            authorization: auth("a1"),
            amount: eur(1),
        });
    }
    let record = &world.account.authorizations[&auth("a1")];
    assert!(
        record.legs.len() <= 2 && record.usage.len() <= 4,
        "one EUR lifecycle holds {} legs and {} usage charges",
        record.legs.len(),
        record.usage.len()
    );
}

// ----- pinned behaviour (verified correct) --------------------------------------------------

/// A repeated full reversal after clearing credits once; the second is acknowledged and moves
/// nothing (no double release / double credit).
#[test]
fn a_repeated_reversal_after_clearing_credits_once() {
    let mut world = funded();
    world.authorize("a1", spend("c1", eur(10_000)));
    world.network(CommandBody::Clear {
        authorization: auth("a1"),
        spend: spend("c1", eur(10_000)),
        final_clearing: true,
    });
    assert_eq!(world.balance("EUR"), (90_000, 0, 90_000));
    for _ in 0..2 {
        world.network(CommandBody::Reverse {
            authorization: auth("a1"),
            replacement: None,
        });
        assert_eq!(world.balance("EUR"), (100_000, 0, 100_000));
    }
    assert_eq!(
        world.account.authorizations[&auth("a1")].state,
        LifecycleState::Cleared
    );
    world.assert_replay_matches();
}

// ----- found while documenting -------------------------------------------------------------

/// A 0200 whose answer timed out is credited back; when the network's stand-in then approves
/// it, the spend posts (as the 0200 would have), rather than being held and later dropped.
#[test]
fn a_timed_out_single_message_spend_approved_by_stand_in_posts() {
    let mut world = funded();
    world.run_keyed(
        key("k-0200"),
        Actor::Network,
        CommandBody::Authorize {
            authorization: auth("f1"),
            spend: spend("c1", eur(4_000)),
            single_message: true,
        },
    );
    world.network(CommandBody::MarkTimedOut {
        authorization: auth("f1"),
        original_key: key("k-0200"),
    });
    assert_eq!(world.balance("EUR"), (100_000, 0, 100_000));
    world.network(CommandBody::Advise {
        authorization: auth("f1"),
        spend: spend("c1", eur(4_000)),
        network_approved: true,
    });
    assert_eq!(world.balance("EUR"), (96_000, 0, 96_000));
    assert_eq!(
        world.account.authorizations[&auth("f1")].state,
        LifecycleState::Cleared
    );
    world.advance_ms(30 * DAY_MS);
    world.platform(CommandBody::Sweep);
    assert_eq!(world.balance("EUR"), (96_000, 0, 96_000));
    world.assert_replay_matches();
}

/// Marking a withdrawal timed out (not card traffic) changes nothing and rewrites no answer.
#[test]
fn marking_a_withdrawal_timed_out_changes_nothing() {
    let mut world = funded();
    let held = world.run_keyed(
        key("w-key"),
        Actor::Member(member("owner")),
        CommandBody::Withdraw {
            withdrawal: auth("w1"),
            member: member("owner"),
            amount: eur(1_000),
        },
    );
    assert!(is_approved(&held.outcome));
    world.network(CommandBody::MarkTimedOut {
        authorization: auth("w1"),
        original_key: key("w-key"),
    });
    assert_eq!(world.balance("EUR"), (100_000, 1_000, 99_000));
    let repeat = world.run_keyed(
        key("w-key"),
        Actor::Member(member("owner")),
        CommandBody::Withdraw {
            withdrawal: auth("w1"),
            member: member("owner"),
            amount: eur(1_000),
        },
    );
    assert_eq!(repeat.outcome, held.outcome);
}
