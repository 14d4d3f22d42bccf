//! The event outbox: fired events go out through the API asynchronously, so the clock never
//! waits on the network.
//!
//! - [`EventSink::submit`] never blocks: it takes a slot (at most `capacity` events are
//!   queued or being delivered) and hands the event to the dispatcher. With no slot free, or
//!   after shutdown began, the event is refused with an error log.
//! - At most `concurrency` requests are in flight; the API client keeps connections alive
//!   and times each request out (30 s by default).
//! - Transient failures (no response, timeouts, 5xx, 429, 408) are retried with exponential
//!   backoff and equal jitter: the n-th retry waits between half and all of
//!   `min(max_backoff, initial_backoff × 2ⁿ⁻¹)` (at least `Retry-After`, when the server
//!   sent one, up to `max_backoff`). Defaults: 0.5 s doubling to 30 s, at most 10 attempts,
//!   and no attempt starts more than 5 minutes after the first — about 2 minutes of waiting
//!   when every attempt fails fast. A timed-out request may have created the event, so a
//!   retry can duplicate it (the API has no idempotency key; docs/platform.md §1.8).
//! - 400, 401 (after the client's renew-and-retry), 403, 404, 422 and malformed successes
//!   are never retried.
//! - No event is dropped silently: every event that is not delivered — refused (outbox
//!   full or closed), not retryable, out of retries, or abandoned at shutdown — is logged at
//!   error level as `Failed to create event` with `rule_id`, `trigger_ref`, `scheduled_at`
//!   and a `reason`. Each delivered one logs `Event created` with `event_id` and `rule_id`.
//! - A retry logs a warning (`Event creation failed, retrying`) whose text never says
//!   `Failed to create event`: that message means an event was given up on, nothing else.
//! - [`Outbox::shutdown`] stops accepting, keeps delivering (retries then wait at most
//!   `flush_backoff`, and the attempt count no longer limits them: the flush time does)
//!   until everything is done or the flush time is up, then aborts the rest and logs each
//!   abandoned event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::instrument::WithSubscriber;

use super::api::{ApiClient, ApiError};
use crate::schedule::{Event, EventSink};
use crate::support::backoff::BackoffPolicy;
use crate::support::blocking::TaskGuard;

/// How the outbox delivers. See the module documentation for the retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxOptions {
    /// Events queued or being delivered at once; more are refused. Default 100,000: room
    /// for every fire of 100,000 rules due together while the API is slow.
    pub capacity: usize,
    /// Requests in flight at once. Default 8.
    pub concurrency: usize,
    /// Attempts per event, the first included. Default 10.
    pub max_attempts: u32,
    /// No attempt starts later than this after the first. Default 5 minutes.
    pub max_retry_time: Duration,
    /// Wait before the first retry (before jitter). Default 500 ms.
    pub initial_backoff: Duration,
    /// Longest wait between attempts. Default 30 s.
    pub max_backoff: Duration,
    /// Longest wait between attempts while shutting down. Default 250 ms.
    pub flush_backoff: Duration,
}

impl Default for OutboxOptions {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            concurrency: 8,
            max_attempts: 10,
            max_retry_time: Duration::from_secs(300),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            flush_backoff: Duration::from_millis(250),
        }
    }
}

impl OutboxOptions {
    /// The retry schedule: `initial_backoff` doubling to `max_backoff`, equal jitter.
    pub fn backoff(&self) -> BackoffPolicy {
        BackoffPolicy {
            initial: self.initial_backoff,
            max: self.max_backoff,
            jitter: true,
        }
    }

    /// The wait before retry number `retry` (1 = the first retry): the jittered backoff,
    /// and at least `retry_after` when the server sent one (capped at `max_backoff`).
    pub fn retry_delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let delay = self.backoff().delay(retry);
        match retry_after {
            Some(ra) => delay.max(ra.min(self.max_backoff)),
            None => delay,
        }
    }
}

/// An event the outbox gave up on at shutdown.
#[derive(Debug, Clone, PartialEq)]
pub struct AbandonedEvent {
    pub rule_id: i64,
    pub trigger_ref: String,
    pub scheduled_at: DateTime<Utc>,
}

