//! The gateways: each decodes its wire into an operation's arguments (core types), calls the
//! operation in `crate::ops`, and encodes the outcome or the `OpError` back onto its wire.
//! No gateway touches state of its own.
//!
//! - [`v1`]: the `tandem.v1` contract both of the next two speak: request message → core
//!   types → operation → response message, in one place.
//! - [`grpc`]: `tandem.v1` over tonic, unary and the bidirectional processor stream.
//! - [`http`]: the same contract as HTTP/JSON (axum), problem+json errors.
//! - [`iso8583`]: ISO 8583:1987 links as card networks send them (the profile's messages).

pub mod grpc;
pub mod http;
pub mod iso8583;
pub mod v1;
