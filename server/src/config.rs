//! Configuration: a TOML file (`--config`), then environment variables, then flags, each
//! overriding the one before; anything left unset takes the embedded default. Every option
//! is documented by `tandem serve --help`.

use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::limits;

/// Every option, each optional so the three sources can be layered. The same struct reads
/// the TOML file (keys are the long flag names with `_`).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the log, state, keys and PAN hashing key live [default: ./data]
    #[arg(long, env = "TANDEM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:50051]
    #[arg(long, env = "TANDEM_GRPC_LISTEN")]
    pub grpc_listen: Option<SocketAddr>,
    /// HTTP/JSON, SSE, health and metrics listen address [default: 127.0.0.1:8080]
    #[arg(long, env = "TANDEM_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Log format: text or json [default: text]
    #[arg(long, env = "TANDEM_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Log filter, tracing's env-filter syntax [default: info, openraft and its log at warn]
    #[arg(long, env = "TANDEM_LOG")]
    pub log: Option<String>,
    /// Largest request body accepted, bytes (HTTP and gRPC) [default: 65536]
    #[arg(long, env = "TANDEM_REQUEST_BODY_MAX_BYTES")]
    pub request_body_max_bytes: Option<usize>,
    /// A unary request not answered within this many milliseconds gets a timeout
    /// [default: 10000]
    #[arg(long, env = "TANDEM_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Concurrent HTTP/2 streams per connection [default: 1024]
    #[arg(long, env = "TANDEM_STREAMS_PER_CONNECTION_MAX")]
    pub streams_per_connection_max: Option<u32>,
    /// Requests per second per API key, 0 for no limit [default: 0]
    #[arg(long, env = "TANDEM_RATE_LIMIT_PER_KEY")]
    pub rate_limit_per_key: Option<u32>,
    /// Seconds a resident account may be idle before it is passivated [default: 300]
    #[arg(long, env = "TANDEM_ACTOR_IDLE_SECS")]
    pub actor_idle_secs: Option<u64>,
    /// Decisions in flight across all accounts before callers get "busy" [default: 65536]
    #[arg(long, env = "TANDEM_IN_FLIGHT_MAX")]
    pub in_flight_max: Option<usize>,
    /// Decisions in flight on one account before callers get "busy" [default: 1024]
    #[arg(long, env = "TANDEM_IN_FLIGHT_PER_ACCOUNT_MAX")]
    pub in_flight_per_account_max: Option<usize>,
    /// Seconds between sweeps for expired holds [default: 60]
    #[arg(long, env = "TANDEM_SWEEP_EVERY_SECS")]
    pub sweep_every_secs: Option<u64>,
    /// The FX base currency until rates are set [default: EUR]
    #[arg(long, env = "TANDEM_FX_BASE")]
    pub fx_base: Option<String>,
    /// The checkpoint store's block cache, bytes [default: 268435456]
    #[arg(long, env = "TANDEM_CHECKPOINT_CACHE_BYTES")]
    pub checkpoint_cache_bytes: Option<u64>,
    /// Deprecated alias of `--checkpoint-cache-bytes` (named for sled, the store before
    /// decision 0023): still accepted, with a warning at start; the new name wins if both are
    /// set.
    #[arg(long, env = "TANDEM_SLED_CACHE_BYTES", hide = true)]
    pub sled_cache_bytes: Option<u64>,
    /// Entries each of the card and PAN directories' caches holds; a lookup past them reads
    /// the checkpoint [default: 262144]
    #[arg(long, env = "TANDEM_DIRECTORY_CACHE_ENTRIES")]
    pub directory_cache_entries: Option<usize>,
    /// Time between checkpoints (the store written and fsynced, the log purged up to it), ms:
    /// longer costs less checkpoint writing and replays more log at start [default: 1000]
    #[arg(long, env = "TANDEM_CHECKPOINT_MS")]
    pub checkpoint_ms: Option<u64>,
    /// Log entries kept behind a checkpoint when the log is purged up to it: a cluster member
    /// that lags by fewer catches up from the log, one that lags by more by a snapshot
    /// [default: 1000]
    #[arg(long, env = "TANDEM_LOG_KEPT_ENTRIES")]
    pub log_kept_entries: Option<u64>,
    /// Log writes (each one group commit and its fdatasync) handed to the log at once
    /// [default: 1]
    #[arg(long, env = "TANDEM_LOG_WRITES_IN_FLIGHT")]
    pub log_writes_in_flight: Option<usize>,
    /// PEM certificate chain: with --tls-key, both listeners serve TLS only (rustls)
    #[arg(long, env = "TANDEM_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert
    #[arg(long, env = "TANDEM_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Enables `POST /v1/admin/faults` (admin only), which makes log writes fail as on a full
    /// disk: for drills and tests, never in production [default: false]
    #[arg(long, env = "TANDEM_FAULT_INJECTION")]
    pub fault_injection: Option<bool>,
    /// ISO 8583 gateway listen address [default: 127.0.0.1:8583]
    #[arg(long, env = "TANDEM_ISO8583_LISTEN")]
    pub iso8583_listen: Option<SocketAddr>,
    /// ISO 8583 bitmaps: binary (8 raw bytes) or hex (16 characters) [default: binary]
    #[arg(long, env = "TANDEM_ISO8583_BITMAP")]
    pub iso8583_bitmap: Option<String>,
    /// An ISO 8583 authorization not durable within this many milliseconds is answered 91
    /// and marked timed out [default: 1500]
    #[arg(long, env = "TANDEM_ISO8583_DEADLINE_MS")]
    pub iso8583_deadline_ms: Option<u64>,
    /// Largest ISO 8583 message accepted, bytes; a larger frame closes the link [default: 8192]
    #[arg(long, env = "TANDEM_ISO8583_FRAME_MAX_BYTES")]
    pub iso8583_frame_max_bytes: Option<usize>,
    /// Seconds an ISO 8583 link may send nothing (echo keeps it open) [default: 300]
    #[arg(long, env = "TANDEM_ISO8583_IDLE_TIMEOUT_SECS")]
    pub iso8583_idle_timeout_secs: Option<u64>,
    /// Milliseconds within which a begun ISO 8583 frame must arrive whole, and an answer be
    /// taken by the peer [default: 10000]
    #[arg(long, env = "TANDEM_ISO8583_READ_TIMEOUT_MS")]
    pub iso8583_read_timeout_ms: Option<u64>,
    /// DE 2 in ISO 8583 answers: omit or masked [default: omit]
    #[arg(long, env = "TANDEM_ISO8583_PAN_IN_ANSWERS")]
    pub iso8583_pan_in_answers: Option<String>,
    /// Seconds an ordinary hold stays open without clearing [default: 604800, 7 days]
    #[arg(long, env = "TANDEM_HOLD_EXPIRY_SECS")]
    pub hold_expiry_secs: Option<u64>,
    /// Seconds a lodging, car rental or cruise hold stays open [default: 2678400, 31 days]
    #[arg(long, env = "TANDEM_HOLD_EXPIRY_EXTENDED_SECS")]
    pub hold_expiry_extended_secs: Option<u64>,
    /// Seconds SIGTERM waits for in-flight requests and open streams [default: 10]
    #[arg(long, env = "TANDEM_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// This node's id in its cluster (with --peers)
    #[arg(long, env = "TANDEM_NODE_ID")]
    pub node_id: Option<u64>,
    /// Every member's gRPC address, this node's included: 1=HOST:PORT,2=HOST:PORT,... With
    /// none, a single node [default: none]
    #[arg(long, env = "TANDEM_PEERS")]
    pub peers: Option<String>,
    /// The cluster's PAN hashing key: 64 hex characters in a file of mode 0600, the same on
    /// every node (`tandem keygen --pan-key FILE`); required with --peers
    #[arg(long, env = "TANDEM_PAN_KEY_FILE")]
    pub pan_key_file: Option<PathBuf>,
    /// An injected one-way delay on the links to some peers, each way: 2=20ms,3=20ms. For
    /// measuring a cluster whose members are regions apart on one machine; never in
    /// production [default: none]
    #[arg(long, env = "TANDEM_LINK_DELAY")]
    pub link_delay: Option<String>,
}

