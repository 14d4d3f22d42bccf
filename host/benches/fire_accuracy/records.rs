//! The fires the fake API received, as compact records on the daemon's UTC timeline.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::Value;

use attune_testkit::fake_api::RecordedEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cron,
    Interval,
}

#[derive(Debug, Clone, Copy)]
pub struct Rec {
    pub rule: i64,
    pub kind: Kind,
    /// The tick (daemon UTC, ns since the epoch).
    pub sched: i64,
    pub fired: i64,
    pub received: i64,
    pub execution_count: u64,
}

/// Maps a `std::time::Instant` onto the daemon's UTC timeline.
#[derive(Clone, Copy)]
pub struct TimeMap {
    pub instant: Instant,
    pub utc_ns: i64,
}

impl TimeMap {
    pub fn utc_ns(&self, at: Instant) -> i64 {
        match at.checked_duration_since(self.instant) {
            Some(d) => self.utc_ns + d.as_nanos() as i64,
            None => self.utc_ns - self.instant.duration_since(at).as_nanos() as i64,
        }
    }
}

fn parse_ns(v: &Value) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()?
        .timestamp_nanos_opt()
}

/// Interval rules: id → (started_at ns, interval ns).
pub type IntervalStarts = HashMap<i64, (i64, i64)>;

pub fn to_rec(ev: &RecordedEvent, map: &TimeMap, starts: &IntervalStarts) -> Option<Rec> {
    let body = &ev.body;
    let rule: i64 = body["trigger_instance_id"]
        .as_str()?
        .strip_prefix("rule_")?
        .parse()
        .ok()?;
    let p = &body["payload"];
    let fired = parse_ns(&p["fired_at"])?;
    let execution_count = p["execution_count"].as_u64().unwrap_or(0);
    let received = map.utc_ns(ev.received_at);
    match body["trigger_ref"].as_str()? {
        "core.crontimer" => Some(Rec {
            rule,
            kind: Kind::Cron,
            sched: parse_ns(&p["scheduled_at"])?,
            fired,
            received,
            execution_count,
        }),
        "core.intervaltimer" => {
            let (start, every) = *starts.get(&rule)?;
            // The tick it fired for: the last `start + k × interval` at or before fired_at
            // (a fire is never early; see the clock's docs).
            let k = (fired - start).div_euclid(every);
            Some(Rec {
                rule,
                kind: Kind::Interval,
                sched: start + k * every,
                fired,
                received,
                execution_count,
            })
        }
        _ => None,
    }
}
