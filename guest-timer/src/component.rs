//! The WebAssembly component: the `attune:timer` WIT interface over the native API.
//!
//! Parsed schedules are cached by spec text, so the host's repeated `next-fire` and
//! `build-payload` calls for a rule do not re-parse its cron or RRULE; `validate` puts the
//! schedule it parsed under the text it returns, so the rule's first `next-fire` is a hit too.
//!
//! The cache ([`SpecCache`]) is bounded and deterministic; see its module.

use std::cell::RefCell;
use std::rc::Rc;

use chrono::{DateTime, Utc};

use crate::spec_cache::SpecCache;
use crate::{RuleInput, TimerKind as Kind, TimerSpec};

wit_bindgen::generate!({
    path: "../wit",
    world: "timer-component",
});

use attune::timer::types::{ComponentInfo, Fire, Instant, ParamError, Rule, Schedule, TimerKind};
use exports::attune::timer::timer::Guest;

thread_local! {
    static CACHE: RefCell<SpecCache> = const { RefCell::new(SpecCache::new()) };
}

/// The parsed spec for `text`, from the cache or freshly parsed (and then cached).
fn parsed(text: &str) -> Result<Rc<TimerSpec>, crate::ParamError> {
    if let Some(hit) = CACHE.with(|c| c.borrow().get(text)) {
        return Ok(hit);
    }
    let spec = Rc::new(TimerSpec::from_json(text)?);
    CACHE.with(|c| c.borrow_mut().insert(text, Rc::clone(&spec)));
    Ok(spec)
}

fn to_wit_error(e: crate::ParamError) -> ParamError {
    ParamError {
        field: e.field,
        message: e.message,
    }
}

fn from_instant(field: &str, i: Instant) -> Result<DateTime<Utc>, ParamError> {
    if i.nanoseconds >= 1_000_000_000 {
        return Err(ParamError {
            field: None,
            message: format!(
                "Invalid instant for {field}: nanoseconds {} is not below 10^9",
                i.nanoseconds
            ),
        });
    }
    DateTime::from_timestamp(i.seconds, i.nanoseconds).ok_or_else(|| ParamError {
        field: None,
        message: format!(
            "Invalid instant for {field}: {} seconds is out of range",
            i.seconds
        ),
    })
}

fn to_instant(t: DateTime<Utc>) -> Instant {
    Instant {
        seconds: t.timestamp(),
        nanoseconds: t.timestamp_subsec_nanos().min(999_999_999),
    }
}

struct Component;

impl Guest for Component {
    fn describe() -> ComponentInfo {
        let info = crate::describe();
        ComponentInfo {
            name: info.name.to_string(),
            version: info.version.to_string(),
            trigger_refs: info.trigger_refs.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn validate(rule: Rule, now: Instant) -> Result<Schedule, ParamError> {
        let now = from_instant("now", now)?;
        let input = RuleInput {
            id: rule.id,
            rule_ref: &rule.ref_,
            trigger_ref: rule.trigger_ref.as_deref(),
            params: &rule.trigger_params,
        };
        let (validated, spec) = crate::validate_parsed(&input, now).map_err(to_wit_error)?;
        // The host hands `validated.spec` back to `next-fire`, so that is the key; `spec` is
        // only given when reading that text gives this same schedule.
        if let Some(spec) = spec {
            CACHE.with(|c| c.borrow_mut().insert(&validated.spec, Rc::new(spec)));
        }
        Ok(Schedule {
            trigger_ref: validated.trigger_ref,
            kind: match validated.kind {
                Kind::Interval => TimerKind::Interval,
                Kind::Cron => TimerKind::Cron,
                Kind::OneShot => TimerKind::OneShot,
                Kind::Rrule => TimerKind::Rrule,
            },
            spec: validated.spec,
            timezone: validated.timezone,
        })
    }

    fn next_fire(
        spec: String,
        started_at: Instant,
        after: Instant,
    ) -> Result<Option<Instant>, ParamError> {
        let started_at = from_instant("started-at", started_at)?;
        let after = from_instant("after", after)?;
        let spec = parsed(&spec).map_err(to_wit_error)?;
        crate::next_fire_parsed(&spec, started_at, after)
            .map(|next| next.map(to_instant))
            .map_err(to_wit_error)
    }

    fn build_payload(spec: String, fire: Fire) -> Result<String, ParamError> {
        let spec = parsed(&spec).map_err(to_wit_error)?;
        let native = crate::Fire {
            rule_id: fire.rule_id,
            rule_ref: &fire.rule_ref,
            trigger_ref: &fire.trigger_ref,
            sensor_ref: &fire.sensor_ref,
            scheduled_at: from_instant("scheduled-at", fire.scheduled_at)?,
            fired_at: from_instant("fired-at", fire.fired_at)?,
            execution_count: fire.execution_count,
            next_fire_at: fire
                .next_fire_at
                .map(|i| from_instant("next-fire-at", i))
                .transpose()?,
        };
        crate::build_payload_parsed(&spec, &native).map_err(to_wit_error)
    }
}

export!(Component);
