//! The rule-lifecycle listener over the Attune notifier's WebSocket (docs/platform.md §1.5),
//! the transport of the platform's V4+ sensors.
//!
//! - **Handshake:** `Authorization: Bearer <token>` and `Sec-WebSocket-Protocol: attune.v1,
//!   attune.jwt.<token>`, with the *current* token (renewed ones included) on every connect.
//!   Plaintext `ws://` is refused at connect time too when the host resolves to anything but
//!   loopback, unless insecure notifier WebSockets are allowed (§1.1.5). A 401 refusal of the
//!   upgrade renews the token (while it is unexpired) before the next attempt.
//! - **Then:** one `subscribe` frame per trigger ref in scope, then (by the caller, on every
//!   connect) the REST re-sync (§1.3(d)).
//! - **Frames:** `welcome` is ignored; a `notification` of kind `rule_lifecycle_changed` is
//!   parsed ([`parse_notification`]) and applied through the same [`RuleFeed`] as broker
//!   messages. A compact notification (`auth_mode: "deferred"`, no `trigger_params`) makes
//!   the feed fetch the rule from the API. An `error` frame saying `Unauthorized to subscribe
//!   to requested filter` is a warning; any other ends the session. A malformed frame is
//!   logged with its size and kind — never its content — and skipped (**Differs**: the
//!   platform's sensor ends the session). Binary and unknown frames are ignored.
//! - **Liveness:** a ping every [`NotifierConfig::ping_every`]; nothing heard for two of
//!   them ends the session.
//! - **Close:** a Close frame ends the session cleanly; code 4401 (`token expired`) renews
//!   the token first.
//! - **Reconnect:** the same policy as the broker's ([`ReconnectPolicy`]: 1 s doubling to
//!   30 s), reset after a healthy session — one that ended cleanly and lasted 30 s.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, error, info, warn};

use super::api::ApiClient;
use super::feed::{self, LifecycleKind, LifecycleMessage, ReconnectPolicy, RuleFeed};
use super::token::unix_now;
use crate::schedule::SnapshotReport;
use crate::support::backoff::Backoff;
use crate::support::redact::{excerpt, url_for_log};

/// The close code the notifier uses when the token expired (§1.5).
pub const CLOSE_TOKEN_EXPIRED: u16 = 4401;
/// The subprotocol both sides speak.
pub const SUBPROTOCOL: &str = "attune.v1";
/// The error text that is only a warning (§1.5).
const UNAUTHORIZED_SUBSCRIBE: &str = "Unauthorized to subscribe to requested filter";
/// How many characters of a server's error message a log line quotes.
const EXCERPT_CHARS: usize = 120;

/// How the notifier listener connects.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// `ws://` or `wss://` URL (checked by the settings). Logged as its origin only.
    pub url: String,
    /// Plaintext `ws://` to a host that is not loopback is allowed.
    pub allow_insecure: bool,
    pub reconnect: ReconnectPolicy,
    /// How often a ping is sent; nothing heard for twice this ends the session.
    pub ping_every: Duration,
    /// How long connecting, the handshake and subscribing may take.
    pub connect_timeout: Duration,
}

impl NotifierConfig {
    pub fn new(url: &str, allow_insecure: bool) -> Self {
        Self {
            url: url.trim().to_string(),
            allow_insecure,
            reconnect: ReconnectPolicy::default(),
            ping_every: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(30),
        }
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One live WebSocket session, subscribed.
pub struct NotifierSession {
    ws: Ws,
}

impl std::fmt::Debug for NotifierSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifierSession").finish_non_exhaustive()
    }
}

impl NotifierSession {
    /// Sends a Close frame and waits briefly for the peer's; bounded.
    pub async fn close(mut self) {
        let closing = self.ws.close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "sensor shutting down".into(),
        }));
        if tokio::time::timeout(Duration::from_secs(5), closing)
            .await
            .is_err()
        {
            warn!("Closing the notifier WebSocket took over 5 s; leaving it");
        }
    }
}