/// What [`Outbox::shutdown`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlushReport {
    /// Events queued or in delivery when shutdown began.
    pub pending_at_start: usize,
    /// Of those, delivered during the flush.
    pub delivered: u64,
    /// Of those, failed for good during the flush (logged).
    pub failed: u64,
    /// Still undelivered when the flush time ran out (each logged).
    pub abandoned: Vec<AbandonedEvent>,
    pub elapsed: Duration,
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Accepted by `submit`.
    pub accepted: u64,
    /// Refused by `submit` (full or closed).
    pub refused: u64,
    pub delivered: u64,
    /// Not retryable, or out of attempts.
    pub failed: u64,
    pub abandoned: u64,
    /// Queued or being delivered now.
    pub pending: usize,
}

struct Pending {
    rule_id: i64,
    trigger_ref: Arc<str>,
    scheduled_at: DateTime<Utc>,
}

struct Job {
    id: u64,
    event: Event,
    _slot: OwnedSemaphorePermit,
}

struct Shared {
    api: ApiClient,
    opts: OutboxOptions,
    tx: mpsc::UnboundedSender<Vec<Job>>,
    slots: Arc<Semaphore>,
    in_flight: Semaphore,
    accepting: AtomicBool,
    flushing: watch::Sender<bool>,
    /// Events being delivered, for the shutdown report. Filled by the dispatcher.
    pending: Mutex<HashMap<u64, Pending>>,
    /// Events accepted but not yet received by the dispatcher.
    queued: AtomicUsize,
    next_id: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    abandoned: AtomicU64,
}

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn log_refused(event: &Event, reason: &str) {
    tracing::error!(
        rule_id = event.rule_id,
        trigger_ref = %event.trigger_ref,
        scheduled_at = %rfc3339(&event.scheduled_at),
        reason,
        "Failed to create event"
    );
}

impl Shared {
    fn pending_map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn submit(&self, event: Event) {
        self.submit_all(vec![event]);
    }

    /// Takes a slot for each event (refusing, with an error log, those that find none)
    /// and hands them to the dispatcher as one message. The clock releases every fire due
    /// at the same moment together and this is on its path, so it does the least per
    /// event; the dispatcher does the bookkeeping ([`Shared::track`]).
    fn submit_all(&self, events: Vec<Event>) {
        if !self.accepting.load(Ordering::Acquire) {
            for event in events {
                self.refuse(&event, "the outbox is shutting down");
            }
            return;
        }
        let mut all = self
            .slots
            .clone()
            .try_acquire_many_owned(events.len() as u32)
            .ok();
        let first_id = self
            .next_id
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        let mut jobs = Vec::with_capacity(events.len());
        for (i, event) in events.into_iter().enumerate() {
            let slot = match all.as_mut() {
                Some(all) => all.split(1),
                // Not room for all: one at a time until the outbox is full.
                None => self.slots.clone().try_acquire_owned().ok(),
            };
            let Some(slot) = slot else {
                self.refuse(&event, "the outbox is full");
                continue;
            };
            jobs.push(Job {
                id: first_id + i as u64,
                event,
                _slot: slot,
            });
        }
        let n = jobs.len();
        self.queued.fetch_add(n, Ordering::Relaxed);
        match self.tx.send(jobs) {
            Ok(()) => {
                self.accepted.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(mpsc::error::SendError(jobs)) => {
                self.queued.fetch_sub(n, Ordering::Relaxed);
                for job in jobs {
                    self.refuse(&job.event, "the outbox is shutting down");
                }
            }
        }
    }

    /// Registers jobs the dispatcher received as pending (what shutdown reports on).
    fn track(&self, jobs: &[Job]) {
        let mut pending = self.pending_map();
        for job in jobs {
            pending.insert(
                job.id,
                Pending {
                    rule_id: job.event.rule_id,
                    trigger_ref: job.event.trigger_ref.clone(),
                    scheduled_at: job.event.scheduled_at,
                },
            );
        }
        drop(pending);
        self.queued.fetch_sub(jobs.len(), Ordering::Relaxed);
    }

    fn refuse(&self, event: &Event, reason: &str) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        log_refused(event, reason);
    }

    fn finish(&self, id: u64) {
        self.pending_map().remove(&id);
    }
}

/// Hands events to an [`Outbox`]; cheap to clone. Implements [`EventSink`].
#[derive(Clone)]
pub struct OutboxSink {
    shared: Arc<Shared>,
}

impl EventSink for OutboxSink {
    fn submit(&self, event: Event) {
        self.shared.submit(event);
    }

