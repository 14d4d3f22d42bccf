//! The event outbox: fired events go out through the API asynchronously, so the clock never
//! waits on the network — and, with a state store, nothing fired is lost to a crash, a
//! restart or a long API outage (docs/durability.md).
//!
//! - [`EventSink::submit`] never blocks. It takes a slot (at most `capacity` events are in
//!   memory, queued or being delivered) and hands the event to the dispatcher. With no slot
//!   free the event is *spilled*: journaled on disk only, and loaded back, oldest first, as
//!   slots free up (while any are spilled, new events queue behind them). Without a store,
//!   an event that finds no slot — or any event after shutdown began — is refused with an
//!   error log.
//! - With a store, every accepted event not delivered within [`JOURNAL_AFTER`] is journaled
//!   (group commits on the store's thread; the clock never waits for the disk) and removed
//!   once the API has answered for it — so with a healthy API most events never touch the
//!   disk (docs/durability.md says what this means for a crash). On
//!   start, what an earlier run left is delivered first, oldest first, while new fires go
//!   out beside it. Delivery is at-least-once: see docs/durability.md for when a duplicate
//!   can happen.
//! - Requests in flight adapt (see [`AdaptiveLimit`]): from [`INITIAL_CONCURRENCY`], one more
//!   with each success while events wait, halved when the API is overloaded (429, 503, a
//!   timeout), never above `concurrency` (the cap). A `Retry-After` on a 429 or 503 holds
//!   every delivery back until it has passed, not just the event it answered. The API client
//!   keeps connections alive, speaks HTTP/2 when a TLS server offers it, and times each
//!   request out (30 s by default).
//! - Transient failures (no response, timeouts, 5xx, 429, 408) are retried with exponential
//!   backoff and equal jitter: the n-th retry waits between half and all of
//!   `min(max_backoff, initial_backoff × 2ⁿ⁻¹)` (at least `Retry-After`, when the server
//!   sent one, up to `max_backoff`). Defaults: 0.5 s doubling to 30 s. There is no attempt
//!   count: an event waits until it is delivered or older than `max_age` (24 h by
//!   default); a store also drops its oldest events when its journal is over `max_bytes`
//!   (1 GiB by default). A timed-out request may have created the event, so a retry can
//!   duplicate it (the API has no idempotency key; docs/platform.md §1.8).
//! - A 401 that the client's renew-and-retry did not cure is retried like a transient
//!   failure: the sensor's credentials are at fault, not the event (a restart with an
//!   expired token in the environment file is the usual case), so a new token still
//!   delivers it. 400, 403, 404, 422 and malformed successes are never retried.
//! - No event is dropped silently: every event that is not delivered — refused (no store
//!   and the outbox full, or closed), not retryable, too old, over the size limit, or
//!   abandoned at shutdown without a store to keep it — is logged at error level as
//!   `Failed to create event` with `rule_id`, `trigger_ref`, `scheduled_at` and a `reason`.
//!   That message means an event was lost, nothing else. Each delivered one logs `Event
//!   created` with `event_id` and `rule_id` at debug level.
//! - A retry logs a warning (`Event creation failed, retrying`).
//! - [`Outbox::shutdown`] stops accepting, keeps delivering (retries then wait at most
//!   `flush_backoff`) until everything is done or the flush time is up. Then, with a store,
//!   what is left stays journaled for the next start (`Outbox events kept for the next
//!   start`); without one, each is abandoned and logged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tracing::instrument::WithSubscriber;

use super::api::{ApiClient, ApiError};
use crate::schedule::event::Payload;
use crate::schedule::{Event, EventSink};
use crate::store::{DropReason, DroppedEvent, Store, StoreError, StoredEvent};
use crate::support::backoff::BackoffPolicy;
use crate::support::blocking::TaskGuard;
use crate::support::limit::AdaptiveLimit;
use crate::telemetry::{Backlog, LossReason, StatusClass};

