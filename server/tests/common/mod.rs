//! Starts the real `tandem` binary on free ports and talks to it with real clients: an HTTP
//! client (hyper), a tonic gRPC client and a raw SSE reader.
#![allow(dead_code)]

pub mod cluster;
pub mod iso;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const ADMIN: &str = "test-admin-token";

pub struct Node {
    pub child: Child,
    pub http: String,
    pub grpc: String,
    pub iso8583: String,
    pub data_dir: PathBuf,
    client: Client<HttpConnector, Full<Bytes>>,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_tandem")
}

/// `tandem serve` on `data_dir`, every listener on a free loopback port, with the admin token.
pub fn serve(data_dir: &Path) -> Command {
    let mut command = Command::new(binary());
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--iso8583-listen",
            "127.0.0.1:0",
        ])
        .env("TANDEM_ADMIN_TOKEN", ADMIN);
    command
}

/// Runs `command` to its end and checks that it succeeded, showing its stderr if not.
pub fn succeeds(command: &mut Command) -> std::process::Output {
    let output = command.output().expect("the command runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl Node {
    pub fn start(data_dir: &Path) -> Node {
        Self::start_with(data_dir, &[])
    }

    /// Starts a node and waits for its "ready" line (recovery done, listeners up).
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Node {
        Self::spawn(data_dir, extra, None, &[])
    }

    /// Starts a node with `env` set as well (an empty value unsets a variable for it).
    pub fn start_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Node {
        Self::spawn(data_dir, &[], None, env)
    }

    /// Starts a node that logs at `info` into `log` (a file, not a terminal).
    pub fn start_logging_to(data_dir: &Path, log: &Path) -> Node {
        Self::spawn(data_dir, &[], Some(log), &[])
    }

    fn spawn(data_dir: &Path, extra: &[&str], log: Option<&Path>, env: &[(&str, &str)]) -> Node {
        let mut command = serve(data_dir);
        command.args(extra).envs(env.iter().copied());
        Self::spawn_command(command, data_dir, log)
    }

    /// Starts `command` (a `tandem serve` on `data_dir`) and waits for its "ready" line.
    pub fn spawn_command(mut command: Command, data_dir: &Path, log: Option<&Path>) -> Node {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
            None => Stdio::inherit(),
        };
        let mut child = command
            .env("TANDEM_LOG", if log.is_some() { "info" } else { "warn" })
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start tandem");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(rest) = line.strip_prefix("tandem ready: ") {
                    let _ = sender.send(rest.to_owned());
                }
            }
        });
        let ready = receiver
            .recv_timeout(Duration::from_secs(120))
            .expect("tandem did not report ready");
        let mut grpc = String::new();
        let mut http = String::new();
        let mut iso8583 = String::new();
        for part in ready.split_whitespace() {
            if let Some(a) = part.strip_prefix("iso8583=") {
                iso8583 = a.to_owned();
            }
            if let Some(a) = part.strip_prefix("grpc=") {
                grpc = a.to_owned();
            }
            if let Some(a) = part.strip_prefix("http=") {
                http = a.to_owned();
            }
        }
        Node {
            child,
            http,
            grpc,
            iso8583,
            data_dir: data_dir.to_owned(),
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
        }
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "tandem did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        self.raw(method, path, token, bytes.into_bytes()).await
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Value) {
        self.try_raw(method, path, token, body)
            .await
            .expect("HTTP call")
    }

    /// [`Node::call`] that answers why when no answer came (the node is down, the
    /// connection was cut): what a client sees of a node killed under it.
    pub async fn try_call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        self.try_raw(method, path, token, bytes.into_bytes()).await
    }

    /// [`Node::raw`] that answers why when no answer came.
    pub async fn try_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(u16, Value), String> {
        self.try_raw_with_headers(method, path, token, body)
            .await
            .map(|(status, _, value)| (status, value))
    }

    /// [`Node::try_raw`] with the answer's headers.
    pub async fn try_raw_with_headers(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(u16, hyper::HeaderMap, Value), String> {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.http))
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Full::new(Bytes::from(body))).expect("request");
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("").to_owned())
            .unwrap_or_default();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let value = if content_type.contains("json") && !bytes.is_empty() {
            serde_json::from_slice(&bytes).expect("JSON body")
        } else {
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        };
        if status >= 400 && path.starts_with("/v1") {
            assert_eq!(
                content_type, "application/problem+json",
                "the API's errors are problem+json: {status} {value}"
            );
        }
        Ok((status, headers, value))
    }

    pub async fn admin(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, value) = self.call(method, path, Some(ADMIN), Some(body)).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path} -> {status} {value}"
        );
        value
    }

    /// `POST /v1/authorizations` of [`authorize_body`] with `token`: the status and the body.
    pub async fn authorize(&self, token: &str, key: &str, card: &str, amount: i64) -> (u16, Value) {
        let body = authorize_body(key, card, amount);
        self.call("POST", "/v1/authorizations", Some(token), Some(body))
            .await
    }

    /// Issues an API key of `role` for `member` of `account`, and answers its token.
    pub async fn app_key(&self, account: &str, member: &str) -> String {
        let key = self
            .admin(
                "POST",
                "/v1/api-keys",
                serde_json::json!({"role": "app", "account_id": account, "member_id": member}),
            )
            .await;
        key["token"].as_str().expect("a token").to_owned()
    }

    /// Issues a card network's API key, and answers its token.
    pub async fn network_key(&self) -> String {
        let key = self
            .admin(
                "POST",
                "/v1/api-keys",
                serde_json::json!({"role": "network"}),
            )
            .await;
        key["token"].as_str().expect("a token").to_owned()
    }

    /// Makes every apply of committed entries wait `delay_ms` first, on a node started with
    /// `--fault-injection true`: it applies behind what it knows committed.
    pub async fn slow_applies(&self, delay_ms: u64) {
        self.admin(
            "POST",
            "/v1/admin/faults",
            serde_json::json!({ "apply_delay_ms": delay_ms }),
        )
        .await;
    }

    /// Makes every commit take `delay_ms` (0: as fast as the disk), on a node started with
    /// `--fault-injection true`.
    pub async fn slow_commits(&self, delay_ms: u64) {
        self.admin(
            "POST",
            "/v1/admin/faults",
            serde_json::json!({ "commit_delay_ms": delay_ms }),
        )
        .await;
    }

    /// Opens an account with the given members (first is owner), one card each (`<member>-card`),
    /// and deposits.
    pub async fn account(
        &self,
        account: &str,
        kind: &str,
        members: &[(&str, &str)],
        deposit: Option<(&str, i64)>,
    ) {
        self.admin(
            "POST",
            "/v1/accounts",
            serde_json::json!({"account_id": account, "kind": kind}),
        )
        .await;
        for (member, role) in members {
            self.admin(
                "POST",
                &format!("/v1/accounts/{account}/members"),
                serde_json::json!({"member_id": member, "role": role}),
            )
            .await;
            self.admin(
                "POST",
                &format!("/v1/accounts/{account}/cards"),
                serde_json::json!({"card_id": format!("{account}-{member}-card"), "member_id": member}),
            )
            .await;
        }
        if let Some((currency, amount)) = deposit {
            self.admin(
                "POST",
                &format!("/v1/accounts/{account}/deposits"),
                serde_json::json!({
                    "idempotency_key": format!("seed-{account}"),
                    "currency": currency,
                    "amount_minor": amount,
                    "member_id": members[0].0,
                }),
            )
            .await;
        }
    }

    /// `GET path` as the admin, which must answer 200: its body.
    pub async fn get(&self, path: &str) -> Value {
        let (status, value) = self.call("GET", path, Some(ADMIN), None).await;
        assert_eq!(status, 200, "GET {path}: {value}");
        value
    }

    /// The account's balance snapshot, without the commit index the read reports (the
    /// node's read point, not the account's state: it moves with every write anywhere).
    pub async fn balance(&self, account: &str) -> Value {
        let mut snapshot = self.get(&format!("/v1/accounts/{account}/balance")).await;
        if let Some(fields) = snapshot.as_object_mut() {
            fields.remove("commit_index");
        }
        snapshot
    }

    /// Opens an SSE stream; answers the response body to read events from.
    pub async fn sse(
        &self,
        path: &str,
        token: &str,
        last_event_id: Option<u64>,
    ) -> (u16, hyper::body::Incoming) {
        let mut request = hyper::Request::get(format!("http://{}{path}", self.http))
            .header("authorization", format!("Bearer {token}"))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let response = client
            .request(request.body(Full::new(Bytes::new())).expect("request"))
            .await
            .expect("SSE call");
        (response.status().as_u16(), response.into_body())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads SSE frames until one complete event arrives; answers (id, data JSON).
pub async fn next_event(body: &mut hyper::body::Incoming, buffer: &mut String) -> (u64, Value) {
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let mut id = None;
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if let Some(id) = id {
                return (id, serde_json::from_str(&data).expect("event JSON"));
            }
            continue; // a keep-alive comment
        }
        let frame = tokio::time::timeout(Duration::from_secs(30), body.frame())
            .await
            .expect("an SSE event within 30 s")
            .expect("stream open")
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            buffer.push_str(&String::from_utf8_lossy(&data));
        }
    }
}

pub fn authorize_body(key: &str, card: &str, amount: i64) -> Value {
    serde_json::json!({
        "idempotency_key": key,
        "card_id": card,
        "amount_minor": amount,
        "currency": "EUR",
        "mcc": "5411",
        "channel": "chip",
        "merchant_name": "Corner Shop",
        "merchant_country": "GB",
    })
}

/// Waits until `holds` is true, checking every 50 ms; fails with `what` after a minute.
pub async fn eventually<F, Fut>(what: &str, mut holds: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !holds().await {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
