//! The server under test, over gRPC (unary or the bidirectional processor stream) or
//! HTTP/JSON. Every call answers what the server said or why the call failed.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use tandem_proto::v1 as pb;
use tandem_proto::v1::accounts_client::AccountsClient;
use tandem_proto::v1::authorizations_client::AuthorizationsClient;
use tandem_proto::v1::balances_client::BalancesClient;
use tokio::sync::mpsc;

use crate::reopen::{Closable, Reopening};
use tonic::transport::Channel;

pub use crate::op::Op;
use crate::pending::Pending;

/// What the server answered.
#[derive(Debug, Clone)]
pub enum Answer {
    Card(pb::AuthorizeResponse),
    Balance(pb::BalanceSnapshot),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    GrpcUnary,
    GrpcStream,
    Http,
    /// Card traffic over ISO 8583; set-up, reads and the audit over the admin target.
    Iso8583,
}

/// A connected target.
pub struct Target {
    pub protocol: Protocol,
    token: String,
    channels: Vec<Channel>,
    /// One processor stream per channel, reopened after the node comes back.
    streams: Vec<Reopening<StreamConnection>>,
    http: Option<(HttpClient<HttpConnector, Full<Bytes>>, String)>,
    /// ISO 8583 links to `iso_address`, reopened likewise.
    iso: Vec<Reopening<crate::iso::Link>>,
    iso_address: String,
    translator: Option<crate::iso::Translator>,
    next: AtomicUsize,
    /// What the audit's reads ask for: "" (this node's applied state) or "linearizable"
    /// (every write acknowledged before, on any node of a cluster).
    consistency: String,
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn status_text(status: tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

impl Target {
    /// `url` is `grpc://host:port`, `http://host:port` or `iso8583://host:port`; `stream`
    /// uses the processor stream for card traffic over gRPC; `connections` channels (streams,
    /// ISO 8583 links) share the load. An ISO 8583 target provisions, reads and audits
    /// through `admin` (a gRPC or HTTP URL).
    pub async fn connect(
        url: &str,
        admin: &str,
        token: &str,
        stream: bool,
        connections: usize,
    ) -> Result<Self, String> {
        let Some(address) = url.strip_prefix("iso8583://") else {
            return Self::connect_api(url, token, stream, connections).await;
        };
        if admin.starts_with("iso8583://") {
            return Err("--admin-target must be grpc:// or http://".into());
        }
        let mut target = Self::connect_api(admin, token, false, connections).await?;
        for _ in 0..connections.max(1) {
            target
                .iso
                .push(Reopening::new(crate::iso::Link::connect(address).await?));
        }
        target.iso_address = address.to_owned();
        let run = crate::schedule::unix_ms().unsigned_abs();
        target.translator = Some(crate::iso::Translator::new(run));
        target.protocol = Protocol::Iso8583;
        Ok(target)
    }

    async fn connect_api(
        url: &str,
        token: &str,
        stream: bool,
        connections: usize,
    ) -> Result<Self, String> {
        let connections = connections.max(1);
        if let Some(address) = url.strip_prefix("grpc://") {
            let mut channels = Vec::new();
            for _ in 0..connections {
                let channel = Channel::from_shared(format!("http://{address}"))
                    .map_err(|e| e.to_string())?
                    .connect()
                    .await
                    .map_err(|e| format!("cannot connect to {url}: {e}"))?;
                channels.push(channel);
            }
            let mut streams = Vec::new();
            if stream {
                for channel in &channels {
                    streams.push(Reopening::new(
                        StreamConnection::open(channel.clone(), token).await?,
                    ));
                }
            }
            Ok(Self {
                protocol: if stream {
                    Protocol::GrpcStream
                } else {
                    Protocol::GrpcUnary
                },
                token: token.to_owned(),
                channels,
                streams,
                http: None,
                iso: Vec::new(),
                iso_address: String::new(),
                translator: None,
                next: AtomicUsize::new(0),
                consistency: String::new(),
            })
        } else if let Some(address) = url.strip_prefix("http://") {
            let client = HttpClient::builder(hyper_util::rt::TokioExecutor::new())
                .pool_max_idle_per_host(connections.max(64))
                .build_http();
            Ok(Self {
                protocol: Protocol::Http,
                token: token.to_owned(),
                channels: Vec::new(),
                streams: Vec::new(),
                http: Some((client, address.trim_end_matches('/').to_owned())),
                iso: Vec::new(),
                iso_address: String::new(),
                translator: None,
                next: AtomicUsize::new(0),
                consistency: String::new(),
            })
        } else {
            Err(format!(
                "--target must be grpc://HOST:PORT, http://HOST:PORT or iso8583://HOST:PORT, got {url}"
            ))
        }
    }

    /// Makes the audit's reads linearizable: against a cluster, a node that applies a little
    /// behind must not look like a money bug.
    pub fn read_linearizable(&mut self) {
        self.consistency = "linearizable".into();
    }

    fn channel(&self) -> Channel {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.channels[n % self.channels.len()].clone()
    }

    /// The admin (setup) client over gRPC, or `None` for HTTP targets.
    pub fn accounts(&self) -> Option<AccountsClient<Channel>> {
        (!self.channels.is_empty()).then(|| AccountsClient::new(self.channel()))
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub async fn call(&self, op: Op) -> Result<Answer, String> {
        match self.protocol {
            Protocol::Iso8583 if !matches!(op, Op::GetBalance(_)) => self.call_iso(op).await,
            Protocol::Iso8583 if self.channels.is_empty() => self.call_http(op).await,
            Protocol::Http => self.call_http(op).await,
            Protocol::GrpcStream if !matches!(op, Op::GetBalance(_)) => {
                let n = self.next.fetch_add(1, Ordering::Relaxed) % self.streams.len();
                let channel = self.channels[n].clone();
                let stream = self.streams[n]
                    .get(|| StreamConnection::open(channel, &self.token))
                    .await;
                stream.call(op).await
            }
            _ => self.call_unary(op).await,
        }
    }

    async fn call_iso(&self, op: Op) -> Result<Answer, String> {
        let translator = self.translator.as_ref().ok_or("not an ISO 8583 target")?;
        let (request, original) = translator.request(&op)?;
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.iso.len();
        let link = self.iso[n]
            .get(|| crate::iso::Link::connect(&self.iso_address))
            .await;
        let answer = link.ask(request).await?;
        Ok(Answer::Card(translator.answer(original, &answer)))
    }

    async fn call_unary(&self, op: Op) -> Result<Answer, String> {
        let token = &self.token;
        let mut client = AuthorizationsClient::new(self.channel());
        let answer = match op {
            Op::Authorize(r) => client.authorize(with_token(r, token)).await,
            Op::Increment(r) => client.increment_authorization(with_token(r, token)).await,
            Op::Reverse(r) => client.reverse(with_token(r, token)).await,
            Op::Clear(r) => client.clear(with_token(r, token)).await,
            Op::Advise(r) => client.advise(with_token(r, token)).await,
            Op::Refund(r) => client.refund(with_token(r, token)).await,
            Op::GetBalance(account) => {
                let mut balances = BalancesClient::new(self.channel());
                return balances
                    .get_balance(with_token(
                        pb::AccountRef {
                            account_id: account,
                            consistency: self.consistency.clone(),
                        },
                        token,
                    ))
                    .await
                    .map(|r| Answer::Balance(r.into_inner()))
                    .map_err(status_text);
            }
        };
        answer
            .map(|r| Answer::Card(r.into_inner()))
            .map_err(status_text)
    }

    async fn call_http(&self, op: Op) -> Result<Answer, String> {
        let (method, path, body) = match &op {
            Op::Authorize(r) => (
                "POST",
                "/v1/authorizations".to_owned(),
                serde_json::to_vec(r),
            ),
            Op::Increment(r) => (
                "POST",
                format!("/v1/authorizations/{}/increments", r.authorization_id),
                serde_json::to_vec(r),
            ),
            Op::Reverse(r) => (
                "POST",
                format!("/v1/authorizations/{}/reversals", r.authorization_id),
                serde_json::to_vec(r),
            ),
            Op::Clear(r) => (
                "POST",
                format!("/v1/authorizations/{}/clearings", r.authorization_id),
                serde_json::to_vec(r),
            ),
            Op::Advise(r) => ("POST", "/v1/advices".to_owned(), serde_json::to_vec(r)),
            Op::Refund(r) => ("POST", "/v1/refunds".to_owned(), serde_json::to_vec(r)),
            Op::GetBalance(account) => (
                "GET",
                format!(
                    "/v1/accounts/{account}/balance?consistency={}",
                    self.consistency
                ),
                Ok(Vec::new()),
            ),
        };
        let body = body.map_err(|e| e.to_string())?;
        let bytes = self.http_call(method, &path, body).await?;
        match op {
            Op::GetBalance(_) => serde_json::from_slice(&bytes).map(Answer::Balance),
            _ => serde_json::from_slice(&bytes).map(Answer::Card),
        }
        .map_err(|e| format!("answer does not parse: {e}"))
    }

    /// One HTTP/JSON call with the run's key; the body of a 2xx answer, else what went wrong.
    async fn http_call(&self, method: &str, path: &str, body: Vec<u8>) -> Result<Bytes, String> {
        let (client, address) = self.http.as_ref().expect("an HTTP target");
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{address}{path}"))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("HTTP body: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "{method} {path}: HTTP {}: {}",
                status.as_u16(),
                String::from_utf8_lossy(&bytes)
            ));
        }
        Ok(bytes)
    }

