//! Scenario tables for the authorization lifecycle (domain.md part B, disputes excluded).
//!
//! Every test drives one account through a table of steps. Each row names the business step,
//! the command, and what must hold right after it: the ISO 8583 response code (DE 39), every
//! currency balance as `(ledger, held, available)`, every member's net position, the watched
//! limit counters, the attributed overdrafts, and (where it matters) lifecycle states and the
//! causes of the money movements recorded. The runner also checks that the account sequence
//! advances by exactly the events recorded, and every test ends by replaying the event log.

use tandem_core::authorization::ReviewReason;
use tandem_core::event::EntryKind;
use tandem_core::testkit;
use tandem_core::testkit::{
    DAY_MS, World, auth, card, currency, good_expiry, key, member, money, spend,
};
use tandem_core::usage::UsageSubject;
use tandem_core::{
    AccountKind, Actor, AmountLimit, Cause, Channel, Channels, CommandBody, Controls, Decision,
    DeclineReason, LifecycleState, LimitScope, Mcc, Money, Outcome, Role, SpendKind, SplitRule,
    Transfer, Window, YearMonth,
};
use tandem_core::{CardStatus, Event, Spend, WindowLimit};

// ----- the table runner ---------------------------------------------------------------------

/// Whose usage counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whose {
    Member(&'static str),
}

/// One limit counter a scenario watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counter {
    whose: Whose,
    scope: LimitScope,
    window: Window,
    currency: Option<&'static str>,
}

const OWNER_TODAY: Counter = Counter {
    whose: Whose::Member("owner"),
    scope: LimitScope::All,
    window: Window::Day,
    currency: Some("EUR"),
};
const OWNER_THIS_MONTH: Counter = Counter {
    window: Window::Month,
    ..OWNER_TODAY
};
const BOB_TODAY: Counter = Counter {
    whose: Whose::Member("bob"),
    ..OWNER_TODAY
};
const KID_TODAY: Counter = Counter {
    whose: Whose::Member("kid"),
    ..OWNER_TODAY
};

const NETWORK: Actor = Actor::Network;
const PLATFORM: Actor = Actor::Platform;

fn by(name: &str) -> Actor {
    Actor::Member(member(name))
}

const PENDING: Option<LifecycleState> = Some(LifecycleState::Pending);
const PARTIALLY_CLEARED: Option<LifecycleState> = Some(LifecycleState::PartiallyCleared);
const CLEARED: Option<LifecycleState> = Some(LifecycleState::Cleared);
const REVERSED: Option<LifecycleState> = Some(LifecycleState::Reversed);
const EXPIRED: Option<LifecycleState> = Some(LifecycleState::Expired);
const TIMED_OUT: Option<LifecycleState> = Some(LifecycleState::TimedOut);
/// No lifecycle at all (a decline, or a voided original).
const NO_LIFECYCLE: Option<LifecycleState> = None;

/// `(currency, ledger, held, available)` for every balance the account has.
type Balances = &'static [(&'static str, i64, i64, i64)];
/// `(member, currency, net position)`; members and currencies not listed must be at zero.
type Positions = &'static [(&'static str, &'static str, i64)];
/// `(counter, amount used, count used)` in the current window.
type Usages = &'static [(Counter, i64, u32)];
/// `(currency, member, overdraft attributed)`; empty means the account is not overdrawn.
type Overdrafts = &'static [(&'static str, &'static str, i64)];
type Lifecycles = &'static [(&'static str, Option<LifecycleState>)];
type Hook = fn(&World, &Decision);

/// One row of a scenario table.
struct Step {
    what: &'static str,
    by: Actor,
    key: Option<&'static str>,
    after_ms: i64,
    cmd: CommandBody,
    code: Option<&'static str>,
    because: Option<DeclineReason>,
    balances: Option<Balances>,
    positions: Option<Positions>,
    usage: Option<Usages>,
    overdrafts: Overdrafts,
    lifecycles: Lifecycles,
    moves: Option<&'static [Cause]>,
    hook: Option<Hook>,
}

fn step(what: &'static str, by: Actor, cmd: CommandBody) -> Step {
    Step {
        what,
        by,
        key: None,
        after_ms: 0,
        cmd,
        code: None,
        because: None,
        balances: None,
        positions: None,
        usage: None,
        overdrafts: &[],
        lifecycles: &[],
        moves: None,
        hook: None,
    }
}

