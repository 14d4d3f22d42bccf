//! The runtime's domain types: what goes into a component call and what comes back.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A rule as the host hands it to a component.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: i64,
    pub r#ref: String,
    /// `None` for a bootstrap entry without a ref: the component infers it from the params.
    pub trigger_ref: Option<String>,
    pub trigger_params: serde_json::Value,
}

impl Rule {
    /// A trigger ref as a source gave it: blank (or absent) means none, and the component
    /// infers the ref from the params. Every source (the API listing, lifecycle messages,
    /// `ATTUNE_SENSOR_TRIGGERS`, a local rules file) reads it through here.
    pub fn given_trigger_ref(given: Option<String>) -> Option<String> {
        given.filter(|t| !t.trim().is_empty())
    }
}

/// The kind of a validated schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    Interval,
    Cron,
    OneShot,
    Rrule,
}

/// A rule's params as the component validated and normalized them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The trigger ref the rule is handled under (inferred when the rule had none).
    pub trigger_ref: String,
    pub kind: TimerKind,
    /// The normalized schedule, a JSON object's text. Opaque to the host: it is only shown
    /// and passed back to the component that produced it.
    pub spec: String,
    /// IANA zone the schedule runs in; used only to display times.
    pub timezone: String,
}

impl Schedule {
    /// The spec as JSON, for display. The host checked it is an object when it came back.
    pub fn spec_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.spec).unwrap_or(serde_json::Value::Null)
    }
}

/// One fire of a rule, as the host saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fire {
    pub rule_id: i64,
    pub rule_ref: String,
    pub trigger_ref: String,
    pub sensor_ref: String,
    pub scheduled_at: DateTime<Utc>,
    pub fired_at: DateTime<Utc>,
    pub execution_count: u64,
    pub next_fire_at: Option<DateTime<Utc>>,
}

/// What a component says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentInfo {
    pub name: String,
    pub version: String,
    pub trigger_refs: Vec<String>,
    /// The `attune:timer` package version the component exports.
    pub wit_version: String,
    /// SHA-256 of the component's bytes, hex.
    pub content_hash: String,
}

impl ComponentInfo {
    pub fn handles(&self, trigger_ref: &str) -> bool {
        self.trigger_refs.iter().any(|r| r == trigger_ref)
    }
}

/// A component's refusal of a rule's params: a domain error, not a fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}{message}", field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
pub struct RuleError {
    pub field: Option<String>,
    pub message: String,
}

/// Why one call into a component failed. Every variant concerns that call only: the
/// instance is replaced when needed and other rules carry on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The component refused the params (or a stored schedule).
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// The call ran past its CPU deadline and was interrupted.
    #[error("component call `{func}` exceeded its CPU deadline of {deadline_ms} ms")]
    Deadline {
        func: &'static str,
        deadline_ms: u64,
    },
    /// The instance tried to grow its memory past the cap.
    #[error("component call `{func}` exceeded the memory cap of {cap_bytes} bytes")]
    MemoryCap {
        func: &'static str,
        cap_bytes: usize,
    },
    /// The call trapped (a panic, an abort, invalid data across the boundary...).
    #[error("component call `{func}` trapped: {detail}")]
    Trap { func: &'static str, detail: String },
    /// The call returned, but with an answer the host does not accept.
    #[error("component call `{func}` returned an invalid answer: {detail}")]
    BadAnswer { func: &'static str, detail: String },
    /// A fresh instance could not be created.
    #[error("cannot instantiate the component: {0}")]
    Instantiate(String),
}

impl CallError {
    /// The params error, when that is what this is.
    pub fn as_rule_error(&self) -> Option<&RuleError> {
        match self {
            CallError::Rule(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read component file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    #[error(
        "component does not export the `attune:timer/timer` interface (it exports: {exports})"
    )]
    NotATimer { exports: String },
    #[error(
        "component implements attune:timer@{found}, which this host cannot run: \
         it speaks attune:timer@{host} (compatible: {compatible})"
    )]
    IncompatibleVersion {
        found: String,
        host: &'static str,
        compatible: String,
    },
    #[error(
        "component imports {imports}, which this host does not grant \
         (a timer component may import only WASI 0.2 without wasi:http, and attune:timer \
         types; componentize-js leaves wasi:http out with `--disable http fetch-event`)"
    )]
    ForbiddenImports { imports: String },
    #[error("cannot link the component: {0}")]
    Link(String),
    #[error("component failed `describe`: {0}")]
    Describe(CallError),
    #[error("component's `describe` answer is unusable: {0}")]
    BadDescription(String),
}
