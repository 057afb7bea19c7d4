//! # tandem-loadtest
//!
//! The SRE's load tester. `schedule` decides when requests are sent (Poisson arrivals, Zipf
//! account choice), `scenario` what they are and which accounts exist, `provision` creates
//! those accounts through the admin API, `op` is one request of the traffic, `target` speaks
//! gRPC (unary or the processor stream), HTTP or ISO 8583 (`iso`: links and the translation
//! of operations into messages) to one node (`reopen`: a stream or link to a node that came
//! back is opened again), `nodes` spreads calls over a cluster's nodes and
//! retries them across a failover, `watch` holds live balance streams and times each answer's
//! change on them, `run` drives open-loop, closed-loop or stepped load,
//! `report` keeps HDR
//! histograms and writes JSON and Markdown, and `audit` checks the server's money against
//! every answer the tester was given.

pub mod audit;
pub mod iso;
pub mod nodes;
pub mod op;
pub mod pending;
pub mod provision;
pub mod reopen;
pub mod report;
pub mod run;
pub mod scenario;
pub mod schedule;
pub mod target;
pub mod watch;