impl Step {
    /// Sent with this idempotency key (otherwise a fresh one).
    fn key(mut self, key: &'static str) -> Self {
        self.key = Some(key);
        self
    }
    /// Sent this long after the previous step.
    fn after(mut self, millis: i64) -> Self {
        self.after_ms = millis;
        self
    }
    fn answers(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
    fn because(mut self, reason: DeclineReason) -> Self {
        self.because = Some(reason);
        self
    }
    fn balances(mut self, balances: Balances) -> Self {
        self.balances = Some(balances);
        self
    }
    fn positions(mut self, positions: Positions) -> Self {
        self.positions = Some(positions);
        self
    }
    fn usage(mut self, usage: Usages) -> Self {
        self.usage = Some(usage);
        self
    }
    fn overdrawn(mut self, overdrafts: Overdrafts) -> Self {
        self.overdrafts = overdrafts;
        self
    }
    fn lifecycles(mut self, lifecycles: Lifecycles) -> Self {
        self.lifecycles = lifecycles;
        self
    }
    /// The causes of the money movements this step records, in order (`&[]`: none).
    fn moves(mut self, causes: &'static [Cause]) -> Self {
        self.moves = Some(causes);
        self
    }
    fn then(mut self, hook: Hook) -> Self {
        self.hook = Some(hook);
        self
    }

    fn run(self, world: &mut World, watched: &[Counter], index: usize) -> Decision {
        let at = format!("step {} ({})", index + 1, self.what);
        let code = self
            .code
            .unwrap_or_else(|| panic!("{at}: no expected response code"));
        let balances = self
            .balances
            .unwrap_or_else(|| panic!("{at}: no expected balances"));
        let positions = self
            .positions
            .unwrap_or_else(|| panic!("{at}: no expected positions"));
        let usage = self
            .usage
            .unwrap_or_else(|| panic!("{at}: no expected usage counters"));
        let stated: Vec<Counter> = usage.iter().map(|u| u.0).collect();
        assert_eq!(
            stated, watched,
            "{at}: a row must state every watched counter"
        );

        world.advance_ms(self.after_ms);
        let key = match self.key {
            Some(name) => key(name),
            None => world.fresh_key(),
        };
        let seq_before = world.account.seq;
        let decision = world.run_keyed(key, self.by, self.cmd);

        assert_eq!(
            decision.outcome.response_code().as_str(),
            code,
            "{at}: response code of {:?}",
            decision.outcome
        );
        if let Some(reason) = self.because {
            assert!(
                matches!(&decision.outcome, Outcome::Declined { reason: r, .. } if *r == reason),
                "{at}: expected a decline for {reason:?}, got {:?}",
                decision.outcome
            );
        }

        let views = world.account.balance_views();
        let actual: Vec<(&str, i64, i64, i64)> = views
            .iter()
            .map(|v| {
                (
                    v.currency.alpha(),
                    v.ledger_minor,
                    v.held_minor,
                    v.available_minor,
                )
            })
            .collect();
        assert_eq!(
            actual, balances,
            "{at}: balances (currency, ledger, held, available)"
        );

        let actual: Vec<(String, &str, i64)> = world
            .account
            .positions
            .iter()
            .flat_map(|(m, per)| {
                per.iter()
                    .filter(|(_, v)| **v != 0)
                    .map(|(c, v)| (m.as_str().to_owned(), c.alpha(), *v))
            })
            .collect();
        let mut expected: Vec<(String, &str, i64)> = positions
            .iter()
            .filter(|p| p.2 != 0)
            .map(|&(m, c, v)| (m.to_owned(), c, v))
            .collect();
        expected.sort();
        assert_eq!(
            actual, expected,
            "{at}: member positions (member, currency, net)"
        );

        for &(counter, amount, count) in usage {
            let subject = match counter.whose {
                Whose::Member(name) => UsageSubject::Member(member(name)),
            };
            assert_eq!(
                world.usage(&subject, counter.scope, counter.window, counter.currency),
                (amount, count),
                "{at}: usage {counter:?} (amount, count)"
            );
        }

        let actual: Vec<(&str, String, i64)> = world
            .account
            .overdrafts
            .iter()
            .flat_map(|(c, per)| {
                per.iter()
                    .map(|(m, v)| (c.alpha(), m.as_str().to_owned(), *v))
            })
            .collect();
        let expected: Vec<(&str, String, i64)> = self
            .overdrafts
            .iter()
            .map(|&(c, m, v)| (c, m.to_owned(), v))
            .collect();
        assert_eq!(
            actual, expected,
            "{at}: overdrafts (currency, member, amount)"
        );
        assert_eq!(
            world.account.is_overdrawn(),
            !self.overdrafts.is_empty(),
            "{at}: account overdrawn flag"
        );

        for &(id, state) in self.lifecycles {
            assert_eq!(
                world.account.authorizations.get(&auth(id)).map(|a| a.state),
                state,
                "{at}: lifecycle {id}"
            );
        }

        let movements: Vec<&tandem_core::Movement> = decision
            .events
            .iter()
            .filter_map(|e| match e {
                tandem_core::Event::Movement(m) => Some(&**m),
                _ => None,
            })
            .collect();
        if let Some(causes) = self.moves {
            let actual: Vec<Cause> = movements.iter().map(|m| m.cause).collect();
            assert_eq!(actual, causes, "{at}: money movements recorded");
        }
        for movement in &movements {
            assert_eq!(movement.at, world.now, "{at}: a movement carries its time");
        }
        assert_eq!(
            world.account.seq - seq_before,
            decision.events.len() as u64,
            "{at}: the account sequence advances once per recorded event"
        );
        if decision.replayed {
            assert!(decision.events.is_empty(), "{at}: a replay records nothing");
        }

        if let Some(hook) = self.hook {
            hook(world, &decision);
        }
        decision
    }
}

/// Runs a scenario table; returns each step's decision.
fn play(world: &mut World, watched: &[Counter], steps: Vec<Step>) -> Vec<Decision> {
    steps
        .into_iter()
        .enumerate()
        .map(|(index, s)| s.run(world, watched, index))
        .collect()
}

// ----- commands and spends in business words ------------------------------------------------

fn eur(amount_minor: i64) -> Money {
    money(amount_minor, "EUR")
}

fn usd(amount_minor: i64) -> Money {
    money(amount_minor, "USD")
}

fn gbp(amount_minor: i64) -> Money {
    money(amount_minor, "GBP")
}

/// A chip purchase at a grocery (5411) in GB.
fn groceries(card_name: &str, amount: Money) -> Spend {
    spend(card_name, amount)
}

fn at_merchant(card_name: &str, amount: Money, mcc: u16) -> Spend {
    let mut s = spend(card_name, amount);
    s.merchant.mcc = Mcc::new(mcc).expect("mcc");
    s
}

/// A hotel (7011): the kind of merchant that sends incremental authorizations.
fn hotel(card_name: &str, amount: Money) -> Spend {
    at_merchant(card_name, amount, 7011)
}

/// An automated fuel dispenser (5542).
fn fuel_pump(card_name: &str, amount: Money) -> Spend {
    at_merchant(card_name, amount, 5542)
}

fn atm_cash(card_name: &str, amount: Money) -> Spend {
    let mut s = at_merchant(card_name, amount, 6011);
    s.kind = SpendKind::Cash;
    s.channel = Channel::Atm;
    s
}

/// The terminal accepts an approval for less than asked.
fn partial_capable(mut s: Spend) -> Spend {
    s.partial_allowed = true;
    s
}

fn presenting_expiry(mut s: Spend, expiry: YearMonth) -> Spend {
    s.presented_expiry = Some(expiry);
    s
}

fn deposit(name: &str, amount: Money) -> CommandBody {
    CommandBody::Deposit {
        member: member(name),
        amount,
    }
}

fn authorize(id: &str, spend: Spend) -> CommandBody {
    CommandBody::Authorize {
        authorization: auth(id),
        spend,
        single_message: false,
    }
}

fn financial_request(id: &str, spend: Spend) -> CommandBody {
    CommandBody::Authorize {
        authorization: auth(id),
        spend,
        single_message: true,
    }
}

fn increment(id: &str, amount: Money) -> CommandBody {
    CommandBody::Increment {
        authorization: auth(id),
        amount,
    }
}

fn reverse_fully(id: &str) -> CommandBody {
    CommandBody::Reverse {
        authorization: auth(id),
        replacement: None,
    }
}

fn reverse_to(id: &str, new_total: Money) -> CommandBody {
    CommandBody::Reverse {
        authorization: auth(id),
        replacement: Some(new_total),
    }
}

fn advice(id: &str, spend: Spend, network_approved: bool) -> CommandBody {
    CommandBody::Advise {
        authorization: auth(id),
        spend,
        network_approved,
    }
}

fn final_clearing(id: &str, spend: Spend) -> CommandBody {
    CommandBody::Clear {
        authorization: auth(id),
        spend,
        final_clearing: true,
    }
}

fn interim_clearing(id: &str, spend: Spend) -> CommandBody {
    CommandBody::Clear {
        authorization: auth(id),
        spend,
        final_clearing: false,
    }
}

fn force_post(id: &str, spend: Spend) -> CommandBody {
    CommandBody::ForcePost {
        authorization: auth(id),
        spend,
    }
}

fn refund(id: &str, spend: Spend) -> CommandBody {
    CommandBody::Refund {
        refund: auth(id),
        spend,
        original: None,
    }
}

fn sweep() -> CommandBody {
    CommandBody::Sweep
}

fn mark_timed_out(id: &str, original_key: &str) -> CommandBody {
    CommandBody::MarkTimedOut {
        authorization: auth(id),
        original_key: key(original_key),
    }
}

fn balance_inquiry(card_name: &str) -> CommandBody {
    CommandBody::BalanceInquiry {
        card: card(card_name),
    }
}

fn set_card_status(card_name: &str, status: CardStatus) -> CommandBody {
    CommandBody::SetCardStatus {
        card: card(card_name),
        status,
    }
}

fn set_controls(name: &str, controls: Controls) -> CommandBody {
    CommandBody::SetMemberControls {
        member: member(name),
        controls,
    }
}

fn withdraw(id: &str, name: &str, amount: Money) -> CommandBody {
    CommandBody::Withdraw {
        withdrawal: auth(id),
        member: member(name),
        amount,
    }
}

fn complete_withdrawal(id: &str) -> CommandBody {
    CommandBody::CompleteWithdrawal {
        withdrawal: auth(id),
    }
}

fn cancel_withdrawal(id: &str) -> CommandBody {
    CommandBody::CancelWithdrawal {
        withdrawal: auth(id),
    }
}

fn record_settlement(from: &str, to: &str, amount: Money) -> CommandBody {
    CommandBody::RecordSettlement {
        from: member(from),
        to: member(to),
        amount,
    }
}

fn limit(window: Window, amount: Money, count: Option<u32>) -> WindowLimit {
    WindowLimit {
        scope: LimitScope::All,
        window,
        amount: Some(AmountLimit {
            currency: amount.currency,
            amount_minor: amount.amount_minor,
        }),
        count,
    }
}

/// Gives `name` one spending limit (set by the platform, as account setup).
fn give_limit(world: &mut World, name: &str, window: Window, amount: Money) {
    let controls = Controls {
        window_limits: vec![limit(window, amount, Some(50))],
        ..Controls::default()
    };
    let outcome = world.platform(set_controls(name, controls));
    assert!(matches!(outcome, Outcome::Accepted { .. }), "{outcome:?}");
}

/// A joint account whose owner holds card `c1` and has a roomy daily limit (500.00 EUR, 50
/// spends), so every step can show what the limits counted.
fn joint_with_daily_limit() -> World {
    let mut world = World::open(AccountKind::Joint);
    world.issue_card("c1", "owner");
    give_limit(&mut world, "owner", Window::Day, eur(50_000));
    world
}

/// As above with a monthly limit, for scenarios that span days.
fn joint_with_monthly_limit() -> World {
    let mut world = World::open(AccountKind::Joint);
    world.issue_card("c1", "owner");
    give_limit(&mut world, "owner", Window::Month, eur(500_000));
    world
}

fn approved_amounts(decision: &Decision) -> (Money, Money) {
    match &decision.outcome {
        Outcome::Approved {
            approved,
            requested,
            ..
        } => (*approved, *requested),
        other => panic!("expected an approval, got {other:?}"),
    }
}

// ----- 1. approve or decline -------------------------------------------------------------------

#[test]
fn approving_places_a_hold_and_an_insufficient_funds_decline_places_none_and_is_remembered() {
    let mut world = joint_with_daily_limit();
    let decisions = play(
        &mut world,
        &[OWNER_TODAY],
        vec![
            step(
                "owner pays in 100.00",
                PLATFORM,
                deposit("owner", eur(10_000)),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 0, 0)])
            .moves(&[Cause::Deposit]),
            step(
                "40.00 at the grocer is approved and held",
                NETWORK,
                authorize("a1", groceries("c1", eur(4_000))),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 4_000, 6_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 4_000, 1)])
            .lifecycles(&[("a1", PENDING)])
            .moves(&[Cause::Authorized]),
            step(
                "70.00 more than is available is declined 51, nothing held",
                NETWORK,
                authorize("a2", groceries("c1", eur(7_000))),
            )
            .key("key-a2")
            .answers("51")
            .because(DeclineReason::InsufficientFunds)
            .balances(&[("EUR", 10_000, 4_000, 6_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 4_000, 1)])
            .lifecycles(&[("a1", PENDING), ("a2", NO_LIFECYCLE)])
            .moves(&[]),
            step(
                "the acquirer repeats the 70.00 request: same decline",
                NETWORK,
                authorize("a2", groceries("c1", eur(7_000))),
            )
            .key("key-a2")
            .answers("51")
            .because(DeclineReason::InsufficientFunds)
            .balances(&[("EUR", 10_000, 4_000, 6_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 4_000, 1)])
            .lifecycles(&[("a2", NO_LIFECYCLE)])
            .moves(&[]),
        ],
    );
    assert!(!decisions[2].replayed && decisions[3].replayed);
    assert_eq!(
        decisions[3].outcome, decisions[2].outcome,
        "the repeat gets the recorded decline"
    );
    // The decline reports the balance it saw (DE 54).
    assert!(matches!(
        decisions[2].outcome,
        Outcome::Declined { balance: Some(view), .. }
            if (view.ledger_minor, view.held_minor, view.available_minor) == (10_000, 4_000, 6_000)
    ));
    world.assert_replay_matches();
}

#[test]
fn a_single_message_purchase_posts_at_once_with_no_hold() {
    let mut world = joint_with_daily_limit();
    play(
        &mut world,
        &[OWNER_TODAY],
        vec![
            step(
                "owner pays in 100.00",
                PLATFORM,
                deposit("owner", eur(10_000)),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 0, 0)]),
            step(
                "a 0200 for 25.00 is approved and posted",
                NETWORK,
                financial_request("a1", groceries("c1", eur(2_500))),
            )
            .answers("00")
            .balances(&[("EUR", 7_500, 0, 7_500)])
            .positions(&[("owner", "EUR", 7_500)])
            .usage(&[(OWNER_TODAY, 2_500, 1)])
            .lifecycles(&[("a1", CLEARED)])
            .moves(&[Cause::FinancialPosted]),
            step(
                "a 0200 for 80.00 is declined 51 and posts nothing",
                NETWORK,
                financial_request("a2", groceries("c1", eur(8_000))),
            )
            .answers("51")
            .balances(&[("EUR", 7_500, 0, 7_500)])
            .positions(&[("owner", "EUR", 7_500)])
            .usage(&[(OWNER_TODAY, 2_500, 1)])
            .lifecycles(&[("a2", NO_LIFECYCLE)])
            .moves(&[]),
        ],
    );
    world.assert_replay_matches();
}

// ----- 2. partial approval ---------------------------------------------------------------------

#[test]
fn partial_approval_is_given_only_to_terminals_that_accept_it() {
    let mut world = joint_with_daily_limit();
    let decisions = play(
        &mut world,
        &[OWNER_TODAY],
        vec![
            step(
                "owner pays in 50.00",
                PLATFORM,
                deposit("owner", eur(5_000)),
            )
            .answers("00")
            .balances(&[("EUR", 5_000, 0, 5_000)])
            .positions(&[("owner", "EUR", 5_000)])
            .usage(&[(OWNER_TODAY, 0, 0)]),
            step(
                "80.00 at a terminal without partial approval: 51",
                NETWORK,
                authorize("a1", groceries("c1", eur(8_000))),
            )
            .answers("51")
            .because(DeclineReason::InsufficientFunds)
            .balances(&[("EUR", 5_000, 0, 5_000)])
            .positions(&[("owner", "EUR", 5_000)])
            .usage(&[(OWNER_TODAY, 0, 0)])
            .lifecycles(&[("a1", NO_LIFECYCLE)]),
            step(
                "80.00 at a partial-capable terminal: 10 for the 50.00 available",
                NETWORK,
                authorize("a2", partial_capable(groceries("c1", eur(8_000)))),
            )
            .answers("10")
            .balances(&[("EUR", 5_000, 5_000, 0)])
            .positions(&[("owner", "EUR", 5_000)])
            .usage(&[(OWNER_TODAY, 5_000, 1)])
            .lifecycles(&[("a2", PENDING)])
            .moves(&[Cause::Authorized]),
            step(
                "nothing left: even a partial-capable terminal gets 51",
                NETWORK,
                authorize("a3", partial_capable(groceries("c1", eur(1_000)))),
            )
            .answers("51")
            .balances(&[("EUR", 5_000, 5_000, 0)])
            .positions(&[("owner", "EUR", 5_000)])
            .usage(&[(OWNER_TODAY, 5_000, 1)])
            .lifecycles(&[("a3", NO_LIFECYCLE)]),
            step(
                "the partial approval clears for the 50.00 approved",
                NETWORK,
                final_clearing("a2", groceries("c1", eur(5_000))),
            )
            .answers("00")
            .balances(&[("EUR", 0, 0, 0)])
            .positions(&[("owner", "EUR", 0)])
            .usage(&[(OWNER_TODAY, 5_000, 1)])
            .lifecycles(&[("a2", CLEARED)])
            .moves(&[Cause::Cleared]),
        ],
    );
    assert_eq!(
        approved_amounts(&decisions[2]),
        (eur(5_000), eur(8_000)),
        "DE 4 carries the approved amount, the original goes with it"
    );
    world.assert_replay_matches();
}

