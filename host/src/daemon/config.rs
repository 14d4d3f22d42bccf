//! The daemon's settings: read from the environment or from one JSON object on stdin, then
//! validated in the platform's order with its exact messages (docs/platform.md §1.1).
//!
//! The environment is read through [`Env`], so tests hand in a map and never touch the
//! process environment. Validation order (the first failure is reported):
//!
//! 1. the required variables are present (`ATTUNE_API_URL`, `ATTUNE_API_TOKEN`,
//!    `ATTUNE_SENSOR_REF`; env only — stdin reports a missing key as a parse error, as the
//!    platform does), then exactly one transport: `ATTUNE_NOTIFIER_WS_URL` (the notifier
//!    WebSocket, platform V4+) or `ATTUNE_MQ_URL` (RabbitMQ, V1–V3). Neither is an error
//!    naming both; both is refused (see [`Transport`]). `ATTUNE_ALLOW_INSECURE_NOTIFIER_WS`
//!    (else `ATTUNE__SENSOR__ALLOW_INSECURE_NOTIFIER_WS`) must be `true` or `false`;
//! 2. `api_url cannot be empty`, `api_token cannot be empty`, `sensor_ref cannot be empty`,
//!    then for RabbitMQ `mq_url cannot be empty`, `mq_exchange cannot be empty`, for the
//!    WebSocket `notifier_ws_url cannot be empty`; `api_url must start with http:// or
//!    https://`; then for RabbitMQ `mq_url must start with amqp:// or amqps://` (the V1–V3
//!    list), for the WebSocket the sixth generation's URL checks (docs/platform.md §1.1.5);
//! 3. then ours: `api_url is not a valid URL`, the log level (an EnvFilter directive), the
//!    log format, `ATTUNE_SENSOR_TRIGGERS`, the component limits, and the outbox settings.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tracing_subscriber::EnvFilter;

use crate::component::{CompileCache, Limits};
use crate::platform::feed::InputLimits;
use crate::platform::outbox::OutboxOptions;
use crate::schedule::{Misfire, MisfirePolicy};
use crate::support::redact::{excerpt, json_error_detail, url_for_log, Detail};

/// The default exchange name (the platform's sensor default; its API publishes to
/// `attune.events`, which the sensor manager passes in `ATTUNE_MQ_EXCHANGE`).
pub const DEFAULT_MQ_EXCHANGE: &str = "attune";
/// How often the rule table is re-synced from the REST listing by default, besides after
/// every reconnect (docs/platform.md §1.3(d)).
pub const DEFAULT_RESYNC_INTERVAL: Duration = Duration::from_secs(300);
/// The default log level directive.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// `ATTUNE_TIMER_CACHE_DIR`, `ATTUNE_STATE_DIR` and `ATTUNE_ADMIN_ADDR` values that turn the
/// cache, the state store or the admin listener off.
const CACHE_OFF: [&str; 3] = ["off", "none", "disabled"];
/// The state directory's name under `$XDG_STATE_HOME` or `~/.local/state`.
pub const STATE_DIR_NAME: &str = "attune-timer-sensor";

/// Where the settings came from (logged as `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    Env,
    Stdin,
}

impl ConfigSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigSource::Env => "env",
            ConfigSource::Stdin => "stdin",
        }
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line, event fields at the top level (the default).
    #[default]
    Json,
    /// Human-readable lines.
    Pretty,
}

impl LogFormat {
    /// `json` or `pretty`, case-insensitive, surrounding whitespace ignored.
    pub fn parse(value: &str) -> Result<LogFormat, ConfigError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(LogFormat::Json),
            "pretty" => Ok(LogFormat::Pretty),
            _ => Err(ConfigError::LogFormat(excerpt(value, 64))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Json => "json",
            LogFormat::Pretty => "pretty",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `ATTUNE_SENSOR_TRIGGERS` (docs/platform.md §1.3(a)): a rule to start at boot.
/// `trigger_ref` may be missing (inferred from the config's keys by the rule table); a
/// `ref` key, sent by some sensor managers, is ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BootstrapRule {
    pub id: i64,
    #[serde(default)]
    pub trigger_ref: Option<String>,
    /// The rule's trigger params; `{}` when absent or null.
    #[serde(default = "empty_object", deserialize_with = "null_as_empty_object")]
    pub config: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

fn null_as_empty_object<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(if v.is_null() { empty_object() } else { v })
}

/// Reads environment variables. [`ProcessEnv`] reads the real environment; a
/// `HashMap<String, String>` (or `BTreeMap`) serves tests.
pub trait Env {
    fn var(&self, key: &str) -> Option<String>;
}

/// The process environment. Variables that are not valid UTF-8 count as absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

/// Command-line values that override the loaded settings (`-l/--log-level`,
/// `--log-format`). They are applied before validation, so a bad environment value they
/// replace is never reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub log_level: Option<String>,
    pub log_format: Option<String>,
}

/// Which rule-lifecycle transport runs. Exactly one does: the platform's sensor manager
/// passes `ATTUNE_MQ_URL` to the RabbitMQ generations (V1–V3) and `ATTUNE_NOTIFIER_WS_URL`
/// to the WebSocket ones (V4+), never both (docs/platform.md §0.1). Both set is refused
/// rather than one preferred: that is a hand-made configuration whose author expects both to
/// be used, and following one silently would miss every change announced on the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// RabbitMQ (`ATTUNE_MQ_URL`, docs/platform.md §1.4).
    RabbitMq,
    /// The notifier WebSocket (`ATTUNE_NOTIFIER_WS_URL`, docs/platform.md §1.5).
    NotifierWs,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::RabbitMq => "rabbitmq",
            Transport::NotifierWs => "notifier_ws",
        }
    }
}

