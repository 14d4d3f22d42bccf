//! An in-process fake of the Attune API (contract §2), for tests: `/health`,
//! `GET /api/v1/rules` (paginated for real), `POST /api/v1/events`,
//! `POST /auth/internal/sensor-token`, with recorded requests, failure injection, token
//! issuing and the sensor-token scope checks. It runs on its own thread and runtime on
//! 127.0.0.1 (loopback only), so it works under any test runtime, paused clocks included,
//! and stops when dropped.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Value};

/// The current Unix time in seconds.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An unsigned test JWT (`header.payload.signature`, base64url without padding) with the
/// claims the API puts in sensor tokens.
pub fn make_jwt(exp: i64, iat: i64, trigger_types: Option<&[&str]>) -> String {
    let types: Option<Vec<String>> =
        trigger_types.map(|t| t.iter().map(|s| s.to_string()).collect());
    make_jwt_with(exp, iat, types.as_deref(), 0)
}

fn make_jwt_with(exp: i64, iat: i64, trigger_types: Option<&[String]>, nonce: u64) -> String {
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let mut claims = json!({
        "sub": "42",
        "login": "core.timer_sensor",
        "iat": iat,
        "exp": exp,
        "token_type": "sensor",
        "scope": "sensor",
        "nonce": nonce,
    });
    if let Some(types) = trigger_types {
        claims["metadata"] = json!({
            "trigger_types": types,
            "sensor_ref": "core.timer_sensor",
            "pack_ref": "core",
            "permission_set_refs": [],
        });
    }
    format!(
        "{}.{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes()),
        b64(format!("fake-signature-{nonce}").as_bytes())
    )
}

fn jwt_payload(token: &str) -> Option<Value> {
    let part = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// How the fake behaves at start; most of it can be changed later.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// Status of `GET /health`.
    pub health_status: u16,
    /// When set, rules and events accept only valid tokens: this one, and those the fake
    /// issues. When `None`, any Bearer token is accepted (expired JWTs still get 401).
    pub initial_token: Option<String>,
    /// Lifetime of tokens issued by `/auth/internal/sensor-token`.
    pub issued_token_ttl_secs: i64,
    /// `metadata.trigger_types` of issued tokens; `None` copies the presenting token's.
    pub issued_trigger_types: Option<Vec<String>>,
    /// Events must name an existing rule of the same trigger (`rule_<id>`), as the API checks.
    pub strict_events: bool,
    /// Return disabled rules even when asked for `enabled=true` (tests client filtering).
    pub ignore_enabled_filter: bool,
    /// Leave `total_items`/`total_pages` out of listings, as the API does when it computed
    /// no exact count (contract §2.3): clients must then follow `has_next`.
    pub omit_page_count: bool,
}

impl Default for FakeOptions {
    fn default() -> Self {
        Self {
            health_status: 200,
            initial_token: None,
            issued_token_ttl_secs: 3600,
            issued_trigger_types: None,
            strict_events: false,
            ignore_enabled_filter: false,
            omit_page_count: false,
        }
    }
}

/// An event the fake created.
#[derive(Debug, Clone)]
pub struct RecordedEvent {
    pub id: i64,
    pub body: Value,
    pub auth_header: Option<String>,
    pub received_at: Instant,
}

/// Any request the fake answered.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub auth_header: Option<String>,
    pub body: Option<Value>,
    pub status: u16,
    pub received_at: Instant,
}

impl RecordedRequest {
    pub fn query_value(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A rule held by the fake.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeRule {
    pub id: i64,
    pub r#ref: String,
    pub trigger_ref: String,
    pub trigger_params: Value,
    pub enabled: bool,
}

impl FakeRule {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id, "ref": self.r#ref, "pack_ref": "test", "label": format!("Rule {}", self.id),
            "description": null, "action_ref": "core.echo", "trigger_ref": self.trigger_ref,
            "action_params": {}, "trigger_params": self.trigger_params,
            "sensor_worker_selector": {}, "sensor_worker_tolerations": [], "sensor_worker_affinity": {},
            "trace_tag_template": null, "permission_set_refs": null, "enabled": self.enabled,
            "created": "2026-01-01T00:00:00Z", "updated": "2026-01-01T00:00:00Z",
        })
    }
}

