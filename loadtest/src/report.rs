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

impl Report {
    /// An SVG chart of p50, p99 and max latency per second of the run (log scale).
    pub fn svg(&self) -> String {
        const WIDTH: f64 = 900.0;
        const HEIGHT: f64 = 420.0;
        const LEFT: f64 = 70.0;
        const RIGHT: f64 = 20.0;
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
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{LEFT}\" y=\"24\" font-size=\"15\">{} — {} ({}), latency from scheduled send</text>\n",
            self.context.scenario, self.context.protocol, self.context.mode
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
            svg.push_str(&format!(
                "<line x1=\"{LEFT}\" y1=\"{at:.1}\" x2=\"{:.1}\" y2=\"{at:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>\n",
                WIDTH - RIGHT,
                LEFT - 6.0,
                at + 4.0
            ));
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
            let line: Vec<String> = points
                .iter()
                .map(|p| format!("{:.1},{:.1}", x(p.second), y(pick(p))))
                .collect();
            svg.push_str(&format!(
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n",
                line.join(" ")
            ));
            let legend_y = match name {
                "p50" => TOP + 10.0,
                "p99" => TOP + 26.0,
                _ => TOP + 42.0,
            };
            svg.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{legend_y:.1}\" fill=\"{colour}\">{name}</text>\n",
                WIDTH - RIGHT - 40.0
            ));
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
        assert_eq!(svg.matches("<polyline").count(), 3, "p50, p99 and max");
        let markdown = report.markdown();
        assert!(markdown.contains("| authorize | 16 |"), "{markdown}");
    }
}
