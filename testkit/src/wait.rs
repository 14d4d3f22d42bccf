//! Waiting on a condition in real time, bounded.

use std::time::Duration;

/// Polls `cond` every 20 ms for up to `within`; whether it became true.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`eventually`], failing the test with `what` when `cond` does not come true in time.
pub async fn until(within: Duration, what: &str, cond: impl FnMut() -> bool) {
    assert!(
        eventually(within, cond).await,
        "timed out waiting for: {what}"
    );
}
