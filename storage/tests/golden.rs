//! The golden log: a log written in event format version 1 is committed as a fixture and must
//! replay, through the real decoder, to the committed expected state. If this fails after a
//! change to the core's types, the change broke old logs: add a format version and a decoder
//! for it instead of editing the fixture.
//!
//! To write the fixture (only when deliberately adding a new golden file):
//! `TANDEM_WRITE_GOLDEN=1 cargo test -p tandem-storage --test golden`.

use std::fmt::Write;
use tandem_core::testkit::{self, World, auth, card, member, money};
use tandem_core::{
    Account, AccountKind, AmountLimit, CommandBody, Controls, LimitScope, Mcc, Role, SplitRule,
    Window, WindowLimit,
};
use tandem_storage::codec;

const FIXTURE: &str = "tests/fixtures/golden-v1.log";
const EXPECTED: &str = "tests/fixtures/golden-v1.expected";

/// A month of a flat-share account in three currencies, touching most of the lifecycle.
fn story() -> Vec<Vec<tandem_core::Event>> {
    let mut world = World::open(AccountKind::Group);
    let mut batches = Vec::new();
    let mut mark = 0;
    let mut cut = |world: &World| {
        let batch = world.log[mark..].to_vec();
        mark = world.log.len();
        batch
    };
    world.add_member("ana", Role::Member);
    world.add_member("ben", Role::Member);
    world.issue_card("c-ana", "ana");
    world.issue_card("c-ben", "ben");
    batches.push(cut(&world));
    world.deposit("ana", money(60_000, "EUR"));
    world.deposit("ben", money(40_000, "GBP"));
    world.platform(CommandBody::SetSplitRule {
        rule: SplitRule::Equal,
    });
    let daily = WindowLimit {
        scope: LimitScope::All,
        window: Window::Day,
        amount: Some(AmountLimit {
            currency: testkit::currency("EUR"),
            amount_minor: 50_000,
        }),
        count: Some(10),
    };
    world.platform(CommandBody::SetMemberControls {
        member: member("ben"),
        controls: Controls {
            window_limits: vec![daily],
            blocked_mccs: [Mcc::new(7995).unwrap()].into(),
            ..Controls::default()
        },
    });
    batches.push(cut(&world));
    world.authorize("groceries", testkit::spend("c-ana", money(8_450, "EUR")));
    world.authorize("train", testkit::spend("c-ben", money(12_000, "USD")));
    world.authorize("casino", testkit::spend("c-ben", money(1_000, "EUR")));
    batches.push(cut(&world));
    world.network(CommandBody::Clear {
        authorization: auth("groceries"),
        spend: testkit::spend("c-ana", money(8_450, "EUR")),
        final_clearing: true,
    });
    world.network(CommandBody::Reverse {
        authorization: auth("train"),
        replacement: Some(money(9_000, "USD")),
    });
    world.network(CommandBody::Reverse {
        authorization: auth("unknown"),
        replacement: None,
    });
    world.network(CommandBody::Refund {
        refund: auth("refund-1"),
        spend: testkit::spend("c-ana", money(1_500, "CHF")),
        original: None,
    });
    batches.push(cut(&world));
    world.advance_ms(8 * testkit::DAY_MS);
    world.platform(CommandBody::Sweep);
    world.network(CommandBody::Clear {
        authorization: auth("train"),
        spend: testkit::spend("c-ben", money(9_300, "USD")),
        final_clearing: true,
    });
    world.platform(CommandBody::ReplaceCard {
        card: card("c-ana"),
        new_card: card("c-ana-2"),
        expiry: testkit::good_expiry(),
    });
    batches.push(cut(&world));
    batches
}

/// A stable text description of an account: what the fixture promises to rebuild.
fn summary(account: &Account) -> String {
    let mut out = String::new();
    writeln!(
        out,
        "account {} {:?} {:?} seq {}",
        account.id, account.kind, account.status, account.seq
    )
    .unwrap();
    for view in account.balance_views() {
        writeln!(
            out,
            "balance {} ledger {} held {} available {}",
            view.currency, view.ledger_minor, view.held_minor, view.available_minor
        )
        .unwrap();
    }
    for (member, positions) in &account.positions {
        for (currency, value) in positions {
            writeln!(out, "position {member} {currency} {value}").unwrap();
        }
    }
    let mut records: Vec<_> = account.authorizations.values().collect();
    records.sort_by(|a, b| a.id.cmp(&b.id));
    for r in records {
        writeln!(
            out,
            "lifecycle {} {:?} {:?} authorized {} cleared {} credited {} residual {}",
            r.id,
            r.kind,
            r.state,
            r.authorized_minor,
            r.cleared_minor,
            r.credited_minor,
            r.residual_minor()
        )
        .unwrap();
    }
    for card in account.cards.values() {
        writeln!(out, "card {} {} {:?}", card.id, card.member, card.status).unwrap();
    }
    let mut tombstones: Vec<_> = account.tombstones.keys().collect();
    tombstones.sort();
    for t in tombstones {
        writeln!(out, "tombstone {t}").unwrap();
    }
    for member in account.members.values() {
        for ((scope, window), counter) in member.usage.counters() {
            writeln!(
                out,
                "usage {} {scope:?} {window:?} {} {}",
                member.id, counter.amount_minor, counter.count
            )
            .unwrap();
        }
    }
    writeln!(out, "outcomes {}", account.outcomes.len()).unwrap();
    out
}

fn read_log(bytes: &[u8]) -> Vec<Vec<tandem_core::Event>> {
    let mut batches = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (length, tail) = rest.split_at(4);
        let length = u32::from_be_bytes(length.try_into().unwrap()) as usize;
        let (record, tail) = tail.split_at(length);
        batches.push(codec::decode_events(record).expect("a version-1 record decodes"));
        rest = tail;
    }
    batches
}

#[test]
fn a_version_1_log_replays_to_the_committed_state() {
    if std::env::var("TANDEM_WRITE_GOLDEN").is_ok() {
        let mut bytes = Vec::new();
        for batch in story() {
            let record = codec::encode_events(&batch).unwrap();
            bytes.extend_from_slice(&(record.len() as u32).to_be_bytes());
            bytes.extend_from_slice(&record);
        }
        std::fs::write(FIXTURE, &bytes).unwrap();
        let mut account = Account::new(tandem_core::AccountId::new("acc-1").unwrap());
        for event in read_log(&bytes).into_iter().flatten() {
            tandem_core::apply_owned(&mut account, event);
        }
        std::fs::write(EXPECTED, summary(&account)).unwrap();
    }
    let bytes = std::fs::read(FIXTURE).expect("the golden log fixture is committed");
    assert_eq!(bytes[4], 1, "the fixture is format version 1");
    let mut account = Account::new(tandem_core::AccountId::new("acc-1").unwrap());
    for event in read_log(&bytes).into_iter().flatten() {
        tandem_core::apply_owned(&mut account, event);
    }
    account
        .validate()
        .expect("the replayed account is consistent");
    let expected = std::fs::read_to_string(EXPECTED).expect("the expected state is committed");
    assert_eq!(summary(&account), expected);
}