// ----- 3. incremental authorization ------------------------------------------------------------

#[test]
fn an_incremental_authorization_grows_the_hold_and_a_declined_increment_leaves_it_intact() {
    let mut world = joint_with_daily_limit();
    play(
        &mut world,
        &[OWNER_TODAY],
        vec![
            step(
                "owner pays in 300.00",
                PLATFORM,
                deposit("owner", eur(30_000)),
            )
            .answers("00")
            .balances(&[("EUR", 30_000, 0, 30_000)])
            .positions(&[("owner", "EUR", 30_000)])
            .usage(&[(OWNER_TODAY, 0, 0)]),
            step(
                "hotel check-in holds 100.00",
                NETWORK,
                authorize("a1", hotel("c1", eur(10_000))),
            )
            .answers("00")
            .balances(&[("EUR", 30_000, 10_000, 20_000)])
            .positions(&[("owner", "EUR", 30_000)])
            .usage(&[(OWNER_TODAY, 10_000, 1)])
            .lifecycles(&[("a1", PENDING)]),
            step(
                "an extra night: increment of 50.00 approved, hold grows (still one spend for count limits)",
                NETWORK,
                increment("a1", eur(5_000)),
            )
            .answers("00")
            .balances(&[("EUR", 30_000, 15_000, 15_000)])
            .positions(&[("owner", "EUR", 30_000)])
            .usage(&[(OWNER_TODAY, 15_000, 1)])
            .lifecycles(&[("a1", PENDING)])
            .moves(&[Cause::Incremented])
            .then(|w, _| {
                assert_eq!(
                    w.account.authorizations[&auth("a1")].authorized_minor,
                    15_000
                )
            }),
            step(
                "an increment of 200.00 is declined 51; the original hold stays",
                NETWORK,
                increment("a1", eur(20_000)),
            )
            .answers("51")
            .because(DeclineReason::InsufficientFunds)
            .balances(&[("EUR", 30_000, 15_000, 15_000)])
            .positions(&[("owner", "EUR", 30_000)])
            .usage(&[(OWNER_TODAY, 15_000, 1)])
            .lifecycles(&[("a1", PENDING)])
            .moves(&[])
            .then(|w, _| {
                let a1 = &w.account.authorizations[&auth("a1")];
                assert_eq!((a1.authorized_minor, a1.residual_minor()), (15_000, 15_000));
            }),
            step(
                "check-out clears 150.00",
                NETWORK,
                final_clearing("a1", hotel("c1", eur(15_000))),
            )
            .answers("00")
            .balances(&[("EUR", 15_000, 0, 15_000)])
            .positions(&[("owner", "EUR", 15_000)])
            .usage(&[(OWNER_TODAY, 15_000, 1)])
            .lifecycles(&[("a1", CLEARED)])
            .moves(&[Cause::Cleared]),
        ],
    );
    world.assert_replay_matches();
}

// ----- 4. reversals ----------------------------------------------------------------------------

#[test]
fn a_partial_reversal_shrinks_the_hold_to_the_new_total_and_a_full_reversal_releases_it() {
    let mut world = joint_with_daily_limit();
    play(
        &mut world,
        &[OWNER_TODAY],
        vec![
            step(
                "owner pays in 100.00",
                PLATFORM,
                deposit("owner", eur(10_000)),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 0, 0)]),
            step(
                "60.00 approved and held",
                NETWORK,
                authorize("a1", groceries("c1", eur(6_000))),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 6_000, 4_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 6_000, 1)])
            .lifecycles(&[("a1", PENDING)]),
            step(
                "partial reversal to a new total of 25.00",
                NETWORK,
                reverse_to("a1", eur(2_500)),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 2_500, 7_500)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 2_500, 1)])
            .lifecycles(&[("a1", PENDING)])
            .moves(&[Cause::PartiallyReversed]),
            step(
                "full reversal releases the rest and gives the limit back",
                NETWORK,
                reverse_fully("a1"),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 0, 0)])
            .lifecycles(&[("a1", REVERSED)])
            .moves(&[Cause::Reversed]),
            step(
                "a second full reversal is acknowledged and releases nothing",
                NETWORK,
                reverse_fully("a1"),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 0, 0)])
            .lifecycles(&[("a1", REVERSED)])
            .moves(&[]),
        ],
    );
    world.assert_replay_matches();
}

// ----- 5. clearing -----------------------------------------------------------------------------

#[test]
fn clearing_below_the_hold_posts_the_clearing_and_releases_the_rest() {
    let mut world = joint_with_daily_limit();
    play(
        &mut world,
        &[OWNER_TODAY],
        vec![
            step(
                "owner pays in 100.00",
                PLATFORM,
                deposit("owner", eur(10_000)),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 0, 0)]),
            step(
                "50.00 approved and held",
                NETWORK,
                authorize("a1", groceries("c1", eur(5_000))),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 5_000, 5_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 5_000, 1)]),
            step(
                "final clearing for 42.00: posts 42.00, releases 8.00",
                NETWORK,
                final_clearing("a1", groceries("c1", eur(4_200))),
            )
            .answers("00")
            .balances(&[("EUR", 5_800, 0, 5_800)])
            .positions(&[("owner", "EUR", 5_800)])
            .usage(&[(OWNER_TODAY, 4_200, 1)])
            .lifecycles(&[("a1", CLEARED)])
            .moves(&[Cause::Cleared]),
        ],
    );
    world.assert_replay_matches();
}

#[test]
fn clearing_equal_to_the_hold_posts_it_exactly() {
    let mut world = joint_with_daily_limit();
    play(
        &mut world,
        &[OWNER_TODAY],
        vec![
            step(
                "owner pays in 100.00",
                PLATFORM,
                deposit("owner", eur(10_000)),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 0, 0)]),
            step(
                "50.00 approved and held",
                NETWORK,
                authorize("a1", groceries("c1", eur(5_000))),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 5_000, 5_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 5_000, 1)]),
            step(
                "final clearing for exactly 50.00",
                NETWORK,
                final_clearing("a1", groceries("c1", eur(5_000))),
            )
            .answers("00")
            .balances(&[("EUR", 5_000, 0, 5_000)])
            .positions(&[("owner", "EUR", 5_000)])
            .usage(&[(OWNER_TODAY, 5_000, 1)])
            .lifecycles(&[("a1", CLEARED)])
            .moves(&[Cause::Cleared]),
        ],
    );
    world.assert_replay_matches();
}

#[test]
fn clearing_above_the_hold_posts_the_excess_and_flags_the_overdraft() {
    let mut world = joint_with_daily_limit();
    play(
        &mut world,
        &[OWNER_TODAY],
        vec![
            step(
                "owner pays in 100.00",
                PLATFORM,
                deposit("owner", eur(10_000)),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 0, 0)]),
            step(
                "dinner: 90.00 approved and held",
                NETWORK,
                authorize("a1", at_merchant("c1", eur(9_000), 5812)),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 9_000, 1_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 9_000, 1)]),
            // One purchase: the tip is part of the same spend, so the count stays at one.
            step(
                "clears at 115.00 with the tip: 25.00 over the hold overdraws by 15.00",
                NETWORK,
                final_clearing("a1", at_merchant("c1", eur(11_500), 5812)),
            )
            .answers("00")
            .balances(&[("EUR", -1_500, 0, -1_500)])
            .positions(&[("owner", "EUR", -1_500)])
            .usage(&[(OWNER_TODAY, 11_500, 1)])
            .overdrawn(&[("EUR", "owner", 1_500)])
            .lifecycles(&[("a1", CLEARED)])
            .moves(&[Cause::ClearedAboveHold]),
            step(
                "while overdrawn, a new 5.00 spend is declined 51",
                NETWORK,
                authorize("a2", groceries("c1", eur(500))),
            )
            .answers("51")
            .balances(&[("EUR", -1_500, 0, -1_500)])
            .positions(&[("owner", "EUR", -1_500)])
            .usage(&[(OWNER_TODAY, 11_500, 1)])
            .overdrawn(&[("EUR", "owner", 1_500)])
            .lifecycles(&[("a2", NO_LIFECYCLE)]),
            step(
                "owner pays in 20.00: the overdraft is cured",
                PLATFORM,
                deposit("owner", eur(2_000)),
            )
            .answers("00")
            .balances(&[("EUR", 500, 0, 500)])
            .positions(&[("owner", "EUR", 500)])
            .usage(&[(OWNER_TODAY, 11_500, 1)]),
        ],
    );
    world.assert_replay_matches();
}

#[test]
fn several_interim_clearings_consume_the_hold_and_the_final_one_releases_the_rest() {
    let mut world = joint_with_daily_limit();
    play(
        &mut world,
        &[OWNER_TODAY],
        vec![
            step(
                "owner pays in 200.00",
                PLATFORM,
                deposit("owner", eur(20_000)),
            )
            .answers("00")
            .balances(&[("EUR", 20_000, 0, 20_000)])
            .positions(&[("owner", "EUR", 20_000)])
            .usage(&[(OWNER_TODAY, 0, 0)]),
            step(
                "an order of 100.00 approved and held",
                NETWORK,
                authorize("a1", groceries("c1", eur(10_000))),
            )
            .answers("00")
            .balances(&[("EUR", 20_000, 10_000, 10_000)])
            .positions(&[("owner", "EUR", 20_000)])
            .usage(&[(OWNER_TODAY, 10_000, 1)]),
            step(
                "first shipment clears 30.00",
                NETWORK,
                interim_clearing("a1", groceries("c1", eur(3_000))),
            )
            .answers("00")
            .balances(&[("EUR", 17_000, 7_000, 10_000)])
            .positions(&[("owner", "EUR", 17_000)])
            .usage(&[(OWNER_TODAY, 10_000, 1)])
            .lifecycles(&[("a1", PARTIALLY_CLEARED)])
            .moves(&[Cause::Cleared]),
            step(
                "second shipment clears 20.00",
                NETWORK,
                interim_clearing("a1", groceries("c1", eur(2_000))),
            )
            .answers("00")
            .balances(&[("EUR", 15_000, 5_000, 10_000)])
            .positions(&[("owner", "EUR", 15_000)])
            .usage(&[(OWNER_TODAY, 10_000, 1)])
            .lifecycles(&[("a1", PARTIALLY_CLEARED)])
            .moves(&[Cause::Cleared]),
            step(
                "last shipment clears 40.00 as final: the 10.00 left is released",
                NETWORK,
                final_clearing("a1", groceries("c1", eur(4_000))),
            )
            .answers("00")
            .balances(&[("EUR", 11_000, 0, 11_000)])
            .positions(&[("owner", "EUR", 11_000)])
            .usage(&[(OWNER_TODAY, 9_000, 1)])
            .lifecycles(&[("a1", CLEARED)])
            .moves(&[Cause::Cleared]),
        ],
    );
    world.assert_replay_matches();
}

