//! The sensor token: held in memory behind a lock and swapped when renewed, its claims read
//! (unverified) for expiry and trigger scope, and the loop that renews it (contract §1.9).
//!
//! Renewal: at 80 % of the token's lifetime (`iat + floor(0.8 × (exp − iat))`) the loop
//! calls `POST /auth/internal/sensor-token` and swaps the new token in; nothing is
//! interrupted, later requests just use it. On failure it keeps the old token and tries
//! again after 60 s, doubling up to 1 h (never sleeping past the expiry). A token whose
//! expiry can't be read is not renewed. An expired token is not renewed either (the API
//! refuses it): the loop logs `Token expired` and the sensor needs a new token.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::api::{ApiClient, ApiError};

/// Renew at this fraction of the lifetime.
pub const RENEW_AT_FRACTION: f64 = 0.8;
/// First retry delay after a failed renewal; doubles per failure.
pub const RETRY_INITIAL: Duration = Duration::from_secs(60);
/// Longest retry delay, and longest sleep between checks.
pub const RETRY_MAX: Duration = Duration::from_secs(3600);
/// Without `iat`, renew this long before `exp`.
const RENEW_BEFORE_EXP_WITHOUT_IAT: i64 = 3600;

/// The claims the sensor reads from its token (decoded without verifying the signature).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Claims {
    pub exp: Option<i64>,
    pub iat: Option<i64>,
    pub sub: Option<String>,
    /// `metadata.trigger_types`, as given (not yet trimmed or de-duplicated); `None` when the
    /// token carries no such list.
    pub trigger_types: Option<Vec<String>>,
}

/// Why a token's claims couldn't be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("Invalid JWT format: expected 3 parts")]
    Format,
    #[error("Invalid JWT payload: not base64")]
    Base64,
    #[error("Invalid JWT payload: not a JSON object")]
    Json,
}

/// The token scope allows none of the trigger refs this sensor handles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Sensor token scope does not allow any lifecycle trigger refs supported by this sensor ({allowed:?})")]
pub struct ScopeError {
    /// The token's `metadata.trigger_types` (trimmed, sorted, de-duplicated).
    pub allowed: Vec<String>,
}

/// Decodes a JWT's payload without verifying it: base64url without padding, falling back to
/// standard base64 (with or without padding).
pub fn decode_claims(token: &str) -> Result<Claims, TokenError> {
    let parts: Vec<&str> = token.trim().split('.').collect();
    if parts.len() != 3 {
        return Err(TokenError::Format);
    }
    let payload = parts[1];
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(payload))
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(payload))
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(payload))
        .map_err(|_| TokenError::Base64)?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| TokenError::Json)?;
    let obj = value.as_object().ok_or(TokenError::Json)?;
    let int = |key: &str| {
        obj.get(key).and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
        })
    };
    let trigger_types = obj
        .get("metadata")
        .and_then(|m| m.get("trigger_types"))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        });
    Ok(Claims {
        exp: int("exp"),
        iat: int("iat"),
        sub: obj.get("sub").and_then(Value::as_str).map(str::to_string),
        trigger_types,
    })
}

/// The trigger refs this sensor may serve: the token's `metadata.trigger_types` ∩ `handled`,
/// in `handled`'s order. All of `handled` when the token has no such list or can't be
/// decoded; an error when the intersection is empty.
pub fn trigger_scope(token: &str, handled: &[String]) -> Result<Vec<String>, ScopeError> {
    let Some(types) = decode_claims(token).ok().and_then(|c| c.trigger_types) else {
        return Ok(handled.to_vec());
    };
    let mut allowed: Vec<String> = types
        .iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    allowed.sort();
    allowed.dedup();
    let mut scope: Vec<String> = Vec::new();
    for r in handled {
        if allowed.binary_search(r).is_ok() && !scope.contains(r) {
            scope.push(r.clone());
        }
    }
    if scope.is_empty() {
        Err(ScopeError { allowed })
    } else {
        Ok(scope)
    }
}

/// The current Unix time in seconds (wall clock).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

struct TokenState {
    token: String,
    claims: Option<Claims>,
    generation: u64,
}

/// The current sensor token: cheap to clone, shared by the API client and the renewal loop.
/// `Debug` never shows the token.
#[derive(Clone)]
pub struct TokenHandle {
    inner: Arc<RwLock<TokenState>>,
}

impl fmt::Debug for TokenHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.read();
        f.debug_struct("TokenHandle")
            .field("token", &"<redacted>")
            .field("exp", &state.claims.as_ref().and_then(|c| c.exp))
            .field("generation", &state.generation)
            .finish()
    }
}

