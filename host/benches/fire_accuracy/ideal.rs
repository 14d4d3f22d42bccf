//! The ideal client: what the same fake API, on the same machine, in the same run, gives a
//! client that does nothing but post — a burst of N event posts as tight keep-alive loops on
//! as many connections as the daemon's cap. The daemon's arrival lateness is compared with
//! how long this burst takes (a ratio, not an absolute), so a slow machine or a slow fake
//! API does not pass for a slow daemon.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attune_testkit::fake_api::FakeApi;
use serde::Serialize;

/// Bursts run; the median is reported.
const RUNS: usize = 3;

#[derive(Debug, Clone, Serialize)]
pub struct IdealFigures {
    pub events_per_burst: usize,
    pub connections: usize,
    /// Burst completion time of each run (first request sent → last answer), ms.
    pub burst_ms: Vec<f64>,
    pub burst_median_ms: f64,
    /// The daemon's arrival p99 (cron) over the ideal burst's median.
    pub arrival_p99_ratio: f64,
    pub note: &'static str,
}

const NOTE: &str = "burst_ms: N event posts (N = the scenario's rules due together) by \
    `connections` tight keep-alive loops against the same fake API, after the daemon stopped; \
    arrival_p99_ratio: the daemon's cron arrival p99 / burst_median_ms";

/// Runs the bursts; `n` posts each, on `connections` connections.
pub fn measure(
    api: &FakeApi,
    token: &str,
    n: usize,
    connections: usize,
    arrival_p99_ms: f64,
) -> IdealFigures {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let url = format!("{}/api/v1/events", api.url());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .tcp_nodelay(true)
        .build()
        .expect("http client");
    let body = serde_json::json!({
        "trigger_ref": "core.crontimer",
        "payload": {"type": "cron", "scheduled_at": "2030-01-01T00:00:00Z"},
        "trigger_instance_id": "rule_0",
    })
    .to_string();
    let mut burst_ms = Vec::with_capacity(RUNS);
    runtime.block_on(async {
        // Warm the connections.
        post_all(&client, &url, token, &body, connections, connections).await;
        for _ in 0..RUNS {
            let started = Instant::now();
            post_all(&client, &url, token, &body, n, connections).await;
            burst_ms.push(round3(started.elapsed().as_secs_f64() * 1000.0));
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    let _ = api.drain_events();
    let mut sorted = burst_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    IdealFigures {
        events_per_burst: n,
        connections,
        burst_ms,
        burst_median_ms: median,
        arrival_p99_ratio: round3(arrival_p99_ms / median.max(0.001)),
        note: NOTE,
    }
}

async fn post_all(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &str,
    n: usize,
    connections: usize,
) {
    let left = Arc::new(AtomicUsize::new(n));
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections.min(n) {
        let (client, url, token, body, left) = (
            client.clone(),
            url.to_string(),
            token.to_string(),
            body.to_string(),
            left.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |k| k.checked_sub(1))
                .is_ok()
            {
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("the fake API answers");
                assert!(response.status().is_success(), "{}", response.status());
                let _ = response.bytes().await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("poster");
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