/// How often the journal is held to `max_age` and `max_bytes`.
const TRIM_EVERY: Duration = Duration::from_secs(1);
/// Spilled events loaded back at a time, once that many slots are free.
const REFILL_BATCH: usize = 1024;
/// An event still undelivered this long after the dispatcher took it is journaled (with
/// the others of its batch). Writing every event and deleting it a moment later cost about
/// 3 KB of disk writes and a quarter of a core per 10,000 fires a second (BENCHMARKS.md);
/// the price is a window: a crash loses the undelivered fires of its last ~120 ms (this and
/// the store's commit window; docs/durability.md).
pub const JOURNAL_AFTER: Duration = Duration::from_millis(100);
/// Unjournaled events held at most; more are journaled at once.
const JOURNAL_BATCH: usize = 8192;
/// Requests in flight at first; the limit adapts from there up to `concurrency`.
pub const INITIAL_CONCURRENCY: usize = 8;

/// How the outbox delivers. See the module documentation for the retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxOptions {
    /// Events in memory (queued or being delivered) at once; with a store, more are spilled
    /// to disk, without one refused. Default 100,000: room for every fire of 100,000 rules
    /// due together while the API is slow.
    pub capacity: usize,
    /// Requests in flight at most (the adaptive limit's cap). Default 64.
    pub concurrency: usize,
    /// An event not delivered this long after it was accepted is dropped, and logged.
    /// Default 24 hours.
    pub max_age: Duration,
    /// With a store: the journal's payload bytes at most; over it, the oldest events are
    /// dropped, and logged. Default 1 GiB.
    pub max_bytes: u64,
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
            concurrency: 64,
            max_age: Duration::from_secs(24 * 3600),
            max_bytes: 1 << 30,
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
    /// Events queued, in delivery or spilled when shutdown began.
    pub pending_at_start: usize,
    /// Of those, delivered during the flush.
    pub delivered: u64,
    /// Of those, failed for good during the flush (logged).
    pub failed: u64,
    /// Left journaled in the store for the next start.
    pub kept: u64,
    /// Still undelivered when the flush time ran out, with no store to keep them (each
    /// logged).
    pub abandoned: Vec<AbandonedEvent>,
    pub elapsed: Duration,
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Accepted by `submit` (spilled ones included).
    pub accepted: u64,
    /// Refused by `submit` (full without a store, or closed).
    pub refused: u64,
    pub delivered: u64,
    /// Not retryable, too old or over the size limit.
    pub failed: u64,
    pub abandoned: u64,
    /// In memory: queued or being delivered now.
    pub pending: usize,
    /// Journaled on disk only, waiting for a slot (an earlier run's included).
    pub spilled: u64,
    /// Requests allowed in flight now (the adaptive limit).
    pub concurrency_limit: usize,
}

struct Pending {
    rule_id: i64,
    trigger_ref: Arc<str>,
    scheduled_at: DateTime<Utc>,
    /// When the outbox accepted it, and its payload's size (for [`Outbox::backlog`]).
    enqueued_at: DateTime<Utc>,
    bytes: u32,
    /// In the store's journal (so its end must be journaled too).
    journaled: bool,
}

struct Job {
    id: u64,
    event: Event,
    /// When the outbox accepted it: the start of its age.
    enqueued_at: DateTime<Utc>,
    _slot: OwnedSemaphorePermit,
}

/// What the dispatcher is told.
enum Msg {
    /// Events with a slot: deliver them.
    Jobs(Vec<Job>),
    /// Events without one: journal them for later.
    Spill(Vec<StoredEvent>),
}

