//! Live rates for the console: every [`RATE_INTERVAL`] a task started with
//! the HTTP listener reads each user topic's counters (records produced
//! and fetched, summed over its partitions: plain atomics on each log, see
//! `carteiro_storage::LogTraffic`) and keeps the records per second since
//! the previous sample, in a ring of at most [`RATE_SAMPLES_MAX`] samples a
//! topic, for at most [`RATE_TOPICS_MAX`] topics. Nothing is counted on the
//! produce or fetch path for it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carteiro_core::Broker;
use carteiro_core::broker::INTERNAL_TOPIC_PREFIX;
use serde::Serialize;

/// How often the counters are sampled (1 s).
pub const RATE_INTERVAL: Duration = Duration::from_secs(1);
/// Samples kept per topic: 300, five minutes at one a second.
pub const RATE_SAMPLES_MAX: usize = 300;
/// Topics whose rates are kept: the first 1,000 by name; past it, a topic
/// shows no rates (the memory stays under 5 MiB).
pub const RATE_TOPICS_MAX: usize = 1000;

/// A topic's records counted since the broker started, all partitions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Records appended.
    pub produced: u64,
    /// Records handed to consumers.
    pub fetched: u64,
}

/// One sample of one topic: records per second over the interval that
/// ended at `t_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RatePoint {
    /// When the interval ended, ms since the Unix epoch.
    pub t_ms: i64,
    /// Records appended per second.
    pub produced_per_s: f64,
    /// Records handed to consumers per second.
    pub fetched_per_s: f64,
}

/// One topic's series. A topic deleted and made again under the same name
/// (another creation time) starts a new one.
#[derive(Debug)]
struct Series {
    created_ms: i64,
    last: Totals,
    last_at: Instant,
    points: VecDeque<RatePoint>,
}

/// The rings of every topic; see the module documentation.
#[derive(Debug, Default)]
pub struct Rates {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the previous sample was taken.
    previous: Option<Instant>,
    topics: BTreeMap<String, Series>,
}

/// One topic as a sample reads it: name, creation time, totals.
pub type TopicTotals = (String, i64, Totals);

impl Series {
    /// Adds the point of the interval from the previous totals to `totals`.
    fn push(&mut self, at: Instant, t_ms: i64, totals: Totals) {
        let seconds = at.saturating_duration_since(self.last_at).as_secs_f64();
        if seconds > 0.0 {
            let per_s = |now: u64, before: u64| now.saturating_sub(before) as f64 / seconds;
            if self.points.len() == RATE_SAMPLES_MAX {
                self.points.pop_front();
            }
            self.points.push_back(RatePoint {
                t_ms,
                produced_per_s: per_s(totals.produced, self.last.produced),
                fetched_per_s: per_s(totals.fetched, self.last.fetched),
            });
        }
        self.last = totals;
        self.last_at = at;
    }
}

impl Rates {
    /// Records one sample taken at `at` (wall clock `t_ms`) of `topics`.
    /// A topic absent from the sample is forgotten. A topic absent from
    /// the previous sample is new (or made again): its counters started at
    /// zero since then, so it gets its first point now; at the very first
    /// sample, every topic only gets its starting totals.
    pub fn record(&self, at: Instant, t_ms: i64, topics: Vec<TopicTotals>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let previous = state.previous.replace(at);
        let mut next = BTreeMap::new();
        for (name, created_ms, totals) in topics.into_iter().take(RATE_TOPICS_MAX) {
            let mut series = match state.topics.remove(&name) {
                Some(known) if known.created_ms == created_ms => known,
                _ => Series {
                    created_ms,
                    last: Totals::default(),
                    last_at: previous.unwrap_or(at),
                    points: VecDeque::new(),
                },
            };
            series.push(at, t_ms, totals);
            next.insert(name, series);
        }
        state.topics = next;
    }

    /// A topic's samples of the last `seconds`, oldest first.
    pub fn series(&self, topic: &str, seconds: u32) -> Vec<RatePoint> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(known) = state.topics.get(topic) else {
            return Vec::new();
        };
        let newest = known.points.back().map_or(0, |p| p.t_ms);
        let since = newest.saturating_sub(i64::from(seconds) * 1000);
        known
            .points
            .iter()
            .filter(|p| p.t_ms > since)
            .copied()
            .collect()
    }

    /// Every topic's samples of the last `seconds`, by name.
    pub fn all(&self, seconds: u32) -> Vec<(String, Vec<RatePoint>)> {
        let names: Vec<String> = {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.topics.keys().cloned().collect()
        };
        names
            .into_iter()
            .map(|name| {
                let points = self.series(&name, seconds);
                (name, points)
            })
            .collect()
    }

    /// A topic's newest sample.
    pub fn latest(&self, topic: &str) -> Option<RatePoint> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.topics.get(topic)?.points.back().copied()
    }
}

