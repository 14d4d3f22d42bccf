//! Token renewal (`docs/platform.md` §1.9): at 80 % of the token's lifetime
//! (`iat + floor(0.8 × (exp − iat))`), or 7 h before its expiry when that comes first and
//! is past half the lifetime (see [`super::token::RENEW_BEFORE_EXP`]), the loop calls `POST /auth/internal/sensor-token` and
//! swaps the new token in; nothing is interrupted, later requests just use it. On failure
//! it keeps the old token and tries again after 60 s, doubling up to 1 h (never sleeping
//! past the expiry). A token whose expiry can't be read is not renewed. An expired token is
//! not renewed either (the API refuses it): the loop logs `Token expired` and the sensor
//! needs a new token.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::api::{ApiClient, ApiError};
use super::token::{plan, unix_now, RenewalPlan, TokenHandle};
use crate::support::backoff::{Backoff, BackoffPolicy};

/// First retry delay after a failed renewal; doubles per failure.
pub const RETRY_INITIAL: Duration = Duration::from_secs(60);
/// Longest retry delay, and longest sleep between checks.
pub const RETRY_MAX: Duration = Duration::from_secs(3600);
/// Retries after failed renewals.
const RETRY: BackoffPolicy = BackoffPolicy {
    initial: RETRY_INITIAL,
    max: RETRY_MAX,
    jitter: false,
};

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
    let mut retry = Backoff::new(RETRY);
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
                        retry.reset();
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
                        let delay = retry
                            .next_delay()
                            .min(secs(exp - now()).max(Duration::from_secs(1)));
                        tracing::warn!(
                            error = %e,
                            retry_in_secs = delay.as_secs(),
                            expires_in_secs = exp - now(),
                            "Token renewal failed; keeping the current token"
                        );
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
    use std::sync::Arc;

    fn token(iat: i64, exp: i64) -> String {
        crate::platform::token::test_jwt(iat, exp)
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
