//! # tandem-storage
//!
//! The durable log (openraft's log, group-committed with fdatasync) and the sled state
//! applied from it. Filled by the issue "Durable account actors"; depends only on
//! `tandem-core`.
