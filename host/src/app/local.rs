//! Local mode: `attune-core-timer-sensor --rules FILE [--sink stdout]`.
//!
//! Runs the daemon's own rule table, clock and timer component on a JSON file of rules, with
//! no API and no broker. Each event is printed on stdout as one JSON line — exactly the body
//! the daemon would `POST /api/v1/events` ([`Event::body`]); logs go to stderr. Useful to try
//! schedules, a custom component, or to demo the sensor.
//!
//! The file holds a JSON array of rules:
//!
//! ```json
//! [{"id": 1, "ref": "demo.every2s", "trigger_ref": "core.intervaltimer",
//!   "trigger_params": {"interval": 2, "unit": "seconds"}}]
//! ```
//!
//! `ref` and `trigger_ref` are optional (without a trigger ref the component infers the kind
//! from the params' keys); `id` must be unique.
//!
//! **Local-mode convenience — relative one-shot times.** A fixed `fire_at` in a file is in
//! the past by the time anyone runs it, so in local mode only, a `fire_at` written as `+N`
//! followed by a unit (`ms`, `s`, `m`, `h`, `d`; e.g. `"+5s"`, `"+2m"`) is replaced, when the
//! timers start (after the component is loaded), by that much after the current time
//! (RFC 3339, UTC) before the rule reaches the component. The daemon never does this: the
//! Attune API stores absolute times.
//!
//! The process exits when it is signalled (SIGINT/SIGTERM) or when no timer is left to run
//! (e.g. a file of one-shots that have all fired).
//!
//! The component is swapped live (see [`crate::schedule::swap`]) on SIGHUP, and when the component
//! file changes.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::Value;
use tracing::{error, info};

use crate::component::watch::{Triggers, POLL_EVERY};
use crate::component::{CompileCache, Limits, Rule, Source};
use crate::daemon::admin::{AdminListener, AdminState};
use crate::daemon::config::DEFAULT_READY_MAX_OUTBOX_AGE;
use crate::schedule::{swap, Clock, ClockOptions, Event, EventSink, Misfire, RuleTable};
use crate::store::{Store, StoreOptions};
use crate::support::blocking::TaskGuard;
use crate::telemetry::Metrics;

/// What local mode runs.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub rules_file: PathBuf,
    /// A component to use instead of the embedded one.
    pub component: Option<PathBuf>,
    pub limits: Limits,
    pub cache: CompileCache,
    /// The `sensor_ref` payloads carry.
    pub sensor_ref: String,
    /// A state directory (`--state-dir`): timer states survive a restart, missed ticks go
    /// through `misfire`. `None` (the default): state in memory only.
    pub state_dir: Option<PathBuf>,
    pub misfire: Misfire,
    /// Serve the admin listener here (`--admin-addr`); `None` (the default): none.
    pub admin_addr: Option<SocketAddr>,
}

/// One rule in a local rules file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRule {
    id: i64,
    #[serde(default, rename = "ref")]
    rule_ref: String,
    #[serde(default)]
    trigger_ref: Option<String>,
    #[serde(default)]
    trigger_params: Value,
}

/// Reads a local rules file (see the module docs), resolving relative `fire_at` values
/// against `now`.
pub fn load_rules(text: &str, now: DateTime<Utc>) -> anyhow::Result<Vec<Rule>> {
    resolve_rules(parse_rules(text)?, now)
}

/// Parses a local rules file; relative times are left for [`resolve_rules`].
fn parse_rules(text: &str) -> anyhow::Result<Vec<FileRule>> {
    let parsed: Vec<FileRule> = serde_json::from_str(text).context(
        "expected a JSON array of rules like \
         [{\"id\":1,\"trigger_ref\":\"core.intervaltimer\",\"trigger_params\":{\"interval\":2}}]",
    )?;
    let mut seen = std::collections::HashSet::new();
    for (index, r) in parsed.iter().enumerate() {
        if !seen.insert(r.id) {
            anyhow::bail!("rule #{index}: id {} is used twice", r.id);
        }
    }
    Ok(parsed)
}