    /// Reads an account's balance (for the audit).
    pub async fn balance(&self, account: &str) -> Result<pb::BalanceSnapshot, String> {
        match self.call(Op::GetBalance(account.to_owned())).await? {
            Answer::Balance(b) => Ok(b),
            Answer::Card(_) => Err("unexpected answer".into()),
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let bytes = self.http_call("GET", path, Vec::new()).await?;
        serde_json::from_slice(&bytes).map_err(|e| format!("GET {path}: {e}"))
    }

    /// Reads an account's open holds (for the audit).
    pub async fn holds(&self, account: &str) -> Result<pb::Holds, String> {
        if self.http.is_some() {
            return self
                .get_json(&format!(
                    "/v1/accounts/{account}/holds?consistency={}",
                    self.consistency
                ))
                .await;
        }
        let mut balances = BalancesClient::new(self.channel());
        balances
            .list_holds(with_token(
                pb::AccountRef {
                    account_id: account.to_owned(),
                    consistency: self.consistency.clone(),
                },
                &self.token,
            ))
            .await
            .map(|r| r.into_inner())
            .map_err(status_text)
    }

    /// Reads every committed change to an account's lifecycles (for the audit: what became
    /// of each hold, expiries included).
    pub async fn lifecycle_events(&self, account: &str) -> Result<Vec<pb::LifecycleEvent>, String> {
        self.feed(account, |mut balances, request| async move {
            balances.list_lifecycle_events(request).await
        })
        .await
    }

    /// Reads all of an account's posted entries (for the audit).
    pub async fn entries(&self, account: &str) -> Result<Vec<pb::PostedEntry>, String> {
        self.feed(account, |mut balances, request| async move {
            balances.list_entries(request).await
        })
        .await
    }

    /// Reads the whole of one of an account's feeds, page by page: over HTTP from its path,
    /// over gRPC by `call`.
    async fn feed<P, Call, Answer>(&self, account: &str, call: Call) -> Result<Vec<P::Item>, String>
    where
        P: FeedPage,
        Call: Fn(BalancesClient<Channel>, tonic::Request<pb::EntriesRequest>) -> Answer,
        Answer: std::future::Future<Output = Result<tonic::Response<P>, tonic::Status>>,
    {
        if self.http.is_some() {
            return all_pages(|after| async move {
                let page: P = self
                    .get_json(&format!(
                        "/v1/accounts/{account}/{}?limit=1000&after={after}&consistency={}",
                        P::PATH,
                        self.consistency
                    ))
                    .await?;
                Ok(page.split())
            })
            .await;
        }
        let balances = BalancesClient::new(self.channel());
        all_pages(|after| {
            let answer = call(
                balances.clone(),
                with_token(feed_page(account, after, &self.consistency), &self.token),
            );
            async move { Ok(answer.await.map_err(status_text)?.into_inner().split()) }
        })
        .await
    }
}

/// A page of one of an account's feeds: where HTTP serves it, and its items and the cursor
/// after them.
trait FeedPage: serde::de::DeserializeOwned {
    type Item;
    const PATH: &'static str;
    fn split(self) -> (Vec<Self::Item>, String);
}

impl FeedPage for pb::Entries {
    type Item = pb::PostedEntry;
    const PATH: &'static str = "entries";
    fn split(self) -> (Vec<pb::PostedEntry>, String) {
        (self.entries, self.next)
    }
}

impl FeedPage for pb::LifecycleEvents {
    type Item = pb::LifecycleEvent;
    const PATH: &'static str = "lifecycle-events";
    fn split(self) -> (Vec<pb::LifecycleEvent>, String) {
        (self.events, self.next)
    }
}

/// The request for a page of 1,000 of an account's feed after cursor `after`, read as
/// `consistency` says.
fn feed_page(account: &str, after: String, consistency: &str) -> pb::EntriesRequest {
    pb::EntriesRequest {
        account_id: account.to_owned(),
        after,
        limit: 1_000,
        consistency: consistency.to_owned(),
    }
}

/// Every page of a feed, from the start: `fetch` reads the page after a cursor (empty for the
/// first) and gives its items and the next cursor (empty after the last page).
async fn all_pages<T, Page>(mut fetch: impl FnMut(String) -> Page) -> Result<Vec<T>, String>
where
    Page: std::future::Future<Output = Result<(Vec<T>, String), String>>,
{
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let (items, next) = fetch(after).await?;
        all.extend(items);
        if next.is_empty() {
            return Ok(all);
        }
        after = next;
    }
}

