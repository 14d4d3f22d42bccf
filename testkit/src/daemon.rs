//! Runs the daemon in-process against the fake Attune API and the real RabbitMQ at
//! 127.0.0.1:5672 (guest/guest), each test with its own exchange, sensor ref and queue.
//!
//! A missing broker fails the test with a clear message; nothing is skipped. Whatever a
//! test declares on the broker is deleted by [`TestDaemon::stop`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::instrument::WithSubscriber;

use attune_timer::daemon::config::Settings;
use attune_timer::daemon::Daemon;
use attune_timer::platform::lifecycle::ListenerConfig;
use attune_timer::schedule::rules::RuleTable;
use attune_timer::schedule::Clock;

use crate::fake_api::{make_jwt, now_unix, FakeApi};

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const ALL_REFS: [&str; 4] = [
    "core.intervaltimer",
    "core.crontimer",
    "core.datetimetimer",
    "core.rruletimer",
];

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A test's own connection to the broker: publishes lifecycle messages, cleans up.
pub struct Broker {
    connection: Connection,
    channel: Channel,
}

impl Broker {
    /// Connects to the test broker, or fails the test saying what is missing.
    pub async fn connect() -> Broker {
        let connection = match tokio::time::timeout(
            Duration::from_secs(10),
            Connection::connect(
                AMQP_URL,
                ConnectionProperties::default().with_connection_name("attune-timer-tests".into()),
            ),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => panic!(
                "RabbitMQ is required at 127.0.0.1:5672 (user guest/guest) for this test and \
                 cannot be reached: {e}. Start it (e.g. `rabbitmq-server -detached`) and rerun."
            ),
            Err(_) => panic!(
                "RabbitMQ is required at 127.0.0.1:5672 (user guest/guest) for this test and \
                 did not answer within 10 s."
            ),
        };
        let channel = connection.create_channel().await.expect("open a channel");
        Broker {
            connection,
            channel,
        }
    }

    /// Publishes `body` (JSON text) to `exchange` with `routing_key`, persistent, as the
    /// API does.
    pub async fn publish(&self, exchange: &str, routing_key: &str, body: &[u8]) {
        self.channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into()),
            )
            .await
            .expect("publish")
            .await
            .expect("publish confirmation");
    }

    /// Messages waiting in `queue` (ready, not delivered), or `None` when it does not exist.
    pub async fn queue_depth(&self, queue: &str) -> Option<u32> {
        // A passive declare that fails closes the channel: use a throwaway one.
        let channel = self.connection.create_channel().await.ok()?;
        let q = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .ok()?;
        let _ = channel.close(200, "done".into()).await;
        Some(q.message_count())
    }

    /// Deletes a queue and an exchange (missing ones are fine).
    pub async fn delete(&self, queue: &str, exchange: &str) {
        let _ = self
            .channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
        let _ = self
            .channel
            .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await;
    }

    pub async fn close(self) {
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// The broker's id (pid) of the connection whose client-provided name is
/// `connection_name`, from `rabbitmqctl list_connections pid client_properties` (the JSON
/// formatter leaves pids out, so the table output is read).
pub fn broker_connection(connection_name: &str) -> Option<String> {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "-q",
            "--no-table-headers",
            "list_connections",
            "pid",
            "client_properties",
        ])
        .output()
        .expect("run rabbitmqctl (the tests need it to close connections from the broker side)");
    assert!(
        out.status.success(),
        "rabbitmqctl list_connections failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let needle = format!("\"{connection_name}\"");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|line| line.contains(&needle))
        .and_then(|line| line.split('\t').next())
        .map(|pid| pid.trim().to_string())
}

/// Closes a connection from the broker side, as an operator or a broker restart would.
pub fn close_from_broker(pid: &str) {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["-q", "close_connection", pid, "closed by the test"])
        .output()
        .expect("run rabbitmqctl");
    assert!(
        out.status.success(),
        "rabbitmqctl close_connection failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The token every test daemon gets unless told otherwise: valid for an hour, all refs.
pub fn default_token() -> String {
    let now = now_unix();
    make_jwt(now + 3600, now, Some(&ALL_REFS))
}

/// A fresh state directory under the system's temporary directory (not created).
pub fn test_state_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(unique(TEST_STATE_PREFIX))
}

const TEST_STATE_PREFIX: &str = "attune-timer-test-state";

