//! `--watchers N`: live balance streams on the accounts under load, held as spend apps hold
//! them: gRPC `WatchBalance` or Server-Sent Events, spread over the nodes.
//!
//! Every answer that moved money on a watched account (an approval, an accepted clearing,
//! reversal or refund) reports the balance it left; the update of each watcher that shows
//! that balance is the answer's change, seen. The report gives:
//! - the lag from the answer to the update (p50/p99/max; 0 when the update came first, as it
//!   may: the server publishes a change as it becomes durable, the answer travels after it);
//! - the answered changes a watcher never showed by the end (missed);
//! - resyncs: a watcher that fell behind the server's buffer gets the latest state instead of
//!   the changes it skipped (balances are states, so it ends right; the skipped ones count as
//!   missed);
//! - reconnects: a stream cut (a node killed, a connection lost) is opened again on the next
//!   node. An SSE watcher resumes with `Last-Event-ID`, the sequence number it saw last; a
//!   `WatchBalance` watcher starts again from the current state.
//!
//! Matching is by the balance an answer reports (currency, ledger, held, available), in order
//! of occurrence: a balance two changes share matches first to first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use tandem_proto::v1 as pb;
use tandem_proto::v1::balances_client::BalancesClient;
use tokio::sync::watch;
use tonic::transport::Channel;

/// How long a watcher waits before it opens a cut stream again on the next node.
const REOPEN_AFTER: Duration = Duration::from_millis(20);

/// A balance as an answer and an update both show it.
type Key = (String, i64, i64, i64);

fn key(balance: &pb::Balance) -> Key {
    (
        balance.currency.clone(),
        balance.ledger_minor,
        balance.held_minor,
        balance.available_minor,
    )
}

/// One watcher's answers and updates, each waiting for the other.
#[derive(Default)]
struct Matching {
    /// Answered changes this watcher has not shown yet, by balance, in answer order.
    answered: HashMap<Key, VecDeque<Instant>>,
    /// Balances this watcher showed before any answer reported them.
    shown: HashMap<Key, u64>,
    /// What the last update showed, per currency: an update's unchanged currencies are no news.
    last: HashMap<String, Key>,
}

impl Matching {
    /// An answer reported `key` at `at`: its lag if the watcher showed it already (zero).
    fn answered(&mut self, key: Key, at: Instant) -> Option<Duration> {
        if let Some(count) = self.shown.get_mut(&key)
            && *count > 0
        {
            *count -= 1;
            return Some(Duration::ZERO);
        }
        self.answered.entry(key).or_default().push_back(at);
        None
    }

    /// An update showed `balances` at `at`: the lags of the answered changes it shows.
    fn shown(&mut self, balances: &[pb::Balance], at: Instant) -> Vec<Duration> {
        let mut lags = Vec::new();
        for balance in balances {
            let key = key(balance);
            if self.last.get(&balance.currency) == Some(&key) {
                continue;
            }
            self.last.insert(balance.currency.clone(), key.clone());
            match self.answered.get_mut(&key).and_then(VecDeque::pop_front) {
                Some(answered) => lags.push(at.saturating_duration_since(answered)),
                None => *self.shown.entry(key).or_default() += 1,
            }
        }
        lags
    }

    fn unmatched(&self) -> usize {
        self.answered.values().map(VecDeque::len).sum()
    }

    /// A new stream starts from a state of its own: every currency is news again.
    fn reopened(&mut self) {
        self.last.clear();
    }
}

/// Where the watchers connect: a gRPC channel per node, or an HTTP client and each node's
/// address.
enum Via {
    Grpc(Vec<Channel>),
    Sse(Box<HttpClient<HttpConnector, Empty<Bytes>>>, Vec<String>),
}

/// What the report shows of the watchers.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct WatchCounts {
    pub watchers: usize,
    /// `WatchBalance` or `SSE`.
    pub via: String,
    pub accounts: usize,
    pub updates: u64,
    /// Answered changes shown by a watcher, and the lag from answer to update.
    pub matched: u64,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
    /// Answered changes a watcher of their account never showed.
    pub missed: u64,
    pub resyncs: u64,
    pub reconnects: u64,
    /// Streams that could not be opened (a node down), and the last reason.
    pub open_failures: u64,
    pub last_failure: Option<String>,
}

/// The watchers of one run.
pub struct Watchers {
    via: Via,
    token: String,
    /// Each watcher's account and matching.
    watchers: Vec<(String, Mutex<Matching>)>,
    of_account: HashMap<String, Vec<usize>>,
    /// Lag from answer to update, microseconds.
    lag: Mutex<Histogram<u64>>,
    updates: AtomicU64,
    resyncs: AtomicU64,
    reconnects: AtomicU64,
    open_failures: AtomicU64,
    last_failure: Mutex<Option<String>>,
}

