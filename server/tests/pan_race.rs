//! One PAN raced onto two accounts, with the real `tandem` process killed by SIGKILL at a
//! random moment of each race: the PAN has at most one owner, an acknowledged card survives,
//! and every card that exists has its PAN link (the link is written in the same log record
//! as the card, so no crash can leave one without the other).
//!
//! Each round issues a fresh PAN to card `f-<round>` of a funded account and to card
//! `e-<round>` of an empty one at the same moment, kills the node, restarts it and checks:
//! - at most one of the two cards exists, and a card answered 201 exists;
//! - an ISO 8583 0100 on the PAN is approved (00) if the funded account's card won, declined
//!   for funds (51) if the empty account's did, and unknown (14) if neither exists: a card
//!   without its link would answer 14.
//!
//! Rounds: `TANDEM_PAN_RACE_ROUNDS` (default 8); seed: `TANDEM_SEED`.

mod common;

use common::iso::{self, Link};
use common::{ADMIN, Node};
use serde_json::json;
use std::time::Duration;

/// A 16-digit PAN for `round`.
fn pan(round: u64) -> String {
    format!("40000077{round:08}")
}

async fn exists(node: &Node, card: &str) -> bool {
    let (status, body) = node
        .call(
            "PUT",
            &format!("/v1/cards/{card}/status"),
            Some(ADMIN),
            Some(json!({"status": "active"})),
        )
        .await;
    match status {
        200 => true,
        404 => false,
        other => panic!("card {card}: {other} {body}"),
    }
}

/// The response code of a 0100 on `pan`.
async fn authorize(node: &Node, pan: &str, round: u64, check: u64) -> String {
    let mut link = Link::connect(&node.iso8583).await;
    let stan = format!("{:06}", round * 10 + check);
    let rrn = format!("{:012}", round * 10 + check);
    let answer = link.ask(&iso::authorization(pan, &stan, &rrn, 100)).await;
    iso::text(&answer, 39).to_string()
}

/// Checks every round so far; answers how many rounds had a winner.
async fn check(node: &Node, rounds: &[(u64, u16, u16)], check_number: u64) -> usize {
    let mut won = 0;
    for &(round, funded_status, empty_status) in rounds {
        let funded = exists(node, &format!("f-{round}")).await;
        let empty = exists(node, &format!("e-{round}")).await;
        assert!(
            !(funded && empty),
            "round {round}: one PAN is on two cards ({funded_status}, {empty_status})"
        );
        if funded_status == 201 {
            assert!(funded, "round {round}: an acknowledged card was lost");
        }
        if empty_status == 201 {
            assert!(empty, "round {round}: an acknowledged card was lost");
        }
        let code = authorize(node, &pan(round), round, check_number).await;
        let expected = match (funded, empty) {
            (true, _) => "00",
            (_, true) => "51",
            _ => "14",
        };
        assert_eq!(
            code, expected,
            "round {round}: cards exist funded={funded} empty={empty}, so the PAN should answer \
             {expected} (a card without its PAN link answers 14)"
        );
        won += usize::from(funded || empty);
    }
    won
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pan_raced_onto_two_accounts_across_sigkills_keeps_one_owner_and_every_link() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rounds: u64 = std::env::var("TANDEM_PAN_RACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let mut seed: u64 = std::env::var("TANDEM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x9a17);
    eprintln!("PAN race seed {seed} (TANDEM_SEED), {rounds} rounds");
    let mut node = Node::start(&data);
    node.account(
        "funded",
        "joint",
        &[("ana", "owner")],
        Some(("EUR", 100_000)),
    )
    .await;
    node.account("empty", "joint", &[("bo", "owner")], None)
        .await;
    let mut results = Vec::new();
    for round in 0..rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let issue = |account: &'static str, card: String, member: &'static str| {
            let node = &node;
            let pan = pan(round);
            async move {
                node.call(
                    "POST",
                    &format!("/v1/accounts/{account}/cards"),
                    Some(ADMIN),
                    Some(json!({"card_id": card, "member_id": member, "pan": pan})),
                )
                .await
                .0
            }
        };
        // Both at once, and the kill lands before, between or after their commits; the last
        // round lets the race finish first, so at least one round must have its winner.
        let kill_after = if round + 1 == rounds {
            Duration::from_secs(30)
        } else {
            Duration::from_micros(seed % 1_500)
        };
        let race = async {
            tokio::join!(
                issue("funded", format!("f-{round}"), "ana"),
                issue("empty", format!("e-{round}"), "bo"),
            )
        };
        let (funded_status, empty_status) = tokio::select! {
            statuses = race => {
                node.child.kill().expect("SIGKILL");
                statuses
            }
            _ = tokio::time::sleep(kill_after) => {
                node.child.kill().expect("SIGKILL");
                (0, 0)
            }
        };
        node.child.wait().expect("reaped");
        eprintln!(
            "round {round}: killed within {kill_after:?} (or once both answered); answers funded {funded_status}, empty {empty_status}"
        );
        assert!(
            !(funded_status == 201 && empty_status == 201),
            "round {round}: both accounts were told the PAN is theirs"
        );
        results.push((round, funded_status, empty_status));
        node = Node::start(&data);
        check(&node, &results[results.len() - 1..], 1).await;
    }
    // Every round once more, after one more restart.
    drop(node);
    let node = Node::start(&data);
    let won = check(&node, &results, 2).await;
    eprintln!("{won} of {rounds} rounds had a winner");
    let (_, funded_status, empty_status) = results[results.len() - 1];
    assert_eq!(
        [funded_status, empty_status]
            .iter()
            .filter(|&&status| status == 201)
            .count(),
        1,
        "the round raced to the end has exactly one winner ({funded_status}, {empty_status})"
    );
    assert!(won >= 1, "no round had a winner: the race proved nothing");
}
