//! HTTP/JSON against the real binary: the whole lifecycle, access control, bad input, the
//! SSE balance stream and the metrics endpoint.

// Amounts are written as major_minor (100_00 is 100.00) on purpose.
#![allow(clippy::inconsistent_digit_grouping)]

mod common;

use common::{ADMIN, Node, authorize_body, next_event};
use serde_json::{Value, json};

fn available(balance: &Value, currency: &str) -> i64 {
    balance["balances"]
        .as_array()
        .expect("balances")
        .iter()
        .find(|b| b["currency"] == currency)
        .map_or(0, |b| b["available_minor"].as_i64().expect("available"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spend_lifecycle_over_http_keeps_every_minor_unit() {
    let dir = tempfile::tempdir().expect("dir");
    let node = Node::start(dir.path());
    node.account(
        "flat",
        "group",
        &[("ana", "owner"), ("ben", "member")],
        Some(("EUR", 100_00)),
    )
    .await;
    node.admin(
        "PUT",
        "/v1/accounts/flat/split-rule",
        json!({"rule": "equal"}),
    )
    .await;
    let network = node.network_key().await;
    let card = "flat-ben-card";

    // Approve, and the retransmission answers the same without a second hold.
    let (status, first) = node.authorize(&network, "n-1", card, 30_00).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["status"], "approved");
    assert_eq!(first["response_code"], "00");
    let (_, again) = node.authorize(&network, "n-1", card, 30_00).await;
    assert_eq!(again, first, "a repeat returns the first answer");
    assert_eq!(available(&node.balance("flat").await, "EUR"), 70_00);

    // The same key with another amount is a different message: 94, nothing held.
    let (_, mismatch) = node.authorize(&network, "n-1", card, 31_00).await;
    assert_eq!(mismatch["response_code"], "94", "{mismatch}");

    // Too much: 51. Partial allowed: approved for what is available.
    let (_, declined) = node.authorize(&network, "n-2", card, 500_00).await;
    assert_eq!(declined["status"], "declined");
    assert_eq!(declined["response_code"], "51");
    assert_eq!(declined["decline_reason"], "insufficient_funds");
    let mut partial = authorize_body("n-3", card, 90_00);
    partial["partial_allowed"] = json!(true);
    let (_, partial) = node
        .call("POST", "/v1/authorizations", Some(&network), Some(partial))
        .await;
    assert_eq!(partial["status"], "partially_approved", "{partial}");
    assert_eq!(partial["response_code"], "10");
    assert_eq!(partial["approved_amount_minor"], 70_00);
    assert_eq!(available(&node.balance("flat").await, "EUR"), 0);

    // Reverse the partial one fully; partially reverse the first to 20.00; clear it at 20.00.
    let partial_id = partial["authorization_id"].as_str().expect("id");
    let (status, reversed) = node
        .call(
            "POST",
            &format!("/v1/authorizations/{partial_id}/reversals"),
            Some(&network),
            Some(json!({"idempotency_key": "r-1"})),
        )
        .await;
    assert_eq!(status, 200, "{reversed}");
    assert_eq!(reversed["response_code"], "00");
    let first_id = first["authorization_id"].as_str().expect("id");
    let (_, _) = node
        .call(
            "POST",
            &format!("/v1/authorizations/{first_id}/reversals"),
            Some(&network),
            Some(json!({"idempotency_key": "r-2", "amount_minor": 20_00, "currency": "EUR"})),
        )
        .await;
    let (status, cleared) = node
        .call(
            "POST",
            &format!("/v1/authorizations/{first_id}/clearings"),
            Some(&network),
            Some(json!({"idempotency_key": "c-1", "amount_minor": 20_00, "currency": "EUR", "final": true})),
        )
        .await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared["status"], "accepted");
    let balance = node.balance("flat").await;
    assert_eq!(available(&balance, "EUR"), 80_00);
    let holds = node.get("/v1/accounts/flat/holds").await;
    assert_eq!(
        holds["holds"].as_array().expect("holds").len(),
        0,
        "{holds}"
    );

    // The entries feed sums to the ledger, page by page; shares sum to each entry.
    let mut after = String::new();
    let mut total = 0;
    let mut pages = 0;
    loop {
        let page = node
            .get(&format!("/v1/accounts/flat/entries?limit=1&after={after}"))
            .await;
        for entry in page["entries"].as_array().expect("entries") {
            let amount = entry["amount_minor"].as_i64().expect("amount");
            let shares: i64 = entry["shares"]
                .as_array()
                .expect("shares")
                .iter()
                .map(|s| s["amount_minor"].as_i64().expect("share"))
                .sum();
            assert_eq!(shares, amount, "shares sum to the entry: {entry}");
            total += amount;
        }
        pages += 1;
        after = page["next"].as_str().expect("next").to_owned();
        if after.is_empty() {
            break;
        }
    }
    assert_eq!(pages, 2, "a deposit and a clearing, one per page");
    let ledger = balance["balances"][0]["ledger_minor"]
        .as_i64()
        .expect("ledger");
    assert_eq!(total, ledger);

    // The lifecycle feed says what became of each approved hold, releases included, in the
    // order they were committed, two a page.
    let mut after = String::new();
    let mut changes: Vec<(String, String, String, i64)> = Vec::new();
    loop {
        let page = node
            .get(&format!(
                "/v1/accounts/flat/lifecycle-events?limit=2&after={after}"
            ))
            .await;
        for event in page["events"].as_array().expect("events") {
            let held: i64 = event["held"]
                .as_array()
                .expect("held")
                .iter()
                .map(|h| h["amount_minor"].as_i64().expect("amount"))
                .sum();
            changes.push((
                event["authorization_id"].as_str().expect("id").to_owned(),
                event["cause"].as_str().expect("cause").to_owned(),
                event["state"].as_str().expect("state").to_owned(),
                held,
            ));
        }
        after = page["next"].as_str().expect("next").to_owned();
        if after.is_empty() {
            break;
        }
    }
    let of = |id: &str| -> Vec<(&str, &str, i64)> {
        changes
            .iter()
            .filter(|c| c.0 == id)
            .map(|c| (c.1.as_str(), c.2.as_str(), c.3))
            .collect()
    };
    assert_eq!(
        of(first_id),
        vec![
            ("authorized", "pending", 30_00),
            ("partially_reversed", "pending", -10_00),
            ("cleared", "cleared", -20_00),
        ],
        "{changes:?}"
    );
    assert_eq!(
        of(partial_id),
        vec![
            ("authorized", "pending", 70_00),
            ("reversed", "reversed", -70_00)
        ]
    );
    assert_eq!(
        changes.len(),
        5,
        "declines hold nothing and change no lifecycle"
    );
    let (status, bad) = node
        .call(
            "GET",
            "/v1/accounts/flat/lifecycle-events?after=not-a-cursor",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 400, "{bad}");

    // Positions: an equal split of 20.00 — ana paid 100.00 in and bears 10.00.
    let positions = node.get("/v1/accounts/flat/positions").await;
    let ana = positions["positions"]
        .as_array()
        .expect("positions")
        .iter()
        .find(|p| p["member_id"] == "ana")
        .expect("ana")
        .clone();
    assert_eq!(ana["net"][0]["amount_minor"], 90_00, "{positions}");

    // A refund credits the account.
    let (_, refund) = node
        .call(
            "POST",
            "/v1/refunds",
            Some(&network),
            Some(json!({"idempotency_key": "f-1", "card_id": card, "amount_minor": 5_00, "currency": "EUR", "mcc": "5411", "original_authorization_id": first_id})),
        )
        .await;
    assert_eq!(refund["status"], "accepted", "{refund}");
    assert_eq!(available(&node.balance("flat").await, "EUR"), 85_00);

    // An advice, force post or refund on an unknown card is declined 14, as an
    // authorization is and as ISO 8583 answers (docs/api.md), not a 404; nothing moves.
    for path in ["/v1/advices", "/v1/force-posts", "/v1/refunds"] {
        let (status, answer) = node
            .call(
                "POST",
                path,
                Some(&network),
                Some(json!({"idempotency_key": format!("nobody{path}"), "card_id": "no-such-card", "amount_minor": 1_00, "currency": "EUR", "mcc": "5411"})),
            )
            .await;
        assert_eq!(status, 200, "{path}: {answer}");
        assert_eq!(
            (
                answer["response_code"].as_str(),
                answer["decline_reason"].as_str()
            ),
            (Some("14"), Some("unknown_card")),
            "{path}: {answer}"
        );
    }
    assert_eq!(available(&node.balance("flat").await, "EUR"), 85_00);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_checked_before_anything_is_touched() {
    let dir = tempfile::tempdir().expect("dir");
    let node = Node::start(dir.path());
    node.account(
        "home",
        "joint",
        &[("ana", "owner"), ("ben", "member")],
        Some(("EUR", 50_00)),
    )
    .await;
    node.account("other", "joint", &[("cy", "owner")], None)
        .await;

    // No key, a wrong key.
    let (status, body) = node
        .call("GET", "/v1/accounts/home/balance", None, None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let (status, _) = node
        .call("GET", "/v1/accounts/home/balance", Some("nope"), None)
        .await;
    assert_eq!(status, 401);

    // An app key for ben: reads his account, not another; may not add members (owners do).
    let ben = node
        .admin(
            "POST",
            "/v1/api-keys",
            json!({"role": "app", "account_id": "home", "member_id": "ben"}),
        )
        .await;
    let ben_token = ben["token"].as_str().expect("token");
    let (status, _) = node
        .call("GET", "/v1/accounts/home/balance", Some(ben_token), None)
        .await;
    assert_eq!(status, 200);
    let (status, body) = node
        .call("GET", "/v1/accounts/other/balance", Some(ben_token), None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("permission_denied"))
    );
    let (status, body) = node
        .call(
            "POST",
            "/v1/accounts/home/members",
            Some(ben_token),
            Some(json!({"member_id": "eve", "role": "owner"})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = node.authorize(ben_token, "x", "home-ben-card", 1_00).await;
    assert_eq!(status, 403, "apps do not send card traffic");
    let snapshot = node.balance("home").await;
    assert_eq!(
        snapshot["members"].as_array().expect("members").len(),
        2,
        "nothing was added"
    );

    // An owner's app key may add a member.
    let ana = node.app_key("home", "ana").await;
    let (status, body) = node
        .call(
            "POST",
            "/v1/accounts/home/members",
            Some(&ana),
            Some(json!({"member_id": "eve", "role": "member"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // Network keys move card traffic but read nothing and manage nothing.
    let network = node.network_key().await;
    let (status, _) = node
        .call("GET", "/v1/accounts/home/balance", Some(&network), None)
        .await;
    assert_eq!(status, 403);
    let (status, _) = node
        .call(
            "POST",
            "/v1/accounts",
            Some(&network),
            Some(json!({"account_id": "x", "kind": "joint"})),
        )
        .await;
    assert_eq!(status, 403);

    // Revoked keys stop working at once.
    let id = ben["id"].as_str().expect("id");
    let (status, _) = node
        .call("DELETE", &format!("/v1/api-keys/{id}"), Some(ADMIN), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = node
        .call("GET", "/v1/accounts/home/balance", Some(ben_token), None)
        .await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_precise_error_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let node = Node::start_with(dir.path(), &["--request-body-max-bytes", "4096"]);
    node.account("acct", "joint", &[("ana", "owner")], Some(("EUR", 10_00)))
        .await;
    let network = node.network_key().await;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "valid JSON"),
        (serde_json::to_vec(&json!({"idempotency_key": "a", "card_id": "acct-ana-card", "amount_minor": -5, "currency": "EUR", "mcc": "5411", "channel": "chip"})).expect("json"), "amount_minor"),
        (serde_json::to_vec(&json!({"idempotency_key": "a", "card_id": "acct-ana-card", "amount_minor": 5, "currency": "EURO", "mcc": "5411", "channel": "chip"})).expect("json"), "currency"),
        (serde_json::to_vec(&json!({"idempotency_key": "a", "card_id": "acct-ana-card", "amount_minor": 5, "currency": "EUR", "mcc": "54", "channel": "chip"})).expect("json"), "mcc"),
        (serde_json::to_vec(&json!({"idempotency_key": "a", "card_id": "acct-ana-card", "amount_minor": 5, "currency": "EUR", "mcc": "5411", "channel": "pigeon"})).expect("json"), "channel"),
        (serde_json::to_vec(&json!({"card_id": "acct-ana-card", "amount_minor": 5, "currency": "EUR", "mcc": "5411", "channel": "chip"})).expect("json"), "idempotency_key"),
        (serde_json::to_vec(&json!({"idempotency_key": "a", "card_id": "acct-ana-card", "amount_minor": 5, "cashback_minor": 6, "kind": "purchase_with_cashback", "currency": "EUR", "mcc": "5411", "channel": "chip"})).expect("json"), "cashback_minor"),
    ];
    for (body, field) in cases {
        let (status, problem) = node
            .raw("POST", "/v1/authorizations", Some(&network), body)
            .await;
        assert_eq!(status, 400, "{problem}");
        assert_eq!(problem["code"], "invalid_argument");
        assert!(
            problem["detail"].as_str().expect("detail").contains(field),
            "{problem} names {field}"
        );
    }
    // Oversized bodies are refused; an unknown card is an answer (14), not an error.
    let (status, _) = node
        .raw(
            "POST",
            "/v1/authorizations",
            Some(&network),
            vec![b' '; 10_000],
        )
        .await;
    assert_eq!(status, 413);
    let (status, unknown) = node.authorize(&network, "u", "no-such-card", 1_00).await;
    assert_eq!(
        (status, unknown["response_code"].as_str()),
        (200, Some("14"))
    );
    let (status, _) = node
        .call(
            "POST",
            "/v1/authorizations/acct:0000000000000000/increments",
            Some(&network),
            Some(json!({"idempotency_key": "i", "amount_minor": 1, "currency": "EUR"})),
        )
        .await;
    assert_eq!(
        status, 200,
        "an unknown lifecycle is declined by the account, not an error"
    );
    let (status, body) = node
        .call("GET", "/v1/accounts/nobody/balance", Some(ADMIN), None)
        .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    // Creating calls: the same content again is the same resource; different content is 409.
    let (status, _) = node
        .call(
            "POST",
            "/v1/accounts",
            Some(ADMIN),
            Some(json!({"account_id": "acct", "kind": "joint"})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = node
        .call(
            "POST",
            "/v1/accounts",
            Some(ADMIN),
            Some(json!({"account_id": "acct", "kind": "kid"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("account_exists"))
    );
    node.account("elsewhere", "joint", &[("zed", "owner")], None)
        .await;
    let (status, body) = node
        .call(
            "POST",
            "/v1/accounts/elsewhere/cards",
            Some(ADMIN),
            Some(json!({"card_id": "acct-ana-card", "member_id": "zed"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("card_exists")),
        "card ids are unique across accounts"
    );
    let (status, _) = node
        .call(
            "POST",
            "/v1/accounts/acct/cards",
            Some(ADMIN),
            Some(json!({"card_id": "p1", "member_id": "ana", "pan": "4000123412341234"})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = node
        .call(
            "POST",
            "/v1/accounts/elsewhere/cards",
            Some(ADMIN),
            Some(json!({"card_id": "p2", "member_id": "zed", "pan": "4000123412341234"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("pan_exists")),
        "PANs are unique across accounts"
    );
    // Nothing of the above moved money.
    assert_eq!(available(&node.balance("acct").await, "EUR"), 10_00);
    let (status, _) = node.call("GET", "/healthz", None, None).await;
    assert_eq!(status, 200, "still serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balance_stream_sends_each_change_and_resumes_by_sequence() {
    let dir = tempfile::tempdir().expect("dir");
    let node = Node::start(dir.path());
    node.account("trip", "group", &[("ana", "owner")], Some(("EUR", 20_00)))
        .await;
    let token = &node.app_key("trip", "ana").await;
    let (status, mut body) = node
        .sse("/v1/accounts/trip/balance/stream", token, None)
        .await;
    assert_eq!(status, 200);
    let mut buffer = String::new();
    let (first_id, first) = next_event(&mut body, &mut buffer).await;
    assert_eq!(available(&first, "EUR"), 20_00);
    let network = node.network_key().await;
    node.authorize(&network, "s-1", "trip-ana-card", 5_00).await;
    let (second_id, second) = next_event(&mut body, &mut buffer).await;
    assert!(second_id > first_id);
    assert_eq!(available(&second, "EUR"), 15_00);
    assert!(
        second["cause"]
            .as_str()
            .expect("cause")
            .contains("authorized"),
        "{second}"
    );

    // Reconnecting with the last id seen: nothing old is replayed; the next change arrives.
    let (_, mut resumed) = node
        .sse("/v1/accounts/trip/balance/stream", token, Some(second_id))
        .await;
    let mut resumed_buffer = String::new();
    node.authorize(&network, "s-2", "trip-ana-card", 1_00).await;
    let (third_id, third) = next_event(&mut resumed, &mut resumed_buffer).await;
    assert!(third_id > second_id);
    assert_eq!(available(&third, "EUR"), 14_00);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness_are_served() {
    let dir = tempfile::tempdir().expect("dir");
    let node = Node::start(dir.path());
    node.account("m", "joint", &[("ana", "owner")], Some(("EUR", 1_00)))
        .await;
    let (status, ready) = node.call("GET", "/readyz", None, None).await;
    assert_eq!((status, ready.as_str()), (200, Some("ready\n")));
    let (status, text) = node.call("GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    let text = text.as_str().expect("text").to_owned();
    for series in [
        "tandem_decisions_total",
        "tandem_decision_seconds",
        "tandem_requests_total",
        "tandem_resident_accounts",
        "tandem_accounts_at_rest",
        "tandem_directory_cached_entries",
        "tandem_commit_batch_records",
    ] {
        assert!(text.contains(series), "/metrics has {series}");
    }
}

/// Card management names only a card. A key of one account is refused before anything is
/// touched, and learns nothing: another account's card and a card that does not exist get
/// the same 403, and the other account's card is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_management_checks_the_key_before_the_card() {
    let dir = tempfile::tempdir().expect("dir");
    let node = Node::start(dir.path());
    node.account("home", "joint", &[("ana", "owner")], Some(("EUR", 50_00)))
        .await;
    node.account("other", "joint", &[("cy", "owner")], Some(("EUR", 50_00)))
        .await;
    let ana = node.app_key("home", "ana").await;
    let network = node.network_key().await;
    let operations = |card: &str| {
        [
            (
                "PUT",
                format!("/v1/cards/{card}/status"),
                json!({"status": "frozen"}),
            ),
            (
                "PUT",
                format!("/v1/cards/{card}/controls"),
                json!({"blocked_mcc": ["5411"]}),
            ),
            (
                "POST",
                format!("/v1/cards/{card}/replace"),
                json!({"new_card_id": format!("{card}-new")}),
            ),
        ]
    };
    for (elsewhere, nowhere) in operations("other-cy-card")
        .into_iter()
        .zip(operations("no-such-card"))
    {
        let (status, theirs) = node
            .call(
                elsewhere.0,
                &elsewhere.1,
                Some(&ana),
                Some(elsewhere.2.clone()),
            )
            .await;
        assert_eq!(
            (status, theirs["code"].as_str()),
            (403, Some("permission_denied")),
            "{} {}: {theirs}",
            elsewhere.0,
            elsewhere.1
        );
        let (status, missing) = node
            .call(nowhere.0, &nowhere.1, Some(&ana), Some(nowhere.2))
            .await;
        assert_eq!(status, 403, "{} {}: {missing}", nowhere.0, nowhere.1);
        let same = |body: &serde_json::Value, card: &str| {
            body["detail"]
                .as_str()
                .expect("detail")
                .replace(card, "CARD")
        };
        assert_eq!(
            same(&theirs, "other-cy-card"),
            same(&missing, "no-such-card"),
            "an existing card of another account and a missing card read the same"
        );
        // Network keys manage no card, whatever it is.
        let (status, _) = node
            .call(elsewhere.0, &elsewhere.1, Some(&network), Some(elsewhere.2))
            .await;
        assert_eq!(status, 403);
    }
    // The other account's card is untouched: active, uncontrolled, not replaced.
    let (status, answer) = node
        .authorize(&network, "after", "other-cy-card", 1_00)
        .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("approved")),
        "{answer}"
    );
    // The key still manages its own account's card, and an admin's missing card is a 404.
    let (status, body) = node
        .call(
            "PUT",
            "/v1/cards/home-ana-card/status",
            Some(&ana),
            Some(json!({"status": "frozen"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = node
        .call(
            "PUT",
            "/v1/cards/no-such-card/status",
            Some(ADMIN),
            Some(json!({"status": "frozen"})),
        )
        .await;
    assert_eq!(status, 404);
}

/// Cash at an ATM's merchant category (6011) is an ATM withdrawal over HTTP too, whatever
/// channel the request names, as over ISO 8583: a card whose controls block ATMs is declined,
/// and the same cash elsewhere is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cash_at_an_atm_category_is_an_atm_withdrawal_whatever_channel_is_named() {
    let dir = tempfile::tempdir().expect("dir");
    let node = Node::start(dir.path());
    node.account("cashy", "joint", &[("ana", "owner")], Some(("EUR", 100_00)))
        .await;
    let (status, body) = node
        .call(
            "PUT",
            "/v1/cards/cashy-ana-card/controls",
            Some(ADMIN),
            Some(json!({"channels": {"atm": false}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let network = node.network_key().await;
    let cash = |key: &str, mcc: &str| {
        let mut body = authorize_body(key, "cashy-ana-card", 10_00);
        body["kind"] = json!("cash");
        body["mcc"] = json!(mcc);
        body["channel"] = json!("chip");
        body
    };
    let (_, at_atm) = node
        .call(
            "POST",
            "/v1/authorizations",
            Some(&network),
            Some(cash("atm-1", "6011")),
        )
        .await;
    assert_eq!(
        (at_atm["status"].as_str(), at_atm["decline_reason"].as_str()),
        (Some("declined"), Some("channel_not_permitted")),
        "{at_atm}"
    );
    let (_, at_shop) = node
        .call(
            "POST",
            "/v1/authorizations",
            Some(&network),
            Some(cash("shop-1", "5411")),
        )
        .await;
    assert_eq!(at_shop["status"], "approved", "{at_shop}");
}
