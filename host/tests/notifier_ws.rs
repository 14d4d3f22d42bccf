//! The daemon over the notifier WebSocket (docs/platform.md §1.5), started with exactly the
//! settings a sixth-generation sensor manager passes — API URL, token, sensor ref, notifier
//! URL; no broker URL — against the in-process fake API and the in-process fake notifier
//! below (loopback only; every wait bounded).
//!
//! The fake notifier follows §1.5: the handshake's `Authorization` and
//! `Sec-WebSocket-Protocol` headers (401 JSON refusals), the `attune.v1` subprotocol, the
//! welcome frame, `trigger_ref:` subscriptions limited to the token's trigger types (an
//! error frame otherwise), delivery only of `rule_lifecycle_changed` notifications whose
//! trigger ref is subscribed, and Close frames with any code (4401 for an expired token).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tracing::instrument::WithSubscriber;

use attune_testkit::fake_api::{make_jwt, now_unix, FakeApi, FakeOptions};
use attune_testkit::logs::LogCapture;
use attune_testkit::machine::proc_mem;
use attune_testkit::wait::eventually;
use attune_timer::daemon::config::{Settings, Transport};
use attune_timer::daemon::Daemon;
use attune_timer::platform::token::decode_claims;
use attune_timer::schedule::Clock;

const ALL_REFS: [&str; 4] = [
    "core.intervaltimer",
    "core.crontimer",
    "core.datetimetimer",
    "core.rruletimer",
];
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// The fake notifier.

/// What one upgrade request presented.
#[derive(Debug, Clone)]
struct Handshake {
    token: Option<String>,
    protocols: Option<String>,
    accepted: bool,
}

#[derive(Debug, Clone)]
enum Cmd {
    /// A notification frame's fields (without `type`): delivered by the filters.
    Notify(Value),
    /// Raw text or binary, to every connection.
    Text(String),
    Binary(Vec<u8>),
    /// Close every connection with this code.
    Close(u16, &'static str),
}

#[derive(Default)]
struct NotifierState {
    handshakes: Vec<Handshake>,
    /// The filters each accepted connection subscribed to, in order of connection.
    subscriptions: Vec<Vec<String>>,
    refused_tokens: HashSet<String>,
    clients: u64,
    tasks: Vec<JoinHandle<()>>,
}

struct FakeNotifier {
    addr: SocketAddr,
    state: Arc<Mutex<NotifierState>>,
    cmds: broadcast::Sender<Cmd>,
}

impl FakeNotifier {
    async fn start() -> FakeNotifier {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cmds, _) = broadcast::channel(64);
        let n = FakeNotifier {
            addr,
            state: Arc::default(),
            cmds,
        };
        n.serve(listener);
        n
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let state = self.state.clone();
        let cmds = self.cmds.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let task = tokio::spawn(connection(stream, state.clone(), cmds.subscribe()));
                state.lock().unwrap().tasks.push(task);
            }
        });
        self.state.lock().unwrap().tasks.push(accept);
    }

    /// Drops every connection and stops listening, as a notifier that goes down.
    fn stop(&self) {
        for task in self.state.lock().unwrap().tasks.drain(..) {
            task.abort();
        }
    }

    /// Listens again on the same address.
    async fn restart(&self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    fn send(&self, cmd: Cmd) {
        let _ = self.cmds.send(cmd);
    }

    /// A `rule_lifecycle_changed` notification as the API emits it (§1.5).
    fn lifecycle(
        &self,
        event_type: &str,
        rule_id: i64,
        trigger_ref: &str,
        active: bool,
        params: Option<Value>,
    ) {
        let mut payload = json!({
            "entity_type": "rule_lifecycle", "entity_id": rule_id, "event_type": event_type,
            "active": active, "rule_id": rule_id, "rule_ref": format!("test.rule{rule_id}"),
            "trigger_ref": trigger_ref, "timestamp": chrono::Utc::now().to_rfc3339(),
            "auth_mode": if params.is_some() { "full" } else { "deferred" },
        });
        if let Some(p) = params {
            payload["trigger_params"] = p;
        }
        self.send(Cmd::Notify(json!({
            "notification_type": "rule_lifecycle_changed", "entity_type": "rule_lifecycle",
            "entity_id": rule_id, "user_id": null, "timestamp": chrono::Utc::now().to_rfc3339(),
            "payload": payload,
        })));
    }

    fn refuse_token(&self, token: &str) {
        self.state
            .lock()
            .unwrap()
            .refused_tokens
            .insert(token.to_string());
    }

    fn handshakes(&self) -> Vec<Handshake> {
        self.state.lock().unwrap().handshakes.clone()
    }

    fn accepted(&self) -> usize {
        self.handshakes().iter().filter(|h| h.accepted).count()
    }

    fn subscriptions(&self) -> Vec<Vec<String>> {
        self.state.lock().unwrap().subscriptions.clone()
    }
}

