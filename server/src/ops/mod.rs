//! The operations every gateway calls, and [`OpError`], their one error type.
//!
//! Today the operations themselves are methods of [`crate::app::App`]; they move here family
//! by family (the operation-layer issue). What is here already is the error every operation
//! returns and its one mapping per protocol.

pub mod error;

pub use error::OpError;