// ----- 6. expiry -------------------------------------------------------------------------------

#[test]
fn an_unclaimed_hold_expires_after_seven_days_and_gives_the_limits_back() {
    let mut world = joint_with_monthly_limit();
    play(
        &mut world,
        &[OWNER_THIS_MONTH],
        vec![
            step(
                "owner pays in 100.00",
                PLATFORM,
                deposit("owner", eur(10_000)),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_THIS_MONTH, 0, 0)]),
            step(
                "60.00 approved and held",
                NETWORK,
                authorize("a1", groceries("c1", eur(6_000))),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 6_000, 4_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_THIS_MONTH, 6_000, 1)])
            .lifecycles(&[("a1", PENDING)]),
            step(
                "a millisecond before seven days the sweeper leaves it",
                PLATFORM,
                sweep(),
            )
            .after(7 * DAY_MS - 1)
            .answers("00")
            .balances(&[("EUR", 10_000, 6_000, 4_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_THIS_MONTH, 6_000, 1)])
            .lifecycles(&[("a1", PENDING)])
            .moves(&[]),
            step(
                "at seven days the sweeper expires it: hold released, limit given back",
                PLATFORM,
                sweep(),
            )
            .after(1)
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_THIS_MONTH, 0, 0)])
            .lifecycles(&[("a1", EXPIRED)])
            .moves(&[Cause::Expired]),
        ],
    );
    world.assert_replay_matches();
}

#[test]
fn a_clearing_after_the_hold_expired_still_posts_even_if_it_overdraws() {
    let mut world = joint_with_monthly_limit();
    play(
        &mut world,
        &[OWNER_THIS_MONTH],
        vec![
            step(
                "owner pays in 100.00",
                PLATFORM,
                deposit("owner", eur(10_000)),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_THIS_MONTH, 0, 0)]),
            step(
                "60.00 approved and held",
                NETWORK,
                authorize("a1", groceries("c1", eur(6_000))),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 6_000, 4_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_THIS_MONTH, 6_000, 1)]),
            step("seven days on, the hold expires", PLATFORM, sweep())
                .after(7 * DAY_MS)
                .answers("00")
                .balances(&[("EUR", 10_000, 0, 10_000)])
                .positions(&[("owner", "EUR", 10_000)])
                .usage(&[(OWNER_THIS_MONTH, 0, 0)])
                .lifecycles(&[("a1", EXPIRED)])
                .moves(&[Cause::Expired]),
            step(
                "the freed money goes on an 80.00 spend",
                NETWORK,
                authorize("a2", groceries("c1", eur(8_000))),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 8_000, 2_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_THIS_MONTH, 8_000, 1)]),
            step(
                "the late 60.00 clearing posts anyway and overdraws by 40.00",
                NETWORK,
                final_clearing("a1", groceries("c1", eur(6_000))),
            )
            .answers("00")
            .balances(&[("EUR", 4_000, 8_000, -4_000)])
            .positions(&[("owner", "EUR", 4_000)])
            .usage(&[(OWNER_THIS_MONTH, 14_000, 2)])
            .overdrawn(&[("EUR", "owner", 4_000)])
            .lifecycles(&[("a1", CLEARED), ("a2", PENDING)])
            .moves(&[Cause::ClearedAfterExpiry]),
        ],
    );
    world.assert_replay_matches();
}

// ----- 7-9. stand-in advices -------------------------------------------------------------------

/// A joint account: `owner` with card `c1`, `bob` (a member) with card `c-bob` and a daily
/// limit of 30.00.
fn joint_with_bob() -> World {
    let mut world = World::open(AccountKind::Joint);
    world.add_member("bob", Role::Member);
    world.issue_card("c1", "owner");
    world.issue_card("c-bob", "bob");
    give_limit(&mut world, "bob", Window::Day, eur(3_000));
    world
}

#[test]
fn a_stand_in_approval_that_overdraws_is_acknowledged_held_and_attributed_to_the_spender() {
    let mut world = joint_with_bob();
    play(
        &mut world,
        &[BOB_TODAY],
        vec![
            step(
                "owner pays in 20.00",
                PLATFORM,
                deposit("owner", eur(2_000)),
            )
            .answers("00")
            .balances(&[("EUR", 2_000, 0, 2_000)])
            .positions(&[("owner", "EUR", 2_000)])
            .usage(&[(BOB_TODAY, 0, 0)]),
            step(
                "advice: the network approved bob's 50.00 while we were away",
                NETWORK,
                advice("s1", groceries("c-bob", eur(5_000)), true),
            )
            .answers("00")
            .balances(&[("EUR", 2_000, 5_000, -3_000)])
            .positions(&[("owner", "EUR", 2_000)])
            .usage(&[(BOB_TODAY, 5_000, 1)])
            .overdrawn(&[("EUR", "bob", 3_000)])
            .lifecycles(&[("s1", PENDING)])
            .moves(&[Cause::StandInApproved]),
            step(
                "while overdrawn, the owner's 1.00 spend is declined 51",
                NETWORK,
                authorize("a2", groceries("c1", eur(100))),
            )
            .answers("51")
            .balances(&[("EUR", 2_000, 5_000, -3_000)])
            .positions(&[("owner", "EUR", 2_000)])
            .usage(&[(BOB_TODAY, 5_000, 1)])
            .overdrawn(&[("EUR", "bob", 3_000)])
            .lifecycles(&[("a2", NO_LIFECYCLE)]),
            step(
                "owner pays in 40.00: cured",
                PLATFORM,
                deposit("owner", eur(4_000)),
            )
            .answers("00")
            .balances(&[("EUR", 6_000, 5_000, 1_000)])
            .positions(&[("owner", "EUR", 6_000)])
            .usage(&[(BOB_TODAY, 5_000, 1)]),
            step(
                "bob's 50.00 clears and is his to bear",
                NETWORK,
                final_clearing("s1", groceries("c-bob", eur(5_000))),
            )
            .answers("00")
            .balances(&[("EUR", 1_000, 0, 1_000)])
            .positions(&[("owner", "EUR", 6_000), ("bob", "EUR", -5_000)])
            .usage(&[(BOB_TODAY, 5_000, 1)])
            .lifecycles(&[("s1", CLEARED)])
            .moves(&[Cause::Cleared]),
        ],
    );
    world.assert_replay_matches();
}

#[test]
fn when_we_approved_but_the_network_stand_in_declined_the_hold_is_released() {
    let mut world = joint_with_daily_limit();
    play(
        &mut world,
        &[OWNER_TODAY],
        vec![
            step(
                "owner pays in 100.00",
                PLATFORM,
                deposit("owner", eur(10_000)),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 0, 0)]),
            step(
                "we approve 30.00 (too late for the network)",
                NETWORK,
                authorize("a1", groceries("c1", eur(3_000))),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 3_000, 7_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 3_000, 1)])
            .lifecycles(&[("a1", PENDING)]),
            step(
                "advice: the network declined it in stand-in",
                NETWORK,
                advice("a1", groceries("c1", eur(3_000)), false),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 0, 0)])
            .lifecycles(&[("a1", REVERSED)])
            .moves(&[Cause::StandInDeclined]),
        ],
    );
    world.assert_replay_matches();
}

#[test]
fn when_we_declined_but_the_network_stand_in_approved_a_hold_is_created() {
    let mut world = joint_with_daily_limit();
    play(
        &mut world,
        &[OWNER_TODAY],
        vec![
            step(
                "owner pays in 100.00",
                PLATFORM,
                deposit("owner", eur(10_000)),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 0, 0)]),
            step(
                "we decline 150.00 with 51",
                NETWORK,
                authorize("a1", groceries("c1", eur(15_000))),
            )
            .answers("51")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 0, 0)])
            .lifecycles(&[("a1", NO_LIFECYCLE)]),
            step(
                "advice: the network approved it in stand-in: hold, overdrawn by 50.00",
                NETWORK,
                advice("a1", groceries("c1", eur(15_000)), true),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 15_000, -5_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 15_000, 1)])
            .overdrawn(&[("EUR", "owner", 5_000)])
            .lifecycles(&[("a1", PENDING)])
            .moves(&[Cause::StandInApproved]),
            step(
                "it clears for 150.00; still overdrawn by 50.00",
                NETWORK,
                final_clearing("a1", groceries("c1", eur(15_000))),
            )
            .answers("00")
            .balances(&[("EUR", -5_000, 0, -5_000)])
            .positions(&[("owner", "EUR", -5_000)])
            .usage(&[(OWNER_TODAY, 15_000, 1)])
            .overdrawn(&[("EUR", "owner", 5_000)])
            .lifecycles(&[("a1", CLEARED)])
            .moves(&[Cause::Cleared]),
        ],
    );
    world.assert_replay_matches();
}

#[test]
fn an_advice_for_the_final_fuel_amount_replaces_the_one_euro_hold() {
    let mut world = joint_with_daily_limit();
    play(
        &mut world,
        &[OWNER_TODAY],
        vec![
            step(
                "owner pays in 50.00",
                PLATFORM,
                deposit("owner", eur(5_000)),
            )
            .answers("00")
            .balances(&[("EUR", 5_000, 0, 5_000)])
            .positions(&[("owner", "EUR", 5_000)])
            .usage(&[(OWNER_TODAY, 0, 0)]),
            step(
                "the fuel pump asks for 1.00",
                NETWORK,
                authorize("a1", fuel_pump("c1", eur(100))),
            )
            .answers("00")
            .balances(&[("EUR", 5_000, 100, 4_900)])
            .positions(&[("owner", "EUR", 5_000)])
            .usage(&[(OWNER_TODAY, 100, 1)])
            .lifecycles(&[("a1", PENDING)]),
            // One fill-up: the final amount replaces the hold; it is still one spend.
            step(
                "advice for the 65.00 pumped: hold becomes 65.00, overdrawn by 15.00",
                NETWORK,
                advice("a1", fuel_pump("c1", eur(6_500)), true),
            )
            .answers("00")
            .balances(&[("EUR", 5_000, 6_500, -1_500)])
            .positions(&[("owner", "EUR", 5_000)])
            .usage(&[(OWNER_TODAY, 6_500, 1)])
            .overdrawn(&[("EUR", "owner", 1_500)])
            .lifecycles(&[("a1", PENDING)])
            .moves(&[Cause::StandInAdjusted])
            .then(|w, _| {
                assert_eq!(
                    w.account.authorizations[&auth("a1")].authorized_minor,
                    6_500
                )
            }),
            step(
                "it clears for 65.00",
                NETWORK,
                final_clearing("a1", fuel_pump("c1", eur(6_500))),
            )
            .answers("00")
            .balances(&[("EUR", -1_500, 0, -1_500)])
            .positions(&[("owner", "EUR", -1_500)])
            .usage(&[(OWNER_TODAY, 6_500, 1)])
            .overdrawn(&[("EUR", "owner", 1_500)])
            .lifecycles(&[("a1", CLEARED)])
            .moves(&[Cause::Cleared]),
        ],
    );
    world.assert_replay_matches();
}