struct Shared {
    api: ApiClient,
    opts: OutboxOptions,
    store: Option<Store>,
    tx: mpsc::UnboundedSender<Msg>,
    slots: Arc<Semaphore>,
    in_flight: AdaptiveLimit,
    /// No request starts before this (the API's `Retry-After` on a 429 or 503).
    hold_until: Mutex<Option<Instant>>,
    accepting: AtomicBool,
    flushing: watch::Sender<bool>,
    /// Events being delivered, for the shutdown report. Filled by the dispatcher.
    pending: Mutex<HashMap<u64, Pending>>,
    /// Events accepted but not yet received by the dispatcher.
    queued: AtomicUsize,
    /// Events journaled on disk only (see [`Msg::Spill`]).
    spilled: AtomicU64,
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

/// The one line that means an event is lost.
fn log_lost(rule_id: i64, trigger_ref: &str, scheduled_at: &DateTime<Utc>, reason: &str) {
    tracing::error!(
        rule_id,
        trigger_ref = %trigger_ref,
        scheduled_at = %rfc3339(scheduled_at),
        reason,
        "Failed to create event"
    );
}

fn stored(id: u64, event: &Event, enqueued_at: DateTime<Utc>) -> StoredEvent {
    StoredEvent {
        id,
        rule_id: event.rule_id,
        trigger_ref: event.trigger_ref.to_string(),
        scheduled_at: event.scheduled_at,
        enqueued_at,
        payload: event.payload.as_raw().get().to_string(),
    }
}

impl Shared {
    fn pending_map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn submit(&self, event: Event) {
        self.submit_all(vec![event]);
    }

