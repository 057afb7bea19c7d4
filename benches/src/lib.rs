//! # tandem-benches
//!
//! Criterion benchmarks (`benches/`) and profiling workloads (`examples/`). Figures and the
//! commands that produce them are in `docs/BENCHMARKS.md`.