// ----- 10. reversal before its authorization ---------------------------------------------------

#[test]
fn a_reversal_for_an_unknown_authorization_is_acknowledged_and_voids_the_late_original() {
    let mut world = joint_with_daily_limit();
    let decisions = play(
        &mut world,
        &[OWNER_TODAY],
        vec![
            step(
                "owner pays in 100.00",
                PLATFORM,
                deposit("owner", eur(10_000)),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 0, 0)]),
            step(
                "a reversal for a9, never seen: acknowledged 00, tombstone kept",
                NETWORK,
                reverse_fully("a9"),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 0, 0)])
            .lifecycles(&[("a9", NO_LIFECYCLE)])
            .moves(&[])
            .then(|w, _| assert!(w.account.tombstones.contains_key(&auth("a9")))),
            step(
                "the original 40.00 arrives late: declined 05, nothing held",
                NETWORK,
                authorize("a9", groceries("c1", eur(4_000))),
            )
            .answers("05")
            .because(DeclineReason::VoidedByEarlierReversal)
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 0, 0)])
            .lifecycles(&[("a9", NO_LIFECYCLE)])
            .moves(&[]),
        ],
    );
    assert_eq!(decisions[1].events.len(), 2, "a tombstone and the outcome");
    world.assert_replay_matches();
}

// ----- 11. force post --------------------------------------------------------------------------

#[test]
fn a_clearing_without_authorization_is_force_posted_to_the_cards_member_whatever_the_controls() {
    let mut world = World::open(AccountKind::Joint);
    world.add_member("bob", Role::Member);
    world.issue_card("c-bob", "bob");
    let strict = Controls {
        per_transaction: Some(AmountLimit {
            currency: currency("EUR"),
            amount_minor: 1_000,
        }),
        window_limits: vec![limit(Window::Day, eur(3_000), Some(50))],
        blocked_mccs: [Mcc::new(5411).expect("mcc")].into_iter().collect(),
        ..Controls::default()
    };
    assert!(matches!(
        world.platform(set_controls("bob", strict)),
        Outcome::Accepted { .. }
    ));
    play(
        &mut world,
        &[BOB_TODAY],
        vec![
            step(
                "owner pays in 20.00",
                PLATFORM,
                deposit("owner", eur(2_000)),
            )
            .answers("00")
            .balances(&[("EUR", 2_000, 0, 2_000)])
            .positions(&[("owner", "EUR", 2_000)])
            .usage(&[(BOB_TODAY, 0, 0)]),
            step(
                "bob's 30.00 at a blocked grocer is declined 57",
                NETWORK,
                authorize("a1", groceries("c-bob", eur(3_000))),
            )
            .answers("57")
            .because(DeclineReason::MerchantCategoryBlocked)
            .balances(&[("EUR", 2_000, 0, 2_000)])
            .positions(&[("owner", "EUR", 2_000)])
            .usage(&[(BOB_TODAY, 0, 0)])
            .lifecycles(&[("a1", NO_LIFECYCLE)]),
            step(
                "the merchant clears it anyway: force posted to bob, overdrawn 10.00",
                NETWORK,
                final_clearing("a1", groceries("c-bob", eur(3_000))),
            )
            .answers("00")
            .balances(&[("EUR", -1_000, 0, -1_000)])
            .positions(&[("owner", "EUR", 2_000), ("bob", "EUR", -3_000)])
            .usage(&[(BOB_TODAY, 3_000, 1)])
            .overdrawn(&[("EUR", "bob", 1_000)])
            .lifecycles(&[("a1", CLEARED)])
            .moves(&[Cause::ForcePosted])
            .then(|w, _| assert!(w.account.authorizations[&auth("a1")].network_decided)),
            step(
                "a force post of 5.00 with no authorization at all",
                NETWORK,
                force_post("f2", groceries("c-bob", eur(500))),
            )
            .answers("00")
            .balances(&[("EUR", -1_500, 0, -1_500)])
            .positions(&[("owner", "EUR", 2_000), ("bob", "EUR", -3_500)])
            .usage(&[(BOB_TODAY, 3_500, 2)])
            .overdrawn(&[("EUR", "bob", 1_500)])
            .lifecycles(&[("f2", CLEARED)])
            .moves(&[Cause::ForcePosted]),
        ],
    );
    world.assert_replay_matches();
}

// ----- 12. reversal after clearing -------------------------------------------------------------

#[test]
fn a_late_reversal_after_clearing_is_a_credit_never_a_second_release() {
    let mut world = joint_with_daily_limit();
    play(
        &mut world,
        &[OWNER_TODAY],
        vec![
            step(
                "owner pays in 100.00",
                PLATFORM,
                deposit("owner", eur(10_000)),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 0, 0)]),
            step(
                "50.00 approved and held",
                NETWORK,
                authorize("a1", groceries("c1", eur(5_000))),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 5_000, 5_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 5_000, 1)]),
            step(
                "it clears for 50.00",
                NETWORK,
                final_clearing("a1", groceries("c1", eur(5_000))),
            )
            .answers("00")
            .balances(&[("EUR", 5_000, 0, 5_000)])
            .positions(&[("owner", "EUR", 5_000)])
            .usage(&[(OWNER_TODAY, 5_000, 1)])
            .lifecycles(&[("a1", CLEARED)]),
            step(
                "a reversal to 30.00 after clearing credits 20.00",
                NETWORK,
                reverse_to("a1", eur(3_000)),
            )
            .answers("00")
            .balances(&[("EUR", 7_000, 0, 7_000)])
            .positions(&[("owner", "EUR", 7_000)])
            .usage(&[(OWNER_TODAY, 5_000, 1)])
            .lifecycles(&[("a1", CLEARED)])
            .moves(&[Cause::CreditedAfterClearing]),
            step(
                "a full reversal credits the other 30.00",
                NETWORK,
                reverse_fully("a1"),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 5_000, 1)])
            .lifecycles(&[("a1", CLEARED)])
            .moves(&[Cause::CreditedAfterClearing]),
            step(
                "the reversal repeated under a new key changes nothing",
                NETWORK,
                reverse_fully("a1"),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 5_000, 1)])
            .lifecycles(&[("a1", CLEARED)])
            .moves(&[]),
        ],
    );
    world.assert_replay_matches();
}

// ----- 13. messages on closed lifecycles -------------------------------------------------------

#[test]
fn an_increment_on_an_expired_or_reversed_lifecycle_is_a_fresh_hold() {
    let mut world = joint_with_monthly_limit();
    play(
        &mut world,
        &[OWNER_THIS_MONTH],
        vec![
            step(
                "owner pays in 100.00",
                PLATFORM,
                deposit("owner", eur(10_000)),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_THIS_MONTH, 0, 0)]),
            step(
                "40.00 approved and held",
                NETWORK,
                authorize("a1", groceries("c1", eur(4_000))),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 4_000, 6_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_THIS_MONTH, 4_000, 1)]),
            step("seven days on, it expires", PLATFORM, sweep())
                .after(7 * DAY_MS)
                .answers("00")
                .balances(&[("EUR", 10_000, 0, 10_000)])
                .positions(&[("owner", "EUR", 10_000)])
                .usage(&[(OWNER_THIS_MONTH, 0, 0)])
                .lifecycles(&[("a1", EXPIRED)]),
            step(
                "an increment of 25.00 on the expired a1: a fresh 25.00 hold",
                NETWORK,
                increment("a1", eur(2_500)),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 2_500, 7_500)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_THIS_MONTH, 2_500, 1)])
            .lifecycles(&[("a1", PENDING)])
            .moves(&[Cause::Reopened]),
            step(
                "30.00 approved and held on a2",
                NETWORK,
                authorize("a2", groceries("c1", eur(3_000))),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 5_500, 4_500)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_THIS_MONTH, 5_500, 2)]),
            step("a2 is reversed", NETWORK, reverse_fully("a2"))
                .answers("00")
                .balances(&[("EUR", 10_000, 2_500, 7_500)])
                .positions(&[("owner", "EUR", 10_000)])
                .usage(&[(OWNER_THIS_MONTH, 2_500, 1)])
                .lifecycles(&[("a2", REVERSED)]),
            step(
                "an increment of 10.00 on the reversed a2: a fresh 10.00 hold",
                NETWORK,
                increment("a2", eur(1_000)),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 3_500, 6_500)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_THIS_MONTH, 3_500, 2)])
            .lifecycles(&[("a2", PENDING)])
            .moves(&[Cause::Reopened]),
            step(
                "a1 clears 25.00",
                NETWORK,
                final_clearing("a1", groceries("c1", eur(2_500))),
            )
            .answers("00")
            .balances(&[("EUR", 7_500, 1_000, 6_500)])
            .positions(&[("owner", "EUR", 7_500)])
            .usage(&[(OWNER_THIS_MONTH, 3_500, 2)])
            .lifecycles(&[("a1", CLEARED)])
            .moves(&[Cause::Cleared]),
            step(
                "a2 clears 10.00",
                NETWORK,
                final_clearing("a2", groceries("c1", eur(1_000))),
            )
            .answers("00")
            .balances(&[("EUR", 6_500, 0, 6_500)])
            .positions(&[("owner", "EUR", 6_500)])
            .usage(&[(OWNER_THIS_MONTH, 3_500, 2)])
            .lifecycles(&[("a2", CLEARED)])
            .moves(&[Cause::Cleared]),
        ],
    );
    world.assert_replay_matches();
}

#[test]
fn a_clearing_on_a_reversed_lifecycle_is_force_posted() {
    let mut world = joint_with_monthly_limit();
    play(
        &mut world,
        &[OWNER_THIS_MONTH],
        vec![
            step(
                "owner pays in 10.00",
                PLATFORM,
                deposit("owner", eur(1_000)),
            )
            .answers("00")
            .balances(&[("EUR", 1_000, 0, 1_000)])
            .positions(&[("owner", "EUR", 1_000)])
            .usage(&[(OWNER_THIS_MONTH, 0, 0)]),
            step(
                "10.00 approved and held",
                NETWORK,
                authorize("a1", groceries("c1", eur(1_000))),
            )
            .answers("00")
            .balances(&[("EUR", 1_000, 1_000, 0)])
            .positions(&[("owner", "EUR", 1_000)])
            .usage(&[(OWNER_THIS_MONTH, 1_000, 1)]),
            step("a1 is reversed", NETWORK, reverse_fully("a1"))
                .answers("00")
                .balances(&[("EUR", 1_000, 0, 1_000)])
                .positions(&[("owner", "EUR", 1_000)])
                .usage(&[(OWNER_THIS_MONTH, 0, 0)])
                .lifecycles(&[("a1", REVERSED)]),
            step(
                "another 10.00 takes the money",
                NETWORK,
                authorize("a2", groceries("c1", eur(1_000))),
            )
            .answers("00")
            .balances(&[("EUR", 1_000, 1_000, 0)])
            .positions(&[("owner", "EUR", 1_000)])
            .usage(&[(OWNER_THIS_MONTH, 1_000, 1)]),
            step(
                "a1 clears 10.00 anyway: force posted, overdrawn by 10.00",
                NETWORK,
                final_clearing("a1", groceries("c1", eur(1_000))),
            )
            .answers("00")
            .balances(&[("EUR", 0, 1_000, -1_000)])
            .positions(&[("owner", "EUR", 0)])
            .usage(&[(OWNER_THIS_MONTH, 2_000, 2)])
            .overdrawn(&[("EUR", "owner", 1_000)])
            .lifecycles(&[("a1", CLEARED), ("a2", PENDING)])
            .moves(&[Cause::ForcePosted]),
        ],
    );
    world.assert_replay_matches();
}