    /// Takes a slot for each event and hands them to the dispatcher as one message; events
    /// that find none are spilled (with a store) or refused (without). The clock releases
    /// every fire due at the same moment together and this is on its path, so it does the
    /// least per event; the dispatcher does the bookkeeping ([`Shared::track`]).
    fn submit_all(&self, events: Vec<Event>) {
        if !self.accepting.load(Ordering::Acquire) {
            for event in events {
                self.refuse(&event, "the outbox is shutting down");
            }
            return;
        }
        let enqueued_at = Utc::now();
        let first_id = self
            .next_id
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        // Spilled events go first: while any wait on disk, new ones queue behind them.
        let behind_spill = self.store.is_some() && self.spilled.load(Ordering::Acquire) > 0;
        let mut all = if behind_spill {
            None
        } else {
            self.slots
                .clone()
                .try_acquire_many_owned(events.len() as u32)
                .ok()
        };
        let mut jobs = Vec::with_capacity(events.len());
        let mut spill = Vec::new();
        for (i, event) in events.into_iter().enumerate() {
            let id = first_id + i as u64;
            let slot = match all.as_mut() {
                Some(all) => all.split(1),
                // Not room for all: one at a time until the outbox is full.
                None if spill.is_empty() && !behind_spill => {
                    self.slots.clone().try_acquire_owned().ok()
                }
                None => None,
            };
            match slot {
                Some(slot) => jobs.push(Job {
                    id,
                    event,
                    enqueued_at,
                    _slot: slot,
                }),
                None if self.store.is_some() => spill.push(stored(id, &event, enqueued_at)),
                None => self.refuse(&event, "the outbox is full"),
            }
        }
        let (n, spilled) = (jobs.len(), spill.len());
        if spilled > 0 {
            self.spilled.fetch_add(spilled as u64, Ordering::AcqRel);
        }
        self.queued.fetch_add(n, Ordering::Relaxed);
        if n > 0 {
            if let Err(mpsc::error::SendError(msg)) = self.tx.send(Msg::Jobs(jobs)) {
                self.queued.fetch_sub(n, Ordering::Relaxed);
                if let Msg::Jobs(jobs) = msg {
                    for job in jobs {
                        self.refuse(&job.event, "the outbox is shutting down");
                    }
                }
            } else {
                self.accepted.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        if spilled > 0 {
            if let Err(mpsc::error::SendError(msg)) = self.tx.send(Msg::Spill(spill)) {
                self.spilled.fetch_sub(spilled as u64, Ordering::AcqRel);
                if let Msg::Spill(events) = msg {
                    for e in events {
                        self.count_lost(LossReason::Refused, StatusClass::None);
                        log_lost(
                            e.rule_id,
                            &e.trigger_ref,
                            &e.scheduled_at,
                            "the outbox is shutting down",
                        );
                    }
                }
            } else {
                self.accepted.fetch_add(spilled as u64, Ordering::Relaxed);
            }
        }
    }

    /// Registers jobs the dispatcher received as pending (what shutdown reports on);
    /// `journaled`: they are in the store's journal already (loaded from it).
    fn track(&self, jobs: &[Job], journaled: bool) {
        let mut pending = self.pending_map();
        for job in jobs {
            pending.insert(
                job.id,
                Pending {
                    rule_id: job.event.rule_id,
                    trigger_ref: job.event.trigger_ref.clone(),
                    scheduled_at: job.event.scheduled_at,
                    enqueued_at: job.enqueued_at,
                    bytes: u32::try_from(job.event.payload.as_raw().get().len())
                        .unwrap_or(u32::MAX),
                    journaled,
                },
            );
        }
    }

    /// Holds every delivery back for `for_` (the API's `Retry-After`).
    fn hold(&self, for_: Duration) {
        let until = Instant::now() + for_;
        let mut hold = self.hold_until.lock().unwrap_or_else(|p| p.into_inner());
        if hold.is_none_or(|h| h < until) {
            *hold = Some(until);
        }
    }

    /// Waits out a hold; while flushing, at most `flush_backoff` of it.
    async fn wait_if_held(&self, flushing: bool) {
        let until = *self.hold_until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = until {
            let until = if flushing {
                until.min(Instant::now() + self.opts.flush_backoff)
            } else {
                until
            };
            tokio::time::sleep_until(until).await;
        }
    }

    /// Counts a lost event, in the outbox's stats and in the metrics, by why it was lost.
    fn count_lost(&self, reason: LossReason, status_class: StatusClass) {
        let stat = match reason {
            LossReason::Refused => &self.refused,
            LossReason::Abandoned => &self.abandoned,
            LossReason::Rejected | LossReason::TooOld | LossReason::OverSize => &self.failed,
        };
        stat.fetch_add(1, Ordering::Relaxed);
        self.api.metrics().event_lost(reason, status_class);
    }

    fn refuse(&self, event: &Event, reason: &str) {
        self.count_lost(LossReason::Refused, StatusClass::None);
        log_lost(
            event.rule_id,
            &event.trigger_ref,
            &event.scheduled_at,
            reason,
        );
    }

    /// An event is done with (delivered, or given up and logged): out of memory and, if it
    /// was journaled, out of the journal — under one lock, so a refill or a journal flush
    /// never sees it half done.
    fn finish(&self, id: u64) {
        let mut pending = self.pending_map();
        if let Some(p) = pending.remove(&id) {
            if p.journaled {
                if let Some(store) = &self.store {
                    store.delete_events(vec![id]);
                }
            }
        }
    }

    /// Journals the events of `records` that are still pending.
    fn journal(&self, records: Vec<StoredEvent>) {
        let Some(store) = &self.store else {
            return;
        };
        let mut pending = self.pending_map();
        let kept: Vec<StoredEvent> = records
            .into_iter()
            .filter(|r| match pending.get_mut(&r.id) {
                Some(p) => {
                    p.journaled = true;
                    true
                }
                None => false,
            })
            .collect();
        // Sent under the lock: a delivery that ends now deletes after this insert.
        store.insert_events(kept, false);
    }
}

/// Hands events to an [`Outbox`]; cheap to clone. Implements [`EventSink`].
#[derive(Clone)]
pub struct OutboxSink {
    shared: Arc<Shared>,
}

impl OutboxSink {
    /// What waits to be delivered, for the metrics and the readiness check: in memory,
    /// and (with a store) on disk. Asks the store, so it waits for its writer's current
    /// group of writes (at most a few tens of milliseconds).
    pub async fn backlog(&self) -> Backlog {
        let s = &self.shared;
        let now = Utc::now();
        let (in_memory, memory_bytes, oldest_in_memory) = {
            let pending = s.pending_map();
            let bytes = pending.values().map(|p| u64::from(p.bytes)).sum::<u64>();
            let oldest = pending.values().map(|p| p.enqueued_at).min();
            (pending.len() as u64, bytes, oldest)
        };
        // Unreadable only once the store is closed, at the very end of a shutdown.
        let (journal_bytes, oldest_on_disk) = match &s.store {
            Some(store) => store
                .journal_summary()
                .await
                .map_or((0, None), |j| (j.bytes, j.oldest_enqueued_at)),
            None => (0, None),
        };
        let oldest = match (oldest_in_memory, oldest_on_disk) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Backlog {
            in_memory,
            spilled: s.spilled.load(Ordering::Relaxed),
            memory_bytes,
            journal_bytes,
            oldest_age: oldest
                .and_then(|t| (now - t).to_std().ok())
                .unwrap_or_default(),
            concurrency_limit: s.in_flight.current() as u64,
        }
    }
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
/// graceful stop, e.g. a start that failed halfway); journaled events stay journaled.
pub struct Outbox {
    shared: Arc<Shared>,
    dispatcher: TaskGuard,
    stop: oneshot::Sender<Instant>,
}

impl Outbox {
    /// Starts an outbox that keeps events in memory only. Must be called within a tokio
    /// runtime.
    pub fn start(api: ApiClient, opts: OutboxOptions) -> Outbox {
        Self::start_inner(api, opts, None, 1, 0)
    }

    /// Starts an outbox that journals events in `store`, and delivers first what an earlier
    /// run left there. Must be called within a tokio runtime.
    pub async fn start_durable(
        api: ApiClient,
        opts: OutboxOptions,
        store: Store,
    ) -> Result<Outbox, StoreError> {
        let summary = store.journal_summary().await?;
        if summary.events > 0 {
            tracing::info!(
                events = summary.events,
                bytes = summary.bytes,
                "Delivering {} events left in the state store by an earlier run",
                summary.events
            );
        }
        let outbox = Self::start_inner(api, opts, Some(store), summary.max_id + 1, summary.events);
        Ok(outbox)
    }

    fn start_inner(
        api: ApiClient,
        opts: OutboxOptions,
        store: Option<Store>,
        first_id: u64,
        stored: u64,
    ) -> Outbox {
        let capacity = opts.capacity.clamp(1, Semaphore::MAX_PERMITS);
        let concurrency = opts.concurrency.clamp(1, Semaphore::MAX_PERMITS);
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            api,
            opts,
            store,
            tx,
            slots: Arc::new(Semaphore::new(capacity)),
            in_flight: AdaptiveLimit::new(INITIAL_CONCURRENCY, concurrency),
            hold_until: Mutex::new(None),
            accepting: AtomicBool::new(true),
            flushing: watch::Sender::new(false),
            pending: Mutex::new(HashMap::new()),
            queued: AtomicUsize::new(0),
            spilled: AtomicU64::new(stored),
            next_id: AtomicU64::new(first_id),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
        });
        let dispatcher = Dispatcher {
            shared: shared.clone(),
            tasks: JoinSet::new(),
            running: HashMap::new(),
            cursor: 0,
            earlier_run: first_id - 1,
            unjournaled: Vec::new(),
            journal_due: None,
        };
        let task = tokio::spawn(dispatcher.run(rx, stop_rx).with_current_subscriber());
        Outbox {
            shared,
            dispatcher: TaskGuard::new(task),
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
            spilled: s.spilled.load(Ordering::Relaxed),
            concurrency_limit: s.in_flight.current(),
        }
    }

    /// Stops accepting events and delivers what is pending for at most `flush_within`.
    /// Then what is left stays journaled (with a store whose last commit succeeded) or is
    /// abandoned, each logged.
    pub async fn shutdown(self, flush_within: Duration) -> FlushReport {
        let started = Instant::now();
        let Outbox {
            shared,
            dispatcher,
            stop,
        } = self;
        shared.accepting.store(false, Ordering::Release);
        let spilled_at_start = shared.spilled.load(Ordering::Acquire) as usize;
        let pending_at_start =
            shared.pending_map().len() + shared.queued.load(Ordering::Relaxed) + spilled_at_start;
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
        // With a store, what is left is journaled already; a last commit tells whether the
        // journal holds it (a failing store may have missed some).
        let kept_safely = match &shared.store {
            Some(store) => store.flush().await.unwrap_or(false),
            None => false,
        };
        let mut report = FlushReport {
            pending_at_start,
            elapsed: Duration::ZERO,
            ..FlushReport::default()
        };
        if kept_safely {
            report.kept = left.len() as u64 + shared.spilled.load(Ordering::Acquire);
        } else {
            report.abandoned = left
                .into_iter()
                .map(|(_, p)| {
                    let reason = if shared.store.is_some() {
                        "abandoned at shutdown: the state store cannot be written"
                    } else {
                        "abandoned at shutdown"
                    };
                    log_lost(p.rule_id, &p.trigger_ref, &p.scheduled_at, reason);
                    shared.count_lost(LossReason::Abandoned, StatusClass::None);
                    AbandonedEvent {
                        rule_id: p.rule_id,
                        trigger_ref: p.trigger_ref.to_string(),
                        scheduled_at: p.scheduled_at,
                    }
                })
                .collect();
            // Spilled ones were journaled by earlier commits, or lost with them.
            report.kept = shared.spilled.load(Ordering::Acquire);
        }
        report.delivered = shared.delivered.load(Ordering::Relaxed) - delivered_before;
        report.failed = shared.failed.load(Ordering::Relaxed) - failed_before;
        report.elapsed = started.elapsed();
        if report.kept > 0 {
            tracing::info!(
                kept = report.kept,
                "Outbox events kept for the next start: {} events stay in the state store",
                report.kept
            );
        }
        if report.abandoned.is_empty() {
            tracing::info!(
                delivered = report.delivered,
                failed = report.failed,
                kept = report.kept,
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

/// The dispatcher task: starts a delivery per event, loads spilled events back as slots
/// free up, and holds the journal to its limits.
struct Dispatcher {
    shared: Arc<Shared>,
    tasks: JoinSet<u64>,
    /// Delivery tasks by event id, to stop one whose event the journal dropped.
    running: HashMap<u64, AbortHandle>,
    /// The last journal id a refill looked at.
    cursor: u64,
    /// Ids up to this were journaled by an earlier run: all are to be loaded.
    earlier_run: u64,
    /// Events taken but not journaled yet, and when the first of them was taken.
    unjournaled: Vec<StoredEvent>,
    journal_due: Option<Instant>,
}

impl Dispatcher {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Msg>,
        mut stop: oneshot::Receiver<Instant>,
    ) {
        let mut stop_live = true;
        let mut trim_every = tokio::time::interval(TRIM_EVERY);
        trim_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // At most one load and one trim in flight, each a request to the store's thread.
        let mut loading: Option<BoxFuture<'static, Result<Vec<StoredEvent>, StoreError>>> = None;
        let mut trimming: Option<BoxFuture<'static, Result<Vec<DroppedEvent>, StoreError>>> = None;
        let store = self.shared.store.clone();
        let deadline = loop {
            if loading.is_none() && self.refill_wanted() {
                loading = Some(self.load());
            }
            tokio::select! {
                d = &mut stop, if stop_live => match d {
                    Ok(deadline) => break deadline,
                    // Only while the Outbox is being dropped, which aborts this task too.
                    Err(_) => stop_live = false,
                },
                Some(msg) = rx.recv() => self.receive(msg),
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Ok(id) = done {
                        self.running.remove(&id);
                    }
                }
                rows = async { loading.as_mut().expect("enabled when loading").await }, if loading.is_some() => {
                    loading = None;
                    self.refill(rows);
                }
                _ = trim_every.tick(), if store.is_some() && trimming.is_none() => {
                    trimming = Some(self.trim_request());
                }
                dropped = async { trimming.as_mut().expect("enabled when trimming").await }, if trimming.is_some() => {
                    trimming = None;
                    self.trimmed(dropped);
                }
                _ = tokio::time::sleep_until(self.journal_due.unwrap_or_else(Instant::now)), if self.journal_due.is_some() => {
                    self.flush_journal();
                }
            }
        };
        self.shared.flushing.send_replace(true);
        rx.close();
        while let Ok(msg) = rx.try_recv() {
            self.receive(msg);
        }
        // Everything pending is journaled now, before the flush, so that what the flush
        // does not deliver stays for the next start.
        self.flush_journal();
        let tasks = &mut self.tasks;
        let drained = tokio::time::timeout_at(deadline, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            self.tasks.shutdown().await;
        }
    }

    fn receive(&mut self, msg: Msg) {
        match msg {
            Msg::Jobs(jobs) => {
                self.shared.track(&jobs, false);
                self.shared.queued.fetch_sub(jobs.len(), Ordering::Relaxed);
                if self.shared.store.is_some() {
                    self.unjournaled
                        .extend(jobs.iter().map(|j| stored(j.id, &j.event, j.enqueued_at)));
                    self.journal_due
                        .get_or_insert_with(|| Instant::now() + JOURNAL_AFTER);
                    if self.unjournaled.len() >= JOURNAL_BATCH {
                        self.flush_journal();
                    }
                }
                for job in jobs {
                    self.spawn(job);
                }
            }
            Msg::Spill(events) => {
                if let Some(store) = &self.shared.store {
                    store.insert_events(events, true);
                }
            }
        }
    }

    /// Journals the taken events that are still undelivered.
    fn flush_journal(&mut self) {
        self.journal_due = None;
        if !self.unjournaled.is_empty() {
            self.shared.journal(std::mem::take(&mut self.unjournaled));
        }
    }

    fn spawn(&mut self, job: Job) {
        let id = job.id;
        let handle = self
            .tasks
            .spawn(deliver(self.shared.clone(), job).with_current_subscriber());
        self.running.insert(id, handle);
    }

    /// Whether to load spilled events back now: some wait, and a batch of slots is free.
    fn refill_wanted(&self) -> bool {
        self.shared.store.is_some()
            && self.shared.spilled.load(Ordering::Acquire) > 0
            && self.shared.slots.available_permits() >= REFILL_BATCH.min(self.shared.opts.capacity)
    }

    /// Asks the store for the next spilled events.
    fn load(&self) -> BoxFuture<'static, Result<Vec<StoredEvent>, StoreError>> {
        let store = self.shared.store.clone().expect("refills need a store");
        let limit = self.shared.slots.available_permits().min(REFILL_BATCH);
        let (cursor, earlier_run) = (self.cursor, self.earlier_run);
        Box::pin(async move { store.load_events(cursor, earlier_run, limit).await })
    }

    fn refill(&mut self, rows: Result<Vec<StoredEvent>, StoreError>) {
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "Cannot load spilled events from the state store");
                return;
            }
        };
        if rows.is_empty() {
            // Nothing past the cursor: look from the start once more (an event spilled out
            // of id order), and if that finds nothing either, nothing is spilled.
            if self.cursor == 0 {
                self.shared.spilled.store(0, Ordering::Release);
            }
            self.cursor = 0;
            return;
        }
        let mut jobs = Vec::with_capacity(rows.len());
        for row in rows {
            self.cursor = row.id;
            if self.shared.pending_map().contains_key(&row.id) {
                continue;
            }
            let _ = self
                .shared
                .spilled
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            let payload = match Payload::from_text(row.payload) {
                Ok(p) => p,
                Err(_) => {
                    log_lost(
                        row.rule_id,
                        &row.trigger_ref,
                        &row.scheduled_at,
                        "unreadable in the state store",
                    );
                    self.shared
                        .count_lost(LossReason::Rejected, StatusClass::None);
                    if let Some(store) = &self.shared.store {
                        store.delete_events(vec![row.id]);
                    }
                    continue;
                }
            };
            let Ok(slot) = self.shared.slots.clone().try_acquire_owned() else {
                // Cannot happen (only refills take slots without the clock's say); keep it
                // for the next refill.
                self.cursor = row.id - 1;
                self.shared.spilled.fetch_add(1, Ordering::AcqRel);
                break;
            };
            jobs.push(Job {
                id: row.id,
                event: Event {
                    rule_id: row.rule_id,
                    trigger_ref: row.trigger_ref.into(),
                    payload,
                    scheduled_at: row.scheduled_at,
                },
                enqueued_at: row.enqueued_at,
                _slot: slot,
            });
        }
        self.shared.track(&jobs, true);
        for job in jobs {
            self.spawn(job);
        }
    }