/// The validated settings of the daemon.
#[derive(Clone)]
pub struct Settings {
    /// The API base URL, trailing `/` removed.
    pub api_url: String,
    /// The sensor token. Never shown by `Debug`; see [`crate::platform::token::TokenHandle`].
    pub api_token: String,
    pub sensor_ref: String,
    /// The RabbitMQ URL; empty when the notifier WebSocket is the transport.
    pub mq_url: String,
    /// The RabbitMQ exchange (default `attune`); unused with the notifier WebSocket.
    pub mq_exchange: String,
    /// The notifier WebSocket URL (`ws://` or `wss://`); `None` when RabbitMQ is the
    /// transport.
    pub notifier_ws_url: Option<String>,
    /// Plaintext `ws://` to a host that is not loopback is allowed.
    pub allow_insecure_notifier_ws: bool,
    /// A tracing EnvFilter directive (already checked).
    pub log_level: String,
    pub log_format: LogFormat,
    /// `ATTUNE_SENSOR_TRIGGERS` / `sensor_triggers`: rules to start at boot.
    pub sensor_triggers: Vec<BootstrapRule>,
    /// A timer component to load instead of the embedded one.
    pub timer_component: Option<PathBuf>,
    /// Component limits (`ATTUNE_TIMER_MAX_MEMORY_MB`, `ATTUNE_TIMER_CALL_DEADLINE_MS`,
    /// `ATTUNE_TIMER_MAX_PAYLOAD_BYTES`); the rest are [`Limits::default`].
    pub limits: Limits,
    /// Where compiled components are cached (`ATTUNE_TIMER_CACHE_DIR`; default
    /// `$XDG_CACHE_HOME/attune-timer-sensor`, else `$HOME/.cache/attune-timer-sensor`;
    /// `off`/`none`/`disabled` → `None`, no cache).
    pub cache_dir: Option<PathBuf>,
    /// Events queued or being delivered at once before new ones are refused
    /// (`ATTUNE_OUTBOX_CAPACITY`; default [`OutboxOptions::default`]'s, 100,000).
    pub outbox_capacity: usize,
    /// Event requests in flight at most (`ATTUNE_OUTBOX_CONCURRENCY`; default
    /// [`OutboxOptions::default`]'s, 64): the cap of the outbox's adaptive limit.
    pub outbox_concurrency: usize,
    /// How often the whole rule table is re-synced from the REST listing besides after
    /// every reconnect (`ATTUNE_RESYNC_INTERVAL_SECS`; default [`DEFAULT_RESYNC_INTERVAL`];
    /// `0` → `None`, off).
    pub resync_interval: Option<Duration>,
    /// The largest lifecycle message (`ATTUNE_MAX_MESSAGE_BYTES`) and rule params
    /// (`ATTUNE_MAX_RULE_PARAMS_BYTES`) accepted; defaults [`InputLimits::default`].
    pub input_limits: InputLimits,
    /// The state directory (`ATTUNE_STATE_DIR`, `--state-dir`; default [`default_state_dir`]);
    /// `off`/`none`/`disabled` → `None`: nothing survives a restart.
    pub state_dir: Option<PathBuf>,
    /// `ATTUNE_OUTBOX_MAX_AGE` (default 24 h) and `ATTUNE_OUTBOX_MAX_BYTES` (default 1 GiB).
    pub outbox_max_age: Duration,
    pub outbox_max_bytes: u64,
    /// `ATTUNE_MISFIRE` (default `latest`) and `ATTUNE_MISFIRE_GRACE` (default 1 h).
    pub misfire: Misfire,
    /// Where the admin listener (`/metrics`, `/healthz`, `/readyz`, `/rules`) listens
    /// (`ATTUNE_ADMIN_ADDR`, `--admin-addr`; default [`DEFAULT_ADMIN_ADDR`]); `off` → `None`.
    pub admin_addr: Option<SocketAddr>,
    /// `/readyz` fails while the oldest undelivered event is older than this
    /// (`ATTUNE_READY_MAX_OUTBOX_AGE`; default [`DEFAULT_READY_MAX_OUTBOX_AGE`]).
    pub ready_max_outbox_age: Duration,
    pub source: ConfigSource,
}

/// The admin listener's default address: loopback only, so that nothing but the machine
/// itself (a local Prometheus agent, `curl`, the service manager) reads it. The port lies
/// outside 9100–9999, the Prometheus project's range of exporter ports, which is fully
/// allocated (any port in it clashes with some registered exporter), and clear of the
/// Attune services' own (the API's 8080, the notifier's 8081).
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:8971";

/// The default of `ATTUNE_READY_MAX_OUTBOX_AGE`: events this old mean the API has not
/// taken anything for minutes — an outage a few retries do not cover.
pub const DEFAULT_READY_MAX_OUTBOX_AGE: Duration = Duration::from_secs(300);

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("api_url", &url_for_log(&self.api_url))
            .field("api_token", &"<redacted>")
            .field("sensor_ref", &self.sensor_ref)
            .field("mq_url", &url_for_log(&self.mq_url))
            .field("mq_exchange", &self.mq_exchange)
            .field(
                "notifier_ws_url",
                &self.notifier_ws_url.as_deref().map(url_for_log),
            )
            .field(
                "allow_insecure_notifier_ws",
                &self.allow_insecure_notifier_ws,
            )
            .field("log_level", &self.log_level)
            .field("log_format", &self.log_format)
            .field("sensor_triggers", &self.sensor_triggers.len())
            .field("timer_component", &self.timer_component)
            .field("limits", &self.limits)
            .field("cache_dir", &self.cache_dir)
            .field("outbox_capacity", &self.outbox_capacity)
            .field("outbox_concurrency", &self.outbox_concurrency)
            .field("resync_interval", &self.resync_interval)
            .field("input_limits", &self.input_limits)
            .field("state_dir", &self.state_dir)
            .field("outbox_max_age", &self.outbox_max_age)
            .field("outbox_max_bytes", &self.outbox_max_bytes)
            .field("misfire", &self.misfire)
            .field("admin_addr", &self.admin_addr)
            .field("ready_max_outbox_age", &self.ready_max_outbox_age)
            .field("source", &self.source)
            .finish()
    }
}

