//! An event on its way out, and where the clock hands it: the seam between the clock
//! (which decides *when*) and delivery (the API outbox, or stdout in local mode).

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// One fire of one rule, ready to be sent as `POST /api/v1/events`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub rule_id: i64,
    /// The trigger ref the event is created for (shared with the rule's timer: the clock
    /// makes thousands of events at once).
    pub trigger_ref: Arc<str>,
    /// The payload the component built.
    pub payload: Payload,
    /// The instant the schedule named; used in logs when delivery fails.
    pub scheduled_at: DateTime<Utc>,
}

impl Event {
    /// The request body of `POST /api/v1/events` (contract §1.8), as JSON text.
    pub fn body(&self) -> String {
        #[derive(Serialize)]
        struct Body<'a> {
            trigger_ref: &'a str,
            payload: &'a RawValue,
            trigger_instance_id: String,
        }
        serde_json::to_string(&Body {
            trigger_ref: &self.trigger_ref,
            payload: &self.payload.0,
            trigger_instance_id: format!("rule_{}", self.rule_id),
        })
        .expect("a body of strings and checked JSON always serializes")
    }
}

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

/// Where the clock hands fired events. Must not block: the clock runs every rule.
pub trait EventSink: Send + Sync + 'static {
    fn submit(&self, event: Event);

    /// Hands over many events at once, in order (the clock releases every fire due at the
    /// same moment together). Sinks that can take a batch more cheaply override it.
    fn submit_all(&self, events: Vec<Event>) {
        for event in events {
            self.submit(event);
        }
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

    #[test]
    fn body_carries_the_payload_verbatim() {
        let event = Event {
            rule_id: 7,
            trigger_ref: "core.intervaltimer".into(),
            payload: Payload::from_text(r#"{"type":"interval","n":1}"#.into()).unwrap(),
            scheduled_at: Utc::now(),
        };
        let body: Value = serde_json::from_str(&event.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "trigger_ref": "core.intervaltimer",
                "payload": {"type": "interval", "n": 1},
                "trigger_instance_id": "rule_7",
            })
        );
    }
}
