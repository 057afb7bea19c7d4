//! Forwarding over the peer protocol on real loopback sockets: many requests share one lane
//! to the leader and each gets its own answer; a lane that breaks answers what it carried as
//! unreachable and the next request opens another; a leader that does not know lanes is
//! called once per request.
//!
//! The leader's side here answers bytes with bytes (`Reverse`): what a forwarded request
//! means is the server's, and the server's cluster tests forward real operations.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_replication::{ForwardFailed, ForwardHandler, ForwardService, GrpcNetwork};

const TOKEN: &str = "peer-token-of-the-test-cluster";
const DEADLINE: Duration = Duration::from_secs(5);

/// Answers a body with its bytes reversed, after as many milliseconds as its first byte
/// says (so answers come back in another order than asked); a body starting with 255 is never
/// answered.
struct Reverse;

impl ForwardHandler for Reverse {
    fn call(&self, body: Vec<u8>) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send + '_>> {
        Box::pin(async move {
            match body.first().copied() {
                Some(255) => std::future::pending().await,
                Some(ms) => tokio::time::sleep(Duration::from_millis(ms.into())).await,
                None => {}
            }
            body.into_iter().rev().collect()
        })
    }
}

/// A leader's forwarding service on `address`, on a runtime of its own (so stopping it
/// closes every connection it holds), recording the path of each RPC it is sent. `lanes`:
/// whether it serves `Forward/Stream` (a leader from before lanes does not).
struct Leader {
    paths: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Leader {
    fn start(listener: std::net::TcpListener, lanes: bool) -> Self {
        let paths = Arc::new(Mutex::new(Vec::new()));
        let seen = paths.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async move {
                let service = ForwardService::pending(TOKEN.to_owned());
                service.attach(Arc::new(Reverse));
                let router = tonic::service::Routes::new(service.into_server())
                    .into_axum_router()
                    .layer(axum::middleware::from_fn(
                        move |request: axum::extract::Request, next: axum::middleware::Next| {
                            let path = request.uri().path().to_owned();
                            seen.lock().unwrap().push(path.clone());
                            async move {
                                if !lanes && path.ends_with("/Stream") {
                                    // What a tonic server without the method answers.
                                    return tonic::Status::unimplemented("no such method")
                                        .into_http::<axum::body::Body>();
                                }
                                next.run(request).await
                            }
                        },
                    ));
                listener.set_nonblocking(true).unwrap();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                tokio::select! {
                    _ = axum::serve(listener, router) => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops every connection's task: the sockets close.
        });
        Self {
            paths,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }

    fn stop(mut self) {
        drop(self.stop.take());
        self.thread.take().unwrap().join().unwrap();
    }
}

fn listener() -> (std::net::TcpListener, SocketAddr) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    (listener, address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_share_one_lane_and_each_gets_its_own_answer() {
    let (listener, address) = listener();
    let leader = Leader::start(listener, true);
    let network = GrpcNetwork::new(2, TOKEN).unwrap();
    let address = address.to_string();
    let asks = (0..300u32).map(|i| {
        let network = network.clone();
        let address = address.clone();
        // First byte: a delay of 0-9 ms, so answers overtake each other.
        let body = [vec![(i % 10) as u8], i.to_be_bytes().to_vec()].concat();
        tokio::spawn(async move {
            let answer = network.forward(1, &address, body.clone(), DEADLINE).await;
            (body, answer)
        })
    });
    let asks: Vec<_> = asks.collect();
    for ask in asks {
        let (body, answer) = ask.await.unwrap();
        let expected: Vec<u8> = body.iter().rev().copied().collect();
        assert_eq!(answer, Ok(expected), "each request gets its own answer");
    }
    let paths = leader.paths();
    assert_eq!(
        paths,
        vec!["/tandem.raft.v1.Forward/Stream".to_owned()],
        "300 requests took one lane, and no call of their own"
    );
    leader.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_that_breaks_answers_unreachable_and_the_next_request_opens_another() {
    let (listener, address) = listener();
    let leader = Leader::start(listener, true);
    let network = GrpcNetwork::new(2, TOKEN).unwrap();
    let address = address.to_string();
    assert_eq!(
        network.forward(1, &address, vec![0, 1, 2], DEADLINE).await,
        Ok(vec![2, 1, 0])
    );
    // One the leader never answers, in flight when it goes away.
    let hanging = {
        let (network, address) = (network.clone(), address.clone());
        tokio::spawn(async move { network.forward(1, &address, vec![255], DEADLINE).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    leader.stop();
    let answer = tokio::time::timeout(Duration::from_secs(3), hanging)
        .await
        .expect("a broken lane answers at once, not at the deadline")
        .unwrap();
    assert!(
        matches!(answer, Err(ForwardFailed::Unreachable(_))),
        "in doubt, as a broken call is: {answer:?}"
    );
    // The leader comes back on the same address: the next request opens a new lane.
    let leader = Leader::start(std::net::TcpListener::bind(&address).unwrap(), true);
    let mut answer = network.forward(1, &address, vec![0, 7], DEADLINE).await;
    for _ in 0..50 {
        if answer.is_ok() {
            break;
        }
        // The channel reconnects with a back-off of its own.
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = network.forward(1, &address, vec![0, 7], DEADLINE).await;
    }
    assert_eq!(answer, Ok(vec![7, 0]));
    assert!(
        leader
            .paths()
            .contains(&"/tandem.raft.v1.Forward/Stream".to_owned())
    );
    leader.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_lanes_is_called_once_per_request() {
    let (listener, address) = listener();
    let leader = Leader::start(listener, false);
    let network = GrpcNetwork::new(2, TOKEN).unwrap();
    let address = address.to_string();
    for i in 0..3u8 {
        assert_eq!(
            network.forward(1, &address, vec![0, i], DEADLINE).await,
            Ok(vec![i, 0]),
            "answered, the first request too"
        );
    }
    let paths = leader.paths();
    assert_eq!(
        paths,
        [
            "/tandem.raft.v1.Forward/Stream",
            "/tandem.raft.v1.Forward/Call",
            "/tandem.raft.v1.Forward/Call",
            "/tandem.raft.v1.Forward/Call"
        ],
        "one try of a lane, then a call per request"
    );
    leader.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_with_the_wrong_token_is_refused_not_left_hanging() {
    let (listener, address) = listener();
    let leader = Leader::start(listener, true);
    let network = GrpcNetwork::new(2, "not-the-cluster-token").unwrap();
    let answer = network
        .forward(1, &address.to_string(), vec![0, 1], DEADLINE)
        .await;
    match answer {
        Err(ForwardFailed::Unreachable(why)) => {
            assert!(why.contains("peer token"), "{why}")
        }
        other => panic!("refused, not {other:?}"),
    }
    leader.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_delay_holds_each_request_and_its_answer() {
    let (listener, address) = listener();
    let leader = Leader::start(listener, true);
    let delay = Duration::from_millis(60);
    let network = GrpcNetwork::new(2, TOKEN)
        .unwrap()
        .with_link_delays([(1, delay)].into_iter().collect());
    let address = address.to_string();
    let started = std::time::Instant::now();
    let asks: Vec<_> = (0..20u8)
        .map(|i| {
            let (network, address) = (network.clone(), address.clone());
            tokio::spawn(async move { network.forward(1, &address, vec![0, i], DEADLINE).await })
        })
        .collect();
    for (i, ask) in asks.into_iter().enumerate() {
        assert_eq!(ask.await.unwrap(), Ok(vec![i as u8, 0]));
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= 2 * delay,
        "a request and its answer each cross the link: {elapsed:?}"
    );
    // Held each on its own: twenty requests at once are not twenty round trips.
    assert!(
        elapsed < 20 * delay,
        "delayed requests do not queue behind each other: {elapsed:?}"
    );
    leader.stop();
}
