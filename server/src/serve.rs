//! `tandem serve`: opens the data directory (refusing if another process has it), recovers,
//! and serves gRPC and HTTP on one hyper/tower stack until SIGTERM, which stops accepting,
//! drains in-flight requests and stops.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tandem_actors::{AccountSystem, SystemConfig};
use tandem_proto::v1::accounts_server::AccountsServer;
use tandem_proto::v1::authorizations_server::AuthorizationsServer;
use tandem_proto::v1::balances_server::BalancesServer;
use tandem_storage::{CheckpointSettings, Engine, EngineConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::app::App;
use crate::config::Config;
use crate::keys::{KeyRole, KeyStore};

/// Holds the data directory's lock for as long as the server runs.
pub struct DirectoryLock(#[allow(dead_code)] std::fs::File);

pub fn lock_data_dir(dir: &std::path::Path) -> Result<DirectoryLock, String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
    let path = dir.join("tandem.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(DirectoryLock(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "data directory {} is in use by another tandem process; stop it first or choose another --data-dir",
            dir.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// The first start with no key configured (none committed, no `TANDEM_ADMIN_TOKEN`): an
/// admin key, committed, and its token written where only the owner can read it. Never an
/// open server.
async fn bootstrap_admin_key(
    keys: &KeyStore,
    system: &AccountSystem,
    config: &Config,
) -> Result<(), String> {
    if admin_token_from_env().is_some() || keys.any_committed() {
        return Ok(());
    }
    let (setting, id, token) =
        KeyStore::new_key(KeyRole::Admin, None, None, "first start").map_err(|e| e.to_string())?;
    system
        .put_settings(vec![setting])
        .await
        .map_err(|e| format!("cannot commit the first admin key: {e}"))?;
    let path = config.data_dir.join("admin.token");
    crate::keys::write_private(&path, format!("{token}\n").as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!(
        "tandem: no API key was configured, so an admin key ({id}) was generated into {} (mode 0600)",
        path.display()
    );
    Ok(())
}

/// `TANDEM_ADMIN_TOKEN`, when set and not empty.
fn admin_token_from_env() -> Option<String> {
    std::env::var("TANDEM_ADMIN_TOKEN")
        .ok()
        .filter(|token| !token.is_empty())
}

/// Commits what a data directory from before API keys and FX rates were log entries holds in
/// `api-keys.json` and `fx-rates.json`, once: each file is renamed `*.imported` after its
/// contents are committed, so it is no longer read (a crash between the two imports the same
/// values again, which changes nothing).
async fn import_legacy_files(system: &AccountSystem, data_dir: &Path) -> Result<(), String> {
    let imported = |name: &str| {
        let path = data_dir.join(name);
        let mut renamed = path.clone().into_os_string();
        renamed.push(".imported");
        std::fs::rename(&path, &renamed)
            .map_err(|e| format!("cannot rename {} after importing it: {e}", path.display()))
    };
    if let Some(keys) = crate::keys::legacy_keys(data_dir).map_err(|e| e.to_string())? {
        let count = keys.len();
        system
            .put_settings(keys)
            .await
            .map_err(|e| format!("cannot import {}: {e}", crate::keys::LEGACY_KEY_FILE))?;
        imported(crate::keys::LEGACY_KEY_FILE)?;
        tracing::info!(count, "API keys imported into the log");
    }
    let rates_file = crate::ops::admin::LEGACY_RATES_FILE;
    if let Some(table) = crate::ops::admin::SavedRates::load(&data_dir.join(rates_file))? {
        system
            .set_rates(&table)
            .await
            .map_err(|e| format!("cannot import {rates_file}: {e}"))?;
        imported(rates_file)?;
        tracing::info!("FX rates imported into the log");
    }
    Ok(())
}

/// A cluster member commits only once it leads, so it cannot import an older data directory's
/// key and rate files at start: it says how to.
fn refuse_unimported_files(data_dir: &Path) -> Result<(), String> {
    for name in [
        crate::keys::LEGACY_KEY_FILE,
        crate::ops::admin::LEGACY_RATES_FILE,
    ] {
        if data_dir.join(name).exists() {
            return Err(format!(
                "{} holds {name} from an older version: start it once as a single node (without \
                 --peers) to import it into the log, then as a cluster member",
                data_dir.display()
            ));
        }
    }
    Ok(())
}

/// The rates decisions use until any are committed: the configured base alone.
fn configured_rates(config: &Config) -> Result<tandem_core::RateTable, String> {
    let base =
        tandem_core::Currency::from_alpha(&config.fx_base).map_err(|e| format!("fx_base: {e}"))?;
    Ok(tandem_core::RateTable::only(base))
}

async fn healthz() -> impl IntoResponse {
    "ok\n"
}

async fn readyz(State(app): State<Arc<App>>) -> impl IntoResponse {
    if !app.ready.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "recovering\n")
    } else if app.leaderless() {
        (StatusCode::SERVICE_UNAVAILABLE, "no leader\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

async fn render_metrics(
    State((app, handle)): State<(Arc<App>, PrometheusHandle)>,
) -> impl IntoResponse {
    if let Ok(system) = app.system() {
        metrics::gauge!("tandem_resident_accounts").set(system.resident_accounts() as f64);
        metrics::gauge!("tandem_accounts_at_rest").set(system.accounts_at_rest() as f64);
        metrics::gauge!("tandem_directory_cached_entries").set(system.directory_cached() as f64);
        metrics::gauge!("tandem_in_flight_decisions").set(system.in_flight() as f64);
        let stats = system.log_stats();
        metrics::gauge!("tandem_log_batches").set(stats.batches.load(Ordering::Relaxed) as f64);
        metrics::gauge!("tandem_log_records").set(stats.records.load(Ordering::Relaxed) as f64);
        let cluster = system.cluster_status();
        metrics::gauge!("tandem_raft_commit_index").set(cluster.commit_index as f64);
        metrics::gauge!("tandem_raft_applied_index").set(cluster.applied_index as f64);
        metrics::gauge!("tandem_raft_purged_index").set(cluster.purged_index as f64);
        metrics::gauge!("tandem_raft_snapshot_index").set(cluster.snapshot_index as f64);
        for member in &cluster.members {
            let node = member.node_id.to_string();
            if let Some(lag) = member.lag_entries {
                metrics::gauge!("tandem_follower_lag_entries", "node_id" => node.clone())
                    .set(lag as f64);
            }
            if let Some(lag) = member.lag_ms {
                metrics::gauge!("tandem_follower_lag_ms", "node_id" => node).set(lag as f64);
            }
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        handle.render(),
    )
}

/// Loads the certificate chain and key for TLS on both listeners (ring provider; HTTP/2 and
/// HTTP/1.1 by ALPN).
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, String> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(std::sync::Arc::new(config)))
}

/// Serves `router` on `listener` (through `tls` when set) until `stop` fires, then lets open
/// connections finish their requests for up to `grace`.
async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    streams_max: u32,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
    grace: std::time::Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(streams_max);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(listener = name, %error, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(router.clone());
                match &tls {
                    None => {
                        let connection = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .into_owned();
                        let connection = graceful.watch(connection);
                        tokio::spawn(async move {
                            let _ = connection.await;
                        });
                    }
                    Some(acceptor) => {
                        // The handshake runs in the connection's own task, bounded, so a slow
                        // or hostile client cannot hold up the accept loop.
                        let acceptor = acceptor.clone();
                        let builder = builder.clone();
                        let watcher = graceful.watcher();
                        tokio::spawn(async move {
                            let handshake = tokio::time::timeout(
                                std::time::Duration::from_secs(10),
                                acceptor.accept(stream),
                            );
                            let Ok(Ok(stream)) = handshake.await else {
                                return;
                            };
                            let connection = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .into_owned();
                            let _ = watcher.watch(connection).await;
                        });
                    }
                }
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            "connections still open after the grace period; closing them"
        );
    }
}

/// Why `tandem serve` could not start or had to stop, by the phase that failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data directory could not be created, opened or locked (another process has it).
    #[error("data directory: {0}")]
    DataDir(String),
    /// A setting, a stored file of settings (keys, FX rates) or the TLS material is wrong.
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot listen for {protocol} on {address}: {source}")]
    Listen {
        protocol: &'static str,
        address: SocketAddr,
        source: std::io::Error,
    },
    /// The metrics recorder or gRPC reflection could not be set up.
    #[error("{0}")]
    Observability(String),
    /// The log, the state or the account system could not be opened or recovered.
    #[error("recovery: {0}")]
    Recovery(String),
}

async fn listen(protocol: &'static str, address: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Listen {
            protocol,
            address,
            source,
        })
}