/// Turns parsed rules into rules for the table, with relative `fire_at`s resolved
/// against `now`.
fn resolve_rules(parsed: Vec<FileRule>, now: DateTime<Utc>) -> anyhow::Result<Vec<Rule>> {
    let mut rules = Vec::with_capacity(parsed.len());
    for r in parsed {
        let mut params = r.trigger_params;
        if let Some(fire_at) = params.get_mut("fire_at") {
            if let Some(text) = fire_at.as_str().filter(|s| s.trim_start().starts_with('+')) {
                let at = resolve_relative(text, now)
                    .with_context(|| format!("rule {}: fire_at {text:?}", r.id))?;
                *fire_at = Value::String(at.to_rfc3339_opts(SecondsFormat::Millis, true));
            }
        }
        rules.push(Rule {
            id: r.id,
            r#ref: r.rule_ref,
            trigger_ref: Rule::given_trigger_ref(r.trigger_ref),
            trigger_params: params,
        });
    }
    Ok(rules)
}

/// `+N<unit>` (`ms`, `s`, `m`, `h`, `d`) after `now`.
pub fn resolve_relative(text: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    let body = text.trim().trim_start_matches('+');
    let split = body
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(body.len());
    let (digits, unit) = body.split_at(split);
    let n: i64 = digits
        .parse()
        .map_err(|_| anyhow::anyhow!("expected +N followed by ms, s, m, h or d (e.g. +5s)"))?;
    let delta = match unit.trim() {
        "ms" => chrono::Duration::try_milliseconds(n),
        "s" | "" => chrono::Duration::try_seconds(n),
        "m" => chrono::Duration::try_minutes(n),
        "h" => chrono::Duration::try_hours(n),
        "d" => chrono::Duration::try_days(n),
        other => anyhow::bail!("unknown unit {other:?}: use ms, s, m, h or d (e.g. +5s)"),
    }
    .ok_or_else(|| anyhow::anyhow!("{text} is too far ahead"))?;
    now.checked_add_signed(delta)
        .ok_or_else(|| anyhow::anyhow!("{text} is too far ahead"))
}