    /// Asks the store to hold the journal to `max_age` and `max_bytes`.
    fn trim_request(&self) -> BoxFuture<'static, Result<Vec<DroppedEvent>, StoreError>> {
        let store = self.shared.store.clone().expect("trims need a store");
        let opts = &self.shared.opts;
        let older_than = chrono::Duration::from_std(opts.max_age)
            .ok()
            .and_then(|age| Utc::now().checked_sub_signed(age))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let max_bytes = opts.max_bytes;
        Box::pin(async move { store.trim_events(older_than, max_bytes).await })
    }

    /// What the store dropped: their deliveries stop, and each is logged as lost.
    fn trimmed(&mut self, dropped: Result<Vec<DroppedEvent>, StoreError>) {
        let dropped = match dropped {
            Ok(dropped) => dropped,
            Err(e) => {
                tracing::error!(error = %e, "Cannot hold the state store's outbox to its limits");
                return;
            }
        };
        for DroppedEvent {
            id,
            rule_id,
            trigger_ref,
            scheduled_at,
            reason,
            spilled,
        } in dropped
        {
            let in_memory = self.shared.pending_map().remove(&id).is_some();
            if in_memory {
                if let Some(task) = self.running.remove(&id) {
                    task.abort();
                }
            } else if (spilled || id <= self.earlier_run) && id > self.cursor {
                // On disk only, never loaded.
                let _ =
                    self.shared
                        .spilled
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            } else {
                // Its delivery ended (and logged how) while the trim ran.
                continue;
            }
            let (reason, lost) = match reason {
                DropReason::TooOld => (
                    "older than the outbox's maximum age (ATTUNE_OUTBOX_MAX_AGE)",
                    LossReason::TooOld,
                ),
                DropReason::OverSize => (
                    "the outbox's journal is over its size limit (ATTUNE_OUTBOX_MAX_BYTES); oldest dropped first",
                    LossReason::OverSize,
                ),
            };
            self.shared.count_lost(lost, StatusClass::None);
            log_lost(rule_id, &trigger_ref, &scheduled_at, reason);
        }
    }
}

