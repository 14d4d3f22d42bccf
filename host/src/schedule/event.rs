//! An event on its way out, and where the clock hands it: the seam between the clock
//! (which decides *when*) and delivery (the API outbox, or stdout in local mode).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;

pub use crate::component::Payload;

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
    /// The request body of `POST /api/v1/events` (docs/platform.md §1.8), as JSON text.
    pub fn body(&self) -> String {
        #[derive(Serialize)]
        struct Body<'a> {
            trigger_ref: &'a str,
            payload: &'a RawValue,
            trigger_instance_id: String,
        }
        serde_json::to_string(&Body {
            trigger_ref: &self.trigger_ref,
            payload: self.payload.as_raw(),
            trigger_instance_id: format!("rule_{}", self.rule_id),
        })
        .expect("a body of strings and checked JSON always serializes")
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
    use serde_json::Value;

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
