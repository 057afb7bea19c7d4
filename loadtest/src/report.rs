//! What a run measured: HDR latency histograms per operation (from the scheduled send time)
//! and per class of answer (approved, declined, errored, balance reads), outcome and error
//! counts, throughput, CPU time, and the machine it ran on; written as JSON, Markdown and
//! SVG.
//!
//! The headline is approvals per second: on a busy account most answers can be cheap
//! declines (`05 too_many_open_holds`), so counting answers says little about the work done.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::target::Answer;

fn histogram() -> Histogram<u64> {
    // 1 µs to 10 minutes at 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// What kind of answer a request got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Approved work: DE 39 `00` or `10` (an approval, a partial approval, an accepted
    /// clearing, reversal or advice).
    Approved,
    /// Any other DE 39 answer.
    Declined,
    /// No answer: a transport error, a timeout or a refusal before a decision.
    Errored,
    /// A balance read answered.
    Read,
}

impl Class {
    pub fn of(result: &Result<Answer, String>) -> Self {
        match result {
            Ok(Answer::Card(answer)) if matches!(answer.response_code.as_str(), "00" | "10") => {
                Class::Approved
            }
            Ok(Answer::Card(_)) => Class::Declined,
            Ok(Answer::Balance(_)) => Class::Read,
            Err(_) => Class::Errored,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Answers of one second of the run, by class.
#[derive(Debug, Clone, Copy, Default)]
struct Counts([u64; 4]);

struct Second {
    latency: Histogram<u64>,
    counts: Counts,
}

#[derive(Default)]
struct Inner {
    latency: BTreeMap<&'static str, Histogram<u64>>,
    /// Latency by class ([`Class`] order), created on first use.
    classes: [Option<Histogram<u64>>; 4],
    outcomes: BTreeMap<String, u64>,
    /// Declines by DE 39 and reason (`05 too_many_open_holds`).
    declined_by: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    /// One histogram per second of the run (all operations), for the latency-over-time view.
    per_second: Vec<Second>,
}

/// Collects measurements from many tasks.
#[derive(Default)]
pub struct Recorder {
    inner: Mutex<Inner>,
}

impl Recorder {
    /// Records one answered (or failed) request that was due at `second` of the run and took
    /// `latency` from its scheduled send time.
    pub fn record(
        &self,
        op: &'static str,
        second: usize,
        latency: Duration,
        result: &Result<Answer, String>,
    ) {
        let micros = (latency.as_micros() as u64).clamp(1, 600_000_000);
        let class = Class::of(result);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let _ = inner
            .latency
            .entry(op)
            .or_insert_with(histogram)
            .record(micros);
        let _ = inner.classes[class.index()]
            .get_or_insert_with(histogram)
            .record(micros);
        while inner.per_second.len() <= second {
            inner.per_second.push(Second {
                latency: histogram(),
                counts: Counts::default(),
            });
        }
        let at = &mut inner.per_second[second];
        let _ = at.latency.record(micros);
        at.counts.0[class.index()] += 1;
        match result {
            Ok(Answer::Card(answer)) => {
                if class == Class::Declined {
                    let why = if answer.decline_reason.is_empty() {
                        answer.response_code.clone()
                    } else {
                        format!("{} {}", answer.response_code, answer.decline_reason)
                    };
                    *inner.declined_by.entry(why).or_default() += 1;
                }
                let key = if answer.decline_reason.is_empty() {
                    format!("{op} {} {}", answer.status, answer.response_code)
                } else {
                    format!(
                        "{op} {} {} {}",
                        answer.status, answer.response_code, answer.decline_reason
                    )
                };
                *inner.outcomes.entry(key).or_default() += 1;
            }
            Ok(Answer::Balance(_)) => *inner.outcomes.entry(format!("{op} ok")).or_default() += 1,
            Err(error) => {
                let short: String = error.chars().take(120).collect();
                *inner.errors.entry(format!("{op}: {short}")).or_default() += 1;
            }
        }
    }

    /// Progress so far: answers, approvals, errors, and (p50, p99) of all answers.
    pub fn snapshot(&self) -> Progress {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = histogram();
        for h in inner.latency.values() {
            let _ = all.add(h);
        }
        let count = |class: Class| inner.classes[class.index()].as_ref().map_or(0, |h| h.len());
        Progress {
            answers: all.len(),
            approved: count(Class::Approved),
            errors: inner.errors.values().sum(),
            percentiles: (!all.is_empty())
                .then(|| (all.value_at_quantile(0.5), all.value_at_quantile(0.99))),
        }
    }

    pub fn report(&self, context: RunContext, elapsed: Duration) -> Report {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let ops = inner
            .latency
            .iter()
            .map(|(op, h)| ((*op).to_owned(), Latency::of(h, elapsed)))
            .collect();
        let mut all = histogram();
        for h in inner.latency.values() {
            let _ = all.add(h);
        }
        let over_time = inner
            .per_second
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.latency.is_empty())
            .map(|(second, s)| OverTime {
                second: second as u64,
                count: s.latency.len(),
                approved: s.counts.0[Class::Approved.index()],
                declined: s.counts.0[Class::Declined.index()],
                errored: s.counts.0[Class::Errored.index()],
                p50_us: s.latency.value_at_quantile(0.5),
                p99_us: s.latency.value_at_quantile(0.99),
                max_us: s.latency.max(),
            })
            .collect();
        let class = |class: Class| {
            let empty = histogram();
            Latency::of(
                inner.classes[class.index()].as_ref().unwrap_or(&empty),
                elapsed,
            )
        };
        let approved = class(Class::Approved);
        let reads = class(Class::Read);
        Report {
            context,
            elapsed_s: elapsed.as_secs_f64(),
            approvals_per_second: approved.per_second,
            total: Latency::of(&all, elapsed),
            approved,
            declined: class(Class::Declined),
            errored: class(Class::Errored),
            reads: (reads.count > 0).then_some(reads),
            declined_by: inner.declined_by.clone(),
            operations: ops,
            outcomes: inner.outcomes.clone(),
            errors: inner.errors.clone(),
            over_time,
            cpu: None,
            cluster: None,
            watch: None,
            audit: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: u64,
    pub per_second: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    fn of(h: &Histogram<u64>, elapsed: Duration) -> Self {
        let empty = h.is_empty();
        let q = |q: f64| if empty { 0 } else { h.value_at_quantile(q) };
        Self {
            count: h.len(),
            per_second: h.len() as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if empty { 0 } else { h.max() },
        }
    }
}

/// Progress of a run so far (for the live line).
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub answers: u64,
    pub approved: u64,
    pub errors: u64,
    pub percentiles: Option<(u64, u64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OverTime {
    pub second: u64,
    /// Answers (and errors) due in this second, of every class.
    pub count: u64,
    pub approved: u64,
    pub declined: u64,
    pub errored: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// How and where the run was made.
#[derive(Debug, Clone, Serialize)]
pub struct RunContext {
    pub command_line: String,
    pub version: String,
    pub target: String,
    pub protocol: String,
    pub scenario: String,
    pub mode: String,
    pub cpus: usize,
    pub load_average_before: String,
    pub load_average_after: String,
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// CPU time spent during the measured run (not provisioning or the audit), in seconds.
#[derive(Debug, Clone, Serialize)]
pub struct Cpu {
    /// This load tester's own process.
    pub client_s: f64,
    /// The server's process (`--server-pid`), when it runs on this machine.
    pub server_s: Option<f64>,
    /// The client's CPU seconds over the run's wall time: above 0.8 the client, not the
    /// server, may be what limits the run.
    pub client_cores: f64,
    pub client_s_per_1000_approvals: Option<f64>,
    pub server_s_per_1000_approvals: Option<f64>,
}

/// CPU time of this process and, when given, the server's, at one moment: the start of a
/// measured run.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    server_pid: Option<u32>,
    client_s: Option<f64>,
    server_s: Option<f64>,
}

impl CpuSample {
    pub fn now(server_pid: Option<u32>) -> Self {
        Self {
            server_pid,
            client_s: process_cpu_seconds(None),
            server_s: server_pid.and_then(|pid| process_cpu_seconds(Some(pid))),
        }
    }

    /// The CPU spent since this sample, over a run of `elapsed` that made `approvals`; `None`
    /// where this process's own time cannot be read.
    pub fn since(&self, elapsed: Duration, approvals: u64) -> Option<Cpu> {
        let now = Self::now(self.server_pid);
        let spent = |after: Option<f64>, before: Option<f64>| Some(after? - before?);
        let client_s = spent(now.client_s, self.client_s)?;
        let server_s = spent(now.server_s, self.server_s);
        Some(Cpu::new(client_s, server_s, elapsed, approvals))
    }
}

impl Cpu {
    /// `client_s` and `server_s` over `elapsed`, per 1,000 of `approvals`.
    pub fn new(client_s: f64, server_s: Option<f64>, elapsed: Duration, approvals: u64) -> Self {
        let per_1000 = |s: f64| (approvals > 0).then(|| s * 1_000.0 / approvals as f64);
        Self {
            client_s,
            server_s,
            client_cores: client_s / elapsed.as_secs_f64().max(1e-9),
            client_s_per_1000_approvals: per_1000(client_s),
            server_s_per_1000_approvals: server_s.and_then(per_1000),
        }
    }

    /// Whether the client used more than 0.8 of a core: its figures may be the client's.
    pub fn client_bound(&self) -> bool {
        self.client_cores > 0.8
    }
}

/// CPU seconds (user + system, every thread) a process has used so far, from
/// `/proc/PID/stat`; `None` where it cannot be read (another OS, a process that is gone).
pub fn process_cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces; the fields after its `)` are fixed.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ: the unit /proc reports in, 100 on every Linux the project runs on.
    Some(ticks as f64 / 100.0)
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub context: RunContext,
    pub elapsed_s: f64,
    /// The headline: approved work per second (DE 39 00 or 10).
    pub approvals_per_second: f64,
    /// Every answer and error, whatever its class.
    pub total: Latency,
    pub approved: Latency,
    pub declined: Latency,
    pub errored: Latency,
    /// Balance reads, when the scenario makes them.
    pub reads: Option<Latency>,
    /// Declines by DE 39 and reason.
    pub declined_by: BTreeMap<String, u64>,
    pub operations: BTreeMap<String, Latency>,
    pub outcomes: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub over_time: Vec<OverTime>,
    pub cpu: Option<Cpu>,
    /// Against a cluster: retries, answers in doubt, failovers, leaders killed.
    pub cluster: Option<crate::nodes::ClusterCounts>,
    /// Live balance streams held during the run (`--watchers`).
    #[serde(default)]
    pub watch: Option<crate::watch::WatchCounts>,
    pub audit: Option<crate::audit::AuditSummary>,
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1_000.0)
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let c = &self.context;
        out.push_str(&format!(
            "# tandem-loadtest report\n\n- command: `{}`\n- version: {}\n- target: {} ({}), scenario `{}`, {}\n- machine: {} CPUs, load average {} before, {} after\n- elapsed: {:.1} s\n\n",
            c.command_line, c.version, c.target, c.protocol, c.scenario, c.mode, c.cpus, c.load_average_before, c.load_average_after, self.elapsed_s
        ));
        out.push_str(&format!(
            "**{:.0} approvals/s** ({:.0} declined/s, {:.0} errored/s; {:.0} answers/s in all)\n\n",
            self.approvals_per_second,
            self.declined.per_second,
            self.errored.per_second,
            self.total.per_second
        ));
        let header = "| count | per second | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |";
        let row = |name: &str, l: &Latency| {
            format!(
                "| {name} | {} | {:.0} | {} | {} | {} | {} | {} |\n",
                l.count,
                l.per_second,
                ms(l.p50_us),
                ms(l.p90_us),
                ms(l.p99_us),
                ms(l.p999_us),
                ms(l.max_us)
            )
        };
        out.push_str(&format!(
            "| answer {header}\n|---|---|---|---|---|---|---|---|\n"
        ));
        let mut classes = vec![
            ("approved", &self.approved),
            ("declined", &self.declined),
            ("errored", &self.errored),
        ];
        if let Some(reads) = &self.reads {
            classes.push(("balance reads", reads));
        }
        for (name, l) in classes {
            out.push_str(&row(name, l));
        }
        out.push_str(&format!(
            "\n| operation {header}\n|---|---|---|---|---|---|---|---|\n"
        ));
        for (name, l) in &self.operations {
            out.push_str(&row(name, l));
        }
        out.push_str(&row("**all**", &self.total));
        if !self.declined_by.is_empty() {
            out.push_str("\n## Declines by DE 39 and reason\n\n| DE 39 reason | count | per second |\n|---|---|---|\n");
            for (why, n) in &self.declined_by {
                out.push_str(&format!(
                    "| {why} | {n} | {:.0} |\n",
                    *n as f64 / self.elapsed_s.max(1e-9)
                ));
            }
        }
        if let Some(cpu) = &self.cpu {
            let per_1000 = |s: Option<f64>| s.map_or("-".to_owned(), |s| format!("{s:.3}"));
            out.push_str(&format!(
                "\n## CPU during the run\n\n| process | CPU s | per 1,000 approvals |\n|---|---|---|\n| client (this tester) | {:.2} | {} |\n| server | {} | {} |\n\nThe client used {:.2} of a core{}.\n",
                cpu.client_s,
                per_1000(cpu.client_s_per_1000_approvals),
                cpu.server_s.map_or("-".to_owned(), |s| format!("{s:.2}")),
                per_1000(cpu.server_s_per_1000_approvals),
                cpu.client_cores,
                if cpu.client_bound() {
                    ": **client-bound**, the figures may be the client's limit"
                } else {
                    ""
                }
            ));
        }
        out.push_str("\n## Outcomes\n\n| outcome | count |\n|---|---|\n");
        for (k, v) in &self.outcomes {
            out.push_str(&format!("| {k} | {v} |\n"));
        }
        if !self.errors.is_empty() {
            out.push_str("\n## Errors\n\n| error | count |\n|---|---|\n");
            for (k, v) in &self.errors {
                out.push_str(&format!("| {} | {v} |\n", k.replace('|', "/")));
            }
        }
        if let Some(cluster) = &self.cluster {
            out.push_str(&format!(
                "\n## Cluster\n\n{} nodes; {} requests retried ({} retries in all, the same idempotency key each time), {} in doubt (their first answer lost), {} answered by another node than the one first tried, {} given up after 10 s of retries\n",
                cluster.nodes,
                cluster.retried,
                cluster.retries,
                cluster.in_doubt,
                cluster.failovers,
                cluster.gave_up
            ));
            for kill in &cluster.kills {
                let first = kill
                    .first_approval_ms
                    .map_or("none".to_owned(), |ms| format!("{ms:.0} ms"));
                let any = kill
                    .first_answer_ms
                    .map_or("none".to_owned(), |ms| format!("{ms:.0} ms"));
                out.push_str(&format!(
                    "\n- leader killed at {:.1} s ({}): first approval of a request sent after it {first} later (of any request, {any})",
                    kill.at_s,
                    kill.killed.trim()
                ));
            }
            if !cluster.kills.is_empty() {
                out.push('\n');
            }
        }
        if let Some(watch) = &self.watch {
            out.push_str(&format!(
                "\n## Watchers\n\n{} live balance streams ({}) on {} accounts: {} updates; {} answered changes shown, lag from answer to update p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} missed, {} resyncs, {} reconnects, {} streams that could not be opened{}\n",
                watch.watchers,
                watch.via,
                watch.accounts,
                watch.updates,
                watch.matched,
                watch.lag_p50_ms,
                watch.lag_p99_ms,
                watch.lag_max_ms,
                watch.missed,
                watch.resyncs,
                watch.reconnects,
                watch.open_failures,
                watch
                    .last_failure
                    .as_ref()
                    .map_or(String::new(), |f| format!(" (last: {f})"))
            ));
        }
        if let Some(audit) = &self.audit {
            out.push_str(&format!(
                "\n## Audit\n\n{} accounts checked, {} holds, {} entries, {} holds expired: {}\n",
                audit.accounts_checked,
                audit.holds_checked,
                audit.entries_checked,
                audit.holds_expired,
                if audit.findings.is_empty() {
                    "clean".to_owned()
                } else {
                    format!("{} findings", audit.findings.len())
                }
            ));
            for finding in audit.findings.iter().take(50) {
                out.push_str(&format!("- {finding}\n"));
            }
        }
        out
    }
}

/// The chart's width and its left and right margins.
const WIDTH: f64 = 900.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;

/// A horizontal grid line across the chart at `at`, labelled on the left.
fn grid_line(svg: &mut String, at: f64, label: &str) {
    svg.push_str(&format!(
        "<line x1=\"{LEFT}\" y1=\"{at:.1}\" x2=\"{:.1}\" y2=\"{at:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>\n",
        WIDTH - RIGHT,
        LEFT - 6.0,
        at + 4.0
    ));
}

/// One series as a polyline through `points`, with its name at `legend`.
fn series(
    svg: &mut String,
    points: impl Iterator<Item = (f64, f64)>,
    colour: &str,
    name: &str,
    legend: (f64, f64),
) {
    let line: Vec<String> = points.map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    svg.push_str(&format!(
        "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{colour}\">{name}</text>\n",
        line.join(" "),
        legend.0,
        legend.1
    ));
}

impl Report {
    /// An SVG chart of p50, p99 and max latency per second of the run (log scale), and below
    /// it the approved, declined and errored answers of each second.
    pub fn svg(&self) -> String {
        const HEIGHT: f64 = 420.0;
        const PANEL: f64 = 260.0;
        const TOP: f64 = 40.0;
        const BOTTOM: f64 = 50.0;
        let points = &self.over_time;
        let seconds = points.last().map_or(1, |p| p.second.max(1)) as f64;
        let highest = points.iter().map(|p| p.max_us).max().unwrap_or(1).max(10) as f64;
        let decades = highest.log10().ceil().max(1.0);
        let x = |second: u64| LEFT + (second as f64 / seconds) * (WIDTH - LEFT - RIGHT);
        let y = |micros: u64| {
            let value = (micros.max(1) as f64).log10() / decades;
            HEIGHT - BOTTOM - value * (HEIGHT - TOP - BOTTOM)
        };
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{LEFT}\" y=\"24\" font-size=\"15\">{} — {} ({}), latency from scheduled send</text>\n",
            HEIGHT + PANEL,
            self.context.scenario,
            self.context.protocol,
            self.context.mode
        );
        // Axes and decade grid lines (1 µs to 10^decades µs).
        for decade in 0..=(decades as u32) {
            let micros = 10u64.pow(decade);
            let at = y(micros);
            let label = if micros >= 1_000 {
                format!("{} ms", micros / 1_000)
            } else {
                format!("{micros} µs")
            };
            grid_line(&mut svg, at, &label);
        }
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">seconds into the run (0–{seconds:.0})</text>\n",
            (LEFT + WIDTH - RIGHT) / 2.0,
            HEIGHT - 15.0
        ));
        for (name, colour, pick) in [
            (
                "max",
                "#bbbbbb",
                (|p: &OverTime| p.max_us) as fn(&OverTime) -> u64,
            ),
            ("p99", "#d62728", |p: &OverTime| p.p99_us),
            ("p50", "#1f77b4", |p: &OverTime| p.p50_us),
        ] {
            let legend_y = match name {
                "p50" => TOP + 10.0,
                "p99" => TOP + 26.0,
                _ => TOP + 42.0,
            };
            let line = points.iter().map(|p| (x(p.second), y(pick(p))));
            series(
                &mut svg,
                line,
                colour,
                name,
                (WIDTH - RIGHT - 40.0, legend_y),
            );
        }
        // Answers per second by class, on a linear scale.
        let top = HEIGHT + 20.0;
        let bottom = HEIGHT + PANEL - BOTTOM;
        let most = points
            .iter()
            .map(|p| p.approved.max(p.declined).max(p.errored))
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let y = |count: u64| bottom - (count as f64 / most) * (bottom - top);
        svg.push_str(&format!(
            "<text x=\"{LEFT}\" y=\"{:.1}\" font-size=\"13\">answers per second: {:.0} approvals/s over the run</text>\n",
            top - 4.0,
            self.approvals_per_second
        ));
        for (value, label) in [(0, "0".to_owned()), (most as u64, format!("{most:.0}/s"))] {
            grid_line(&mut svg, y(value), &label);
        }
        for (row, (name, colour, pick)) in [
            (
                "approved",
                "#2ca02c",
                (|p: &OverTime| p.approved) as fn(&OverTime) -> u64,
            ),
            ("declined", "#ff7f0e", |p: &OverTime| p.declined),
            ("errored", "#d62728", |p: &OverTime| p.errored),
        ]
        .into_iter()
        .enumerate()
        {
            let line = points.iter().map(|p| (x(p.second), y(pick(p))));
            let legend = (WIDTH - RIGHT - 70.0, top + 10.0 + 16.0 * row as f64);
            series(&mut svg, line, colour, name, legend);
        }
        svg.push_str("</svg>\n");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Answer;
    use tandem_proto::v1 as pb;

    fn context() -> RunContext {
        RunContext {
            command_line: "test".into(),
            version: "0".into(),
            target: "grpc://x".into(),
            protocol: "gRPC unary".into(),
            scenario: "authorize".into(),
            mode: "open loop".into(),
            cpus: 2,
            load_average_before: "0".into(),
            load_average_after: "0".into(),
        }
    }

    #[test]
    fn the_report_counts_outcomes_and_draws_each_second() {
        let recorder = Recorder::default();
        let approved = Ok(Answer::Card(pb::AuthorizeResponse {
            status: "approved".into(),
            response_code: "00".into(),
            ..Default::default()
        }));
        for second in 0..5 {
            for micros in [800, 1_200, 9_000] {
                recorder.record(
                    "authorize",
                    second,
                    Duration::from_micros(micros),
                    &approved,
                );
            }
        }
        recorder.record(
            "authorize",
            5,
            Duration::from_millis(40),
            &Err("UNAVAILABLE: busy".into()),
        );
        let report = recorder.report(context(), Duration::from_secs(6));
        assert_eq!(report.total.count, 16);
        assert_eq!(report.outcomes["authorize approved 00"], 15);
        assert_eq!(report.errors.values().sum::<u64>(), 1);
        assert_eq!(report.over_time.len(), 6);
        assert!(report.total.max_us >= 40_000);
        let svg = report.svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<polyline").count(),
            6,
            "p50, p99 and max; approved, declined and errored"
        );
        let markdown = report.markdown();
        assert!(markdown.contains("| authorize | 16 |"), "{markdown}");
        assert_eq!(report.approved.count, 15);
        assert_eq!(report.errored.count, 1);
        assert_eq!(report.declined.count, 0);
        assert!((report.approvals_per_second - 2.5).abs() < 1e-9);
        assert!(markdown.contains(" approvals/s**"), "{markdown}");
        assert_eq!(report.over_time[0].approved, 3);
        assert_eq!(report.over_time[5].errored, 1);
    }

