//! The clock: the host owns time, and one scheduler runs every rule's timer.
//!
//! # Design
//!
//! One structure holds every running timer: a map from rule id to its state, and an ordered
//! set of `(deadline, rule id, generation)` keys — the next fire of every rule. One task
//! sleeps until the earliest deadline (or until a [`Notify`] says an earlier one arrived, in
//! the style of mini-redis's `db.rs`), takes every key that is due, hands those fires to the
//! [`EventSink`] and puts each rule's next key back. There is no task per rule, so 100,000
//! rules cost 100,000 small map entries.
//!
//! # Fires are built ahead
//!
//! A fire takes two component calls (the tick after it, then the payload, which names that
//! tick), several microseconds each: 10,000 rules due in the same second would take tens of
//! milliseconds to work through at the deadline. So the clock builds each rule's next fire
//! *ahead*, right after the previous one (in slices of at most [`BUILD_SLICE`], cut to
//! what fits before the next deadline), as if it were released exactly on time:
//! its payload says it fired at its tick. At the deadline the clock only hands prebuilt
//! events to the sink, in chunks of [`RELEASE_CHUNK`]. A prebuilt fire is used only if its
//! chunk is judged within [`ON_TIME`] of its tick; a fire that is later than that (an overloaded machine, a timer just started or
//! just given a new component) is computed when it fires, with the real time in its
//! payload. [`Clock::take_lateness`] tells how late fires reached the sink.
//!
//! tokio's timer wakes on whole milliseconds, so the clock sleeps on it until a millisecond
//! before a deadline and the rest on a blocking thread, which the OS wakes within tens of
//! microseconds.
//!
//! The generation tells a stale key from a live one: starting or replacing a rule's timer
//! gives it a new generation, so a fire that was computed for an older timer (while the
//! lock was released) is dropped instead of resurrecting it.
//!
//! # Time
//!
//! Deadlines are [`tokio::time::Instant`]s (monotonic, and pausable in tests). UTC instants,
//! which is what the component speaks, map onto them through one anchor taken when the clock
//! starts: `instant(t) = anchor.instant + (t − anchor.utc)`. So an interval rule started at
//! `s` fires for the k-th time at exactly `s + k × interval` on the monotonic clock: the
//! component computes absolute ticks from the rule's start time, and the clock never adds
//! an interval to "now". The anchor is taken anew when the wall clock steps or the machine
//! was suspended (see [`wall`]).
//!
//! # Late fires
//!
//! If the clock falls behind (the process was stopped, the machine was overloaded), a rule
//! whose tick has passed fires **once**, for the tick it missed (`scheduled_at` is that tick,
//! `fired_at` is now), and its next fire is the schedule's first tick strictly after now. The
//! ticks in between are skipped — no burst of catch-up events.
//!
//! # Restarts and missed ticks
//!
//! With a state store, each timer's `started_at`, last tick and `execution_count` are saved
//! in batches (every [`PERSIST_EVERY`], and at shutdown). A rule restored with the same
//! schedule ([`Clock::prepare_restored`]) keeps its phase and count, and the ticks it missed
//! while the daemon was down go through the [`Misfire`] policy: a catch-up fire is computed
//! when it fires (never prebuilt), logged as `Catch-up fire for rule` with the number of
//! ticks it stands for, and under `all` paced [`CATCH_UP_PACE`] apart.
//!
//! # Faults
//!
//! A component call that fails (trap, CPU deadline, bad answer) is logged and retried once;
//! the runtime has discarded the failed instance, so the retry runs on a clean one. A second
//! failure stops that rule's timer alone (when building ahead, before its deadline); every
//! other rule carries on.
//!
//! # Swapping the component
//!
//! [`Clock::replace_runtime`] puts a new component and every running timer's schedule (as
//! the new component normalized it) in place at once, between two passes of the clock: no
//! fire is being computed while it happens. Deadlines, `started_at` and `execution_count`
//! stay as they are, and fires the old component built ahead are dropped, so the fire
//! already scheduled is the new component's first (it builds the payload and names the
//! next fire). The checks that come before are in
//! [`crate::schedule::swap`].

mod anchor;
pub mod misfire;
mod wait;
pub mod wall;

use std::collections::VecDeque;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::instrument::WithSubscriber;
use tracing::{debug, error, info, warn};

use super::event::{Event, EventSink, Payload};
use anchor::Anchor;
use misfire::{Misfire, MisfirePolicy, Plan};
use wait::PreciseWait;
use wall::{SystemWall, WallClock, CHECK_EVERY, STEP_THRESHOLD};

use crate::component::fault::{catch_host_panic, retry_after_fault};
use crate::component::{CallError, Fire, Schedule, TimerKind, TimerRuntime};
use crate::store::{RuleState, Store};
use crate::support::blocking::{map_blocking, spawn_blocking_traced};
use crate::telemetry::{FireOutcome, Metrics};

/// At most this many late fires are computed in one pass, so a huge backlog is worked off
/// in slices and new deadlines are looked at in between.
const MAX_BATCH: usize = 4096;
/// Fires prebuilt in one pass at most: about a millisecond of component work on two cores.
const BUILD_SLICE: usize = 256;
/// With a deadline nearer than this, a prebuild slice is cut to what fits before it
/// (at least one fire, so prebuilding keeps up even when deadlines are dense).
const BUILD_HORIZON: Duration = Duration::from_millis(3);
/// Kept free before a deadline when cutting a slice.
const BUILD_MARGIN: Duration = Duration::from_micros(300);
/// A prebuilt fire is released only this close to its tick: its payload says it fired at
/// the tick itself. Later than that, the payload is built when it fires, with the real time.
/// 5 ms: handing over 10,000 fires due together takes about a millisecond on 2 cores, and
/// a fire found late costs a hundred times more (two component calls, at the deadline).
pub const ON_TIME: Duration = Duration::from_millis(5);
/// A big release is handed over in chunks of this many fires, and "now" read again after
/// each to judge [`ON_TIME`] for the next.
const RELEASE_CHUNK: usize = 256;
/// Time allowed for collecting and handing over one chunk (it takes tens of microseconds).
const HAND_OVER: Duration = Duration::from_micros(100);
/// How often changed timer states are saved to the store (and at shutdown). Every second
/// cost about 4 KB of disk writes per fire with 100,000 rules (each save rewrites the
/// table pages its rows are on, spread over the whole table); every 5 s, a fifth of it.
/// A crash loses at most this much state: those ticks count as missed after the restart.
pub const PERSIST_EVERY: Duration = Duration::from_secs(5);
/// The clock task begins a pass at least this often, even with nothing due (see
/// [`Clock::since_last_turn`]).
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Catch-up fires of one rule under `ATTUNE_MISFIRE=all` are at least this far apart.
pub const CATCH_UP_PACE: Duration = Duration::from_millis(10);

/// What a clock starts with besides its component and sink. Defaults: no store, nothing
/// restored, [`Misfire::default`], the current wall time.
#[derive(Default)]
pub struct ClockOptions {
    /// Where timer states are saved.
    pub store: Option<Store>,
    /// Timer states saved by an earlier run, by rule id.
    pub restored: HashMap<i64, RuleState>,
    pub misfire: Misfire,
    /// The current UTC time (tests pin it); `None`: the wall clock.
    pub utc_now: Option<DateTime<Utc>>,
    /// The wall clock to follow (see [`wall`]). `None`: the system's, unless `utc_now` is
    /// pinned (then steps are not looked for).
    pub wall: Option<Arc<dyn WallClock>>,
    /// Where fires, their lateness and wall-clock steps are counted.
    pub metrics: Metrics,
}