type Waiters = Pending<u64, Result<pb::AuthorizeResponse, String>>;

/// One bidirectional processor stream: requests go out as they come; answers are matched back
/// by correlation id in whatever order they return.
struct StreamConnection {
    outbound: mpsc::Sender<pb::StreamRequest>,
    waiters: Waiters,
    ids: AtomicU64,
    /// Set when the answers stop: the stream ended or broke.
    ended: Arc<AtomicBool>,
}

impl Closable for StreamConnection {
    fn is_closed(&self) -> bool {
        self.ended.load(Ordering::Relaxed) || self.outbound.is_closed()
    }
}

impl StreamConnection {
    async fn open(channel: Channel, token: &str) -> Result<Self, String> {
        let (outbound, receiver) = mpsc::channel::<pb::StreamRequest>(65_536);
        let mut client = AuthorizationsClient::new(channel);
        let mut answers = client
            .stream(with_token(
                tokio_stream::wrappers::ReceiverStream::new(receiver),
                token,
            ))
            .await
            .map_err(status_text)?
            .into_inner();
        let waiters = Waiters::default();
        let reader = waiters.clone();
        let ended = Arc::new(AtomicBool::new(false));
        let ending = ended.clone();
        tokio::spawn(async move {
            loop {
                let message = answers.message().await;
                let answer = match message {
                    Ok(Some(answer)) => answer,
                    Ok(None) | Err(_) => break,
                };
                let Ok(id) = answer.correlation_id.parse::<u64>() else {
                    continue;
                };
                let result = match answer.result {
                    Some(result) => Ok(result),
                    None => Err(format!(
                        "stream error {}: {}",
                        answer.error_code, answer.error_message
                    )),
                };
                reader.answer(&id, result);
            }
            // The stream ended: everyone still waiting learns it.
            ending.store(true, Ordering::Relaxed);
            reader.close(|| Some(Err("the stream closed".into())));
        });
        Ok(Self {
            outbound,
            waiters,
            ids: AtomicU64::new(0),
            ended,
        })
    }

