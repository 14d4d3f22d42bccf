//! An event on its way out, and where the clock hands it: the seam between the clock
//! (which decides *when*) and delivery (the API outbox, or stdout in local mode).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// One fire of one rule, ready to be sent as `POST /api/v1/events`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub rule_id: i64,
    /// The trigger ref the event is created for.
    pub trigger_ref: String,
    /// The payload the component built (a JSON object).
    pub payload: Map<String, Value>,
    /// The instant the schedule named; used in logs when delivery fails.
    pub scheduled_at: DateTime<Utc>,
}

impl Event {
    /// The request body of `POST /api/v1/events` (contract §1.8).
    pub fn body(&self) -> Value {
        serde_json::json!({
            "trigger_ref": self.trigger_ref,
            "payload": Value::Object(self.payload.clone()),
            "trigger_instance_id": format!("rule_{}", self.rule_id),
        })
    }
}

/// Where the clock hands fired events. Must not block: the clock runs every rule.
pub trait EventSink: Send + Sync + 'static {
    fn submit(&self, event: Event);
}
