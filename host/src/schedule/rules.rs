//! The rule table: the rules this sensor should be running, keyed by id, and the one place
//! that decides whether a change starts, replaces, keeps or stops a rule's timer.
//!
//! Data flows one way: the lifecycle listener (or local mode) tells the table what is
//! desired; the table asks the component to validate params and tells the [`Clock`] what to
//! run. Mutations are serialised by one async lock, so a lifecycle message and a re-sync
//! can never race each other into a duplicate or stale timer.
//!
//! Idempotence: a rule applied again with the same trigger ref and the same params JSON —
//! or with params the component normalizes to the same spec — keeps its running timer:
//! same phase, same `execution_count`. Anything else replaces the timer. A fired one-shot
//! stays in the table without a timer, so re-applying it does not fire it again.
//!
//! Bad params never stop anything else: the rule is logged with the component's field and
//! message, and that rule alone does not run until its params change.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use tracing::{debug, error, info, warn};

use super::clock::{Clock, TimerStatus};
use crate::component::fault::catch_host_panic;
use crate::component::{CallError, Rule, RuleError, TimerRuntime};
use crate::support::blocking::map_blocking;
use crate::telemetry::RuleStatus;

/// Where the authoritative list of active rules comes from (the Attune API's rules listing
/// in the daemon). Used for snapshots after every (re)connect and to re-fetch one rule.
pub trait RuleSource: Send + Sync + 'static {
    /// Every enabled rule bound to one of `trigger_refs`.
    fn active_rules<'a>(
        &'a self,
        trigger_refs: &'a [String],
    ) -> BoxFuture<'a, anyhow::Result<Vec<Rule>>>;
}

/// What applying one rule did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// A timer started for a rule the table did not have.
    Started { next_fire_at: Option<DateTime<Utc>> },
    /// The rule's params changed: its timer was replaced (new phase, count from 0).
    Replaced { next_fire_at: Option<DateTime<Utc>> },
    /// Same rule as before: nothing changed.
    Kept,
    /// The component refused the params; the rule does not run.
    Refused(RuleError),
    /// The rule's trigger ref is not one this sensor is scoped to.
    OutOfScope(String),
    /// The component failed (not the params' fault); retried the next time it is applied.
    Faulted(CallError),
}

impl Applied {
    /// Whether the rule has (or keeps) a timer as a result.
    pub fn is_running(&self) -> bool {
        matches!(
            self,
            Applied::Started {
                next_fire_at: Some(_)
            } | Applied::Replaced {
                next_fire_at: Some(_)
            }
        )
    }
}

/// What a snapshot did, in numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotReport {
    pub started: usize,
    pub replaced: usize,
    pub kept: usize,
    pub stopped: usize,
    /// Refused params, out-of-scope refs and component faults.
    pub not_running: usize,
    /// Timers running after the snapshot.
    pub running: usize,
}

/// The rule table. Cheap to clone.
#[derive(Clone)]
pub struct RuleTable {
    inner: Arc<Inner>,
}

struct Inner {
    clock: Clock,
    scope: Arc<[String]>,
    state: tokio::sync::Mutex<TableState>,
    /// Each rule's standing, for the views ([`RuleTable::view`], [`RuleTable::counts`]):
    /// written together with `TableState::entries`, read without waiting for the table's
    /// lock, which a snapshot of 100,000 rules holds for seconds.
    standing: std::sync::RwLock<BTreeMap<i64, Standing>>,
}

/// What the views show of a rule besides its timer.
struct Standing {
    r#ref: Box<str>,
    trigger_ref: Option<Box<str>>,
    /// `None`: validated and started. Otherwise why it does not run, and whether that
    /// was a refusal (or out of scope) rather than a fault.
    off: Option<(RuleStatus, Box<str>)>,
}

/// One rule as the views show it (see [`RuleTable::view`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleView {
    pub id: i64,
    pub r#ref: String,
    pub trigger_ref: Option<String>,
    pub status: RuleStatus,
    /// The timer's, while it runs.
    pub timer: Option<TimerStatus>,
    /// Why it does not run (refused or faulted).
    pub last_error: Option<String>,
}

#[derive(Default)]
struct TableState {
    entries: HashMap<i64, Entry>,
    /// Rules given at startup (`ATTUNE_SENSOR_TRIGGERS`): part of every snapshot until a
    /// lifecycle message disables or deletes them. The API listing wins for the same id.
    bootstrap: BTreeMap<i64, Rule>,
}

