//! The rule-lifecycle listener: RabbitMQ messages about rules, turned into rule-table changes.
//!
//! Topology (docs/platform.md §1.4, §2.6): a durable **topic** exchange (`ATTUNE_MQ_EXCHANGE`,
//! normally `attune.events`), a durable queue `sensor.<sensor_ref>` bound to `rule.created`,
//! `rule.enabled`, `rule.disabled` and `rule.deleted`, a prefetch, one consumer with manual
//! acks. Every delivery is acked after it was handled — also when it could not be handled:
//! a malformed message is logged (never with its params) and dropped, and the consumer
//! carries on.
//!
//! Messages come in two shapes, both accepted (see [`parse_message`]): the API's
//! `MessageEnvelope` (`message_type` + `payload`) and the flat schema (`event_type`).
//!
//! When the connection or channel drops, the listener reconnects with backoff (1 s doubling
//! to 30 s, back to 1 s after a session that stayed up ≥ 30 s), and after every reconnect
//! re-syncs the whole rule table from the REST listing, so that nothing changed during the
//! outage is missed (a message lost by the API, a rule deleted while the queue was gone).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};
use serde_json::{Map, Value};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::feed::{self, RuleFeed};
pub use super::feed::{LifecycleKind, LifecycleMessage, ReconnectPolicy};
use crate::schedule::{RuleSource, RuleTable, SnapshotReport};
use crate::support::backoff::Backoff;
use crate::support::redact::{excerpt, url_for_log};

/// How long connecting and setting up the topology may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The routing keys the sensor's queue is bound to.
pub const ROUTING_KEYS: [&str; 4] = [
    "rule.created",
    "rule.enabled",
    "rule.disabled",
    "rule.deleted",
];

/// How the listener connects.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// `amqp://` or `amqps://` URL. Never logged whole (it may carry credentials).
    pub mq_url: String,
    /// The topic exchange rule messages are published to.
    pub exchange: String,
    /// The sensor's queue, `sensor.<sensor_ref>`.
    pub queue: String,
    /// Shown by the broker (`rabbitmqctl list_connections name client_properties`).
    pub connection_name: String,
    pub consumer_tag: String,
    /// Unacked deliveries the broker may push at once.
    pub prefetch: u16,
    pub reconnect: ReconnectPolicy,
}

impl ListenerConfig {
    /// The standard topology for a sensor: queue `sensor.<sensor_ref>`, prefetch 32, backoff
    /// 1 s doubling to 30 s.
    pub fn new(mq_url: &str, exchange: &str, sensor_ref: &str) -> Self {
        Self {
            mq_url: mq_url.to_string(),
            exchange: exchange.to_string(),
            queue: format!("sensor.{sensor_ref}"),
            connection_name: format!(
                "attune-core-timer-sensor {sensor_ref} pid {}",
                std::process::id()
            ),
            consumer_tag: "sensor-timer-consumer".to_string(),
            prefetch: 32,
            reconnect: ReconnectPolicy::default(),
        }
    }
}

/// Why a message could not be read. The text never includes the message's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("the body is not JSON")]
    NotJson,
    #[error("the body is not a JSON object")]
    NotAnObject,
    #[error("it has neither `message_type` (API envelope) nor `event_type` (flat schema)")]
    NoType,
    #[error("`{0}` is missing or not {1}")]
    BadField(&'static str, &'static str),
    /// A well-formed message of a type this sensor does not act on (e.g. `RuleUpdated`).
    #[error("message type `{0}` is not a rule lifecycle change this sensor acts on")]
    Unhandled(String),
}