/// The scheduler. Cheap to clone: every clone drives the same timers.
#[derive(Clone)]
pub struct Clock {
    shared: Arc<Shared>,
}

struct Shared {
    /// The component. Replaced only by [`Clock::replace_runtime`], together with every
    /// timer's schedule, while `batch` is held.
    runtime: RwLock<Arc<TimerRuntime>>,
    /// Held by the clock task from taking due fires until they are committed, and by a
    /// runtime swap: a swap never lands in the middle of a batch.
    batch: tokio::sync::Mutex<()>,
    sink: Arc<dyn EventSink>,
    sensor_ref: String,
    /// Replaced only when the wall clock steps (see [`wall`]), while `batch` is held.
    anchor: RwLock<Anchor>,
    state: Mutex<State>,
    /// Wakes the clock task when an earlier deadline arrives or on shutdown.
    notify: Notify,
    /// How many timers are running; lets a caller wait for "nothing left to fire".
    running: watch::Sender<usize>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// How late each fire reached the sink, in nanoseconds (see [`Clock::take_lateness`]).
    lateness: Mutex<Histogram<u64>>,
    store: Option<Store>,
    /// States of an earlier run not yet claimed by a rule ([`Clock::restored_state`]).
    restored: Mutex<HashMap<i64, RuleState>>,
    misfire: Misfire,
    /// The persister and the wall-clock follower.
    helpers: Mutex<Vec<JoinHandle<()>>>,
    metrics: Metrics,
    /// When the clock task last began a pass, in nanoseconds after `born` (see
    /// [`Clock::since_last_turn`]).
    last_turn: AtomicU64,
    born: Instant,
}

#[derive(Default)]
struct State {
    timers: HashMap<i64, Timer>,
    /// Every running timer's next deadline, with the fire built for it once it is (see
    /// [`Ready`]). The first key is the next thing to do. Keeping the prebuilt fire here,
    /// not in [`Timer`], lets a release pop events in deadline order without touching the
    /// timers until they are handed over.
    queue: BTreeMap<Key, Option<Ready>>,
    /// One shared copy of each trigger ref, so events share a hot reference count.
    trigger_refs: HashMap<String, Arc<str>>,
    /// Timers whose next fire is to be prebuilt: `(rule id, generation, tick)`, oldest
    /// first. Stale entries (the timer fired late or changed since) are skipped.
    builds: VecDeque<(i64, u64, DateTime<Utc>)>,
    next_generation: u64,
    stopped: bool,
    /// Rules whose timer state changed since it was last saved (only with a store).
    dirty: HashSet<i64>,
    /// States of timers that ended (no fire left) since the last save.
    ended: Vec<RuleState>,
    /// Why the timers the component failed while firing were stopped, by rule id; cleared
    /// when the rule's timer starts again or the rule stops (see [`Clock::fault`]).
    faults: HashMap<i64, String>,
}

struct Timer {
    generation: u64,
    rule_ref: Arc<str>,
    /// `schedule.trigger_ref`, shared by every event of this timer.
    trigger_ref: Arc<str>,
    schedule: Arc<Schedule>,
    started_at: DateTime<Utc>,
    /// The next tick, as the component named it.
    next_at: DateTime<Utc>,
    /// `next_at` on the monotonic clock: the key this timer has in the queue.
    deadline: Instant,
    /// Fires so far.
    execution_count: u64,
    /// The tick it last fired for.
    last_tick: Option<DateTime<Utc>>,
    /// Missed ticks still to fire (see [`misfire`]).
    catch_up: Option<CatchUp>,
}

/// A timer's missed ticks being fired.
#[derive(Debug, Clone)]
struct CatchUp {
    /// How many missed ticks the next fire stands for.
    stands_for: u64,
    /// The catch-up ticks after the next one, oldest first.
    backlog: VecDeque<DateTime<Utc>>,
}

impl CatchUp {
    /// The catch-up of a plan's `fire` ticks (the first is the timer's next tick); `None`
    /// when there are none.
    fn new(fire: Vec<DateTime<Utc>>, missed: u64, policy: MisfirePolicy) -> Option<CatchUp> {
        if fire.is_empty() {
            return None;
        }
        let mut backlog: VecDeque<_> = fire.into();
        backlog.pop_front();
        Some(CatchUp {
            // Under `all` each fire is its own tick; under `latest` one stands for all.
            stands_for: if policy == MisfirePolicy::All {
                1
            } else {
                missed
            },
            backlog,
        })
    }
}

impl Timer {
    fn state(&self, rule_id: i64) -> RuleState {
        RuleState {
            rule_id,
            trigger_ref: self.schedule.trigger_ref.clone(),
            spec: self.schedule.spec.clone(),
            started_at: self.started_at,
            last_tick: self.last_tick,
            execution_count: self.execution_count,
        }
    }
}

/// A queue key: `(deadline, rule id, generation)`.
type Key = (Instant, i64, u64);

/// A fire built ahead of its deadline, as if released exactly on time: the payload's
/// `fired_at` is the tick. It is released only within [`ON_TIME`] of the tick.
struct Ready {
    event: Event,
    /// The tick after this one (`next_fire_at` in the payload), and its deadline.
    after: Option<(DateTime<Utc>, Instant)>,
}

impl State {
    fn intern(&mut self, trigger_ref: &str) -> Arc<str> {
        if let Some(shared) = self.trigger_refs.get(trigger_ref) {
            return shared.clone();
        }
        let shared: Arc<str> = trigger_ref.into();
        self.trigger_refs
            .insert(trigger_ref.to_string(), shared.clone());
        shared
    }

    /// Whether the timer's next fire still waits to be prebuilt.
    fn needs_build(&self, rule_id: i64, generation: u64, tick: DateTime<Utc>) -> bool {
        self.timers.get(&rule_id).is_some_and(|t| {
            t.generation == generation
                && t.catch_up.is_none()
                && t.next_at == tick
                && matches!(
                    self.queue.get(&(t.deadline, rule_id, generation)),
                    Some(None)
                )
        })
    }
}

impl Timer {
    /// The job that computes this timer's next fire.
    fn job(&self, rule_id: i64) -> Job {
        Job {
            rule_id,
            generation: self.generation,
            rule_ref: self.rule_ref.clone(),
            schedule: self.schedule.clone(),
            started_at: self.started_at,
            tick: self.next_at,
            deadline: self.deadline,
            execution_count: self.execution_count + 1,
            fired_at: None,
            catch_up: self.catch_up.as_ref().map(|c| c.stands_for),
            next_override: self
                .catch_up
                .as_ref()
                .and_then(|c| c.backlog.front().copied()),
        }
    }
}

/// A timer ready to be installed: the rule's schedule and its first fire, computed without
/// holding any lock (see [`Clock::prepare`]).
#[derive(Debug, Clone)]
pub struct Prepared {
    rule_id: i64,
    rule_ref: Arc<str>,
    schedule: Arc<Schedule>,
    started_at: DateTime<Utc>,
    first: Option<DateTime<Utc>>,
    /// Carried over from an earlier run (0 and `None` for a new timer).
    execution_count: u64,
    last_tick: Option<DateTime<Utc>>,
    /// Missed ticks to fire first, and how many were missed.
    catch_up: Vec<DateTime<Utc>>,
    missed: u64,
}

impl Prepared {
    pub fn rule_id(&self) -> i64 {
        self.rule_id
    }

    /// The first fire; `None` when the schedule has no fire left at all.
    pub fn first_fire(&self) -> Option<DateTime<Utc>> {
        self.first
    }
}

