//! An outcome kept for idempotent repeats ([`RecordedOutcome`]): what a repeat of a message
//! is answered with, and what retention forgets.

use serde::{Deserialize, Serialize};

use crate::command::Fingerprint;
use crate::ids::AuthorizationId;
use crate::outcome::Outcome;
use crate::time::Timestamp;

/// An outcome kept for idempotent repeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedOutcome {
    pub fingerprint: Fingerprint,
    pub outcome: Outcome,
    pub authorization: Option<AuthorizationId>,
    pub at: Timestamp,
}
