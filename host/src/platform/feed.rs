//! What both rule-lifecycle transports share (docs/platform.md §1.4, §1.5): the message
//! they are turned into ([`LifecycleMessage`]), the one way such a message reaches the rule
//! table ([`RuleFeed::apply`]), the REST re-sync after every connect ([`RuleFeed::resync`],
//! §1.3(d)), and the reconnect policy ([`ReconnectPolicy`]). RabbitMQ (`lifecycle`) and the
//! notifier WebSocket (`notifier`) only read their wire and hand messages here, so the rule
//! table cannot tell which transport runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tracing::{debug, error, info, warn};

use crate::component::Rule;
use crate::schedule::{RuleSource, RuleTable, SnapshotReport};
use crate::support::backoff::{Backoff, BackoffPolicy};
use crate::support::redact::excerpt;
use crate::telemetry::{MessageResult, MessageType, Metrics, Transport};

/// Bounds on what a transport or the rules listing may hand in. A message over
/// `max_message_bytes` is refused unread; a rule whose `trigger_params` serialize to more
/// than `max_params_bytes` is refused, and nothing of it is kept but its id in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    /// The largest lifecycle message (a broker delivery, a WebSocket text frame).
    pub max_message_bytes: usize,
    /// The largest `trigger_params` of one rule, serialized as compact JSON.
    pub max_params_bytes: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 1 << 20,
            max_params_bytes: 64 << 10,
        }
    }
}

/// How much of an offending value a log line quotes.
const EXCERPT_CHARS: usize = 64;

/// Reconnect delays: 1 s doubling to 30 s (no jitter: one sensor, one broker), and a
/// session that lasted `healthy_after` (30 s) starts them over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    pub backoff: BackoffPolicy,
    /// A session that lasted at least this long resets the delay.
    pub healthy_after: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            backoff: BackoffPolicy {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(30),
                jitter: false,
            },
            healthy_after: Duration::from_secs(30),
        }
    }
}

impl ReconnectPolicy {
    /// A session ended after `lasted`: a healthy one resets the delay.
    pub(crate) fn session_ended(&self, backoff: &mut Backoff, lasted: Duration) {
        if lasted >= self.healthy_after {
            backoff.reset();
        }
    }
}

/// The reconnect loop of every transport: waits out `backoff`, connects, and re-syncs
/// `feed` from the REST listing (so nothing changed during the outage is missed), until
/// both work — the new session — or `shutdown` resolves (`None`). A session whose re-sync
/// failed is handed to `close`. `peer` names what is reconnected to, in the logs.
pub(crate) async fn reconnect<S, C, CF, X, XF>(
    peer: &str,
    feed: &RuleFeed,
    backoff: &mut Backoff,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
    mut connect: C,
    mut close: X,
) -> Option<S>
where
    C: FnMut() -> CF,
    CF: Future<Output = anyhow::Result<S>>,
    X: FnMut(S) -> XF,
    XF: Future<Output = ()>,
{
    // Called once a session is lost: not connected until a new one is up and re-synced.
    feed.connected(false);
    loop {
        let delay = backoff.next_delay();
        info!(
            delay_ms = delay.as_millis() as u64,
            "Reconnecting to {peer} in {delay:?}"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.as_mut() => return None,
        }
        let attempt = async {
            let session = connect()
                .await
                .map_err(|e| format!("cannot connect: {e:#}"))?;
            match feed.resync().await {
                Ok(_) => Ok(session),
                Err(e) => {
                    close(session).await;
                    Err(format!("cannot re-sync rules from the API: {e:#}"))
                }
            }
        };
        tokio::select! {
            result = attempt => match result {
                Ok(session) => {
                    info!("Reconnected to {peer} and re-synced rules");
                    feed.metrics.transport_reconnected(feed.transport);
                    feed.connected(true);
                    return Some(session);
                }
                Err(why) => warn!("Reconnect failed: {why}"),
            },
            _ = shutdown.as_mut() => return None,
        }
    }
}

/// What a lifecycle message says happened to a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleKind {
    Created,
    Enabled,
    Disabled,
    Deleted,
}

impl LifecycleKind {
    /// `RuleCreated`, `rule_created`, `rule.created` (any case) and likewise for the others.
    pub fn parse(name: &str) -> Option<Self> {
        let key: String = name
            .chars()
            .filter(|c| *c != '.' && *c != '_')
            .flat_map(char::to_lowercase)
            .collect();
        match key.as_str() {
            "rulecreated" => Some(Self::Created),
            "ruleenabled" => Some(Self::Enabled),
            "ruledisabled" => Some(Self::Disabled),
            "ruledeleted" => Some(Self::Deleted),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "rule.created",
            Self::Enabled => "rule.enabled",
            Self::Disabled => "rule.disabled",
            Self::Deleted => "rule.deleted",
        }
    }
}