impl TokenHandle {
    pub fn new(token: impl Into<String>) -> TokenHandle {
        let token = token.into();
        let claims = decode_claims(&token).ok();
        TokenHandle {
            inner: Arc::new(RwLock::new(TokenState {
                token,
                claims,
                generation: 0,
            })),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, TokenState> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The token to send now.
    pub fn current(&self) -> String {
        self.read().token.clone()
    }

    /// The current token's claims; `None` when it is not a readable JWT.
    pub fn claims(&self) -> Option<Claims> {
        self.read().claims.clone()
    }

    /// The current token's `exp`, when known.
    pub fn expires_at(&self) -> Option<i64> {
        self.read().claims.as_ref().and_then(|c| c.exp)
    }

    /// Increases on every [`TokenHandle::replace`]; tells whether a token is still current.
    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    /// Swaps in a new token.
    pub fn replace(&self, token: impl Into<String>) {
        let token = token.into();
        let claims = decode_claims(&token).ok();
        let mut state = self.inner.write().unwrap_or_else(|p| p.into_inner());
        state.token = token;
        state.claims = claims;
        state.generation += 1;
    }

    /// True when `exp` is known and still ahead of `now` (Unix seconds). Only such a token is
    /// renewed after a 401 (contract §1.8).
    pub fn is_unexpired_at(&self, now: i64) -> bool {
        matches!(self.expires_at(), Some(exp) if exp > 0 && exp > now)
    }
}

/// What the renewal loop should do for a token, at `now` (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewalPlan {
    /// No readable `exp`: the token is not renewed.
    Unknown,
    /// Already expired (at `exp`).
    Expired { exp: i64 },
    /// Renew now.
    Due { exp: i64 },
    /// Renew at `at`.
    At { at: i64, exp: i64 },
}

/// The Unix time at which a token with these claims should be renewed.
pub fn renew_at(claims: &Claims) -> Option<i64> {
    let exp = claims.exp.filter(|e| *e > 0)?;
    Some(match claims.iat.filter(|i| *i > 0 && *i < exp) {
        Some(iat) => iat + ((exp - iat) as f64 * RENEW_AT_FRACTION).floor() as i64,
        None => exp - RENEW_BEFORE_EXP_WITHOUT_IAT,
    })
}

/// Decides what to do with a token at `now`.
pub fn plan(claims: Option<&Claims>, now: i64) -> RenewalPlan {
    let Some((claims, exp)) = claims.and_then(|c| c.exp.filter(|e| *e > 0).map(|e| (c, e))) else {
        return RenewalPlan::Unknown;
    };
    if exp <= now {
        return RenewalPlan::Expired { exp };
    }
    let at = renew_at(claims).unwrap_or(exp);
    if now >= at {
        RenewalPlan::Due { exp }
    } else {
        RenewalPlan::At { at, exp }
    }
}

/// Logs a warning when the token is expired or due for renewal (at start).
pub fn warn_if_expiring(token: &TokenHandle, now: i64) {
    match plan(token.claims().as_ref(), now) {
        RenewalPlan::Expired { exp } => {
            tracing::error!(expired_secs_ago = now - exp, "Token expired")
        }
        RenewalPlan::Due { exp } => tracing::warn!(
            expires_in_secs = exp - now,
            "Sensor token is near expiry; renewing it now"
        ),
        RenewalPlan::Unknown => tracing::warn!(
            "Sensor token expiry could not be read; it will not be renewed automatically"
        ),
        RenewalPlan::At { .. } => {}
    }
}

/// Starts the renewal loop for `api`'s token. It runs until `shutdown` completes.
pub fn spawn_renewal(
    api: ApiClient,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    use tracing::instrument::WithSubscriber;
    let token = api.token().clone();
    let renew = move || {
        let api = api.clone();
        async move { api.renew_token().await }
    };
    tokio::spawn(renewal_loop(token, renew, shutdown, unix_now).with_current_subscriber())
}

/// The renewal loop, with the renewal call and the wall clock given (tests pass fakes).
/// All waiting is done with `tokio::time`, so it runs under a paused clock.
pub async fn renewal_loop<R, Fut, S, N>(token: TokenHandle, mut renew: R, shutdown: S, now: N)
where
    R: FnMut() -> Fut,
    Fut: Future<Output = Result<(), ApiError>>,
    S: Future<Output = ()>,
    N: Fn() -> i64,
{
    tokio::pin!(shutdown);
    tracing::info!("Token refresh manager started (will refresh at 80% of TTL)");
    let mut first = true;
    let mut retry = RETRY_INITIAL;
    let mut logged_expired_generation: Option<u64> = None;
    let mut logged_unknown_generation: Option<u64> = None;
    loop {
        let t = now();
        let generation = token.generation();
        let wait = match plan(token.claims().as_ref(), t) {
            RenewalPlan::Unknown => {
                if logged_unknown_generation != Some(generation) {
                    tracing::warn!(
                        "Sensor token expiry could not be read; it will not be renewed automatically"
                    );
                }
                logged_unknown_generation = Some(generation);
                RETRY_MAX
            }
            RenewalPlan::Expired { exp } => {
                // Once per token: the API refuses it until the sensor is given a new one.
                if logged_expired_generation != Some(generation) {
                    tracing::error!(expired_secs_ago = t - exp, "Token expired");
                    logged_expired_generation = Some(generation);
                }
                RETRY_MAX
            }
            RenewalPlan::At { at, .. } => secs(at - t).min(RETRY_MAX),
            RenewalPlan::Due { exp } => {
                if first {
                    tracing::warn!(
                        expires_in_secs = exp - t,
                        "Sensor token is near expiry; renewing it now"
                    );
                } else {
                    tracing::info!(expires_in_secs = exp - t, "Renewing sensor token");
                }
                match renew().await {
                    Ok(()) => {
                        retry = RETRY_INITIAL;
                        let after = now();
                        match plan(token.claims().as_ref(), after) {
                            // A renewed token that is due again at once would loop; wait.
                            RenewalPlan::Due { .. } => {
                                tracing::warn!(
                                    retry_in_secs = RETRY_INITIAL.as_secs(),
                                    "Renewed sensor token is already due for renewal"
                                );
                                RETRY_INITIAL
                            }
                            _ => Duration::ZERO,
                        }
                    }
                    Err(e) => {
                        let delay = retry.min(secs(exp - now()).max(Duration::from_secs(1)));
                        tracing::warn!(
                            error = %e,
                            retry_in_secs = delay.as_secs(),
                            expires_in_secs = exp - now(),
                            "Token renewal failed; keeping the current token"
                        );
                        retry = (retry * 2).min(RETRY_MAX);
                        delay
                    }
                }
            }
        };
        first = false;
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            _ = &mut shutdown => {
                tracing::debug!("Token refresh manager stopped");
                return;
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn secs(n: i64) -> Duration {
    Duration::from_secs(n.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

    fn jwt(payload: Value) -> String {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"HS256","typ":"JWT"}"#),
            b64(payload.to_string().as_bytes()),
            b64(b"sig")
        )
    }

    fn token(iat: i64, exp: i64) -> String {
        jwt(serde_json::json!({"iat": iat, "exp": exp, "sub": "1"}))
    }

    #[test]
    fn decodes_url_safe_and_standard_base64() {
        let t =
            jwt(serde_json::json!({"exp": 20, "iat": 10, "metadata": {"trigger_types": ["a"]}}));
        let c = decode_claims(&t).unwrap();
        assert_eq!((c.exp, c.iat), (Some(20), Some(10)));
        assert_eq!(c.trigger_types, Some(vec!["a".to_string()]));
        // Standard alphabet with padding.
        let payload = base64::engine::general_purpose::STANDARD.encode(br#"{"exp":5,"x":"??>>"}"#);
        let c = decode_claims(&format!("h.{payload}.s")).unwrap();
        assert_eq!(c.exp, Some(5));
        assert_eq!(
            decode_claims("a.b").unwrap_err().to_string(),
            "Invalid JWT format: expected 3 parts"
        );
        assert_eq!(decode_claims("a.!!!.c").unwrap_err(), TokenError::Base64);
    }

    #[test]
    fn scope_is_the_intersection_in_component_order() {
        let handled: Vec<String> = ["core.intervaltimer", "core.crontimer", "core.datetimetimer"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let t = jwt(serde_json::json!({"metadata": {"trigger_types": [
            " core.datetimetimer ", "core.intervaltimer", "core.other", "", "core.intervaltimer"]}}));
        assert_eq!(
            trigger_scope(&t, &handled).unwrap(),
            vec!["core.intervaltimer", "core.datetimetimer"]
        );
        // No metadata, or not a JWT: everything.
        assert_eq!(trigger_scope(&token(1, 2), &handled).unwrap(), handled);
        assert_eq!(trigger_scope("opaque", &handled).unwrap(), handled);
        let none = jwt(serde_json::json!({"metadata": {"trigger_types": ["x.b", "x.a"]}}));
        assert_eq!(
            trigger_scope(&none, &handled).unwrap_err().to_string(),
            r#"Sensor token scope does not allow any lifecycle trigger refs supported by this sensor (["x.a", "x.b"])"#
        );
    }

    #[test]
    fn plans_renewal_at_80_percent() {
        let c = decode_claims(&token(1000, 2000)).unwrap();
        assert_eq!(renew_at(&c), Some(1800));
        assert_eq!(
            plan(Some(&c), 1500),
            RenewalPlan::At {
                at: 1800,
                exp: 2000
            }
        );
        assert_eq!(plan(Some(&c), 1800), RenewalPlan::Due { exp: 2000 });
        assert_eq!(plan(Some(&c), 2000), RenewalPlan::Expired { exp: 2000 });
        assert_eq!(plan(None, 0), RenewalPlan::Unknown);
        let h = TokenHandle::new(token(1000, 2000));
        assert!(h.is_unexpired_at(1999));
        assert!(!h.is_unexpired_at(2000));
        assert!(!TokenHandle::new("opaque").is_unexpired_at(0));
        assert!(!format!("{h:?}").contains(&h.current()));
    }

    /// A wall clock that follows tokio's (paused) clock from a fixed start.
    fn paused_wall_clock(start: i64) -> impl Fn() -> i64 + Clone {
        let origin = tokio::time::Instant::now();
        move || start + origin.elapsed().as_secs() as i64
    }

    #[tokio::test(start_paused = true)]
    async fn renews_at_80_percent_of_each_tokens_lifetime() {
        let start = 1_000_000;
        let now = paused_wall_clock(start);
        let handle = TokenHandle::new(token(start, start + 100));
        let renewals = Arc::new(AtomicUsize::new(0));
        let renewed_at = Arc::new(AtomicI64::new(0));
        let renew = {
            let (handle, renewals, renewed_at, now) = (
                handle.clone(),
                renewals.clone(),
                renewed_at.clone(),
                now.clone(),
            );
            move || {
                let t = now();
                renewals.fetch_add(1, Ordering::SeqCst);
                renewed_at.store(t, Ordering::SeqCst);
                handle.replace(token(t, t + 100));
                async { Ok(()) }
            }
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(renewal_loop(
            handle.clone(),
            renew,
            async move {
                let _ = stop_rx.await;
            },
            now,
        ));
        tokio::time::sleep(Duration::from_secs(79)).await;
        assert_eq!(renewals.load(Ordering::SeqCst), 0);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(renewals.load(Ordering::SeqCst), 1);
        assert_eq!(renewed_at.load(Ordering::SeqCst), start + 80);
        // The next one comes 80 s after that.
        tokio::time::sleep(Duration::from_secs(80)).await;
        assert_eq!(renewals.load(Ordering::SeqCst), 2);
        assert_eq!(renewed_at.load(Ordering::SeqCst), start + 160);
        stop_tx.send(()).unwrap();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn failed_renewals_back_off_and_keep_the_token() {
        let start = 2_000_000;
        let now = paused_wall_clock(start);
        // A 10-hour token: renewal due at 8 h; failures retry after 60, 120, 240 … s.
        let original = token(start, start + 36_000);
        let handle = TokenHandle::new(original.clone());
        let attempts = Arc::new(std::sync::Mutex::new(Vec::new()));
        let renew = {
            let (attempts, now) = (attempts.clone(), now.clone());
            move || {
                attempts.lock().unwrap().push(now());
                async {
                    Err(ApiError::Status {
                        operation: "refresh sensor token".into(),
                        origin: "http://x".into(),
                        status: 503,
                        retry_after: None,
                    })
                }
            }
        };
        let task = tokio::spawn(renewal_loop(
            handle.clone(),
            renew,
            std::future::pending(),
            now,
        ));
        tokio::time::sleep(Duration::from_secs(28_800 + 60 + 120 + 240 + 480 + 1)).await;
        let seen: Vec<i64> = attempts.lock().unwrap().iter().map(|t| t - start).collect();
        assert_eq!(seen, vec![28_800, 28_860, 28_980, 29_220, 29_700]);
        // Doubling stops at one hour.
        tokio::time::sleep(Duration::from_secs(960 + 1920 + 3600 + 1)).await;
        let seen: Vec<i64> = attempts.lock().unwrap().iter().map(|t| t - start).collect();
        // 60 … 1920 s, then the last wait stops at the expiry, where nothing is renewed.
        assert_eq!(&seen[5..], &[30_660, 32_580]);
        assert_eq!(handle.current(), original);
        task.abort();
    }
}