/// What the clock knows about one running timer.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerStatus {
    pub trigger_ref: String,
    pub kind: TimerKind,
    /// The normalized schedule (a JSON object's text) and its time zone.
    pub spec: String,
    pub timezone: String,
    /// When the timer started; interval ticks count from it.
    pub started_at: DateTime<Utc>,
    pub next_fire_at: DateTime<Utc>,
    /// Fires so far.
    pub execution_count: u64,
    /// The tick it last fired for.
    pub last_tick: Option<DateTime<Utc>>,
    /// Changes whenever the timer is (re)started.
    pub generation: u64,
}

/// Why [`Clock::replace_runtime`] changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplaceError {
    #[error("the clock is stopped")]
    Stopped,
    /// Rules whose timer started, or was replaced, after the schedules were computed.
    #[error("timers changed while the new schedules were computed (rule ids {0:?})")]
    Changed(Vec<i64>),
}

/// One fire to compute: due now, or to be prebuilt.
struct Job {
    rule_id: i64,
    generation: u64,
    rule_ref: Arc<str>,
    schedule: Arc<Schedule>,
    started_at: DateTime<Utc>,
    tick: DateTime<Utc>,
    deadline: Instant,
    execution_count: u64,
    /// When the fire happens: the tick for a prebuilt fire; `None` for "now, when the
    /// component is called".
    fired_at: Option<DateTime<Utc>>,
    /// A catch-up fire: how many missed ticks it stands for.
    catch_up: Option<u64>,
    /// The next fire, when already known (the next catch-up tick).
    next_override: Option<DateTime<Utc>>,
}

/// What the component said about one fire.
struct Fired {
    fired_at: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
    payload: Payload,
}

impl Clock {
    /// Starts the clock, anchored at the current wall time. Must be called inside a tokio
    /// runtime: it spawns the clock task.
    pub fn spawn(runtime: Arc<TimerRuntime>, sink: Arc<dyn EventSink>, sensor_ref: String) -> Self {
        Self::spawn_with(runtime, sink, sensor_ref, ClockOptions::default())
    }

    /// Starts the clock with `utc_now` as the current UTC time (tests pin it).
    pub fn spawn_at(
        runtime: Arc<TimerRuntime>,
        sink: Arc<dyn EventSink>,
        sensor_ref: String,
        utc_now: DateTime<Utc>,
    ) -> Self {
        Self::spawn_with(
            runtime,
            sink,
            sensor_ref,
            ClockOptions {
                utc_now: Some(utc_now),
                ..ClockOptions::default()
            },
        )
    }

    /// Starts the clock with a store, restored states and a misfire policy.
    pub fn spawn_with(
        runtime: Arc<TimerRuntime>,
        sink: Arc<dyn EventSink>,
        sensor_ref: String,
        options: ClockOptions,
    ) -> Self {
        let ClockOptions {
            store,
            restored,
            misfire,
            utc_now,
            wall,
            metrics,
        } = options;
        let wall = match (wall, utc_now) {
            (Some(wall), _) => Some(wall),
            (None, None) => Some(Arc::new(SystemWall) as Arc<dyn WallClock>),
            (None, Some(_)) => None,
        };
        let utc_now = utc_now.unwrap_or_else(|| wall.as_ref().map_or_else(Utc::now, |w| w.now()));
        let shared = Arc::new(Shared {
            runtime: RwLock::new(runtime),
            batch: tokio::sync::Mutex::new(()),
            sink,
            sensor_ref,
            anchor: RwLock::new(Anchor {
                utc: utc_now,
                instant: Instant::now(),
            }),
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            running: watch::Sender::new(0),
            task: Mutex::new(None),
            lateness: Mutex::new(new_lateness_histogram()),
            store,
            restored: Mutex::new(restored),
            misfire,
            helpers: Mutex::new(Vec::new()),
            metrics,
            last_turn: AtomicU64::new(0),
            born: Instant::now(),
        });
        let task = tokio::spawn(run(shared.clone()).with_current_subscriber());
        *shared.task.lock().expect("clock task lock") = Some(task);
        let mut helpers = shared.helpers.lock().expect("clock helpers lock");
        if shared.store.is_some() {
            helpers.push(tokio::spawn(
                persist(shared.clone()).with_current_subscriber(),
            ));
        }
        if let Some(wall) = wall {
            helpers.push(tokio::spawn(
                follow_wall(shared.clone(), wall).with_current_subscriber(),
            ));
        }
        drop(helpers);
        Self { shared }
    }

    /// The state an earlier run saved for a rule, if any is left unclaimed.
    pub fn restored_state(&self, rule_id: i64) -> Option<RuleState> {
        self.shared
            .restored
            .lock()
            .expect("clock restored lock")
            .get(&rule_id)
            .cloned()
    }

    /// Forgets the saved state of every rule not in `keep` (after the first snapshot: rules
    /// that went away while the daemon was down), and every unclaimed restored state.
    pub fn retain_states(&self, keep: Vec<i64>) {
        self.shared
            .restored
            .lock()
            .expect("clock restored lock")
            .clear();
        if let Some(store) = &self.shared.store {
            store.retain_rules(keep);
        }
    }

    /// The current UTC time as the clock sees it (anchor + monotonic elapsed time).
    pub fn now(&self) -> DateTime<Utc> {
        self.shared.anchor().now()
    }

    /// The component in use now (see [`replace_runtime`](Self::replace_runtime)).
    pub fn runtime(&self) -> Arc<TimerRuntime> {
        self.shared.runtime()
    }

    /// Replaces the component and the schedule of every running timer, atomically, between
    /// two batches of fires. `schedules` maps each rule id to the generation of the timer
    /// it was validated for (see [`TimerStatus::generation`]) and its new schedule. Timers
    /// keep their deadline, `started_at` and `execution_count`: the fire already scheduled
    /// runs on the new component, which also names the fires after it.
    ///
    /// Refused (nothing changes) when a running timer has no new schedule or one made for
    /// another generation — the rules changed after they were validated; the error lists
    /// those rule ids. Returns the component replaced.
    pub async fn replace_runtime(
        &self,
        runtime: Arc<TimerRuntime>,
        mut schedules: HashMap<i64, (u64, Schedule)>,
    ) -> Result<Arc<TimerRuntime>, ReplaceError> {
        let _batch = self.shared.batch.lock().await;
        let mut state = self.lock();
        if state.stopped {
            return Err(ReplaceError::Stopped);
        }
        let mut stale: Vec<i64> = state
            .timers
            .iter()
            .filter(|(id, t)| schedules.get(id).is_none_or(|(g, _)| *g != t.generation))
            .map(|(id, _)| *id)
            .collect();
        if !stale.is_empty() {
            stale.sort_unstable();
            return Err(ReplaceError::Changed(stale));
        }
        let state = &mut *state;
        state.builds.clear();
        // Built by the old component: the new one builds the fire already scheduled.
        for slot in state.queue.values_mut() {
            *slot = None;
        }
        let ids: Vec<i64> = state.timers.keys().copied().collect();
        for id in ids {
            if let Some((_, schedule)) = schedules.remove(&id) {
                let trigger_ref = state.intern(&schedule.trigger_ref);
                let timer = state.timers.get_mut(&id).expect("listed above");
                timer.trigger_ref = trigger_ref;
                timer.schedule = Arc::new(schedule);
                // The saved state names the schedule: save it with the new one.
                if self.shared.store.is_some() {
                    state.dirty.insert(id);
                }
            }
            let timer = &state.timers[&id];
            state
                .builds
                .push_back((id, timer.generation, timer.next_at));
        }
        self.shared.notify.notify_one();
        let mut current = self.shared.runtime.write().expect("clock runtime lock");
        Ok(std::mem::replace(&mut *current, runtime))
    }