/// Refuses to start a member whose data directory is empty (no log) when a peer's cluster
/// already counts it as a voter: it would have forgotten its votes and the entries it
/// acknowledged, and could elect a leader that lacks committed writes. A peer that cannot
/// answer (down, still opening) counts as not knowing; a cluster being formed for the first
/// time has no membership anywhere, so its members start.
async fn refuse_amnesia(
    cluster: &crate::config::Cluster,
    data_dir: &std::path::Path,
    token: &str,
) -> Result<(), String> {
    let network = tandem_replication::GrpcNetwork::new(cluster.node_id, token)?;
    for (peer, address) in &cluster.peers {
        if *peer == cluster.node_id {
            continue;
        }
        match network.members_at(*peer, address).await {
            Ok(Some(voters)) if voters.contains(&cluster.node_id) => {
                return Err(format!(
                    "node {this} is a voter of the cluster node {peer} ({address}) belongs to \
                     (voters {voters:?}), but its data directory {dir} holds no log: started like \
                     this it would vote with amnesia and could lose acknowledged writes. Start it \
                     on its own data directory; if that is lost, keep it stopped until the cluster \
                     has replaced it (docs/replication.md, \"A member's disk is lost\")",
                    this = cluster.node_id,
                    dir = data_dir.display(),
                ));
            }
            Ok(_) => {}
            Err(why) => tracing::debug!(peer, %why, "peer could not say whether we are a member"),
        }
    }
    Ok(())
}

