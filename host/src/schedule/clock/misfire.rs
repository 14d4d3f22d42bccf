//! Missed ticks: what a rule does about ticks whose time passed while the daemon was down,
//! or while the machine was suspended or its wall clock stepped forward
//! (docs/durability.md §Missed ticks).
//!
//! The default is [`MisfirePolicy::Latest`] with a grace of [`DEFAULT_GRACE`]: after an
//! outage a rule fires once, for its most recent missed tick, if that tick is at most an
//! hour old. Why: systemd's `Persistent=true` fires a missed timer once at boot however old
//! (no grace), Kubernetes' CronJob starts only the most recent missed schedule and skips it
//! when it is older than `startingDeadlineSeconds` (unset by default: no limit, but more
//! than 100 missed schedules stop it), and Quartz treats a trigger later than its misfire
//! threshold (60 s by default) as misfired and, for cron triggers, fires once now. All three
//! fire *once*, not once per missed tick; the grace bounds how stale that one fire may be.
//! An hour covers a restart, a deploy, a reboot or a short maintenance window, when the
//! missed work still matters; an event for a tick hours old is more likely to surprise than
//! to help, and `all` or a longer grace is one setting away.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The default grace: 1 hour (see the module docs for why).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
/// Catch-up fires of one rule under [`MisfirePolicy::All`] at most: the most recent ones
/// are kept.
pub const MAX_CATCH_UP: usize = 1000;

/// What to do with missed ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MisfirePolicy {
    /// Fire none; carry on from the next tick.
    Skip,
    /// Fire the most recent missed tick once, if it is within the grace (the default).
    #[default]
    Latest,
    /// Fire every missed tick within the grace, oldest first, paced, at most
    /// [`MAX_CATCH_UP`] per rule (the most recent).
    All,
}

impl MisfirePolicy {
    /// `skip`, `latest` or `all` (case-insensitive).
    pub fn parse(value: &str) -> Option<MisfirePolicy> {
        match value.trim().to_ascii_lowercase().as_str() {
            "skip" => Some(MisfirePolicy::Skip),
            "latest" => Some(MisfirePolicy::Latest),
            "all" => Some(MisfirePolicy::All),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MisfirePolicy::Skip => "skip",
            MisfirePolicy::Latest => "latest",
            MisfirePolicy::All => "all",
        }
    }
}

/// The misfire policy and its grace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Misfire {
    pub policy: MisfirePolicy,
    /// How old a missed tick may be and still fire.
    pub grace: Duration,
}

impl Default for Misfire {
    fn default() -> Self {
        Self {
            policy: MisfirePolicy::Latest,
            grace: DEFAULT_GRACE,
        }
    }
}

/// Ticks enumerated one by one when counting missed ticks; past it the latest missed tick is
/// found by bisection and the count is a lower bound.
const COUNT_ONE_BY_ONE: u64 = 64;

/// What to do about a rule's missed ticks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The ticks to fire now, oldest first.
    pub fire: Vec<DateTime<Utc>>,
    /// How many ticks were missed (a lower bound when `exact` is false).
    pub missed: u64,
    pub exact: bool,
    /// The first tick after now: where the schedule carries on; `None` when it has ended.
    pub resume: Option<DateTime<Utc>>,
}