/// A configuration error. `Display` is the exact message; details (never a secret nor a
/// copy of the input) are in `source()`, shown by `{:#}` of an `anyhow::Error`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} environment variable is required")]
    MissingEnv(&'static str),
    /// No transport is configured (docs/platform.md §1.1.3): the message names both
    /// settings and what each selects.
    #[error(
        "{} is required: set {} for the notifier WebSocket (platform V4 and later) or {} for RabbitMQ (V1–V3)",
        .0.either(), .0.ws_key(), .0.mq_key()
    )]
    MissingTransport(ConfigSource),
    /// Both transports are configured; exactly one runs.
    #[error(
        "{} and {} are both set: set only one — {} for the notifier WebSocket (platform V4 and later) or {} for RabbitMQ (V1–V3)",
        .0.ws_key(), .0.mq_key(), .0.ws_key(), .0.mq_key()
    )]
    BothTransports(ConfigSource),
    /// `ATTUNE_ALLOW_INSECURE_NOTIFIER_WS` is not `true` or `false` (Rust's `bool` parsing,
    /// as the platform's).
    #[error("invalid boolean value \"{0}\"")]
    InvalidBool(String),
    /// `failed to resolve notifier websocket host '<host>'` (docs/platform.md §1.1.5).
    #[error("failed to resolve notifier websocket host '{0}'")]
    ResolveWsHost(String),
    /// One of the validation messages (`docs/platform.md` §1.1), e.g. `api_url cannot be empty`.
    #[error("{0}")]
    Invalid(&'static str),
    #[error("Failed to read configuration from stdin")]
    StdinRead(#[source] std::io::Error),
    #[error("Failed to parse JSON configuration from stdin")]
    StdinParse(#[source] Detail),
    #[error("Failed to parse ATTUNE_SENSOR_TRIGGERS as managed trigger instances")]
    SensorTriggers(#[source] Detail),
    #[error("Invalid ATTUNE_LOG_LEVEL / --log-level tracing directive")]
    LogLevel(#[source] Detail),
    #[error("unsupported ATTUNE_LOG_FORMAT / --log-format `{0}`; expected `json` or `pretty`")]
    LogFormat(String),
    /// A component limit or other numeric setting out of range.
    #[error("Invalid {var} '{value}': {expected}")]
    Setting {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("Invalid {var} '{value}': expected a duration such as 90s, 15m, 24h or 2d ({detail})")]
    Duration {
        var: &'static str,
        value: String,
        detail: String,
    },
    #[error("Invalid ATTUNE_MISFIRE '{0}': expected skip, latest or all")]
    Misfire(String),
    #[error("Failed to initialise logging")]
    LoggingInit(#[source] Detail),
}

impl ConfigSource {
    fn ws_key(self) -> &'static str {
        match self {
            ConfigSource::Env => "ATTUNE_NOTIFIER_WS_URL",
            ConfigSource::Stdin => "notifier_ws_url",
        }
    }

    fn mq_key(self) -> &'static str {
        match self {
            ConfigSource::Env => "ATTUNE_MQ_URL",
            ConfigSource::Stdin => "mq_url",
        }
    }

    fn either(self) -> &'static str {
        match self {
            ConfigSource::Env => "ATTUNE_NOTIFIER_WS_URL or ATTUNE_MQ_URL environment variable",
            ConfigSource::Stdin => "notifier_ws_url or mq_url",
        }
    }
}

/// The settings before validation, from either source.
#[derive(Debug, Default)]
struct Raw {
    api_url: String,
    api_token: String,
    sensor_ref: String,
    transport: Option<Transport>,
    mq_url: String,
    mq_exchange: String,
    notifier_ws_url: String,
    allow_insecure_notifier_ws: bool,
    log_level: String,
    log_format: String,
    sensor_triggers: Option<Value>,
    timer_component: Option<PathBuf>,
    max_memory_mb: Option<String>,
    call_deadline_ms: Option<String>,
    max_payload_bytes: Option<String>,
    cache_dir: Option<String>,
    outbox_capacity: Option<String>,
    outbox_concurrency: Option<String>,
    resync_interval_secs: Option<String>,
    max_message_bytes: Option<String>,
    max_rule_params_bytes: Option<String>,
    state_dir: Option<String>,
    outbox_max_age: Option<String>,
    outbox_max_bytes: Option<String>,
    misfire: Option<String>,
    misfire_grace: Option<String>,
    admin_addr: Option<String>,
    ready_max_outbox_age: Option<String>,
}

/// The JSON object read by `--stdin-config`. Unknown keys are ignored.
#[derive(Deserialize)]
struct StdinConfig {
    api_url: String,
    api_token: String,
    sensor_ref: String,
    #[serde(default)]
    mq_url: Option<String>,
    #[serde(default)]
    mq_exchange: Option<String>,
    #[serde(default)]
    notifier_ws_url: Option<String>,
    #[serde(default)]
    allow_insecure_notifier_ws: Option<bool>,
    #[serde(default)]
    log_level: Option<String>,
    #[serde(default)]
    log_format: Option<String>,
    /// A JSON array, or a string holding one (as in the environment variable).
    #[serde(default)]
    sensor_triggers: Option<Value>,
    #[serde(default)]
    timer_component: Option<PathBuf>,
    /// Optional overrides of the `ATTUNE_TIMER_*` variables.
    #[serde(default)]
    timer_max_memory_mb: Option<Value>,
    #[serde(default)]
    timer_call_deadline_ms: Option<Value>,
    #[serde(default)]
    timer_max_payload_bytes: Option<Value>,
    #[serde(default)]
    timer_cache_dir: Option<String>,
    /// Optional overrides of the `ATTUNE_OUTBOX_*` variables.
    #[serde(default)]
    outbox_capacity: Option<Value>,
    #[serde(default)]
    outbox_concurrency: Option<Value>,
    /// Optional override of `ATTUNE_RESYNC_INTERVAL_SECS`.
    #[serde(default)]
    resync_interval_secs: Option<Value>,
    /// Optional overrides of `ATTUNE_MAX_MESSAGE_BYTES` and `ATTUNE_MAX_RULE_PARAMS_BYTES`.
    #[serde(default)]
    max_message_bytes: Option<Value>,
    #[serde(default)]
    max_rule_params_bytes: Option<Value>,
    #[serde(default)]
    state_dir: Option<String>,
    #[serde(default)]
    outbox_max_age: Option<Value>,
    #[serde(default)]
    outbox_max_bytes: Option<Value>,
    #[serde(default)]
    misfire: Option<String>,
    #[serde(default)]
    misfire_grace: Option<Value>,
    #[serde(default)]
    admin_addr: Option<String>,
    #[serde(default)]
    ready_max_outbox_age: Option<Value>,
}

fn non_blank(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

fn json_scalar_text(v: Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

impl Settings {
    /// Which rule-lifecycle transport these settings select.
    pub fn transport(&self) -> Transport {
        if self.notifier_ws_url.is_some() {
            Transport::NotifierWs
        } else {
            Transport::RabbitMq
        }
    }

    /// Reads the settings from the environment (the default source).
    pub fn from_env(env: &dyn Env) -> Result<Settings, ConfigError> {
        Self::from_env_with(env, &Overrides::default())
    }

    /// Like [`Settings::from_env`], with command-line overrides.
    pub fn from_env_with(env: &dyn Env, cli: &Overrides) -> Result<Settings, ConfigError> {
        let required = |key: &'static str| env.var(key).ok_or(ConfigError::MissingEnv(key));
        let api_url = required("ATTUNE_API_URL")?;
        let api_token = required("ATTUNE_API_TOKEN")?;
        let sensor_ref = required("ATTUNE_SENSOR_REF")?;
        let (transport, mq_url, notifier_ws_url) = choose_transport(
            env.var("ATTUNE_MQ_URL"),
            env.var("ATTUNE_NOTIFIER_WS_URL"),
            ConfigSource::Env,
        )?;
        let allow_insecure_notifier_ws = match env
            .var("ATTUNE_ALLOW_INSECURE_NOTIFIER_WS")
            .or_else(|| env.var("ATTUNE__SENSOR__ALLOW_INSECURE_NOTIFIER_WS"))
        {
            None => false,
            Some(v) => parse_bool(&v)?,
        };
        let mut raw = Raw {
            api_url,
            api_token,
            sensor_ref,
            transport: Some(transport),
            mq_url,
            notifier_ws_url,
            allow_insecure_notifier_ws,
            mq_exchange: env
                .var("ATTUNE_MQ_EXCHANGE")
                .unwrap_or_else(|| DEFAULT_MQ_EXCHANGE.to_string()),
            log_level: non_blank(env.var("ATTUNE_LOG_LEVEL"))
                .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_string()),
            log_format: non_blank(env.var("ATTUNE_LOG_FORMAT"))
                .unwrap_or_else(|| LogFormat::Json.as_str().to_string()),
            sensor_triggers: non_blank(env.var("ATTUNE_SENSOR_TRIGGERS")).map(Value::String),
            timer_component: non_blank(env.var("ATTUNE_TIMER_COMPONENT")).map(PathBuf::from),
            ..Raw::default()
        };
        read_limit_vars(env, &mut raw);
        build(raw, env, cli, ConfigSource::Env)
    }

    /// Parses the JSON object given on stdin by `--stdin-config`. Only the JSON is used
    /// for the platform settings (as on the platform); the `ATTUNE_TIMER_*` component
    /// settings and the `ATTUNE_OUTBOX_*` settings are still read from `env` unless the
    /// JSON sets `timer_*` / `outbox_*` keys.
    pub fn from_stdin_json(text: &str, env: &dyn Env) -> Result<Settings, ConfigError> {
        Self::from_stdin_json_with(text, env, &Overrides::default())
    }

    /// Like [`Settings::from_stdin_json`], with command-line overrides.
    pub fn from_stdin_json_with(
        text: &str,
        env: &dyn Env,
        cli: &Overrides,
    ) -> Result<Settings, ConfigError> {
        let parsed: StdinConfig = serde_json::from_str(text)
            .map_err(|e| ConfigError::StdinParse(json_error_detail(&e)))?;
        let (transport, mq_url, notifier_ws_url) =
            choose_transport(parsed.mq_url, parsed.notifier_ws_url, ConfigSource::Stdin)?;
        let mut raw = Raw {
            api_url: parsed.api_url,
            api_token: parsed.api_token,
            sensor_ref: parsed.sensor_ref,
            transport: Some(transport),
            mq_url,
            notifier_ws_url,
            allow_insecure_notifier_ws: parsed.allow_insecure_notifier_ws.unwrap_or(false),
            mq_exchange: parsed
                .mq_exchange
                .unwrap_or_else(|| DEFAULT_MQ_EXCHANGE.to_string()),
            log_level: non_blank(parsed.log_level).unwrap_or_else(|| DEFAULT_LOG_LEVEL.into()),
            log_format: non_blank(parsed.log_format)
                .unwrap_or_else(|| LogFormat::Json.as_str().into()),
            sensor_triggers: parsed.sensor_triggers.filter(|v| match v {
                Value::Null => false,
                Value::String(s) => !s.trim().is_empty(),
                _ => true,
            }),
            timer_component: parsed.timer_component.filter(|p| !p.as_os_str().is_empty()),
            ..Raw::default()
        };
        read_limit_vars(env, &mut raw);
        if let Some(v) = parsed.timer_max_memory_mb.and_then(json_scalar_text) {
            raw.max_memory_mb = Some(v);
        }
        if let Some(v) = parsed.timer_call_deadline_ms.and_then(json_scalar_text) {
            raw.call_deadline_ms = Some(v);
        }
        if let Some(v) = parsed.timer_max_payload_bytes.and_then(json_scalar_text) {
            raw.max_payload_bytes = Some(v);
        }
        if let Some(v) = parsed.timer_cache_dir {
            raw.cache_dir = Some(v);
        }
        if let Some(v) = parsed.outbox_capacity.and_then(json_scalar_text) {
            raw.outbox_capacity = Some(v);
        }
        if let Some(v) = parsed.outbox_concurrency.and_then(json_scalar_text) {
            raw.outbox_concurrency = Some(v);
        }
        if let Some(v) = parsed.resync_interval_secs.and_then(json_scalar_text) {
            raw.resync_interval_secs = Some(v);
        }
        if let Some(v) = parsed.max_message_bytes.and_then(json_scalar_text) {
            raw.max_message_bytes = Some(v);
        }
        if let Some(v) = parsed.max_rule_params_bytes.and_then(json_scalar_text) {
            raw.max_rule_params_bytes = Some(v);
        }
        if let Some(v) = parsed.state_dir {
            raw.state_dir = Some(v);
        }
        if let Some(v) = parsed.outbox_max_age.and_then(json_scalar_text) {
            raw.outbox_max_age = Some(v);
        }
        if let Some(v) = parsed.outbox_max_bytes.and_then(json_scalar_text) {
            raw.outbox_max_bytes = Some(v);
        }
        if let Some(v) = non_blank(parsed.misfire) {
            raw.misfire = Some(v);
        }
        if let Some(v) = parsed.misfire_grace.and_then(json_scalar_text) {
            raw.misfire_grace = Some(v);
        }
        if let Some(v) = non_blank(parsed.admin_addr) {
            raw.admin_addr = Some(v);
        }
        if let Some(v) = parsed.ready_max_outbox_age.and_then(json_scalar_text) {
            raw.ready_max_outbox_age = Some(v);
        }
        build(raw, env, cli, ConfigSource::Stdin)
    }

    /// Reads all of the process's stdin and parses it as [`Settings::from_stdin_json_with`].
    pub fn from_process_stdin(env: &dyn Env, cli: &Overrides) -> Result<Settings, ConfigError> {
        use std::io::Read;
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(ConfigError::StdinRead)?;
        Self::from_stdin_json_with(&text, env, cli)
    }

    /// The compiled-component cache these settings ask for.
    pub fn compile_cache(&self) -> CompileCache {
        match &self.cache_dir {
            Some(dir) => CompileCache::in_dir(dir),
            None => CompileCache::disabled(),
        }
    }

    /// The outbox options these settings ask for: `outbox_capacity` and
    /// `outbox_concurrency`, the rest [`OutboxOptions::default`].
    pub fn outbox_options(&self) -> OutboxOptions {
        OutboxOptions {
            capacity: self.outbox_capacity,
            concurrency: self.outbox_concurrency,
            max_age: self.outbox_max_age,
            max_bytes: self.outbox_max_bytes,
            ..OutboxOptions::default()
        }
    }
}

/// Exactly one transport (see [`Transport`]): `(transport, mq_url, notifier_ws_url)`, the
/// unused URL empty. A present but empty value counts as set (and is then reported as
/// empty by validation, as the platform does).
fn choose_transport(
    mq_url: Option<String>,
    notifier_ws_url: Option<String>,
    source: ConfigSource,
) -> Result<(Transport, String, String), ConfigError> {
    match (mq_url, notifier_ws_url) {
        (Some(_), Some(_)) => Err(ConfigError::BothTransports(source)),
        (None, None) => Err(ConfigError::MissingTransport(source)),
        (Some(mq), None) => Ok((Transport::RabbitMq, mq, String::new())),
        (None, Some(ws)) => Ok((Transport::NotifierWs, String::new(), ws)),
    }
}

/// Rust's `bool::from_str`, as the platform's sensor parses
/// `ATTUNE_ALLOW_INSECURE_NOTIFIER_WS` (docs/platform.md §1.1.5): `true` or `false`, exact.
fn parse_bool(value: &str) -> Result<bool, ConfigError> {
    value
        .parse::<bool>()
        .map_err(|_| ConfigError::InvalidBool(excerpt(value, 64)))
}

/// The sixth generation's checks of `notifier_ws_url` (docs/platform.md §1.1.5), in its
/// order, after the `api_url` scheme check. Plaintext `ws://` is resolved (port 80 by
/// default) and accepted only when every address is loopback, unless `allow_insecure`.
fn check_notifier_ws_url(value: &str, allow_insecure: bool) -> Result<(), ConfigError> {
    let url = url::Url::parse(value)
        .map_err(|_| ConfigError::Invalid("notifier_ws_url is not a valid URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::Invalid(
            "notifier_ws_url must not contain credentials",
        ));
    }
    let host = match url.host_str() {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => return Err(ConfigError::Invalid("notifier_ws_url must include a host")),
    };
    match url.scheme() {
        "wss" => Ok(()),
        "ws" if allow_insecure => Ok(()),
        "ws" => {
            use std::net::ToSocketAddrs;
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let port = url.port().unwrap_or(80);
            let addrs: Vec<std::net::SocketAddr> = (bare, port)
                .to_socket_addrs()
                .map_err(|_| ConfigError::ResolveWsHost(bare.to_string()))?
                .collect();
            if addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()) {
                return Err(ConfigError::Invalid(
                    "non-loopback notifier_ws_url requires wss:// or allow_insecure_notifier_ws=true",
                ));
            }
            Ok(())
        }
        _ => Err(ConfigError::Invalid(
            "notifier_ws_url must use wss:// or ws://",
        )),
    }
}

fn read_limit_vars(env: &dyn Env, raw: &mut Raw) {
    raw.max_memory_mb = non_blank(env.var("ATTUNE_TIMER_MAX_MEMORY_MB"));
    raw.call_deadline_ms = non_blank(env.var("ATTUNE_TIMER_CALL_DEADLINE_MS"));
    raw.max_payload_bytes = non_blank(env.var("ATTUNE_TIMER_MAX_PAYLOAD_BYTES"));
    raw.cache_dir = env.var("ATTUNE_TIMER_CACHE_DIR");
    raw.outbox_capacity = non_blank(env.var("ATTUNE_OUTBOX_CAPACITY"));
    raw.outbox_concurrency = non_blank(env.var("ATTUNE_OUTBOX_CONCURRENCY"));
    raw.resync_interval_secs = non_blank(env.var("ATTUNE_RESYNC_INTERVAL_SECS"));
    raw.max_message_bytes = non_blank(env.var("ATTUNE_MAX_MESSAGE_BYTES"));
    raw.max_rule_params_bytes = non_blank(env.var("ATTUNE_MAX_RULE_PARAMS_BYTES"));
    raw.state_dir = env.var("ATTUNE_STATE_DIR");
    raw.outbox_max_age = non_blank(env.var("ATTUNE_OUTBOX_MAX_AGE"));
    raw.outbox_max_bytes = non_blank(env.var("ATTUNE_OUTBOX_MAX_BYTES"));
    raw.misfire = non_blank(env.var("ATTUNE_MISFIRE"));
    raw.misfire_grace = non_blank(env.var("ATTUNE_MISFIRE_GRACE"));
    raw.admin_addr = non_blank(env.var("ATTUNE_ADMIN_ADDR"));
    raw.ready_max_outbox_age = non_blank(env.var("ATTUNE_READY_MAX_OUTBOX_AGE"));
}

/// Checks that `directive` is a valid tracing EnvFilter directive and builds the filter.
pub fn parse_log_level(directive: &str) -> Result<EnvFilter, ConfigError> {
    EnvFilter::builder()
        .with_regex(false)
        .parse(directive.trim())
        .map_err(|e| ConfigError::LogLevel(Detail(e.to_string())))
}

/// Validates `raw` in the contract's order and builds the settings.
fn build(
    mut raw: Raw,
    env: &dyn Env,
    cli: &Overrides,
    source: ConfigSource,
) -> Result<Settings, ConfigError> {
    if let Some(level) = non_blank(cli.log_level.clone()) {
        raw.log_level = level;
    }
    if let Some(format) = non_blank(cli.log_format.clone()) {
        raw.log_format = format;
    }
    let api_url = raw.api_url.trim().trim_end_matches('/').to_string();
    let api_token = raw.api_token.trim().to_string();
    let sensor_ref = raw.sensor_ref.trim().to_string();
    let mq_url = raw.mq_url.trim().to_string();
    let mq_exchange = raw.mq_exchange.trim().to_string();
    let notifier_ws_url = raw.notifier_ws_url.trim().to_string();
    let transport = raw.transport.unwrap_or(Transport::RabbitMq);
    let rabbit = transport == Transport::RabbitMq;

    // The platform's checks, in its order (docs/platform.md §1.1.5): V1–V3's for RabbitMQ,
    // V6's for the notifier WebSocket.
    let checks: [(bool, &'static str); 7] = [
        (api_url.is_empty(), "api_url cannot be empty"),
        (api_token.is_empty(), "api_token cannot be empty"),
        (sensor_ref.is_empty(), "sensor_ref cannot be empty"),
        (rabbit && mq_url.is_empty(), "mq_url cannot be empty"),
        (
            rabbit && mq_exchange.is_empty(),
            "mq_exchange cannot be empty",
        ),
        (
            !rabbit && notifier_ws_url.is_empty(),
            "notifier_ws_url cannot be empty",
        ),
        (
            !(api_url.starts_with("http://") || api_url.starts_with("https://")),
            "api_url must start with http:// or https://",
        ),
    ];
    if let Some((_, message)) = checks.iter().find(|(failed, _)| *failed) {
        return Err(ConfigError::Invalid(message));
    }
    if rabbit {
        if !(mq_url.starts_with("amqp://") || mq_url.starts_with("amqps://")) {
            return Err(ConfigError::Invalid(
                "mq_url must start with amqp:// or amqps://",
            ));
        }
    } else {
        check_notifier_ws_url(&notifier_ws_url, raw.allow_insecure_notifier_ws)?;
    }
    match url::Url::parse(&api_url) {
        Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => {}
        _ => return Err(ConfigError::Invalid("api_url is not a valid URL")),
    }
    if api_token.chars().any(|c| c.is_control() || c == ' ') {
        return Err(ConfigError::Invalid(
            "api_token must not contain spaces or control characters",
        ));
    }

    // Ours.
    parse_log_level(&raw.log_level)?;
    let log_format = LogFormat::parse(&raw.log_format)?;
    let sensor_triggers = match raw.sensor_triggers.take() {
        None => Vec::new(),
        Some(value) => parse_sensor_triggers(value)?,
    };
    let limits = parse_limits(&raw)?;
    let (outbox_capacity, outbox_concurrency) = parse_outbox(&raw)?;
    let mut input_limits = InputLimits::default();
    if let Some(v) = &raw.max_message_bytes {
        input_limits.max_message_bytes = parse_bounded(
            "ATTUNE_MAX_MESSAGE_BYTES",
            v,
            1024,
            64 << 20,
            "expected a whole number of bytes from 1024 to 67108864",
        )? as usize;
    }
    if let Some(v) = &raw.max_rule_params_bytes {
        input_limits.max_params_bytes = parse_bounded(
            "ATTUNE_MAX_RULE_PARAMS_BYTES",
            v,
            64,
            16 << 20,
            "expected a whole number of bytes from 64 to 16777216",
        )? as usize;
    }
    let resync_interval = match &raw.resync_interval_secs {
        None => Some(DEFAULT_RESYNC_INTERVAL),
        Some(v) => match parse_bounded(
            "ATTUNE_RESYNC_INTERVAL_SECS",
            v,
            0,
            86_400,
            "expected a whole number of seconds from 0 (off) to 86400",
        )? {
            0 => None,
            secs => Some(Duration::from_secs(secs)),
        },
    };
    let cache_dir = cache_dir(raw.cache_dir.as_deref(), env);
    let state_dir = state_dir(raw.state_dir.as_deref(), env);
    let defaults = OutboxOptions::default();
    let outbox_max_age = match &raw.outbox_max_age {
        Some(v) => parse_duration("ATTUNE_OUTBOX_MAX_AGE", v)?,
        None => defaults.max_age,
    };
    let outbox_max_bytes = match &raw.outbox_max_bytes {
        Some(v) => parse_bounded(
            "ATTUNE_OUTBOX_MAX_BYTES",
            v,
            1 << 20,
            1 << 50,
            "expected a whole number of bytes, at least 1048576",
        )?,
        None => defaults.max_bytes,
    };
    let mut misfire = Misfire::default();
    if let Some(v) = &raw.misfire {
        misfire.policy =
            MisfirePolicy::parse(v).ok_or_else(|| ConfigError::Misfire(excerpt(v, 64)))?;
    }
    if let Some(v) = &raw.misfire_grace {
        misfire.grace = parse_duration("ATTUNE_MISFIRE_GRACE", v)?;
    }
    let admin_addr = parse_admin_addr(raw.admin_addr.as_deref().unwrap_or(DEFAULT_ADMIN_ADDR))?;
    let ready_max_outbox_age = match &raw.ready_max_outbox_age {
        Some(v) => parse_duration("ATTUNE_READY_MAX_OUTBOX_AGE", v)?,
        None => DEFAULT_READY_MAX_OUTBOX_AGE,
    };

    Ok(Settings {
        api_url,
        api_token,
        sensor_ref,
        mq_url,
        mq_exchange,
        notifier_ws_url: (!rabbit).then_some(notifier_ws_url),
        allow_insecure_notifier_ws: raw.allow_insecure_notifier_ws,
        log_level: raw.log_level.trim().to_string(),
        log_format,
        sensor_triggers,
        timer_component: raw.timer_component,
        limits,
        cache_dir,
        outbox_capacity,
        outbox_concurrency,
        resync_interval,
        input_limits,
        state_dir,
        outbox_max_age,
        outbox_max_bytes,
        misfire,
        admin_addr,
        ready_max_outbox_age,
        source,
    })
}

/// `ATTUNE_ADMIN_ADDR`: an IP address and port (`127.0.0.1:8971`, `[::1]:8971`; port 0
/// picks a free one), or `off`/`none`/`disabled`. A host name is refused rather than
/// resolved: what the listener is exposed on must be exactly what was written.
pub fn parse_admin_addr(v: &str) -> Result<Option<SocketAddr>, ConfigError> {
    let v = v.trim();
    if CACHE_OFF.contains(&v.to_ascii_lowercase().as_str()) {
        return Ok(None);
    }
    v.parse::<SocketAddr>()
        .map(Some)
        .map_err(|_| ConfigError::Setting {
            var: "ATTUNE_ADMIN_ADDR",
            value: excerpt(v, 64),
            expected: "expected an IP address and port such as 127.0.0.1:8971, or off",
        })
}

/// `ATTUNE_SENSOR_TRIGGERS`: a JSON array of `{id, trigger_ref?, config?}` given as JSON
/// text (environment) or as JSON (stdin, where a string holding the text is accepted too).
fn parse_sensor_triggers(value: Value) -> Result<Vec<BootstrapRule>, ConfigError> {
    let err = |e: serde_json::Error| ConfigError::SensorTriggers(json_error_detail(&e));
    match value {
        Value::String(text) => serde_json::from_str(&text).map_err(err),
        other => serde_json::from_value(other).map_err(err),
    }
}

/// The compiled-component cache directory that `ATTUNE_TIMER_CACHE_DIR` asks for: `off`,
/// `none` or `disabled` turn caching off; blank or unset means the default place
/// ([`CompileCache::default_location`], read through `env`).
fn cache_dir(setting: Option<&str>, env: &dyn Env) -> Option<PathBuf> {
    match setting.map(str::trim) {
        Some(dir) if CACHE_OFF.contains(&dir.to_ascii_lowercase().as_str()) => None,
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => CompileCache::default_location_from(|key| env.var(key))
            .dir()
            .map(PathBuf::from),
    }
}

/// The compile cache `ATTUNE_TIMER_CACHE_DIR` in `env` asks for: what the commands that
/// take no other settings (`check`, local mode) use, so the variable means the same there.
/// A duration setting: `humantime`'s format (`90s`, `15m`, `24h`, `2d`, `1h 30m`), or a bare
/// number of seconds.
fn parse_duration(var: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(v).map_err(|e| ConfigError::Duration {
        var,
        value: excerpt(value, 64),
        detail: e.to_string(),
    })
}

/// The state directory: the setting if given (`off`, `none` or `disabled` → none), else
/// [`default_state_dir`].
fn state_dir(setting: Option<&str>, env: &dyn Env) -> Option<PathBuf> {
    match setting.map(str::trim) {
        Some(dir) if CACHE_OFF.contains(&dir.to_ascii_lowercase().as_str()) => None,
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => default_state_dir(env),
    }
}

/// Where state is kept when `ATTUNE_STATE_DIR` is not set: `$STATE_DIRECTORY` (systemd's
/// `StateDirectory=`; its first entry), else `$XDG_STATE_HOME/attune-timer-sensor`, else
/// `$HOME/.local/state/attune-timer-sensor`; `None` without any of them.
pub fn default_state_dir(env: &dyn Env) -> Option<PathBuf> {
    let set = |key: &str| env.var(key).filter(|v| !v.trim().is_empty());
    if let Some(dirs) = set("STATE_DIRECTORY") {
        if let Some(first) = dirs.split(':').find(|d| !d.is_empty()) {
            return Some(PathBuf::from(first));
        }
    }
    if let Some(xdg) = set("XDG_STATE_HOME") {
        return Some(PathBuf::from(xdg).join(STATE_DIR_NAME));
    }
    set("HOME").map(|home| {
        PathBuf::from(home)
            .join(".local")
            .join("state")
            .join(STATE_DIR_NAME)
    })
}

pub fn compile_cache_from(env: &dyn Env) -> CompileCache {
    match cache_dir(env.var("ATTUNE_TIMER_CACHE_DIR").as_deref(), env) {
        Some(dir) => CompileCache::in_dir(dir),
        None => CompileCache::disabled(),
    }
}

fn parse_bounded(
    var: &'static str,
    value: &str,
    min: u64,
    max: u64,
    expected: &'static str,
) -> Result<u64, ConfigError> {
    match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ConfigError::Setting {
            var,
            value: excerpt(value, 64),
            expected,
        }),
    }
}

