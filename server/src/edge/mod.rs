//! The gateways: each decodes its wire into an operation's arguments, calls the operation
//! (today `crate::app::App`'s methods, moving to `crate::ops`), and encodes the outcome or
//! the `OpError` back onto its wire. No gateway touches state of its own.
//!
//! - [`grpc`]: `tandem.v1` over tonic, unary and the bidirectional processor stream.
//! - [`http`]: the same contract as HTTP/JSON (axum), problem+json errors.
//! - [`iso8583`]: ISO 8583:1987 links as card networks send them (the profile's messages).

pub mod grpc;
pub mod http;
pub mod iso8583;