// ----- 14. duplicates --------------------------------------------------------------------------

#[test]
fn a_retransmitted_request_gets_the_same_answer_and_a_changed_one_gets_94() {
    let mut world = joint_with_daily_limit();
    let decisions = play(
        &mut world,
        &[OWNER_TODAY],
        vec![
            step(
                "owner pays in 100.00",
                PLATFORM,
                deposit("owner", eur(10_000)),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 0, 0)]),
            step(
                "40.00 approved and held",
                NETWORK,
                authorize("a1", groceries("c1", eur(4_000))),
            )
            .key("key-a1")
            .answers("00")
            .balances(&[("EUR", 10_000, 4_000, 6_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 4_000, 1)])
            .lifecycles(&[("a1", PENDING)]),
            step(
                "the same request again (0101): same answer, no second hold",
                NETWORK,
                authorize("a1", groceries("c1", eur(4_000))),
            )
            .key("key-a1")
            .answers("00")
            .balances(&[("EUR", 10_000, 4_000, 6_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 4_000, 1)])
            .lifecycles(&[("a1", PENDING)])
            .moves(&[]),
            step(
                "the same key for 45.00: 94, nothing changes",
                NETWORK,
                authorize("a1", groceries("c1", eur(4_500))),
            )
            .key("key-a1")
            .answers("94")
            .because(DeclineReason::DuplicateKeyMismatch)
            .balances(&[("EUR", 10_000, 4_000, 6_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 4_000, 1)])
            .lifecycles(&[("a1", PENDING)])
            .moves(&[]),
        ],
    );
    assert!(decisions[2].replayed);
    assert_eq!(
        decisions[2].outcome, decisions[1].outcome,
        "replayed byte for byte, approval code included"
    );
    assert!(!decisions[3].replayed && decisions[3].events.is_empty());
    assert_eq!(
        world.account.authorizations[&auth("a1")].residual_minor(),
        4_000
    );
    world.assert_replay_matches();
}

// ----- 15. time-outs ---------------------------------------------------------------------------

#[test]
fn a_timed_out_authorization_releases_its_hold_answers_91_and_a_later_advice_restores_it() {
    let mut world = joint_with_daily_limit();
    play(
        &mut world,
        &[OWNER_TODAY],
        vec![
            step(
                "owner pays in 100.00",
                PLATFORM,
                deposit("owner", eur(10_000)),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 0, 0)]),
            step(
                "40.00 approved and held (our answer is late)",
                NETWORK,
                authorize("a1", groceries("c1", eur(4_000))),
            )
            .key("key-a1")
            .answers("00")
            .balances(&[("EUR", 10_000, 4_000, 6_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 4_000, 1)])
            .lifecycles(&[("a1", PENDING)]),
            step(
                "the edge answered 91: hold released, limit given back",
                NETWORK,
                mark_timed_out("a1", "key-a1"),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 0, 0)])
            .lifecycles(&[("a1", TIMED_OUT)])
            .moves(&[Cause::TimedOut]),
            step(
                "the acquirer repeats the request: 91, nothing held",
                NETWORK,
                authorize("a1", groceries("c1", eur(4_000))),
            )
            .key("key-a1")
            .answers("91")
            .because(DeclineReason::IssuerUnavailable)
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 0, 0)])
            .lifecycles(&[("a1", TIMED_OUT)])
            .moves(&[]),
            step(
                "0120 advice: the network approved it in stand-in: held again",
                NETWORK,
                advice("a1", groceries("c1", eur(4_000)), true),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 4_000, 6_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 4_000, 1)])
            .lifecycles(&[("a1", PENDING)])
            .moves(&[Cause::StandInApproved]),
            step(
                "a time-out marked before its request arrived",
                NETWORK,
                mark_timed_out("a2", "key-a2"),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 4_000, 6_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 4_000, 1)])
            .lifecycles(&[("a2", NO_LIFECYCLE)])
            .moves(&[]),
            step(
                "the request then arrives: 91, nothing held",
                NETWORK,
                authorize("a2", groceries("c1", eur(2_000))),
            )
            .key("key-a2")
            .answers("91")
            .balances(&[("EUR", 10_000, 4_000, 6_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[(OWNER_TODAY, 4_000, 1)])
            .lifecycles(&[("a2", NO_LIFECYCLE)])
            .moves(&[]),
        ],
    );
    world.assert_replay_matches();
}

// ----- 16. refunds -----------------------------------------------------------------------------

/// A group account: owner, ann and bob, splitting everything equally; ann holds card `c-ann`.
fn group_of_three() -> World {
    let mut world = World::open(AccountKind::Group);
    world.add_member("ann", Role::Member);
    world.add_member("bob", Role::Member);
    world.issue_card("c-ann", "ann");
    world
}

#[test]
fn a_refund_in_a_new_currency_opens_that_balance_and_is_split_by_the_split_rule() {
    let mut world = group_of_three();
    play(
        &mut world,
        &[],
        vec![
            step(
                "owner sets an equal split",
                by("owner"),
                CommandBody::SetSplitRule {
                    rule: SplitRule::Equal,
                },
            )
            .answers("00")
            .balances(&[])
            .positions(&[])
            .usage(&[]),
            step(
                "owner pays in 90.00 EUR",
                PLATFORM,
                deposit("owner", eur(9_000)),
            )
            .answers("00")
            .balances(&[("EUR", 9_000, 0, 9_000)])
            .positions(&[("owner", "EUR", 9_000)])
            .usage(&[]),
            step(
                "a 10.00 GBP refund on ann's card opens a GBP balance, split three ways",
                NETWORK,
                refund("r1", groceries("c-ann", gbp(1_000))),
            )
            .answers("00")
            .balances(&[("EUR", 9_000, 0, 9_000), ("GBP", 1_000, 0, 1_000)])
            // Largest remainder: 333.33 each, the spare penny to the first by id.
            .positions(&[
                ("owner", "EUR", 9_000),
                ("ann", "GBP", 334),
                ("bob", "GBP", 333),
                ("owner", "GBP", 333),
            ])
            .usage(&[])
            .moves(&[Cause::Refunded]),
            step(
                "ann buys 30.00 EUR of groceries",
                NETWORK,
                authorize("a1", groceries("c-ann", eur(3_000))),
            )
            .answers("00")
            .balances(&[("EUR", 9_000, 3_000, 6_000), ("GBP", 1_000, 0, 1_000)])
            .positions(&[
                ("owner", "EUR", 9_000),
                ("ann", "GBP", 334),
                ("bob", "GBP", 333),
                ("owner", "GBP", 333),
            ])
            .usage(&[]),
            step(
                "it clears: each bears 10.00",
                NETWORK,
                final_clearing("a1", groceries("c-ann", eur(3_000))),
            )
            .answers("00")
            .balances(&[("EUR", 6_000, 0, 6_000), ("GBP", 1_000, 0, 1_000)])
            .positions(&[
                ("owner", "EUR", 8_000),
                ("ann", "EUR", -1_000),
                ("bob", "EUR", -1_000),
                ("ann", "GBP", 334),
                ("bob", "GBP", 333),
                ("owner", "GBP", 333),
            ])
            .usage(&[]),
            step(
                "the merchant refunds 30.00 EUR: each gets 10.00 back",
                NETWORK,
                CommandBody::Refund {
                    refund: auth("r2"),
                    spend: groceries("c-ann", eur(3_000)),
                    original: Some(auth("a1")),
                },
            )
            .answers("00")
            .balances(&[("EUR", 9_000, 0, 9_000), ("GBP", 1_000, 0, 1_000)])
            .positions(&[
                ("owner", "EUR", 9_000),
                ("ann", "GBP", 334),
                ("bob", "GBP", 333),
                ("owner", "GBP", 333),
            ])
            .usage(&[])
            .moves(&[Cause::Refunded]),
        ],
    );
    world.assert_replay_matches();
}

// ----- 17. inquiries and card states ----------------------------------------------------------

#[test]
fn balance_inquiry_answers_balances_and_frozen_expired_or_unknown_cards_are_declined() {
    let mut world = World::open(AccountKind::Joint);
    world.issue_card("c1", "owner");
    let last_month = YearMonth::new(2026, 10).expect("month");
    assert!(matches!(
        world.platform(CommandBody::IssueCard {
            card: card("c-old"),
            member: member("owner"),
            expiry: last_month
        }),
        Outcome::Accepted { .. }
    ));
    play(
        &mut world,
        &[],
        vec![
            step(
                "owner pays in 100.00",
                PLATFORM,
                deposit("owner", eur(10_000)),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[]),
            step("balance inquiry on c1", NETWORK, balance_inquiry("c1"))
                .answers("00")
                .balances(&[("EUR", 10_000, 0, 10_000)])
                .positions(&[("owner", "EUR", 10_000)])
                .usage(&[])
                .moves(&[])
                .then(|_, d| match &d.outcome {
                    Outcome::Balances { balances } => {
                        let shown: Vec<_> = balances
                            .iter()
                            .map(|v| {
                                (
                                    v.currency.alpha(),
                                    v.ledger_minor,
                                    v.held_minor,
                                    v.available_minor,
                                )
                            })
                            .collect();
                        assert_eq!(shown, vec![("EUR", 10_000, 0, 10_000)]);
                    }
                    other => panic!("expected balances, got {other:?}"),
                }),
            step(
                "owner freezes c1",
                by("owner"),
                set_card_status("c1", CardStatus::Frozen),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[]),
            step(
                "a spend on the frozen card: 62",
                NETWORK,
                authorize("a1", groceries("c1", eur(1_000))),
            )
            .answers("62")
            .because(DeclineReason::CardFrozen)
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[])
            .lifecycles(&[("a1", NO_LIFECYCLE)]),
            step(
                "a balance inquiry on the frozen card: 62",
                NETWORK,
                balance_inquiry("c1"),
            )
            .answers("62")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[]),
            step(
                "a spend on a card that expired last month: 54",
                NETWORK,
                authorize("a2", groceries("c-old", eur(1_000))),
            )
            .answers("54")
            .because(DeclineReason::CardExpired)
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[])
            .lifecycles(&[("a2", NO_LIFECYCLE)]),
            step(
                "a spend on a card we do not know: 14",
                NETWORK,
                authorize("a3", groceries("c-nobody", eur(1_000))),
            )
            .answers("14")
            .because(DeclineReason::UnknownCard)
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[])
            .lifecycles(&[("a3", NO_LIFECYCLE)]),
            step(
                "owner unfreezes c1",
                by("owner"),
                set_card_status("c1", CardStatus::Active),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[]),
            step(
                "the terminal reads a wrong expiry: 54",
                NETWORK,
                authorize(
                    "a4",
                    presenting_expiry(
                        groceries("c1", eur(1_000)),
                        YearMonth::new(2029, 1).expect("month"),
                    ),
                ),
            )
            .answers("54")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[]),
            step(
                "the right expiry: approved",
                NETWORK,
                authorize(
                    "a5",
                    presenting_expiry(groceries("c1", eur(1_000)), good_expiry()),
                ),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 1_000, 9_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[])
            .lifecycles(&[("a5", PENDING)]),
        ],
    );
    world.assert_replay_matches();
}