#[derive(Default)]
struct FakeState {
    opts: FakeOptions,
    /// By id. Change it only through [`FakeState::rules_mut`], which drops `listings`.
    rules: BTreeMap<i64, FakeRule>,
    /// The ids a rules listing pages through, ascending, per filter (`trigger_ref`, enabled
    /// only), built on first use and dropped on any rule change: a page then costs a slice
    /// and `page_size` lookups, O(page_size · log n), rather than a scan of every rule
    /// (1,000 pages of 100,000 rules took seconds that way).
    listings: HashMap<(String, bool), Vec<i64>>,
    /// With [`FakeApi::render_listings_once`]: each listing page's body as first sent, by
    /// (trigger_ref, enabled only, page, page_size), sent again as is; dropped on any rule
    /// change like `listings`.
    rendered: Option<HashMap<(String, bool, usize, usize), Bytes>>,
    events: Vec<RecordedEvent>,
    requests: Vec<RecordedRequest>,
    event_failures: VecDeque<u16>,
    rule_list_failures: VecDeque<u16>,
    renewal_failures: VecDeque<u16>,
    retry_after: Option<u64>,
    event_delay: Duration,
    valid_tokens: HashSet<String>,
    known_tokens: HashSet<String>,
    issued: Vec<String>,
    renewals: usize,
    next_event_id: i64,
    events_in_flight: usize,
    max_events_in_flight: usize,
}

impl FakeState {
    /// The rules, for a change (which drops the cached listings).
    fn rules_mut(&mut self) -> &mut BTreeMap<i64, FakeRule> {
        self.listings.clear();
        if let Some(rendered) = self.rendered.as_mut() {
            rendered.clear();
        }
        &mut self.rules
    }

    /// The ids of the rules of `trigger_ref` (enabled ones only if `only_enabled`), ascending.
    fn listing(&mut self, trigger_ref: &str, only_enabled: bool) -> &[i64] {
        let rules = &self.rules;
        self.listings
            .entry((trigger_ref.to_string(), only_enabled))
            .or_insert_with(|| {
                rules
                    .values()
                    .filter(|r| r.trigger_ref == trigger_ref && (!only_enabled || r.enabled))
                    .map(|r| r.id)
                    .collect()
            })
    }
}

type Shared = Arc<Mutex<FakeState>>;

