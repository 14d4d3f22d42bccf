//! The telemetry layer: every metric the daemon exports, in one place, with its name, help,
//! unit and label set. Uses only `support`; every layer above records into it.
//!
//! A [`Metrics`] is a set of metric families in its own registry. Cheap to clone: clones
//! share the families. Each daemon has one (the admin listener's `/metrics` encodes it); a
//! part built without one gets a fresh, unexported set from `Metrics::default()`, so tests
//! and local mode need not care.
//!
//! Conventions (Prometheus'): names are `attune_timer_*`, counters end in `_total` (the
//! encoder adds it), durations are in seconds, sizes in bytes. Every label set is bounded:
//! labels take values from small fixed sets ([`FireOutcome`], [`StatusClass`], …) or from
//! the trigger refs a component declares — never a rule id, a URL or an error text.
//!
//! The client is `prometheus-client`, the Prometheus project's own Rust client, rather than
//! `metrics` with `metrics-exporter-prometheus`: it has no global recorder (each daemon
//! owns its registry, so daemons side by side in one test process count apart), its
//! metric types are plain atomics behind typed label sets (a label set that is not one of
//! our enums does not compile), and it encodes both the Prometheus text format and
//! OpenMetrics.
//!
//! Counters and histograms are recorded where things happen; the gauges that describe
//! state (outbox depth, rules by state, token expiry, readiness) are set by whoever encodes,
//! just before encoding ([`Metrics::encode`]'s caller), from the parts' own views.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The content type of the Prometheus text format (0.0.4).
pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// The content type of OpenMetrics text (1.0.0).
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Declares a label value type: the enum, its text ([`as_str`](FireOutcome::as_str)) and
/// its encoding. Each variant names the text it is exported as.
macro_rules! label_values {
    ($(#[$meta:meta])* pub enum $name:ident {
        $($(#[$vmeta:meta])* $variant:ident => $text:literal,)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    };
}

/// Hand-over lateness buckets, seconds: from half a millisecond (the clock's on-time
/// window is 5 ms) to a minute.
const LATENESS_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// API request buckets, seconds: up to the client's 30 s request timeout.
const REQUEST_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// State store commit buckets, seconds: an fsync takes from under a millisecond to seconds.
const COMMIT_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

label_values! {
    /// How a fire went.
    pub enum FireOutcome {
        /// Prebuilt and handed over within the on-time window.
        OnTime => "on_time",
        /// Computed at the moment of firing (the clock was late, the timer new or just swapped).
        Late => "late",
        /// A missed tick fired after a restart (the misfire policy).
        CatchUp => "catch_up",
        /// The component failed the fire twice: no event, the rule stopped.
        Faulted => "faulted",
    }
}

label_values! {
    /// The class of an HTTP answer, or why there was none.
    pub enum StatusClass {
        Success => "2xx",
        Redirect => "3xx",
        ClientError => "4xx",
        ServerError => "5xx",
        /// No answer within the request timeout.
        Timeout => "timeout",
        /// No answer: the connection failed, or the answer could not be read.
        Connection => "connection",
        /// Not about a request (an event dropped by the journal's limits).
        None => "none",
    }
}

/// The component's exported functions the host calls.
const COMPONENT_FUNCTIONS: [&str; 4] = ["describe", "validate", "next-fire", "build-payload"];

/// Every status class, for series that start at 0.
const STATUS_CLASSES: [StatusClass; 7] = [
    StatusClass::Success,
    StatusClass::Redirect,
    StatusClass::ClientError,
    StatusClass::ServerError,
    StatusClass::Timeout,
    StatusClass::Connection,
    StatusClass::None,
];

impl StatusClass {
    pub fn of_status(status: u16) -> StatusClass {
        match status {
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirect,
            400..=499 => StatusClass::ClientError,
            _ => StatusClass::ServerError,
        }
    }
}

label_values! {
    /// An API endpoint the daemon calls.
    pub enum Endpoint {
        /// `GET /health`
        Health => "health",
        /// `POST /api/v1/events`
        Events => "events",
        /// `GET /api/v1/rules` (the listing; a message without params fetches its rule there)
        Rules => "rules",
        /// The token renewal endpoint.
        Token => "token",
    }
}

label_values! {
    /// Why an event was lost.
    pub enum LossReason {
        /// The API refused it in a way retrying cannot change (400, 403, 404, 422, …).
        Rejected => "rejected",
        /// Older than `ATTUNE_OUTBOX_MAX_AGE`.
        TooOld => "too_old",
        /// Dropped, oldest first, to hold the journal under `ATTUNE_OUTBOX_MAX_BYTES`.
        OverSize => "over_size",
        /// The outbox was full and had no state store to spill to (or was closed).
        Refused => "refused",
        /// Still undelivered when a shutdown's flush time was up, with no (writable) state
        /// store to keep it in.
        Abandoned => "abandoned",
    }
}

label_values! {
    /// A lifecycle message's type.
    pub enum MessageType {
        Created => "created",
        Enabled => "enabled",
        Disabled => "disabled",
        Deleted => "deleted",
        /// Unknown, or unreadable enough that its type is unknown.
        Other => "other",
    }
}

label_values! {
    /// What became of a lifecycle message.
    pub enum MessageResult {
        /// It changed, or confirmed, the rule table.
        Applied => "applied",
        /// Well-formed but not for this sensor (another trigger ref, an unknown type).
        Ignored => "ignored",
        /// Malformed, too large, or its rule could not be fetched: dropped.
        Invalid => "invalid",
    }
}

label_values! {
    /// A rule-lifecycle transport.
    pub enum Transport {
        RabbitMq => "rabbitmq",
        Notifier => "notifier",
    }
}

label_values! {
    /// Where a rule stands.
    pub enum RuleStatus {
        /// Its timer runs.
        Running => "running",
        /// Validated and started; no fire is left (a fired one-shot, an ended RRULE).
        Ended => "ended",
        /// Its params were refused, or its trigger ref is not in scope.
        Refused => "refused",
        /// The component failed on it; it runs again when it is next applied or changed.
        Faulted => "faulted",
    }
}

label_values! {
    /// Where undelivered events are.
    pub enum Place {
        Memory => "memory",
        /// Spilled: journaled on disk only, waiting for room in memory.
        Disk => "disk",
        /// The state store's journal of undelivered events (what `ATTUNE_OUTBOX_MAX_BYTES` caps).
        Journal => "journal",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FireLabels {
    trigger_ref: String,
    outcome: FireOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FailedLabels {
    reason: LossReason,
    status_class: StatusClass,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabels {
    status_class: StatusClass,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    endpoint: Endpoint,
    status_class: StatusClass,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MessageLabels {
    r#type: MessageType,
    result: MessageResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransportLabels {
    transport: Transport,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FunctionLabels {
    function: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    state: RuleStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PlaceLabels {
    r#where: Place,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ComponentLabels {
    name: String,
    version: String,
    sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

fn lateness_histogram() -> Histogram {
    Histogram::new(LATENESS_BUCKETS)
}

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

/// The daemon's metrics. See the module documentation.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    fires: Family<FireLabels, Counter>,
    /// The fire counters by trigger ref, so the clock's hot path does not build a label set
    /// (a `String`) per fire. Clones share the family's atomics.
    fire_counters: RwLock<HashMap<String, [Counter; 4]>>,
    lateness: Histogram,
    delivered: Counter,
    failed: Family<FailedLabels, Counter>,
    retries: Family<StatusLabels, Counter>,
    requests: Family<RequestLabels, Histogram, fn() -> Histogram>,
    messages: Family<MessageLabels, Counter>,
    reconnects: Family<TransportLabels, Counter>,
    connected: Family<TransportLabels, Gauge>,
    calls: Family<FunctionLabels, Counter>,
    traps: Family<FunctionLabels, Counter>,
    deadline_hits: Family<FunctionLabels, Counter>,
    swaps: Family<ResultLabels, Counter>,
    store_commits: Histogram,
    store_errors: Counter,
    wall_steps: Counter,
    // Gauges set just before encoding (see the module documentation).
    outbox_events: Family<PlaceLabels, Gauge>,
    outbox_bytes: Family<PlaceLabels, Gauge>,
    outbox_oldest: Gauge<f64, std::sync::atomic::AtomicU64>,
    outbox_concurrency: Gauge,
    rules: Family<StateLabels, Gauge>,
    /// Families without labels hold a gauge that is absent, rather than 0, until it is set.
    token_expiry: Family<NoLabels, Gauge>,
    component: Family<ComponentLabels, Gauge>,
    ready: Gauge,
    store_writable: Family<NoLabels, Gauge>,
}

/// The empty label set of a gauge that may be absent.
type NoLabels = Vec<(&'static str, &'static str)>;

impl Default for Inner {
    fn default() -> Self {
        Inner::new()
    }
}

impl Inner {
    fn new() -> Inner {
        let mut r = Registry::with_prefix("attune_timer");
        let fires = Family::<FireLabels, Counter>::default();
        r.register(
            "fires",
            "Fires handed to the outbox, by trigger ref and outcome (faulted: no event, the rule stopped)",
            fires.clone(),
        );
        let lateness = lateness_histogram();
        r.register_with_unit(
            "handover_lateness",
            "How late each fire reached the outbox after its tick",
            Unit::Seconds,
            lateness.clone(),
        );
        let delivered = Counter::default();
        r.register(
            "events_delivered",
            "Events the Attune API accepted",
            delivered.clone(),
        );
        let failed = Family::<FailedLabels, Counter>::default();
        r.register(
            "events_failed",
            "Events lost: not delivered and no longer retried, by reason and the last answer's status class",
            failed.clone(),
        );
        let retries = Family::<StatusLabels, Counter>::default();
        r.register(
            "event_retries",
            "Event deliveries that failed and will be retried, by status class",
            retries.clone(),
        );
        let requests = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            request_histogram,
        );
        r.register_with_unit(
            "api_request_duration",
            "Attune API requests, by endpoint and status class",
            Unit::Seconds,
            requests.clone(),
        );
        let messages = Family::<MessageLabels, Counter>::default();
        r.register(
            "lifecycle_messages",
            "Rule lifecycle messages received, by type and result",
            messages.clone(),
        );
        let reconnects = Family::<TransportLabels, Counter>::default();
        r.register(
            "transport_reconnects",
            "Reconnections of the rule-lifecycle transport",
            reconnects.clone(),
        );
        let connected = Family::<TransportLabels, Gauge>::default();
        r.register(
            "transport_connected",
            "Whether the rule-lifecycle transport is connected (1) or not (0)",
            connected.clone(),
        );
        let calls = Family::<FunctionLabels, Counter>::default();
        r.register(
            "component_calls",
            "Calls into the timer component, by exported function",
            calls.clone(),
        );
        let traps = Family::<FunctionLabels, Counter>::default();
        r.register(
            "component_traps",
            "Component calls that trapped, deadline hits and memory-cap hits included (the instance was dropped)",
            traps.clone(),
        );
        let deadline_hits = Family::<FunctionLabels, Counter>::default();
        r.register(
            "component_deadline_hits",
            "Component calls stopped by their CPU deadline",
            deadline_hits.clone(),
        );
        let swaps = Family::<ResultLabels, Counter>::default();
        r.register(
            "component_swaps",
            "Live component swaps, accepted or rejected",
            swaps.clone(),
        );
        let store_commits = Histogram::new(COMMIT_BUCKETS);
        r.register_with_unit(
            "store_write_duration",
            "State store commits (one group of writes, synced to disk)",
            Unit::Seconds,
            store_commits.clone(),
        );
        let store_errors = Counter::default();
        r.register(
            "store_write_errors",
            "State store commits that failed (the daemon carries on in memory)",
            store_errors.clone(),
        );
        let wall_steps = Counter::default();
        r.register(
            "wall_clock_steps",
            "Wall-clock steps (or suspends) the clock re-anchored after",
            wall_steps.clone(),
        );
        let outbox_events = Family::<PlaceLabels, Gauge>::default();
        r.register(
            "outbox_events",
            "Undelivered events, in memory or spilled to disk",
            outbox_events.clone(),
        );
        let outbox_bytes = Family::<PlaceLabels, Gauge>::default();
        r.register_with_unit(
            "outbox",
            "Payload bytes of undelivered events: in memory, and in the state store's journal",
            Unit::Bytes,
            outbox_bytes.clone(),
        );
        let outbox_oldest = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        r.register_with_unit(
            "outbox_oldest_event_age",
            "Age of the oldest undelivered event (0 when there is none)",
            Unit::Seconds,
            outbox_oldest.clone(),
        );
        let outbox_concurrency = Gauge::default();
        r.register(
            "outbox_concurrency_limit",
            "Event deliveries allowed in flight now (the adaptive limit)",
            outbox_concurrency.clone(),
        );
        let rules = Family::<StateLabels, Gauge>::default();
        r.register("rules", "Rules the sensor holds, by state", rules.clone());
        let token_expiry = Family::<NoLabels, Gauge>::default();
        r.register_with_unit(
            "token_expiry_timestamp",
            "When the API token expires, as a Unix timestamp (absent for a token without exp)",
            Unit::Seconds,
            token_expiry.clone(),
        );
        let component = Family::<ComponentLabels, Gauge>::default();
        r.register(
            "component_info",
            "The timer component running now (value 1)",
            component.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register("build_info", "The daemon's version (value 1)", build);
        let ready = Gauge::default();
        r.register(
            "ready",
            "Whether the daemon is ready (1) or not (0): what /readyz answers",
            ready.clone(),
        );
        // Every series an alert takes `increase()` of starts at 0, so its first count is
        // an increase (a series that first appears at 1 would look unchanged).
        for reason in [
            LossReason::Rejected,
            LossReason::TooOld,
            LossReason::OverSize,
            LossReason::Refused,
            LossReason::Abandoned,
        ] {
            for status_class in STATUS_CLASSES {
                let _ = failed.get_or_create(&FailedLabels {
                    reason,
                    status_class,
                });
            }
        }
        for status_class in STATUS_CLASSES {
            let _ = retries.get_or_create(&StatusLabels { status_class });
        }
        for result in ["accepted", "rejected"] {
            let _ = swaps.get_or_create(&ResultLabels { result });
        }
        for function in COMPONENT_FUNCTIONS {
            let labels = FunctionLabels { function };
            let _ = calls.get_or_create(&labels);
            let _ = traps.get_or_create(&labels);
            let _ = deadline_hits.get_or_create(&labels);
        }
        let store_writable = Family::<NoLabels, Gauge>::default();
        r.register(
            "store_writable",
            "Whether the state store accepts writes (1) or the daemon runs in memory (0); absent without a store",
            store_writable.clone(),
        );
        Inner {
            registry: r,
            fires,
            fire_counters: RwLock::default(),
            lateness,
            delivered,
            failed,
            retries,
            requests,
            messages,
            reconnects,
            connected,
            calls,
            traps,
            deadline_hits,
            swaps,
            store_commits,
            store_errors,
            wall_steps,
            outbox_events,
            outbox_bytes,
            outbox_oldest,
            outbox_concurrency,
            rules,
            token_expiry,
            component,
            ready,
            store_writable,
        }
    }
}

/// What waits in the outbox to be delivered: what the outbox reports
/// (`OutboxSink::backlog`) and the outbox gauges show ([`Metrics::set_outbox`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Backlog {
    /// Events in memory: queued or being delivered.
    pub in_memory: u64,
    /// Events on disk only, waiting for room in memory.
    pub spilled: u64,
    /// Payload bytes of the events in memory.
    pub memory_bytes: u64,
    /// Bytes in the state store's journal (0 without a store).
    pub journal_bytes: u64,
    /// Age of the oldest undelivered event (zero when there is none).
    pub oldest_age: Duration,
    /// Requests allowed in flight now (the adaptive limit).
    pub concurrency_limit: u64,
}

/// The component running now (see [`Metrics::set_component`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentIdentity {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    // ---- the clock ----

    /// `n` fires of `trigger_ref` that went `outcome`.
    pub fn fired(&self, trigger_ref: &str, outcome: FireOutcome, n: u64) {
        let index = outcome as usize;
        if let Some(counters) = self
            .inner
            .fire_counters
            .read()
            .expect("fire counters lock")
            .get(trigger_ref)
        {
            counters[index].inc_by(n);
            return;
        }
        let counters = [
            FireOutcome::OnTime,
            FireOutcome::Late,
            FireOutcome::CatchUp,
            FireOutcome::Faulted,
        ]
        .map(|outcome| {
            self.inner.fires.get_or_create_owned(&FireLabels {
                trigger_ref: trigger_ref.to_string(),
                outcome,
            })
        });
        counters[index].inc_by(n);
        self.inner
            .fire_counters
            .write()
            .expect("fire counters lock")
            .insert(trigger_ref.to_string(), counters);
    }

    /// Starts the fire counters of `trigger_refs` (every outcome) at 0, so that they are
    /// there before the first fire and the first of each counts as an increase.
    pub fn declare_trigger_refs(&self, trigger_refs: &[String]) {
        for r in trigger_refs {
            self.fired(r, FireOutcome::OnTime, 0);
        }
    }

    /// How late one fire reached the outbox.
    pub fn handed_over(&self, late: Duration) {
        self.inner.lateness.observe(late.as_secs_f64());
    }

    pub fn wall_clock_stepped(&self) {
        self.inner.wall_steps.inc();
    }

    // ---- the outbox and the API ----

    pub fn event_delivered(&self) {
        self.inner.delivered.inc();
    }

    pub fn event_lost(&self, reason: LossReason, status_class: StatusClass) {
        self.inner
            .failed
            .get_or_create(&FailedLabels {
                reason,
                status_class,
            })
            .inc();
    }

    pub fn event_retried(&self, status_class: StatusClass) {
        self.inner
            .retries
            .get_or_create(&StatusLabels { status_class })
            .inc();
    }

    /// One API request and how it ended.
    pub fn api_request(&self, endpoint: Endpoint, status_class: StatusClass, took: Duration) {
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                endpoint,
                status_class,
            })
            .observe(took.as_secs_f64());
    }

    // ---- the lifecycle transports ----

    pub fn lifecycle_message(&self, r#type: MessageType, result: MessageResult) {
        self.inner
            .messages
            .get_or_create(&MessageLabels { r#type, result })
            .inc();
    }

    /// Starts `transport`'s series: disconnected, no reconnection yet.
    pub fn declare_transport(&self, transport: Transport) {
        let labels = TransportLabels { transport };
        let _ = self.inner.reconnects.get_or_create(&labels);
        let _ = self.inner.connected.get_or_create(&labels);
    }

    pub fn transport_connected(&self, transport: Transport, connected: bool) {
        self.inner
            .connected
            .get_or_create(&TransportLabels { transport })
            .set(i64::from(connected));
    }

    pub fn transport_reconnected(&self, transport: Transport) {
        self.inner
            .reconnects
            .get_or_create(&TransportLabels { transport })
            .inc();
    }

    // ---- the component ----

    /// One call of an exported function; `trapped` when the instance was dropped after it,
    /// `deadline` when its CPU deadline stopped it.
    pub fn component_call(&self, function: &'static str, trapped: bool, deadline: bool) {
        let labels = FunctionLabels { function };
        self.inner.calls.get_or_create(&labels).inc();
        if trapped {
            self.inner.traps.get_or_create(&labels).inc();
        }
        if deadline {
            self.inner.deadline_hits.get_or_create(&labels).inc();
        }
    }

    pub fn component_swap(&self, accepted: bool) {
        let result = if accepted { "accepted" } else { "rejected" };
        self.inner
            .swaps
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    // ---- the state store ----

    /// One commit: how long it took, and whether it failed.
    pub fn store_commit(&self, took: Duration, failed: bool) {
        self.inner.store_commits.observe(took.as_secs_f64());
        if failed {
            self.inner.store_errors.inc();
        }
    }

    // ---- gauges set before encoding ----

    pub fn set_outbox(&self, g: &Backlog) {
        let i = &self.inner;
        let set = |family: &Family<PlaceLabels, Gauge>, place, v: u64| {
            family
                .get_or_create(&PlaceLabels { r#where: place })
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&i.outbox_events, Place::Memory, g.in_memory);
        set(&i.outbox_events, Place::Disk, g.spilled);
        set(&i.outbox_bytes, Place::Memory, g.memory_bytes);
        set(&i.outbox_bytes, Place::Journal, g.journal_bytes);
        i.outbox_oldest.set(g.oldest_age.as_secs_f64());
        i.outbox_concurrency
            .set(i64::try_from(g.concurrency_limit).unwrap_or(i64::MAX));
    }

    /// Rules by state; every state is set, so a state with no rule reads 0.
    pub fn set_rules(&self, counts: &[(RuleStatus, usize)]) {
        for (state, n) in counts {
            self.inner
                .rules
                .get_or_create(&StateLabels { state: *state })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
    }

    /// The token's expiry, as a Unix timestamp; `None` (a token without `exp`) leaves the
    /// metric absent.
    pub fn set_token_expiry(&self, unix_seconds: Option<i64>) {
        match unix_seconds {
            Some(at) => {
                self.inner.token_expiry.get_or_create(&Vec::new()).set(at);
            }
            None => self.inner.token_expiry.clear(),
        }
    }

    /// The component running now: one series with value 1.
    pub fn set_component(&self, c: &ComponentIdentity) {
        let labels = ComponentLabels {
            name: c.name.clone(),
            version: c.version.clone(),
            sha256: c.sha256.clone(),
        };
        if self.inner.component.get(&labels).is_none() {
            self.inner.component.clear();
        }
        self.inner.component.get_or_create(&labels).set(1);
    }

    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.set(i64::from(ready));
    }

    /// Whether the state store accepts writes; never called without a store, so the metric
    /// stays absent then.
    pub fn set_store_writable(&self, writable: bool) {
        self.inner
            .store_writable
            .get_or_create(&Vec::new())
            .set(i64::from(writable));
    }

    /// The metrics as text: OpenMetrics 1.0 when `openmetrics`, else the Prometheus text
    /// format 0.0.4. Returns the text and its content type.
    pub fn encode(&self, openmetrics: bool) -> (String, &'static str) {
        let mut out = String::with_capacity(16 * 1024);
        let registry = &self.inner.registry;
        // Writing to a String cannot fail.
        if openmetrics {
            let _ = prometheus_client::encoding::text::encode(&mut out, registry);
            (out, OPENMETRICS_TEXT)
        } else {
            let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, registry);
            (out, PROMETHEUS_TEXT)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of<'a>(text: &'a str, start: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(start))
    }

    #[test]
    fn both_formats_follow_their_conventions() {
        let m = Metrics::new();
        m.fired("core.crontimer", FireOutcome::OnTime, 3);
        m.fired("core.crontimer", FireOutcome::Late, 1);
        m.event_lost(LossReason::TooOld, StatusClass::ServerError);
        let (text, content_type) = m.encode(false);
        assert_eq!(content_type, PROMETHEUS_TEXT);
        assert_eq!(
            line_of(
                &text,
                "attune_timer_fires_total{trigger_ref=\"core.crontimer\",outcome=\"on_time\"}"
            ),
            Some("attune_timer_fires_total{trigger_ref=\"core.crontimer\",outcome=\"on_time\"} 3")
        );
        assert!(text.contains("# TYPE attune_timer_handover_lateness_seconds histogram"));
        assert!(!text.contains("# EOF"));
        let (open, content_type) = m.encode(true);
        assert_eq!(content_type, OPENMETRICS_TEXT);
        assert!(open.contains("# TYPE attune_timer_fires counter"));
        assert!(open.contains("# UNIT attune_timer_handover_lateness_seconds seconds"));
        assert!(open.trim_end().ends_with("# EOF"));
    }

    #[test]
    fn loss_series_start_at_zero_and_gauges_without_a_value_are_absent() {
        let m = Metrics::new();
        let (text, _) = m.encode(false);
        assert!(text.contains(
            "attune_timer_events_failed_total{reason=\"abandoned\",status_class=\"none\"} 0"
        ));
        assert!(line_of(&text, "attune_timer_token_expiry_timestamp_seconds ").is_none());
        assert!(line_of(&text, "attune_timer_store_writable ").is_none());
        m.set_token_expiry(Some(1_900_000_000));
        m.set_store_writable(true);
        let (text, _) = m.encode(false);
        assert_eq!(
            line_of(&text, "attune_timer_token_expiry_timestamp_seconds "),
            Some("attune_timer_token_expiry_timestamp_seconds 1900000000")
        );
        assert_eq!(
            line_of(&text, "attune_timer_store_writable "),
            Some("attune_timer_store_writable 1")
        );
        m.set_token_expiry(None);
        let (text, _) = m.encode(false);
        assert!(line_of(&text, "attune_timer_token_expiry_timestamp_seconds ").is_none());
    }

    #[test]
    fn the_component_info_names_only_the_component_running_now() {
        let m = Metrics::new();
        let component = |version: &str| ComponentIdentity {
            name: "timer".into(),
            version: version.into(),
            sha256: format!("hash-{version}"),
        };
        m.set_component(&component("1.0.0"));
        m.set_component(&component("1.1.0"));
        let (text, _) = m.encode(false);
        let series: Vec<_> = text
            .lines()
            .filter(|l| l.starts_with("attune_timer_component_info{"))
            .collect();
        assert_eq!(
            series,
            ["attune_timer_component_info{name=\"timer\",version=\"1.1.0\",sha256=\"hash-1.1.0\"} 1"]
        );
    }

    #[test]
    fn clones_count_into_the_same_families() {
        let m = Metrics::new();
        let clone = m.clone();
        clone.event_delivered();
        m.event_delivered();
        let (text, _) = m.encode(false);
        assert_eq!(
            line_of(&text, "attune_timer_events_delivered_total "),
            Some("attune_timer_events_delivered_total 2")
        );
        // A set of its own counts apart.
        let (other, _) = Metrics::new().encode(false);
        assert_eq!(
            line_of(&other, "attune_timer_events_delivered_total "),
            Some("attune_timer_events_delivered_total 0")
        );
    }
}
