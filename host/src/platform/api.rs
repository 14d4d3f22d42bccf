//! The Attune API client (docs/platform.md §1.2–§1.3(d), §1.8, §1.9, §2): health, the rules
//! listing, event creation and token renewal.
//!
//! One `reqwest` client (rustls, keep-alive, a request timeout — 30 s by default — and no
//! redirects, so the token never follows one) is shared by every clone. The token lives in a
//! [`TokenHandle`]; a 401 on the rules listing or on event creation, while the token has not
//! expired, renews it once and retries once. Errors and logs name the API's origin only —
//! never a token, a path, a query or a response body.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use futures_util::future::BoxFuture;

use super::token::{unix_now, TokenHandle};
use crate::component::Rule;
use crate::schedule::Event;
use crate::schedule::RuleSource;
use crate::support::redact::{json_error_detail, url_for_log};
use crate::telemetry::{Endpoint, Metrics, StatusClass};

/// The platform's client timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Page size of the rules listing (the API's maximum).
pub const RULES_PAGE_SIZE: u32 = 100;
/// Stop following `has_next` after this many pages (1,000,000 rules).
const MAX_RULE_PAGES: u32 = 10_000;
/// Rules pages requested at once when the listing gives its page count: 100,000 rules are
/// 1,000 pages, and one at a time their round trips add up to most of a second.
const PAGES_IN_FLIGHT: usize = 4;

/// One rule from `GET /api/v1/rules` (the five fields the sensor needs; others ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RuleRecord {
    pub id: i64,
    pub r#ref: String,
    pub trigger_ref: String,
    pub trigger_params: Value,
    pub enabled: bool,
}

/// A failed API call. `Display` names the operation and the API's origin, never a token, a
/// path, a query or a response body.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The API URL is unusable.
    #[error("Invalid Attune API URL: {0}")]
    InvalidUrl(&'static str),
    /// The HTTP client could not be built.
    #[error("Failed to build the HTTP client: {0}")]
    Client(String),
    /// No response: connection refused or reset, DNS, TLS, or the request timed out.
    #[error("Failed to {operation} at {origin}: {detail}")]
    Transport {
        operation: String,
        origin: String,
        detail: String,
        timeout: bool,
        connect: bool,
    },
    /// A non-success status.
    #[error("Failed to {operation} at {origin}: {}", status_text(*status))]
    Status {
        operation: String,
        origin: String,
        status: u16,
        /// `Retry-After` (seconds form) on a 429 or 503.
        retry_after: Option<Duration>,
    },
    /// 403 on event creation.
    #[error("Insufficient permissions to create event for trigger type '{trigger_ref}' (at {origin}); this sensor token may not be authorized for this trigger type")]
    Forbidden { origin: String, trigger_ref: String },
    /// 401 that was not (or could not be) cured by renewing the token.
    #[error("Failed to {operation} at {origin}: 401 Unauthorized ({reason})")]
    Unauthorized {
        operation: String,
        origin: String,
        reason: String,
    },
    /// A success status with a body that is not what the contract says.
    #[error("Failed to {operation} at {origin}: unexpected response body ({detail})")]
    Decode {
        operation: String,
        origin: String,
        detail: String,
    },
}

fn status_text(status: u16) -> String {
    match StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

impl ApiError {
    /// The HTTP status behind the error, if there was a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            ApiError::Forbidden { .. } => Some(403),
            ApiError::Unauthorized { .. } => Some(401),
            _ => None,
        }
    }

    /// Worth retrying: no response (connect error, timeout, reset), 5xx, 429 or 408.
    /// Never 400/401/403/404/422 nor a malformed success.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Transport { .. } => true,
            ApiError::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            _ => false,
        }
    }

    /// The server's `Retry-After`, when it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// How the request ended, for the metrics: the answer's status class, or why there was
    /// none.
    pub fn status_class(&self) -> StatusClass {
        match (self.status(), self) {
            (Some(status), _) => StatusClass::of_status(status),
            (None, ApiError::Transport { timeout: true, .. }) => StatusClass::Timeout,
            (None, ApiError::Transport { .. }) => StatusClass::Connection,
            // A malformed success.
            (None, ApiError::Decode { .. }) => StatusClass::Success,
            (None, _) => StatusClass::None,
        }
    }

    /// The request timed out (it may have reached the server).
    pub fn is_timeout(&self) -> bool {
        matches!(self, ApiError::Transport { timeout: true, .. })
    }
}

