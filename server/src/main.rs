//! `tandem`: the Tandem server.
//!
//! - `tandem serve` runs a node on its embedded default (single voter, `./data`).
//! - `tandem backup --to DIR` has a running node write a consistent copy into DIR.
//! - `tandem restore --from DIR --data-dir NEW` makes a data directory from a backup.
//! - `tandem keygen --pan-key FILE` writes a cluster's PAN hashing key.
//! - `tandem cluster init|status --target URL --token T` forms a cluster or prints its status.

/// glibc malloc showed up as the largest user-space cost under load (many small
/// allocations across threads); mimalloc is made for that pattern.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use tandem_server::config::Settings;

#[derive(Parser)]
#[command(
    name = "tandem",
    version,
    about = "Tandem: real-time card authorization for shared accounts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once at start; the size of the `serve` variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run a node: gRPC, HTTP/JSON with live balance streams, health and metrics.
    ///
    /// Options come from the TOML file given with --config, then TANDEM_* environment
    /// variables, then flags (later wins). TANDEM_ADMIN_TOKEN adds an admin API key; with no
    /// key configured, one is generated into <data-dir>/admin.token.
    Serve {
        /// A TOML file with any of the options below (names with `_`, e.g. grpc_listen).
        #[arg(long, env = "TANDEM_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Settings,
    },
    /// Ask a running node to write a consistent backup into a new directory on its host.
    Backup {
        /// The backup directory (absolute; must not exist or be empty).
        #[arg(long)]
        to: PathBuf,
        /// The node's HTTP address.
        #[arg(long, default_value = "127.0.0.1:8080", env = "TANDEM_HTTP_LISTEN")]
        server: String,
        /// An admin API key.
        #[arg(long, env = "TANDEM_TOKEN", hide_env_values = true)]
        token: String,
    },
    /// Build a data directory from a backup (the node must not be running on it).
    Restore {
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Write a new cluster PAN hashing key (64 hex characters, mode 0600) to a file; with
    /// --data-dir, write that data directory's own key instead (a single node becoming node 1).
    Keygen {
        /// The key file to write (must not exist).
        #[arg(long)]
        pan_key: PathBuf,
        /// A single node's data directory whose key the cluster keeps.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Form a cluster, or read its status. Exit codes: 0 done; 1 the node refused or failed
    /// (its answer is printed); 2 wrong usage; 3 the node could not be reached.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Form the cluster from the target's --peers; again, against any member, is a no-op.
    Init {
        #[command(flatten)]
        target: Target,
    },
    /// Print the cluster as the target sees it, as JSON.
    Status {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(clap::Args)]
struct Target {
    /// The node's HTTP address (http://HOST:PORT or HOST:PORT).
    #[arg(long, default_value = "127.0.0.1:8080")]
    target: String,
    /// An admin API key.
    #[arg(long, env = "TANDEM_TOKEN", hide_env_values = true)]
    token: String,
}

/// Why a command failed: the node's refusal, or no node to ask.
enum Failure {
    Refused(String),
    Unreachable(String),
}

fn init_tracing(json: bool, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: a redirected log gets no escape sequences.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The log store hands a fresh buffer of its largest batch's size to every append; with
/// transparent huge pages each one is a 2 MiB page the kernel zeroes (15% of the CPU under
/// load, profiled). Without them, only the pages written are touched.
fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and only sets a flag on this
    // process; it cannot affect memory safety.
    let result = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if result != 0 {
        tracing::debug!("could not disable transparent huge pages");
    }
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tandem: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), Failure> = match cli.command {
        Command::Serve { config, settings } => settings
            .over_file(config.as_deref())
            .and_then(Settings::resolve)
            .and_then(|config| {
                init_tracing(config.log_json, &config.log);
                runtime
                    .block_on(tandem_server::serve::run(config))
                    .map_err(|e| e.to_string())
            })
            .map_err(Failure::Refused),
        Command::Backup { to, server, token } => runtime.block_on(backup(&server, &token, &to)),
        Command::Restore { from, data_dir } => runtime
            .block_on(tandem_server::backup::restore(&from, &data_dir))
            .map(|index| {
                println!("restored {} up to log index {index}", data_dir.display());
            })
            .map_err(Failure::Refused),
        Command::Keygen { pan_key, data_dir } => keygen(&pan_key, data_dir.as_deref()),
        Command::Cluster { action } => runtime.block_on(cluster(action)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(message)) => {
            eprintln!("tandem: {message}");
            ExitCode::FAILURE
        }
        Err(Failure::Unreachable(message)) => {
            eprintln!("tandem: {message}");
            ExitCode::from(3)
        }
    }
}

/// `tandem keygen`: a new cluster key, or a single node's own, to a new file.
fn keygen(path: &std::path::Path, data_dir: Option<&std::path::Path>) -> Result<(), Failure> {
    let key = match data_dir {
        Some(dir) => tandem_storage::PanKey::of_data_dir(dir)
            .map_err(|e| Failure::Refused(format!("{}: {e}", dir.display())))?
            .ok_or_else(|| {
                Failure::Refused(format!("{} holds no PAN hashing key", dir.display()))
            })?,
        None => tandem_storage::PanKey::generate()
            .map_err(|e| Failure::Refused(format!("generating a key: {e}")))?,
    };
    key.write_file(path)
        .map_err(|e| Failure::Refused(format!("{}: {e}", path.display())))?;
    println!(
        "wrote a PAN hashing key (fingerprint {}) to {}",
        key.fingerprint(),
        path.display()
    );
    Ok(())
}

/// `tandem cluster init|status`.
async fn cluster(action: ClusterAction) -> Result<(), Failure> {
    let (method, path, target) = match &action {
        ClusterAction::Init { target } => ("POST", "/v1/cluster/init", target),
        ClusterAction::Status { target } => ("GET", "/v1/cluster", target),
    };
    let (status, text) = admin_call(method, &target.target, path, &target.token, None).await?;
    if status.is_success() {
        println!("{text}");
        Ok(())
    } else {
        Err(Failure::Refused(format!(
            "{path} refused ({status}): {text}"
        )))
    }
}

/// An admin call to a node's HTTP API: its status and body.
async fn admin_call(
    method: &str,
    server: &str,
    path: &str,
    token: &str,
    body: Option<String>,
) -> Result<(hyper::StatusCode, String), Failure> {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    let base = server.trim_end_matches('/');
    let url = if base.contains("://") {
        format!("{base}{path}")
    } else {
        format!("http://{base}{path}")
    };
    let request = hyper::Request::builder()
        .method(method)
        .uri(&url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(hyper::body::Bytes::from(
            body.unwrap_or_default(),
        )))
        .map_err(|e| Failure::Refused(format!("{url}: {e}")))?;
    let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let response = client
        .request(request)
        .await
        .map_err(|e| Failure::Unreachable(format!("cannot reach {server}: {e}")))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| Failure::Unreachable(format!("{server}: {e}")))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

async fn backup(server: &str, token: &str, to: &std::path::Path) -> Result<(), Failure> {
    let to = std::path::absolute(to).map_err(|e| Failure::Refused(format!("--to: {e}")))?;
    let body = serde_json::json!({ "to": to }).to_string();
    let (status, text) = admin_call("POST", server, "/v1/admin/backup", token, Some(body)).await?;
    if status.is_success() {
        println!("{text}");
        Ok(())
    } else {
        Err(Failure::Refused(format!(
            "backup refused ({status}): {text}"
        )))
    }
}
