//! The admin listener (`ATTUNE_ADMIN_ADDR`, default `127.0.0.1:8971`): a small, read-only
//! HTTP/1.1 server for operators and their tools.
//!
//! | path | answers |
//! |---|---|
//! | `GET /metrics` | every metric ([`crate::telemetry`]): Prometheus text 0.0.4, or OpenMetrics 1.0 when the `Accept` header asks for `application/openmetrics-text` |
//! | `GET /healthz` | liveness: 200 while the clock's loop turns (it turns at least every second), 503 once it has not for [`WEDGED_AFTER`] |
//! | `GET /readyz` | readiness: 200 when the rules are loaded, the lifecycle transport is connected and the oldest undelivered event is younger than `ATTUNE_READY_MAX_OUTBOX_AGE`; 503 otherwise; a JSON body says which check failed |
//! | `GET /rules` | every rule's standing as JSON, in id order: `?id=N` one rule, `?state=running\|ended\|refused\|faulted`, `?after=ID&limit=N` pages (default 1000, at most [`MAX_PAGE`]) |
//!
//! It is bounded, as anything that listens must be: a request head of at most
//! [`MAX_HEAD_BYTES`], read within [`HEAD_TIMEOUT`]; a connection lives at most
//! [`CONNECTION_TIMEOUT`]; at most [`MAX_CONNECTIONS`] at once (more are closed at once).
//! Only GET and HEAD are answered (405 otherwise); request bodies are never read. Nothing it
//! serves contains the token, a URL's credentials or a rule's raw params.
//!
//! It binds before anything else starts, so a bad address fails the start at once, and it
//! answers while the daemon starts (`/readyz` says what it waits for). The daemon hands it
//! its parts as they come up ([`AdminState::set_clock`], [`AdminState::set_running`]).
//! Local mode serves it too, when asked: without a token, a transport or an outbox, whose
//! checks then pass as not applicable.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::instrument::WithSubscriber;
use tracing::{debug, info, warn};

use crate::platform::feed::RuleFeed;
use crate::platform::outbox::OutboxSink;
use crate::platform::token::TokenHandle;
use crate::schedule::{Clock, RuleTable, RuleView};
use crate::store::Store;
use crate::support::blocking::TaskGuard;
use crate::telemetry::{Backlog, ComponentIdentity, Metrics, RuleStatus};

/// The largest request head (request line and headers) read.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How long a client has to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may stay open, whatever it does.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// `/healthz` fails once the clock's loop has not turned for this long. It turns every
/// second when idle; a component swap holds it for as long as the swap's install takes.
pub const WEDGED_AFTER: Duration = Duration::from_secs(30);
/// `/rules` pages: the default and the largest `limit`.
pub const DEFAULT_PAGE: usize = 1000;
pub const MAX_PAGE: usize = 10_000;

/// Why the admin listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("Cannot listen on the admin address {addr} (ATTUNE_ADMIN_ADDR): {source}")]
pub struct BindError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// What the listener reads: the daemon's parts, handed over as they start.
pub struct AdminState {
    metrics: Metrics,
    /// The daemon's token (for its expiry); `None` in local mode.
    token: Option<TokenHandle>,
    max_outbox_age: Duration,
    clock: OnceLock<Clock>,
    /// Set once the first snapshot of rules is applied: the rules are loaded from then on.
    running: OnceLock<Running>,
    /// Set when shutdown begins: not ready from then on.
    stopping: AtomicBool,
}

/// The parts that exist once the daemon runs. Local mode has no outbox (events go to its
/// own sink) and no lifecycle transport.
struct Running {
    table: RuleTable,
    outbox: Option<OutboxSink>,
    feed: Option<RuleFeed>,
    store: Option<Store>,
}

impl AdminState {
    pub fn new(
        metrics: Metrics,
        token: Option<TokenHandle>,
        max_outbox_age: Duration,
    ) -> Arc<Self> {
        Arc::new(AdminState {
            metrics,
            token,
            max_outbox_age,
            clock: OnceLock::new(),
            running: OnceLock::new(),
            stopping: AtomicBool::new(false),
        })
    }

