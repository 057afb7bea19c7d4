//! Builders for tests, benches and examples: a standard rate table, a fixed start time, short
//! constructors, and [`World`], an account driven command by command that checks every
//! invariant after each step and can replay its own event log.
//!
//! Pure like the rest of the core (no clock, no randomness); it panics on misuse because it is
//! only for tests.

use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::str::FromStr;

use crate::account::{Account, AccountKind};
use crate::apply::{apply, replay};
use crate::authorization::{Merchant, SpendKind};
use crate::command::{Actor, Command, CommandBody, Spend};
use crate::context::{DecisionContext, Policy};
use crate::controls::{Channel, Country, LimitScope, Mcc};
use crate::currency::Currency;
use crate::decide::{Decision, decide};
use crate::event::Event;
use crate::fx::RateTable;
use crate::ids::{AccountId, AuthorizationId, CardId, IdempotencyKey, MemberId};
use crate::member::Role;
use crate::money::Money;
use crate::outcome::Outcome;
use crate::time::{Timestamp, Window, YearMonth};
use crate::usage::UsageSubject;

pub fn currency(code: &str) -> Currency {
    Currency::from_alpha(code).expect("test currency")
}

pub fn money(amount_minor: i64, code: &str) -> Money {
    Money::new(amount_minor, currency(code))
}

pub fn member(name: &str) -> MemberId {
    MemberId::new(name).expect("test member id")
}

pub fn card(name: &str) -> CardId {
    CardId::new(name).expect("test card id")
}

pub fn auth(name: &str) -> AuthorizationId {
    AuthorizationId::new(name).expect("test authorization id")
}

pub fn key(name: &str) -> IdempotencyKey {
    IdempotencyKey::new(name).expect("test key")
}

/// Monday 2026-11-02 10:00:00 UTC.
pub const T0: Timestamp = Timestamp::from_millis(1_793_613_600_000);

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = crate::limits::DAY_MS;

/// A card expiry comfortably in the future.
pub fn good_expiry() -> YearMonth {
    YearMonth::new(2030, 12).expect("valid")
}

/// Rates against EUR: 1 EUR = 0.8571 GBP = 1.0842 USD = 161.37 JPY = 0.4087 BHD = 0.9412 CHF.
pub fn standard_rates() -> RateTable {
    let rates: BTreeMap<Currency, Decimal> = [
        ("GBP", "0.8571"),
        ("USD", "1.0842"),
        ("JPY", "161.37"),
        ("BHD", "0.4087"),
        ("CHF", "0.9412"),
    ]
    .into_iter()
    .map(|(code, rate)| (currency(code), Decimal::from_str(rate).expect("rate")))
    .collect();
    RateTable::new(currency("EUR"), rates).expect("valid rates")
}

/// A chip purchase at a grocery (MCC 5411) in GB.
pub fn spend(card_name: &str, amount: Money) -> Spend {
    Spend {
        card: card(card_name),
        amount,
        cashback_minor: 0,
        kind: SpendKind::Purchase,
        merchant: Merchant {
            mcc: Mcc::new(5411).expect("mcc"),
            country: Some(Country::new("GB").expect("country")),
            name: None,
        },
        channel: Channel::Chip,
        presented_expiry: None,
        partial_allowed: false,
    }
}

fn authorize_body(id: &str, amount_minor: i64) -> CommandBody {
    CommandBody::Authorize {
        authorization: auth(id),
        spend: spend("c1", money(amount_minor, "EUR")),
        single_message: false,
    }
}

fn clear_body(id: &str, amount_minor: i64) -> CommandBody {
    CommandBody::Clear {
        authorization: auth(id),
        spend: spend("c1", money(amount_minor, "EUR")),
        final_clearing: true,
    }
}