/// A cluster member's settings (`--node-id`, `--peers`, `--pan-key-file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub node_id: u64,
    /// Every member's id and gRPC address, this node's included.
    pub peers: std::collections::BTreeMap<u64, String>,
    pub pan_key_file: PathBuf,
    /// The injected one-way delay of the link to each peer that has one (`--link-delay`).
    pub link_delays: std::collections::BTreeMap<u64, std::time::Duration>,
}

/// Reads `--link-delay`: `ID=DELAY,...` with each delay in `ms` or `s` (`20ms`, `1s`), for
/// peers of `peers` other than `this`.
pub fn parse_link_delays(
    text: &str,
    this: u64,
    peers: &std::collections::BTreeMap<u64, String>,
) -> Result<std::collections::BTreeMap<u64, std::time::Duration>, String> {
    let mut delays = std::collections::BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, delay) = part
            .split_once('=')
            .ok_or_else(|| format!("link delay {part:?} is not ID=DELAY (2=20ms)"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("link delay {part:?}: the id must be a peer's id"))?;
        if id == this || !peers.contains_key(&id) {
            return Err(format!(
                "link delay {part:?}: {id} is not one of this node's peers"
            ));
        }
        let delay = delay.trim();
        let (number, unit) = match delay.strip_suffix("ms") {
            Some(ms) => (ms, 1),
            None => (delay.strip_suffix('s').unwrap_or(""), 1_000),
        };
        let ms = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit))
            .filter(|ms| *ms <= 10_000)
            .ok_or_else(|| {
                format!("link delay {part:?}: the delay must be like 20ms or 1s, at most 10s")
            })?;
        if delays
            .insert(id, std::time::Duration::from_millis(ms))
            .is_some()
        {
            return Err(format!("link delay to {id} is given twice"));
        }
    }
    Ok(delays)
}