// ----- 18. a child's account -------------------------------------------------------------------

fn kid_controls() -> Controls {
    Controls {
        window_limits: vec![limit(Window::Day, eur(3_000), Some(3))],
        channels: Channels::default().with(Channel::Atm, false),
        ..Controls::default()
    }
}

#[test]
fn a_child_is_held_to_the_controls_only_a_guardian_may_set() {
    let mut world = World::open(AccountKind::Kid);
    world.add_member("mum", Role::Guardian);
    world.add_member("kid", Role::Child);
    world.issue_card("c-kid", "kid");
    play(
        &mut world,
        &[KID_TODAY],
        vec![
            step(
                "the owner tries to set the child's controls: refused 57",
                by("owner"),
                set_controls("kid", kid_controls()),
            )
            .answers("57")
            .balances(&[])
            .positions(&[])
            .usage(&[(KID_TODAY, 0, 0)])
            .then(|w, _| {
                assert_eq!(
                    w.account.members[&member("kid")].controls,
                    Controls::default()
                )
            }),
            step(
                "the child tries to set its own controls: refused 57",
                by("kid"),
                set_controls("kid", Controls::default()),
            )
            .answers("57")
            .balances(&[])
            .positions(&[])
            .usage(&[(KID_TODAY, 0, 0)]),
            step(
                "the guardian sets 30.00 and 3 spends a day, no ATM",
                by("mum"),
                set_controls("kid", kid_controls()),
            )
            .answers("00")
            .balances(&[])
            .positions(&[])
            .usage(&[(KID_TODAY, 0, 0)])
            .then(|w, _| assert_eq!(w.account.members[&member("kid")].controls, kid_controls())),
            step(
                "the guardian's top-up of 100.00 arrives (the platform confirms money in)",
                PLATFORM,
                deposit("mum", eur(10_000)),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("mum", "EUR", 10_000)])
            .usage(&[(KID_TODAY, 0, 0)]),
            step(
                "5.00 at a casino (7995): 57",
                NETWORK,
                authorize("a1", at_merchant("c-kid", eur(500), 7995)),
            )
            .answers("57")
            .because(DeclineReason::MerchantCategoryBlocked)
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("mum", "EUR", 10_000)])
            .usage(&[(KID_TODAY, 0, 0)]),
            step(
                "25.00 of groceries: approved",
                NETWORK,
                authorize("a2", groceries("c-kid", eur(2_500))),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 2_500, 7_500)])
            .positions(&[("mum", "EUR", 10_000)])
            .usage(&[(KID_TODAY, 2_500, 1)]),
            step(
                "10.00 more would pass the 30.00 daily limit: 61",
                NETWORK,
                authorize("a3", groceries("c-kid", eur(1_000))),
            )
            .answers("61")
            .because(DeclineReason::AmountLimitExceeded)
            .balances(&[("EUR", 10_000, 2_500, 7_500)])
            .positions(&[("mum", "EUR", 10_000)])
            .usage(&[(KID_TODAY, 2_500, 1)]),
            step(
                "3.00: approved",
                NETWORK,
                authorize("a4", groceries("c-kid", eur(300))),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 2_800, 7_200)])
            .positions(&[("mum", "EUR", 10_000)])
            .usage(&[(KID_TODAY, 2_800, 2)]),
            step(
                "1.00: approved, the third spend today",
                NETWORK,
                authorize("a5", groceries("c-kid", eur(100))),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 2_900, 7_100)])
            .positions(&[("mum", "EUR", 10_000)])
            .usage(&[(KID_TODAY, 2_900, 3)]),
            step(
                "a fourth spend of 0.50 fits the amount but not the count: 65",
                NETWORK,
                authorize("a6", groceries("c-kid", eur(50))),
            )
            .answers("65")
            .because(DeclineReason::CountLimitExceeded)
            .balances(&[("EUR", 10_000, 2_900, 7_100)])
            .positions(&[("mum", "EUR", 10_000)])
            .usage(&[(KID_TODAY, 2_900, 3)]),
            step(
                "cash at an ATM, switched off: 57",
                NETWORK,
                authorize("a7", atm_cash("c-kid", eur(1_000))),
            )
            .answers("57")
            .because(DeclineReason::ChannelNotPermitted)
            .balances(&[("EUR", 10_000, 2_900, 7_100)])
            .positions(&[("mum", "EUR", 10_000)])
            .usage(&[(KID_TODAY, 2_900, 3)]),
            step(
                "the next day the 0.50 goes through",
                NETWORK,
                authorize("a8", groceries("c-kid", eur(50))),
            )
            .after(DAY_MS)
            .answers("00")
            .balances(&[("EUR", 10_000, 2_950, 7_050)])
            .positions(&[("mum", "EUR", 10_000)])
            .usage(&[(KID_TODAY, 50, 1)]),
        ],
    );
    world.assert_replay_matches();
}

// ----- 19. foreign currency --------------------------------------------------------------------

/// A joint account holding 40.00 EUR and 30.00 GBP, owner with card `c1` and a monthly limit.
/// Rates: 1 EUR = 1.0842 USD = 0.8571 GBP. EUR is worth more (40.00 vs 35.00 EUR), so it
/// funds a USD spend first.
fn euros_and_pounds() -> World {
    joint_with_monthly_limit()
}

#[test]
fn a_dollar_spend_is_funded_from_euros_then_pounds_and_reversal_restores_both_exactly() {
    let mut world = euros_and_pounds();
    play(
        &mut world,
        &[OWNER_THIS_MONTH],
        vec![
            step(
                "owner pays in 40.00 EUR",
                PLATFORM,
                deposit("owner", eur(4_000)),
            )
            .answers("00")
            .balances(&[("EUR", 4_000, 0, 4_000)])
            .positions(&[("owner", "EUR", 4_000)])
            .usage(&[(OWNER_THIS_MONTH, 0, 0)]),
            step(
                "owner pays in 30.00 GBP",
                PLATFORM,
                deposit("owner", gbp(3_000)),
            )
            .answers("00")
            .balances(&[("EUR", 4_000, 0, 4_000), ("GBP", 3_000, 0, 3_000)])
            .positions(&[("owner", "EUR", 4_000), ("owner", "GBP", 3_000)])
            .usage(&[(OWNER_THIS_MONTH, 0, 0)]),
            // 40.00 EUR covers 43.36 USD (rounded down); the other 16.64 USD cost 13.16 GBP
            // (13.1545.. rounded up). The limit counts 60.00 USD as 55.35 EUR (rounded up).
            step(
                "60.00 USD: all 40.00 EUR and 13.16 GBP held",
                NETWORK,
                authorize("a1", groceries("c1", usd(6_000))),
            )
            .answers("00")
            .balances(&[("EUR", 4_000, 4_000, 0), ("GBP", 3_000, 1_316, 1_684)])
            .positions(&[("owner", "EUR", 4_000), ("owner", "GBP", 3_000)])
            .usage(&[(OWNER_THIS_MONTH, 5_535, 1)])
            .then(|w, _| {
                let legs: Vec<_> = w.account.authorizations[&auth("a1")]
                    .legs
                    .iter()
                    .map(|l| (l.currency.alpha(), l.amount_minor, l.covers_minor))
                    .collect();
                assert_eq!(legs, vec![("EUR", 4_000, 4_336), ("GBP", 1_316, 1_664)]);
            }),
            // Releases 30.00 USD from the last leg back: all of GBP (16.64 USD), then 13.36
            // USD of EUR; EUR keeps ceil(30.00 / 43.36 * 40.00) = 27.68 held.
            step(
                "partial reversal to 30.00 USD",
                NETWORK,
                reverse_to("a1", usd(3_000)),
            )
            .answers("00")
            .balances(&[("EUR", 4_000, 2_768, 1_232), ("GBP", 3_000, 0, 3_000)])
            .positions(&[("owner", "EUR", 4_000), ("owner", "GBP", 3_000)])
            .usage(&[(OWNER_THIS_MONTH, 2_768, 1)])
            .moves(&[Cause::PartiallyReversed]),
            step(
                "full reversal: both balances exactly as before",
                NETWORK,
                reverse_fully("a1"),
            )
            .answers("00")
            .balances(&[("EUR", 4_000, 0, 4_000), ("GBP", 3_000, 0, 3_000)])
            .positions(&[("owner", "EUR", 4_000), ("owner", "GBP", 3_000)])
            .usage(&[(OWNER_THIS_MONTH, 0, 0)])
            .lifecycles(&[("a1", REVERSED)])
            .moves(&[Cause::Reversed]),
        ],
    );
    assert!(
        !world.account.balances.contains_key(&currency("USD")),
        "no USD balance was opened"
    );
    world.assert_replay_matches();
}

#[test]
fn a_dollar_clearing_above_its_hold_posts_the_held_legs_and_takes_the_excess_from_pounds() {
    let mut world = euros_and_pounds();
    play(
        &mut world,
        &[OWNER_THIS_MONTH],
        vec![
            step(
                "owner pays in 40.00 EUR",
                PLATFORM,
                deposit("owner", eur(4_000)),
            )
            .answers("00")
            .balances(&[("EUR", 4_000, 0, 4_000)])
            .positions(&[("owner", "EUR", 4_000)])
            .usage(&[(OWNER_THIS_MONTH, 0, 0)]),
            step(
                "owner pays in 30.00 GBP",
                PLATFORM,
                deposit("owner", gbp(3_000)),
            )
            .answers("00")
            .balances(&[("EUR", 4_000, 0, 4_000), ("GBP", 3_000, 0, 3_000)])
            .positions(&[("owner", "EUR", 4_000), ("owner", "GBP", 3_000)])
            .usage(&[(OWNER_THIS_MONTH, 0, 0)]),
            step(
                "60.00 USD: 40.00 EUR and 13.16 GBP held",
                NETWORK,
                authorize("a1", groceries("c1", usd(6_000))),
            )
            .answers("00")
            .balances(&[("EUR", 4_000, 4_000, 0), ("GBP", 3_000, 1_316, 1_684)])
            .positions(&[("owner", "EUR", 4_000), ("owner", "GBP", 3_000)])
            .usage(&[(OWNER_THIS_MONTH, 5_535, 1)]),
            // The 6.00 USD tip costs 4.75 GBP (4.7432.. rounded up) and counts 5.54 EUR.
            step(
                "it clears at 66.00 USD: held legs posted, 6.00 USD more from GBP",
                NETWORK,
                final_clearing("a1", groceries("c1", usd(6_600))),
            )
            .answers("00")
            .balances(&[("EUR", 0, 0, 0), ("GBP", 1_209, 0, 1_209)])
            .positions(&[("owner", "GBP", 1_209)])
            .usage(&[(OWNER_THIS_MONTH, 6_089, 1)])
            .lifecycles(&[("a1", CLEARED)])
            .moves(&[Cause::ClearedAboveHold]),
        ],
    );
    world.assert_replay_matches();
}

