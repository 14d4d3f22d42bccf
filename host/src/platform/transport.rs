//! The one seam between the daemon and the rule-lifecycle transports: exactly one of
//! RabbitMQ (docs/platform.md §1.4, [`super::lifecycle`]) and the notifier WebSocket (§1.5,
//! [`super::notifier`]) runs, chosen by the settings. Both feed the rule table through the
//! same [`RuleFeed`], re-sync from the REST listing after every connect (§1.3(d)) and
//! reconnect with the same backoff, so neither the rule table nor the daemon knows which
//! one it is.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use tracing::{info, warn};

use super::api::{ApiClient, ApiRules};
use super::feed::{InputLimits, RuleFeed};
use super::lifecycle::{self, Listener, ListenerConfig, Session};
use super::notifier::{NotifierConfig, NotifierListener, NotifierSession};
use crate::schedule::{RuleTable, SnapshotReport};
use crate::support::redact::url_for_log;
use crate::telemetry::Transport;

/// Which transport to run, and how.
#[derive(Debug, Clone)]
pub enum TransportConfig {
    RabbitMq(ListenerConfig),
    NotifierWs(NotifierConfig),
}

/// A connected transport: set up and receiving, its first re-sync still to be done by
/// [`LifecycleTransport::resync`], then run by [`LifecycleTransport::run`].
pub struct LifecycleTransport {
    inner: Inner,
    feed: RuleFeed,
    resync_every: Option<Duration>,
}

enum Inner {
    RabbitMq {
        listener: Box<Listener>,
        session: Box<Session>,
    },
    NotifierWs {
        listener: Box<NotifierListener>,
        session: Box<NotifierSession>,
    },
}

impl std::fmt::Debug for LifecycleTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LifecycleTransport")
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

impl LifecycleTransport {
    /// Connects and starts receiving (RabbitMQ: the topology and the consumer; the
    /// notifier: the handshake and one subscription per trigger ref in scope). Messages
    /// that arrive before [`LifecycleTransport::run`] wait, so a snapshot taken after this
    /// misses nothing.
    pub async fn connect(
        config: TransportConfig,
        table: RuleTable,
        api: ApiClient,
        limits: InputLimits,
    ) -> anyhow::Result<LifecycleTransport> {
        let transport = match &config {
            TransportConfig::RabbitMq(_) => Transport::RabbitMq,
            TransportConfig::NotifierWs(_) => Transport::Notifier,
        };
        let feed = RuleFeed::new(table, std::sync::Arc::new(ApiRules::new(api.clone())))
            .with_limits(limits)
            .with_metrics(api.metrics().clone(), transport);
        let kept = feed.clone();
        let inner = match config {
            TransportConfig::RabbitMq(config) => {
                let session = lifecycle::connect(&config).await.with_context(|| {
                    format!(
                        "Failed to connect to RabbitMQ at {}",
                        url_for_log(&config.mq_url)
                    )
                })?;
                Inner::RabbitMq {
                    listener: Box::new(Listener::with_feed(config, feed)),
                    session: Box::new(session),
                }
            }
            TransportConfig::NotifierWs(config) => {
                let origin = url_for_log(&config.url);
                let listener = NotifierListener::new(config, feed, api);
                let session = listener.connect().await.with_context(|| {
                    format!("Failed to connect to the notifier WebSocket at {origin}")
                })?;
                Inner::NotifierWs {
                    listener: Box::new(listener),
                    session: Box::new(session),
                }
            }
        };
        info!("Rule lifecycle listener initialized");
        kept.connected(true);
        Ok(LifecycleTransport {
            inner,
            feed: kept,
            resync_every: None,
        })
    }

    /// Also re-syncs the whole rule table from the REST listing every `every` while it runs
    /// (`None`: only after a reconnect). Each periodic re-sync is applied as a snapshot, as
    /// after a reconnect, and logs how many rules it corrected.
    pub fn with_periodic_resync(mut self, every: Option<Duration>) -> Self {
        self.resync_every = every.filter(|d| !d.is_zero());
        self
    }

    /// What it feeds; [`RuleFeed::is_connected`] tells whether its session is up. Clones
    /// share the state.
    pub fn feed(&self) -> &RuleFeed {
        &self.feed
    }

    /// `rabbitmq` or `notifier_ws`.
    pub fn kind(&self) -> &'static str {
        match &self.inner {
            Inner::RabbitMq { .. } => "rabbitmq",
            Inner::NotifierWs { .. } => "notifier_ws",
        }
    }

    /// Loads every active rule in scope from the REST listing and applies it as a snapshot.
    pub async fn resync(&self) -> anyhow::Result<SnapshotReport> {
        match &self.inner {
            Inner::RabbitMq { listener, .. } => listener.resync().await,
            Inner::NotifierWs { listener, .. } => listener.resync().await,
        }
    }

    /// Closes the connection without running (a start that failed after connecting).
    pub async fn close(self) {
        match self.inner {
            Inner::RabbitMq { listener, session } => {
                (*session).close(&listener.config().consumer_tag).await
            }
            Inner::NotifierWs { session, .. } => (*session).close().await,
        }
    }

    /// Receives rule changes until `shutdown` resolves, reconnecting (with backoff, then a
    /// re-sync) whenever the connection is lost; closes the connection on shutdown.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let periodic = periodic_resync(self.feed, self.resync_every);
        let inner = self.inner;
        let listen = async move {
            match inner {
                Inner::RabbitMq { listener, session } => listener.run(*session, shutdown).await,
                Inner::NotifierWs { listener, session } => listener.run(*session, shutdown).await,
            }
        };
        // The listener returns on shutdown; the periodic re-sync never ends on its own and is
        // dropped then (a re-sync cut short leaves the table consistent: it holds its lock
        // per change).
        tokio::select! {
            _ = listen => {}
            _ = periodic => {}
        }
    }
}

/// Re-syncs from the REST listing every `every` (never when `None`), counting what each
/// re-sync corrected: rules started, replaced or stopped because a lifecycle message was
/// missed. A failed re-sync is logged and tried again at the next tick.
async fn periodic_resync(feed: RuleFeed, every: Option<Duration>) {
    let Some(every) = every else {
        return std::future::pending().await;
    };
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut resyncs: u64 = 0;
    loop {
        ticks.tick().await;
        resyncs += 1;
        match feed.resync().await {
            Ok(report) => {
                let corrected = report.started + report.replaced + report.stopped;
                info!(
                    resync = resyncs,
                    corrected,
                    started = report.started,
                    replaced = report.replaced,
                    stopped = report.stopped,
                    "Periodic re-sync: {corrected} rules corrected"
                );
            }
            Err(e) => warn!(
                resync = resyncs,
                "Periodic re-sync from the API failed ({e:#}); trying again in {every:?}"
            ),
        }
    }
}