impl Watchers {
    /// `count` watchers over `accounts` (spread evenly; several per account when there are
    /// more watchers than accounts), on the nodes of `targets` (`grpc://` for `WatchBalance`,
    /// `http://` for Server-Sent Events; comma separated).
    pub fn new(
        count: usize,
        accounts: &[String],
        targets: &str,
        token: &str,
    ) -> Result<Self, String> {
        let urls: Vec<&str> = targets
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        let via = if urls.iter().all(|u| u.starts_with("grpc://")) {
            let mut channels = Vec::new();
            for url in &urls {
                let address = url.trim_start_matches("grpc://");
                channels.push(
                    Channel::from_shared(format!("http://{address}"))
                        .map_err(|e| format!("{url}: {e}"))?
                        .connect_lazy(),
                );
            }
            Via::Grpc(channels)
        } else if urls.iter().all(|u| u.starts_with("http://")) {
            let client = HttpClient::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Empty<Bytes>>();
            let addresses = urls
                .iter()
                .map(|u| {
                    u.trim_start_matches("http://")
                        .trim_end_matches('/')
                        .to_owned()
                })
                .collect();
            Via::Sse(Box::new(client), addresses)
        } else {
            return Err(format!(
                "watchers need grpc:// (WatchBalance) or http:// (SSE) nodes, all of one scheme: {targets}"
            ));
        };
        if accounts.is_empty() || urls.is_empty() {
            return Err("watchers need accounts and nodes".into());
        }
        let watchers: Vec<(String, Mutex<Matching>)> = (0..count)
            .map(|i| {
                let account = accounts[i * accounts.len() / count.max(1) % accounts.len()].clone();
                (account, Mutex::new(Matching::default()))
            })
            .collect();
        let mut of_account: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, (account, _)) in watchers.iter().enumerate() {
            of_account.entry(account.clone()).or_default().push(i);
        }
        Ok(Self {
            via,
            token: token.to_owned(),
            watchers,
            of_account,
            lag: Mutex::new(
                Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds"),
            ),
            updates: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            open_failures: AtomicU64::new(0),
            last_failure: Mutex::new(None),
        })
    }

    fn nodes(&self) -> usize {
        match &self.via {
            Via::Grpc(channels) => channels.len(),
            Via::Sse(_, addresses) => addresses.len(),
        }
    }

    /// An answer on `account` that moved money and left `balance`.
    pub fn answered(&self, account: &str, balance: &pb::Balance) {
        let Some(watchers) = self.of_account.get(account) else {
            return;
        };
        let now = Instant::now();
        for &i in watchers {
            let lag = lock(&self.watchers[i].1).answered(key(balance), now);
            if let Some(lag) = lag {
                self.record(&[lag]);
            }
        }
    }

    fn shown(&self, i: usize, update: &pb::BalanceSnapshot) {
        self.updates.fetch_add(1, Ordering::Relaxed);
        let mut matching = lock(&self.watchers[i].1);
        if update.cause == "resync" {
            // The changes skipped are missed; what it shows is the state from here on.
            self.resyncs.fetch_add(1, Ordering::Relaxed);
            matching.reopened();
        }
        let lags = matching.shown(&update.balances, Instant::now());
        drop(matching);
        self.record(&lags);
    }

    fn record(&self, lags: &[Duration]) {
        if lags.is_empty() {
            return;
        }
        let mut histogram = lock(&self.lag);
        for lag in lags {
            let _ = histogram.record((lag.as_micros() as u64).max(1));
        }
    }

    /// Answered changes no watcher of their account has shown yet.
    pub fn unmatched(&self) -> usize {
        self.watchers.iter().map(|(_, m)| lock(m).unmatched()).sum()
    }

    pub fn counts(&self) -> WatchCounts {
        let lag = lock(&self.lag);
        let ms = |micros: u64| micros as f64 / 1_000.0;
        let empty = lag.is_empty();
        WatchCounts {
            watchers: self.watchers.len(),
            via: match self.via {
                Via::Grpc(_) => "WatchBalance".into(),
                Via::Sse(..) => "SSE".into(),
            },
            accounts: self.of_account.len(),
            updates: self.updates.load(Ordering::Relaxed),
            matched: lag.len(),
            lag_p50_ms: if empty {
                0.0
            } else {
                ms(lag.value_at_quantile(0.5))
            },
            lag_p99_ms: if empty {
                0.0
            } else {
                ms(lag.value_at_quantile(0.99))
            },
            lag_max_ms: if empty { 0.0 } else { ms(lag.max()) },
            missed: self.unmatched() as u64,
            resyncs: self.resyncs.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            open_failures: self.open_failures.load(Ordering::Relaxed),
            last_failure: lock(&self.last_failure).clone(),
        }
    }

    /// Holds watcher `i`'s stream until `stop` says so, opening it again on the next node
    /// whenever it is cut.
    pub async fn hold(&self, i: usize, mut stop: watch::Receiver<bool>) {
        let account = &self.watchers[i].0;
        let mut node = i % self.nodes();
        let mut seen: Option<u64> = None;
        let mut opened_before = false;
        while !*stop.borrow() {
            match self.open(node, account, seen).await {
                Ok(mut updates) => {
                    if opened_before {
                        self.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    opened_before = true;
                    lock(&self.watchers[i].1).reopened();
                    loop {
                        tokio::select! {
                            update = updates.next() => match update {
                                Some(Ok(update)) => {
                                    seen = Some(update.seq);
                                    self.shown(i, &update);
                                }
                                Some(Err(_)) | None => break,
                            },
                            _ = stop.changed() => return,
                        }
                    }
                }
                Err(failure) => {
                    self.open_failures.fetch_add(1, Ordering::Relaxed);
                    *lock(&self.last_failure) = Some(failure);
                }
            }
            node = (node + 1) % self.nodes();
            tokio::select! {
                _ = tokio::time::sleep(REOPEN_AFTER) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Opens `account`'s balance stream on `node`, after update `seen` if the protocol can
    /// resume.
    async fn open(
        &self,
        node: usize,
        account: &str,
        seen: Option<u64>,
    ) -> Result<futures_util::stream::BoxStream<'static, Result<pb::BalanceSnapshot, String>>, String>
    {
        match &self.via {
            Via::Grpc(channels) => {
                let mut request = tonic::Request::new(pb::AccountRef {
                    account_id: account.to_owned(),
                    ..Default::default()
                });
                if let Ok(value) = format!("Bearer {}", self.token).parse() {
                    request.metadata_mut().insert("authorization", value);
                }
                let stream = BalancesClient::new(channels[node].clone())
                    .watch_balance(request)
                    .await
                    .map_err(|s| format!("WatchBalance: {:?}: {}", s.code(), s.message()))?
                    .into_inner();
                Ok(stream
                    .map(|r| r.map_err(|s| s.message().to_owned()))
                    .boxed())
            }
            Via::Sse(client, addresses) => {
                let mut request = hyper::Request::builder()
                    .uri(format!(
                        "http://{}/v1/accounts/{account}/balance/stream",
                        addresses[node]
                    ))
                    .header("authorization", format!("Bearer {}", self.token))
                    .header("accept", "text/event-stream");
                if let Some(seen) = seen {
                    request = request.header("last-event-id", seen.to_string());
                }
                let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
                let response = client
                    .request(request)
                    .await
                    .map_err(|e| format!("SSE: {e}"))?;
                if !response.status().is_success() {
                    return Err(format!("SSE: HTTP {}", response.status().as_u16()));
                }
                use eventsource_stream::Eventsource;
                let events = response.into_body().into_data_stream().eventsource();
                Ok(events
                    .filter_map(|event| async move {
                        match event {
                            Ok(event) if event.event == "balance" => Some(
                                serde_json::from_str::<pb::BalanceSnapshot>(&event.data)
                                    .map_err(|e| format!("SSE data: {e}")),
                            ),
                            Ok(_) => None,
                            Err(e) => Some(Err(format!("SSE: {e}"))),
                        }
                    })
                    .boxed())
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balance(held: i64) -> pb::Balance {
        pb::Balance {
            currency: "EUR".into(),
            ledger_minor: 10_000,
            held_minor: held,
            available_minor: 10_000 - held,
        }
    }

    fn gbp() -> pb::Balance {
        pb::Balance {
            currency: "GBP".into(),
            ledger_minor: 500,
            held_minor: 0,
            available_minor: 500,
        }
    }

    #[test]
    fn an_answer_is_matched_to_the_update_showing_its_balance_in_either_order() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut m = Matching::default();
        // The first state: no answer made it.
        assert!(m.shown(&[balance(0), gbp()], ms(0)).is_empty());
        // Answer first, update 3 ms later.
        assert_eq!(m.answered(key(&balance(100)), ms(10)), None);
        assert_eq!(
            m.shown(&[balance(100), gbp()], ms(13)),
            vec![Duration::from_millis(3)],
            "only the changed currency is news"
        );
        // Update first: the answer's lag is zero.
        assert!(m.shown(&[balance(250), gbp()], ms(20)).is_empty());
        assert_eq!(m.answered(key(&balance(250)), ms(21)), Some(Duration::ZERO));
        // A balance seen twice matches first to first.
        m.answered(key(&balance(100)), ms(30));
        assert_eq!(
            m.shown(&[balance(100), gbp()], ms(31)),
            vec![Duration::from_millis(1)]
        );
        // An answer no update shows is missed.
        m.answered(key(&balance(400)), ms(40));
        assert!(m.shown(&[balance(500), gbp()], ms(41)).is_empty());
        assert_eq!(m.unmatched(), 1);
    }

    #[test]
    fn watchers_spread_over_the_accounts_and_refuse_mixed_schemes() {
        let accounts: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let w = Watchers::new(5, &accounts, "http://127.0.0.1:1,http://127.0.0.1:2", "t").unwrap();
        let watched: Vec<&str> = w.watchers.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(watched, ["a0", "a2", "a4", "a6", "a8"]);
        let hot = Watchers::new(3, &accounts[..1], "grpc://127.0.0.1:1", "t").unwrap();
        assert_eq!(hot.of_account["a0"], [0, 1, 2]);
        assert!(Watchers::new(1, &accounts, "grpc://127.0.0.1:1,http://127.0.0.1:2", "t").is_err());
    }
}
