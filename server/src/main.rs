//! `tandem`: the Tandem server.
//!
//! - `tandem serve` runs a node on its embedded default (single voter, `./data`).
//! - `tandem backup --to DIR` has a running node write a consistent copy into DIR.
//! - `tandem restore --from DIR --data-dir NEW` makes a data directory from a backup.

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
    let result = match cli.command {
        Command::Serve { config, settings } => settings
            .over_file(config.as_deref())
            .and_then(Settings::resolve)
            .and_then(|config| {
                init_tracing(config.log_json, &config.log);
                runtime
                    .block_on(tandem_server::serve::run(config))
                    .map_err(|e| e.to_string())
            }),
        Command::Backup { to, server, token } => runtime.block_on(backup(&server, &token, &to)),
        Command::Restore { from, data_dir } => runtime
            .block_on(tandem_server::backup::restore(&from, &data_dir))
            .map(|index| {
                println!("restored {} up to log index {index}", data_dir.display());
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tandem: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn backup(server: &str, token: &str, to: &std::path::Path) -> Result<(), String> {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    let to = std::path::absolute(to).map_err(|e| format!("--to: {e}"))?;
    let body = serde_json::json!({ "to": to }).to_string();
    let request = hyper::Request::post(format!("http://{server}/v1/admin/backup"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(hyper::body::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("cannot reach {server}: {e}"))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    if status.is_success() {
        println!("{text}");
        Ok(())
    } else {
        Err(format!("backup refused ({status}): {text}"))
    }
}
