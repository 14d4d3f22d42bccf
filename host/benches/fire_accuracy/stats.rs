//! Statistics of the collected fires and of the clock's lateness histogram, typed as the
//! report states them (ms).

use std::collections::HashMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use attune_timer::schedule::ON_TIME;

use crate::records::Rec;

fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Nanoseconds as milliseconds, to the microsecond.
pub fn ms(ns: i64) -> f64 {
    (ns as f64 / 1e6 * 1000.0).round() / 1000.0
}

/// A distribution of lateness (or drift), in ms.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Dist {
    pub n: u64,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

pub fn dist(mut v: Vec<i64>) -> Dist {
    v.sort_unstable();
    let mean = if v.is_empty() {
        0.0
    } else {
        v.iter().map(|x| *x as f64).sum::<f64>() / v.len() as f64 / 1e6
    };
    Dist {
        n: v.len() as u64,
        min_ms: ms(v.first().copied().unwrap_or(0)),
        p50_ms: ms(pct(&v, 50.0)),
        p90_ms: ms(pct(&v, 90.0)),
        p99_ms: ms(pct(&v, 99.0)),
        p99_9_ms: ms(pct(&v, 99.9)),
        max_ms: ms(v.last().copied().unwrap_or(0)),
        mean_ms: (mean * 1000.0).round() / 1000.0,
    }
}

/// `[bucket, count]` pairs, in order.
pub type Buckets = Vec<(String, u64)>;

/// How many fires fall into each lateness bucket (upper bounds in ms).
pub fn histogram(v: &[i64]) -> Buckets {
    const EDGES: [f64; 11] = [
        1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0,
    ];
    let mut counts = [0u64; EDGES.len() + 1];
    for &x in v {
        let m = x as f64 / 1e6;
        let i = EDGES.iter().position(|e| m < *e).unwrap_or(EDGES.len());
        counts[i] += 1;
    }
    let mut out = Vec::new();
    let mut lo = 0.0;
    for (i, c) in counts.iter().enumerate() {
        let key = match EDGES.get(i) {
            Some(hi) => format!("{lo}-{hi} ms"),
            None => format!(">={lo} ms"),
        };
        out.push((key, *c));
        lo = EDGES.get(i).copied().unwrap_or(lo);
    }
    out
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct WorstGap {
    pub rule_id: i64,
    pub ticks: i64,
}

/// Sequence checks of one kind of rule.
#[derive(Debug, Clone, Serialize)]
pub struct Sequence {
    pub fires: usize,
    pub expected: i64,
    pub missed: i64,
    pub duplicates: i64,
    pub rules: usize,
    pub rules_without_a_fire: usize,
    pub worst_gap: Option<WorstGap>,
}

/// Sequence checks for one kind of rule: ticks between each rule's first and last fire in
/// the window, gaps and duplicates.
pub fn sequences(recs: &[&Rec], rules: &[(i64, i64)]) -> Sequence {
    let mut by_rule: HashMap<i64, Vec<i64>> = HashMap::new();
    for r in recs {
        by_rule.entry(r.rule).or_default().push(r.sched);
    }
    let (mut expected, mut missed, mut duplicates, mut never) = (0i64, 0i64, 0i64, 0usize);
    let mut worst_gap_rule: Option<(i64, i64)> = None;
    for &(rule, every) in rules {
        let Some(ticks) = by_rule.get_mut(&rule) else {
            never += 1;
            continue;
        };
        ticks.sort_unstable();
        expected += (ticks[ticks.len() - 1] - ticks[0]) / every + 1;
        for w in ticks.windows(2) {
            let d = w[1] - w[0];
            if d == 0 {
                duplicates += 1;
            } else if d > every {
                let gap = d / every - 1;
                missed += gap;
                if worst_gap_rule.is_none_or(|(_, g)| gap > g) {
                    worst_gap_rule = Some((rule, gap));
                }
            }
        }
    }
    Sequence {
        fires: recs.len(),
        expected,
        missed,
        duplicates,
        rules: rules.len(),
        rules_without_a_fire: never,
        worst_gap: worst_gap_rule.map(|(rule_id, ticks)| WorstGap { rule_id, ticks }),
    }
}

/// The clock's lateness distribution, and how many fires were later than `ON_TIME`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ClockDist {
    #[serde(flatten)]
    pub dist: Dist,
    pub later_than_on_time: u64,
    pub on_time_ms: f64,
}

/// The clock's lateness histogram (ns) as the report states it, in ms.
pub fn hist_dist(h: &Histogram<u64>) -> ClockDist {
    let q = |p: f64| ms(h.value_at_quantile(p) as i64);
    let on_time_ns = ON_TIME.as_nanos() as u64;
    ClockDist {
        dist: Dist {
            n: h.len(),
            min_ms: ms(h.min() as i64),
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            p99_9_ms: q(0.999),
            max_ms: ms(h.max() as i64),
            mean_ms: (h.mean() / 1e6 * 1000.0).round() / 1000.0,
        },
        later_than_on_time: h.len() - h.count_between(0, on_time_ns).min(h.len()),
        on_time_ms: ON_TIME.as_secs_f64() * 1000.0,
    }
}

/// How many of the clock's fires fall into each lateness bucket (upper bounds in ms).
pub fn hist_buckets(h: &Histogram<u64>) -> Buckets {
    const EDGES: [f64; 13] = [
        0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 500.0, 1000.0,
    ];
    let mut out = Vec::new();
    let mut lo = 0.0;
    let mut below_lo = 0u64;
    for hi in EDGES {
        // Values up to just under `hi`.
        let below_hi = h.count_between(0, ((hi * 1e6) as u64).saturating_sub(1));
        out.push((format!("{lo}-{hi} ms"), below_hi.saturating_sub(below_lo)));
        below_lo = below_hi;
        lo = hi;
    }
    out.push((format!(">={lo} ms"), h.len().saturating_sub(below_lo)));
    out
}