/// Removes a state directory [`test_state_dir`] made, and nothing else.
pub fn remove_test_state_dir(dir: &std::path::Path) {
    let ours = dir.starts_with(std::env::temp_dir())
        && dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(TEST_STATE_PREFIX));
    if ours {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The environment of a test daemon: the fake API, the test broker, a unique sensor ref
/// and exchange. `extra` adds or replaces variables.
pub fn test_env(api: &FakeApi, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("ATTUNE_API_URL", api.url()),
        ("ATTUNE_API_TOKEN", default_token()),
        ("ATTUNE_SENSOR_REF", unique("test.timer")),
        ("ATTUNE_MQ_URL", AMQP_URL.to_string()),
        ("ATTUNE_MQ_EXCHANGE", unique("test.attune.events")),
        (
            "ATTUNE_TIMER_CACHE_DIR",
            std::env::temp_dir()
                .join("attune-timer-test-cache")
                .display()
                .to_string(),
        ),
        // A state store of its own (removed when a TestDaemon stops), as a real deployment
        // has one.
        ("ATTUNE_STATE_DIR", test_state_dir().display().to_string()),
        // Daemons run side by side: each admin listener on a port of its own.
        ("ATTUNE_ADMIN_ADDR", "127.0.0.1:0".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    env
}

/// A daemon running in-process, and the test's own broker connection.
pub struct TestDaemon {
    pub settings: Settings,
    pub broker: Broker,
    pub clock: Clock,
    pub rules: RuleTable,
    /// Where its admin listener listens (`None` when the test turned it off).
    pub admin: Option<std::net::SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    /// Set once the test's queue and exchange are deleted.
    cleaned: bool,
}

impl Drop for TestDaemon {
    /// A test that failed before [`TestDaemon::stop`] still removes its queue and exchange.
    fn drop(&mut self) {
        if !self.cleaned {
            delete_now(self.queue(), self.exchange().to_string());
        }
        // The default per-test store goes; one a test chose (to restart on it) stays.
        if let Some(dir) = &self.settings.state_dir {
            remove_test_state_dir(dir);
        }
    }
}

/// Deletes a queue and an exchange from synchronous code (a `Drop`, a plain `#[test]`),
/// on a thread with a runtime of its own.
pub fn delete_now(queue: String, exchange: String) {
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let broker = Broker::connect().await;
            broker.delete(&queue, &exchange).await;
            broker.close().await;
        });
    })
    .join();
}

impl TestDaemon {
    /// Starts the daemon (returns once its startup is done: rules loaded, consuming).
    pub async fn start(api: &FakeApi, extra: &[(&str, &str)]) -> TestDaemon {
        let settings = Settings::from_env(&test_env(api, extra)).expect("test settings");
        Self::start_with(settings).await
    }

    pub async fn start_with(settings: Settings) -> TestDaemon {
        let broker = Broker::connect().await;
        let daemon = match Daemon::start(settings.clone()).await {
            Ok(daemon) => daemon,
            Err(e) => {
                broker
                    .delete(&queue_of(&settings), &settings.mq_exchange)
                    .await;
                panic!("the daemon did not start: {e:#}");
            }
        };
        let clock = daemon.clock().clone();
        let rules = daemon.rules().clone();
        let admin = daemon.admin_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            daemon
                .run(async {
                    let _ = stopped.await;
                })
                .with_current_subscriber(),
        );
        TestDaemon {
            settings,
            broker,
            clock,
            rules,
            admin,
            stop: Some(stop),
            task: Some(task),
            cleaned: false,
        }
    }

    pub fn exchange(&self) -> &str {
        &self.settings.mq_exchange
    }

    pub fn queue(&self) -> String {
        queue_of(&self.settings)
    }

    /// The name the daemon gives its broker connection.
    pub fn connection_name(&self) -> String {
        ListenerConfig::new(
            &self.settings.mq_url,
            &self.settings.mq_exchange,
            &self.settings.sensor_ref,
        )
        .connection_name
    }

    /// Publishes a lifecycle message to the daemon's exchange.
    pub async fn publish(&self, routing_key: &str, body: &Value) {
        self.broker
            .publish(self.exchange(), routing_key, body.to_string().as_bytes())
            .await;
    }

    pub async fn publish_raw(&self, routing_key: &str, body: &[u8]) {
        self.broker
            .publish(self.exchange(), routing_key, body)
            .await;
    }

    /// Waits (real time, up to `within`) until the daemon's queue has nothing waiting.
    pub async fn drained(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.broker.queue_depth(&self.queue()).await == Some(0) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Drives the daemon's shutdown future (as SIGTERM does), waits for it to finish, then
    /// deletes the test's queue and exchange. Returns what the daemon's run returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let result = self.shutdown_only().await;
        self.broker.delete(&self.queue(), self.exchange()).await;
        self.cleaned = true;
        result
    }

    async fn shutdown_only(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("the daemon shut down within 20 s")
                .expect("the daemon task did not panic"),
            None => Ok(()),
        }
    }
}

fn queue_of(settings: &Settings) -> String {
    format!("sensor.{}", settings.sensor_ref)
}

/// An API `MessageEnvelope` (contract §1.4).
pub fn envelope(message_type: &str, payload: Value) -> Value {
    json!({
        "message_id": "00000000-0000-4000-8000-000000000001",
        "correlation_id": "00000000-0000-4000-8000-000000000001",
        "message_type": message_type,
        "version": "1.0",
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "headers": {"retry_count": 0, "source_service": "api-service"},
        "payload": payload,
    })
}

/// A flat-schema message (`event_type`, fields at the top level).
pub fn flat(event_type: &str, mut fields: Value) -> Value {
    fields["event_type"] = json!(event_type);
    fields["timestamp"] = json!(chrono::Utc::now().to_rfc3339());
    fields
}
