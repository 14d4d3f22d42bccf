//! [`Collect`]: an [`EventSink`] that records every event the clock hands it, with the
//! (tokio) instant it arrived, and can wait for a number of them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use attune_timer::schedule::event::{Event, EventSink};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Records every event, in the order the clock submitted them.
#[derive(Default)]
pub struct Collect {
    events: Mutex<Vec<(Instant, Event)>>,
    arrived: Notify,
}

impl EventSink for Collect {
    fn submit(&self, event: Event) {
        self.events.lock().unwrap().push((Instant::now(), event));
        self.arrived.notify_waiters();
    }
}

impl Collect {
    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// Every event so far, removing them.
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().unwrap())
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    }

    /// How many events so far.
    pub fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The events of rule `id` so far.
    pub fn for_rule(&self, id: i64) -> Vec<Event> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, e)| e.rule_id == id)
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// The events so far, by rule id.
    pub fn by_rule(&self) -> BTreeMap<i64, Vec<Event>> {
        let mut map: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
        for (_, e) in self.events.lock().unwrap().iter() {
            map.entry(e.rule_id).or_default().push(e.clone());
        }
        map
    }

    /// The events so far, by rule id, each with the instant it reached the sink.
    pub fn timed_by_rule(&self) -> BTreeMap<i64, Vec<(Instant, Event)>> {
        let mut map: BTreeMap<i64, Vec<(Instant, Event)>> = BTreeMap::new();
        for (at, e) in self.events.lock().unwrap().iter() {
            map.entry(e.rule_id).or_default().push((*at, e.clone()));
        }
        map
    }

    /// Waits (tokio time, up to `within`) until at least `n` events have arrived; returns
    /// every event so far, however many that is.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Event> {
        let deadline = Instant::now() + within;
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if self.len() >= n {
                break;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                break;
            }
        }
        self.events()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attune_timer::component::TimerRuntime;
    use attune_timer::schedule::rules::RuleTable;
    use attune_timer::schedule::Clock;
    use serde_json::json;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn collects_and_waits_for_fires() {
        let sink = Arc::new(Collect::default());
        let clock = Clock::spawn(
            Arc::new(TimerRuntime::embedded().unwrap()),
            sink.clone(),
            "core.timer_sensor".into(),
        );
        let table = RuleTable::new(clock.clone(), vec!["core.intervaltimer".into()]);
        let rule = crate::rules::interval_rule(1, json!({"interval": 1}));
        assert!(table.upsert(rule).await.is_running());
        let events = sink.wait_for(3, Duration::from_secs(10)).await;
        assert!(events.len() >= 3, "{}", events.len());
        assert!(events.iter().all(|e| e.rule_id == 1));
        assert_eq!(sink.for_rule(1).len(), sink.len());
        assert_eq!(sink.by_rule()[&1].len(), sink.timed_by_rule()[&1].len());
        clock.shutdown().await;
        let taken = sink.take();
        assert!(taken.len() >= 3);
        assert!(sink.is_empty());
    }
}