struct Entry {
    rule: StoredRule,
    outcome: Outcome,
}

/// A rule as the table keeps it: its params as JSON text, a fraction of the memory of a
/// `serde_json::Value` tree (which matters at 100,000 rules). They are read back only to
/// compare a re-applied rule and to re-validate everything for a component swap.
struct StoredRule {
    id: i64,
    r#ref: String,
    trigger_ref: Option<String>,
    /// The params as `serde_json` writes them: equal values give equal text (object keys
    /// are sorted).
    params: Box<str>,
}

impl StoredRule {
    fn new(rule: Rule) -> Self {
        Self {
            params: rule.trigger_params.to_string().into_boxed_str(),
            id: rule.id,
            r#ref: rule.r#ref,
            trigger_ref: rule.trigger_ref,
        }
    }

    fn same(&self, rule: &Rule) -> bool {
        self.trigger_ref == rule.trigger_ref
            && self.params.as_ref() == rule.trigger_params.to_string().as_str()
    }

    fn to_rule(&self) -> Rule {
        Rule {
            id: self.id,
            r#ref: self.r#ref.clone(),
            trigger_ref: self.trigger_ref.clone(),
            trigger_params: serde_json::from_str(&self.params)
                .expect("text written by serde_json parses"),
        }
    }
}

impl Standing {
    fn of(rule: &Rule, applied: &Applied) -> Standing {
        let off = match applied {
            Applied::Started { .. } | Applied::Replaced { .. } | Applied::Kept => None,
            Applied::Refused(e) => Some((RuleStatus::Refused, e.to_string())),
            Applied::OutOfScope(trigger_ref) => Some((
                RuleStatus::Refused,
                format!("trigger ref {trigger_ref} is not in this sensor's scope"),
            )),
            Applied::Faulted(e) => Some((RuleStatus::Faulted, e.to_string())),
        };
        Standing {
            r#ref: rule.r#ref.as_str().into(),
            trigger_ref: rule.trigger_ref.as_deref().map(Into::into),
            off: off.map(|(status, why)| (status, why.into_boxed_str())),
        }
    }
}

/// The normalized identity of a validated rule: two rules with equal identities behave
/// identically (the component's promise about equal specs).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    trigger_ref: String,
    spec: String,
}

enum Outcome {
    /// Validated and started (its timer may since have ended, e.g. a fired one-shot).
    Scheduled(Identity),
    /// Params refused, or out of scope: stays off until the rule changes.
    Off,
    /// A component fault: tried again when the rule is next applied.
    Faulted,
}