    /// The clock is running: `/healthz` watches it from now on.
    pub fn set_clock(&self, clock: Clock) {
        let _ = self.clock.set(clock);
    }

    /// The rules are loaded and the transport connected: `/readyz` and `/rules` see them.
    pub fn set_running(
        &self,
        table: RuleTable,
        outbox: Option<OutboxSink>,
        feed: Option<RuleFeed>,
        store: Option<Store>,
    ) {
        let _ = self.running.set(Running {
            table,
            outbox,
            feed,
            store,
        });
    }

    /// Shutdown has begun: `/readyz` says so from now on.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// What `/healthz` answers.
    fn health(&self) -> (bool, Value) {
        let Some(clock) = self.clock.get() else {
            return (true, json!({"status": "starting"}));
        };
        let since = clock.since_last_turn();
        let ms = since.as_millis() as u64;
        if since < WEDGED_AFTER {
            (true, json!({"status": "ok", "clock_last_turn_ms_ago": ms}))
        } else {
            (
                false,
                json!({
                    "status": "wedged",
                    "clock_last_turn_ms_ago": ms,
                    "detail": format!(
                        "the clock's loop has not turned for {} s (it turns every second)",
                        since.as_secs()
                    ),
                }),
            )
        }
    }

    /// What `/readyz` answers, and the outbox's backlog it looked at.
    async fn readiness(&self) -> (bool, Value, Option<Backlog>) {
        let Some(running) = self.running.get() else {
            let check = |detail: &str| json!({"ok": false, "detail": detail});
            return (
                false,
                json!({
                    "ready": false,
                    "checks": {
                        "rules_loaded": check("starting: the active rules are not loaded yet"),
                        "transport_connected": check("starting"),
                        "outbox": check("starting"),
                    }
                }),
                None,
            );
        };
        let stopping = self.stopping.load(Ordering::Acquire);
        let connected = running.feed.as_ref().is_none_or(RuleFeed::is_connected) && !stopping;
        let backlog = match &running.outbox {
            Some(outbox) => Some(outbox.backlog().await),
            None => None,
        };
        let oldest = backlog.map(|b| b.oldest_age).unwrap_or_default();
        let outbox_ok = oldest <= self.max_outbox_age;
        let ready = connected && outbox_ok;
        let body = json!({
            "ready": ready,
            "checks": {
                "rules_loaded": {
                    "ok": true,
                    "detail": format!(
                        "{} rules held, {} running",
                        running.table.counts().iter().map(|(_, n)| n).sum::<usize>(),
                        running.table.running()
                    ),
                },
                "transport_connected": {
                    "ok": connected,
                    "detail": if running.feed.is_none() {
                        "local mode: no rule-lifecycle transport"
                    } else if connected {
                        "the rule-lifecycle transport is connected"
                    } else if stopping {
                        "shutting down"
                    } else {
                        "the rule-lifecycle transport is reconnecting; rule changes wait until it is back and re-synced"
                    },
                },
                "outbox": {
                    "ok": outbox_ok,
                    "detail": match backlog {
                        Some(b) => format!(
                            "{} events undelivered, the oldest {} s old (limit {} s, ATTUNE_READY_MAX_OUTBOX_AGE)",
                            b.in_memory + b.spilled,
                            b.oldest_age.as_secs(),
                            self.max_outbox_age.as_secs()
                        ),
                        None => "local mode: events go to the local sink".to_string(),
                    },
                },
            }
        });
        (ready, body, backlog)
    }

