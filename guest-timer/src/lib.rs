//! The default Attune timer logic: decides *when* a timer rule fires and *what* its event
//! says, as pure functions of their inputs (no clock, files, randomness or environment).
//!
//! Built two ways: natively as an rlib (unit tests, the host's conformance tests and
//! benchmarks call the API below directly) and for `wasm32-wasip2` as a WebAssembly
//! component exporting the `attune:timer` WIT interface (`component.rs`).
//!
//! Modules, one concern each:
//! - [`error`]: [`ParamError`], the only error (it is what the WIT contract can carry).
//! - [`params`]: reads a rule's `trigger_params` (selection by trigger ref, `type` tags,
//!   legacy and StackStorm forms, key inference) into a [`TimerSpec`], with the checks that
//!   depend on "now".
//! - [`spec`]: [`TimerSpec`], the normalized schedule, and its JSON text (the WIT
//!   `schedule.spec`), which round-trips exactly and is re-checked when read back.
//! - [`interval`], [`cron`], [`oneshot`], [`rrule`]: each kind's values, checks and
//!   "next fire strictly after an instant".
//! - [`datetime`]: time zones, date-time text and local-time resolution across DST.
//! - [`payload`]: the event payloads, in the platform's exact shapes.
//! - `component` (wasm32 only): the WIT bindings over this API, with a small parse cache
//!   (`spec_cache`).

pub mod cron;
pub mod datetime;
pub mod error;
pub mod interval;
pub mod oneshot;
pub mod params;
pub mod payload;
pub mod rrule;
pub mod spec;
// Used by `component` only; tested natively.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod spec_cache;

#[cfg(target_arch = "wasm32")]
mod component;

use chrono::{DateTime, Utc};

pub use error::ParamError;
pub use params::TRIGGER_REFS;
pub use spec::TimerSpec;

/// The component's name, as `describe` reports it.
pub const COMPONENT_NAME: &str = "attune-timer-rust";

/// The component's version, as `describe` reports it.
pub const COMPONENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A rule, as the Attune platform stores it (the WIT `rule` record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleInput<'a> {
    /// The rule's numeric id.
    pub id: i64,
    /// The rule's ref (may be empty).
    pub rule_ref: &'a str,
    /// The rule's trigger ref; `None` (or empty) when the rule came without one, and the kind
    /// is then inferred from the params.
    pub trigger_ref: Option<&'a str>,
    /// The rule's `trigger_params`: the text of one JSON value (normally an object).
    pub params: &'a str,
}

/// The broad kind of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    Interval,
    Cron,
    OneShot,
    Rrule,
}

/// A rule's params, validated and normalized (the WIT `schedule` record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// The trigger ref the rule is handled under (the inferred one when it had none).
    pub trigger_ref: String,
    /// The kind of timer.
    pub kind: TimerKind,
    /// The normalized schedule as JSON text; pass it back to [`next_fire`] and
    /// [`build_payload`]. Equal texts behave identically.
    pub spec: String,
    /// The IANA zone the schedule is evaluated in (`UTC` when none was given).
    pub timezone: String,
}

/// One fire of a rule, as the host saw it (the WIT `fire` record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fire<'a> {
    pub rule_id: i64,
    pub rule_ref: &'a str,
    pub trigger_ref: &'a str,
    pub sensor_ref: &'a str,
    /// The instant the schedule named for this fire.
    pub scheduled_at: DateTime<Utc>,
    /// The instant the host actually fired.
    pub fired_at: DateTime<Utc>,
    /// Fires of this rule so far, this one included (starts at 1).
    pub execution_count: u64,
    /// The rule's next fire after this one; `None` when the schedule has ended.
    pub next_fire_at: Option<DateTime<Utc>>,
}

/// How far after "now" (or after the previous fire) a fire may lie: 365,000 days, i.e. 1000
/// years, slightly less than the host's own limit (1000 × 366 days), past which the host
/// refuses an answer as absurdly far. A rule whose first fire lies further is refused at
/// validation; a later fire further than this from the one before counts as the schedule's
/// end (`None`), so that no call the host makes ever fails on it.
pub const MAX_HORIZON_DAYS: i64 = 365_000;