impl RuleTable {
    /// A table that runs rules on `clock`, for the trigger refs in `scope` only.
    pub fn new(clock: Clock, scope: Vec<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                clock,
                scope: scope.into(),
                state: tokio::sync::Mutex::new(TableState::default()),
                standing: Default::default(),
            }),
        }
    }

    /// The trigger refs this table runs rules for.
    pub fn scope(&self) -> &[String] {
        &self.inner.scope
    }

    pub fn in_scope(&self, trigger_ref: &str) -> bool {
        self.inner.scope.iter().any(|r| r == trigger_ref)
    }

    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Timers running now.
    pub fn running(&self) -> usize {
        self.inner.clock.len()
    }

    /// One rule as it stands now; `None` when the table does not hold it.
    pub fn view(&self, rule_id: i64) -> Option<RuleView> {
        let standing = self.standing();
        standing.get(&rule_id).map(|s| self.view_of(rule_id, s))
    }

    /// Up to `limit` rules with ids above `after`, in id order, of `status` only if given.
    pub fn views(
        &self,
        after: Option<i64>,
        limit: usize,
        status: Option<RuleStatus>,
    ) -> Vec<RuleView> {
        use std::ops::Bound::{Excluded, Unbounded};
        let from = after.map_or(Unbounded, Excluded);
        let standing = self.standing();
        standing
            .range((from, Unbounded))
            .map(|(id, s)| self.view_of(*id, s))
            .filter(|v| status.is_none_or(|wanted| v.status == wanted))
            .take(limit)
            .collect()
    }

    /// How many rules stand in each state.
    pub fn counts(&self) -> [(RuleStatus, usize); 4] {
        let (mut scheduled, mut refused, mut faulted) = (0usize, 0usize, 0usize);
        for s in self.standing().values() {
            match &s.off {
                None => scheduled += 1,
                Some((RuleStatus::Faulted, _)) => faulted += 1,
                Some(_) => refused += 1,
            }
        }
        let clock = &self.inner.clock;
        let (running, stopped_by_fault) = (clock.len(), clock.faulted());
        [
            (RuleStatus::Running, running),
            (
                RuleStatus::Ended,
                scheduled.saturating_sub(running + stopped_by_fault),
            ),
            (RuleStatus::Refused, refused),
            (RuleStatus::Faulted, faulted + stopped_by_fault),
        ]
    }

    fn standing(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<i64, Standing>> {
        self.inner
            .standing
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_standing(&self, update: impl FnOnce(&mut BTreeMap<i64, Standing>)) {
        let mut standing = self
            .inner
            .standing
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        update(&mut standing);
    }

    fn view_of(&self, id: i64, s: &Standing) -> RuleView {
        let clock = &self.inner.clock;
        let timer = clock.timer(id);
        let (status, last_error) = match (&s.off, &timer) {
            (Some((status, why)), _) => (*status, Some(why.to_string())),
            (None, Some(_)) => (RuleStatus::Running, None),
            (None, None) => match clock.fault(id) {
                Some(why) => (RuleStatus::Faulted, Some(why)),
                None => (RuleStatus::Ended, None),
            },
        };
        RuleView {
            id,
            r#ref: s.r#ref.to_string(),
            trigger_ref: timer
                .as_ref()
                .map(|t| t.trigger_ref.clone())
                .or_else(|| s.trigger_ref.as_deref().map(str::to_string)),
            status,
            timer,
            last_error,
        }
    }

    /// Rules the table holds (running or not).
    pub async fn len(&self) -> usize {
        self.inner.state.lock().await.entries.len()
    }

    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }

    /// Sets the startup rules that every snapshot includes (see [`TableState::bootstrap`]).
    pub async fn set_bootstrap(&self, rules: Vec<Rule>) {
        let mut state = self.inner.state.lock().await;
        state.bootstrap = rules.into_iter().map(|r| (r.id, r)).collect();
    }

    /// Makes the table hold exactly `rules` plus the bootstrap rules: starts the new, keeps
    /// the unchanged, replaces the changed and stops the rest.
    pub async fn apply_snapshot(&self, rules: Vec<Rule>) -> SnapshotReport {
        let mut state = self.inner.state.lock().await;
        let mut desired: Vec<Rule> = Vec::with_capacity(rules.len() + state.bootstrap.len());
        let mut ids = HashSet::with_capacity(rules.len() + state.bootstrap.len());
        for rule in rules {
            if ids.insert(rule.id) {
                desired.push(rule);
            } else {
                warn!(
                    rule_id = rule.id,
                    "Rule {} listed twice; using the first", rule.id
                );
            }
        }
        for rule in state.bootstrap.values() {
            if ids.insert(rule.id) {
                desired.push(rule.clone());
            }
        }
        let gone: Vec<i64> = state
            .entries
            .keys()
            .filter(|id| !ids.contains(id))
            .copied()
            .collect();
        let mut report = SnapshotReport::default();
        self.set_standing(|s| {
            for id in &gone {
                s.remove(id);
            }
        });
        for id in gone {
            state.entries.remove(&id);
            if self.inner.clock.stop(id) {
                info!(
                    rule_id = id,
                    "Timer stopped for rule {id}: no longer active"
                );
            }
            report.stopped += 1;
        }
        for (_, applied) in self.apply_locked(&mut state, desired).await {
            match applied {
                Applied::Started { .. } => report.started += 1,
                Applied::Replaced { .. } => report.replaced += 1,
                Applied::Kept => report.kept += 1,
                _ => report.not_running += 1,
            }
        }
        report.running = self.inner.clock.len();
        // Saved states of rules that went away (while the daemon was down, too) go now.
        self.inner
            .clock
            .retain_states(state.entries.keys().copied().collect());
        report
    }

    /// Starts, keeps or replaces one rule (a rule created or enabled with params).
    pub async fn upsert(&self, rule: Rule) -> Applied {
        let mut state = self.inner.state.lock().await;
        self.apply_locked(&mut state, vec![rule])
            .await
            .pop()
            .map(|(_, applied)| applied)
            .unwrap_or(Applied::Kept)
    }

    /// Forgets a rule and stops its timer (a rule disabled or deleted). Also drops it from
    /// the bootstrap rules. `true` when a timer was running.
    pub async fn remove(&self, rule_id: i64) -> bool {
        let mut state = self.inner.state.lock().await;
        state.entries.remove(&rule_id);
        self.set_standing(|s| {
            s.remove(&rule_id);
        });
        state.bootstrap.remove(&rule_id);
        let stopped = self.inner.clock.stop(rule_id);
        if stopped {
            info!(rule_id, "Timer stopped for rule {rule_id}");
        } else {
            debug!(rule_id, "No timer found for rule {rule_id}");
        }
        stopped
    }

    /// Applies rules under the table lock: decides which need the component, runs those
    /// calls on blocking threads (several when there are many), then records the outcomes.
    async fn apply_locked(&self, state: &mut TableState, rules: Vec<Rule>) -> Vec<(i64, Applied)> {
        let mut results = Vec::with_capacity(rules.len());
        let mut work = Vec::new();
        for rule in rules {
            match state.entries.get(&rule.id) {
                Some(entry)
                    if entry.rule.same(&rule) && !matches!(entry.outcome, Outcome::Faulted) =>
                {
                    debug!(
                        rule_id = rule.id,
                        "Rule {} unchanged; keeping its timer", rule.id
                    );
                    results.push((rule.id, Applied::Kept));
                }
                Some(entry) => {
                    let previous = match &entry.outcome {
                        Outcome::Scheduled(identity) => Some(identity.clone()),
                        _ => None,
                    };
                    work.push((rule, previous, true));
                }
                None => work.push((rule, None, false)),
            }
        }
        if work.is_empty() {
            return results;
        }
        let ctx = Ctx {
            clock: self.inner.clock.clone(),
            scope: self.inner.scope.clone(),
        };
        let evaluated = map_blocking(work, move |item| ctx.apply_guarded(item)).await;
        self.set_standing(|standing| {
            for (rule, _, applied) in &evaluated {
                standing.insert(rule.id, Standing::of(rule, applied));
            }
        });
        for (rule, outcome, applied) in evaluated {
            let id = rule.id;
            state.entries.insert(
                id,
                Entry {
                    rule: StoredRule::new(rule),
                    outcome,
                },
            );
            results.push((id, applied));
        }
        results
    }
}