fn token_scope(token: &str) -> Vec<String> {
    decode_claims(token)
        .ok()
        .and_then(|c| c.trigger_types)
        .unwrap_or_default()
}

fn refusal(error: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(json!({ "error": error }).to_string()));
    *r.status_mut() = StatusCode::UNAUTHORIZED;
    r
}

// The handshake callback's error type is tungstenite's (a whole HTTP response).
#[allow(clippy::result_large_err)]
async fn connection(
    stream: tokio::net::TcpStream,
    state: Arc<Mutex<NotifierState>>,
    mut cmds: broadcast::Receiver<Cmd>,
) {
    let seen: Arc<Mutex<Option<String>>> = Arc::default();
    let seen_in = seen.clone();
    let state_in = state.clone();
    let callback = move |req: &Request, mut resp: Response| {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let token =
            header("authorization").and_then(|a| a.strip_prefix("Bearer ").map(str::to_string));
        let protocols = header("sec-websocket-protocol");
        let mut s = state_in.lock().unwrap();
        let verdict = match &token {
            None => Err("missing_token"),
            Some(t) if s.refused_tokens.contains(t) => Err("invalid_or_expired_token"),
            Some(t)
                if decode_claims(t)
                    .ok()
                    .and_then(|c| c.exp)
                    .is_some_and(|e| e <= now_unix()) =>
            {
                Err("invalid_or_expired_token")
            }
            Some(t) => {
                let offered: Vec<&str> = protocols
                    .as_deref()
                    .unwrap_or("")
                    .split(',')
                    .map(str::trim)
                    .collect();
                if offered.contains(&"attune.v1")
                    && offered.contains(&format!("attune.jwt.{t}").as_str())
                {
                    Ok(())
                } else {
                    Err("missing_token")
                }
            }
        };
        s.handshakes.push(Handshake {
            token: token.clone(),
            protocols,
            accepted: verdict.is_ok(),
        });
        match verdict {
            Ok(()) => {
                *seen_in.lock().unwrap() = token;
                resp.headers_mut().insert(
                    "sec-websocket-protocol",
                    HeaderValue::from_static("attune.v1"),
                );
                Ok(resp)
            }
            Err(e) => Err(refusal(e)),
        }
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let token = seen.lock().unwrap().clone().unwrap_or_default();
    let scope = token_scope(&token);
    let index = {
        let mut s = state.lock().unwrap();
        s.clients += 1;
        s.subscriptions.push(Vec::new());
        s.subscriptions.len() - 1
    };
    let client = state.lock().unwrap().clients;
    let welcome = json!({"type": "welcome", "client_id": format!("client_{client}"), "message": "Connected to Attune Notifier"});
    if ws.send(Message::text(welcome.to_string())).await.is_err() {
        return;
    }
    let mut filters: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            frame = ws.next() => {
                let Some(Ok(frame)) = frame else { return };
                let Message::Text(text) = frame else { continue };
                let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                    let _ = ws.send(Message::text(json!({"type": "error", "message": "Malformed message: expected JSON"}).to_string())).await;
                    continue;
                };
                if v["type"] == "subscribe" {
                    let filter = v["filter"].as_str().unwrap_or("").to_string();
                    let allowed = filter
                        .strip_prefix("trigger_ref:")
                        .is_some_and(|r| scope.iter().any(|s| s == r));
                    if allowed {
                        filters.push(filter.clone());
                        state.lock().unwrap().subscriptions[index].push(filter);
                    } else {
                        let _ = ws.send(Message::text(json!({"type": "error", "message": "Unauthorized to subscribe to requested filter"}).to_string())).await;
                    }
                }
            }
            cmd = cmds.recv() => {
                let sent = match cmd {
                    Ok(Cmd::Notify(mut n)) => {
                        let trigger_ref = n["payload"]["trigger_ref"].as_str().unwrap_or("").to_string();
                        let deliver = n["notification_type"] == "rule_lifecycle_changed"
                            && scope.contains(&trigger_ref)
                            && filters.contains(&format!("trigger_ref:{trigger_ref}"));
                        if !deliver {
                            continue;
                        }
                        n["type"] = json!("notification");
                        ws.send(Message::text(n.to_string())).await
                    }
                    Ok(Cmd::Text(t)) => ws.send(Message::text(t)).await,
                    Ok(Cmd::Binary(b)) => ws.send(Message::binary(b)).await,
                    Ok(Cmd::Close(code, reason)) => {
                        let _ = ws.send(Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }))).await;
                        let _ = tokio::time::timeout(Duration::from_secs(2), async { while ws.next().await.is_some() {} }).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if sent.is_err() {
                    return;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The daemon, as a sixth-generation sensor manager starts it.

struct WsDaemon {
    settings: Settings,
    clock: Clock,
    /// The admin listener's address.
    admin: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl WsDaemon {
    async fn start(api: &FakeApi, notifier: &FakeNotifier, token: &str) -> WsDaemon {
        Self::start_with(api, notifier, token, &[]).await
    }

    /// With `extra` settings on top of the sensor manager's.
    async fn start_with(
        api: &FakeApi,
        notifier: &FakeNotifier,
        token: &str,
        extra: &[(&str, &str)],
    ) -> WsDaemon {
        // Exactly what V6's sensor manager passes (docs/platform.md §0.1), and where the
        // compiled component is cached (the process environment's XDG_CACHE_HOME).
        let env: HashMap<String, String> = [
            ("ATTUNE_API_URL", api.url()),
            ("ATTUNE_API_TOKEN", token.to_string()),
            ("ATTUNE_SENSOR_REF", "core.timer_sensor".to_string()),
            ("ATTUNE_NOTIFIER_WS_URL", notifier.url()),
            // Not the manager's: these daemons run side by side, each listener on a port
            // of its own.
            ("ATTUNE_ADMIN_ADDR", "127.0.0.1:0".to_string()),
            (
                "XDG_CACHE_HOME",
                std::env::temp_dir()
                    .join("attune-timer-test-xdg")
                    .display()
                    .to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
        let settings = Settings::from_env(&env).expect("V6 settings");
        assert_eq!(settings.transport(), Transport::NotifierWs);
        let daemon = Daemon::start(settings.clone())
            .await
            .unwrap_or_else(|e| panic!("the daemon did not start: {e:#}"));
        let clock = daemon.clock().clone();
        let admin = daemon.admin_addr().expect("the admin listener is on");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            daemon
                .run(async {
                    let _ = stopped.await;
                })
                .with_current_subscriber(),
        );
        WsDaemon {
            settings,
            clock,
            admin,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(20), self.task.take().unwrap())
            .await
            .expect("the daemon shut down within 20 s")
            .expect("no panic")
            .expect("a clean run");
    }
}

fn token() -> String {
    let now = now_unix();
    make_jwt(now + 3600, now, Some(&ALL_REFS))
}

fn every(secs: u64) -> Value {
    json!({"interval": secs, "unit": "seconds"})
}

fn rule_lists(api: &FakeApi) -> usize {
    api.requests_to("/api/v1/rules").len()
}

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn follows_rule_changes_over_the_websocket() {
    let (logs, _guard) = LogCapture::start("info");
    let api = FakeApi::start(FakeOptions::default());
    api.add_rule(1, "core.intervaltimer", every(60), true);
    api.add_rule(
        2,
        "core.crontimer",
        json!({"expression": "0 0 * * *"}),
        false,
    );
    let notifier = FakeNotifier::start().await;
    let token = token();
    let d = WsDaemon::start(&api, &notifier, &token).await;
    assert!(d.settings.mq_url.is_empty());

    // Loaded from the listing; the handshake carried the token both ways; one
    // subscription per trigger ref in scope.
    assert!(d.clock.contains(1) && !d.clock.contains(2));
    let hs = notifier.handshakes();
    assert_eq!(hs.len(), 1);
    assert!(hs[0].accepted);
    assert_eq!(hs[0].token.as_deref(), Some(token.as_str()));
    assert_eq!(
        hs[0].protocols.as_deref(),
        Some(format!("attune.v1, attune.jwt.{token}").as_str())
    );
    assert!(
        eventually(WAIT, || notifier
            .subscriptions()
            .first()
            .is_some_and(|s| s.len() == 4))
        .await
    );
    let mut subscribed = notifier.subscriptions()[0].clone();
    subscribed.sort();
    let mut expected: Vec<String> = ALL_REFS
        .iter()
        .map(|r| format!("trigger_ref:{r}"))
        .collect();
    expected.sort();
    assert_eq!(subscribed, expected);

    let clock = d.clock.clone();
    notifier.lifecycle(
        "rule.created",
        10,
        "core.intervaltimer",
        true,
        Some(every(30)),
    );
    notifier.lifecycle(
        "rule.created",
        11,
        "core.intervaltimer",
        false,
        Some(every(30)),
    );
    assert!(eventually(WAIT, || clock.contains(10)).await);
    assert!(!clock.contains(11), "created inactive: not started");

    // Ignored: binary frames, unknown types, other kinds, malformed frames (logged without
    // content); a refused subscription is only a warning. The session goes on.
    notifier.send(Cmd::Binary(vec![0, 1, 2]));
    notifier.send(Cmd::Text(
        json!({"type": "stats", "clients": 3}).to_string(),
    ));
    notifier.lifecycle(
        "rule.updated",
        12,
        "core.intervaltimer",
        true,
        Some(every(30)),
    );
    notifier.send(Cmd::Text("{not json, secret-password".into()));
    notifier.send(Cmd::Text(
        json!({"type": "notification", "notification_type": "rule_lifecycle_changed",
               "payload": {"event_type": "rule.enabled", "rule_id": "13", "rule_ref": "r",
                           "trigger_ref": "core.intervaltimer", "trigger_params": {"password": "hunter2"}}})
        .to_string(),
    ));
    notifier.send(Cmd::Text(
        json!({"type": "error", "message": "Unauthorized to subscribe to requested filter"})
            .to_string(),
    ));

    notifier.lifecycle(
        "rule.enabled",
        11,
        "core.intervaltimer",
        true,
        Some(every(45)),
    );
    notifier.lifecycle("rule.disabled", 1, "core.intervaltimer", false, None);
    assert!(eventually(WAIT, || clock.contains(11) && !clock.contains(1)).await);
    notifier.lifecycle("rule.deleted", 10, "core.intervaltimer", false, None);
    assert!(eventually(WAIT, || !clock.contains(10)).await);
    assert!(!clock.contains(12) && !clock.contains(13));
    assert_eq!(notifier.accepted(), 1, "nothing above ended the session");

    let text = logs.text();
    assert!(
        text.contains("Skipping a malformed notifier frame"),
        "{text}"
    );
    assert!(text.contains("frame_bytes"));
    assert!(!text.contains("secret-password") && !text.contains("hunter2"));
    assert!(!text.contains(&token), "the token is never logged");

    // Any other error frame ends the session; it reconnects and re-syncs.
    let lists = rule_lists(&api);
    notifier.send(Cmd::Text(
        json!({"type": "error", "message": "Invalid filter 'x': bad"}).to_string(),
    ));
    assert!(
        eventually(WAIT, || notifier.accepted() == 2
            && rule_lists(&api) > lists)
        .await
    );
    d.stop().await;
}

#[tokio::test]
async fn survives_a_close_and_a_restart_with_a_resync_each_time() {
    let api = FakeApi::start(FakeOptions::default());
    api.add_rule(1, "core.intervaltimer", every(60), true);
    api.add_rule(2, "core.intervaltimer", every(60), true);
    let notifier = FakeNotifier::start().await;
    let d = WsDaemon::start(&api, &notifier, &token()).await;
    let clock = d.clock.clone();
    assert!(clock.contains(1) && clock.contains(2));

    // Changes made while no notification reaches the sensor: the re-sync picks them up.
    api.add_rule(
        3,
        "core.crontimer",
        json!({"expression": "0 0 * * *"}),
        true,
    );
    api.remove_rule(1);
    let lists = rule_lists(&api);
    notifier.send(Cmd::Close(1000, "bye"));
    assert!(eventually(WAIT, || notifier.accepted() == 2).await);
    assert!(eventually(WAIT, || clock.contains(3) && !clock.contains(1)).await);
    assert!(rule_lists(&api) > lists, "re-synced after reconnecting");
    assert!(
        eventually(WAIT, || notifier
            .subscriptions()
            .get(1)
            .is_some_and(|s| s.len() == 4))
        .await
    );

    // The notifier goes away (not ready meanwhile) and comes back.
    notifier.stop();
    api.remove_rule(2);
    api.add_rule(4, "core.intervaltimer", every(30), true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let readyz = loop {
        let readyz = attune_testkit::admin::get(d.admin, "/readyz").await;
        if readyz.status == 503 || tokio::time::Instant::now() > deadline {
            break readyz;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(readyz.status, 503, "{}", readyz.body);
    assert_eq!(readyz.json()["checks"]["transport_connected"]["ok"], false);
    notifier.restart().await;
    assert!(eventually(Duration::from_secs(15), || notifier.accepted() == 3).await);
    assert!(
        eventually(WAIT, || clock.contains(4)
            && !clock.contains(2)
            && clock.contains(3))
        .await
    );

    // And it still follows notifications on the new session.
    assert!(
        eventually(WAIT, || notifier
            .subscriptions()
            .get(2)
            .is_some_and(|s| s.len() == 4))
        .await
    );
    notifier.lifecycle("rule.deleted", 4, "core.intervaltimer", false, None);
    assert!(eventually(WAIT, || !clock.contains(4)).await);
    let readyz = attune_testkit::admin::get(d.admin, "/readyz").await;
    assert_eq!(readyz.status, 200, "{}", readyz.body);
    let m = attune_testkit::admin::scrape(d.admin).await;
    assert_eq!(
        m.value(
            "attune_timer_transport_connected",
            &[("transport", "notifier")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            "attune_timer_transport_reconnects_total",
            &[("transport", "notifier")]
        ),
        Some(2.0)
    );
    assert_eq!(
        m.value(
            "attune_timer_lifecycle_messages_total",
            &[("type", "deleted"), ("result", "applied")]
        ),
        Some(1.0)
    );
    d.stop().await;
}

#[tokio::test]
async fn reconnects_with_the_renewed_token() {
    let api = FakeApi::start(FakeOptions::default());
    api.add_rule(1, "core.intervaltimer", every(60), true);
    let notifier = FakeNotifier::start().await;
    let first = token();
    let d = WsDaemon::start(&api, &notifier, &first).await;

    // The notifier says the token expired (4401) and refuses it from now on: the daemon
    // renews it and presents the new one.
    notifier.refuse_token(&first);
    notifier.send(Cmd::Close(4401, "token expired"));
    assert!(eventually(WAIT, || notifier.accepted() == 2).await);
    let renewed = api.issued_tokens();
    assert_eq!(renewed.len(), 1);
    let hs = notifier.handshakes();
    let last = hs.last().unwrap();
    assert_eq!(last.token.as_deref(), Some(renewed[0].as_str()));
    assert!(last
        .protocols
        .as_deref()
        .unwrap()
        .ends_with(&format!("attune.jwt.{}", renewed[0])));

    // A 401 refusal of the upgrade renews it too, and the next attempt uses the newer one.
    notifier.refuse_token(&renewed[0]);
    notifier.send(Cmd::Close(1000, "restart"));
    assert!(eventually(Duration::from_secs(15), || notifier.accepted() == 3).await);
    let issued = api.issued_tokens();
    assert_eq!(issued.len(), 2);
    let hs = notifier.handshakes();
    assert!(hs
        .iter()
        .any(|h| !h.accepted && h.token.as_deref() == Some(issued[0].as_str())));
    assert_eq!(
        hs.last().unwrap().token.as_deref(),
        Some(issued[1].as_str())
    );
    assert!(d.clock.contains(1));
    d.stop().await;
}

#[tokio::test]
async fn fetches_a_rule_announced_in_compact_form() {
    let api = FakeApi::start(FakeOptions::default());
    let notifier = FakeNotifier::start().await;
    let d = WsDaemon::start(&api, &notifier, &token()).await;
    let clock = d.clock.clone();
    assert!(
        eventually(WAIT, || notifier
            .subscriptions()
            .first()
            .is_some_and(|s| s.len() == 4))
        .await
    );

    // Params too large for a notification: the API sends the compact form (no
    // trigger_params, auth_mode deferred).
    api.add_rule(
        5,
        "core.crontimer",
        json!({"expression": "0 30 9 * * MON-FRI", "timezone": "Europe/Berlin"}),
        true,
    );
    let lists = rule_lists(&api);
    notifier.lifecycle("rule.created", 5, "core.crontimer", true, None);
    assert!(eventually(WAIT, || clock.contains(5)).await);
    assert_eq!(clock.timer(5).unwrap().trigger_ref, "core.crontimer");
    assert!(rule_lists(&api) > lists, "fetched through the API");
    assert_eq!(notifier.accepted(), 1, "the session went on");

    // A compact enable of a rule the API no longer lists as active stops it.
    api.update_rule(5, None, Some(false));
    notifier.lifecycle("rule.enabled", 5, "core.crontimer", true, None);
    assert!(eventually(WAIT, || !clock.contains(5)).await);
    d.stop().await;
}

#[tokio::test]
async fn periodic_resync_repairs_a_lost_notification() {
    let (logs, _guard) = LogCapture::start("info");
    let api = FakeApi::start(FakeOptions::default());
    api.add_rule(1, "core.intervaltimer", every(60), true);
    let notifier = FakeNotifier::start().await;
    let d = WsDaemon::start_with(
        &api,
        &notifier,
        &token(),
        &[("ATTUNE_RESYNC_INTERVAL_SECS", "1")],
    )
    .await;
    let clock = d.clock.clone();
    // Changes the notifier never announces: the next periodic re-sync applies them.
    api.add_rule(2, "core.intervaltimer", every(30), true);
    api.remove_rule(1);
    assert!(eventually(WAIT, || clock.contains(2) && !clock.contains(1)).await);
    assert!(
        eventually(WAIT, || logs
            .text()
            .contains("Periodic re-sync: 2 rules corrected"))
        .await
    );
    assert_eq!(notifier.accepted(), 1, "without a reconnect");
    d.stop().await;
}

#[tokio::test]
async fn bounded_input_over_the_websocket() {
    let (logs, _guard) = LogCapture::start("info");
    let api = FakeApi::start(FakeOptions::default());
    let mut big = every(60);
    big["note"] = json!(format!("hush-{}", "y".repeat(400)));
    api.add_rule(1, "core.intervaltimer", every(60), true);
    api.add_rule(2, "core.intervaltimer", big.clone(), true);
    let notifier = FakeNotifier::start().await;
    let d = WsDaemon::start_with(
        &api,
        &notifier,
        &token(),
        &[
            ("ATTUNE_MAX_MESSAGE_BYTES", "2048"),
            ("ATTUNE_MAX_RULE_PARAMS_BYTES", "256"),
        ],
    )
    .await;
    let clock = d.clock.clone();
    assert!(
        clock.contains(1) && !clock.contains(2),
        "listed params over the cap: refused"
    );
    assert!(
        eventually(WAIT, || notifier
            .subscriptions()
            .first()
            .is_some_and(|s| s.len() == 4))
        .await
    );

    let frame = |event: &str, id: i64, trigger_ref: &str, params: Value| {
        json!({"type": "notification", "notification_type": "rule_lifecycle_changed",
               "payload": {"event_type": event, "rule_id": id, "rule_ref": "r", "active": true,
                           "trigger_ref": trigger_ref, "trigger_params": params}})
        .to_string()
    };
    // An oversize frame, a rule id that is not positive, a spaced trigger ref.
    notifier.send(Cmd::Text(frame(
        "rule.created",
        5,
        "core.intervaltimer",
        json!({"interval": 5, "pad": format!("secret-{}", "x".repeat(3000))}),
    )));
    notifier.send(Cmd::Text(frame(
        "rule.created",
        0,
        "core.intervaltimer",
        every(60),
    )));
    notifier.send(Cmd::Text(frame(
        "rule.created",
        6,
        "core.intervaltimer ",
        every(60),
    )));
    // Params over the cap stop what ran under that id: nothing of the rule is kept.
    notifier.lifecycle("rule.enabled", 1, "core.intervaltimer", true, Some(big));
    notifier.lifecycle(
        "rule.created",
        7,
        "core.intervaltimer",
        true,
        Some(every(60)),
    );
    assert!(eventually(WAIT, || clock.contains(7) && !clock.contains(1)).await);
    assert!(!clock.contains(5) && !clock.contains(6) && !clock.contains(0));
    assert_eq!(notifier.accepted(), 1, "refusals never end the session");

    // The refusals are logged as they happen; the last may trail the clock's change.
    assert!(
        eventually(WAIT, || logs
            .text()
            .contains("Refusing rule.enabled for rule 1"))
        .await,
        "{}",
        logs.text()
    );
    let text = logs.text();
    assert!(
        text.contains("Refusing an oversize rule lifecycle message (notifier frame"),
        "{text}"
    );
    assert!(text.contains("Refusing listed rule 2"), "{text}");
    assert!(text.contains("Refusing rule.enabled for rule 1"), "{text}");
    assert!(text.contains("rule ids are positive"), "{text}");
    assert!(text.contains("has surrounding spaces"), "{text}");
    assert!(!text.contains("secret-") && !text.contains("hush-"));
    d.stop().await;
}

/// The flood of `lifecycle_messages.rs` over the WebSocket: round after round of 2 MiB
/// frames (over the default 1 MiB message cap), rules with 200 KiB params (over the default
/// 64 KiB params cap) and 512 KiB of malformed JSON, each with a new rule id. The heap stays
/// flat from round to round, nothing of the flood runs, the session survives, and a rule
/// firing every second keeps every fire, on time.
///
/// Like every test here that logs, it runs on one thread with its own capture of the logs:
/// tracing decides once per log statement which subscribers want it, and a test logging with
/// none could leave the statements it reaches first disabled for the tests that capture.
#[tokio::test]
async fn a_flood_over_the_websocket_leaves_memory_flat_and_fires_on_time() {
    let (_logs, _guard) = LogCapture::start("info");
    let api = FakeApi::start(FakeOptions::default());
    api.add_rule(1, "core.intervaltimer", every(1), true);
    let notifier = FakeNotifier::start().await;
    let d = WsDaemon::start(&api, &notifier, &token()).await;
    let clock = d.clock.clone();
    assert!(
        eventually(WAIT, || notifier
            .subscriptions()
            .first()
            .is_some_and(|s| s.len() == 4))
        .await
    );
    let heap_kib = || proc_mem(std::process::id()).rss_anon_kib;
    let huge_expression = "*".repeat(2 * 1024 * 1024);
    let mut id = 1000;
    let mut after_round = Vec::new();
    clock.take_lateness();
    let started = tokio::time::Instant::now();
    while after_round.len() < 12
        || (started.elapsed() < Duration::from_secs(5) && after_round.len() < 40)
    {
        for _ in 0..4 {
            id += 1;
            notifier.lifecycle(
                "rule.created",
                id,
                "core.crontimer",
                true,
                Some(json!({"expression": huge_expression})),
            );
            id += 1;
            let mut params = every(60);
            params["padding"] = json!("y".repeat(200 * 1024));
            notifier.lifecycle("rule.created", id, "core.intervaltimer", true, Some(params));
            let mut junk = String::from(r#"{"type":"notification","payload":"#);
            junk.push_str(&"[".repeat(512 * 1024));
            notifier.send(Cmd::Text(junk));
        }
        // A small, valid rule after the round: once it runs, the round has been read.
        id += 1;
        let marker = id;
        notifier.lifecycle(
            "rule.created",
            marker,
            "core.intervaltimer",
            true,
            Some(every(3600)),
        );
        assert!(
            eventually(Duration::from_secs(30), || clock.contains(marker)).await,
            "the daemon keeps up with the flood"
        );
        after_round.push(heap_kib());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        clock.len(),
        1 + after_round.len(),
        "nothing of the flood runs (rule 1 and the markers do)"
    );
    assert_eq!(notifier.accepted(), 1, "the flood never ends the session");
    // 11 MiB per round: kept, 88 MiB or more over the rounds after the first four (which
    // warm the allocator); 32 MiB of slack is for the allocator and the file's other tests.
    let growth_kib = after_round.last().unwrap().saturating_sub(after_round[3]);
    assert!(
        growth_kib < 32 * 1024,
        "the heap grew {growth_kib} KiB over {} rounds (KiB after each: {after_round:?})",
        after_round.len() - 4
    );
    // A hand-over takes about a millisecond; 250 ms is room for a loaded CI machine.
    let lateness = clock.take_lateness();
    assert!(
        lateness.max() < 250_000_000,
        "a fire reached the outbox {} ms late during the flood",
        lateness.max() / 1_000_000
    );
    let fired = clock.timer(1).expect("rule 1 runs").execution_count;
    assert!(fired >= 4, "five seconds of flood, {fired} fires");
    assert!(eventually(WAIT, || api.execution_counts(1).len() as u64 >= fired).await);
    assert_eq!(
        api.execution_counts(1)[..fired as usize],
        (1..=fired).collect::<Vec<_>>()[..],
        "every fire, once"
    );
    d.stop().await;
}
