//! What went through a partition since the process started: records and
//! bytes appended and read by consumers. Plain atomics on the partition's
//! own log, so counting takes no lock; metrics read them when scraped.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one partition; see the module documentation.
#[derive(Debug, Default)]
pub struct LogTraffic {
    produced_records: AtomicU64,
    produced_bytes: AtomicU64,
    fetched_records: AtomicU64,
    fetched_bytes: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficSnapshot {
    /// Records appended (duplicates of an idempotent producer not counted).
    pub produced_records: u64,
    /// Bytes of the batches appended.
    pub produced_bytes: u64,
    /// Records of the batches handed to consumers.
    pub fetched_records: u64,
    /// Bytes of the batches handed to consumers.
    pub fetched_bytes: u64,
}

impl LogTraffic {
    pub(crate) fn count_produced(&self, records: u64, bytes: u64) {
        self.produced_records.fetch_add(records, Ordering::Relaxed);
        self.produced_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts batches handed to a consumer.
    pub fn count_fetched(&self, records: u64, bytes: u64) {
        self.fetched_records.fetch_add(records, Ordering::Relaxed);
        self.fetched_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> TrafficSnapshot {
        TrafficSnapshot {
            produced_records: self.produced_records.load(Ordering::Relaxed),
            produced_bytes: self.produced_bytes.load(Ordering::Relaxed),
            fetched_records: self.fetched_records.load(Ordering::Relaxed),
            fetched_bytes: self.fetched_bytes.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up() {
        let traffic = LogTraffic::default();
        traffic.count_produced(3, 300);
        traffic.count_produced(1, 50);
        traffic.count_fetched(4, 350);
        assert_eq!(
            traffic.snapshot(),
            TrafficSnapshot {
                produced_records: 4,
                produced_bytes: 350,
                fetched_records: 4,
                fetched_bytes: 350,
            }
        );
    }
}
