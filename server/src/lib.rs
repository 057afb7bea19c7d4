//! # tandem-server
//!
//! The `tandem` binary's parts. Requests enter through one hyper/tower stack
//! ([`serve`]) whose shared layers ([`observe`]) authenticate and measure them, are adapted
//! by [`grpc`] or [`http`] into calls on [`app::App`], which checks scope, parses with
//! [`convert`], and executes on the durable account system (`tandem-actors`).

pub mod app;
pub mod backup;
pub mod config;
pub mod convert;
pub mod grpc;
pub mod http;
pub mod iso8583;
pub mod keys;
pub mod observe;
pub mod ops;
pub mod serve;
pub mod watch;
