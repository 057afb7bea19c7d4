//! # tandem-tests
//!
//! Cross-crate integration tests that run real processes on real files: `tests/crash.rs`
//! kills the engine with SIGKILL at random points (through the `tandem-crash-worker`
//! binary) and checks that every acknowledged approval survived exactly once, after plain
//! kills and after simulated power cuts ([`power`]).

pub mod power;
