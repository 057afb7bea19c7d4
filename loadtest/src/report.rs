//! What a run measured: HDR latency histograms per operation (from the scheduled send time),
//! outcome and error counts, throughput, and the machine it ran on; written as JSON and
//! Markdown.

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

#[derive(Default)]
struct Inner {
    latency: BTreeMap<&'static str, Histogram<u64>>,
    outcomes: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    /// One histogram per second of the run (all operations), for the latency-over-time view.
    per_second: Vec<Histogram<u64>>,
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
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let _ = inner
            .latency
            .entry(op)
            .or_insert_with(histogram)
            .record(micros);
        while inner.per_second.len() <= second {
            inner.per_second.push(histogram());
        }
        let _ = inner.per_second[second].record(micros);
        match result {
            Ok(Answer::Card(answer)) => {
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

    pub fn snapshot(&self) -> (u64, u64, Option<(u64, u64)>) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = histogram();
        for h in inner.latency.values() {
            let _ = all.add(h);
        }
        let errors = inner.errors.values().sum();
        let percentiles =
            (!all.is_empty()).then(|| (all.value_at_quantile(0.5), all.value_at_quantile(0.99)));
        (all.len(), errors, percentiles)
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
            .filter(|(_, h)| !h.is_empty())
            .map(|(second, h)| OverTime {
                second: second as u64,
                count: h.len(),
                p50_us: h.value_at_quantile(0.5),
                p99_us: h.value_at_quantile(0.99),
                max_us: h.max(),
            })
            .collect();
        Report {
            context,
            elapsed_s: elapsed.as_secs_f64(),
            total: Latency::of(&all, elapsed),
            operations: ops,
            outcomes: inner.outcomes.clone(),
            errors: inner.errors.clone(),
            over_time,
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

#[derive(Debug, Clone, Serialize)]
pub struct OverTime {
    pub second: u64,
    pub count: u64,
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

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub context: RunContext,
    pub elapsed_s: f64,
    pub total: Latency,
    pub operations: BTreeMap<String, Latency>,
    pub outcomes: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub over_time: Vec<OverTime>,
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
        out.push_str("| operation | count | per second | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |\n|---|---|---|---|---|---|---|---|\n");
        let mut rows: Vec<(&str, &Latency)> = self
            .operations
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        rows.push(("**all**", &self.total));
        for (name, l) in rows {
            out.push_str(&format!(
                "| {name} | {} | {:.0} | {} | {} | {} | {} | {} |\n",
                l.count,
                l.per_second,
                ms(l.p50_us),
                ms(l.p90_us),
                ms(l.p99_us),
                ms(l.p999_us),
                ms(l.max_us)
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
        if let Some(audit) = &self.audit {
            out.push_str(&format!(
                "\n## Audit\n\n{} accounts checked, {} holds, {} entries: {}\n",
                audit.accounts_checked,
                audit.holds_checked,
                audit.entries_checked,
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