async fn deliver(shared: Arc<Shared>, job: Job) -> u64 {
    let opts = &shared.opts;
    let event = &job.event;
    let mut flushing = shared.flushing.subscribe();
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let now_flushing = *flushing.borrow();
        shared.wait_if_held(now_flushing).await;
        let result = {
            let _slot = shared.in_flight.acquire().await;
            shared.api.create_event(event).await
        };
        match &result {
            Ok(_) => shared.in_flight.succeeded(),
            Err(e) if e.is_timeout() || matches!(e.status(), Some(429 | 503)) => {
                shared.in_flight.overloaded();
                if let Some(ra) = e.retry_after() {
                    shared.hold(ra.min(opts.max_backoff));
                }
            }
            Err(_) => {}
        }
        let error = match result {
            Ok(event_id) => {
                shared.delivered.fetch_add(1, Ordering::Relaxed);
                shared.api.metrics().event_delivered();
                shared.finish(job.id);
                // Per event: debug, not info — at 10,000 fires a second a line each would
                // be 10,000 lines a second at the default level.
                tracing::debug!(
                    event_id,
                    rule_id = event.rule_id,
                    trigger_ref = %event.trigger_ref,
                    attempts = attempt,
                    "Event created"
                );
                return job.id;
            }
            Err(e) => e,
        };
        let age = (Utc::now() - job.enqueued_at).to_std().unwrap_or_default();
        let retryable = error.is_transient() || error.status() == Some(401);
        if !retryable || age >= opts.max_age {
            let (reason, lost) = if !retryable {
                ("not retryable", LossReason::Rejected)
            } else {
                (
                    "older than the outbox's maximum age (ATTUNE_OUTBOX_MAX_AGE)",
                    LossReason::TooOld,
                )
            };
            log_failed(event, attempt, &error, reason);
            shared.count_lost(lost, error.status_class());
            shared.finish(job.id);
            return job.id;
        }
        shared.api.metrics().event_retried(error.status_class());
        let delay = opts.retry_delay(attempt, error.retry_after());
        tracing::warn!(
            rule_id = event.rule_id,
            trigger_ref = %event.trigger_ref,
            attempt,
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
