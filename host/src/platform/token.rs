//! The sensor token: held in memory behind a lock and swapped when renewed, its claims read
//! (unverified) for expiry and trigger scope, and the plan for renewing it
//! (`docs/platform.md` §1.9). The loop that carries the plan out is in
//! [`super::renewal`]; this module talks to nobody.

use std::fmt;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use serde_json::Value;

/// Renew at this fraction of the lifetime...
pub const RENEW_AT_FRACTION: f64 = 0.8;
/// ...or this long before the expiry if that comes first, but not before half the
/// lifetime. Operators alert when a token has under 6 h left (the platform's advice); at
/// 80 % a 24-hour token — the platform's default — would have only 4.8 h left when it is
/// renewed, and the alert would fire every day on a healthy sensor. Renewing 7 h ahead
/// keeps a token of the platform's 24–72 h lifetimes above 6 h while renewal works, so
/// the alert means renewal has failed for an hour.
pub const RENEW_BEFORE_EXP: i64 = 7 * 3600;
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
    /// renewed after a 401 (docs/platform.md §1.8).
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
        Some(iat) => {
            let life = exp - iat;
            let by_fraction = iat + (life as f64 * RENEW_AT_FRACTION).floor() as i64;
            let by_margin = exp - RENEW_BEFORE_EXP;
            if by_margin < by_fraction && by_margin >= iat + life / 2 {
                by_margin
            } else {
                by_fraction
            }
        }
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

/// An unsigned JWT with these claims (tests only).
#[cfg(test)]
pub(crate) fn jwt(payload: Value) -> String {
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    format!(
        "{}.{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(payload.to_string().as_bytes()),
        b64(b"sig")
    )
}

/// An unsigned JWT issued at `iat`, expiring at `exp` (tests only).
#[cfg(test)]
pub(crate) fn test_jwt(iat: i64, exp: i64) -> String {
    jwt(serde_json::json!({"iat": iat, "exp": exp, "sub": "1"}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(iat: i64, exp: i64) -> String {
        test_jwt(iat, exp)
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

    #[test]
    fn long_lived_tokens_are_renewed_seven_hours_ahead() {
        let hour = 3600;
        // 24 h (the platform's default): at 17 h, not 19.2 h, so 7 h are left.
        let day = decode_claims(&token(1, 24 * hour + 1)).unwrap();
        assert_eq!(renew_at(&day), Some(17 * hour + 1));
        // 72 h (the platform's longest): 80 % comes first (14.4 h before the expiry).
        let long = decode_claims(&token(1, 72 * hour + 1)).unwrap();
        assert_eq!(renew_at(&long), Some(1 + (72 * hour * 8) / 10));
        // 10 h: 7 h ahead would be before half the lifetime, so 80 % it is.
        let short = decode_claims(&token(1, 10 * hour + 1)).unwrap();
        assert_eq!(renew_at(&short), Some(8 * hour + 1));
    }
}