/// The fake API. Dropping it stops the server.
pub struct FakeApi {
    url: String,
    state: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeApi {
    /// Starts the fake on 127.0.0.1 with an OS-chosen port.
    pub fn start(opts: FakeOptions) -> FakeApi {
        let mut state = FakeState {
            next_event_id: 1000,
            ..FakeState::default()
        };
        if let Some(t) = &opts.initial_token {
            state.valid_tokens.insert(t.clone());
            state.known_tokens.insert(t.clone());
        }
        state.opts = opts;
        let state: Shared = Arc::new(Mutex::new(state));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route("/health", get(health))
            .route("/api/v1/rules", get(list_rules))
            .route("/api/v1/events", post(create_event))
            .route("/auth/internal/sensor-token", post(sensor_token))
            .with_state(state.clone());
        let thread = std::thread::Builder::new()
            .name("fake-attune-api".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    tokio::select! {
                        r = axum::serve(listener, app) => { r.unwrap(); }
                        _ = stop_rx => {}
                    }
                });
                rt.shutdown_timeout(Duration::from_millis(200));
            })
            .unwrap();
        FakeApi {
            url,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The base URL (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    // --- rules ---

    /// Adds (or replaces) a rule; its ref is `test.rule_<id>`.
    pub fn add_rule(&self, id: i64, trigger_ref: &str, trigger_params: Value, enabled: bool) {
        self.with(|s| {
            s.rules_mut().insert(
                id,
                FakeRule {
                    id,
                    r#ref: format!("test.rule_{id}"),
                    trigger_ref: trigger_ref.to_string(),
                    trigger_params,
                    enabled,
                },
            )
        });
    }

    /// With `true`, from now on answers a listing page it has sent before with the same
    /// bytes, without building it again (until the rules change); `false` goes back to
    /// building every page. Failure injection, the token and scope checks and the recording
    /// of requests still apply. For the benches: it takes the fake's paging cost out of the
    /// daemon's measured start-up.
    pub fn render_listings_once(&self, on: bool) {
        self.with(|s| match on {
            true => {
                s.rendered.get_or_insert_with(HashMap::new);
            }
            false => s.rendered = None,
        });
    }

    /// Changes a rule's params and/or enabled flag; false when there is no such rule.
    pub fn update_rule(
        &self,
        id: i64,
        trigger_params: Option<Value>,
        enabled: Option<bool>,
    ) -> bool {
        self.with(|s| match s.rules_mut().get_mut(&id) {
            Some(rule) => {
                if let Some(p) = trigger_params {
                    rule.trigger_params = p;
                }
                if let Some(e) = enabled {
                    rule.enabled = e;
                }
                true
            }
            None => false,
        })
    }

    pub fn remove_rule(&self, id: i64) -> bool {
        self.with(|s| s.rules_mut().remove(&id).is_some())
    }

    pub fn clear_rules(&self) {
        self.with(|s| s.rules_mut().clear());
    }

    pub fn rules(&self) -> Vec<FakeRule> {
        self.with(|s| s.rules.values().cloned().collect())
    }

    // --- recordings ---

    /// Events created (successful posts only), in order.
    /// The `execution_count`s of the events received for rule `rule_id`, sorted.
    pub fn execution_counts(&self, rule_id: i64) -> Vec<u64> {
        let instance = format!("rule_{rule_id}");
        let mut counts: Vec<u64> = self
            .events()
            .iter()
            .filter(|e| e.body["trigger_instance_id"] == instance.as_str())
            .filter_map(|e| e.body["payload"]["execution_count"].as_u64())
            .collect();
        counts.sort_unstable();
        counts
    }

    pub fn events(&self) -> Vec<RecordedEvent> {
        self.with(|s| s.events.clone())
    }

    /// Takes the events created so far (the recording starts empty again) and forgets the
    /// recorded event posts, so a long run does not keep every body twice (the benchmark).
    pub fn drain_events(&self) -> Vec<RecordedEvent> {
        self.with(|s| {
            s.requests.retain(|r| r.path != "/api/v1/events");
            std::mem::take(&mut s.events)
        })
    }

    /// Every request answered, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.with(|s| s.requests.clone())
    }

    /// Requests to one path (e.g. `/api/v1/events`), whatever their outcome.
    pub fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        self.with(|s| {
            s.requests
                .iter()
                .filter(|r| r.path == path)
                .cloned()
                .collect()
        })
    }

    /// The most event posts the fake was answering at once.
    pub fn max_events_in_flight(&self) -> usize {
        self.with(|s| s.max_events_in_flight)
    }

    /// Successful token renewals.
    pub fn renewals(&self) -> usize {
        self.with(|s| s.renewals)
    }

    /// Tokens issued by renewals, oldest first.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.with(|s| s.issued.clone())
    }

    /// Waits (real time) until at least `n` events were created; returns them.
    pub async fn wait_for_events(&self, n: usize, within: Duration) -> Vec<RecordedEvent> {
        let deadline = Instant::now() + within;
        loop {
            let events = self.events();
            if events.len() >= n || Instant::now() >= deadline {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits (real time) until at least `n` requests reached `path`.
    pub async fn wait_for_requests(
        &self,
        path: &str,
        n: usize,
        within: Duration,
    ) -> Vec<RecordedRequest> {
        let deadline = Instant::now() + within;
        loop {
            let reqs = self.requests_to(path);
            if reqs.len() >= n || Instant::now() >= deadline {
                return reqs;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    // --- failure injection and behaviour ---

    /// The next `n` event posts answer `status` (with a JSON error body) and create nothing.
    pub fn fail_next_events(&self, n: usize, status: u16) {
        self.with(|s| s.event_failures.extend(std::iter::repeat_n(status, n)));
    }

    /// Event posts succeed again (the failures queued by `fail_next_events` are dropped).
    pub fn clear_event_failures(&self) {
        self.with(|s| s.event_failures.clear());
    }

    /// The next `n` rule listings answer `status`.
    pub fn fail_next_rule_lists(&self, n: usize, status: u16) {
        self.with(|s| s.rule_list_failures.extend(std::iter::repeat_n(status, n)));
    }

    /// The next `n` token renewals answer `status`.
    pub fn fail_next_renewals(&self, n: usize, status: u16) {
        self.with(|s| s.renewal_failures.extend(std::iter::repeat_n(status, n)));
    }

    /// `Retry-After` (seconds) on injected 429/503 answers.
    pub fn set_retry_after(&self, secs: Option<u64>) {
        self.with(|s| s.retry_after = secs);
    }

    /// Event posts wait this long before answering.
    pub fn set_event_delay(&self, delay: Duration) {
        self.with(|s| s.event_delay = delay);
    }

    pub fn set_health_status(&self, status: u16) {
        self.with(|s| s.opts.health_status = status);
    }

    /// Starts enforcing tokens (if not already) and makes every token given so far invalid
    /// for rules and events; they can still be renewed.
    pub fn revoke_all_tokens(&self) {
        self.with(|s| {
            if s.opts.initial_token.is_none() {
                s.opts.initial_token = Some(String::new());
            }
            s.valid_tokens.clear();
        });
    }

    pub fn set_issued_trigger_types(&self, types: Option<Vec<String>>) {
        self.with(|s| s.opts.issued_trigger_types = types);
    }

    pub fn set_issued_token_ttl(&self, secs: i64) {
        self.with(|s| s.opts.issued_token_ttl_secs = secs);
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// --- handlers ---

fn bearer(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let header = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let token = header
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::to_string);
    (header, token)
}

fn parse_query(raw: &Option<String>) -> Vec<(String, String)> {
    raw.as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn json_response(status: u16, body: Value) -> Response {
    let mut resp = (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response();
    resp.headers_mut()
        .insert("x-fake", HeaderValue::from_static("attune"));
    resp
}

/// A JSON body already rendered.
fn bytes_response(status: u16, body: Bytes) -> Response {
    let mut resp = (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body,
    )
        .into_response();
    resp.headers_mut()
        .insert("x-fake", HeaderValue::from_static("attune"));
    resp
}

fn api_error(status: u16, message: &str) -> Response {
    let code = match status {
        400 => "BAD_REQUEST",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        422 => "UNPROCESSABLE_ENTITY",
        429 => "TOO_MANY_REQUESTS",
        503 => "SERVICE_UNAVAILABLE",
        _ => "INTERNAL_SERVER_ERROR",
    };
    json_response(status, json!({"error": message, "code": code}))
}

fn injected(status: u16, retry_after: Option<u64>) -> Response {
    let mut resp = api_error(
        status,
        "injected failure (the body must never be logged: SECRET-BODY)",
    );
    if let (Some(secs), 429 | 503) = (retry_after, status) {
        resp.headers_mut().insert(
            "retry-after",
            HeaderValue::from_str(&secs.to_string()).unwrap(),
        );
    }
    resp
}

/// The auth check of resource endpoints. `Err` is the 401 to send.
#[allow(clippy::result_large_err)]
fn check_auth(s: &mut FakeState, token: Option<&str>) -> Result<Option<Vec<String>>, Response> {
    let unauthorized = |m: &str| json_response(401, json!({"error": {"code": 401, "message": m}}));
    let Some(token) = token else {
        return Err(unauthorized("Missing authentication token"));
    };
    let claims = jwt_payload(token);
    if let Some(exp) = claims.as_ref().and_then(|c| c["exp"].as_i64()) {
        if exp <= now_unix() {
            return Err(unauthorized("Authentication token expired"));
        }
    }
    if s.opts.initial_token.is_some() && !s.valid_tokens.contains(token) {
        return Err(unauthorized("Invalid authentication token"));
    }
    // Not enforcing yet: remember the token, so that it can still be renewed after
    // `revoke_all_tokens`.
    s.known_tokens.insert(token.to_string());
    let scope = claims.and_then(|c| {
        c["metadata"]["trigger_types"].as_array().map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
    });
    Ok(scope)
}

fn record(
    s: &mut FakeState,
    method: &str,
    path: &str,
    query: Vec<(String, String)>,
    auth: Option<String>,
    body: Option<Value>,
    status: u16,
) {
    s.requests.push(RecordedRequest {
        method: method.into(),
        path: path.into(),
        query,
        auth_header: auth,
        body,
        status,
        received_at: Instant::now(),
    });
}

async fn health(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let mut s = state.lock().unwrap();
    let status = s.opts.health_status;
    let (auth, _) = bearer(&headers);
    record(&mut s, "GET", "/health", vec![], auth, None, status);
    if (200..300).contains(&status) {
        json_response(status, json!({"status": "ok"}))
    } else {
        json_response(status, json!({"status": "unavailable"}))
    }
}

async fn list_rules(
    State(state): State<Shared>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let mut s = state.lock().unwrap();
    let query = parse_query(&raw);
    let (auth, token) = bearer(&headers);
    let q = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let (status, resp) = 'answer: {
        if let Some(status) = s.rule_list_failures.pop_front() {
            break 'answer (status, injected(status, s.retry_after));
        }
        let scope = match check_auth(&mut s, token.as_deref()) {
            Ok(scope) => scope,
            Err(resp) => break 'answer (401, resp),
        };
        let Some(trigger_ref) = q("trigger_ref") else {
            break 'answer (403, api_error(403, "Sensor tokens can only list rules by explicit trigger_ref. Use /api/v1/rules?trigger_ref=<allowed_trigger_ref> or /api/v1/triggers/{trigger_ref}/rules."));
        };
        if let Some(allowed) = &scope {
            if !allowed.contains(&trigger_ref) {
                let list = if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                };
                let msg = format!("Sensor token is not allowed to list rules for trigger '{trigger_ref}'. Allowed trigger_refs: {list}");
                break 'answer (403, api_error(403, &msg));
            }
        }
        let only_enabled = q("enabled").as_deref() == Some("true") && !s.opts.ignore_enabled_filter;
        let page: usize = q("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
        let page_size: usize = q("page_size")
            .and_then(|p| p.parse().ok())
            .unwrap_or(50)
            .clamp(1, 100);
        let key = (trigger_ref.clone(), only_enabled, page, page_size);
        if let Some(body) = s.rendered.as_ref().and_then(|r| r.get(&key)) {
            break 'answer (200, bytes_response(200, body.clone()));
        }
        let ids = s.listing(&trigger_ref, only_enabled);
        let total = ids.len();
        let total_pages = total.div_ceil(page_size);
        let start = (page - 1).saturating_mul(page_size).min(total);
        let end = start.saturating_add(page_size).min(total);
        let page_ids = ids[start..end].to_vec();
        let items: Vec<Value> = page_ids.iter().map(|id| s.rules[id].to_json()).collect();
        let mut body = json!({
            "items": items,
            "pagination": {
                "page": page, "page_size": page_size, "total_items": total, "total_pages": total_pages,
                "has_previous": page > 1, "has_next": page < total_pages,
            }
        });
        if s.opts.omit_page_count {
            let pagination = body["pagination"].as_object_mut().expect("an object");
            pagination.remove("total_items");
            pagination.remove("total_pages");
        }
        let body = Bytes::from(body.to_string());
        if let Some(rendered) = s.rendered.as_mut() {
            rendered.insert(key, body.clone());
        }
        (200, bytes_response(200, body))
    };
    record(&mut s, "GET", "/api/v1/rules", query, auth, None, status);
    resp
}

/// Counts event posts in flight while alive.
struct InFlight(Shared);

impl InFlight {
    fn new(state: &Shared) -> InFlight {
        let mut s = state.lock().unwrap();
        s.events_in_flight += 1;
        s.max_events_in_flight = s.max_events_in_flight.max(s.events_in_flight);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lock().unwrap().events_in_flight -= 1;
    }
}

async fn create_event(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let _in_flight = InFlight::new(&state);
    let delay = state.lock().unwrap().event_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut s = state.lock().unwrap();
    let (auth, token) = bearer(&headers);
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let (status, resp) = 'answer: {
        if let Some(status) = s.event_failures.pop_front() {
            break 'answer (status, injected(status, s.retry_after));
        }
        let scope = match check_auth(&mut s, token.as_deref()) {
            Ok(scope) => scope,
            Err(resp) => break 'answer (401, resp),
        };
        let Some(body) = parsed.clone() else {
            break 'answer (400, api_error(400, "Invalid JSON body"));
        };
        let trigger_ref = body["trigger_ref"].as_str().unwrap_or("").to_string();
        if trigger_ref.is_empty() {
            break 'answer (
                422,
                api_error(422, "Invalid event request: trigger_ref: length"),
            );
        }
        if let Some(allowed) = &scope {
            if !allowed.contains(&trigger_ref) {
                break 'answer (
                    403,
                    json_response(
                        403,
                        json!({"error": {"code": 403, "message": "Insufficient permissions"}}),
                    ),
                );
            }
        }
        let instance = body["trigger_instance_id"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let rule_id = instance
            .strip_prefix("rule_")
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n > 0);
        if s.opts.strict_events {
            let Some(rule_id) = rule_id else {
                let msg = format!(
                    "Invalid trigger_instance_id '{instance}': expected rule_<positive numeric id>"
                );
                break 'answer (400, api_error(400, &msg));
            };
            match s.rules.get(&rule_id) {
                None => {
                    let msg =
                        format!("trigger_instance_id '{instance}' references a nonexistent rule");
                    break 'answer (400, api_error(400, &msg));
                }
                Some(r) if r.trigger_ref != trigger_ref => {
                    let msg = format!("trigger_instance_id '{instance}' references a rule for a different trigger");
                    break 'answer (400, api_error(400, &msg));
                }
                Some(_) => {}
            }
        }
        let id = s.next_event_id;
        s.next_event_id += 1;
        s.events.push(RecordedEvent {
            id,
            body: body.clone(),
            auth_header: auth.clone(),
            received_at: Instant::now(),
        });
        let data = json!({
            "id": id, "trigger": 1, "trigger_ref": trigger_ref, "config": null,
            "payload": body["payload"], "source": 7, "source_ref": "core.timer_sensor",
            "rule": rule_id, "rule_ref": rule_id.map(|r| format!("test.rule_{r}")),
            "created": "2026-01-01T00:00:00Z",
        });
        (201, json_response(201, json!({"data": data})))
    };
    record(
        &mut s,
        "POST",
        "/api/v1/events",
        vec![],
        auth,
        parsed,
        status,
    );
    resp
}

async fn sensor_token(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut s = state.lock().unwrap();
    let (auth, token) = bearer(&headers);
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let (status, resp) = 'answer: {
        if let Some(status) = s.renewal_failures.pop_front() {
            break 'answer (status, injected(status, s.retry_after));
        }
        let unauthorized =
            |m: &str| json_response(401, json!({"error": {"code": 401, "message": m}}));
        let Some(token) = token else {
            break 'answer (401, unauthorized("Missing authentication token"));
        };
        let claims = jwt_payload(&token);
        if claims
            .as_ref()
            .and_then(|c| c["exp"].as_i64())
            .is_some_and(|exp| exp <= now_unix())
        {
            break 'answer (401, unauthorized("Authentication token expired"));
        }
        if s.opts.initial_token.is_some() && !s.known_tokens.contains(&token) {
            break 'answer (401, unauthorized("Invalid authentication token"));
        }
        let types: Option<Vec<String>> = s.opts.issued_trigger_types.clone().or_else(|| {
            claims.and_then(|c| {
                c["metadata"]["trigger_types"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
            })
        });
        let now = now_unix();
        let exp = now + s.opts.issued_token_ttl_secs;
        s.renewals += 1;
        let new_token = make_jwt_with(exp, now, types.as_deref(), s.renewals as u64);
        s.valid_tokens.insert(new_token.clone());
        s.known_tokens.insert(new_token.clone());
        s.issued.push(new_token.clone());
        let expires_at = chrono::DateTime::from_timestamp(exp, 0)
            .unwrap()
            .to_rfc3339();
        let data = json!({
            "identity_id": 42, "sensor_ref": "core.timer_sensor", "pack_ref": "core",
            "token": new_token, "expires_at": expires_at, "trigger_types": types.unwrap_or_default(),
            "permission_set_refs": [], "workload_fence": null,
        });
        (200, json_response(200, json!({"data": data})))
    };
    record(
        &mut s,
        "POST",
        "/auth/internal/sensor-token",
        vec![],
        auth,
        parsed,
        status,
    );
    resp
}