    /// Sets the gauges that describe the daemon's state, then encodes every metric.
    async fn metrics_text(&self, openmetrics: bool) -> (String, &'static str) {
        let m = &self.metrics;
        m.set_token_expiry(
            self.token
                .as_ref()
                .and_then(TokenHandle::expires_at)
                .filter(|exp| *exp > 0),
        );
        if let Some(clock) = self.clock.get() {
            let info = clock.runtime().info().clone();
            m.set_component(&ComponentIdentity {
                name: info.name,
                version: info.version,
                sha256: info.content_hash,
            });
        }
        let (ready, _, backlog) = self.readiness().await;
        m.set_ready(ready);
        if let Some(running) = self.running.get() {
            m.set_rules(&running.table.counts());
            if let Some(backlog) = backlog {
                m.set_outbox(&backlog);
            }
            if let Some(store) = &running.store {
                m.set_store_writable(store.stats().writable);
            }
        }
        m.encode(openmetrics)
    }

    /// What `/rules` answers.
    fn rules(&self, query: &HashMap<String, String>) -> Result<Value, (StatusCode, String)> {
        let bad = |what: String| (StatusCode::BAD_REQUEST, what);
        let Some(running) = self.running.get() else {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "starting: the active rules are not loaded yet".into(),
            ));
        };
        let table = &running.table;
        if let Some(id) = query.get("id") {
            let id: i64 = id
                .parse()
                .map_err(|_| bad("id must be a rule id (an integer)".into()))?;
            return match table.view(id) {
                Some(view) => Ok(json!({"rules": [rule_json(&view)], "next_after": null})),
                None => Err((StatusCode::NOT_FOUND, format!("no rule {id}"))),
            };
        }
        let status = match query.get("state").map(String::as_str) {
            None => None,
            Some("running") => Some(RuleStatus::Running),
            Some("ended") => Some(RuleStatus::Ended),
            Some("refused") => Some(RuleStatus::Refused),
            Some("faulted") => Some(RuleStatus::Faulted),
            Some(_) => {
                return Err(bad(
                    "state must be running, ended, refused or faulted".into()
                ))
            }
        };
        let after = match query.get("after") {
            None => None,
            Some(v) => Some(
                v.parse::<i64>()
                    .map_err(|_| bad("after must be a rule id (an integer)".into()))?,
            ),
        };
        let limit = match query.get("limit") {
            None => DEFAULT_PAGE,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
                _ => return Err(bad(format!("limit must be from 1 to {MAX_PAGE}"))),
            },
        };
        let views = table.views(after, limit, status);
        let next_after = (views.len() == limit)
            .then(|| views.last().map(|v| v.id))
            .flatten();
        Ok(json!({
            "rules": views.iter().map(rule_json).collect::<Vec<_>>(),
            "next_after": next_after,
        }))
    }
}

fn rule_json(v: &RuleView) -> Value {
    let timer = v.timer.as_ref();
    json!({
        "id": v.id,
        "ref": v.r#ref,
        "trigger_ref": v.trigger_ref,
        "state": v.status.as_str(),
        "schedule": timer.map(|t| serde_json::from_str::<Value>(&t.spec).unwrap_or(Value::Null)),
        "timezone": timer.map(|t| t.timezone.clone()),
        "next_fire_at": timer.map(|t| t.next_fire_at.to_rfc3339()),
        "last_fire_at": timer.and_then(|t| t.last_tick).map(|t| t.to_rfc3339()),
        "execution_count": timer.map(|t| t.execution_count),
        "last_error": v.last_error,
    })
}

/// The listener: its address and the task that serves it (stopped when dropped).
pub struct AdminListener {
    addr: SocketAddr,
    _task: TaskGuard,
}

