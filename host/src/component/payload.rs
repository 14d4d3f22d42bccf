//! An event payload as the component wrote it.

use std::fmt;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// An event payload: the text of a JSON object, as the component wrote it. Checked once
/// when it is made and never parsed again on the way out, because the clock releases
/// payloads it built ahead of time in bulk, at the deadline.
#[derive(Clone)]
pub struct Payload(Box<RawValue>);

/// Why a text is not a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payload is not the text of a JSON object")]
pub struct NotAnObject;

impl Payload {
    /// Checks that `text` is one JSON object.
    pub fn from_text(text: String) -> Result<Self, NotAnObject> {
        let raw = RawValue::from_string(text).map_err(|_| NotAnObject)?;
        // `RawValue` keeps surrounding whitespace only when there is some; an object
        // starts with `{` once that is trimmed.
        if raw.get().trim_start().starts_with('{') {
            Ok(Self(raw))
        } else {
            Err(NotAnObject)
        }
    }

    /// The JSON text, as a raw JSON value (for embedding in a request body unparsed).
    pub fn as_raw(&self) -> &RawValue {
        &self.0
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The payload as a JSON object (parses it).
    pub fn to_map(&self) -> Map<String, Value> {
        match serde_json::from_str(self.0.get()) {
            Ok(Value::Object(map)) => map,
            _ => unreachable!("checked to be a JSON object when made"),
        }
    }
}

impl From<Map<String, Value>> for Payload {
    fn from(map: Map<String, Value>) -> Self {
        let text = Value::Object(map).to_string();
        Self(RawValue::from_string(text).expect("a serialized map is JSON"))
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_must_be_an_object() {
        assert!(Payload::from_text(r#" {"a":1} "#.into()).is_ok());
        for bad in ["[1]", "\"x\"", "{", "", "1"] {
            assert_eq!(Payload::from_text(bad.into()), Err(NotAnObject), "{bad}");
        }
    }
}
