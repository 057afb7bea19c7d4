//! # tandem-tests
//!
//! Cross-crate integration tests that start real processes on real sockets and files
//! (server, crash and interoperability tests). They arrive with the server; the pure core's
//! own tests live in `core/tests/`.