/// At most `count` commands (whole lifecycles) of the settled lifecycle mix on card `c1`,
/// keyed under `prefix`: each
/// lifecycle is authorized and cleared in full, one in ten incremented in between. Run on
/// [`World::aged`], it leaves the open holds where they are and keeps the history at its
/// limits, so every decision pays whatever retention costs.
pub fn lifecycle_mix(prefix: &str, count: usize) -> Vec<Command> {
    let mut commands = Vec::with_capacity(count);
    for n in 0.. {
        let id = format!("{prefix}-{n}");
        let mut lifecycle = vec![Command::new(
            key(&format!("{prefix}-a{n}")),
            Actor::Network,
            authorize_body(&id, 100),
        )];
        if n % 10 == 0 {
            lifecycle.push(Command::new(
                key(&format!("{prefix}-i{n}")),
                Actor::Network,
                CommandBody::Increment {
                    authorization: auth(&id),
                    amount: money(50, "EUR"),
                },
            ));
        }
        lifecycle.push(Command::new(
            key(&format!("{prefix}-c{n}")),
            Actor::Network,
            clear_body(&id, 100),
        ));
        if commands.len() + lifecycle.len() > count {
            break;
        }
        commands.extend(lifecycle);
    }
    commands
}

/// An account driven command by command. Every step checks `Account::validate` and keeps the
/// events so the test can check that replay rebuilds the same state.
pub struct World {
    pub account: Account,
    pub rates: RateTable,
    pub policy: Policy,
    pub now: Timestamp,
    pub log: Vec<Event>,
    next_key: u64,
}

impl World {
    /// An empty, unopened account.
    pub fn unopened(id: &str) -> Self {
        Self {
            account: Account::new(AccountId::new(id).expect("account id")),
            rates: standard_rates(),
            policy: Policy::default(),
            now: T0,
            log: Vec::new(),
            next_key: 0,
        }
    }

    /// An open account of `kind` whose first member, `owner`, is an owner.
    pub fn open(kind: AccountKind) -> Self {
        let mut world = Self::unopened("acc-1");
        world.platform(CommandBody::OpenAccount { kind });
        world.platform(CommandBody::AddMember {
            member: member("owner"),
            role: Role::Owner,
        });
        world
    }

    pub fn fresh_key(&mut self) -> IdempotencyKey {
        self.next_key += 1;
        IdempotencyKey::new(&format!("k{}", self.next_key)).expect("key")
    }

    /// Decides and applies with an explicit key; panics if the core could not decide or an
    /// invariant broke.
    pub fn run_keyed(&mut self, key: IdempotencyKey, actor: Actor, body: CommandBody) -> Decision {
        self.run_command(Command::new(key, actor, body))
    }

    /// Decides and applies a whole command (with its lifecycle references), as `run_keyed`.
    pub fn run_command(&mut self, command: Command) -> Decision {
        let ctx = DecisionContext {
            now: self.now,
            rates: &self.rates,
            policy: &self.policy,
        };
        let decision = decide(&self.account, &command, &ctx)
            .unwrap_or_else(|e| panic!("could not decide {command:?}: {e}"));
        for event in &decision.events {
            apply(&mut self.account, event);
        }
        self.log.extend(decision.events.iter().cloned());
        if let Err(violation) = self.account.validate() {
            panic!("after {command:?}: {violation}");
        }
        decision
    }

    /// Decides and applies `body` from the network under `key`, one millisecond after the
    /// last step, without `validate` (linear in the history) or the replay log: for building
    /// and driving large accounts. The caller validates when it wants.
    pub fn step(&mut self, key: &str, body: CommandBody) -> Decision {
        let ctx = DecisionContext {
            now: self.now,
            rates: &self.rates,
            policy: &self.policy,
        };
        let command = Command::new(self::key(key), Actor::Network, body);
        let decision = decide(&self.account, &command, &ctx)
            .unwrap_or_else(|e| panic!("could not decide {command:?}: {e}"));
        for event in &decision.events {
            apply(&mut self.account, event);
        }
        self.advance_ms(1);
        decision
    }

