//! # tandem-proto
//!
//! The gRPC contract (`tandem.v1`). Filled by the issue "The Tandem server"; depends on
//! nothing of ours, so the server and the load tester can share it.