    #[test]
    fn approvals_declines_and_errors_are_counted_apart() {
        let recorder = Recorder::default();
        let card = |status: &str, code: &str, reason: &str| {
            Ok(Answer::Card(pb::AuthorizeResponse {
                status: status.into(),
                response_code: code.into(),
                decline_reason: reason.into(),
                ..Default::default()
            }))
        };
        let ms = Duration::from_millis;
        for _ in 0..4 {
            recorder.record("authorize", 0, ms(1), &card("approved", "00", ""));
            recorder.record("clear", 0, ms(1), &card("accepted", "00", ""));
        }
        recorder.record("authorize", 1, ms(2), &card("partially_approved", "10", ""));
        for _ in 0..3 {
            let declined = card("declined", "05", "too_many_open_holds");
            recorder.record("authorize", 1, ms(50), &declined);
        }
        recorder.record(
            "authorize",
            1,
            ms(9),
            &card("declined", "51", "insufficient_funds"),
        );
        recorder.record(
            "get_balance",
            1,
            ms(1),
            &Ok(Answer::Balance(Default::default())),
        );
        let report = recorder.report(context(), Duration::from_secs(2));
        assert_eq!(
            report.approved.count, 9,
            "approvals, partial ones and accepted clearings"
        );
        assert_eq!(report.declined.count, 4);
        assert_eq!(report.errored.count, 0);
        assert_eq!(report.reads.as_ref().map(|r| r.count), Some(1));
        assert_eq!(report.total.count, 14);
        assert!((report.approvals_per_second - 4.5).abs() < 1e-9);
        assert_eq!(report.declined_by["05 too_many_open_holds"], 3);
        assert_eq!(report.declined_by["51 insufficient_funds"], 1);
        // The declines' latency is their own, not mixed into the approvals'.
        assert!(report.approved.p99_us < 3_000, "{:?}", report.approved);
        assert!(report.declined.p50_us >= 49_000, "{:?}", report.declined);
        assert_eq!(report.over_time[0].approved, 8);
        assert_eq!(report.over_time[1].approved, 1);
        assert_eq!(report.over_time[1].declined, 4);
        let markdown = report.markdown();
        assert!(
            markdown.contains("| 05 too_many_open_holds | 3 |"),
            "{markdown}"
        );
    }

    #[test]
    fn cpu_per_thousand_approvals_and_the_client_bound_flag() {
        let cpu = Cpu::new(9.0, Some(12.0), Duration::from_secs(10), 30_000);
        assert!((cpu.client_cores - 0.9).abs() < 1e-9);
        assert!(cpu.client_bound());
        assert!((cpu.server_s_per_1000_approvals.unwrap() - 0.4).abs() < 1e-9);
        assert!(!Cpu::new(2.0, None, Duration::from_secs(10), 0).client_bound());
        assert!(
            Cpu::new(2.0, None, Duration::from_secs(10), 0)
                .client_s_per_1000_approvals
                .is_none()
        );
        assert!(process_cpu_seconds(None).is_some_and(|s| s >= 0.0));
    }
}
