//! Identifiers. Each is a short string chosen by the caller (the network's lifecycle key, the
//! app's member id, ...), kept inline without allocation when it is 24 bytes or shorter.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::fmt;

use crate::limits::ID_BYTES_MAX;

/// Why a string cannot be an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("identifier is empty")]
    Empty,
    #[error("identifier is {length} bytes; at most {ID_BYTES_MAX} are allowed")]
    TooLong { length: usize },
    #[error("identifier may contain only ASCII letters, digits and - _ . : / (found {found:?})")]
    BadCharacter { found: char },
}

fn check_id(text: &str) -> Result<(), IdError> {
    if text.is_empty() {
        return Err(IdError::Empty);
    }
    if text.len() > ID_BYTES_MAX {
        return Err(IdError::TooLong { length: text.len() });
    }
    if let Some(found) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/')))
    {
        return Err(IdError::BadCharacter { found });
    }
    Ok(())
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "CompactString", into = "CompactString")]
        pub struct $name(CompactString);

        impl $name {
            /// Checks the shape (non-empty, bounded, printable ASCII) and builds the id.
            pub fn new(text: &str) -> Result<Self, IdError> {
                check_id(text)?;
                Ok(Self(CompactString::new(text)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<CompactString> for $name {
            type Error = IdError;
            fn try_from(text: CompactString) -> Result<Self, IdError> {
                check_id(&text)?;
                Ok(Self(text))
            }
        }

        impl From<$name> for CompactString {
            fn from(id: $name) -> CompactString {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0.as_str())
            }
        }
    };
}

identifier!(
    /// A shared account.
    AccountId
);
identifier!(
    /// A member of one account (a person, from the app's point of view).
    MemberId
);
identifier!(
    /// A card's token id. The PAN never reaches the core.
    CardId
);
identifier!(
    /// One authorization lifecycle (a hold and everything that happens to it), or one
    /// withdrawal. The gateway derives it from the network's lifecycle key.
    AuthorizationId
);
identifier!(
    /// The key a network or client puts on one message so a retransmission is recognised.
    IdempotencyKey
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_check_their_shape() {
        assert!(CardId::new("card-1").is_ok());
        assert_eq!(CardId::new(""), Err(IdError::Empty));
        assert_eq!(
            MemberId::new(&"x".repeat(65)),
            Err(IdError::TooLong { length: 65 })
        );
        assert_eq!(
            AccountId::new("a b"),
            Err(IdError::BadCharacter { found: ' ' })
        );
    }

    #[test]
    fn identifiers_refuse_bad_shapes_when_deserialized() {
        let parsed: Result<CardId, _> = serde_json_like("\"\"");
        assert!(parsed.is_err());
    }

    // The core has no JSON dependency; a tiny deserializer from a quoted string is enough to
    // show that `try_from` runs on the way in.
    fn serde_json_like(text: &str) -> Result<CardId, IdError> {
        let inner = text.trim_matches('"');
        CardId::try_from(CompactString::new(inner))
    }
}