#[derive(Deserialize)]
struct RulesPage {
    #[serde(alias = "data")]
    items: Vec<RuleRecord>,
    #[serde(default)]
    pagination: Option<Pagination>,
}

#[derive(Deserialize)]
struct Pagination {
    #[serde(default)]
    has_next: bool,
    /// Rules listings always give it (docs/platform.md §2.3); it lets the pages after the first be
    /// fetched several at a time.
    #[serde(default)]
    total_pages: Option<u32>,
}

/// Enabled rules in listing order; a rule listed twice (it moved between pages while they
/// were read) keeps its first place and its last record.
#[derive(Default)]
struct RuleSet {
    rules: Vec<RuleRecord>,
    index: std::collections::HashMap<i64, usize>,
}

impl RuleSet {
    fn add(&mut self, records: Vec<RuleRecord>) {
        for rule in records.into_iter().filter(|r| r.enabled) {
            match self.index.get(&rule.id) {
                Some(&i) => self.rules[i] = rule,
                None => {
                    self.index.insert(rule.id, self.rules.len());
                    self.rules.push(rule);
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct DataEnvelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct CreatedEvent {
    id: i64,
}

#[derive(Deserialize)]
struct IssuedToken {
    token: String,
    #[serde(default)]
    expires_at: Option<String>,
}

struct Inner {
    http: reqwest::Client,
    /// The API URL without a trailing `/` (it may have a path prefix).
    base: String,
    origin: String,
    token: TokenHandle,
    /// Where requests are timed; the outbox and the transports count into it too.
    metrics: Metrics,
    /// Serialises renewals so that concurrent 401s renew once.
    renew_lock: tokio::sync::Mutex<()>,
}

/// The Attune API client. Clones share the connection pool and the token.
#[derive(Clone)]
pub struct ApiClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("origin", &self.inner.origin)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client for the API at `api_url` (trailing `/` trimmed), with `token` and a per-request
    /// timeout.
    pub fn new(
        api_url: &str,
        token: TokenHandle,
        request_timeout: Duration,
    ) -> Result<ApiClient, ApiError> {
        Self::with_metrics(api_url, token, request_timeout, Metrics::default())
    }

    /// [`new`](Self::new), counting into `metrics`: its requests, and (through
    /// [`ApiClient::metrics`]) what the outbox and the lifecycle transports count.
    pub fn with_metrics(
        api_url: &str,
        token: TokenHandle,
        request_timeout: Duration,
        metrics: Metrics,
    ) -> Result<ApiClient, ApiError> {
        let base = api_url.trim().trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&base).map_err(|_| ApiError::InvalidUrl("not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ApiError::InvalidUrl("the scheme must be http or https"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(ApiError::InvalidUrl("it has no host"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(ApiError::InvalidUrl("it must not have a query or fragment"));
        }
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(request_timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(60))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "attune-core-timer-sensor/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| ApiError::Client(error_chain(&e.without_url())))?;
        Ok(ApiClient {
            inner: Arc::new(Inner {
                http,
                origin: url_for_log(&base),
                base,
                token,
                metrics,
                renew_lock: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The API's origin (`scheme://host[:port]`), the only part of its URL that is logged.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// The token this client sends.
    pub fn token(&self) -> &TokenHandle {
        &self.inner.token
    }

    /// The metrics this client and its users count into.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Sends a request and times it, by endpoint and how it ended.
    async fn send(
        &self,
        endpoint: Endpoint,
        request: RequestBuilder,
    ) -> Result<Response, reqwest::Error> {
        let started = std::time::Instant::now();
        let result = request.send().await;
        let class = match &result {
            Ok(resp) => StatusClass::of_status(resp.status().as_u16()),
            Err(e) if e.is_timeout() => StatusClass::Timeout,
            Err(_) => StatusClass::Connection,
        };
        self.inner
            .metrics
            .api_request(endpoint, class, started.elapsed());
        result
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.inner.base, path)
    }

    fn transport_error(&self, operation: &str, e: reqwest::Error) -> ApiError {
        let timeout = e.is_timeout();
        let connect = e.is_connect();
        let detail = if timeout {
            "the request timed out".to_string()
        } else {
            error_chain(&e.without_url())
        };
        ApiError::Transport {
            operation: operation.to_string(),
            origin: self.inner.origin.clone(),
            detail,
            timeout,
            connect,
        }
    }

    /// The body of a successful response as JSON; a status error otherwise. Neither the
    /// body nor the token is quoted in an error.
    async fn success_json<T: serde::de::DeserializeOwned>(
        &self,
        operation: &str,
        resp: Response,
    ) -> Result<T, ApiError> {
        if !resp.status().is_success() {
            return Err(self.status_error(operation, &resp));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(operation, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| self.decode_error(operation, json_error_detail(&e).0))
    }

    fn status_error(&self, operation: &str, resp: &Response) -> ApiError {
        let status = resp.status().as_u16();
        let retry_after = if status == 429 || status == 503 {
            resp.headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
        } else {
            None
        };
        ApiError::Status {
            operation: operation.to_string(),
            origin: self.inner.origin.clone(),
            status,
            retry_after,
        }
    }

    fn decode_error(&self, operation: &str, detail: String) -> ApiError {
        ApiError::Decode {
            operation: operation.to_string(),
            origin: self.inner.origin.clone(),
            detail,
        }
    }

    /// `GET {api}/health`, without auth. Any 2xx is healthy.
    pub async fn health(&self) -> Result<(), ApiError> {
        const OP: &str = "check API health";
        let resp = self
            .send(Endpoint::Health, self.inner.http.get(self.url("/health")))
            .await
            .map_err(|e| self.transport_error(OP, e))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.status_error(OP, &resp))
        }
    }

    /// Sends a Bearer request; on a 401 with a token that has not expired, renews the token
    /// once and sends the request once more. Returns whatever response came last.
    async fn send_authed(
        &self,
        endpoint: Endpoint,
        operation: &str,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response, ApiError> {
        let generation = self.inner.token.generation();
        let resp = self
            .send(endpoint, make().bearer_auth(self.inner.token.current()))
            .await
            .map_err(|e| self.transport_error(operation, e))?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        drop(resp);
        let unauthorized = |reason: String| ApiError::Unauthorized {
            operation: operation.to_string(),
            origin: self.inner.origin.clone(),
            reason,
        };
        let token = &self.inner.token;
        if token.generation() == generation && !token.is_unexpired_at(unix_now()) {
            let reason = if token.expires_at().is_some() {
                "Token expired; not renewing it"
            } else {
                "the token's expiry is unknown; not renewing it"
            };
            return Err(unauthorized(reason.to_string()));
        }
        tracing::info!(api = %self.inner.origin, "API answered 401 Unauthorized; renewing the sensor token and retrying once");
        self.renew_unless_renewed_since(generation)
            .await
            .map_err(|e| unauthorized(format!("token renewal failed: {e}")))?;
        let resp = self
            .send(endpoint, make().bearer_auth(self.inner.token.current()))
            .await
            .map_err(|e| self.transport_error(operation, e))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(unauthorized(
                "still refused after renewing the token".into(),
            ));
        }
        Ok(resp)
    }

    /// Renews the token unless someone else already replaced the one of `generation`.
    async fn renew_unless_renewed_since(&self, generation: u64) -> Result<(), ApiError> {
        let _guard = self.inner.renew_lock.lock().await;
        if self.inner.token.generation() != generation {
            return Ok(());
        }
        self.renew_locked().await
    }

    /// `GET {api}/api/v1/rules?trigger_ref=<ref>&enabled=true&page=N&page_size=100` for every
    /// page (`pagination.has_next`); returns the enabled rules (disabled ones are dropped
    /// here too), each rule id once.
    pub async fn list_active_rules(&self, trigger_ref: &str) -> Result<Vec<RuleRecord>, ApiError> {
        use futures_util::{StreamExt, TryStreamExt};
        let operation = format!("list rules for trigger '{trigger_ref}'");
        let mut rules = RuleSet::default();
        let first = self.rules_page(&operation, trigger_ref, 1).await?;
        let pagination = first.pagination.as_ref();
        let has_next = pagination.is_some_and(|p| p.has_next);
        let total = pagination.and_then(|p| p.total_pages);
        let first_empty = first.items.is_empty();
        rules.add(first.items);
        match total {
            // The page count is known: the rest, a few at a time, merged in page order.
            Some(total) if has_next => {
                if total > MAX_RULE_PAGES {
                    return Err(self.decode_error(
                        &operation,
                        format!("pagination.total_pages is {total}, over {MAX_RULE_PAGES}"),
                    ));
                }
                let mut pages = futures_util::stream::iter(2..=total)
                    .map(|page| self.rules_page(&operation, trigger_ref, page))
                    .buffered(PAGES_IN_FLIGHT);
                while let Some(page) = pages.try_next().await? {
                    rules.add(page.items);
                }
            }
            // Otherwise one after the other, while `has_next`.
            _ => {
                let mut has_next = has_next;
                let mut page = 1;
                if has_next && first_empty {
                    return Err(self.decode_error(
                        &operation,
                        "pagination.has_next stayed true through page 1".to_string(),
                    ));
                }
                while has_next {
                    if page >= MAX_RULE_PAGES {
                        return Err(self.decode_error(
                            &operation,
                            format!("pagination.has_next stayed true through page {page}"),
                        ));
                    }
                    page += 1;
                    let next = self.rules_page(&operation, trigger_ref, page).await?;
                    has_next = next.pagination.is_some_and(|p| p.has_next);
                    if next.items.is_empty() && has_next {
                        return Err(self.decode_error(
                            &operation,
                            format!("pagination.has_next stayed true through page {page}"),
                        ));
                    }
                    rules.add(next.items);
                }
            }
        }
        Ok(rules.rules)
    }

    /// One page of the rules listing.
    async fn rules_page(
        &self,
        operation: &str,
        trigger_ref: &str,
        page: u32,
    ) -> Result<RulesPage, ApiError> {
        let url = self.url("/api/v1/rules");
        let page_s = page.to_string();
        let size_s = RULES_PAGE_SIZE.to_string();
        let resp = self
            .send_authed(Endpoint::Rules, operation, || {
                self.inner.http.request(Method::GET, &url).query(&[
                    ("trigger_ref", trigger_ref),
                    ("enabled", "true"),
                    ("page", page_s.as_str()),
                    ("page_size", size_s.as_str()),
                ])
            })
            .await?;
        let parsed: RulesPage = self.success_json(operation, resp).await?;
        tracing::debug!(
            trigger_ref,
            page,
            rules = parsed.items.len(),
            has_next = parsed.pagination.as_ref().is_some_and(|p| p.has_next),
            "Fetched rules page"
        );
        Ok(parsed)
    }

    /// `POST {api}/api/v1/events` with [`Event::body`]: one attempt (plus the 401 renewal and
    /// retry). Any 2xx is success and returns `data.id` (0 when a 2xx body lacks it: the event
    /// exists, its id is unknown). Retrying is the outbox's job.
    pub async fn create_event(&self, event: &Event) -> Result<i64, ApiError> {
        // Not "create event": `Failed to create event` is the line operators alert on, and
        // it must mean an event was lost, not that one attempt failed.
        const OP: &str = "deliver event";
        let url = self.url("/api/v1/events");
        let body = event.body();
        let resp = self
            .send_authed(Endpoint::Events, OP, || {
                self.inner
                    .http
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await?;
        let status = resp.status();
        if status == StatusCode::FORBIDDEN {
            return Err(ApiError::Forbidden {
                origin: self.inner.origin.clone(),
                trigger_ref: event.trigger_ref.to_string(),
            });
        }
        if !status.is_success() {
            return Err(self.status_error(OP, &resp));
        }
        // Created: from here on nothing may turn into a retry (it would duplicate the event).
        let id = match resp.bytes().await {
            Ok(bytes) => serde_json::from_slice::<DataEnvelope<CreatedEvent>>(&bytes)
                .map(|d| d.data.id)
                .ok(),
            Err(_) => None,
        };
        match id {
            Some(id) => Ok(id),
            None => {
                tracing::warn!(
                    rule_id = event.rule_id,
                    status = status.as_u16(),
                    "Event created but the response carried no data.id"
                );
                Ok(0)
            }
        }
    }

    /// `POST {api}/auth/internal/sensor-token` with the current token and `{}`; swaps in the
    /// token from `data.token`.
    pub async fn renew_token(&self) -> Result<(), ApiError> {
        let _guard = self.inner.renew_lock.lock().await;
        self.renew_locked().await
    }

    async fn renew_locked(&self) -> Result<(), ApiError> {
        const OP: &str = "refresh sensor token";
        let request = self
            .inner
            .http
            .post(self.url("/auth/internal/sensor-token"))
            .bearer_auth(self.inner.token.current())
            .json(&serde_json::json!({}));
        let resp = self
            .send(Endpoint::Token, request)
            .await
            .map_err(|e| self.transport_error(OP, e))?;
        let issued: DataEnvelope<IssuedToken> = self.success_json(OP, resp).await?;
        let token = issued.data.token.trim().to_string();
        if token.is_empty() || token.chars().any(|c| c.is_control() || c == ' ') {
            return Err(self.decode_error(OP, "data.token is empty or malformed".into()));
        }
        self.inner.token.replace(token);
        tracing::info!(
            api = %self.inner.origin,
            expires_at = issued.data.expires_at.as_deref().unwrap_or("unknown"),
            "Sensor token renewed"
        );
        Ok(())
    }
}

/// An error and its sources, joined with `: ` (for errors that carry no URL).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// The active rules, from the Attune API's rules listing (`docs/platform.md` §1.3).
#[derive(Debug, Clone)]
pub struct ApiRules {
    api: ApiClient,
}

impl ApiRules {
    pub fn new(api: ApiClient) -> Self {
        Self { api }
    }
}

impl RuleSource for ApiRules {
    fn active_rules<'a>(
        &'a self,
        trigger_refs: &'a [String],
    ) -> BoxFuture<'a, anyhow::Result<Vec<Rule>>> {
        Box::pin(async move {
            let mut rules = Vec::new();
            for trigger_ref in trigger_refs {
                let listed = self.api.list_active_rules(trigger_ref).await?;
                rules.extend(listed.into_iter().filter(|r| r.enabled).map(|r| Rule {
                    id: r.id,
                    r#ref: r.r#ref,
                    trigger_ref: Rule::given_trigger_ref(Some(r.trigger_ref)),
                    trigger_params: r.trigger_params,
                }));
            }
            Ok(rules)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_statuses() {
        let status = |s: u16| ApiError::Status {
            operation: "create event".into(),
            origin: "http://h".into(),
            status: s,
            retry_after: None,
        };
        for s in [500, 502, 503, 504, 429, 408] {
            assert!(status(s).is_transient(), "{s}");
        }
        for s in [400, 401, 404, 409, 422] {
            assert!(!status(s).is_transient(), "{s}");
        }
        assert_eq!(
            status(503).to_string(),
            "Failed to create event at http://h: 503 Service Unavailable"
        );
        let forbidden = ApiError::Forbidden {
            origin: "http://h".into(),
            trigger_ref: "core.crontimer".into(),
        };
        assert!(!forbidden.is_transient());
        assert!(forbidden.to_string().contains(
            "Insufficient permissions to create event for trigger type 'core.crontimer'"
        ));
    }

    #[test]
    fn base_url_is_trimmed_and_checked() {
        let token = TokenHandle::new("t");
        let c = ApiClient::new(
            "http://127.0.0.1:9/base//",
            token.clone(),
            DEFAULT_REQUEST_TIMEOUT,
        )
        .unwrap();
        assert_eq!(c.url("/health"), "http://127.0.0.1:9/base/health");
        assert_eq!(c.origin(), "http://127.0.0.1:9");
        assert!(ApiClient::new("ftp://h", token.clone(), DEFAULT_REQUEST_TIMEOUT).is_err());
        assert!(ApiClient::new("http://h/?q=1", token, DEFAULT_REQUEST_TIMEOUT).is_err());
    }
}
