//! What the daemon's own `/metrics` said about the window: scraped from its admin listener
//! at the window's start and end, as Prometheus would, and reported as differences. The
//! bench's other figures are measured from outside (the fake API's receive times) or from
//! the clock's exact histogram; these are what an operator's dashboard shows for the same
//! run, so a disagreement between the two is a bug in one of them.

use std::collections::BTreeMap;

use attune_testkit::admin::Metrics;
use serde::Serialize;

pub const NOTE_EXPORTED: &str = "the daemon's /metrics, end − start of the window; quantiles \
    are the upper bound of the histogram bucket they fall in (what histogram_quantile \
    interpolates within)";

#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    /// `attune_timer_fires_total` by `outcome`.
    pub fires: BTreeMap<String, f64>,
    pub events_delivered: f64,
    pub events_lost: f64,
    pub event_retries: f64,
    pub handover_lateness_p50_at_most_ms: Option<f64>,
    pub handover_lateness_p99_at_most_ms: Option<f64>,
    pub event_requests: f64,
    pub event_request_p99_at_most_ms: Option<f64>,
    pub store_commits: f64,
    pub store_commit_p99_at_most_ms: Option<f64>,
    /// `attune_timer_outbox_events` (memory + disk) at the window's end.
    pub outbox_events_at_end: f64,
    pub note: &'static str,
}

impl Exported {
    pub fn fires_total(&self) -> f64 {
        self.fires.values().sum()
    }
}

/// The change of histogram `name` over the window, as cumulative `(le, count)` buckets.
fn bucket_delta(
    before: &Metrics,
    after: &Metrics,
    name: &str,
    labels: &[(&str, &str)],
) -> Vec<(f64, f64)> {
    let b0 = before.histogram_buckets(name, labels);
    after
        .histogram_buckets(name, labels)
        .into_iter()
        .map(|(le, n)| {
            let was = b0.iter().find(|(l, _)| *l == le).map_or(0.0, |(_, n)| *n);
            (le, n - was)
        })
        .collect()
}

/// The upper bound, in ms, of the bucket the `q` quantile falls in; `None` with no
/// observation, or when it falls in the `+Inf` bucket.
fn quantile_at_most_ms(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    buckets
        .iter()
        .find(|(_, n)| *n >= q * total)
        .map(|(le, _)| *le * 1000.0)
        .filter(|ms| ms.is_finite())
}

pub fn window(before: &Metrics, after: &Metrics) -> Exported {
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);
    let mut fires = BTreeMap::new();
    for outcome in ["on_time", "late", "catch_up", "faulted"] {
        fires.insert(
            outcome.to_string(),
            delta("attune_timer_fires_total", &[("outcome", outcome)]),
        );
    }
    let lateness = bucket_delta(before, after, "attune_timer_handover_lateness_seconds", &[]);
    let requests = bucket_delta(
        before,
        after,
        "attune_timer_api_request_duration_seconds",
        &[("endpoint", "events")],
    );
    let commits = bucket_delta(
        before,
        after,
        "attune_timer_store_write_duration_seconds",
        &[],
    );
    Exported {
        fires,
        events_delivered: delta("attune_timer_events_delivered_total", &[]),
        events_lost: delta("attune_timer_events_failed_total", &[]),
        event_retries: delta("attune_timer_event_retries_total", &[]),
        handover_lateness_p50_at_most_ms: quantile_at_most_ms(&lateness, 0.5),
        handover_lateness_p99_at_most_ms: quantile_at_most_ms(&lateness, 0.99),
        event_requests: requests.last().map_or(0.0, |(_, n)| *n),
        event_request_p99_at_most_ms: quantile_at_most_ms(&requests, 0.99),
        store_commits: commits.last().map_or(0.0, |(_, n)| *n),
        store_commit_p99_at_most_ms: quantile_at_most_ms(&commits, 0.99),
        outbox_events_at_end: after.sum("attune_timer_outbox_events", &[]),
        note: NOTE_EXPORTED,
    }
}
