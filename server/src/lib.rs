//! # tandem-server
//!
//! The `tandem` binary's parts, in layers. Requests enter through one hyper/tower stack
//! ([`serve`]) whose shared layers ([`observe`]) authenticate and measure them; a gateway in
//! [`edge`] (gRPC, HTTP/JSON, ISO 8583) decodes its wire into core types and calls an
//! operation in [`ops`], which checks scope first, applies the rules every gateway shares and
//! executes through [`app::App`] on the durable account system (`tandem-actors`); failures
//! are one [`ops::OpError`], mapped once per protocol.

pub mod app;
pub mod backup;
pub mod config;
pub mod edge;
pub mod keys;
pub mod limits;
pub mod names;
pub mod observe;
pub mod ops;
pub mod serve;
