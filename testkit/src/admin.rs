//! The daemon's admin listener, from outside: what a probe, `curl` or Prometheus sees.
//! Metrics are parsed with `prometheus-parse`, a parser of the text format that is not the
//! one the daemon encodes with, so a test catches output only our own code would accept.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use prometheus_parse::{Sample, Value};

/// One answer of the admin listener.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Answer {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `GET http://{addr}{path}` with `accept` as the `Accept` header, if any.
pub async fn get_accepting(addr: SocketAddr, path: &str, accept: Option<&str>) -> Answer {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    let mut request = client.get(format!("http://{addr}{path}"));
    if let Some(accept) = accept {
        request = request.header(reqwest::header::ACCEPT, accept);
    }
    let resp = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path} from the admin listener at {addr}: {e}"));
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.text().await.expect("the answer's body");
    Answer {
        status,
        content_type,
        body,
    }
}

/// `GET http://{addr}{path}`.
pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    get_accepting(addr, path, None).await
}

/// `/metrics`, parsed.
pub async fn scrape(addr: SocketAddr) -> Metrics {
    let answer = get(addr, "/metrics").await;
    assert_eq!(answer.status, 200, "/metrics answered {}", answer.status);
    Metrics::parse(&answer.body)
}

/// A parsed scrape.
pub struct Metrics {
    pub text: String,
    samples: Vec<Sample>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines)
            .unwrap_or_else(|e| panic!("unparseable metrics ({e}):\n{text}"));
        Metrics {
            text: text.to_string(),
            samples: scrape.samples,
        }
    }

    /// The names of every metric present (histograms under their base name).
    pub fn names(&self) -> BTreeSet<String> {
        self.samples.iter().map(|s| s.metric.clone()).collect()
    }

    /// Samples of `name` whose labels include every pair of `labels`.
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
    }

    /// The sum of the counters, gauges or untyped values of `name` that match `labels`
    /// (0 when none does).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels)
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                _ => 0.0,
            })
            .sum()
    }

    /// The value of the first series of `name` whose labels include `labels`; `None` when
    /// there is none.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.matching(name, labels).next().map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            _ => f64::NAN,
        })
    }

    /// The observations of histogram `name` over every label set matching `labels`.
    pub fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels)
            .map(|s| match &s.value {
                Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
                _ => 0.0,
            })
            .sum()
    }

    /// The cumulative buckets `(le, count)` of histogram `name`, summed over every label
    /// set matching `labels`, in `le` order.
    pub fn histogram_buckets(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let mut sums: Vec<(f64, f64)> = Vec::new();
        for s in self.matching(name, labels) {
            if let Value::Histogram(buckets) = &s.value {
                for b in buckets {
                    match sums.iter_mut().find(|(le, _)| *le == b.less_than) {
                        Some((_, n)) => *n += b.count,
                        None => sums.push((b.less_than, b.count)),
                    }
                }
            }
        }
        sums.sort_by(|a, b| a.0.total_cmp(&b.0));
        sums
    }

    /// The label values of `label` across the series of `name`.
    pub fn label_values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.samples
            .iter()
            .filter(|s| s.metric == name)
            .filter_map(|s| s.labels.get(label).map(str::to_string))
            .collect()
    }
}