    /// A hot account as busy card traffic leaves it: `open_holds` holds left open on card
    /// `c1` (one in ten incremented once, so it has two outcomes), and behind them a full
    /// retained history: 6,000 settled lifecycles, so closed lifecycles and forgettable
    /// outcomes sit at their count limits (`limits.rs`). Ready for [`lifecycle_mix`].
    pub fn aged(open_holds: usize) -> World {
        let mut world = World::open(AccountKind::Joint);
        world.issue_card("c1", "owner");
        world.deposit("owner", money(900_000_000_000, "EUR"));
        for n in 0..open_holds {
            let id = format!("open-{n}");
            let approved = world.step(&format!("open-a{n}"), authorize_body(&id, 100));
            assert!(approved.outcome.is_approved(), "{:?}", approved.outcome);
            if n % 10 == 0 {
                world.step(
                    &format!("open-i{n}"),
                    CommandBody::Increment {
                        authorization: auth(&id),
                        amount: money(50, "EUR"),
                    },
                );
            }
        }
        for n in 0..6_000 {
            let id = format!("old-{n}");
            world.step(&format!("old-a{n}"), authorize_body(&id, 100));
            world.step(&format!("old-c{n}"), clear_body(&id, 100));
        }
        world
    }

    pub fn run(&mut self, actor: Actor, body: CommandBody) -> Outcome {
        let key = self.fresh_key();
        self.run_keyed(key, actor, body).outcome
    }

    pub fn platform(&mut self, body: CommandBody) -> Outcome {
        self.run(Actor::Platform, body)
    }

    pub fn network(&mut self, body: CommandBody) -> Outcome {
        self.run(Actor::Network, body)
    }

    pub fn as_member(&mut self, name: &str, body: CommandBody) -> Outcome {
        self.run(Actor::Member(member(name)), body)
    }

    pub fn add_member(&mut self, name: &str, role: Role) {
        let outcome = self.platform(CommandBody::AddMember {
            member: member(name),
            role,
        });
        assert!(
            matches!(outcome, Outcome::Accepted { .. }),
            "add member {name}: {outcome:?}"
        );
    }

    pub fn issue_card(&mut self, card_name: &str, member_name: &str) {
        let outcome = self.platform(CommandBody::IssueCard {
            card: card(card_name),
            member: member(member_name),
            expiry: good_expiry(),
        });
        assert!(
            matches!(outcome, Outcome::Accepted { .. }),
            "issue card {card_name}: {outcome:?}"
        );
    }

    pub fn deposit(&mut self, member_name: &str, amount: Money) {
        let outcome = self.platform(CommandBody::Deposit {
            member: member(member_name),
            amount,
        });
        assert!(
            matches!(outcome, Outcome::Accepted { .. }),
            "deposit: {outcome:?}"
        );
    }

    pub fn authorize(&mut self, authorization: &str, spend: Spend) -> Outcome {
        self.network(CommandBody::Authorize {
            authorization: auth(authorization),
            spend,
            single_message: false,
        })
    }

    pub fn advance_ms(&mut self, millis: i64) {
        self.now = self.now.saturating_add_millis(millis);
    }

    /// `(ledger, held, available)` of one currency.
    pub fn balance(&self, code: &str) -> (i64, i64, i64) {
        let view = self.account.balance_view(currency(code));
        (view.ledger_minor, view.held_minor, view.available_minor)
    }

    pub fn position(&self, member_name: &str, code: &str) -> i64 {
        self.account.position(&member(member_name), currency(code))
    }

    /// `(amount, count)` a subject used in the current window of one limit, counted in
    /// `code` (or `None` for count-only limits).
    pub fn usage(
        &self,
        subject: &UsageSubject,
        scope: LimitScope,
        window: Window,
        code: Option<&str>,
    ) -> (i64, u32) {
        let usage = match subject {
            UsageSubject::Member(id) => &self.account.members[id].usage,
            UsageSubject::Card(id) => &self.account.cards[id].usage,
        };
        usage.current(scope, window, self.now, code.map(currency))
    }

    /// Rebuilds the account from the log and checks it equals the live state.
    pub fn assert_replay_matches(&self) {
        let rebuilt = replay(Account::new(self.account.id.clone()), &self.log);
        assert_eq!(
            rebuilt, self.account,
            "replaying the event log must rebuild the account exactly"
        );
    }
}