/// An [`EventSink`] that writes each event's body as one JSON line, from a thread of its
/// own (so `submit` never blocks the clock).
pub struct LineSink {
    tx: Mutex<Option<mpsc::Sender<String>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl LineSink {
    /// Lines to stdout, flushed after each one.
    pub fn stdout() -> Arc<Self> {
        Self::new(std::io::stdout())
    }

    pub fn new(mut out: impl Write + Send + 'static) -> Arc<Self> {
        let (tx, rx) = mpsc::channel::<String>();
        let writer = std::thread::Builder::new()
            .name("event-lines".into())
            .spawn(move || {
                for line in rx {
                    let written = out
                        .write_all(line.as_bytes())
                        .and_then(|()| out.write_all(b"\n"))
                        .and_then(|()| out.flush());
                    if let Err(e) = written {
                        error!("Cannot write an event line: {e}");
                    }
                }
            })
            .expect("spawn the event writer thread");
        Arc::new(Self {
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Writes what was submitted and stops the writer. Later events are dropped.
    pub fn close(&self) {
        self.tx.lock().expect("sink lock").take();
        if let Some(writer) = self.writer.lock().expect("sink lock").take() {
            let _ = writer.join();
        }
    }
}

impl EventSink for LineSink {
    fn submit(&self, event: Event) {
        if let Some(tx) = self.tx.lock().expect("sink lock").as_ref() {
            let _ = tx.send(event.body());
        }
    }
}

/// Runs local mode until `shutdown` resolves or no timer is left. Events go to `sink`.
pub async fn run(
    options: LocalOptions,
    sink: Arc<dyn EventSink>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    // First: from here on a SIGHUP or a change of the file asks for a swap.
    let triggers = Triggers::install(options.component.clone(), POLL_EVERY);
    let text = std::fs::read_to_string(&options.rules_file).with_context(|| {
        format!(
            "cannot read the rules file {}",
            options.rules_file.display()
        )
    })?;
    let parsed = parse_rules(&text)
        .with_context(|| format!("invalid rules file {}", options.rules_file.display()))?;
    let LocalOptions {
        rules_file,
        component,
        limits,
        cache,
        sensor_ref,
        state_dir,
        misfire,
        admin_addr,
    } = options;
    let metrics = Metrics::default();
    let admin_state = AdminState::new(metrics.clone(), None, DEFAULT_READY_MAX_OUTBOX_AGE);
    let _admin = match admin_addr {
        Some(addr) => Some(AdminListener::start(addr, admin_state.clone()).await?),
        None => None,
    };
    let source = Source {
        component,
        limits,
        cache,
        metrics: metrics.clone(),
    };
    let runtime = source.load_in_background().await?;
    let info = runtime.info().clone();
    metrics.declare_trigger_refs(&info.trigger_refs);
    let store = match state_dir {
        Some(dir) => Some(
            Store::open_in_background(dir, StoreOptions::default())
                .await
                .context("cannot open the state store")?,
        ),
        None => None,
    };
    let restored = match &store {
        Some(store) => store
            .load_rules()
            .await
            .context("cannot read timer states from the state store")?,
        None => Default::default(),
    };
    let clock = Clock::spawn_with(
        Arc::new(runtime),
        sink,
        sensor_ref,
        ClockOptions {
            store: store.clone(),
            restored,
            misfire,
            utc_now: None,
            wall: None,
            metrics,
        },
    );
    // Whatever way this function is left (an error, or its future dropped), the clock stops.
    let _clock_guard = clock.guard();
    admin_state.set_clock(clock.clone());
    // Relative times count from now that the clock runs, not from when the file was read.
    let rules = match resolve_rules(parsed, clock.now()) {
        Ok(rules) => rules,
        Err(e) => {
            clock.shutdown().await;
            return Err(e.context(format!("invalid rules file {}", rules_file.display())));
        }
    };
    let table = RuleTable::new(clock.clone(), info.trigger_refs.clone());
    let total = rules.len();
    let report = table.apply_snapshot(rules).await;
    admin_state.set_running(table.clone(), None, None, store.clone());
    info!(
        rules = total,
        running = report.running,
        "Local mode: {} of {total} rules running; events are printed on stdout",
        report.running
    );
    if report.running == 0 {
        clock.shutdown().await;
        anyhow::bail!("none of the {total} rules is running (see the errors above)");
    }
    let watch = TaskGuard::new(swap::spawn_watch(table.clone(), source, triggers));
    let mut running = clock.watch_running();
    let idle = async move {
        // Ends when no timer is left (or the clock is gone).
        let _ = running.wait_for(|n| *n == 0).await;
    };
    tokio::select! {
        _ = shutdown => info!("Shutting down"),
        _ = idle => info!("No timer left to run"),
    }
    drop(watch);
    clock.shutdown().await;
    if let Some(store) = store {
        store.close().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn relative_fire_at_is_resolved() {
        let now = at("2026-03-26T12:00:00Z");
        assert_eq!(
            resolve_relative("+5s", now).unwrap(),
            at("2026-03-26T12:00:05Z")
        );
        assert_eq!(
            resolve_relative("+2m", now).unwrap(),
            at("2026-03-26T12:02:00Z")
        );
        assert_eq!(
            resolve_relative("+1500ms", now).unwrap(),
            at("2026-03-26T12:00:01.5Z")
        );
        assert!(resolve_relative("+5y", now).is_err());
        assert!(resolve_relative("+s", now).is_err());
        let rules = load_rules(
            r#"[{"id":1,"trigger_params":{"fire_at":"+3s"}},
                {"id":2,"ref":"x","trigger_ref":"core.crontimer","trigger_params":{"expression":"* * * * * *"}}]"#,
            now,
        )
        .unwrap();
        assert_eq!(
            rules[0].trigger_params["fire_at"],
            "2026-03-26T12:00:03.000Z"
        );
        assert_eq!(rules[0].trigger_ref, None);
        assert_eq!(rules[1].trigger_ref.as_deref(), Some("core.crontimer"));
        assert!(load_rules(r#"[{"id":1},{"id":1}]"#, now).is_err());
    }

    #[test]
    fn line_sink_writes_bodies() {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let sink = LineSink::new(buf.clone());
        let mut payload = serde_json::Map::new();
        payload.insert("type".into(), "interval".into());
        sink.submit(Event {
            rule_id: 4,
            trigger_ref: "core.intervaltimer".into(),
            payload: payload.into(),
            scheduled_at: Utc::now(),
        });
        sink.close();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let v: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["trigger_instance_id"], "rule_4");
        assert_eq!(v["payload"]["type"], "interval");
        assert!(text.ends_with('\n'));
    }
}
