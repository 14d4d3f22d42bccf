//! What both rule-lifecycle transports share (docs/platform.md §1.4, §1.5): the message
//! they are turned into ([`LifecycleMessage`]), the one way such a message reaches the rule
//! table ([`RuleFeed::apply`]), the REST re-sync after every connect ([`RuleFeed::resync`],
//! §1.3(d)), and the reconnect policy ([`ReconnectPolicy`]). RabbitMQ (`lifecycle`) and the
//! notifier WebSocket (`notifier`) only read their wire and hand messages here, so the rule
//! table cannot tell which transport runs.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tracing::{debug, error, info, warn};

use crate::component::Rule;
use crate::schedule::{RuleSource, RuleTable, SnapshotReport};
use crate::support::backoff::{Backoff, BackoffPolicy};

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
}

impl RuleFeed {
    pub fn new(table: RuleTable, source: Arc<dyn RuleSource>) -> Self {
        Self { table, source }
    }

    pub fn table(&self) -> &RuleTable {
        &self.table
    }

    /// Loads every active rule in scope from the REST listing and applies it as a snapshot.
    pub async fn resync(&self) -> anyhow::Result<SnapshotReport> {
        let rules = self.source.active_rules(self.table.scope()).await?;
        let listed = rules.len();
        let report = self.table.apply_snapshot(rules).await;
        info!(
            listed,
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
        let LifecycleMessage {
            kind,
            rule_id,
            rule_ref,
            trigger_ref,
            trigger_params,
            enabled,
        } = message;
        if let Some(tr) = &trigger_ref {
            if !self.table.in_scope(tr) {
                debug!(
                    rule_id,
                    trigger_ref = %tr,
                    "Ignoring {} for rule {rule_id}: not a trigger this sensor runs",
                    kind.as_str()
                );
                return;
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
            }
            LifecycleKind::Created | LifecycleKind::Enabled => match trigger_params {
                Some(params) => {
                    self.table
                        .upsert(Rule {
                            id: rule_id,
                            r#ref: rule_ref,
                            trigger_ref,
                            trigger_params: params,
                        })
                        .await;
                }
                None => self.refetch(rule_id, trigger_ref).await,
            },
            LifecycleKind::Disabled | LifecycleKind::Deleted => {
                self.table.remove(rule_id).await;
            }
        }
    }

    /// A create/enable without params (the platform drops them from oversize messages):
    /// look the rule up in the REST listing instead of dropping it.
    async fn refetch(&self, rule_id: i64, trigger_ref: Option<String>) {
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
                Some(rule) => {
                    self.table.upsert(rule).await;
                }
                None => {
                    info!(
                        rule_id,
                        "Rule {rule_id} is not listed as active by the API; not running it"
                    );
                    self.table.remove(rule_id).await;
                }
            },
            Err(e) => error!(
                rule_id,
                "Cannot fetch rule {rule_id} from the API ({e:#}); it will be picked up at the \
                 next re-sync"
            ),
        }
    }
}
