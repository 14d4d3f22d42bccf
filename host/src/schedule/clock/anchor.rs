//! The one link between UTC instants (what the component speaks) and the monotonic clock
//! (what deadlines are), fixed when the clock starts:
//! `instant(t) = anchor.instant + (t − anchor.utc)`.

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// The link between UTC instants and the monotonic clock, fixed when the clock starts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Anchor {
    pub(super) utc: DateTime<Utc>,
    pub(super) instant: Instant,
}

impl Anchor {
    pub(super) fn now(&self) -> DateTime<Utc> {
        self.utc_at(Instant::now())
    }

    pub(super) fn utc_at(&self, instant: Instant) -> DateTime<Utc> {
        let elapsed = instant.saturating_duration_since(self.instant);
        chrono::Duration::from_std(elapsed)
            .ok()
            .and_then(|d| self.utc.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    pub(super) fn instant_at(&self, at: DateTime<Utc>) -> Instant {
        let offset = at.signed_duration_since(self.utc);
        match offset.to_std() {
            Ok(ahead) => self
                .instant
                .checked_add(ahead)
                // Centuries ahead: beyond any real wait. The task re-checks when it wakes.
                .unwrap_or_else(|| {
                    self.instant + std::time::Duration::from_secs(100 * 365 * 86_400)
                }),
            Err(_) => {
                let behind = (-offset).to_std().unwrap_or_default();
                self.instant.checked_sub(behind).unwrap_or(self.instant)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn anchor_maps_both_ways() {
        let utc = DateTime::parse_from_rfc3339("2026-03-26T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let anchor = Anchor {
            utc,
            instant: Instant::now(),
        };
        let later = utc + chrono::Duration::milliseconds(2500);
        let at = anchor.instant_at(later);
        assert_eq!(at - anchor.instant, std::time::Duration::from_millis(2500));
        assert_eq!(anchor.utc_at(at), later);
        tokio::time::advance(std::time::Duration::from_secs(3)).await;
        assert_eq!(anchor.now(), utc + chrono::Duration::seconds(3));
        // The past maps to the past (never panics).
        let past = anchor.instant_at(utc - chrono::Duration::seconds(1));
        assert!(past <= anchor.instant);
    }
}
