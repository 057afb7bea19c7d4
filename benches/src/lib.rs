//! # tandem-benches
//!
//! Criterion benchmarks (`benches/`) and profiling workloads (`examples/`). Figures and the
//! commands that produce them are in `docs/BENCHMARKS.md`.

/// This process's resident set (`VmRSS`), in bytes; 0 where `/proc` does not say.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