    async fn call(&self, op: Op) -> Result<Answer, String> {
        use pb::stream_request::Request as R;
        let request = match op {
            Op::Authorize(r) => R::Authorize(r),
            Op::Increment(r) => R::Increment(r),
            Op::Reverse(r) => R::Reverse(r),
            Op::Clear(r) => R::Clear(r),
            Op::Advise(r) => R::Advise(r),
            Op::Refund(r) => R::Refund(r),
            Op::GetBalance(_) => return Err("balances are not on the processor stream".into()),
        };
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let receiver = self.waiters.wait_for(id);
        self.outbound
            .send(pb::StreamRequest {
                correlation_id: id.to_string(),
                request: Some(request),
            })
            .await
            .map_err(|_| "not sent: the stream had closed".to_string())?;
        receiver
            .await
            .map_err(|_| "the stream closed".to_string())?
            .map(Answer::Card)
    }
}

/// The admin calls a run makes to provision its accounts.
#[derive(Debug, Clone)]
pub enum AdminCall {
    Open(pb::OpenAccountRequest),
    Member(pb::MemberRequest),
    Card(pb::IssueCardRequest),
    Deposit(pb::MoneyRequest),
    Controls(Box<pb::MemberControlsRequest>),
    Rates(pb::SetRatesRequest),
}