    /// Computes a new timer's first fire: a component call, made without any lock. Call it
    /// from a blocking thread, never an async worker (see [`map_blocking`]). The timer starts
    /// now: interval ticks count from here.
    pub fn prepare(
        &self,
        rule_id: i64,
        rule_ref: &str,
        schedule: Schedule,
    ) -> Result<Prepared, CallError> {
        let started_at = self.now();
        let runtime = self.runtime();
        let first = with_retry(rule_id, "next-fire", || {
            runtime.next_fire(&schedule, started_at, started_at)
        })?;
        Ok(Prepared {
            rule_id,
            rule_ref: rule_ref.into(),
            schedule: Arc::new(schedule),
            started_at,
            first,
            execution_count: 0,
            last_tick: None,
            catch_up: Vec::new(),
            missed: 0,
        })
    }

    /// Like [`prepare`](Self::prepare), for a rule whose state an earlier run saved, with
    /// the same schedule: its phase (`started_at`) and count carry on, and the ticks it
    /// missed go through the misfire policy. From a blocking thread.
    pub fn prepare_restored(
        &self,
        rule_id: i64,
        rule_ref: &str,
        schedule: Schedule,
        state: &RuleState,
    ) -> Result<Prepared, CallError> {
        self.shared
            .restored
            .lock()
            .expect("clock restored lock")
            .remove(&rule_id);
        let now = self.now();
        let runtime = self.runtime();
        let started_at = state.started_at;
        let next = |after: DateTime<Utc>| {
            with_retry(rule_id, "next-fire", || {
                runtime.next_fire(&schedule, started_at, after)
            })
        };
        let first = next(state.last_tick.unwrap_or(started_at))?;
        let plan = match first {
            Some(first) => self.shared.misfire.plan(first, now, next)?,
            None => Plan {
                fire: Vec::new(),
                missed: 0,
                exact: true,
                resume: None,
            },
        };
        if plan.missed > 0 {
            info!(
                rule_id,
                trigger_ref = %schedule.trigger_ref,
                ticks_missed = plan.missed,
                ticks_missed_exact = plan.exact,
                catch_up_fires = plan.fire.len(),
                misfire = self.shared.misfire.policy.as_str(),
                "Rule {rule_id} missed {}{} ticks while the sensor was not running; {} catch-up fires",
                if plan.exact { "" } else { "at least " },
                plan.missed,
                plan.fire.len()
            );
        }
        Ok(Prepared {
            rule_id,
            rule_ref: rule_ref.into(),
            first: plan.fire.first().copied().or(plan.resume),
            schedule: Arc::new(schedule),
            started_at,
            execution_count: state.execution_count,
            last_tick: state.last_tick,
            catch_up: plan.fire,
            missed: plan.missed,
        })
    }

    /// Installs a prepared timer, replacing the rule's running timer if it has one (new
    /// phase, count back to 0). Returns the first fire; `None` (nothing installed, any old
    /// timer stopped) when the schedule has no fire left.
    pub fn install(&self, prepared: Prepared) -> Option<DateTime<Utc>> {
        let Prepared {
            rule_id,
            rule_ref,
            schedule,
            started_at,
            first,
            execution_count,
            last_tick,
            catch_up,
            missed,
        } = prepared;
        let mut state = self.lock();
        if state.stopped {
            return None;
        }
        let replaced = remove_timer(&mut state, rule_id).is_some();
        state.faults.remove(&rule_id);
        let Some(next_at) = first else {
            self.publish_len(&state);
            drop(state);
            info!(
                rule_id,
                trigger_ref = %schedule.trigger_ref,
                "Timer for rule {rule_id} not started: its schedule has no fire left"
            );
            return None;
        };
        state.next_generation += 1;
        let generation = state.next_generation;
        // Catch-up fires are due now (computed when they fire, never prebuilt).
        let catch_up = CatchUp::new(catch_up, missed, self.shared.misfire.policy);
        let deadline = if catch_up.is_some() {
            Instant::now()
        } else {
            self.shared.anchor().instant_at(next_at)
        };
        let earliest = state
            .queue
            .first_key_value()
            .is_none_or(|(first, _)| (deadline, rule_id, generation) < *first);
        state.queue.insert((deadline, rule_id, generation), None);
        let trigger_ref = schedule.trigger_ref.clone();
        let shared_ref = state.intern(&trigger_ref);
        state.timers.insert(
            rule_id,
            Timer {
                generation,
                rule_ref,
                trigger_ref: shared_ref,
                schedule,
                started_at,
                next_at,
                deadline,
                execution_count,
                last_tick,
                catch_up,
            },
        );
        if self.shared.store.is_some() {
            state.dirty.insert(rule_id);
        }
        let idle = state.builds.is_empty();
        state.builds.push_back((rule_id, generation, next_at));
        self.publish_len(&state);
        drop(state);
        if earliest || idle {
            self.shared.notify.notify_one();
        }
        info!(
            rule_id,
            trigger_ref = %trigger_ref,
            next_fire_at = %next_at.to_rfc3339(),
            replaced,
            "Timer started for rule"
        );
        Some(next_at)
    }

    /// [`prepare`](Self::prepare) then [`install`](Self::install); from a blocking thread.
    pub fn start(
        &self,
        rule_id: i64,
        rule_ref: &str,
        schedule: Schedule,
    ) -> Result<Option<DateTime<Utc>>, CallError> {
        let prepared = self.prepare(rule_id, rule_ref, schedule)?;
        Ok(self.install(prepared))
    }

    /// Stops a rule's timer and forgets its saved state. `false` when it had none (not an
    /// error).
    pub fn stop(&self, rule_id: i64) -> bool {
        let mut state = self.lock();
        let stopped = remove_timer(&mut state, rule_id).is_some();
        state.faults.remove(&rule_id);
        state.dirty.remove(&rule_id);
        state.ended.retain(|s| s.rule_id != rule_id);
        if stopped {
            self.publish_len(&state);
        }
        drop(state);
        if let Some(store) = &self.shared.store {
            store.delete_rules(vec![rule_id]);
        }
        stopped
    }

    /// Whether the rule has a running timer.
    pub fn contains(&self, rule_id: i64) -> bool {
        self.lock().timers.contains_key(&rule_id)
    }

