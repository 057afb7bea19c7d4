//! The operations every gateway calls, and [`OpError`], their one error type.
//!
//! The operations move here family by family (the operation-layer issue); the rest are still
//! methods of [`crate::app::App`]. Here already: [`card_traffic`], which every gateway's card
//! traffic goes through (gRPC, the processor stream, HTTP, ISO 8583); [`deadline`], the card
//! networks' deadline rule; [`OpError`], the error every operation returns, with its one
//! mapping per protocol; and [`route`]: where an account's commands run.

pub mod card_traffic;
pub mod deadline;
pub mod error;
pub mod route;

pub use error::OpError;
pub use route::{Route, route};