    fn submit_all(&self, events: Vec<Event>) {
        self.shared.submit_all(events);
    }
}

/// The outbox. Start it inside a tokio runtime; stop it with [`Outbox::shutdown`], which
/// flushes. Dropping it instead stops delivery at once (its owner is going away without a
/// graceful stop, e.g. a start that failed halfway).
pub struct Outbox {
    shared: Arc<Shared>,
    dispatcher: TaskGuard,
    stop: oneshot::Sender<Instant>,
}

impl Outbox {
    /// Starts the dispatcher. Must be called within a tokio runtime.
    pub fn start(api: ApiClient, opts: OutboxOptions) -> Outbox {
        let capacity = opts.capacity.clamp(1, Semaphore::MAX_PERMITS);
        let concurrency = opts.concurrency.clamp(1, Semaphore::MAX_PERMITS);
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            api,
            opts,
            tx,
            slots: Arc::new(Semaphore::new(capacity)),
            in_flight: Semaphore::new(concurrency),
            accepting: AtomicBool::new(true),
            flushing: watch::Sender::new(false),
            pending: Mutex::new(HashMap::new()),
            queued: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
        });
        let dispatcher =
            tokio::spawn(dispatch(shared.clone(), rx, stop_rx).with_current_subscriber());
        Outbox {
            shared,
            dispatcher: TaskGuard::new(dispatcher),
            stop,
        }
    }

    /// A handle for the clock.
    pub fn handle(&self) -> OutboxSink {
        OutboxSink {
            shared: self.shared.clone(),
        }
    }

    /// The same handle as an `Arc<dyn EventSink>`.
    pub fn sink(&self) -> Arc<dyn EventSink> {
        Arc::new(self.handle())
    }

    pub fn stats(&self) -> OutboxStats {
        let s = &self.shared;
        OutboxStats {
            accepted: s.accepted.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            delivered: s.delivered.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            abandoned: s.abandoned.load(Ordering::Relaxed),
            pending: s.pending_map().len() + s.queued.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting events, delivers what is pending for at most `flush_within`, then
    /// abandons (and logs) the rest.
    pub async fn shutdown(self, flush_within: Duration) -> FlushReport {
        let started = Instant::now();
        let Outbox {
            shared,
            dispatcher,
            stop,
        } = self;
        shared.accepting.store(false, Ordering::Release);
        let pending_at_start = shared.pending_map().len() + shared.queued.load(Ordering::Relaxed);
        let delivered_before = shared.delivered.load(Ordering::Relaxed);
        let failed_before = shared.failed.load(Ordering::Relaxed);
        tracing::info!(
            pending = pending_at_start,
            flush_within_ms = flush_within.as_millis() as u64,
            "Flushing event outbox"
        );
        let _ = stop.send(started + flush_within);
        if let Err(e) = dispatcher.join().await {
            tracing::error!(error = %e, "Event outbox dispatcher failed");
        }
        let mut left: Vec<(u64, Pending)> = shared.pending_map().drain().collect();
        left.sort_by_key(|(id, _)| *id);
        let abandoned: Vec<AbandonedEvent> = left
            .into_iter()
            .map(|(_, p)| {
                tracing::error!(
                    rule_id = p.rule_id,
                    trigger_ref = %p.trigger_ref,
                    scheduled_at = %rfc3339(&p.scheduled_at),
                    reason = "abandoned at shutdown",
                    "Failed to create event"
                );
                AbandonedEvent {
                    rule_id: p.rule_id,
                    trigger_ref: p.trigger_ref.to_string(),
                    scheduled_at: p.scheduled_at,
                }
            })
            .collect();
        shared
            .abandoned
            .fetch_add(abandoned.len() as u64, Ordering::Relaxed);
        let report = FlushReport {
            pending_at_start,
            delivered: shared.delivered.load(Ordering::Relaxed) - delivered_before,
            failed: shared.failed.load(Ordering::Relaxed) - failed_before,
            abandoned,
            elapsed: started.elapsed(),
        };
        if report.abandoned.is_empty() {
            tracing::info!(
                delivered = report.delivered,
                failed = report.failed,
                "Event outbox flushed"
            );
        } else {
            tracing::warn!(
                delivered = report.delivered,
                failed = report.failed,
                abandoned = report.abandoned.len(),
                "Event outbox flush timed out; abandoned the remaining events"
            );
        }
        report
    }
}

async fn dispatch(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Vec<Job>>,
    mut stop: oneshot::Receiver<Instant>,
) {
    let mut tasks = JoinSet::new();
    let mut stop_live = true;
    let deadline = loop {
        tokio::select! {
            d = &mut stop, if stop_live => match d {
                Ok(deadline) => break deadline,
                // Only while the Outbox is being dropped, which aborts this task too.
                Err(_) => stop_live = false,
            },
            Some(jobs) = rx.recv() => {
                shared.track(&jobs);
                for job in jobs {
                    tasks.spawn(deliver(shared.clone(), job).with_current_subscriber());
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    };
    shared.flushing.send_replace(true);
    rx.close();
    while let Ok(jobs) = rx.try_recv() {
        shared.track(&jobs);
        for job in jobs {
            tasks.spawn(deliver(shared.clone(), job).with_current_subscriber());
        }
    }
    let drained = tokio::time::timeout_at(deadline, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.shutdown().await;
    }
}

async fn deliver(shared: Arc<Shared>, job: Job) {
    let opts = &shared.opts;
    let event = &job.event;
    let first = Instant::now();
    let mut flushing = shared.flushing.subscribe();
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let result = {
            let _permit = shared.in_flight.acquire().await;
            shared.api.create_event(event).await
        };
        let error = match result {
            Ok(event_id) => {
                shared.delivered.fetch_add(1, Ordering::Relaxed);
                shared.finish(job.id);
                tracing::info!(
                    event_id,
                    rule_id = event.rule_id,
                    trigger_ref = %event.trigger_ref,
                    attempts = attempt,
                    "Event created"
                );
                return;
            }
            Err(e) => e,
        };
        let out_of_time = first.elapsed() >= opts.max_retry_time;
        // While shutting down, the flush's time budget is the bound, not the attempt count:
        // an API that comes back a few seconds into the flush still gets every event.
        let out_of_attempts = attempt >= opts.max_attempts && !*flushing.borrow();
        if !error.is_transient() || out_of_attempts || out_of_time {
            let reason = if !error.is_transient() {
                "not retryable"
            } else {
                "retries exhausted"
            };
            log_failed(event, attempt, &error, reason);
            shared.failed.fetch_add(1, Ordering::Relaxed);
            shared.finish(job.id);
            return;
        }
        let delay = opts.retry_delay(attempt, error.retry_after());
        tracing::warn!(
            rule_id = event.rule_id,
            trigger_ref = %event.trigger_ref,
            attempt,
            max_attempts = opts.max_attempts,
            retry_in_ms = delay.as_millis() as u64,
            error = %error,
            "Event creation failed, retrying"
        );
        if *flushing.borrow() {
            tokio::time::sleep(delay.min(opts.flush_backoff)).await;
        } else if tokio::time::timeout(delay, flushing.wait_for(|f| *f))
            .await
            .is_ok()
        {
            // Shutdown began while waiting: retry soon.
            tokio::time::sleep(delay.min(opts.flush_backoff)).await;
        }
    }
}

fn log_failed(event: &Event, attempts: u32, error: &ApiError, reason: &str) {
    tracing::error!(
        rule_id = event.rule_id,
        trigger_ref = %event.trigger_ref,
        scheduled_at = %rfc3339(&event.scheduled_at),
        attempts,
        status = error.status(),
        error = %error,
        reason,
        "Failed to create event"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_inside_it() {
        let opts = OutboxOptions::default();
        let bases: Vec<u64> = (1..=9)
            .map(|n| opts.backoff().base(n).as_millis() as u64)
            .collect();
        assert_eq!(
            bases,
            vec![500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        // The whole default schedule waits at most ~2 minutes.
        assert_eq!(bases.iter().sum::<u64>(), 121_500);
        for n in 1..=12 {
            let d = opts.retry_delay(n, None);
            let base = opts.backoff().base(n);
            assert!(d >= base / 2 && d <= base, "{n}: {d:?}");
        }
        let d = opts.retry_delay(1, Some(Duration::from_secs(5)));
        assert!(d >= Duration::from_secs(5));
        let d = opts.retry_delay(1, Some(Duration::from_secs(5000)));
        assert!(d <= opts.max_backoff);
        assert_eq!(opts.backoff().base(1000), opts.max_backoff);
    }
}