/// A rule-lifecycle message, whichever shape it came in.
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleMessage {
    pub kind: LifecycleKind,
    pub rule_id: i64,
    pub rule_ref: String,
    /// `None` when the message named none (empty): the component infers it from params.
    pub trigger_ref: Option<String>,
    /// `None` when absent or null (e.g. a payload too large to carry them).
    pub trigger_params: Option<Value>,
    /// For `Created`: whether the rule was created enabled (default true).
    pub enabled: bool,
}

/// Feeds the rule table from lifecycle messages and REST snapshots, whichever transport
/// brought them.
#[derive(Clone)]
pub struct RuleFeed {
    table: RuleTable,
    source: Arc<dyn RuleSource>,
    limits: InputLimits,
    metrics: Metrics,
    /// Which transport feeds it, for the metrics.
    transport: Transport,
    /// Whether the transport's session is up (shared by every clone).
    up: Arc<AtomicBool>,
}

impl RuleFeed {
    pub fn new(table: RuleTable, source: Arc<dyn RuleSource>) -> Self {
        Self {
            table,
            source,
            limits: InputLimits::default(),
            metrics: Metrics::default(),
            transport: Transport::RabbitMq,
            up: Arc::default(),
        }
    }

    /// Counts messages, connection and reconnections of `transport` into `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics, transport: Transport) -> Self {
        metrics.declare_transport(transport);
        self.metrics = metrics;
        self.transport = transport;
        self
    }

    /// The transport's session is up (and its rules re-synced), or lost.
    pub(crate) fn connected(&self, connected: bool) {
        self.up.store(connected, Ordering::Relaxed);
        self.metrics.transport_connected(self.transport, connected);
    }

    /// Whether the transport's session is up: connected, and re-synced after a reconnect.
    pub fn is_connected(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// A message that could not be read (malformed, or of an unreadable kind): dropped.
    pub(crate) fn count_malformed(&self) {
        self.metrics
            .lifecycle_message(MessageType::Other, MessageResult::Invalid);
    }

    /// A well-formed message this sensor does not act on.
    pub(crate) fn count_ignored(&self) {
        self.metrics
            .lifecycle_message(MessageType::Other, MessageResult::Ignored);
    }

    pub fn with_limits(mut self, limits: InputLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Whether a message of `bytes` may be read at all; a refusal is logged with its size
    /// and kind, never its content.
    pub fn admit_message(&self, bytes: usize, kind: &'static str) -> bool {
        if bytes <= self.limits.max_message_bytes {
            return true;
        }
        self.count_malformed();
        warn!(
            message_bytes = bytes,
            limit_bytes = self.limits.max_message_bytes,
            message_kind = kind,
            "Refusing an oversize rule lifecycle message ({kind}, {bytes} bytes, over the \
             {}-byte limit ATTUNE_MAX_MESSAGE_BYTES)",
            self.limits.max_message_bytes
        );
        false
    }

    /// Why a rule may not be applied at all: a rule id that is not positive, a trigger ref
    /// with surrounding spaces (refused rather than trimmed: the platform would not match
    /// it either), params over the size limit. The reason quotes at most a short escaped
    /// excerpt of the trigger ref, and nothing of the params.
    fn refusal(&self, rule: &Rule) -> Option<String> {
        if rule.id <= 0 {
            return Some(format!("rule ids are positive, got {}", rule.id));
        }
        if let Some(t) = &rule.trigger_ref {
            if t.trim() != t {
                return Some(format!(
                    "its trigger ref \"{}\" has surrounding spaces",
                    excerpt(t, EXCERPT_CHARS)
                ));
            }
        }
        let bytes = serde_json::to_vec(&rule.trigger_params).map_or(0, |v| v.len());
        if bytes > self.limits.max_params_bytes {
            return Some(format!(
                "its trigger_params are {bytes} bytes, over the {}-byte limit \
                 (ATTUNE_MAX_RULE_PARAMS_BYTES)",
                self.limits.max_params_bytes
            ));
        }
        None
    }

    /// Applies `rule` unless it is refused; a refused rule is logged and anything running
    /// under its id stops.
    async fn upsert_checked(&self, rule: Rule, what: &str) -> MessageResult {
        match self.refusal(&rule) {
            None => {
                self.table.upsert(rule).await;
                MessageResult::Applied
            }
            Some(why) => {
                warn!(
                    rule_id = rule.id,
                    "Refusing {what} for rule {}: {why}", rule.id
                );
                let id = rule.id;
                // Only the id is kept (in the log line above); nothing runs under it.
                drop(rule);
                if id > 0 {
                    self.table.remove(id).await;
                }
                MessageResult::Invalid
            }
        }
    }

    pub fn table(&self) -> &RuleTable {
        &self.table
    }

    /// Loads every active rule in scope from the REST listing and applies it as a snapshot.
    pub async fn resync(&self) -> anyhow::Result<SnapshotReport> {
        let rules = self.source.active_rules(self.table.scope()).await?;
        let listed = rules.len();
        let rules: Vec<Rule> = rules
            .into_iter()
            .filter(|rule| match self.refusal(rule) {
                None => true,
                Some(why) => {
                    warn!(
                        rule_id = rule.id,
                        "Refusing listed rule {}: {why}; it does not run", rule.id
                    );
                    false
                }
            })
            .collect();
        let refused = listed - rules.len();
        let report = self.table.apply_snapshot(rules).await;
        info!(
            listed,
            refused,
            started = report.started,
            replaced = report.replaced,
            kept = report.kept,
            stopped = report.stopped,
            not_running = report.not_running,
            running = report.running,
            "Rules re-synced from the API: {} running",
            report.running
        );
        Ok(report)
    }

    /// Applies one lifecycle message to the rule table. Never fails: a rule that cannot be
    /// fetched or started is logged.
    pub async fn apply(&self, message: LifecycleMessage) {
        let kind = match message.kind {
            LifecycleKind::Created => MessageType::Created,
            LifecycleKind::Enabled => MessageType::Enabled,
            LifecycleKind::Disabled => MessageType::Disabled,
            LifecycleKind::Deleted => MessageType::Deleted,
        };
        let result = self.apply_counted(message).await;
        self.metrics.lifecycle_message(kind, result);
    }

    async fn apply_counted(&self, message: LifecycleMessage) -> MessageResult {
        let LifecycleMessage {
            kind,
            rule_id,
            rule_ref,
            trigger_ref,
            trigger_params,
            enabled,
        } = message;
        if rule_id <= 0 {
            warn!(
                rule_id,
                "Refusing {} for rule {rule_id}: rule ids are positive",
                kind.as_str()
            );
            return MessageResult::Invalid;
        }
        if let Some(tr) = trigger_ref.as_deref().filter(|t| t.trim() != *t) {
            warn!(
                rule_id,
                "Refusing {} for rule {rule_id}: its trigger ref \"{}\" has surrounding spaces",
                kind.as_str(),
                excerpt(tr, EXCERPT_CHARS)
            );
            self.table.remove(rule_id).await;
            return MessageResult::Invalid;
        }
        if let Some(tr) = &trigger_ref {
            if !self.table.in_scope(tr) {
                debug!(
                    rule_id,
                    trigger_ref = %tr,
                    "Ignoring {} for rule {rule_id}: not a trigger this sensor runs",
                    kind.as_str()
                );
                return MessageResult::Ignored;
            }
        }
        info!(
            rule_id,
            trigger_ref = trigger_ref.as_deref().unwrap_or(""),
            "Rule lifecycle message: {} for rule {rule_id}",
            kind.as_str()
        );
        match kind {
            LifecycleKind::Created if !enabled => {
                info!(rule_id, "Rule {rule_id} is disabled, not starting timer");
                self.table.remove(rule_id).await;
                MessageResult::Applied
            }
            LifecycleKind::Created | LifecycleKind::Enabled => match trigger_params {
                Some(params) => {
                    let rule = Rule {
                        id: rule_id,
                        r#ref: rule_ref,
                        trigger_ref,
                        trigger_params: params,
                    };
                    self.upsert_checked(rule, kind.as_str()).await
                }
                None => self.refetch(rule_id, trigger_ref).await,
            },
            LifecycleKind::Disabled | LifecycleKind::Deleted => {
                self.table.remove(rule_id).await;
                MessageResult::Applied
            }
        }
    }

    /// A create/enable without params (the platform drops them from oversize messages):
    /// look the rule up in the REST listing instead of dropping it.
    async fn refetch(&self, rule_id: i64, trigger_ref: Option<String>) -> MessageResult {
        warn!(
            rule_id,
            "Rule {rule_id} was enabled without trigger_params in the message; \
             fetching it from the API's rules listing"
        );
        let refs = match trigger_ref {
            Some(r) => vec![r],
            None => self.table.scope().to_vec(),
        };
        match self.source.active_rules(&refs).await {
            Ok(rules) => match rules.into_iter().find(|r| r.id == rule_id) {
                Some(rule) => self.upsert_checked(rule, "the fetched rule").await,
                None => {
                    info!(
                        rule_id,
                        "Rule {rule_id} is not listed as active by the API; not running it"
                    );
                    self.table.remove(rule_id).await;
                    MessageResult::Applied
                }
            },
            Err(e) => {
                error!(
                    rule_id,
                    "Cannot fetch rule {rule_id} from the API ({e:#}); it will be picked up at \
                     the next re-sync"
                );
                MessageResult::Invalid
            }
        }
    }
}