    /// Running timers.
    pub fn len(&self) -> usize {
        self.lock().timers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the clock knows about a rule's timer.
    pub fn timer(&self, rule_id: i64) -> Option<TimerStatus> {
        self.lock().timers.get(&rule_id).map(|t| TimerStatus {
            trigger_ref: t.schedule.trigger_ref.clone(),
            kind: t.schedule.kind,
            spec: t.schedule.spec.clone(),
            timezone: t.schedule.timezone.clone(),
            started_at: t.started_at,
            next_fire_at: t.next_at,
            execution_count: t.execution_count,
            last_tick: t.last_tick,
            generation: t.generation,
        })
    }

    /// Why the component's failure stopped the rule's timer while firing it, if it did.
    pub fn fault(&self, rule_id: i64) -> Option<String> {
        self.lock().faults.get(&rule_id).cloned()
    }

    /// Timers the component's failures stopped while firing them (see [`Clock::fault`]).
    pub fn faulted(&self) -> usize {
        self.lock().faults.len()
    }

    /// How long ago the clock task last began a pass. It begins one at least every
    /// [`HEARTBEAT`] when nothing is due, so a value well above that means the task is
    /// wedged (or the clock is stopped).
    pub fn since_last_turn(&self) -> Duration {
        let at = Duration::from_nanos(self.shared.last_turn.load(Ordering::Relaxed));
        self.shared.born.elapsed().saturating_sub(at)
    }

    /// How late fires reached the sink since the last call (or the start): for each fire,
    /// the moment the sink had it minus its tick on the monotonic clock, in nanoseconds
    /// (3 significant digits, at most a day). Taking it starts a new one.
    pub fn take_lateness(&self) -> Histogram<u64> {
        let mut h = self.shared.lateness.lock().expect("lateness lock");
        std::mem::replace(&mut *h, new_lateness_histogram())
    }

    /// The number of running timers, updated as it changes.
    pub fn watch_running(&self) -> watch::Receiver<usize> {
        self.shared.running.subscribe()
    }

    /// Stops the clock: no fire starts after this returns. Fires already computed are
    /// handed to the sink first. Idempotent.
    pub async fn shutdown(&self) {
        let helpers = std::mem::take(&mut *self.shared.helpers.lock().expect("clock helpers lock"));
        for helper in helpers {
            helper.abort();
            let _ = helper.await;
        }
        // The last states, before the timers go: a restart carries on from here.
        self.shared.save_states();
        let stopped = {
            let mut state = self.lock();
            state.stopped = true;
            let n = state.timers.len();
            state.timers.clear();
            state.queue.clear();
            state.builds.clear();
            self.publish_len(&state);
            n
        };
        self.shared.notify.notify_one();
        let task = self.shared.task.lock().expect("clock task lock").take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                error!("The clock task failed: {e}");
            }
            info!(timers = stopped, "Clock stopped ({stopped} timers)");
        }
    }

    /// Stops the clock at once, without waiting for its task: what [`ClockGuard`] does when
    /// the clock's owner goes away without a [`shutdown`](Self::shutdown).
    pub fn abort(&self) {
        for helper in std::mem::take(&mut *self.shared.helpers.lock().expect("clock helpers lock"))
        {
            helper.abort();
        }
        {
            let mut state = self.lock();
            state.stopped = true;
            state.timers.clear();
            state.queue.clear();
            state.builds.clear();
            self.publish_len(&state);
        }
        if let Some(task) = self.shared.task.lock().expect("clock task lock").take() {
            task.abort();
        }
    }

    /// A guard that stops this clock when dropped.
    pub fn guard(&self) -> ClockGuard {
        ClockGuard(self.clone())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().expect("clock state lock")
    }

    fn publish_len(&self, state: &State) {
        self.shared.publish_len(state);
    }
}

/// Stops its clock when dropped: the owner of a clock holds one, so the clock's task never
/// outlives it, whatever path the owner leaves by. A graceful [`Clock::shutdown`] first is
/// fine (stopping twice changes nothing).
#[derive(Debug)]
pub struct ClockGuard(Clock);

impl Drop for ClockGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock")
            .field("sensor_ref", &self.shared.sensor_ref)
            .field("anchor", &self.shared.anchor())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Notes that the clock task began a pass (see [`Clock::since_last_turn`]).
    fn turned(&self) {
        let at = u64::try_from(self.born.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_turn.store(at, Ordering::Relaxed);
    }

    fn anchor(&self) -> Anchor {
        *self.anchor.read().expect("clock anchor lock")
    }

    fn runtime(&self) -> Arc<TimerRuntime> {
        self.runtime.read().expect("clock runtime lock").clone()
    }

    fn publish_len(&self, state: &State) {
        self.publish_count(state.timers.len());
    }

    /// Hands the states that changed since the last call to the store.
    fn save_states(&self) {
        let Some(store) = &self.store else {
            return;
        };
        // Under the clock's lock only what is cheap to copy (the schedule is shared): at
        // 10,000 fires a second, building the records there held the clock up for tens of
        // milliseconds every second.
        let (ended, changed) = {
            let mut state = self.state.lock().expect("clock state lock");
            let state = &mut *state;
            let changed: Vec<_> = state
                .dirty
                .drain()
                .filter_map(|id| {
                    let t = state.timers.get(&id)?;
                    Some((
                        id,
                        t.schedule.clone(),
                        t.started_at,
                        t.last_tick,
                        t.execution_count,
                    ))
                })
                .collect();
            (std::mem::take(&mut state.ended), changed)
        };
        let mut states = ended;
        states.extend(changed.into_iter().map(
            |(rule_id, schedule, started_at, last_tick, execution_count)| RuleState {
                rule_id,
                trigger_ref: schedule.trigger_ref.clone(),
                spec: schedule.spec.clone(),
                started_at,
                last_tick,
                execution_count,
            },
        ));
        store.save_rules(states);
    }

    /// Records the lateness of fires handed to the sink at `at`.
    fn record_lateness(&self, at: Instant, deadlines: impl Iterator<Item = Instant>) {
        let mut h = self.lateness.lock().expect("lateness lock");
        for deadline in deadlines {
            let late = at.saturating_duration_since(deadline);
            h.saturating_record(u64::try_from(late.as_nanos()).unwrap_or(u64::MAX));
            self.metrics.handed_over(late);
        }
    }

    fn publish_count(&self, n: usize) {
        self.running.send_if_modified(|current| {
            let changed = *current != n;
            *current = n;
            changed
        });
    }

    /// [`compute`](Self::compute), with a host panic turned into an error for that rule
    /// (so a batch never loses its other fires).
    fn compute_guarded(&self, runtime: &TimerRuntime, job: &Job) -> Result<Fired, CallError> {
        catch_host_panic(|| self.compute(runtime, job)).and_then(|fired| fired)
    }

    /// Computes one fire: the next tick first (so the payload can name it), then the payload.
    fn compute(&self, runtime: &TimerRuntime, job: &Job) -> Result<Fired, CallError> {
        let fired_at = job.fired_at.unwrap_or_else(|| self.anchor().now());
        // Strictly after now: a late clock fires the missed tick once and does not burst.
        let after = job.tick.max(fired_at);
        let next = match job.next_override {
            Some(next) => Some(next),
            None => with_retry(job.rule_id, "next-fire", || {
                runtime.next_fire(&job.schedule, job.started_at, after)
            })?,
        };
        let fire = Fire {
            rule_id: job.rule_id,
            rule_ref: job.rule_ref.to_string(),
            trigger_ref: job.schedule.trigger_ref.clone(),
            sensor_ref: self.sensor_ref.clone(),
            scheduled_at: job.tick,
            fired_at,
            execution_count: job.execution_count,
            next_fire_at: next,
        };
        let payload = with_retry(job.rule_id, "build-payload", || {
            runtime.build_payload_text(&job.schedule, &fire)
        })?;
        Ok(Fired {
            fired_at,
            next,
            payload,
        })
    }
}

/// 1 ns to a day (later is recorded as a day), 3 significant digits: about 300 KiB.
fn new_lateness_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 86_400 * 1_000_000_000, 3).expect("valid histogram bounds")
}

/// Removes a rule's timer and its queue key.
fn remove_timer(state: &mut State, rule_id: i64) -> Option<Timer> {
    let timer = state.timers.remove(&rule_id)?;
    // Absent when the clock task has taken the key: the generation check drops that fire.
    state
        .queue
        .remove(&(timer.deadline, rule_id, timer.generation));
    Some(timer)
}

