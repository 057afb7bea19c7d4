//! gRPC against the real binary with tonic clients: account setup, unary authorizations,
//! the processor stream (answers out of lock-step, matched by correlation id), the balance
//! watch stream, access control, and the standard health service.

// Amounts are written as major_minor (100_00 is 100.00) on purpose.
#![allow(clippy::inconsistent_digit_grouping)]

mod common;

use common::{ADMIN, Node};
use tandem_proto::v1 as pb;
use tandem_proto::v1::accounts_client::AccountsClient;
use tandem_proto::v1::authorizations_client::AuthorizationsClient;
use tandem_proto::v1::balances_client::BalancesClient;
use tokio_stream::StreamExt;
use tonic::Request;
use tonic::transport::Channel;

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    request
}

/// A read of `account`, as the admin.
fn account_ref(account: &str) -> Request<pb::AccountRef> {
    with_token(
        pb::AccountRef {
            account_id: account.into(),
            ..Default::default()
        },
        ADMIN,
    )
}

async fn channel(node: &Node) -> Channel {
    Channel::from_shared(format!("http://{}", node.grpc))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

fn spend(key: &str, card: &str, amount: i64) -> pb::AuthorizeRequest {
    pb::AuthorizeRequest {
        idempotency_key: key.to_owned(),
        card_id: card.to_owned(),
        amount_minor: amount,
        currency: "EUR".to_owned(),
        mcc: "5812".to_owned(),
        channel: "contactless".to_owned(),
        merchant_name: "Cafe".to_owned(),
        merchant_country: "FR".to_owned(),
        ..Default::default()
    }
}

async fn set_up(accounts: &mut AccountsClient<Channel>, account: &str, deposit: i64) {
    accounts
        .open_account(with_token(
            pb::OpenAccountRequest {
                account_id: account.into(),
                kind: "joint".into(),
            },
            ADMIN,
        ))
        .await
        .expect("open");
    accounts
        .add_member(with_token(
            pb::MemberRequest {
                account_id: account.into(),
                member_id: "ana".into(),
                role: "owner".into(),
            },
            ADMIN,
        ))
        .await
        .expect("member");
    accounts
        .issue_card(with_token(
            pb::IssueCardRequest {
                account_id: account.into(),
                card_id: format!("{account}-card"),
                member_id: "ana".into(),
                ..Default::default()
            },
            ADMIN,
        ))
        .await
        .expect("card");
    accounts
        .deposit(with_token(
            pb::MoneyRequest {
                account_id: account.into(),
                idempotency_key: "seed".into(),
                currency: "EUR".into(),
                amount_minor: deposit,
                member_id: "ana".into(),
            },
            ADMIN,
        ))
        .await
        .expect("deposit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_serves_accounts_authorizations_and_balances() {
    let dir = tempfile::tempdir().expect("dir");
    let node = Node::start(dir.path());
    let channel = channel(&node).await;
    let mut accounts = AccountsClient::new(channel.clone());
    let mut authorizations = AuthorizationsClient::new(channel.clone());
    let mut balances = BalancesClient::new(channel.clone());
    set_up(&mut accounts, "g1", 100_00).await;

    // Watch first: the current state, then each change.
    let mut watch = balances
        .watch_balance(account_ref("g1"))
        .await
        .expect("watch")
        .into_inner();
    let first = watch.next().await.expect("first").expect("ok");
    assert_eq!(first.balances[0].available_minor, 100_00);

    let approved = authorizations
        .authorize(with_token(spend("g-1", "g1-card", 12_34), ADMIN))
        .await
        .expect("authorize")
        .into_inner();
    assert_eq!(
        (approved.status.as_str(), approved.response_code.as_str()),
        ("approved", "00")
    );
    assert_eq!(approved.approval_code.len(), 6);
    let change = watch.next().await.expect("change").expect("ok");
    assert!(change.seq > first.seq);
    assert_eq!(change.balances[0].available_minor, 100_00 - 12_34);

    let increment = authorizations
        .increment_authorization(with_token(
            pb::IncrementRequest {
                idempotency_key: "g-2".into(),
                authorization_id: approved.authorization_id.clone(),
                amount_minor: 66,
                currency: "EUR".into(),
            },
            ADMIN,
        ))
        .await
        .expect("increment")
        .into_inner();
    assert_eq!(increment.response_code, "00");
    let holds = balances
        .list_holds(account_ref("g1"))
        .await
        .expect("holds")
        .into_inner();
    assert_eq!(holds.holds.len(), 1);
    assert_eq!(holds.holds[0].held[0].amount_minor, 13_00);

    // The processor stream: 300 requests sent without waiting; every one answered once.
    let requests: Vec<pb::StreamRequest> = (0..300)
        .map(|i| pb::StreamRequest {
            correlation_id: format!("c{i}"),
            request: Some(pb::stream_request::Request::Authorize(spend(
                &format!("s-{i}"),
                "g1-card",
                1_00,
            ))),
        })
        .collect();
    let mut answers = authorizations
        .stream(with_token(tokio_stream::iter(requests), ADMIN))
        .await
        .expect("stream")
        .into_inner();
    let mut seen = std::collections::BTreeMap::new();
    while let Some(answer) = answers.next().await {
        let answer = answer.expect("answer");
        let result = answer.result.expect("result");
        *seen.entry(result.status.clone()).or_insert(0) += 1;
        assert!(answer.correlation_id.starts_with('c'));
    }
    assert_eq!(seen.values().sum::<i32>(), 300, "{seen:?}");
    // 87.00 was available: 87 approvals of 1.00, then 51s.
    assert_eq!(seen.get("approved"), Some(&87), "{seen:?}");
    let balance = balances
        .get_balance(account_ref("g1"))
        .await
        .expect("balance")
        .into_inner();
    assert_eq!(balance.balances[0].available_minor, 0);
    assert_eq!(balance.balances[0].held_minor, 100_00);

    // The standard health service answers without a key.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "tandem.v1.Authorizations".into(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refuses_missing_keys_and_wrong_scopes() {
    let dir = tempfile::tempdir().expect("dir");
    let node = Node::start(dir.path());
    let channel = channel(&node).await;
    let mut accounts = AccountsClient::new(channel.clone());
    let mut authorizations = AuthorizationsClient::new(channel.clone());
    set_up(&mut accounts, "g2", 10_00).await;

    let status = authorizations
        .authorize(Request::new(spend("x", "g2-card", 1_00)))
        .await
        .expect_err("no key");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let token = &node.app_key("g2", "ana").await;
    let status = authorizations
        .authorize(with_token(spend("x", "g2-card", 1_00), token))
        .await
        .expect_err("apps send no card traffic");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let status = accounts
        .open_account(with_token(
            pb::OpenAccountRequest {
                account_id: "g3".into(),
                kind: "joint".into(),
            },
            token,
        ))
        .await
        .expect_err("apps open no accounts");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let status = accounts
        .deposit(with_token(
            pb::MoneyRequest {
                account_id: "g2".into(),
                idempotency_key: "d".into(),
                currency: "EUR".into(),
                amount_minor: -1,
                member_id: "ana".into(),
            },
            ADMIN,
        ))
        .await
        .expect_err("negative amount");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("amount_minor"),
        "{}",
        status.message()
    );
}

/// A request that outlives `--request-timeout-ms` is answered in its own protocol: gRPC
/// callers get `UNAVAILABLE` with `tandem-code: timeout` (not a bare HTTP 408 their client
/// cannot read), HTTP callers a problem+json 503 with the same code; the retry with the same
/// idempotency key, once the disk is quick again, gets the one decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_timeout_is_answered_in_its_own_protocol() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start_with(
        &dir.path().join("data"),
        &["--fault-injection", "true", "--request-timeout-ms", "300"],
    );
    let channel = channel(&node).await;
    let mut accounts = AccountsClient::new(channel.clone());
    let mut authorizations = AuthorizationsClient::new(channel);
    set_up(&mut accounts, "slow", 100_00).await;
    node.slow_commits(1_500).await;

    let status = authorizations
        .authorize(with_token(spend("slow-1", "slow-card", 10_00), ADMIN))
        .await
        .expect_err("past the timeout");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(
        status
            .metadata()
            .get("tandem-code")
            .and_then(|v| v.to_str().ok()),
        Some("timeout")
    );

    let (code, problem) = node.authorize(ADMIN, "slow-2", "slow-card", 10_00).await;
    assert_eq!(code, 503, "{problem}");
    assert_eq!(problem["code"], "timeout", "{problem}");

    // The disk recovers: each retry under its key gets its one decision.
    node.slow_commits(0).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let again = authorizations
        .authorize(with_token(spend("slow-1", "slow-card", 10_00), ADMIN))
        .await
        .expect("the retry is answered")
        .into_inner();
    assert_eq!(again.response_code, "00", "{again:?}");
    let (code, answer) = node.authorize(ADMIN, "slow-2", "slow-card", 10_00).await;
    assert_eq!(
        (code, answer["response_code"].as_str()),
        (200, Some("00")),
        "{answer}"
    );
    let balance = node.balance("slow").await;
    assert_eq!(
        balance["balances"][0]["held_minor"], 20_00,
        "two holds, one per key: {balance}"
    );
    node.stop();
}

/// An advice, force post or refund on an unknown card is declined 14 over gRPC, as an
/// authorization is and as ISO 8583 answers (docs/api.md), not NOT_FOUND.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postings_on_an_unknown_card_are_declined_14() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&dir.path().join("data"));
    let mut authorizations = AuthorizationsClient::new(channel(&node).await);
    let posting = |key: &str| pb::PostingRequest {
        idempotency_key: key.to_owned(),
        card_id: "no-such-card".to_owned(),
        amount_minor: 1_00,
        currency: "EUR".to_owned(),
        mcc: "5411".to_owned(),
        ..Default::default()
    };
    let answers = [
        authorizations
            .advise(with_token(posting("u-advice"), ADMIN))
            .await,
        authorizations
            .force_post(with_token(posting("u-force"), ADMIN))
            .await,
        authorizations
            .refund(with_token(posting("u-refund"), ADMIN))
            .await,
    ];
    for answer in answers {
        let answer = answer.expect("answered, not an error").into_inner();
        assert_eq!(
            (
                answer.response_code.as_str(),
                answer.decline_reason.as_str()
            ),
            ("14", "unknown_card"),
            "{answer:?}"
        );
    }
    node.stop();
}