impl Target {
    /// An ISO 8583 target translates card traffic by the PANs it learnt at issuance.
    pub fn learn_pan(&self, card: &pb::IssueCardRequest) {
        if let Some(translator) = &self.translator
            && !card.pan.is_empty()
        {
            translator.learn_pan(&card.card_id, &card.pan);
        }
    }

    pub async fn admin(&self, call: AdminCall) -> Result<(), String> {
        if let AdminCall::Card(card) = &call {
            self.learn_pan(card);
        }
        if let Some(mut accounts) = self.accounts() {
            let token = &self.token;
            return match call {
                AdminCall::Open(r) => accounts
                    .open_account(with_token(r, token))
                    .await
                    .map(|_| ()),
                AdminCall::Member(r) => accounts.add_member(with_token(r, token)).await.map(|_| ()),
                AdminCall::Card(r) => accounts.issue_card(with_token(r, token)).await.map(|_| ()),
                AdminCall::Deposit(r) => accounts.deposit(with_token(r, token)).await.map(|_| ()),
                AdminCall::Controls(r) => accounts
                    .set_member_controls(with_token(*r, token))
                    .await
                    .map(|_| ()),
                AdminCall::Rates(r) => accounts.set_rates(with_token(r, token)).await.map(|_| ()),
            }
            .map_err(status_text);
        }
        let (method, path, body) = match &call {
            AdminCall::Open(r) => ("POST", "/v1/accounts".to_owned(), serde_json::to_vec(r)),
            AdminCall::Member(r) => (
                "POST",
                format!("/v1/accounts/{}/members", r.account_id),
                serde_json::to_vec(r),
            ),
            AdminCall::Card(r) => (
                "POST",
                format!("/v1/accounts/{}/cards", r.account_id),
                serde_json::to_vec(r),
            ),
            AdminCall::Deposit(r) => (
                "POST",
                format!("/v1/accounts/{}/deposits", r.account_id),
                serde_json::to_vec(r),
            ),
            AdminCall::Controls(r) => (
                "PUT",
                format!(
                    "/v1/accounts/{}/members/{}/controls",
                    r.account_id, r.member_id
                ),
                serde_json::to_vec(&r.controls.clone().unwrap_or_default()),
            ),
            AdminCall::Rates(r) => ("PUT", "/v1/fx/rates".to_owned(), serde_json::to_vec(r)),
        };
        self.http_call(method, &path, body.map_err(|e| e.to_string())?)
            .await
            .map(|_| ())
    }
}