/// [`MAX_HORIZON_DAYS`] as messages say it.
pub const MAX_HORIZON_TEXT: &str = "1000 years (365,000 days)";

/// Whether `next` lies beyond the horizon after `after`.
pub(crate) fn beyond_horizon(after: DateTime<Utc>, next: DateTime<Utc>) -> bool {
    after
        .checked_add_signed(chrono::Duration::days(MAX_HORIZON_DAYS))
        .is_some_and(|limit| next > limit)
}

/// What the component says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComponentInfo {
    pub name: &'static str,
    pub version: &'static str,
    pub trigger_refs: &'static [&'static str],
}

/// Names the component and the trigger refs it handles.
pub fn describe() -> ComponentInfo {
    ComponentInfo {
        name: COMPONENT_NAME,
        version: COMPONENT_VERSION,
        trigger_refs: &TRIGGER_REFS,
    }
}

/// Reads a rule's params in its trigger's format and returns the normalized schedule, or an
/// error naming the field at fault. `now` is the host's current time: a one-shot not after
/// it, or a cron/RRULE with no fire after it, is refused.
pub fn validate(rule: &RuleInput, now: DateTime<Utc>) -> Result<Validated, ParamError> {
    validate_parsed(rule, now).map(|(validated, _)| validated)
}

/// [`validate`], also handing back the parsed schedule when it is the one reading
/// [`Validated::spec`] back ([`TimerSpec::from_json`]) gives, so that a cache of parsed specs
/// keyed by their text can keep it instead of parsing the text again; `None` when that read
/// would not give it (a text too long to read back: [`next_fire`] then refuses it).
pub fn validate_parsed(
    rule: &RuleInput,
    now: DateTime<Utc>,
) -> Result<(Validated, Option<TimerSpec>), ParamError> {
    let (trigger_ref, spec) = params::read_rule(rule, now)?;
    let text = spec.to_json();
    let validated = Validated {
        trigger_ref,
        kind: spec.kind(),
        timezone: spec.timezone().to_string(),
        spec: text,
    };
    // Every other check `from_json` makes was made on the way in, by the same constructors
    // with the same values (the text round-trips them exactly; tests hold the two equal).
    let reusable = spec::readable(&validated.spec).then_some(spec);
    Ok((validated, reusable))
}

/// The first fire strictly after `after`, or `None` when the schedule has ended. `spec` is a
/// [`Validated::spec`]; `started_at` (when the host started the rule's timer) matters to
/// interval timers only: fire k is due at `started_at + k × interval`.
pub fn next_fire(
    spec: &str,
    started_at: DateTime<Utc>,
    after: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, ParamError> {
    next_fire_parsed(&TimerSpec::from_json(spec)?, started_at, after)
}

/// [`next_fire`] for an already parsed spec (saves re-parsing cron and RRULE text).
pub fn next_fire_parsed(
    spec: &TimerSpec,
    started_at: DateTime<Utc>,
    after: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, ParamError> {
    match spec.next_fire(started_at, after)? {
        // Every kind promises this; checked once here so no host ever sees otherwise.
        Some(next) if next <= after => Err(ParamError::general(format!(
            "Internal error: computed next fire {} is not after {}",
            datetime::format_utc(next),
            datetime::format_utc(after)
        ))),
        // Further than the host accepts: the schedule has, in effect, ended.
        Some(next) if beyond_horizon(after, next) => Ok(None),
        next => Ok(next),
    }
}

/// The event payload (JSON object text) for one fire of a rule with this `spec`.
pub fn build_payload(spec: &str, fire: &Fire) -> Result<String, ParamError> {
    payload::build(&TimerSpec::from_json(spec)?, fire)
}

/// [`build_payload`] for an already parsed spec.
pub fn build_payload_parsed(spec: &TimerSpec, fire: &Fire) -> Result<String, ParamError> {
    payload::build(spec, fire)
}

#[cfg(test)]
mod tests;