/// Parses a delivery body: the API `MessageEnvelope` (`message_type` + `payload`, with
/// `payload.rule_id` required) or the flat schema (`event_type` with the fields at the top
/// level, `trigger_type` or `trigger_ref`, `enabled` or `active`).
pub fn parse_message(body: &[u8]) -> Result<LifecycleMessage, MessageError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| MessageError::NotJson)?;
    let Value::Object(top) = value else {
        return Err(MessageError::NotAnObject);
    };
    let (type_field, fields, type_name) = if let Some(t) = top.get("message_type") {
        let name = t
            .as_str()
            .ok_or(MessageError::BadField("message_type", "a string"))?;
        let payload = top
            .get("payload")
            .and_then(Value::as_object)
            .ok_or(MessageError::BadField("payload", "an object"))?;
        ("payload.", payload, name)
    } else if let Some(t) = top.get("event_type") {
        let name = t
            .as_str()
            .ok_or(MessageError::BadField("event_type", "a string"))?;
        ("", &top, name)
    } else {
        return Err(MessageError::NoType);
    };
    let kind = LifecycleKind::parse(type_name)
        .ok_or_else(|| MessageError::Unhandled(excerpt(type_name, 64)))?;
    let rule_id = fields
        .get("rule_id")
        .and_then(Value::as_i64)
        .ok_or(MessageError::BadField(
            if type_field.is_empty() {
                "rule_id"
            } else {
                "payload.rule_id"
            },
            "an integer",
        ))?;
    let text = |map: &Map<String, Value>, key: &str| {
        map.get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    // Not trimmed: a ref with surrounding spaces is refused by the feed, clearly.
    let untrimmed = |map: &Map<String, Value>, key: &str| {
        map.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string)
    };
    let trigger_ref =
        untrimmed(fields, "trigger_ref").or_else(|| untrimmed(fields, "trigger_type"));
    let trigger_params = fields
        .get("trigger_params")
        .filter(|p| !p.is_null())
        .cloned();
    let enabled = fields
        .get("enabled")
        .or_else(|| fields.get("active"))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    Ok(LifecycleMessage {
        kind,
        rule_id,
        rule_ref: text(fields, "rule_ref").unwrap_or_default(),
        trigger_ref,
        trigger_params,
        enabled,
    })
}

/// One live connection: the channel and the consumer on it.
pub struct Session {
    connection: Connection,
    channel: Channel,
    consumer: Consumer,
}