/// Why a session ended.
enum SessionEnd {
    Shutdown,
    /// The server closed it with a Close frame (`4401` → the token expired).
    Closed {
        code: Option<u16>,
    },
    Lost(String),
}

/// What one frame asks of the session.
enum Flow {
    Continue,
    End(String),
}

/// Why a frame could not be read. The text never includes the frame's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("the frame is not JSON")]
    NotJson,
    #[error("the frame is not a JSON object")]
    NotAnObject,
    #[error("`{0}` is missing or not {1}")]
    BadField(&'static str, &'static str),
}

/// Parses a `notification` frame (§1.5): `Ok(None)` for a notification this sensor does not
/// act on (another `notification_type`, or an `event_type` such as `rule.updated`). Requires
/// `payload.event_type`, `payload.rule_id`, `payload.rule_ref` and `payload.trigger_ref`;
/// `trigger_params` is optional (absent in the compact form), `active` defaults to false.
pub fn parse_notification(
    frame: &Map<String, Value>,
) -> Result<Option<LifecycleMessage>, FrameError> {
    let kind = frame.get("notification_type").and_then(Value::as_str);
    if kind.is_some_and(|k| k != "rule_lifecycle_changed") {
        return Ok(None);
    }
    let payload = frame
        .get("payload")
        .and_then(Value::as_object)
        .ok_or(FrameError::BadField("payload", "an object"))?;
    let text = |key: &'static str| {
        payload
            .get(key)
            .and_then(Value::as_str)
            .ok_or(FrameError::BadField(key, "a string"))
    };
    let event_type = text("event_type")?;
    let rule_id = payload
        .get("rule_id")
        .and_then(Value::as_i64)
        .ok_or(FrameError::BadField("rule_id", "an integer"))?;
    let rule_ref = text("rule_ref")?.trim().to_string();
    // Not trimmed: a ref with surrounding spaces is refused by the feed, clearly.
    let trigger_ref = text("trigger_ref")?.to_string();
    let Some(kind) = LifecycleKind::parse(event_type) else {
        return Ok(None);
    };
    Ok(Some(LifecycleMessage {
        kind,
        rule_id,
        rule_ref,
        trigger_ref: (!trigger_ref.trim().is_empty()).then_some(trigger_ref),
        trigger_params: payload
            .get("trigger_params")
            .filter(|p| !p.is_null())
            .cloned(),
        enabled: payload
            .get("active")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }))
}

/// The `subscribe` frame for one trigger ref.
pub fn subscribe_frame(trigger_ref: &str) -> String {
    serde_json::json!({"type": "subscribe", "filter": format!("trigger_ref:{trigger_ref}")})
        .to_string()
}

/// The listener: owns the WebSocket, feeds the rule table.
pub struct NotifierListener {
    config: NotifierConfig,
    feed: RuleFeed,
    api: ApiClient,
}

impl NotifierListener {
    /// The listener; `feed` carries the input limits (docs/platform.md §1.5).
    pub fn new(config: NotifierConfig, feed: RuleFeed, api: ApiClient) -> Self {
        Self { config, feed, api }
    }

    pub fn config(&self) -> &NotifierConfig {
        &self.config
    }

    /// Connects with the current token, checks the plaintext rule, and subscribes to every
    /// trigger ref in scope. A 401 refusal renews the token (when it is unexpired) so that
    /// the next attempt presents the new one.
    pub async fn connect(&self) -> anyhow::Result<NotifierSession> {
        match tokio::time::timeout(self.config.connect_timeout, self.connect_inner()).await {
            Ok(result) => result,
            Err(_) => anyhow::bail!(
                "no answer from the notifier within {:?}",
                self.config.connect_timeout
            ),
        }
    }