fn parse_limits(raw: &Raw) -> Result<Limits, ConfigError> {
    let mut limits = Limits::default();
    if let Some(v) = &raw.max_memory_mb {
        let mb = parse_bounded(
            "ATTUNE_TIMER_MAX_MEMORY_MB",
            v,
            1,
            16_384,
            "expected a whole number of MiB from 1 to 16384",
        )?;
        limits.max_memory_bytes = (mb as usize) << 20;
    }
    if let Some(v) = &raw.call_deadline_ms {
        let ms = parse_bounded(
            "ATTUNE_TIMER_CALL_DEADLINE_MS",
            v,
            1,
            60_000,
            "expected a whole number of milliseconds from 1 to 60000",
        )?;
        limits.call_deadline = Duration::from_millis(ms);
    }
    if let Some(v) = &raw.max_payload_bytes {
        let bytes = parse_bounded(
            "ATTUNE_TIMER_MAX_PAYLOAD_BYTES",
            v,
            256,
            16 << 20,
            "expected a whole number of bytes from 256 to 16777216",
        )?;
        limits.max_payload_bytes = bytes as usize;
    }
    Ok(limits)
}

/// `ATTUNE_OUTBOX_CAPACITY` and `ATTUNE_OUTBOX_CONCURRENCY`: (capacity, concurrency).
fn parse_outbox(raw: &Raw) -> Result<(usize, usize), ConfigError> {
    let defaults = OutboxOptions::default();
    let capacity = match &raw.outbox_capacity {
        Some(v) => parse_bounded(
            "ATTUNE_OUTBOX_CAPACITY",
            v,
            1,
            10_000_000,
            "expected a whole number of events from 1 to 10000000",
        )? as usize,
        None => defaults.capacity,
    };
    let concurrency = match &raw.outbox_concurrency {
        Some(v) => parse_bounded(
            "ATTUNE_OUTBOX_CONCURRENCY",
            v,
            1,
            256,
            "expected a whole number of requests from 1 to 256",
        )? as usize,
        None => defaults.concurrency,
    };
    Ok((capacity, concurrency))
}