impl Session {
    /// Cancels the consumer and closes the connection (unacked deliveries go back to the
    /// queue). Bounded: a dead peer does not hold shutdown up.
    pub async fn close(self, consumer_tag: &str) {
        let closing = async {
            if let Err(e) = self
                .channel
                .basic_cancel(consumer_tag.into(), BasicCancelOptions::default())
                .await
            {
                debug!("Cancelling the consumer failed: {e}");
            }
            if let Err(e) = self
                .connection
                .close(200, "sensor shutting down".into())
                .await
            {
                debug!("Closing the RabbitMQ connection failed: {e}");
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), closing)
            .await
            .is_err()
        {
            warn!("Closing the RabbitMQ connection took over 5 s; leaving it");
        }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

enum SessionEnd {
    Shutdown,
    Lost(String),
}

/// Connects, declares the exchange and the queue, binds the routing keys, sets the
/// prefetch and starts consuming. Deliveries wait in the session until [`Listener::run`]
/// reads them, so a snapshot taken after this misses nothing.
pub async fn connect(c: &ListenerConfig) -> anyhow::Result<Session> {
    tokio::time::timeout(CONNECT_TIMEOUT, connect_inner(c))
        .await
        .map_err(|_| anyhow::anyhow!("no answer from the broker within {CONNECT_TIMEOUT:?}"))?
        .map_err(anyhow::Error::from)
}

async fn connect_inner(c: &ListenerConfig) -> Result<Session, lapin::Error> {
    let properties =
        ConnectionProperties::default().with_connection_name(c.connection_name.clone().into());
    let connection = Connection::connect(&c.mq_url, properties).await?;
    let channel = connection.create_channel().await?;
    channel
        .exchange_declare(
            c.exchange.clone().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            c.queue.clone().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    for key in ROUTING_KEYS {
        channel
            .queue_bind(
                c.queue.clone().into(),
                c.exchange.clone().into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    channel
        .basic_qos(c.prefetch, BasicQosOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            c.queue.clone().into(),
            c.consumer_tag.clone().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    info!(
        mq = %url_for_log(&c.mq_url),
        exchange = %c.exchange,
        queue = %c.queue,
        "Connected to RabbitMQ; consuming rule lifecycle messages"
    );
    Ok(Session {
        connection,
        channel,
        consumer,
    })
}

/// The listener: owns the broker connection, feeds the rule table.
pub struct Listener {
    config: ListenerConfig,
    feed: RuleFeed,
}

impl Listener {
    pub fn new(config: ListenerConfig, table: RuleTable, source: Arc<dyn RuleSource>) -> Self {
        Self {
            config,
            feed: RuleFeed::new(table, source),
        }
    }

    /// A listener that feeds `feed` (shared with the other transport's code).
    pub(crate) fn with_feed(config: ListenerConfig, feed: RuleFeed) -> Self {
        Self { config, feed }
    }

    pub fn config(&self) -> &ListenerConfig {
        &self.config
    }

    /// [`connect`] with this listener's config.
    pub async fn connect(&self) -> anyhow::Result<Session> {
        connect(&self.config).await
    }

    /// Loads every active rule in scope from the REST listing and applies it as a snapshot.
    pub async fn resync(&self) -> anyhow::Result<SnapshotReport> {
        self.feed.resync().await
    }

    /// Consumes `session` until `shutdown` resolves; reconnects (with backoff, then a
    /// re-sync) whenever the connection or channel is lost. Returns after closing the
    /// connection on shutdown.
    pub async fn run(self, mut session: Session, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut backoff = Backoff::new(self.config.reconnect.backoff);
        loop {
            let started = Instant::now();
            let (ended, end) = self.consume(session, shutdown.as_mut()).await;
            if let SessionEnd::Lost(why) = &end {
                self.config
                    .reconnect
                    .session_ended(&mut backoff, started.elapsed());
                warn!("Lost the RabbitMQ session: {why}; reconnecting");
            } else {
                info!("Stopped consuming rule lifecycle messages");
            }
            // After a loss the connection is usually gone already; if only the channel or
            // the consumer is, this closes what is left.
            ended.close(&self.config.consumer_tag).await;
            if matches!(end, SessionEnd::Shutdown) {
                return;
            }
            let Some(next) = self.reconnect(&mut backoff, shutdown.as_mut()).await else {
                return;
            };
            session = next;
        }
    }

    /// Waits out the backoff, connects and re-syncs; repeats until it works or shutdown.
    async fn reconnect(
        &self,
        backoff: &mut Backoff,
        shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Option<Session> {
        let tag = &self.config.consumer_tag;
        feed::reconnect(
            "RabbitMQ",
            &self.feed,
            backoff,
            shutdown,
            || self.connect(),
            |session: Session| async move { session.close(tag).await },
        )
        .await
    }

    async fn consume(
        &self,
        mut session: Session,
        mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> (Session, SessionEnd) {
        loop {
            let delivery = tokio::select! {
                _ = shutdown.as_mut() => return (session, SessionEnd::Shutdown),
                delivery = session.consumer.next() => delivery,
            };
            let delivery = match delivery {
                Some(Ok(delivery)) => delivery,
                Some(Err(e)) => return (session, SessionEnd::Lost(e.to_string())),
                None => {
                    return (
                        session,
                        SessionEnd::Lost("the broker cancelled the consumer".into()),
                    )
                }
            };
            self.handle(&delivery.data).await;
            if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                return (session, SessionEnd::Lost(format!("ack failed: {e}")));
            }
        }
    }

    /// Handles one delivery body. Never fails: problems are logged and the message dropped.
    pub async fn handle(&self, body: &[u8]) {
        if !self.feed.admit_message(body.len(), "broker message") {
            return;
        }
        match parse_message(body) {
            Ok(message) => self.feed.apply(message).await,
            Err(MessageError::Unhandled(kind)) => {
                self.feed.count_ignored();
                debug!("Ignoring a `{kind}` message")
            }
            Err(e) => {
                self.feed.count_malformed();
                warn!(
                    payload_bytes = body.len(),
                    "Dropping a malformed rule lifecycle message: {e}"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<LifecycleMessage, MessageError> {
        parse_message(v.to_string().as_bytes())
    }

    #[test]
    fn envelope_and_aliases() {
        for name in ["RuleCreated", "rule_created", "rule.created"] {
            let m = parse(json!({
                "message_id": "x", "message_type": name, "timestamp": "2026-01-01T00:00:00Z",
                "payload": {"rule_id": 7, "rule_ref": "core.every5s", "trigger_ref": "core.intervaltimer",
                            "trigger_params": {"interval": 5}, "enabled": false}
            }))
            .unwrap();
            assert_eq!(m.kind, LifecycleKind::Created);
            assert_eq!(m.rule_id, 7);
            assert_eq!(m.rule_ref, "core.every5s");
            assert_eq!(m.trigger_ref.as_deref(), Some("core.intervaltimer"));
            assert_eq!(m.trigger_params, Some(json!({"interval": 5})));
            assert!(!m.enabled);
        }
        let m = parse(json!({"message_type": "RuleDeleted", "payload": {"rule_id": 3}})).unwrap();
        assert_eq!(m.kind, LifecycleKind::Deleted);
        assert_eq!(m.trigger_ref, None);
        assert!(m.enabled, "enabled defaults to true");
    }

    #[test]
    fn flat_schema() {
        let m = parse(json!({
            "event_type": "RuleEnabled", "rule_id": 9, "rule_ref": "r", "trigger_type": "core.crontimer",
            "trigger_params": null, "timestamp": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        assert_eq!(m.kind, LifecycleKind::Enabled);
        assert_eq!(m.trigger_ref.as_deref(), Some("core.crontimer"));
        assert_eq!(m.trigger_params, None);
        let m =
            parse(json!({"event_type": "rule.created", "rule_id": 1, "active": false})).unwrap();
        assert!(!m.enabled);
    }

    #[test]
    fn malformed_messages_say_why_without_content() {
        assert_eq!(parse_message(b"{not json"), Err(MessageError::NotJson));
        assert_eq!(parse(json!([1])), Err(MessageError::NotAnObject));
        assert_eq!(parse(json!({"x": 1})), Err(MessageError::NoType));
        assert_eq!(
            parse(
                json!({"message_type": "RuleCreated", "payload": {"rule_id": "7", "trigger_params": {"secret": "s3cr3t"}}})
            ),
            Err(MessageError::BadField("payload.rule_id", "an integer"))
        );
        assert_eq!(
            parse(json!({"message_type": "RuleCreated"})),
            Err(MessageError::BadField("payload", "an object"))
        );
        assert!(matches!(
            parse(json!({"message_type": "RuleUpdated", "payload": {"rule_id": 1}})),
            Err(MessageError::Unhandled(_))
        ));
        let e = parse(json!({"message_type": "RuleCreated", "payload": {"trigger_params": {"password": "hunter2"}}}))
            .unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let policy = ReconnectPolicy::default();
        let mut b = Backoff::new(policy.backoff);
        let delays: Vec<u64> = (0..7).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        policy.session_ended(&mut b, Duration::from_secs(5));
        assert_eq!(
            b.next_delay().as_secs(),
            30,
            "a short session does not reset"
        );
        policy.session_ended(&mut b, Duration::from_secs(30));
        assert_eq!(b.next_delay().as_secs(), 1, "a healthy session resets");
        assert_eq!(b.next_delay().as_secs(), 2);
    }
}
