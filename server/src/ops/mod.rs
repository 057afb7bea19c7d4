//! The operations every gateway calls, and [`OpError`], their one error type.
//!
//! Today the operations themselves are methods of [`crate::app::App`]; they move here family
//! by family (the operation-layer issue). What is here already is the error every operation
//! returns with its one mapping per protocol, and [`route`]: where an account's commands run.

pub mod deadline;
pub mod error;
pub mod route;

pub use error::OpError;
pub use route::{Route, route};