/// Runs a component call; on a fault (not a refusal of the params) logs it and tries once
/// more. The runtime has dropped the failed instance, so the retry gets a clean one.
fn with_retry<T>(
    rule_id: i64,
    func: &str,
    call: impl Fn() -> Result<T, CallError>,
) -> Result<T, CallError> {
    retry_after_fault(call, |e| {
        warn!(
            rule_id,
            error = %e,
            "Component call `{func}` failed for rule {rule_id}; retrying once on a fresh instance"
        )
    })
}

/// What one pass of the clock task found to do, besides releasing fires.
struct Pass {
    /// Fires released on time (already with the sink), to log.
    released: Vec<Released>,
    /// Due fires with no usable prebuilt payload: computed now, then released.
    late: Vec<Job>,
    /// Fires to prebuild, taken from [`State::builds`].
    builds: Vec<Job>,
    next_deadline: Option<Instant>,
}

/// A prebuilt fire handed to the sink at its deadline, before its timer is updated.
struct HandedOver {
    deadline: Instant,
    rule_id: i64,
    generation: u64,
    /// The tick after it, and that tick's deadline (see [`Ready::after`]).
    after: Option<(DateTime<Utc>, Instant)>,
}

/// A fire released on time, for its log line.
struct Released {
    rule_id: i64,
    trigger_ref: Arc<str>,
    execution_count: u64,
    scheduled_at: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
}

/// The clock task.
async fn run(shared: Arc<Shared>) {
    let mut wait = PreciseWait::default();
    // Wall time of prebuilding one fire, as last measured.
    let mut build_cost = Duration::from_micros(10);
    loop {
        shared.turned();
        // Held until this pass is committed (see `Shared::batch`).
        let batch = shared.batch.lock().await;
        let Some(pass) = take_pass(&shared, build_cost) else {
            break;
        };
        let Pass {
            released,
            late,
            builds,
            next_deadline,
        } = pass;
        let busy = !released.is_empty() || !late.is_empty() || !builds.is_empty();
        if !released.is_empty() {
            let fired_at = shared.anchor().now();
            let metrics = shared.metrics.clone();
            // Logging 10,000 lines takes tens of milliseconds: not on the clock task.
            spawn_blocking_traced(move || {
                count_fires(
                    &metrics,
                    released.iter().map(|r| &*r.trigger_ref),
                    FireOutcome::OnTime,
                );
                for r in released {
                    log_fired(
                        r.rule_id,
                        &r.trigger_ref,
                        r.execution_count,
                        r.scheduled_at,
                        fired_at,
                        r.next,
                    );
                }
            });
        }
        if !late.is_empty() {
            fire_late(&shared, late).await;
        } else if !builds.is_empty() {
            let started = Instant::now();
            let n = builds.len() as u32;
            prebuild(&shared, builds).await;
            build_cost = (started.elapsed() / n).max(Duration::from_micros(1));
        }
        drop(batch);
        if busy {
            continue;
        }
        // Idle, it still turns every `HEARTBEAT`: that is what liveness checks look for.
        let beat = Instant::now() + HEARTBEAT;
        match next_deadline {
            Some(deadline) if deadline <= beat => {
                tokio::select! {
                    _ = wait.until(deadline) => {}
                    _ = shared.notify.notified() => {}
                }
            }
            _ => {
                tokio::select! {
                    _ = tokio::time::sleep_until(beat) => {}
                    _ = shared.notify.notified() => {}
                }
            }
        }
    }
    debug!("Clock task ended");
}

/// Under the state lock: hands every due, prebuilt fire to the sink, collects the due
/// fires that must be computed now and, as time allows before the next deadline, a slice
/// of prebuild work. `None` once stopped.
///
/// The release is the latency path, so it does the least per fire: it cuts every due key
/// off the queue, hands their prebuilt events over in deadline order, a chunk per call,
/// and only then updates the timers and puts their next deadlines back.
fn take_pass(shared: &Shared, build_cost: Duration) -> Option<Pass> {
    let mut state = shared.state.lock().expect("clock state lock");
    if state.stopped {
        return None;
    }
    let state = &mut *state;
    let mut now = Instant::now();
    let mut done = Vec::new();
    let mut not_ready = Vec::new();
    // Everything due, in deadline order, cut off the queue at once: popping entries one
    // by one costs several times more per fire.
    let later = state.queue.split_off(&(now, i64::MAX, u64::MAX));
    let due = std::mem::replace(&mut state.queue, later);
    let mut chunk = Vec::new();
    let mut chunk_from = 0;
    for ((deadline, rule_id, generation), slot) in due {
        // Judged with the chunk's hand-over time to spare, so the claim holds at the sink.
        let on_time = now.saturating_duration_since(deadline) + HAND_OVER <= ON_TIME;
        match slot {
            Some(Ready { event, after })
                if on_time && after.is_none_or(|(_, after)| after > now) =>
            {
                chunk.push(event);
                done.push(HandedOver {
                    deadline,
                    rule_id,
                    generation,
                    after,
                });
            }
            // Dealt with after the hand-over.
            slot => not_ready.push(((deadline, rule_id, generation), slot)),
        }
        if chunk.len() == RELEASE_CHUNK {
            // A big release takes a while: hand over what is judged, judge the rest anew.
            hand_over(shared, &mut chunk, &done[chunk_from..]);
            chunk_from = done.len();
            now = Instant::now();
        }
    }
    hand_over(shared, &mut chunk, &done[chunk_from..]);
    let mut late = Vec::new();
    for (key, slot) in not_ready {
        if late.len() == MAX_BATCH {
            // The next pass takes it (its prebuilt fire, if any, is late by then).
            state.queue.insert(key, None);
            continue;
        }
        let (_, rule_id, generation) = key;
        // Keys in the queue belong to live timers (stopping one removes its key).
        if let Some(timer) = state.timers.get(&rule_id) {
            debug_assert_eq!(timer.generation, generation);
            drop(slot);
            late.push(timer.job(rule_id));
        }
    }
    let mut released = Vec::with_capacity(done.len());
    let mut ended = 0;
    for HandedOver {
        rule_id,
        generation,
        after,
        ..
    } in done
    {
        let Some(timer) = state.timers.get_mut(&rule_id) else {
            continue;
        };
        timer.execution_count += 1;
        timer.last_tick = Some(timer.next_at);
        if shared.store.is_some() {
            state.dirty.insert(rule_id);
        }
        released.push(Released {
            rule_id,
            trigger_ref: timer.trigger_ref.clone(),
            execution_count: timer.execution_count,
            scheduled_at: timer.next_at,
            next: after.map(|(at, _)| at),
        });
        match after {
            // The next deadline was worked out when the fire was built.
            Some((after, deadline)) => {
                timer.next_at = after;
                timer.deadline = deadline;
                state
                    .queue
                    .insert((timer.deadline, rule_id, generation), None);
                state.builds.push_back((rule_id, generation, after));
            }
            None => {
                if let Some(timer) = state.timers.remove(&rule_id) {
                    if shared.store.is_some() {
                        state.ended.push(timer.state(rule_id));
                    }
                }
                ended += 1;
            }
        }
    }
    if ended > 0 {
        shared.publish_len(state);
    }
    let now = Instant::now();
    let next_deadline = state.queue.first_key_value().map(|(key, _)| key.0);
    let room = next_deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(now));
    let slice = if room > BUILD_HORIZON {
        BUILD_SLICE
    } else {
        let fits = room.saturating_sub(BUILD_MARGIN).as_nanos() / build_cost.as_nanos().max(1);
        (fits as usize).clamp(1, BUILD_SLICE)
    };
    let mut builds = Vec::new();
    if late.is_empty() {
        while builds.len() < slice {
            let Some((rule_id, generation, tick)) = state.builds.pop_front() else {
                break;
            };
            if state.needs_build(rule_id, generation, tick) {
                let mut job = state.timers[&rule_id].job(rule_id);
                job.fired_at = Some(tick);
                builds.push(job);
            }
        }
    }
    Some(Pass {
        released,
        late,
        builds,
        next_deadline,
    })
}

