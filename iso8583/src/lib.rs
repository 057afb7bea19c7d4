//! ISO 8583:1987 as Tandem speaks it (`shared/iso8583-profile.md`): a 4-digit ASCII MTI,
//! bitmaps as 8 raw bytes (or 16 hex characters, by configuration), ASCII field data laid out
//! by the 1987 field table in [`spec`], and a 2-byte big-endian length before every message.
//!
//! The crate is pure: bytes in, [`Message`] out, and back. Every malformed input is an exact
//! [`DecodeError`] naming the part and field at fault, never a panic; the fuzz target in
//! `fuzz/` holds it to that.

mod framing;
mod message;
pub mod spec;

pub use framing::{FrameError, Framer, frame, frame_into};
pub use message::{BitmapEncoding, DecodeError, EncodeError, Malformed, Message, Mti};
