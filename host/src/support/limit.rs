//! A concurrency limit that adapts (additive increase, multiplicative decrease): it grows by
//! one with each success while work is waiting for a slot, up to a cap, and halves when the
//! other side says it is overloaded. So a burst gets more connections, a struggling server
//! fewer, and the cap is never exceeded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio::sync::{Semaphore, SemaphorePermit};

/// An adaptive concurrency limit. Defaults: see [`AdaptiveLimit::new`].
#[derive(Debug)]
pub struct AdaptiveLimit {
    slots: Semaphore,
    cap: usize,
    /// The current limit: slots in use + free + owed.
    limit: AtomicUsize,
    /// Slots to take out of circulation as they come back (a decrease while they were in
    /// use).
    owed: Mutex<usize>,
    /// Work waiting for a slot.
    waiting: AtomicUsize,
}

/// A slot; given back (or retired, after a decrease) when dropped.
#[derive(Debug)]
pub struct Slot<'a> {
    limit: &'a AdaptiveLimit,
    permit: Option<SemaphorePermit<'a>>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut owed = self.limit.owed.lock().unwrap_or_else(|p| p.into_inner());
        if *owed > 0 {
            *owed -= 1;
            if let Some(permit) = self.permit.take() {
                permit.forget();
            }
        }
    }
}

impl AdaptiveLimit {
    /// Starts at `initial` (at least 1, at most `cap`) and never exceeds `cap`.
    pub fn new(initial: usize, cap: usize) -> Self {
        let cap = cap.clamp(1, Semaphore::MAX_PERMITS);
        let initial = initial.clamp(1, cap);
        Self {
            slots: Semaphore::new(initial),
            cap,
            limit: AtomicUsize::new(initial),
            owed: Mutex::new(0),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Waits for a slot.
    pub async fn acquire(&self) -> Slot<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let permit = self
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        Slot {
            limit: self,
            permit: Some(permit),
        }
    }

    /// The current limit.
    pub fn current(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// A success: one more slot, if work is waiting and the cap allows.
    pub fn succeeded(&self) {
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return;
        }
        let grew = self
            .limit
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.cap).then_some(n + 1)
            })
            .is_ok();
        if grew {
            let mut owed = self.owed.lock().unwrap_or_else(|p| p.into_inner());
            // Cancel a debt before adding a slot.
            if *owed > 0 {
                *owed -= 1;
            } else {
                self.slots.add_permits(1);
            }
        }
    }

    /// The other side is overloaded (429, 503, a timeout): halve the limit (not below 1).
    pub fn overloaded(&self) {
        let Ok(before) = self
            .limit
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n > 1).then_some((n / 2).max(1))
            })
        else {
            return;
        };
        let shrink = before - (before / 2).max(1);
        let mut owed = self.owed.lock().unwrap_or_else(|p| p.into_inner());
        let gone = self.slots.forget_permits(shrink);
        *owed += shrink - gone;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn grows_only_under_backlog_and_never_past_the_cap() {
        let limit = Arc::new(AdaptiveLimit::new(2, 4));
        // No one waiting: a success does not grow it.
        let a = limit.acquire().await;
        limit.succeeded();
        assert_eq!(limit.current(), 2);
        let b = limit.acquire().await;
        // A third waits: successes grow the limit, to the cap and no further.
        let l2 = limit.clone();
        let waiter = tokio::spawn(async move {
            let _c = l2.acquire().await;
        });
        tokio::task::yield_now().await;
        for _ in 0..5 {
            limit.succeeded();
        }
        waiter.await.unwrap();
        assert_eq!(limit.current(), 4);
        assert!(limit.slots.available_permits() <= 2);
        drop((a, b));
        assert_eq!(limit.slots.available_permits(), 4);
    }

    #[tokio::test]
    async fn halves_on_overload_even_while_slots_are_in_use() {
        let limit = AdaptiveLimit::new(8, 8);
        let held: Vec<_> = futures_util::future::join_all((0..6).map(|_| limit.acquire())).await;
        limit.overloaded(); // 8 → 4: two free slots go now, two more as held ones return
        assert_eq!(limit.current(), 4);
        assert_eq!(limit.slots.available_permits(), 0);
        drop(held);
        assert_eq!(limit.slots.available_permits(), 4);
        limit.overloaded();
        limit.overloaded();
        limit.overloaded();
        assert_eq!(limit.current(), 1, "never below one");
        assert_eq!(limit.slots.available_permits(), 1);
    }
}