/// The table locked for a component swap ([`RuleTable::lock_for_swap`]): no rule starts,
/// changes or stops until it is dropped, so the rules a swap re-validates are still the
/// rules when it installs their new schedules.
pub struct SwapLock<'a> {
    state: tokio::sync::MutexGuard<'a, TableState>,
}

impl RuleTable {
    /// Locks the table for a component swap (see [`crate::schedule::swap`]).
    pub async fn lock_for_swap(&self) -> SwapLock<'_> {
        SwapLock {
            state: self.inner.state.lock().await,
        }
    }
}

impl SwapLock<'_> {
    /// Every rule that was validated and started (its timer may since have ended).
    pub fn scheduled_rules(&self) -> Vec<Rule> {
        self.state
            .entries
            .values()
            .filter(|e| matches!(e.outcome, Outcome::Scheduled(_)))
            .map(|e| e.rule.to_rule())
            .collect()
    }

    /// Records the trigger ref and spec a new component normalized a rule's params to, so
    /// that re-applying params which normalize the same still keeps the timer.
    pub fn set_schedule(&mut self, rule_id: i64, trigger_ref: &str, spec: &str) {
        if let Some(entry) = self.state.entries.get_mut(&rule_id) {
            if let Outcome::Scheduled(identity) = &mut entry.outcome {
                identity.trigger_ref = trigger_ref.to_string();
                identity.spec = spec.to_string();
            }
        }
    }
}

impl std::fmt::Debug for RuleTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleTable")
            .field("scope", &self.inner.scope)
            .finish_non_exhaustive()
    }
}

/// What a worker needs to apply rules; no table state (that is updated afterwards).
#[derive(Clone)]
struct Ctx {
    clock: Clock,
    scope: Arc<[String]>,
}

impl Ctx {
    fn runtime(&self) -> Arc<TimerRuntime> {
        self.clock.runtime()
    }

    /// [`apply`](Self::apply), with a host panic turned into a fault of that rule.
    fn apply_guarded(&self, item: (Rule, Option<Identity>, bool)) -> (Rule, Outcome, Applied) {
        let rule = item.0.clone();
        catch_host_panic(|| self.apply(item)).unwrap_or_else(|fault| {
            self.stop_old(rule.id);
            error!(rule_id = rule.id, error = %fault, "Cannot start the timer for rule {}: {fault}", rule.id);
            (rule, Outcome::Faulted, Applied::Faulted(fault))
        })
    }