pub async fn run(config: Config) -> Result<(), ServeError> {
    // A cluster member: the cluster's PAN key, and the peer protocol's token derived from it;
    // read before anything is written, so a bad key leaves the data directory untouched.
    let member = match &config.cluster {
        Some(cluster) => {
            let key = tandem_storage::PanKey::from_file(&cluster.pan_key_file)
                .map_err(ServeError::Config)?;
            refuse_unimported_files(&config.data_dir).map_err(ServeError::Config)?;
            let token = tandem_replication::peer_token(&key);
            if !config.data_dir.join("log").exists() {
                refuse_amnesia(cluster, &config.data_dir, &token)
                    .await
                    .map_err(ServeError::Config)?;
            }
            Some((cluster.node_id, key, token))
        }
        None => None,
    };
    let _lock = lock_data_dir(&config.data_dir).map_err(ServeError::DataDir)?;
    for note in &config.deprecated {
        tracing::warn!("{note}");
    }
    // Histograms as Prometheus histograms (buckets), so dashboards can aggregate quantiles
    // across instances with histogram_quantile.
    let seconds = [
        0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
    ];
    let records = [
        1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 4096.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets(&seconds)
        .and_then(|b| {
            b.set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full("tandem_commit_batch_records".into()),
                &records,
            )
        })
        .map_err(|e| ServeError::Observability(format!("metrics: {e}")))?
        .install_recorder()
        .map_err(|e| ServeError::Observability(format!("metrics: {e}")))?;
    let keys = KeyStore::new(config.rate_limit_per_key);
    if let Some(token) = admin_token_from_env() {
        keys.add_ephemeral_admin(&token);
    }
    let rates = configured_rates(&config).map_err(ServeError::Config)?;
    let peers = config.cluster.as_ref().map(|cluster| cluster.peers.clone());
    let app = Arc::new(App::new(keys, config.data_dir.clone(), peers));
    let raft_service = member
        .as_ref()
        .map(|(_, _, token)| tandem_replication::RaftService::pending(token.clone()));
    let forward_service = member
        .as_ref()
        .map(|(_, _, token)| tandem_replication::ForwardService::pending(token.clone()));

    // Listen first, so health and readiness answer while recovery runs.
    let grpc_listener = listen("gRPC", config.grpc_listen).await?;
    let http_listener = listen("HTTP", config.http_listen).await?;
    let iso_listener = listen("ISO 8583", config.iso8583_listen).await?;
    let bound = |listener: &TcpListener, protocol, address| {
        listener.local_addr().map_err(|source| ServeError::Listen {
            protocol,
            address,
            source,
        })
    };
    let iso_addr: SocketAddr = bound(&iso_listener, "ISO 8583", config.iso8583_listen)?;
    let grpc_addr: SocketAddr = bound(&grpc_listener, "gRPC", config.grpc_listen)?;
    let http_addr: SocketAddr = bound(&http_listener, "HTTP", config.http_listen)?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tandem_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Observability(format!("reflection: {e}")))?;
    let service = crate::edge::grpc::Service { app: app.clone() };
    let limit = config.request_body_max_bytes;
    let grpc_router = tonic::service::Routes::new(
        AuthorizationsServer::new(service.clone()).max_decoding_message_size(limit),
    )
    .add_service(AccountsServer::new(service.clone()).max_decoding_message_size(limit))
    .add_service(BalancesServer::new(service).max_decoding_message_size(limit))
    .add_service(health_service)
    .add_service(reflection)
    .into_axum_router();
    // The peer protocol checks its own token, so it is outside the API-key, time-limit and
    // request-metric layers (a snapshot may stream longer than any client request may take).
    let raft_routes = |router: Router| match (&raft_service, &forward_service) {
        (Some(raft), Some(forward)) => {
            use tower::ServiceExt;
            let body = |request: axum::extract::Request| request.map(tonic::body::Body::new);
            router
                .route_service(
                    "/tandem.raft.v1.Raft/{*rest}",
                    raft.clone().into_server().map_request(body),
                )
                .route_service(
                    "/tandem.raft.v1.Forward/{*rest}",
                    forward.clone().into_server().map_request(body),
                )
        }
        _ => router,
    };
    let http_router = crate::edge::http::router(app.clone())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz).with_state(app.clone()))
        .route(
            "/metrics",
            get(render_metrics).with_state((app.clone(), handle.clone())),
        );
    // One set of layers for both protocols.
    let layered = |router: Router| {
        router
            .layer(axum::middleware::from_fn_with_state(
                app.clone(),
                crate::observe::authenticate,
            ))
            .layer(axum::middleware::from_fn_with_state(
                config.request_timeout,
                crate::observe::time_limit,
            ))
            .layer(axum::middleware::from_fn(crate::observe::measure))
    };
    // Body limits: per message for gRPC (a stream's total is unbounded by design), per body
    // for HTTP, where the extractor turns an overrun into a problem+json 413.
    let http_router = http_router.layer(axum::extract::DefaultBodyLimit::max(limit));
    let tls = match &config.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key).map_err(ServeError::Config)?),
        None => None,
    };
    let (stop_sender, stop) = watch::channel(false);
    let grpc_task = tokio::spawn(serve(
        "grpc",
        grpc_listener,
        raft_routes(layered(grpc_router)),
        config.streams_per_connection_max,
        tls.clone(),
        stop.clone(),
        config.shutdown_grace,
    ));
    let http_task = tokio::spawn(serve(
        "http",
        http_listener,
        layered(http_router),
        config.streams_per_connection_max,
        tls,
        stop.clone(),
        config.shutdown_grace,
    ));
    let iso_task = tokio::spawn(crate::edge::iso8583::serve(
        iso_listener,
        Arc::new(crate::edge::iso8583::Gateway::new(
            app.clone(),
            config.iso8583.clone(),
        )),
        stop,
        config.shutdown_grace,
    ));

    let started = std::time::Instant::now();
    let mut engine_config = EngineConfig::new(&config.data_dir);
    if config.fault_injection {
        tracing::warn!("fault injection is enabled: POST /v1/admin/faults can fail log writes");
        app.enable_fault_injection(engine_config.write_faults.clone());
    }
    engine_config.checkpoint = CheckpointSettings {
        cache_bytes: config.checkpoint_cache_bytes,
        directory_cache_entries: config.directory_cache_entries,
    };
    engine_config.checkpoint_every = config.checkpoint_every;
    engine_config.writes_in_flight_max = config.log_writes_in_flight;
    engine_config.log_kept_after_checkpoint = config.log_kept_entries;
    let mut peers_network = None;
    let opened = match member {
        None => Engine::open(engine_config).await,
        Some((node_id, key, token)) => {
            engine_config.node_id = node_id;
            engine_config.pan_key = Some(key);
            let link_delays = config
                .cluster
                .as_ref()
                .map(|cluster| cluster.link_delays.clone())
                .unwrap_or_default();
            if !link_delays.is_empty() {
                tracing::warn!(
                    ?link_delays,
                    "links to peers carry an injected delay (--link-delay): for measurement only"
                );
            }
            let network = tandem_replication::GrpcNetwork::new(node_id, &token)
                .map_err(ServeError::Config)?
                .with_link_delays(link_delays);
            app.forward_through(network.clone());
            peers_network = Some(network.clone());
            Engine::open_member(engine_config, network).await
        }
    };
    let engine = opened.map_err(|e| {
        ServeError::Recovery(format!(
            "cannot open the data directory {}: {e}",
            config.data_dir.display()
        ))
    })?;
    if let Some(service) = &raft_service {
        service.attach(engine.raft().clone());
    }
    // A member whose leader falls silent calls the election itself once its peers agree it
    // should (`tandem_replication::prompt`); it ends with the Raft node.
    let _prompt_elections = peers_network.map(|network| {
        let lease = std::time::Duration::from_millis(tandem_storage::engine::ELECTION_TIMEOUT_MS.1);
        tandem_replication::prompt::spawn(engine.raft().clone(), network, lease)
    });
    let system_config = SystemConfig {
        in_flight_per_account_max: config.in_flight_per_account_max,
        in_flight_max: config.in_flight_max,
        idle_timeout: config.actor_idle,
        sweep_every: config.sweep_every,
        policy: config.policy.clone(),
        ..SystemConfig::default()
    };
    let system = AccountSystem::start(engine, system_config, rates)
        .await
        .map_err(|e| ServeError::Recovery(format!("cannot start the account system: {e}")))?;
    app.keys.attach(&system);
    if config.cluster.is_none() {
        import_legacy_files(&system, &config.data_dir)
            .await
            .map_err(ServeError::Config)?;
        bootstrap_admin_key(&app.keys, &system, &config)
            .await
            .map_err(ServeError::Config)?;
    }
    app.recovered(system.clone());
    if let Some(service) = &forward_service {
        service.attach(Arc::new(crate::ops::forward::Leader(app.clone())));
    }
    health_reporter
        .set_serving::<AuthorizationsServer<crate::edge::grpc::Service>>()
        .await;
    health_reporter
        .set_serving::<AccountsServer<crate::edge::grpc::Service>>()
        .await;
    health_reporter
        .set_serving::<BalancesServer<crate::edge::grpc::Service>>()
        .await;
    let leaderless_health = config
        .cluster
        .is_some()
        .then(|| tokio::spawn(follow_leaderless(app.clone(), health_reporter.clone())));
    tracing::info!(
        grpc = %grpc_addr,
        http = %http_addr,
        iso8583 = %iso_addr,
        data_dir = %config.data_dir.display(),
        recovery_ms = started.elapsed().as_millis() as u64,
        "tandem ready"
    );
    // SIGTERM and SIGINT are ours before the node says it is ready: a supervisor that stops
    // it at once gets a clean shutdown, not the signal's default (an unclean death).
    let shutdown = shutdown_signal();
    // Tests and scripts read this line to find the ports.
    println!("tandem ready: grpc={grpc_addr} http={http_addr} iso8583={iso_addr}");

    shutdown.await;
    tracing::info!("shutting down: draining in-flight requests");
    app.ready.store(false, Ordering::Release);
    if let Some(task) = leaderless_health {
        task.abort();
    }
    health_reporter
        .set_not_serving::<AuthorizationsServer<crate::edge::grpc::Service>>()
        .await;
    let _ = stop_sender.send(true);
    let _ = grpc_task.await;
    let _ = http_task.await;
    let _ = iso_task.await;
    system.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// Keeps gRPC health in step with `/readyz` on a cluster member: the write services are
/// not serving while the node has known no leader past an election (`App::leaderless`).
async fn follow_leaderless(app: Arc<App>, health: tonic_health::server::HealthReporter) {
    let mut was = false;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        tick.tick().await;
        let now = app.leaderless();
        if now == was {
            continue;
        }
        was = now;
        let status = if now {
            tracing::warn!("no leader known past an election: not ready until one is");
            tonic_health::ServingStatus::NotServing
        } else {
            tracing::info!("a leader is known again: ready");
            tonic_health::ServingStatus::Serving
        };
        for service in [
            <AuthorizationsServer<crate::edge::grpc::Service> as tonic::server::NamedService>::NAME,
            <AccountsServer<crate::edge::grpc::Service> as tonic::server::NamedService>::NAME,
        ] {
            health.set_service_status(service, status).await;
        }
    }
}

/// Resolves at SIGTERM or SIGINT; both are handled from the call on, not from the first poll.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        let received = |listener: std::io::Result<tokio::signal::unix::Signal>| async move {
            match listener {
                Ok(mut listener) => {
                    listener.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = received(terminate) => {}
            _ = received(interrupt) => {}
        }
    }
}