/// Every user topic's totals now, by name. Reads atomics only.
fn totals(broker: &Broker) -> Vec<TopicTotals> {
    let mut topics: Vec<TopicTotals> = broker
        .store()
        .topics()
        .iter()
        .filter(|t| !t.name().starts_with(INTERNAL_TOPIC_PREFIX))
        .map(|topic| {
            let mut totals = Totals::default();
            for log in topic.partitions() {
                let traffic = log.traffic().snapshot();
                totals.produced += traffic.produced_records;
                totals.fetched += traffic.fetched_records;
            }
            (topic.name().to_string(), topic.created_ms(), totals)
        })
        .collect();
    topics.sort_by(|a, b| a.0.cmp(&b.0));
    topics
}

/// Takes the first sample, when the broker has just opened: before any
/// client is served, so that what clients do before the first tick of
/// [`sample_forever`] counts in its first points.
pub fn first_sample(rates: &Rates, broker: &Broker) {
    rates.record(Instant::now(), broker.now_ms(), totals(broker));
}

/// Samples every [`RATE_INTERVAL`] once `broker` yields the core (after
/// recovery), for as long as the task runs.
pub async fn sample_forever(rates: &Rates, broker: impl Fn() -> Option<Arc<Broker>>) {
    let mut ticks = tokio::time::interval(RATE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Some(broker) = broker() {
            rates.record(Instant::now(), broker.now_ms(), totals(&broker));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, created_ms: i64, produced: u64, fetched: u64) -> TopicTotals {
        (name.to_string(), created_ms, Totals { produced, fetched })
    }

    #[test]
    fn rates_are_the_counters_differences_over_the_elapsed_time() {
        let rates = Rates::default();
        let start = Instant::now();
        rates.record(start, 1_000, vec![sample("orders", 7, 100, 0)]);
        assert_eq!(rates.latest("orders"), None, "one sample makes no rate");
        rates.record(
            start + Duration::from_secs(2),
            3_000,
            vec![sample("orders", 7, 300, 50)],
        );
        assert_eq!(
            rates.latest("orders"),
            Some(RatePoint {
                t_ms: 3_000,
                produced_per_s: 100.0,
                fetched_per_s: 25.0
            })
        );
    }

    #[test]
    fn the_ring_keeps_the_newest_samples_and_forgets_deleted_topics() {
        let rates = Rates::default();
        let start = Instant::now();
        for i in 0..(RATE_SAMPLES_MAX as u64 + 20) {
            rates.record(
                start + Duration::from_secs(i),
                i as i64 * 1000,
                vec![sample("orders", 7, i * 10, 0), sample("audit", 1, 0, 0)],
            );
        }
        let points = rates.series("orders", u32::MAX);
        assert_eq!(points.len(), RATE_SAMPLES_MAX);
        assert!(points.iter().all(|p| p.produced_per_s == 10.0));
        assert_eq!(rates.series("orders", 10).len(), 10);
        assert_eq!(rates.all(60).len(), 2);
        // `audit` deleted: its series goes.
        rates.record(
            start + Duration::from_secs(1000),
            1_000_000,
            vec![sample("orders", 7, 0, 0)],
        );
        assert!(rates.series("audit", 60).is_empty());
        assert_eq!(rates.all(60).len(), 1);
    }

    #[test]
    fn a_new_topic_and_a_topic_made_again_count_from_zero() {
        let rates = Rates::default();
        let start = Instant::now();
        rates.record(start, 0, vec![sample("orders", 7, 1_000_000, 0)]);
        // Made again, and a new topic, both written to since the last sample.
        rates.record(
            start + Duration::from_secs(1),
            1000,
            vec![sample("fresh", 9, 5, 5), sample("orders", 8, 10, 0)],
        );
        assert_eq!(rates.latest("orders").map(|p| p.produced_per_s), Some(10.0));
        assert_eq!(rates.latest("fresh").map(|p| p.fetched_per_s), Some(5.0));
        rates.record(
            start + Duration::from_secs(2),
            2000,
            vec![sample("orders", 8, 30, 0)],
        );
        assert_eq!(rates.latest("orders").map(|p| p.produced_per_s), Some(20.0));
    }

    #[test]
    fn topics_past_the_limit_have_no_series() {
        let rates = Rates::default();
        let many: Vec<TopicTotals> = (0..RATE_TOPICS_MAX + 5)
            .map(|i| sample(&format!("t{i:05}"), 1, 0, 0))
            .collect();
        rates.record(Instant::now(), 0, many);
        assert_eq!(rates.all(60).len(), RATE_TOPICS_MAX);
    }
}