    fn out_of_scope(&self, rule: Rule, trigger_ref: String) -> (Rule, Outcome, Applied) {
        let id = rule.id;
        self.stop_old(id);
        warn!(
            rule_id = id,
            trigger_ref = %trigger_ref,
            "Rule {id} has trigger ref {trigger_ref}, which this sensor is not scoped to \
             (or its component does not handle); not running it"
        );
        (rule, Outcome::Off, Applied::OutOfScope(trigger_ref))
    }

    /// Validates one rule and starts, keeps, replaces or stops its timer. Component calls:
    /// runs on a blocking thread.
    fn apply(
        &self,
        (rule, previous, existed): (Rule, Option<Identity>, bool),
    ) -> (Rule, Outcome, Applied) {
        let id = rule.id;
        // The component is only handed rules for refs it handles (the WIT contract); a rule
        // without a ref is checked once the component has inferred one, below.
        if let Some(trigger_ref) = rule.trigger_ref.as_deref() {
            if !self.scope.iter().any(|r| r == trigger_ref) {
                return self.out_of_scope(rule.clone(), trigger_ref.to_string());
            }
        }
        let runtime = self.runtime();
        let validate = |now| {
            runtime.validate(&rule, now).or_else(|e| match e {
                CallError::Rule(_) => Err(e),
                fault => {
                    warn!(rule_id = id, error = %fault, "Validating rule {id} failed; retrying once on a fresh instance");
                    runtime.validate(&rule, now)
                }
            })
        };
        // A rule an earlier run saved the timer of is validated as of when that timer
        // started (a one-shot whose time passed while the daemon was down is still the
        // same rule); if it normalizes to the schedule saved, its timer carries on.
        let restored =
            self.clock
                .restored_state(id)
                .and_then(|saved| match validate(saved.started_at) {
                    Ok(s) if s.trigger_ref == saved.trigger_ref && s.spec == saved.spec => {
                        Some((s, saved))
                    }
                    _ => None,
                });
        let validated = match &restored {
            Some((schedule, _)) => Ok(schedule.clone()),
            None => validate(self.clock.now()),
        };
        let schedule = match validated {
            Ok(schedule) => schedule,
            Err(CallError::Rule(refusal)) => {
                self.stop_old(id);
                error!(
                    rule_id = id,
                    field = refusal.field.as_deref().unwrap_or(""),
                    error = %refusal.message,
                    "Invalid trigger params for rule {id}: {refusal}; this rule will not run"
                );
                return (rule, Outcome::Off, Applied::Refused(refusal));
            }
            Err(fault) => {
                self.stop_old(id);
                error!(rule_id = id, error = %fault, "Cannot start the timer for rule {id}: {fault}");
                return (rule, Outcome::Faulted, Applied::Faulted(fault));
            }
        };
        if !self.scope.contains(&schedule.trigger_ref) {
            return self.out_of_scope(rule, schedule.trigger_ref);
        }
        let identity = Identity {
            trigger_ref: schedule.trigger_ref.clone(),
            spec: schedule.spec.clone(),
        };
        if previous.as_ref() == Some(&identity) {
            debug!(
                rule_id = id,
                "Rule {id} normalizes to the same schedule; keeping its timer"
            );
            return (rule, Outcome::Scheduled(identity), Applied::Kept);
        }
        let started = match &restored {
            Some((_, saved)) => self
                .clock
                .prepare_restored(id, &rule.r#ref, schedule, saved)
                .map(|prepared| self.clock.install(prepared)),
            None => self.clock.start(id, &rule.r#ref, schedule),
        };
        match started {
            Ok(next_fire_at) => {
                let applied = if existed {
                    Applied::Replaced { next_fire_at }
                } else {
                    Applied::Started { next_fire_at }
                };
                (rule, Outcome::Scheduled(identity), applied)
            }
            Err(fault) => {
                self.stop_old(id);
                error!(rule_id = id, error = %fault, "Cannot start the timer for rule {id}: {fault}");
                (rule, Outcome::Faulted, Applied::Faulted(fault))
            }
        }
    }

    fn stop_old(&self, rule_id: i64) {
        if self.clock.stop(rule_id) {
            info!(
                rule_id,
                "Timer stopped for rule {rule_id}: its new params cannot run"
            );
        }
    }
}
