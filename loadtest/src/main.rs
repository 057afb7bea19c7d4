//! `tandem-loadtest run --target grpc://127.0.0.1:50051 --rate 20000 --duration 60s
//! --scenario mixed`: provisions its own accounts, drives traffic, reports latency from the
//! scheduled send time, and audits the money at the end (a non-zero exit on any finding).

/// glibc malloc showed up as the largest user-space cost under load (many small
/// allocations across threads); mimalloc is made for that pattern.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_loadtest::audit::Ledger;
use tandem_loadtest::nodes::Nodes;
use tandem_loadtest::report::{Report, RunContext, load_average};
use tandem_loadtest::run::{Load, RunState, run};
use tandem_loadtest::scenario::{Population, Scenario, Traffic};
use tandem_loadtest::target::Protocol;
use tandem_loadtest::watch::Watchers;
use tandem_loadtest::{provision, report};

/// How long after the load the watchers have to show the last answered changes.
const WATCH_GRACE: Duration = Duration::from_secs(2);

#[derive(Parser)]
#[command(
    name = "tandem-loadtest",
    version,
    about = "Load tests a Tandem server honestly"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Provision accounts, drive traffic, report, audit.
    Run(RunArgs),
}

fn duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |i| text.split_at(i));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("not a duration: {text}"))?;
    let seconds = match unit {
        "ms" => value / 1_000.0,
        "s" | "" => value,
        "m" => value * 60.0,
        other => return Err(format!("unknown unit {other:?} in {text} (use ms, s or m)")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

#[derive(Args, Clone)]
struct RunArgs {
    /// grpc://HOST:PORT, http://HOST:PORT or iso8583://HOST:PORT; a cluster's nodes comma
    /// separated (grpc://a,grpc://b,grpc://c): calls are spread over them, and one that meets
    /// no leader or a node gone is retried, under the same idempotency key, on the next.
    #[arg(long, default_value = "grpc://127.0.0.1:50051")]
    target: String,
    /// For an iso8583:// target: the API (grpc:// or http://) that provisions accounts, serves
    /// balance reads and answers the audit (one, or one per node of --target).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    admin_target: String,
    /// Kill the cluster's leader this far into the run, with --kill-command; the report times
    /// the first approval after it.
    #[arg(long, value_parser = duration)]
    kill_leader_after: Option<Duration>,
    /// The command (run by `sh -c`) that kills the current leader and prints which node it
    /// killed, e.g. `scripts/cluster.sh kill-leader`.
    #[arg(long, default_value = "scripts/cluster.sh kill-leader")]
    kill_command: String,
    /// Hold this many live balance streams on the accounts under load, spread over the
    /// nodes, and report the lag from each answer to each watcher's update, changes missed
    /// and reconnects (not with --step).
    #[arg(long, default_value_t = 0)]
    watchers: usize,
    /// Where the watchers connect: grpc:// nodes (`WatchBalance`) or http:// nodes
    /// (Server-Sent Events, resumed with Last-Event-ID), comma separated; default --target
    /// (--admin-target for ISO 8583).
    #[arg(long)]
    watch_target: Option<String>,
    /// An admin API key (it provisions accounts and sends card traffic).
    #[arg(long, env = "TANDEM_TOKEN", hide_env_values = true)]
    token: String,
    /// Requests per second (open loop).
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
    #[arg(long, default_value = "30s", value_parser = duration)]
    duration: Duration,
    /// authorize, lifecycle, hot, kids, fx, mixed or reads
    #[arg(long, default_value = "authorize")]
    scenario: String,
    /// Over gRPC, send card traffic on the bidirectional processor stream instead of unary calls.
    #[arg(long)]
    stream: bool,
    /// gRPC channels (processor streams, ISO 8583 links) to spread the load over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    #[arg(long, default_value_t = 1_000)]
    accounts: usize,
    #[arg(long, default_value_t = 2)]
    members_per_account: usize,
    /// Share of accounts that are kid accounts (0..1).
    #[arg(long, default_value_t = 0.1)]
    kid_share: f64,
    /// Currencies each adult account holds, comma separated (the first is the spend currency).
    #[arg(long, default_value = "EUR,GBP,USD")]
    currencies: String,
    /// Closed loop: this many workers back to back, to find the maximum throughput.
    #[arg(long)]
    closed_loop: bool,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Raise the rate step by step (×1.25) from --rate until p99 breaks --slo-p99.
    #[arg(long)]
    step: bool,
    #[arg(long, default_value = "10ms", value_parser = duration)]
    slo_p99: Duration,
    /// Length of each step.
    #[arg(long, default_value = "10s", value_parser = duration)]
    step_duration: Duration,
    /// Requests outstanding at most in open loop.
    #[arg(long, default_value_t = 100_000)]
    outstanding_max: usize,
    /// Where to write report.json, report.md and latency.svg.
    #[arg(long, default_value = "loadtest-report")]
    report: PathBuf,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
    /// The server's --hold-expiry-secs, when known: the audit finds every approved hold the
    /// tester left open in the server's lifecycle feed (`ListLifecycleEvents`), counts it as
    /// expired only if the server says it expired, and with this also checks it expired no
    /// sooner than its window.
    #[arg(long, value_parser = duration)]
    hold_expiry: Option<Duration>,
    /// Skip the money audit at the end.
    #[arg(long)]
    no_audit: bool,
    /// Steady state: each caller closes every hold it opens before its next one (`authorize`
    /// and `hot` clear in full; `lifecycle` clears, partly clears or reverses), so the
    /// open-hold bound never limits the run.
    #[arg(long)]
    settle: bool,
    /// The server's process id, when it runs on this machine: its CPU time during the run is
    /// reported beside the tester's own (per 1,000 approvals).
    #[arg(long)]
    server_pid: Option<u32>,
    /// The target is a bare gRPC echo service (`cargo run --release -p tandem-benches
    /// --example echo`), the transport's own ceiling: unary card traffic only, nothing is
    /// provisioned or audited.
    #[arg(long)]
    echo: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> ExitCode {
    let Cli {
        command: Command::Run(args),
    } = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tandem-loadtest: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main_run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(message) => {
            eprintln!("tandem-loadtest: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Answers whether the run passed (a clean audit).
async fn main_run(args: RunArgs) -> Result<bool, String> {
    let scenario = Scenario::parse(&args.scenario)?;
    let load_before = load_average();
    let target = Arc::new(
        Nodes::connect(
            &args.target,
            &args.admin_target,
            &args.token,
            args.stream,
            args.connections,
        )
        .await?,
    );
    let run_id = format!("{:x}", tandem_loadtest::schedule::unix_ms());
    let kid_every = if args.kid_share > 0.0 {
        (1.0 / args.kid_share).round().max(1.0) as usize
    } else {
        0
    };
    let population = Population {
        run_id,
        accounts: args.accounts.max(1),
        members_per_account: args.members_per_account,
        kid_every,
        currencies: args
            .currencies
            .split(',')
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect(),
        // 100 million in major units per currency: approvals are not limited by money.
        deposit_minor: 10_000_000_000,
        kid_deposit_minor: 20_000,
    };
    if args.echo && target.protocol() != Protocol::GrpcUnary {
        return Err("--echo drives a grpc:// target with unary calls".into());
    }
    if !args.echo {
        if !args.quiet {
            eprintln!("provisioning {} accounts ...", population.accounts);
        }
        provision::provision(&target, &population, 64).await?;
        if !args.quiet {
            // Scripts wait for this line to time what follows (benches/recovery.sh).
            eprintln!(
                "provisioned {} accounts; traffic starts",
                population.accounts
            );
        }
    }
    let mut ledger = provision::ledger_of_deposits(&population);
    ledger.hold_expiry_ms = args.hold_expiry.map(|d| d.as_millis() as i64);
    let traffic = Traffic::new(scenario, population.clone(), args.seed).settled(args.settle);
    let watchers = if args.watchers > 0 && !args.echo {
        let accounts: Vec<String> = (0..population.accounts)
            .map(|i| population.account_id(i))
            .collect();
        let nodes = args.watch_target.clone().unwrap_or_else(|| {
            if target.protocol() == Protocol::Iso8583 {
                args.admin_target.clone()
            } else {
                args.target.clone()
            }
        });
        Some(Arc::new(Watchers::new(
            args.watchers,
            &accounts,
            &nodes,
            &args.token,
        )?))
    } else {
        None
    };
    let (stop_watching, watching) = tokio::sync::watch::channel(false);
    let watcher_tasks: Vec<_> = watchers
        .iter()
        .flat_map(|watchers| {
            (0..args.watchers).map(|i| {
                let watchers = watchers.clone();
                let stop = watching.clone();
                tokio::spawn(async move { watchers.hold(i, stop).await })
            })
        })
        .collect();
    let shared = Arc::new(RunState {
        target: target.clone(),
        traffic: Mutex::new(traffic),
        recorder: report::Recorder::default(),
        ledger: Mutex::new(ledger),
        population: population.clone(),
        watchers: watchers.clone(),
    });
    let protocol = match target.protocol() {
        Protocol::GrpcUnary => "gRPC unary",
        Protocol::GrpcStream => "gRPC stream",
        Protocol::Http => "HTTP/JSON",
        Protocol::Iso8583 => "ISO 8583",
    };
    let context = |mode: String| RunContext {
        command_line: std::env::args()
            .map(|a| {
                if a == args.token {
                    "<token>".to_owned()
                } else {
                    a
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        target: args.target.clone(),
        protocol: protocol.to_owned(),
        scenario: args.scenario.clone(),
        mode,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average_before: load_before.clone(),
        load_average_after: load_average(),
    };
    let mut report: Report = if args.step {
        step(&shared, &args, &context).await
    } else {
        let load = Load {
            rate: args.rate,
            duration: args.duration,
            closed_loop: args.closed_loop.then_some(args.concurrency),
            outstanding_max: args.outstanding_max,
            seed: args.seed,
            quiet: args.quiet,
        };
        let cpu = report::CpuSample::now(args.server_pid);
        let killer = args.kill_leader_after.map(|after| {
            let target = target.clone();
            let command = args.kill_command.clone();
            let quiet = args.quiet;
            tokio::spawn(async move { kill_leader(&target, after, &command, quiet).await })
        });
        let elapsed = run(shared.clone(), &load).await;
        if let Some(killer) = killer {
            killer.await.map_err(|e| e.to_string())??;
        }
        let mode = match load.closed_loop {
            Some(n) => format!(
                "closed loop, {n} workers, {:.0} s",
                args.duration.as_secs_f64()
            ),
            None => format!(
                "open loop, Poisson at {:.0}/s for {:.0} s",
                args.rate,
                args.duration.as_secs_f64()
            ),
        };
        let mut report = shared.recorder.report(context(mode), elapsed);
        report.cpu = cpu.since(elapsed, report.approved.count);
        report.cluster = target.counts();
        report
    };
    if let Some(watchers) = &watchers {
        // The changes answered last reach the watchers a moment after their answers; past
        // the grace, what no watcher has shown is missed.
        let grace = tokio::time::Instant::now() + WATCH_GRACE;
        while watchers.unmatched() > 0 && tokio::time::Instant::now() < grace {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stop_watching.send(true);
        for task in watcher_tasks {
            let _ = task.await;
        }
        report.watch = Some(watchers.counts());
    }
    let passed = if args.no_audit || args.echo {
        true
    } else {
        let summary = tandem_loadtest::run::audit(&shared).await;
        let clean = summary.findings.is_empty();
        report.audit = Some(summary);
        clean
    };
    std::fs::create_dir_all(&args.report).map_err(|e| format!("{}: {e}", args.report.display()))?;
    let json = serde_json::to_vec_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(args.report.join("report.json"), json).map_err(|e| e.to_string())?;
    let markdown = report.markdown();
    std::fs::write(args.report.join("report.md"), &markdown).map_err(|e| e.to_string())?;
    std::fs::write(args.report.join("latency.svg"), report.svg()).map_err(|e| e.to_string())?;
    println!("{markdown}");
    Ok(passed)
}

/// Waits `after`, then runs `command` to kill the cluster's leader, noting when.
async fn kill_leader(
    nodes: &Nodes,
    after: Duration,
    command: &str,
    quiet: bool,
) -> Result<(), String> {
    let started = std::time::Instant::now();
    tokio::time::sleep(after).await;
    nodes.killing();
    let output = tokio::process::Command::new("sh")
        .args(["-c", command])
        .output()
        .await
        .map_err(|e| format!("--kill-command {command}: {e}"));
    let output = output.inspect_err(|_| nodes.kill_failed())?;
    if !output.status.success() {
        nodes.kill_failed();
        return Err(format!(
            "--kill-command {command} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let killed = String::from_utf8_lossy(&output.stdout).into_owned();
    if !quiet {
        eprintln!("killed the leader: {}", killed.trim());
    }
    // The kill's own time if the command printed it (`... at <ms since the epoch>`): finding
    // the leader first takes a process and a status call, and waiting for the process to be
    // gone takes longer still, neither any part of the failover. Else the command's end.
    let now = std::time::Instant::now();
    let at = killed_at(&killed)
        .and_then(|ms| {
            let ago = u64::try_from(tandem_loadtest::schedule::unix_ms() - ms).ok()?;
            now.checked_sub(Duration::from_millis(ago))
        })
        .unwrap_or(now);
    nodes.killed(
        at,
        at.saturating_duration_since(started).as_secs_f64(),
        killed,
    );
    Ok(())
}

/// The kill's time a kill command printed as its last word after `at`, ms since the epoch.
fn killed_at(printed: &str) -> Option<i64> {
    let mut words = printed.split_whitespace().rev();
    let ms = words.next()?.parse().ok()?;
    (words.next()? == "at").then_some(ms)
}

/// Raises the rate by 25% per step until p99 breaks the SLO (or errors appear); reports the
/// last step that held.
async fn step(
    shared: &Arc<RunState>,
    args: &RunArgs,
    context: &dyn Fn(String) -> RunContext,
) -> Report {
    let mut rate = args.rate;
    let mut held: Option<Report> = None;
    let slo_us = args.slo_p99.as_micros() as u64;
    loop {
        let scenario = shared
            .traffic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .scenario;
        let traffic = Traffic::new(
            scenario,
            shared.population.clone(),
            args.seed.wrapping_add(rate as u64),
        )
        .settled(args.settle);
        let step_shared = Arc::new(RunState {
            target: shared.target.clone(),
            traffic: Mutex::new(traffic),
            recorder: report::Recorder::default(),
            ledger: Mutex::new(Ledger::default()),
            population: shared.population.clone(),
            watchers: None,
        });
        let load = Load {
            rate,
            duration: args.step_duration,
            closed_loop: None,
            outstanding_max: args.outstanding_max,
            seed: args.seed,
            quiet: args.quiet,
        };
        let elapsed = run(step_shared.clone(), &load).await;
        merge_ledger(shared, &step_shared);
        let report = step_shared.recorder.report(
            context(format!(
                "step: highest rate with p99 under {} ms, here {rate:.0}/s",
                slo_us as f64 / 1_000.0
            )),
            elapsed,
        );
        let errors: u64 = report.errors.values().sum();
        let broke = report.total.p99_us > slo_us || errors * 100 > report.total.count;
        eprintln!(
            "step {rate:.0}/s: p99 {:.2} ms, {errors} errors -> {}",
            report.total.p99_us as f64 / 1_000.0,
            if broke { "broke the SLO" } else { "held" }
        );
        if broke {
            return held.unwrap_or(report);
        }
        held = Some(report);
        rate *= 1.25;
    }
}

fn merge_ledger(into: &RunState, from: &RunState) {
    let from = std::mem::take(&mut *from.ledger.lock().unwrap_or_else(|p| p.into_inner()));
    let mut into = into.ledger.lock().unwrap_or_else(|p| p.into_inner());
    into.authorizations.extend(from.authorizations);
    into.declined.extend(from.declined);
    into.uncertain.extend(from.uncertain);
    into.uncertain_accounts.extend(from.uncertain_accounts);
    into.touched.extend(from.touched);
}

#[cfg(test)]
mod tests {
    use super::killed_at;

    #[test]
    fn a_kill_commands_printed_time_is_read_and_anything_else_is_not() {
        assert_eq!(
            killed_at("node 2 (pid 4242) at 1796680000123\n"),
            Some(1_796_680_000_123)
        );
        assert_eq!(killed_at("node 2 (pid 4242)"), None);
        assert_eq!(killed_at("killed 17"), None);
        assert_eq!(killed_at(""), None);
    }
}