/// Hands a chunk of released events to the sink and records how late they reached it.
fn hand_over(shared: &Shared, chunk: &mut Vec<Event>, done: &[HandedOver]) {
    if chunk.is_empty() {
        return;
    }
    shared.sink.submit_all(std::mem::take(chunk));
    shared.record_lateness(Instant::now(), done.iter().map(|d| d.deadline));
}

fn log_fired(
    rule_id: i64,
    trigger_ref: &str,
    execution_count: u64,
    scheduled_at: DateTime<Utc>,
    fired_at: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
) {
    // Per fire: debug (see the outbox's `Event created`).
    debug!(
        rule_id,
        trigger_ref = %trigger_ref,
        execution_count,
        scheduled_at = %scheduled_at.to_rfc3339(),
        delay_ms = (fired_at - scheduled_at).num_milliseconds(),
        next_fire_at = next.map(|n| n.to_rfc3339()).as_deref().unwrap_or("none"),
        "Timer fired for rule"
    );
}

/// Computes fires that are due with no usable prebuilt payload (the clock was late, the
/// timer is new or its component was just swapped) at the moment of firing, then commits
/// and releases them. Large batches are spread over blocking threads.
async fn fire_late(shared: &Arc<Shared>, jobs: Vec<Job>) {
    let outcomes = compute_all(shared, jobs).await;
    let mut fired = Vec::with_capacity(outcomes.len());
    let mut ended = Vec::new();
    let mut failed = Vec::new();
    let remaining;
    {
        let mut state = shared.state.lock().expect("clock state lock");
        if state.stopped {
            // Shutting down: fires computed before the stop are still delivered.
            drop(state);
            let events = outcomes
                .into_iter()
                .filter_map(|(job, result)| result.ok().map(|f| (job, f)))
                .collect();
            submit_fired(shared, events);
            return;
        }
        let state = &mut *state;
        for (job, result) in outcomes {
            let Some(timer) = state.timers.get_mut(&job.rule_id) else {
                continue; // stopped meanwhile
            };
            if timer.generation != job.generation {
                continue; // replaced meanwhile
            }
            match result {
                Ok(f) => {
                    timer.execution_count = job.execution_count;
                    timer.last_tick = Some(job.tick);
                    if shared.store.is_some() {
                        state.dirty.insert(job.rule_id);
                    }
                    // The next catch-up tick (paced), or back to the schedule.
                    let paced = match timer.catch_up.as_mut() {
                        Some(c) => {
                            c.backlog.pop_front();
                            c.stands_for = 1;
                            true
                        }
                        None => false,
                    };
                    if paced && job.next_override.is_none() {
                        timer.catch_up = None;
                    }
                    match f.next {
                        Some(next_at) => {
                            let deadline = if timer.catch_up.is_some() {
                                shared
                                    .anchor()
                                    .instant_at(next_at)
                                    .max(Instant::now() + CATCH_UP_PACE)
                            } else {
                                shared.anchor().instant_at(next_at)
                            };
                            timer.next_at = next_at;
                            timer.deadline = deadline;
                            state
                                .queue
                                .insert((deadline, job.rule_id, job.generation), None);
                            state
                                .builds
                                .push_back((job.rule_id, job.generation, next_at));
                        }
                        None => {
                            if let Some(timer) = state.timers.remove(&job.rule_id) {
                                if shared.store.is_some() {
                                    state.ended.push(timer.state(job.rule_id));
                                }
                            }
                            ended.push(job.rule_id);
                        }
                    }
                    fired.push((job, f));
                }
                Err(e) => {
                    state.timers.remove(&job.rule_id);
                    state.faults.insert(job.rule_id, e.to_string());
                    failed.push((job, e));
                }
            }
        }
        remaining = state.timers.len();
    }
    submit_fired(shared, fired);
    // After the events are out: whoever waits for "no timer left" sees them first.
    shared.publish_count(remaining);
    for rule_id in ended {
        info!(
            rule_id,
            "Timer for rule {rule_id} has no further fires; it holds no timer now"
        );
    }
    log_failed(&shared.metrics, failed);
}

/// Builds the next fire of timers ahead of its deadline, and keeps it with the timer.
async fn prebuild(shared: &Arc<Shared>, jobs: Vec<Job>) {
    let outcomes = compute_all(shared, jobs).await;
    let mut failed = Vec::new();
    let remaining;
    {
        let mut state = shared.state.lock().expect("clock state lock");
        if state.stopped {
            return;
        }
        let state = &mut *state;
        for (job, result) in outcomes {
            let Some(timer) = state.timers.get_mut(&job.rule_id) else {
                continue;
            };
            // Fired late, or replaced, while this was computed: the build is stale.
            if timer.generation != job.generation || timer.next_at != job.tick {
                continue;
            }
            let key = (timer.deadline, job.rule_id, job.generation);
            let trigger_ref = timer.trigger_ref.clone();
            match result {
                Ok(f) => {
                    if let Some(slot @ None) = state.queue.get_mut(&key) {
                        *slot = Some(Ready {
                            event: Event {
                                rule_id: job.rule_id,
                                trigger_ref,
                                payload: f.payload,
                                scheduled_at: job.tick,
                            },
                            after: f.next.map(|at| (at, shared.anchor().instant_at(at))),
                        });
                    }
                }
                Err(e) => {
                    let timer = remove_timer(state, job.rule_id);
                    debug_assert!(timer.is_some());
                    state.faults.insert(job.rule_id, e.to_string());
                    failed.push((job, e));
                }
            }
        }
        remaining = state.timers.len();
    }
    if !failed.is_empty() {
        shared.publish_count(remaining);
        log_failed(&shared.metrics, failed);
    }
}

async fn compute_all(shared: &Arc<Shared>, jobs: Vec<Job>) -> Vec<(Job, Result<Fired, CallError>)> {
    let computing = shared.clone();
    // One component for the whole pass: a swap waits for the pass (`Shared::batch`).
    let runtime = shared.runtime();
    map_blocking(jobs, move |job| {
        let result = computing.compute_guarded(&runtime, &job);
        (job, result)
    })
    .await
}

fn submit_fired(shared: &Shared, fired: Vec<(Job, Fired)>) {
    if fired.is_empty() {
        return;
    }
    let mut events = Vec::with_capacity(fired.len());
    let mut logs = Vec::with_capacity(fired.len());
    for (job, f) in fired {
        let trigger_ref: Arc<str> = job.schedule.trigger_ref.as_str().into();
        events.push(Event {
            rule_id: job.rule_id,
            trigger_ref: trigger_ref.clone(),
            payload: f.payload,
            scheduled_at: job.tick,
        });
        logs.push((job, f.fired_at, f.next, trigger_ref));
    }
    shared.sink.submit_all(events);
    shared.record_lateness(Instant::now(), logs.iter().map(|l| l.0.deadline));
    for (job, _, _, trigger_ref) in &logs {
        let outcome = match job.catch_up {
            Some(_) => FireOutcome::CatchUp,
            None => FireOutcome::Late,
        };
        shared.metrics.fired(trigger_ref, outcome, 1);
    }
    for (job, fired_at, next, trigger_ref) in logs {
        if let Some(ticks) = job.catch_up {
            info!(
                rule_id = job.rule_id,
                trigger_ref = %trigger_ref,
                scheduled_at = %job.tick.to_rfc3339(),
                ticks_missed = ticks,
                "Catch-up fire for rule {}: tick {} (stands for {ticks} missed)",
                job.rule_id,
                job.tick.to_rfc3339()
            );
        }
        log_fired(
            job.rule_id,
            &trigger_ref,
            job.execution_count,
            job.tick,
            fired_at,
            next,
        );
    }
}

