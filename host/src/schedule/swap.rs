//! Live component swap: the running sensor replaces its timer component on SIGHUP, and when
//! the component file (`--component` / `ATTUNE_TIMER_COMPONENT`) changes on disk.
//!
//! A swap ([`swap`]), in order; any failure leaves the old component in place, with every
//! rule still firing, and is logged as `Timer component swap rejected` with the check that
//! failed and the rule ids it failed for:
//! 1. `load` — the new component is read and compiled on a blocking thread, off the clock's
//!    path; loading checks its WIT version and calls `describe`. The same content hash as
//!    the running component: nothing to do (`Timer component unchanged`).
//! 2. with the rule table locked (no rule starts, changes or stops meanwhile), every rule
//!    with a running timer is checked against the new component, on blocking threads:
//!    `trigger-ref` — the rule's trigger ref is one the new component handles, and its
//!    params still validate as that trigger ref; `validate` — the new component accepts the
//!    params; `next-fire` — it can compute the timer's next fire from the new schedule.
//! 3. the clock installs the new component and every new schedule at once, between two
//!    batches of fires ([`Clock::replace_runtime`]); `Timer component swapped` names the old
//!    and the new component (name, version, content hash).
//!
//! Across a swap no fire is missed or doubled: deadlines already scheduled stay, and so do
//! each timer's `started_at` (an interval's phase) and `execution_count`. The fire already
//! scheduled is built by the new component, which also names the fires after it.
//!
//! What asks for a swap (SIGHUP, a changed component file) is
//! [`crate::component::watch::Triggers`]; [`spawn_watch`] acts on it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracing::{error, info};

use super::clock::ReplaceError;
use super::rules::RuleTable;
use crate::component::fault::{catch_host_panic, retry_after_fault};
use crate::component::watch::Triggers;
use crate::component::{CallError, ComponentInfo, Rule, Schedule, Source, TimerRuntime};
use crate::support::blocking::{map_blocking, spawn_blocking_traced};

/// At most this many rule ids are listed in a rejection's log line.
const MAX_LISTED: usize = 20;

/// A check a new component must pass before it is swapped in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    /// Reading, compiling, the WIT version and `describe`.
    Load,
    /// The rule's trigger ref is handled by the new component, and unchanged.
    TriggerRef,
    /// The new component accepts the rule's params.
    Validate,
    /// The new component computes the rule's next fire.
    NextFire,
    /// The rules changed while they were being checked (or the clock stopped).
    Install,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Load => "load",
            Check::TriggerRef => "trigger-ref",
            Check::Validate => "validate",
            Check::NextFire => "next-fire",
            Check::Install => "install",
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check that failed, for which rules (none for `load`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub check: Check,
    /// Every rule id the check failed for, ascending.
    pub rule_ids: Vec<i64>,
    /// What went wrong for the first of them (or the load error).
    pub reason: String,
}

/// Why a new component was not swapped in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub old: ComponentInfo,
    /// `None` when the component did not load.
    pub new: Option<ComponentInfo>,
    /// In check order; never empty.
    pub failures: Vec<Failure>,
}

impl Rejection {
    /// Every check that failed, e.g. `validate,trigger-ref`.
    pub fn checks(&self) -> String {
        self.failures
            .iter()
            .map(|f| f.check.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every rule id a check failed for, ascending.
    pub fn rule_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .failures
            .iter()
            .flat_map(|f| f.rule_ids.iter().copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, failure) in self.failures.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            if failure.rule_ids.is_empty() {
                write!(f, "{} failed: {}", failure.check, failure.reason)?;
            } else {
                write!(
                    f,
                    "{} failed for {} rule(s) (ids {}): {}",
                    failure.check,
                    failure.rule_ids.len(),
                    list_ids(&failure.rule_ids),
                    failure.reason
                )?;
            }
        }
        Ok(())
    }
}

