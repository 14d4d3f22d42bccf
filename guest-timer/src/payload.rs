//! Event payloads: exactly the platform's shapes (contract §1.8), because the API checks
//! payloads against each trigger's `out_schema` and answers 422 on a mismatch.
//!
//! The shape follows the timer *kind*, not the trigger ref, so a rule that came in under
//! `core.timer` sends the payload of its kind. Fields appear in the platform's order (serde
//! structs keep declaration order). Corrections over the platform: `scheduled_at` is the tick
//! the schedule named, `next_fire_at` the real next tick and `delay_ms = fired_at − scheduled`
//! (never negative); all timestamps are RFC 3339 UTC with `Z`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::datetime::format_utc;
use crate::error::ParamError;
use crate::spec::TimerSpec;
use crate::Fire;

#[derive(Serialize)]
struct IntervalPayload<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    interval_seconds: u64,
    fired_at: String,
    execution_count: u64,
    sensor_ref: &'a str,
}

#[derive(Serialize)]
struct CronPayload<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    fired_at: String,
    scheduled_at: String,
    expression: &'a str,
    timezone: &'static str,
    next_fire_at: String,
    execution_count: u64,
    sensor_ref: &'a str,
}

#[derive(Serialize)]
struct OneShotPayload<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    fire_at: String,
    fired_at: String,
    timezone: &'static str,
    delay_ms: i64,
    sensor_ref: &'a str,
}

#[derive(Serialize)]
struct RrulePayload<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    fired_at: String,
    scheduled_at: String,
    delay_ms: i64,
    execution_count: u64,
    sensor_ref: &'a str,
}

/// `fired_at − scheduled_at` in whole milliseconds, 0 when the fire was early.
fn delay_ms(scheduled_at: DateTime<Utc>, fired_at: DateTime<Utc>) -> i64 {
    (fired_at - scheduled_at).num_milliseconds().max(0)
}

/// The payload JSON text for one fire of a rule with this schedule.
pub fn build(spec: &TimerSpec, fire: &Fire) -> Result<String, ParamError> {
    let text = match spec {
        TimerSpec::Interval(s) => serde_json::to_string(&IntervalPayload {
            kind: "interval",
            interval_seconds: s.seconds(),
            fired_at: format_utc(fire.fired_at),
            execution_count: fire.execution_count,
            sensor_ref: fire.sensor_ref,
        }),
        TimerSpec::Cron(s) => serde_json::to_string(&CronPayload {
            kind: "cron",
            fired_at: format_utc(fire.fired_at),
            scheduled_at: format_utc(fire.scheduled_at),
            expression: s.expression(),
            timezone: s.timezone().name(),
            // The platform sends the string "unknown" when it has no next fire.
            next_fire_at: fire
                .next_fire_at
                .map_or_else(|| "unknown".to_string(), format_utc),
            execution_count: fire.execution_count,
            sensor_ref: fire.sensor_ref,
        }),
        TimerSpec::OneShot(s) => serde_json::to_string(&OneShotPayload {
            kind: "one_shot",
            fire_at: format_utc(fire.scheduled_at),
            fired_at: format_utc(fire.fired_at),
            timezone: s.timezone().name(),
            delay_ms: delay_ms(fire.scheduled_at, fire.fired_at),
            sensor_ref: fire.sensor_ref,
        }),
        TimerSpec::Rrule(_) => serde_json::to_string(&RrulePayload {
            kind: "rrule",
            fired_at: format_utc(fire.fired_at),
            scheduled_at: format_utc(fire.scheduled_at),
            delay_ms: delay_ms(fire.scheduled_at, fire.fired_at),
            execution_count: fire.execution_count,
            sensor_ref: fire.sensor_ref,
        }),
    };
    text.map_err(|e| ParamError::general(format!("Could not serialize the event payload: {e}")))
}