/// Counts fires by trigger ref: one counter update per run of equal refs (a release is
/// mostly one or two refs).
fn count_fires<'a>(metrics: &Metrics, refs: impl Iterator<Item = &'a str>, outcome: FireOutcome) {
    let mut run: Option<(&str, u64)> = None;
    for r in refs {
        match &mut run {
            Some((current, n)) if *current == r => *n += 1,
            _ => {
                if let Some((current, n)) = run {
                    metrics.fired(current, outcome, n);
                }
                run = Some((r, 1));
            }
        }
    }
    if let Some((current, n)) = run {
        metrics.fired(current, outcome, n);
    }
}

/// Counts and logs timers stopped by a failed call: a fault happened twice in a row (the call was
/// retried once), a refusal (`param-error`) once (it is not retried).
fn log_failed(metrics: &Metrics, failed: Vec<(Job, CallError)>) {
    count_fires(
        metrics,
        failed
            .iter()
            .map(|(job, _)| job.schedule.trigger_ref.as_str()),
        FireOutcome::Faulted,
    );
    for (job, e) in failed {
        let why = match e.as_rule_error() {
            Some(_) => "the timer component refused the rule while firing it",
            None => "the timer component failed twice in a row",
        };
        error!(
            rule_id = job.rule_id,
            trigger_ref = %job.schedule.trigger_ref,
            error = %e,
            "Timer for rule {} stopped: {why}",
            job.rule_id
        );
    }
}

/// Saves changed timer states every [`PERSIST_EVERY`] (the clock's own task, with a store).
async fn persist(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(PERSIST_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        shared.save_states();
    }
}

/// Compares the wall clock with the clock's own idea of it every [`CHECK_EVERY`], and
/// follows a step (see [`wall`]).
async fn follow_wall(shared: Arc<Shared>, wall: Arc<dyn WallClock>) {
    let mut every = tokio::time::interval(CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let threshold = chrono::Duration::from_std(STEP_THRESHOLD).expect("a small duration");
    loop {
        every.tick().await;
        let wall_now = wall.now();
        let step = wall_now - shared.anchor().now();
        if step.abs() > threshold {
            restep(&shared, wall_now, step).await;
        }
    }
}

/// A timer whose next (calendar) tick a forward step skipped.
struct Skipped {
    rule_id: i64,
    generation: u64,
    schedule: Arc<Schedule>,
    started_at: DateTime<Utc>,
    next_at: DateTime<Utc>,
}

/// Re-anchors the clock at `wall_now` after a step of `step` (see [`wall`]).
async fn restep(shared: &Arc<Shared>, wall_now: DateTime<Utc>, step: chrono::Duration) {
    // No pass runs meanwhile: every deadline and prebuilt fire is about to change.
    let _batch = shared.batch.lock().await;
    shared.metrics.wall_clock_stepped();
    let skipped = {
        let mut state = shared.state.lock().expect("clock state lock");
        if state.stopped {
            return;
        }
        let anchor = Anchor {
            utc: wall_now,
            instant: Instant::now(),
        };
        *shared.anchor.write().expect("clock anchor lock") = anchor;
        let state = &mut *state;
        // Prebuilt fires carry the old anchor's times: all are built anew.
        state.queue.clear();
        state.builds.clear();
        let mut skipped = Vec::new();
        for (&rule_id, timer) in state.timers.iter_mut() {
            if timer.schedule.kind == TimerKind::Interval {
                // Elapsed time: the ticks move with the step, the deadlines stay.
                timer.started_at += step;
                timer.next_at += step;
                timer.last_tick = timer.last_tick.map(|t| t + step);
                if let Some(c) = timer.catch_up.as_mut() {
                    c.backlog.iter_mut().for_each(|t| *t += step);
                }
            } else if timer.catch_up.is_none() {
                // Calendar: the UTC tick stays, its deadline moves.
                timer.deadline = anchor.instant_at(timer.next_at);
                if timer.next_at <= wall_now {
                    skipped.push(Skipped {
                        rule_id,
                        generation: timer.generation,
                        schedule: timer.schedule.clone(),
                        started_at: timer.started_at,
                        next_at: timer.next_at,
                    });
                }
            }
            state
                .queue
                .insert((timer.deadline, rule_id, timer.generation), None);
            state
                .builds
                .push_back((rule_id, timer.generation, timer.next_at));
            if shared.store.is_some() {
                state.dirty.insert(rule_id);
            }
        }
        skipped
    };
    warn!(
        step_ms = step.num_milliseconds(),
        calendar_rules_skipped_ahead = skipped.len(),
        "Wall clock stepped by {} ms (or the machine was suspended); timers re-anchored",
        step.num_milliseconds()
    );
    if !skipped.is_empty() {
        let runtime = shared.runtime();
        let misfire = shared.misfire;
        let plans = map_blocking(skipped, move |s| {
            let plan = misfire.plan(s.next_at, wall_now, |after| {
                with_retry(s.rule_id, "next-fire", || {
                    runtime.next_fire(&s.schedule, s.started_at, after)
                })
            });
            (s, plan)
        })
        .await;
        let mut state = shared.state.lock().expect("clock state lock");
        let state = &mut *state;
        let now = Instant::now();
        for (s, plan) in plans {
            let Some(timer) = state.timers.get_mut(&s.rule_id) else {
                continue;
            };
            if timer.generation != s.generation || timer.next_at != s.next_at {
                continue;
            }
            let plan = match plan {
                Ok(plan) => plan,
                // Left as it is: the clock fires the tick late, as after any stall.
                Err(e) => {
                    warn!(rule_id = s.rule_id, error = %e, "Cannot plan the ticks a wall-clock step skipped");
                    continue;
                }
            };
            info!(
                rule_id = s.rule_id,
                ticks_missed = plan.missed,
                ticks_missed_exact = plan.exact,
                catch_up_fires = plan.fire.len(),
                misfire = misfire.policy.as_str(),
                "Rule {} missed {}{} ticks to a wall-clock step; {} catch-up fires",
                s.rule_id,
                if plan.exact { "" } else { "at least " },
                plan.missed,
                plan.fire.len()
            );
            state
                .queue
                .remove(&(timer.deadline, s.rule_id, s.generation));
            let next = plan.fire.first().copied().or(plan.resume);
            timer.catch_up = CatchUp::new(plan.fire, plan.missed, misfire.policy);
            let Some(next_at) = next else {
                if let Some(timer) = state.timers.remove(&s.rule_id) {
                    if shared.store.is_some() {
                        state.ended.push(timer.state(s.rule_id));
                    }
                }
                continue;
            };
            timer.next_at = next_at;
            timer.deadline = if timer.catch_up.is_some() {
                now
            } else {
                shared.anchor().instant_at(next_at)
            };
            state
                .queue
                .insert((timer.deadline, s.rule_id, s.generation), None);
            state.builds.push_back((s.rule_id, s.generation, next_at));
        }
        shared.publish_len(state);
    }
    shared.notify.notify_one();
}