impl AdminListener {
    /// Binds `addr` and starts serving `state`. A bind failure (in use, not an address of
    /// this host, a privileged port) is the start's error.
    pub async fn start(addr: SocketAddr, state: Arc<AdminState>) -> Result<Self, BindError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BindError { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| BindError { addr, source })?;
        if !addr.ip().is_loopback() {
            warn!(
                admin_addr = %addr,
                "The admin listener is on a non-loopback address: anyone who can reach it can \
                 read the metrics and the rules' schedules"
            );
        }
        info!(admin_addr = %addr, "Admin listener on http://{addr} (/metrics, /healthz, /readyz, /rules)");
        let task = tokio::spawn(serve(listener, state).with_current_subscriber());
        Ok(AdminListener {
            addr,
            _task: TaskGuard::new(task),
        })
    }

    /// Where it listens (the port chosen, when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, mostly: wait rather than spin.
                warn!(error = %e, "The admin listener cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "Admin listener busy; closing a connection");
            continue;
        };
        let state = state.clone();
        tokio::spawn(
            async move {
                let _slot = slot;
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(answer(&state, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEAD_TIMEOUT)
                    .max_buf_size(MAX_HEAD_BYTES)
                    .serve_connection(TokioIo::new(stream), service);
                match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => debug!(%peer, error = %e, "Admin connection ended with an error"),
                    Err(_) => debug!(%peer, "Admin connection closed after {CONNECTION_TIMEOUT:?}"),
                }
            }
            .with_current_subscriber(),
        );
    }
}

async fn answer(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match req.uri().path() {
        "/metrics" => {
            let openmetrics = req
                .headers()
                .get_all(hyper::header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.contains("application/openmetrics-text"));
            let (body, content_type) = state.metrics_text(openmetrics).await;
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            resp
        }
        "/healthz" => {
            let (ok, body) = state.health();
            check_response(ok, &body)
        }
        "/readyz" => {
            let (ok, body, _) = state.readiness().await;
            check_response(ok, &body)
        }
        "/rules" => {
            let query = parse_query(req.uri().query().unwrap_or(""));
            match state.rules(&query) {
                Ok(body) => json_response(StatusCode::OK, &body),
                Err((status, why)) => json_response(status, &json!({"error": why})),
            }
        }
        "/" => text(
            StatusCode::OK,
            "attune-core-timer-sensor admin: /metrics /healthz /readyz /rules\n",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz, /readyz or /rules\n",
        ),
    }
}

/// `a=1&b=2`, percent-decoded; a key given twice keeps its first value.
fn parse_query(query: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

/// A probe's answer: 200 when the check passes, 503 when not.
fn check_response(ok: bool, body: &Value) -> Response<Full<Bytes>> {
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, body)
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut text = serde_json::to_vec(body).unwrap_or_default();
    text.push(b'\n');
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::TimerRuntime;
    use crate::schedule::{Event, EventSink};

    struct Nowhere;

    impl EventSink for Nowhere {
        fn submit(&self, _: Event) {}
    }

    /// Liveness follows the clock's loop: alive while it turns (every second when idle),
    /// 503 once it has not turned for `WEDGED_AFTER` — here because its task is gone.
    #[tokio::test(start_paused = true)]
    async fn healthz_fails_once_the_clock_stops_turning() {
        let state = AdminState::new(Metrics::new(), None, Duration::from_secs(300));
        assert_eq!(state.health(), (true, json!({"status": "starting"})));
        let runtime = Arc::new(TimerRuntime::embedded().unwrap());
        // A pinned UTC time: under the paused clock the wall clock must not be followed.
        let clock = Clock::spawn_at(
            runtime,
            Arc::new(Nowhere),
            "test.sensor".into(),
            chrono::Utc::now(),
        );
        state.set_clock(clock.clone());
        // Idle for a minute: the loop still turns every second.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let (ok, body) = state.health();
        assert!(ok, "{body}");
        assert!(
            body["clock_last_turn_ms_ago"].as_u64().unwrap() <= 1000,
            "{body}"
        );

        clock.abort();
        tokio::time::sleep(WEDGED_AFTER - Duration::from_secs(2)).await;
        assert!(state.health().0, "not yet");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (ok, body) = state.health();
        assert!(!ok);
        assert_eq!(body["status"], "wedged");
    }

    #[test]
    fn queries_keep_the_first_of_a_repeated_key_and_decode_escapes() {
        let q = parse_query("id=4%32&state=running&id=7");
        assert_eq!(q["id"], "42");
        assert_eq!(q["state"], "running");
    }
}
