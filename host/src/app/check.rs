//! The `check` command: what a rule's params mean to a component, without running anything.
//!
//! It validates the params, lists the next fires and builds the first fire's payload, all
//! through the same runtime the daemon uses — so what `check` shows is what the daemon does.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::component::{CallError, Fire, Rule, RuleError, Schedule, TimerRuntime};

/// What to check.
#[derive(Debug, Clone)]
pub struct CheckRequest {
    /// `None` lets the component infer the kind from the params' keys.
    pub trigger_ref: Option<String>,
    pub params: Value,
    /// How many upcoming fires to list.
    pub count: usize,
    /// The instant the timer starts (and validation's "now").
    pub now: DateTime<Utc>,
    /// The `sensor_ref` the payload carries.
    pub sensor_ref: String,
}

/// What `check` found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub schedule: Schedule,
    pub now: DateTime<Utc>,
    /// Fewer than asked for when the schedule ends.
    pub next_fires: Vec<DateTime<Utc>>,
    /// The first fire's payload; `None` when there is no fire at all.
    pub payload: Option<Map<String, Value>>,
}

/// Runs the check. A [`CallError::Rule`] means the params are bad; anything else is a
/// fault of the component.
pub fn run(runtime: &TimerRuntime, req: &CheckRequest) -> Result<CheckReport, CallError> {
    let rule = Rule {
        id: 0,
        r#ref: "check".into(),
        trigger_ref: req.trigger_ref.clone(),
        trigger_params: req.params.clone(),
    };
    let schedule = runtime.validate(&rule, req.now)?;
    // One more than asked for: the payload names the fire after the first.
    let mut fires = Vec::with_capacity(req.count + 1);
    let mut after = req.now;
    while fires.len() < req.count.max(2) {
        match runtime.next_fire(&schedule, req.now, after)? {
            Some(next) => {
                fires.push(next);
                after = next;
            }
            None => break,
        }
    }
    let payload = match fires.first() {
        Some(&first) => Some(runtime.build_payload(
            &schedule,
            &Fire {
                rule_id: rule.id,
                rule_ref: rule.r#ref.clone(),
                trigger_ref: schedule.trigger_ref.clone(),
                sensor_ref: req.sensor_ref.clone(),
                scheduled_at: first,
                fired_at: first,
                execution_count: 1,
                next_fire_at: fires.get(1).copied(),
            },
        )?),
        None => None,
    };
    fires.truncate(req.count);
    Ok(CheckReport {
        schedule,
        now: req.now,
        next_fires: fires,
        payload,
    })
}

/// RFC 3339 in UTC, `Z`, fractions only when present: the format of every time we print.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The machine-readable form: `{"trigger_ref", "schedule", "next_fires", "payload"}`.
pub fn to_json(report: &CheckReport) -> Value {
    json!({
        "trigger_ref": report.schedule.trigger_ref,
        "schedule": report.schedule.spec_json(),
        "next_fires": report.next_fires.iter().map(|t| rfc3339(*t)).collect::<Vec<_>>(),
        "payload": report.payload.clone().map(Value::Object).unwrap_or(Value::Null),
    })
}

/// The machine-readable form of a refusal: `{"error": {"field", "message"}}`.
pub fn error_json(error: &RuleError) -> Value {
    json!({ "error": { "field": error.field, "message": error.message } })
}

/// The human-readable form.
pub fn to_text(report: &CheckReport, runtime: &TimerRuntime) -> String {
    use std::fmt::Write;
    let info = runtime.info();
    let zone: Option<chrono_tz::Tz> = report.schedule.timezone.parse().ok();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Component:   {} {} (attune:timer@{}, sha256 {})",
        info.name,
        info.version,
        info.wit_version,
        &info.content_hash[..12]
    );
    let _ = writeln!(
        out,
        "Trigger ref: {} ({:?})",
        report.schedule.trigger_ref, report.schedule.kind
    );
    let _ = writeln!(out, "Schedule:    {}", report.schedule.spec);
    let _ = writeln!(out, "Time zone:   {}", report.schedule.timezone);
    let _ = writeln!(out, "Now:         {}", rfc3339(report.now));
    let _ = writeln!(out);
    if report.next_fires.is_empty() {
        let _ = writeln!(out, "No upcoming fires: the schedule has ended.");
    } else {
        let _ = writeln!(out, "Next {} fire(s):", report.next_fires.len());
        for (i, t) in report.next_fires.iter().enumerate() {
            let local = zone
                .map(|z| {
                    t.with_timezone(&z)
                        .format("%Y-%m-%d %H:%M:%S %Z (%:z) %a")
                        .to_string()
                })
                .unwrap_or_default();
            let _ = writeln!(out, "  {:>3}  {:<25} {}", i + 1, rfc3339(*t), local);
        }
    }
    if let Some(payload) = &report.payload {
        let _ = writeln!(out);
        let _ = writeln!(out, "Payload of the first fire:");
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(payload).unwrap_or_default()
        );
    }
    out
}
