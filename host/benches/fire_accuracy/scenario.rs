//! A scenario: how many cron rules, firing how often.

/// Nanoseconds per second.
pub const NS: i64 = 1_000_000_000;
/// The periods of the interval rules (s), in turn.
pub const INTERVALS: [i64; 4] = [1, 2, 3, 5];

/// One scenario: `rules` cron rules, each firing every `period` seconds.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub rules: usize,
    /// Seconds between two fires of one rule; divides 60.
    pub period: i64,
}

impl Scenario {
    /// `1k`, `10k`, `100k` (every 10 s), or `N[/P]` with `N` a count (`k` for thousands).
    pub fn parse(text: &str) -> Scenario {
        let text = text.trim();
        let (count, period) = match (text, text.split_once('/')) {
            ("100k", _) => ("100k", "10"),
            (_, Some((c, p))) => (c, p),
            (_, None) => (text, "1"),
        };
        let count = count.replace('_', "");
        let rules = match count.strip_suffix(['k', 'K']) {
            Some(k) => k.parse::<usize>().map(|k| k * 1000),
            None => count.parse::<usize>(),
        }
        .unwrap_or_else(|_| panic!("bad scenario {text:?}: expected 1k, 10k, 100k, N or N/P"));
        let period: i64 = period
            .parse()
            .unwrap_or_else(|_| panic!("bad period in scenario {text:?}"));
        assert!(
            rules > 0 && (1..=60).contains(&period) && 60 % period == 0,
            "scenario {text:?}: need at least one rule and a period that divides 60"
        );
        Scenario {
            name: text.to_string(),
            rules,
            period,
        }
    }

    /// The cron expression of rule `id` (ids start at 1).
    pub fn expression(&self, id: i64) -> String {
        if self.period == 1 {
            "* * * * * *".to_string()
        } else {
            format!("{}/{} * * * * *", id % self.period, self.period)
        }
    }

    /// The expressions, as the report states them.
    pub fn expression_doc(&self) -> String {
        if self.period == 1 {
            "* * * * * *".to_string()
        } else {
            format!("{{id % {p}}}/{p} * * * * *", p = self.period)
        }
    }

    /// How many cron rules are due in a second `s` (UTC, since the epoch), by `s % period`.
    pub fn due_by_phase(&self) -> Vec<usize> {
        let mut due = vec![0usize; self.period as usize];
        for id in 1..=self.rules as i64 {
            due[(id % self.period) as usize] += 1;
        }
        due
    }

    pub fn fires_per_second(&self) -> f64 {
        self.rules as f64 / self.period as f64
    }

    /// For file names: `100k`, `50k_5`.
    pub fn tag(&self) -> String {
        self.name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    }

    /// "10,000 rules every second" / "100,000 rules every 10 s (10,000 a second)".
    pub fn describe(&self) -> String {
        if self.period == 1 {
            format!("{} rules every second", thousands(self.rules as u64))
        } else {
            format!(
                "{} rules every {} s ({} a second)",
                thousands(self.rules as u64),
                self.period,
                thousands(self.fires_per_second().round() as u64)
            )
        }
    }
}

/// `12,345`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