/// Reads `1=HOST:PORT,2=HOST:PORT,...`.
pub fn parse_peers(text: &str) -> Result<std::collections::BTreeMap<u64, String>, String> {
    let mut peers = std::collections::BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, address) = part
            .split_once('=')
            .ok_or_else(|| format!("peer {part:?} is not ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| format!("peer {part:?}: the id must be a whole number from 1"))?;
        let address = address.trim();
        let port_ok = address.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok {
            return Err(format!("peer {part:?}: the address must be HOST:PORT"));
        }
        if peers.insert(id, address.to_owned()).is_some() {
            return Err(format!("peer {id} is listed twice"));
        }
    }
    if peers.is_empty() {
        return Err("--peers lists no peer".to_owned());
    }
    Ok(peers)
}

impl Settings {
    /// The cluster settings, checked together: all or none.
    fn cluster(&self) -> Result<Option<Cluster>, String> {
        let Some(text) = &self.peers else {
            if self.link_delay.is_some() {
                return Err("--link-delay is for cluster members: give --peers too".to_owned());
            }
            return match (self.node_id, &self.pan_key_file) {
                (None, None) => Ok(None),
                _ => Err(
                    "--node-id and --pan-key-file are for cluster members: give --peers too"
                        .to_owned(),
                ),
            };
        };
        let peers = parse_peers(text)?;
        let node_id = self
            .node_id
            .ok_or("--peers needs --node-id: which of the peers is this node?")?;
        if !peers.contains_key(&node_id) {
            return Err(format!(
                "--peers does not list this node ({node_id}): list every member, this one included"
            ));
        }
        let pan_key_file = self.pan_key_file.clone().ok_or(
            "--peers needs --pan-key-file: every member hashes PANs with the cluster's key (tandem keygen --pan-key FILE writes one)",
        )?;
        let link_delays = match &self.link_delay {
            Some(text) => parse_link_delays(text, node_id, &peers)?,
            None => Default::default(),
        };
        Ok(Some(Cluster {
            node_id,
            peers,
            pan_key_file,
            link_delays,
        }))
    }
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `None` for a single node.
    pub cluster: Option<Cluster>,
    pub data_dir: PathBuf,
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub log_json: bool,
    pub log: String,
    pub request_body_max_bytes: usize,
    pub request_timeout: Duration,
    pub streams_per_connection_max: u32,
    pub rate_limit_per_key: u32,
    /// A resident account idle this long leaves its shard; `None` keeps accounts resident.
    pub actor_idle: Option<Duration>,
    pub in_flight_max: usize,
    pub in_flight_per_account_max: usize,
    pub sweep_every: Duration,
    pub fx_base: String,
    pub checkpoint_cache_bytes: u64,
    pub directory_cache_entries: usize,
    pub checkpoint_every: Duration,
    pub log_writes_in_flight: usize,
    pub log_kept_entries: u64,
    pub shutdown_grace: Duration,
    /// (certificate chain, private key) PEM files, when TLS is on.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub fault_injection: bool,
    pub iso8583_listen: SocketAddr,
    pub iso8583: crate::edge::iso8583::Settings,
    pub policy: tandem_core::Policy,
    /// Deprecated names the settings used, each with its replacement: logged once at start.
    pub deprecated: Vec<String>,
}