/// What [`swap`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapOutcome {
    /// The new component runs now; `rules` running timers were moved onto it.
    Swapped {
        old: ComponentInfo,
        new: ComponentInfo,
        rules: usize,
    },
    /// The new component has the running one's content hash: nothing changed.
    Unchanged(ComponentInfo),
    /// The old component still runs.
    Rejected(Rejection),
}

/// `name version (content hash)`, how logs name a component.
pub fn component_label(info: &ComponentInfo) -> String {
    format!("{} {} ({})", info.name, info.version, info.content_hash)
}

/// Loads a new component with `load` (on a blocking thread), checks every running rule
/// against it and swaps it in (see the module docs). Logs the outcome.
pub async fn swap<F>(table: &RuleTable, load: F) -> SwapOutcome
where
    F: FnOnce() -> anyhow::Result<TimerRuntime> + Send + 'static,
{
    let clock = table.clock().clone();
    let loaded = match spawn_blocking_traced(load).await {
        Ok(Ok(runtime)) => Ok(Arc::new(runtime)),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(e) => Err(format!("loading the component panicked: {e}")),
    };
    let new = match loaded {
        Ok(runtime) => runtime,
        Err(reason) => {
            return rejected(Rejection {
                old: clock.runtime().info().clone(),
                new: None,
                failures: vec![Failure {
                    check: Check::Load,
                    rule_ids: Vec::new(),
                    reason,
                }],
            })
        }
    };
    // From here on no rule starts, changes or stops, and no other swap runs.
    let mut lock = table.lock_for_swap().await;
    let old = clock.runtime().info().clone();
    let new_info = new.info().clone();
    if new_info.content_hash == old.content_hash {
        info!(
            component = %component_label(&old),
            "Timer component unchanged (same content hash); nothing to swap"
        );
        return SwapOutcome::Unchanged(old);
    }
    let items: Vec<(Rule, RunningTimer)> = lock
        .scheduled_rules()
        .into_iter()
        .filter_map(|rule| {
            let status = clock.timer(rule.id)?;
            Some((
                rule,
                RunningTimer {
                    generation: status.generation,
                    trigger_ref: status.trigger_ref,
                    started_at: status.started_at,
                },
            ))
        })
        .collect();
    let rules = items.len();
    let now = clock.now();
    let checking = new.clone();
    let checked = map_blocking(items, move |(rule, timer)| {
        let id = rule.id;
        let result = catch_host_panic(|| check_rule(&checking, &rule, &timer, now))
            .unwrap_or_else(|fault| Err((Check::Validate, fault.to_string())));
        (id, timer.generation, result)
    })
    .await;
    let mut failed: BTreeMap<Check, Vec<(i64, String)>> = BTreeMap::new();
    let mut schedules = HashMap::with_capacity(checked.len());
    for (id, generation, result) in checked {
        match result {
            Ok(schedule) => {
                schedules.insert(id, (generation, schedule));
            }
            Err((check, reason)) => failed.entry(check).or_default().push((id, reason)),
        }
    }
    if !failed.is_empty() {
        let failures = failed
            .into_iter()
            .map(|(check, mut rules)| {
                rules.sort_by_key(|(id, _)| *id);
                let reason = format!("rule {}: {}", rules[0].0, rules[0].1);
                Failure {
                    check,
                    rule_ids: rules.into_iter().map(|(id, _)| id).collect(),
                    reason,
                }
            })
            .collect();
        return rejected(Rejection {
            old,
            new: Some(new_info),
            failures,
        });
    }

    let identities: Vec<(i64, String, String)> = schedules
        .iter()
        .map(|(id, (_, s))| (*id, s.trigger_ref.clone(), s.spec.clone()))
        .collect();
    match clock.replace_runtime(new, schedules).await {
        Ok(_old_runtime) => {}
        Err(e) => {
            let rule_ids = match &e {
                ReplaceError::Changed(ids) => ids.clone(),
                ReplaceError::Stopped => Vec::new(),
            };
            return rejected(Rejection {
                old,
                new: Some(new_info),
                failures: vec![Failure {
                    check: Check::Install,
                    rule_ids,
                    reason: e.to_string(),
                }],
            });
        }
    }
    for (id, trigger_ref, spec) in &identities {
        lock.set_schedule(*id, trigger_ref, spec);
    }
    drop(lock);
    info!(
        old_component = %component_label(&old),
        new_component = %component_label(&new_info),
        new_wit_version = %new_info.wit_version,
        trigger_refs = ?new_info.trigger_refs,
        rules,
        "Timer component swapped"
    );
    SwapOutcome::Swapped {
        old,
        new: new_info,
        rules,
    }
}