    async fn connect_inner(&self) -> anyhow::Result<NotifierSession> {
        let url = url::Url::parse(&self.config.url)
            .map_err(|_| anyhow::anyhow!("notifier_ws_url is not a valid URL"))?;
        let host = url
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
            .ok_or_else(|| anyhow::anyhow!("notifier_ws_url must include a host"))?;
        let secure = url.scheme() == "wss";
        let port = url.port().unwrap_or(if secure { 443 } else { 80 });
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|_| anyhow::anyhow!("failed to resolve notifier websocket host '{host}'"))?
            .collect();
        // docs/platform.md §1.5: plaintext only to loopback unless explicitly allowed.
        if !secure
            && !self.config.allow_insecure
            && (addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()))
        {
            anyhow::bail!(
                "Plaintext notifier websocket host {host} resolved to a non-loopback address; \
                 use wss:// or explicitly allow insecure notifier websockets"
            );
        }
        let tcp = TcpStream::connect(&addrs[..]).await.map_err(|e| {
            anyhow::anyhow!("cannot connect to {}: {e}", url_for_log(&self.config.url))
        })?;
        let _ = tcp.set_nodelay(true);
        if secure {
            // rustls is built with more than one crypto provider: name the process's one.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }

        let token = self.api.token().current();
        let mut request = self
            .config
            .url
            .as_str()
            .into_client_request()
            .map_err(|_| anyhow::anyhow!("notifier_ws_url is not a valid URL"))?;
        let headers = request.headers_mut();
        let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| anyhow::anyhow!("the sensor token cannot be sent in a header"))?;
        let protocols = HeaderValue::from_str(&format!("{SUBPROTOCOL}, attune.jwt.{token}"))
            .map_err(|_| anyhow::anyhow!("the sensor token cannot be sent in a header"))?;
        headers.insert(header::AUTHORIZATION, bearer);
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, protocols);

        let (mut ws, _response) =
            match tokio_tungstenite::client_async_tls_with_config(request, tcp, None, None).await {
                Ok(pair) => pair,
                Err(WsError::Http(response)) if response.status() == StatusCode::UNAUTHORIZED => {
                    self.renew_refused_token().await;
                    anyhow::bail!("the notifier refused the sensor token (HTTP 401)");
                }
                Err(WsError::Http(response)) => {
                    anyhow::bail!(
                        "the notifier refused the WebSocket upgrade (HTTP {})",
                        response.status().as_u16()
                    )
                }
                Err(e) => anyhow::bail!("WebSocket handshake failed: {e}"),
            };
        for trigger_ref in self.feed.table().scope() {
            ws.send(Message::text(subscribe_frame(trigger_ref)))
                .await
                .map_err(|e| anyhow::anyhow!("cannot subscribe: {e}"))?;
        }
        info!(
            notifier = %url_for_log(&self.config.url),
            trigger_refs = ?self.feed.table().scope(),
            "Connected to the notifier WebSocket; subscribed to rule lifecycle changes"
        );
        Ok(NotifierSession { ws })
    }

    /// The notifier refused the token (a 401 upgrade, or close code 4401): renew it while
    /// it is still valid for the API, so that the next connect presents the new one.
    async fn renew_refused_token(&self) {
        let token = self.api.token();
        if token.expires_at().is_some() && !token.is_unexpired_at(unix_now()) {
            error!("Token expired: the notifier refuses it and it cannot be renewed");
            return;
        }
        match self.api.renew_token().await {
            Ok(()) => info!("Renewed the sensor token after the notifier refused it"),
            Err(e) => warn!("Cannot renew the sensor token the notifier refused: {e}"),
        }
    }

    /// Loads every active rule in scope from the REST listing and applies it as a snapshot.
    pub async fn resync(&self) -> anyhow::Result<SnapshotReport> {
        self.feed.resync().await
    }

    /// Reads `session` until `shutdown` resolves; reconnects (with backoff, then a re-sync)
    /// whenever the session ends. Closes the WebSocket on shutdown.
    pub async fn run(self, mut session: NotifierSession, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut backoff = Backoff::new(self.config.reconnect.backoff);
        loop {
            let started = Instant::now();
            match self.read(session, shutdown.as_mut()).await {
                SessionEnd::Shutdown => {
                    info!("Stopped following the notifier WebSocket");
                    return;
                }
                SessionEnd::Closed { code } => {
                    // Healthy: ended cleanly and lasted (§1.5).
                    self.config
                        .reconnect
                        .session_ended(&mut backoff, started.elapsed());
                    if code == Some(CLOSE_TOKEN_EXPIRED) {
                        warn!("The notifier closed the WebSocket: token expired (4401)");
                        self.renew_refused_token().await;
                    } else {
                        info!(
                            close_code = code.unwrap_or(0),
                            "The notifier closed the WebSocket; reconnecting"
                        );
                    }
                }
                SessionEnd::Lost(why) => {
                    warn!("Lost the notifier WebSocket: {why}; reconnecting");
                }
            }
            session = match self.reconnect(&mut backoff, shutdown.as_mut()).await {
                Some(next) => next,
                None => return,
            };
        }
    }

    /// Waits out the backoff, connects and re-syncs; repeats until it works or shutdown.
    async fn reconnect(
        &self,
        backoff: &mut Backoff,
        shutdown: Pin<&mut impl Future<Output = ()>>,
    ) -> Option<NotifierSession> {
        feed::reconnect(
            "the notifier",
            &self.feed,
            backoff,
            shutdown,
            || self.connect(),
            |session: NotifierSession| session.close(),
        )
        .await
    }

    async fn read(
        &self,
        session: NotifierSession,
        mut shutdown: Pin<&mut impl Future<Output = ()>>,
    ) -> SessionEnd {
        let mut ws = session.ws;
        let mut pings = tokio::time::interval_at(
            Instant::now() + self.config.ping_every,
            self.config.ping_every,
        );
        pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        loop {
            let frame = tokio::select! {
                _ = shutdown.as_mut() => {
                    NotifierSession { ws }.close().await;
                    return SessionEnd::Shutdown;
                }
                _ = pings.tick() => {
                    if last_heard.elapsed() >= self.config.ping_every * 2 {
                        return SessionEnd::Lost(format!(
                            "nothing heard from the notifier for {:?}",
                            last_heard.elapsed()
                        ));
                    }
                    if let Err(e) = ws.send(Message::Ping(Default::default())).await {
                        return SessionEnd::Lost(format!("ping failed: {e}"));
                    }
                    continue;
                }
                frame = ws.next() => frame,
            };
            let frame = match frame {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return SessionEnd::Lost(e.to_string()),
                None => {
                    return SessionEnd::Lost("the connection closed without a Close frame".into())
                }
            };
            last_heard = Instant::now();
            match frame {
                Message::Text(text) => {
                    if let Flow::End(why) = self.handle_text(text.as_str()).await {
                        return SessionEnd::Lost(why);
                    }
                }
                Message::Binary(bytes) => {
                    debug!(
                        frame_bytes = bytes.len(),
                        "Ignoring a binary notifier frame"
                    );
                }
                Message::Close(frame) => {
                    return SessionEnd::Closed {
                        code: frame.map(|f| u16::from(f.code)),
                    };
                }
                // Pings are answered by the library; a pong only proves the peer is alive.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// Handles one text frame (§1.5). Public for tests of the frame rules.
    async fn handle_text(&self, text: &str) -> Flow {
        if !self.feed.admit_message(text.len(), "notifier frame") {
            return Flow::Continue;
        }
        let frame = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(frame)) => frame,
            Ok(_) => return self.skip_malformed(text, FrameError::NotAnObject, "unknown"),
            Err(_) => return self.skip_malformed(text, FrameError::NotJson, "unknown"),
        };
        match frame.get("type").and_then(Value::as_str) {
            Some("welcome") => {
                let client_id = frame
                    .get("client_id")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string();
                debug!(client_id = %excerpt(&client_id, 64), "Notifier welcome");
                Flow::Continue
            }
            Some("error") => {
                let message = frame.get("message").and_then(Value::as_str).unwrap_or("");
                if message.contains(UNAUTHORIZED_SUBSCRIBE) {
                    warn!(
                        "The notifier refused a subscription: \"{}\"",
                        excerpt(message, EXCERPT_CHARS)
                    );
                    Flow::Continue
                } else {
                    Flow::End(format!(
                        "the notifier sent an error: \"{}\"",
                        excerpt(message, EXCERPT_CHARS)
                    ))
                }
            }
            Some("notification") => match parse_notification(&frame) {
                Ok(Some(message)) => {
                    self.feed.apply(message).await;
                    Flow::Continue
                }
                Ok(None) => {
                    self.feed.count_ignored();
                    debug!(
                        frame_bytes = text.len(),
                        "Ignoring a notification this sensor does not act on"
                    );
                    Flow::Continue
                }
                Err(e) => self.skip_malformed(text, e, "notification"),
            },
            other => {
                debug!(
                    frame_bytes = text.len(),
                    frame_type = other.map(|t| excerpt(t, 32)).unwrap_or_default(),
                    "Ignoring a notifier frame of an unknown type"
                );
                Flow::Continue
            }
        }
    }

    fn skip_malformed(&self, text: &str, e: FrameError, kind: &'static str) -> Flow {
        self.feed.count_malformed();
        warn!(
            frame_bytes = text.len(),
            frame_type = kind,
            "Skipping a malformed notifier frame: {e}"
        );
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Option<LifecycleMessage>, FrameError> {
        parse_notification(v.as_object().unwrap())
    }

    #[test]
    fn notifications_map_to_lifecycle_messages() {
        let m = parse(
            json!({"type": "notification", "notification_type": "rule_lifecycle_changed",
            "payload": {"event_type": "rule.created", "rule_id": 42, "rule_ref": "core.r",
                        "trigger_ref": "core.intervaltimer", "trigger_params": {"interval": 5},
                        "active": true, "auth_mode": "full"}}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(m.kind, LifecycleKind::Created);
        assert_eq!(m.rule_id, 42);
        assert!(m.enabled);
        assert_eq!(m.trigger_params, Some(json!({"interval": 5})));
        // Compact form: no params; `active` defaults to false.
        let m = parse(json!({"type": "notification", "payload": {"event_type": "rule.enabled",
            "rule_id": 7, "rule_ref": "r", "trigger_ref": "core.crontimer", "auth_mode": "deferred"}}))
        .unwrap()
        .unwrap();
        assert_eq!(m.kind, LifecycleKind::Enabled);
        assert_eq!(m.trigger_params, None);
        assert!(!m.enabled);
        // Ignored kinds.
        assert_eq!(
            parse(json!({"notification_type": "execution_status_changed", "payload": {}})),
            Ok(None)
        );
        assert_eq!(
            parse(
                json!({"payload": {"event_type": "rule.updated", "rule_id": 1, "rule_ref": "r",
                "trigger_ref": "core.crontimer"}})
            ),
            Ok(None)
        );
        // Required fields.
        assert_eq!(
            parse(
                json!({"payload": {"event_type": "rule.created", "rule_id": "1", "rule_ref": "r",
                "trigger_ref": "t", "trigger_params": {"secret": "s3cr3t"}}})
            ),
            Err(FrameError::BadField("rule_id", "an integer"))
        );
        assert_eq!(
            parse(
                json!({"payload": {"event_type": "rule.created", "rule_id": 1, "trigger_ref": "t"}})
            ),
            Err(FrameError::BadField("rule_ref", "a string"))
        );
        assert_eq!(
            parse(json!({"type": "notification"})),
            Err(FrameError::BadField("payload", "an object"))
        );
    }

    #[test]
    fn subscribe_frames_name_one_trigger_ref() {
        assert_eq!(
            serde_json::from_str::<Value>(&subscribe_frame("core.crontimer")).unwrap(),
            json!({"type": "subscribe", "filter": "trigger_ref:core.crontimer"})
        );
    }
}