// ----- 20. withdrawals and settling up ---------------------------------------------------------

#[test]
fn a_withdrawal_is_held_then_posted_or_cancelled() {
    let mut world = World::open(AccountKind::Joint);
    world.add_member("bob", Role::Member);
    play(
        &mut world,
        &[],
        vec![
            step(
                "owner pays in 100.00",
                PLATFORM,
                deposit("owner", eur(10_000)),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 0, 10_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[]),
            step(
                "owner withdraws 30.00: held",
                by("owner"),
                withdraw("w1", "owner", eur(3_000)),
            )
            .answers("00")
            .balances(&[("EUR", 10_000, 3_000, 7_000)])
            .positions(&[("owner", "EUR", 10_000)])
            .usage(&[])
            .lifecycles(&[("w1", PENDING)])
            .moves(&[Cause::WithdrawalHeld]),
            step(
                "the payout completes: posted",
                by("owner"),
                complete_withdrawal("w1"),
            )
            .answers("00")
            .balances(&[("EUR", 7_000, 0, 7_000)])
            .positions(&[("owner", "EUR", 7_000)])
            .usage(&[])
            .lifecycles(&[("w1", CLEARED)])
            .moves(&[Cause::WithdrawalPosted]),
            step(
                "bob may not withdraw for the owner: 57",
                by("bob"),
                withdraw("w2", "owner", eur(1_000)),
            )
            .answers("57")
            .balances(&[("EUR", 7_000, 0, 7_000)])
            .positions(&[("owner", "EUR", 7_000)])
            .usage(&[])
            .lifecycles(&[("w2", NO_LIFECYCLE)]),
            step(
                "80.00 is more than available: 51",
                by("owner"),
                withdraw("w3", "owner", eur(8_000)),
            )
            .answers("51")
            .balances(&[("EUR", 7_000, 0, 7_000)])
            .positions(&[("owner", "EUR", 7_000)])
            .usage(&[])
            .lifecycles(&[("w3", NO_LIFECYCLE)]),
            step(
                "owner withdraws 20.00: held",
                by("owner"),
                withdraw("w4", "owner", eur(2_000)),
            )
            .answers("00")
            .balances(&[("EUR", 7_000, 2_000, 5_000)])
            .positions(&[("owner", "EUR", 7_000)])
            .usage(&[]),
            step(
                "the payout is cancelled: released",
                by("owner"),
                cancel_withdrawal("w4"),
            )
            .answers("00")
            .balances(&[("EUR", 7_000, 0, 7_000)])
            .positions(&[("owner", "EUR", 7_000)])
            .usage(&[])
            .lifecycles(&[("w4", REVERSED)])
            .moves(&[Cause::WithdrawalCancelled]),
        ],
    );
    world.assert_replay_matches();
}

fn transfers(world: &World) -> Vec<(String, String, i64)> {
    world
        .account
        .settle_up()
        .into_iter()
        .map(|Transfer { from, to, amount }| {
            (
                from.as_str().to_owned(),
                to.as_str().to_owned(),
                amount.amount_minor,
            )
        })
        .collect()
}

#[test]
fn after_equal_split_spending_settle_up_proposes_who_pays_whom() {
    let mut world = group_of_three();
    play(
        &mut world,
        &[],
        vec![
            step(
                "owner sets an equal split",
                by("owner"),
                CommandBody::SetSplitRule {
                    rule: SplitRule::Equal,
                },
            )
            .answers("00")
            .balances(&[])
            .positions(&[])
            .usage(&[]),
            step(
                "owner pays in 90.00",
                PLATFORM,
                deposit("owner", eur(9_000)),
            )
            .answers("00")
            .balances(&[("EUR", 9_000, 0, 9_000)])
            .positions(&[("owner", "EUR", 9_000)])
            .usage(&[])
            .then(|w, _| assert!(transfers(w).is_empty())),
            step(
                "ann buys 30.00 of groceries",
                NETWORK,
                authorize("a1", groceries("c-ann", eur(3_000))),
            )
            .answers("00")
            .balances(&[("EUR", 9_000, 3_000, 6_000)])
            .positions(&[("owner", "EUR", 9_000)])
            .usage(&[]),
            step(
                "it clears: each bears 10.00",
                NETWORK,
                final_clearing("a1", groceries("c-ann", eur(3_000))),
            )
            .answers("00")
            .balances(&[("EUR", 6_000, 0, 6_000)])
            .positions(&[
                ("owner", "EUR", 8_000),
                ("ann", "EUR", -1_000),
                ("bob", "EUR", -1_000),
            ])
            .usage(&[])
            .then(|w, _| {
                assert_eq!(
                    transfers(w),
                    vec![
                        ("ann".into(), "owner".into(), 1_000),
                        ("bob".into(), "owner".into(), 1_000)
                    ]
                )
            }),
            step(
                "ann pays the owner 10.00 outside the account; the owner confirms it",
                by("owner"),
                record_settlement("ann", "owner", eur(1_000)),
            )
            .answers("00")
            .balances(&[("EUR", 6_000, 0, 6_000)])
            .positions(&[
                ("owner", "EUR", 7_000),
                ("ann", "EUR", 0),
                ("bob", "EUR", -1_000),
            ])
            .usage(&[])
            .moves(&[Cause::Settlement])
            .then(|w, _| assert_eq!(transfers(w), vec![("bob".into(), "owner".into(), 1_000)])),
        ],
    );
    world.assert_replay_matches();
}

// ----- FX re-pricing at clearing (domain.md part B: "for FX, re-price the converted legs") -----

fn eur_only_with_card() -> World {
    let mut world = World::open(AccountKind::Joint);
    world.issue_card("c1", "owner");
    world.deposit("owner", money(10_000, "EUR"));
    world
}

fn last_movement(world: &World) -> &tandem_core::Movement {
    world
        .log
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Movement(m) => Some(&**m),
            _ => None,
        })
        .expect("a movement")
}

#[test]
fn a_converted_hold_is_repriced_at_clearing_and_the_fx_loss_is_booked_to_the_members() {
    let mut world = eur_only_with_card();
    // 50.00 USD at 1.0842 USD per EUR costs 46.1169.. EUR: 46.12 EUR held.
    let outcome = world.authorize("a1", testkit::spend("c1", money(5_000, "USD")));
    assert_eq!(outcome.response_code().as_str(), "00");
    assert_eq!(world.balance("EUR"), (10_000, 4_612, 5_388));
    // The dollar strengthens: 1.05 USD per EUR, so 50.00 USD now costs 47.6190.. = 47.62 EUR.
    let mut rates = world.rates.rates().clone();
    rates.insert(currency("USD"), "1.05".parse().unwrap());
    world.rates = tandem_core::RateTable::new(currency("EUR"), rates).unwrap();
    let outcome = world.network(CommandBody::Clear {
        authorization: auth("a1"),
        spend: testkit::spend("c1", money(5_000, "USD")),
        final_clearing: true,
    });
    assert_eq!(outcome.response_code().as_str(), "00");
    assert_eq!(world.balance("EUR"), (5_238, 0, 5_238));
    assert_eq!(world.position("owner", "EUR"), 5_238);
    let movement = last_movement(&world);
    assert_eq!(movement.cause, Cause::ClearedWithFxDifference);
    let fx: Vec<_> = movement
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::FxDifference)
        .collect();
    assert_eq!(fx.len(), 1);
    assert_eq!(
        (fx[0].currency, fx[0].amount_minor),
        (currency("EUR"), -150)
    );
    assert_eq!(fx[0].shares, vec![(member("owner"), -150)]);
    assert_eq!(
        world.account.authorizations[&auth("a1")].posted[0].amount_minor,
        4_762
    );
    world.assert_replay_matches();
}

#[test]
fn partial_clearings_at_an_unchanged_rate_book_no_fx_difference() {
    let mut world = eur_only_with_card();
    world.authorize("a1", testkit::spend("c1", money(5_000, "USD")));
    for (amount, last) in [(1_234, false), (2_000, false), (1_766, true)] {
        world.network(CommandBody::Clear {
            authorization: auth("a1"),
            spend: testkit::spend("c1", money(amount, "USD")),
            final_clearing: last,
        });
        let movement = last_movement(&world);
        assert_eq!(movement.cause, Cause::Cleared);
        assert!(
            movement
                .entries
                .iter()
                .all(|e| e.kind == EntryKind::Principal)
        );
    }
    // Exactly what was held is posted, in three parts.
    assert_eq!(world.balance("EUR"), (10_000 - 4_612, 0, 10_000 - 4_612));
    world.assert_replay_matches();
}

#[test]
fn a_zero_clearing_that_is_not_final_changes_nothing() {
    let mut world = eur_only_with_card();
    world.authorize("a1", testkit::spend("c1", money(2_000, "EUR")));
    let before = world.account.clone();
    let outcome = world.network(CommandBody::Clear {
        authorization: auth("a1"),
        spend: testkit::spend("c1", money(0, "EUR")),
        final_clearing: false,
    });
    assert_eq!(outcome.response_code().as_str(), "00");
    assert_eq!(world.account.authorizations, before.authorizations);
    assert_eq!(world.account.balances, before.balances);
}

#[test]
fn force_posts_and_tips_above_tolerance_are_flagged_for_review() {
    let mut world = eur_only_with_card();
    world.network(CommandBody::ForcePost {
        authorization: auth("f1"),
        spend: testkit::spend("c1", money(700, "EUR")),
    });
    assert_eq!(
        world.account.authorizations[&auth("f1")].review,
        Some(ReviewReason::ForcePosted)
    );
    // A restaurant tolerates 20%: 10.00 authorized clears at 12.00 unflagged, another at 12.01 flagged.
    let mut restaurant = testkit::spend("c1", money(1_000, "EUR"));
    restaurant.merchant.mcc = Mcc::new(5812).unwrap();
    world.authorize("r1", restaurant.clone());
    world.authorize("r2", restaurant.clone());
    for (id, amount) in [("r1", 1_200), ("r2", 1_201)] {
        world.network(CommandBody::Clear {
            authorization: auth(id),
            spend: testkit::spend("c1", money(amount, "EUR")),
            final_clearing: true,
        });
    }
    assert_eq!(world.account.authorizations[&auth("r1")].review, None);
    assert_eq!(
        world.account.authorizations[&auth("r2")].review,
        Some(ReviewReason::ClearedAboveTolerance)
    );
    world.assert_replay_matches();
}