macro_rules! layer {
    ($over:expr, $under:expr, $($field:ident),*) => {
        Settings { $($field: $over.$field.or($under.$field)),* }
    };
}

impl Settings {
    /// `self` (flags and environment, as clap read them) over the file at `path`.
    pub fn over_file(self, path: Option<&std::path::Path>) -> Result<Settings, String> {
        let file = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
                toml::from_str::<Settings>(&text)
                    .map_err(|e| format!("config file {}: {e}", path.display()))?
            }
            None => Settings::default(),
        };
        Ok(layer!(
            self,
            file,
            data_dir,
            grpc_listen,
            http_listen,
            log_format,
            log,
            request_body_max_bytes,
            request_timeout_ms,
            streams_per_connection_max,
            rate_limit_per_key,
            actor_idle_secs,
            in_flight_max,
            in_flight_per_account_max,
            sweep_every_secs,
            fx_base,
            checkpoint_cache_bytes,
            sled_cache_bytes,
            directory_cache_entries,
            checkpoint_ms,
            log_kept_entries,
            log_writes_in_flight,
            tls_cert,
            tls_key,
            fault_injection,
            iso8583_listen,
            iso8583_bitmap,
            iso8583_deadline_ms,
            iso8583_frame_max_bytes,
            iso8583_idle_timeout_secs,
            iso8583_read_timeout_ms,
            iso8583_pan_in_answers,
            hold_expiry_secs,
            hold_expiry_extended_secs,
            shutdown_grace_secs,
            node_id,
            peers,
            pan_key_file,
            link_delay
        ))
    }

    pub fn resolve(self) -> Result<Config, String> {
        let cluster = self.cluster()?;
        let log_json = match self.log_format.as_deref().unwrap_or("text") {
            "text" => false,
            "json" => true,
            other => return Err(format!("log_format must be text or json, got {other:?}")),
        };
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err("TLS needs both tls_cert and tls_key".to_owned()),
        };
        let request_timeout = self
            .request_timeout_ms
            .map_or(limits::REQUEST_TIMEOUT_DEFAULT, Duration::from_millis);
        let defaults = crate::edge::iso8583::Settings::default();
        let bitmap = match self.iso8583_bitmap.as_deref().unwrap_or("binary") {
            "binary" => tandem_iso8583::BitmapEncoding::Binary,
            "hex" => tandem_iso8583::BitmapEncoding::Hex,
            other => {
                return Err(format!(
                    "iso8583_bitmap must be binary or hex, got {other:?}"
                ));
            }
        };
        let pan_in_answers = match self.iso8583_pan_in_answers.as_deref().unwrap_or("omit") {
            "omit" => crate::edge::iso8583::PanInAnswers::Omit,
            "masked" => crate::edge::iso8583::PanInAnswers::Masked,
            other => {
                return Err(format!(
                    "iso8583_pan_in_answers must be omit or masked, got {other:?}"
                ));
            }
        };
        let frame_max = self.iso8583_frame_max_bytes.unwrap_or(defaults.frame_max);
        if !limits::ISO8583_FRAME_MAX_RANGE.contains(&frame_max) {
            return Err(format!(
                "iso8583_frame_max_bytes must be between {} and {}",
                limits::ISO8583_FRAME_MAX_RANGE.start(),
                limits::ISO8583_FRAME_MAX_RANGE.end()
            ));
        }
        let read_timeout = self
            .iso8583_read_timeout_ms
            .map_or(defaults.read_timeout, Duration::from_millis);
        let iso8583 = crate::edge::iso8583::Settings {
            bitmap,
            deadline: self
                .iso8583_deadline_ms
                .map_or(defaults.deadline, Duration::from_millis),
            advice_deadline: request_timeout,
            pan_in_answers,
            frame_max,
            idle_timeout: self
                .iso8583_idle_timeout_secs
                .map_or(defaults.idle_timeout, Duration::from_secs),
            read_timeout,
            in_flight_per_link: defaults.in_flight_per_link,
        };
        let seconds_ms = |secs: Option<u64>, default_ms: i64| -> Result<i64, String> {
            match secs {
                None => Ok(default_ms),
                Some(0) => Err("hold expiry windows must be at least one second".to_owned()),
                Some(secs) => i64::try_from(secs)
                    .ok()
                    .and_then(|s| s.checked_mul(1_000))
                    .ok_or_else(|| "hold expiry window is too long".to_owned()),
            }
        };
        let system = tandem_actors::SystemConfig::default();
        let default_policy = tandem_core::Policy::default();
        let policy = tandem_core::Policy {
            hold_expiry_ms: seconds_ms(self.hold_expiry_secs, default_policy.hold_expiry_ms)?,
            hold_expiry_extended_ms: seconds_ms(
                self.hold_expiry_extended_secs,
                default_policy.hold_expiry_extended_ms,
            )?,
            ..default_policy
        };
        Ok(Config {
            cluster,
            iso8583_listen: self
                .iso8583_listen
                .unwrap_or_else(|| "127.0.0.1:8583".parse().expect("literal address")),
            iso8583,
            policy,
            tls,
            fault_injection: self.fault_injection.unwrap_or(false),
            data_dir: self.data_dir.unwrap_or_else(|| PathBuf::from("data")),
            grpc_listen: self
                .grpc_listen
                .unwrap_or_else(|| "127.0.0.1:50051".parse().expect("literal address")),
            http_listen: self
                .http_listen
                .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("literal address")),
            log_json,
            log: self
                .log
                .unwrap_or_else(|| "info,openraft=warn,chunked_wal=warn,raft_log=warn".to_owned()),
            request_body_max_bytes: self
                .request_body_max_bytes
                .unwrap_or(limits::REQUEST_BODY_MAX_BYTES_DEFAULT),
            request_timeout,
            streams_per_connection_max: self
                .streams_per_connection_max
                .unwrap_or(limits::STREAMS_PER_CONNECTION_MAX_DEFAULT),
            rate_limit_per_key: self.rate_limit_per_key.unwrap_or(0),
            actor_idle: self
                .actor_idle_secs
                .map_or(system.idle_timeout, |secs| Some(Duration::from_secs(secs))),
            in_flight_max: self.in_flight_max.unwrap_or(system.in_flight_max),
            in_flight_per_account_max: self
                .in_flight_per_account_max
                .unwrap_or(system.in_flight_per_account_max),
            sweep_every: self
                .sweep_every_secs
                .map_or(system.sweep_every, Duration::from_secs)
                .max(Duration::from_secs(1)),
            fx_base: self.fx_base.unwrap_or_else(|| "EUR".to_owned()),
            checkpoint_cache_bytes: self
                .checkpoint_cache_bytes
                .or(self.sled_cache_bytes)
                .unwrap_or(limits::CHECKPOINT_CACHE_BYTES_DEFAULT),
            deprecated: self
                .sled_cache_bytes
                .map(|_| {
                    "sled_cache_bytes (--sled-cache-bytes, TANDEM_SLED_CACHE_BYTES) is deprecated: \
                     use checkpoint_cache_bytes (--checkpoint-cache-bytes, \
                     TANDEM_CHECKPOINT_CACHE_BYTES)"
                        .to_owned()
                })
                .into_iter()
                .collect(),
            directory_cache_entries: self
                .directory_cache_entries
                .unwrap_or(tandem_actors::DIRECTORY_CACHE_ENTRIES_DEFAULT)
                .max(1),
            checkpoint_every: self
                .checkpoint_ms
                .map_or(limits::CHECKPOINT_EVERY_DEFAULT, Duration::from_millis)
                .max(limits::CHECKPOINT_EVERY_MIN),
            log_writes_in_flight: self.log_writes_in_flight.unwrap_or(1).max(1),
            log_kept_entries: self
                .log_kept_entries
                .unwrap_or(limits::LOG_KEPT_ENTRIES_DEFAULT),
            shutdown_grace: self
                .shutdown_grace_secs
                .map_or(limits::SHUTDOWN_GRACE_DEFAULT, Duration::from_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_environment_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tandem.toml");
        std::fs::write(
            &path,
            "grpc_listen = \"127.0.0.1:6000\"\nhttp_listen = \"127.0.0.1:6001\"\nlog_format = \"json\"\ncheckpoint_ms = 250\n",
        )
        .expect("write");
        let from_flags = Settings {
            http_listen: Some("127.0.0.1:7001".parse().expect("addr")),
            ..Settings::default()
        };
        let config = from_flags
            .over_file(Some(&path))
            .expect("layered")
            .resolve()
            .expect("resolved");
        assert_eq!(config.grpc_listen.port(), 6000, "from the file");
        assert_eq!(config.http_listen.port(), 7001, "the flag wins");
        assert!(config.log_json);
        assert_eq!(config.data_dir, PathBuf::from("data"), "the default");
        assert_eq!(config.checkpoint_every, Duration::from_millis(250));
        assert_eq!(config.log_writes_in_flight, 1, "the default");
    }

    #[test]
    fn the_old_cache_name_still_works_is_reported_and_loses_to_the_new_one() {
        let old = Settings {
            sled_cache_bytes: Some(1_234),
            ..Settings::default()
        };
        let config = old.clone().resolve().expect("resolved");
        assert_eq!(
            config.checkpoint_cache_bytes, 1_234,
            "the alias still sets it"
        );
        assert_eq!(config.deprecated.len(), 1);
        assert!(config.deprecated[0].contains("checkpoint_cache_bytes"));
        let both = Settings {
            checkpoint_cache_bytes: Some(5_678),
            ..old
        };
        assert_eq!(
            both.resolve().expect("resolved").checkpoint_cache_bytes,
            5_678
        );
        let new = Settings::default().resolve().expect("resolved");
        assert!(new.deprecated.is_empty(), "nothing to report");
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tandem.toml");
        std::fs::write(&path, "grpc_port = 1\n").expect("write");
        let error = Settings::default().over_file(Some(&path)).unwrap_err();
        assert!(error.contains("grpc_port"), "{error}");
    }

    #[test]
    fn link_delays_are_read_for_peers_only() {
        let peers = parse_peers("1=127.0.0.1:1,2=127.0.0.1:2,3=127.0.0.1:3").expect("peers");
        let delays = parse_link_delays("2=20ms, 3=1s", 1, &peers).expect("read");
        assert_eq!(delays[&2], std::time::Duration::from_millis(20));
        assert_eq!(delays[&3], std::time::Duration::from_secs(1));
        for (text, why) in [
            ("1=20ms", "this node"),
            ("4=20ms", "not a peer"),
            ("2=20", "no unit"),
            ("2=fast", "not a number"),
            ("2=11s", "over 10 s"),
            ("2=20ms,2=30ms", "twice"),
            ("2", "no delay"),
        ] {
            assert!(parse_link_delays(text, 1, &peers).is_err(), "{text}: {why}");
        }
        let single = Settings {
            link_delay: Some("2=20ms".into()),
            ..Settings::default()
        };
        let error = single.resolve().unwrap_err();
        assert!(error.contains("--link-delay"), "{error}");
    }
}
