//! The ISO 8583 gateway against the real binary over real TCP: every message type of the
//! profile, repeats and duplicates, partial approval and reversal, advices that overdraw,
//! the deadline with a commit slowed on purpose, and hostile input on one link while another
//! keeps working. Last, interoperability: the gateway driven by pyiso8583 (from PyPI), an
//! implementation we did not write, through `tests/interop/iso8583_interop.py`; the
//! virtualenv it runs from is made by `tests/interop/setup.sh` (which `.ci/run` calls, and
//! the test calls too when it is missing).
#![allow(clippy::inconsistent_digit_grouping)] // amounts are written as major_minor

mod common;

use common::Node;
use common::iso::{
    EUR, KID_PAN, Link, PAN, as_mti, authorization, message, original_data, setup, text, with,
};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn eur(balance: &Value) -> (i64, i64) {
    let entry = balance["balances"]
        .as_array()
        .expect("balances")
        .iter()
        .find(|b| b["currency"] == "EUR")
        .expect("an EUR balance");
    (
        entry["ledger_minor"].as_i64().unwrap_or(0),
        entry["available_minor"].as_i64().unwrap_or(0),
    )
}

async fn holds(node: &Node, account: &str) -> Vec<Value> {
    let holds = node.get(&format!("/v1/accounts/{account}/holds")).await;
    holds["holds"].as_array().cloned().unwrap_or_default()
}

