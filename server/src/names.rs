//! The stable snake_case names of core values, as every wire, metric and log shows them.

use serde::Serialize;

/// The snake_case name serde gives a core enum value (`insufficient_funds`).
pub fn snake<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => "unknown".to_owned(),
    }
}