/// What a check needs to know about a running timer.
struct RunningTimer {
    generation: u64,
    trigger_ref: String,
    started_at: DateTime<Utc>,
}

/// Checks one running rule against the new component; its new schedule, or the check
/// that failed and why. Component calls: runs on a blocking thread.
fn check_rule(
    runtime: &TimerRuntime,
    rule: &Rule,
    timer: &RunningTimer,
    now: DateTime<Utc>,
) -> Result<Schedule, (Check, String)> {
    let trigger_ref = rule.trigger_ref.as_deref().unwrap_or(&timer.trigger_ref);
    let handled = &runtime.info().trigger_refs;
    if !handled.iter().any(|r| r == trigger_ref) {
        return Err((
            Check::TriggerRef,
            format!("the new component does not handle {trigger_ref} (it handles {handled:?})"),
        ));
    }
    let schedule =
        retry_after_fault(|| runtime.validate(rule, now), |_| {}).map_err(|e| match e {
            CallError::Rule(refusal) => (Check::Validate, format!("params refused: {refusal}")),
            fault => (Check::Validate, format!("the component failed: {fault}")),
        })?;
    if schedule.trigger_ref != timer.trigger_ref {
        return Err((
            Check::TriggerRef,
            format!(
                "the params now validate as {}, not {}",
                schedule.trigger_ref, timer.trigger_ref
            ),
        ));
    }
    retry_after_fault(
        || runtime.next_fire(&schedule, timer.started_at, now),
        |_| {},
    )
    .map_err(|e| (Check::NextFire, e.to_string()))?;
    Ok(schedule)
}

fn rejected(rejection: Rejection) -> SwapOutcome {
    let new = rejection
        .new
        .as_ref()
        .map(component_label)
        .unwrap_or_else(|| "(did not load)".into());
    error!(
        old_component = %component_label(&rejection.old),
        new_component = %new,
        check = %rejection.checks(),
        rule_ids = %list_ids(&rejection.rule_ids()),
        reason = %rejection,
        "Timer component swap rejected"
    );
    SwapOutcome::Rejected(rejection)
}

/// `1, 2, 3` — at most [`MAX_LISTED`] ids, then `and N more`.
fn list_ids(ids: &[i64]) -> String {
    let mut text = ids
        .iter()
        .take(MAX_LISTED)
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > MAX_LISTED {
        text.push_str(&format!(" and {} more", ids.len() - MAX_LISTED));
    }
    text
}

/// Swaps the component whenever `triggers` asks, until the task is aborted.
pub fn spawn_watch(
    table: RuleTable,
    source: Source,
    mut triggers: Triggers,
) -> tokio::task::JoinHandle<()> {
    use tracing::instrument::WithSubscriber;
    tokio::spawn(
        async move {
            loop {
                triggers.next().await;
                let loading = source.clone();
                match swap(&table, move || loading.load()).await {
                    SwapOutcome::Swapped { .. } => source.metrics.component_swap(true),
                    SwapOutcome::Rejected(_) => source.metrics.component_swap(false),
                    SwapOutcome::Unchanged(_) => {}
                }
            }
        }
        .with_current_subscriber(),
    )
}