/// The DE 54 block of `amount_type`: (currency, signed amount).
fn additional(answer: &tandem_iso8583::Message, amount_type: &str) -> Option<(String, i64)> {
    let blocks = answer.text(54)?;
    blocks.as_bytes().chunks(20).find_map(|block| {
        let block = std::str::from_utf8(block).ok()?;
        (&block[2..4] == amount_type).then(|| {
            let amount: i64 = block[8..20].parse().expect("12 digits");
            let sign = if &block[7..8] == "D" { -1 } else { 1 };
            (block[4..7].to_owned(), sign * amount)
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_of_the_profile_is_answered_as_the_profile_says() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&dir.path().join("data"));
    setup(&node).await;
    let mut link = Link::connect(&node.iso8583).await;

    // 0800 echo and sign-on.
    let echo = link
        .ask(&message(
            "0800",
            &[(7, "1129101500"), (11, "000001"), (70, "301")],
        ))
        .await;
    assert_eq!(
        (echo.mti.as_str(), text(&echo, 39), text(&echo, 11)),
        ("0810", "00", "000001")
    );

    // Approve: 00, a six-character approval code, the echo, and balances in DE 54.
    let first = authorization(PAN, "000101", "RRN000000101", 30_00);
    let approved = link.ask(&first).await;
    assert_eq!(approved.mti.as_str(), "0110");
    assert_eq!(text(&approved, 39), "00");
    assert_eq!(text(&approved, 38).len(), 6);
    for field in [3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49] {
        assert_eq!(approved.get(field), first.get(field), "DE {field} echoed");
    }
    assert!(
        approved.get(2).is_none(),
        "the PAN is not echoed by default"
    );
    assert_eq!(additional(&approved, "02"), Some((EUR.to_owned(), 70_00)));
    assert_eq!(additional(&approved, "01"), Some((EUR.to_owned(), 100_00)));

    // A repeat (0101), and a plain retransmission, get the first answer; no second hold.
    let repeat = link.ask(&as_mti(&first, "0101")).await;
    let retransmitted = link.ask(&first).await;
    for again in [&repeat, &retransmitted] {
        assert_eq!(again.mti.as_str(), "0110");
        for field in [4, 38, 39, 54] {
            assert_eq!(again.get(field), approved.get(field), "DE {field} replayed");
        }
    }
    assert_eq!(holds(&node, "j").await.len(), 1);
    // The same key with another amount is another message: 94, nothing changes.
    let clash = link.ask(&with(first.clone(), &[(4, "000000000100")])).await;
    assert_eq!(text(&clash, 39), "94");

    // Decline with 51 (more than available), 14 for an unknown card.
    let broke = link
        .ask(&authorization(PAN, "000102", "RRN000000102", 500_00))
        .await;
    assert_eq!(text(&broke, 39), "51");
    let unknown = link
        .ask(&authorization(
            "4999999999999999",
            "000103",
            "RRN000000103",
            1_00,
        ))
        .await;
    assert_eq!(text(&unknown, 39), "14");
    // An advice, a force post (0220) and a refund on an unknown card get 14 too, as over
    // HTTP and gRPC (docs/api.md).
    let stranger = authorization("4999999999999999", "000109", "RRN000000109", 1_00);
    for (what, asked) in [
        ("advice", as_mti(&stranger, "0120")),
        ("force post", as_mti(&stranger, "0220")),
        ("refund", with(as_mti(&stranger, "0200"), &[(3, "200000")])),
    ] {
        let answer = link.ask(&asked).await;
        assert_eq!(text(&answer, 39), "14", "{what} on an unknown card");
    }

    // Partial approval when the terminal accepts it (DE 48 PA): 10, DE 4 the approved part,
    // DE 54 type 57 the amount asked.
    let partial = link
        .ask(&with(
            authorization(PAN, "000104", "RRN000000104", 90_00),
            &[(48, "PA011")],
        ))
        .await;
    assert_eq!(text(&partial, 39), "10");
    assert_eq!(text(&partial, 4), "000000007000");
    assert_eq!(additional(&partial, "57"), Some((EUR.to_owned(), 90_00)));

    // Partial reversal of the first authorization via DE 95: it now stands at 10.00.
    let reversal = link
        .ask(&with(
            as_mti(&first, "0400"),
            &[
                (11, "000105"),
                (90, &original_data(&first)),
                (95, &format!("{:012}{:030}", 10_00, 0)),
            ],
        ))
        .await;
    assert_eq!((reversal.mti.as_str(), text(&reversal, 39)), ("0410", "00"));
    let (_, available) = eur(&node.balance("j").await);
    assert_eq!(available, 100_00 - 10_00 - 70_00);

    // Completion (0220) of the partial approval clears it; always 00.
    let partial_request = with(
        authorization(PAN, "000104", "RRN000000104", 70_00),
        &[(48, "PA011")],
    );
    let completion = link
        .ask(&with(
            as_mti(&partial_request, "0220"),
            &[(11, "000106"), (90, &original_data(&partial_request))],
        ))
        .await;
    assert_eq!(
        (completion.mti.as_str(), text(&completion, 39)),
        ("0230", "00")
    );
    let (ledger, _) = eur(&node.balance("j").await);
    assert_eq!(ledger, 100_00 - 70_00);

    // 0200: a financial request decides and posts at once.
    let financial = link
        .ask(&as_mti(
            &authorization(PAN, "000107", "RRN000000107", 5_00),
            "0200",
        ))
        .await;
    assert_eq!(
        (financial.mti.as_str(), text(&financial, 39)),
        ("0210", "00")
    );
    let (ledger, _) = eur(&node.balance("j").await);
    assert_eq!(ledger, 100_00 - 70_00 - 5_00);

    // Balance inquiry (DE 3 31): DE 54 carries ledger and available.
    let inquiry = link
        .ask(&with(
            authorization(PAN, "000108", "RRN000000108", 0),
            &[(3, "310000")],
        ))
        .await;
    assert_eq!(text(&inquiry, 39), "00");
    assert_eq!(additional(&inquiry, "01"), Some((EUR.to_owned(), 25_00)));

    // A reversal advice (0420) for an authorization never seen: 00, and a tombstone that
    // voids the authorization when it arrives late.
    let late = authorization(PAN, "000109", "RRN000000109", 2_00);
    let tombstone = link
        .ask(&with(
            as_mti(&late, "0420"),
            &[(11, "000110"), (90, &original_data(&late))],
        ))
        .await;
    assert_eq!(
        (tombstone.mti.as_str(), text(&tombstone, 39)),
        ("0430", "00")
    );
    let voided = link.ask(&late).await;
    assert_ne!(
        text(&voided, 39),
        "00",
        "a reversed authorization is not approved"
    );

    // A stand-in advice (0120) the network approved is applied even if it overdraws.
    let stand_in = with(
        as_mti(&authorization(PAN, "000111", "RRN000000111", 60_00), "0120"),
        &[(39, "00")],
    );
    let advice = link.ask(&stand_in).await;
    assert_eq!((advice.mti.as_str(), text(&advice, 39)), ("0130", "00"));
    let (_, available) = eur(&node.balance("j").await);
    assert!(
        available < 0,
        "the advice overdrew the account: {available}"
    );

    // Controls: the kid's card may not buy alcohol (57) nor pass its daily limit (61).
    let alcohol = link
        .ask(&with(
            authorization(KID_PAN, "000201", "RRN000000201", 5_00),
            &[(18, "5921")],
        ))
        .await;
    assert_eq!(text(&alcohol, 39), "57");
    let too_much = link
        .ask(&authorization(KID_PAN, "000202", "RRN000000202", 25_00))
        .await;
    assert_eq!(text(&too_much, 39), "61");

    // Sign-off stops authorization traffic on this link (91); sign-on restores it.
    let off = link
        .ask(&message("0800", &[(11, "000002"), (70, "002")]))
        .await;
    assert_eq!(text(&off, 39), "00");
    let refused = link
        .ask(&authorization(KID_PAN, "000203", "RRN000000203", 1_00))
        .await;
    assert_eq!(text(&refused, 39), "91");
    link.ask(&message("0800", &[(11, "000003"), (70, "001")]))
        .await;
    let served = link
        .ask(&authorization(KID_PAN, "000203", "RRN000000203", 1_00))
        .await;
    assert_eq!(text(&served, 39), "00");

    // The operations' card-traffic rules hold on this gateway as on the API: cashback above
    // DE 4 is a format error (30), and a refund (DE 3 20) gives a purchase back.
    let over = link
        .ask(&with(
            authorization(PAN, "000112", "RRN000000112", 5_00),
            &[(3, "090000"), (54, &format!("0040978C{:012}", 6_00))],
        ))
        .await;
    assert_eq!(text(&over, 39), "30");
    let (before, _) = eur(&node.balance("j").await);
    let refund = link
        .ask(&with(
            as_mti(&authorization(PAN, "000113", "RRN000000113", 3_00), "0200"),
            &[(3, "200000")],
        ))
        .await;
    assert_eq!((refund.mti.as_str(), text(&refund, 39)), ("0210", "00"));
    let (after, _) = eur(&node.balance("j").await);
    assert_eq!(after, before + 3_00, "the refund credits the ledger");
    node.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_closes_only_its_own_link_and_pipelined_requests_all_come_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start_with(
        &dir.path().join("data"),
        &["--iso8583-frame-max-bytes", "512"],
    );
    setup(&node).await;
    let mut good = Link::connect(&node.iso8583).await;

    // A readable MTI with a broken field: 30, addressed by the fields read before the break.
    let mut bad = Link::connect(&node.iso8583).await;
    let mut bytes = authorization(PAN, "000301", "RRN000000301", 1_00)
        .encode(tandem_iso8583::BitmapEncoding::Binary);
    let amount_at = bytes
        .windows(12)
        .position(|w| w == b"000000000100")
        .expect("DE 4 in the bytes");
    bytes[amount_at] = b'A';
    bad.send_raw(&tandem_iso8583::frame(&bytes)).await;
    let format = bad.receive().await.expect("a format-error answer");
    assert_eq!((format.mti.as_str(), text(&format, 39)), ("0110", "30"));
    // Missing required fields are a format error too.
    let no_amount = bad
        .ask(&message(
            "0100",
            &[
                (2, PAN),
                (3, "000000"),
                (11, "000302"),
                (37, "RRN000000302"),
            ],
        ))
        .await;
    assert_eq!(
        (text(&no_amount, 39), text(&no_amount, 11)),
        ("30", "000302")
    );

    // Bytes that are not a message at all close that link, and only that link.
    bad.send_raw(&tandem_iso8583::frame(b"\xff\xfe garbage"))
        .await;
    assert!(bad.receive().await.is_none(), "the link is closed");
    // A frame over the limit closes its link before its body is read.
    let mut oversized = Link::connect(&node.iso8583).await;
    oversized.send_raw(&[0x10, 0x00]).await;
    assert!(oversized.receive().await.is_none());
    // A frame header that never finishes is cut by the read timeout on its own; meanwhile the
    // good link is served.
    let echo = good
        .ask(&message("0800", &[(11, "000004"), (70, "301")]))
        .await;
    assert_eq!(text(&echo, 39), "00");

    // Many requests in flight on one link: every one answered, matched by STAN.
    let count = 200u32;
    for i in 0..count {
        let stan = format!("{:06}", 400_000 + i);
        let rrn = format!("RRN{:09}", 400_000 + i);
        good.send(&authorization(PAN, &stan, &rrn, 10)).await;
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..count {
        let answer = good.receive().await.expect("an answer");
        assert_eq!(text(&answer, 39), "00");
        seen.insert(text(&answer, 11).to_owned());
    }
    assert_eq!(seen.len(), count as usize);
    let (_, available) = eur(&node.balance("j").await);
    assert_eq!(available, 100_00 - i64::from(count) * 10);
    node.stop();
}

/// A set-up node whose ISO 8583 deadline is 200 ms and whose commits can be slowed, and a link
/// to it.
async fn deadline_of_200_ms(dir: &std::path::Path) -> (Node, Link) {
    let node = Node::start_with(
        &dir.join("data"),
        &["--fault-injection", "true", "--iso8583-deadline-ms", "200"],
    );
    setup(&node).await;
    let link = Link::connect(&node.iso8583).await;
    (node, link)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_not_durable_in_time_answers_91_and_the_advice_settles_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (node, mut link) = deadline_of_200_ms(dir.path()).await;

    // Every commit now takes a second: the authorization cannot be durable in 200 ms.
    node.slow_commits(1_000).await;
    let request = authorization(PAN, "000501", "RRN000000501", 40_00);
    let answer = link.ask(&request).await;
    assert_eq!(text(&answer, 39), "91");
    // A repeat while the mark is still on its way is 91 too.
    let repeat = link.ask(&as_mti(&request, "0101")).await;
    assert_eq!(text(&repeat, 39), "91");

    // The disk recovers; whatever the slow commit did is undone: no hold, all available.
    node.slow_commits(0).await;
    common::eventually("the timed-out hold was never released", || async {
        let open = holds(&node, "j")
            .await
            .iter()
            .any(|h| h["state"] == "pending");
        !open && eur(&node.balance("j").await).1 == 100_00
    })
    .await;
    // Repeats after the mark is durable are still 91: the network stood in.
    let later = link.ask(&as_mti(&request, "0101")).await;
    assert_eq!(text(&later, 39), "91");

    // The network approved in stand-in: its 0120 advice places the hold.
    let advice = link
        .ask(&with(
            as_mti(&request, "0120"),
            &[(11, "000502"), (39, "00"), (90, &original_data(&request))],
        ))
        .await;
    assert_eq!((advice.mti.as_str(), text(&advice, 39)), ("0130", "00"));
    let (_, available) = eur(&node.balance("j").await);
    assert_eq!(available, 60_00);
    node.stop();
}

/// A reversal is the network's word: one not durable within the deadline is answered 91 then,
/// but it is applied whenever it lands, and a repeat gets the true answer, not a stand-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reversal_stands_and_its_repeat_is_answered_00() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (node, mut link) = deadline_of_200_ms(dir.path()).await;
    let original = authorization(PAN, "000601", "RRN000000601", 40_00);
    assert_eq!(text(&link.ask(&original).await, 39), "00");

    node.slow_commits(1_000).await;
    let reversal = with(as_mti(&original, "0400"), &[(11, "000602")]);
    assert_eq!(text(&link.ask(&reversal).await, 39), "91");
    node.slow_commits(0).await;
    common::eventually("the late reversal never released its hold", || async {
        eur(&node.balance("j").await).1 == 100_00
    })
    .await;
    let repeat = link.ask(&as_mti(&reversal, "0401")).await;
    assert_eq!((repeat.mti.as_str(), text(&repeat, 39)), ("0410", "00"));
    assert_eq!(eur(&node.balance("j").await).1, 100_00, "released once");
    node.stop();
}

/// A reversal with a new RRN whose DE 90 names an approved original releases its hold, also
/// after a SIGKILL: the original's DE 90 key is committed state, replayed with the account.
/// A reversal that comes before its original leaves its tombstone under the DE 90 key, so the
/// original, arriving with its own RRN, is void.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn de90_finds_the_original_under_a_new_rrn_even_after_a_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let node = Node::start(&data);
    setup(&node).await;
    let mut link = Link::connect(&node.iso8583).await;
    let original = authorization(PAN, "000701", "RRN000000701", 40_00);
    assert_eq!(text(&link.ask(&original).await, 39), "00");
    assert_eq!(eur(&node.balance("j").await).1, 60_00);
    drop(link);
    drop(node); // SIGKILL

    let node = Node::start(&data);
    let mut link = Link::connect(&node.iso8583).await;
    let reversal = with(
        as_mti(&original, "0400"),
        &[
            (11, "000702"),
            (37, "RRN000000799"),
            (90, &original_data(&original)),
        ],
    );
    let answer = link.ask(&reversal).await;
    assert_eq!((answer.mti.as_str(), text(&answer, 39)), ("0410", "00"));
    assert_eq!(
        eur(&node.balance("j").await).1,
        100_00,
        "the hold is released, not left until it expires"
    );
    assert!(
        holds(&node, "j")
            .await
            .iter()
            .all(|hold| hold["state"] != "pending"),
        "no hold stays open"
    );

    // The reversal first (new RRN, DE 90 naming an original not seen yet), then the original.
    let late = authorization(PAN, "000711", "RRN000000711", 25_00);
    let early = with(
        as_mti(&late, "0420"),
        &[
            (11, "000712"),
            (37, "RRN000000798"),
            (90, &original_data(&late)),
        ],
    );
    assert_eq!(text(&link.ask(&early).await, 39), "00");
    assert_eq!(
        text(&link.ask(&late).await, 39),
        "05",
        "voided by the earlier reversal"
    );
    assert_eq!(eur(&node.balance("j").await).1, 100_00);
    node.stop();
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the server crate sits in the workspace")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyiso8583_gets_every_answer_the_profile_promises() {
    let root = workspace();
    let status = Command::new("bash")
        .arg(root.join("tests/interop/setup.sh"))
        .status()
        .expect("run tests/interop/setup.sh");
    assert!(status.success(), "could not install pyiso8583 into .venv");

    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&dir.path().join("data"));
    setup(&node).await;
    let output = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/interop/iso8583_interop.py"))
        .args([node.iso8583.as_str(), PAN, KID_PAN])
        .output()
        .expect("run the pyiso8583 client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pyiso8583 client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all interop steps passed"), "{stdout}");
    node.stop();
}