fn optional_url_for_log(url: &str) -> String {
    if url.is_empty() {
        String::new()
    } else {
        url_for_log(url)
    }
}

/// Logs the loaded settings (`docs/platform.md` §1.2, step 2), with the URLs reduced to origins.
pub fn log_settings(settings: &Settings) {
    tracing::info!(
        config_source = settings.source.as_str(),
        log_level = %settings.log_level,
        log_format = settings.log_format.as_str(),
        outbox_capacity = settings.outbox_capacity,
        outbox_concurrency = settings.outbox_concurrency,
        resync_interval_secs = settings.resync_interval.map_or(0, |d| d.as_secs()),
        state_dir = %settings.state_dir.as_deref().map_or("off (memory only)".into(), |d| d.display().to_string()),
        outbox_max_age_secs = settings.outbox_max_age.as_secs(),
        outbox_max_bytes = settings.outbox_max_bytes,
        misfire = settings.misfire.policy.as_str(),
        misfire_grace_secs = settings.misfire.grace.as_secs(),
        admin_addr = %settings.admin_addr.map_or("off".into(), |a| a.to_string()),
        ready_max_outbox_age_secs = settings.ready_max_outbox_age.as_secs(),
        "Configuration loaded"
    );
    tracing::info!(
        sensor_ref = %settings.sensor_ref,
        api_url = %url_for_log(&settings.api_url),
        transport = settings.transport().as_str(),
        mq_url = %optional_url_for_log(&settings.mq_url),
        mq_exchange = %settings.mq_exchange,
        notifier_ws_url = %settings.notifier_ws_url.as_deref().map(url_for_log).unwrap_or_default(),
        "Configuration loaded successfully: sensor_ref={}, api_url={}",
        settings.sensor_ref,
        url_for_log(&settings.api_url)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_is_case_insensitive_and_trimmed() {
        assert_eq!(LogFormat::parse(" JSON ").unwrap(), LogFormat::Json);
        assert_eq!(LogFormat::parse("Pretty").unwrap(), LogFormat::Pretty);
        assert_eq!(
            LogFormat::parse("xml").unwrap_err().to_string(),
            "unsupported ATTUNE_LOG_FORMAT / --log-format `xml`; expected `json` or `pretty`"
        );
    }

    #[test]
    fn json_error_detail_never_quotes_values() {
        let e = serde_json::from_str::<StdinConfig>(r#""super-secret-token""#)
            .err()
            .unwrap();
        let d = json_error_detail(&e).0;
        assert!(!d.contains("super-secret"), "{d}");
        let e = serde_json::from_str::<StdinConfig>(r#"{"api_url":"x"}"#)
            .err()
            .unwrap();
        assert!(json_error_detail(&e)
            .0
            .starts_with("missing field `api_token`"));
    }
}