impl Misfire {
    /// Plans a rule's missed ticks: `first` is its first tick not fired yet, `now` the
    /// current time, and `next(t)` the schedule's first tick strictly after `t` (a
    /// component call). Calls `next` a few dozen times at most, except under
    /// [`MisfirePolicy::All`], which enumerates the ticks it fires.
    pub fn plan<E>(
        &self,
        first: DateTime<Utc>,
        now: DateTime<Utc>,
        next: impl Fn(DateTime<Utc>) -> Result<Option<DateTime<Utc>>, E>,
    ) -> Result<Plan, E> {
        if first > now {
            return Ok(Plan {
                fire: Vec::new(),
                missed: 0,
                exact: true,
                resume: Some(first),
            });
        }
        // Count one by one for a while; the common case (a few missed ticks) ends here.
        let mut missed = 1;
        let mut latest = first;
        let mut after = next(first)?;
        while let Some(t) = after.filter(|t| *t <= now) {
            if missed == COUNT_ONE_BY_ONE {
                break;
            }
            missed += 1;
            latest = t;
            after = next(t)?;
        }
        let exact = after.is_none_or(|t| t > now);
        let resume = if exact {
            after
        } else {
            // Bisect for the latest tick at or before now: `latest` is one; no tick lies in
            // (hi, now].
            let step = chrono::Duration::nanoseconds(1);
            let mut hi = now;
            while hi - latest > step {
                let mid = latest + (hi - latest) / 2;
                match next(mid)? {
                    Some(t) if t <= now => latest = t,
                    _ => hi = mid,
                }
            }
            next(latest)?
        };
        let cutoff = chrono::Duration::from_std(self.grace)
            .ok()
            .and_then(|g| now.checked_sub_signed(g))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let fire = match self.policy {
            MisfirePolicy::Skip => Vec::new(),
            MisfirePolicy::Latest if latest >= cutoff => vec![latest],
            MisfirePolicy::Latest => Vec::new(),
            MisfirePolicy::All => {
                let mut fire = Vec::new();
                let mut t = if first >= cutoff {
                    Some(first)
                } else {
                    next(cutoff - chrono::Duration::nanoseconds(1))?
                };
                while let Some(tick) = t.filter(|t| *t <= now) {
                    if fire.len() == MAX_CATCH_UP {
                        break;
                    }
                    fire.push(tick);
                    t = next(tick)?;
                }
                fire
            }
        };
        Ok(Plan {
            fire,
            missed,
            exact,
            resume,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    /// Every 10 s from 0, as a component would answer.
    fn every_10s(after: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, ()> {
        let s = after.timestamp();
        Ok(Some(at((s.div_euclid(10) + 1) * 10)))
    }

    fn plan(policy: MisfirePolicy, grace: u64, first: i64, now: i64) -> Plan {
        Misfire {
            policy,
            grace: Duration::from_secs(grace),
        }
        .plan(at(first), at(now), every_10s)
        .unwrap()
    }

    #[test]
    fn nothing_missed_carries_on() {
        let p = plan(MisfirePolicy::Latest, 60, 100, 95);
        assert_eq!((p.fire, p.missed, p.resume), (vec![], 0, Some(at(100))));
    }

    #[test]
    fn latest_fires_the_most_recent_within_the_grace() {
        let p = plan(MisfirePolicy::Latest, 60, 100, 145);
        assert_eq!(p.fire, vec![at(140)]);
        assert_eq!((p.missed, p.exact, p.resume), (5, true, Some(at(150))));
        // Outside the grace: nothing fires, the count still says what was missed.
        let p = plan(MisfirePolicy::Latest, 3, 100, 145);
        assert_eq!((p.fire.len(), p.missed), (0, 5));
    }

    #[test]
    fn skip_fires_none_and_all_fires_each_within_the_grace() {
        let p = plan(MisfirePolicy::Skip, 3600, 100, 145);
        assert_eq!((p.fire.len(), p.missed, p.resume), (0, 5, Some(at(150))));
        let p = plan(MisfirePolicy::All, 25, 100, 145);
        assert_eq!(p.fire, vec![at(120), at(130), at(140)]);
    }

    #[test]
    fn a_long_outage_is_bisected_not_walked() {
        let calls = std::cell::Cell::new(0);
        let p = Misfire::default()
            .plan(at(10), at(86_405), |t| {
                calls.set(calls.get() + 1);
                every_10s(t)
            })
            .unwrap();
        assert_eq!(p.fire, vec![at(86_400)]);
        assert_eq!(p.resume, Some(at(86_410)));
        assert!(!p.exact && p.missed == COUNT_ONE_BY_ONE);
        assert!(calls.get() < 200, "{} calls", calls.get());
        // All: at most MAX_CATCH_UP, oldest first within the grace.
        let p = Misfire {
            policy: MisfirePolicy::All,
            grace: Duration::from_secs(86_400),
        }
        .plan(at(10), at(86_405), every_10s)
        .unwrap();
        assert_eq!(p.fire.len(), MAX_CATCH_UP);
        assert_eq!(p.fire[0], at(10));
    }

    #[test]
    fn a_one_shot_missed_fires_once_within_the_grace() {
        let once = |after: DateTime<Utc>| -> Result<Option<DateTime<Utc>>, ()> {
            Ok((after < at(100)).then(|| at(100)))
        };
        let p = Misfire::default().plan(at(100), at(160), once).unwrap();
        assert_eq!((p.fire, p.missed, p.resume), (vec![at(100)], 1, None));
    }
}
