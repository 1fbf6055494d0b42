//! Figures for `/metrics` that cost no lock to count: a histogram with
//! fixed bucket bounds (one atomic per bucket and one for the sum), a
//! gauge, and the counters of one kind of request. Counting is a few
//! relaxed atomic adds; the collector reads snapshots when scraped.
//!
//! This module lives in the storage engine because it is the one crate
//! that everything with figures to show depends on: the partition logs
//! (append and sync times), the Kafka edge and the gRPC edge (requests).
//! It knows nothing of Prometheus or of any wire protocol: an edge names
//! its APIs, codes and limits in its own tables and hands the collector an
//! [`EdgeSnapshot`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Buckets of a [`DurationHistogram`] (each upper bound, and one above the last).
pub const DURATION_BOUNDS: usize = 20;

/// Upper bounds of the duration buckets, in ns: 10 µs to 30 s in steps of
/// 1, 2.5, 5 (a produce's append takes tens of µs, a sync hundreds of µs
/// to ms, a long-poll fetch up to its wait).
pub const DURATION_BOUNDS_NS: [u64; DURATION_BOUNDS] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
];

/// Buckets of a [`CountHistogram`].
pub const COUNT_BOUNDS: usize = 12;

/// Upper bounds of the count buckets: powers of two, 1 to 2048.
pub const COUNT_BOUNDS_VALUES: [u64; COUNT_BOUNDS] =
    [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048];

/// A histogram of durations, kept in ns (shown in seconds).
pub type DurationHistogram = Histogram<DURATION_BOUNDS>;
/// A histogram of small counts (how many batches one sync covered).
pub type CountHistogram = Histogram<COUNT_BOUNDS>;

/// A histogram with `N` fixed upper bounds and one more bucket above the
/// last. Observing is one binary search over the bounds and two relaxed
/// atomic adds; the count is the sum of the buckets, so a snapshot's count
/// always equals its `+Inf` bucket.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds: &'static [u64; N],
    /// `buckets[i]`: values at most `bounds[i]` and above `bounds[i - 1]`.
    buckets: [AtomicU64; N],
    /// Values above the last bound.
    above: AtomicU64,
    sum: AtomicU64,
}

impl Histogram<DURATION_BOUNDS> {
    /// An empty histogram of durations ([`DURATION_BOUNDS_NS`]).
    pub const fn durations() -> Self {
        Self::new(&DURATION_BOUNDS_NS)
    }

    /// Observes the time since `start`.
    #[inline]
    pub fn observe_since(&self, start: Instant) {
        self.observe_duration(start.elapsed());
    }

    /// Observes a duration.
    #[inline]
    pub fn observe_duration(&self, elapsed: std::time::Duration) {
        self.observe(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }
}

impl Histogram<COUNT_BOUNDS> {
    /// An empty histogram of counts ([`COUNT_BOUNDS_VALUES`]).
    pub const fn counts() -> Self {
        Self::new(&COUNT_BOUNDS_VALUES)
    }
}

impl<const N: usize> Histogram<N> {
    /// An empty histogram over `bounds`, which must be strictly ascending
    /// (checked: a constant's bounds at compile time).
    pub const fn new(bounds: &'static [u64; N]) -> Self {
        let mut i = 1;
        while i < N {
            assert!(bounds[i - 1] < bounds[i], "histogram bounds must ascend");
            i += 1;
        }
        Histogram {
            bounds,
            buckets: [const { AtomicU64::new(0) }; N],
            above: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    /// Counts one value.
    #[inline]
    pub fn observe(&self, value: u64) {
        let bucket = self.bounds.partition_point(|&bound| bound < value);
        self.buckets
            .get(bucket)
            .unwrap_or(&self.above)
            .fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// The buckets and sum now. Values counted meanwhile may be in the
    /// buckets and not yet in the sum, never the other way round in count.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut buckets: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        buckets.push(self.above.load(Ordering::Relaxed));
        HistogramSnapshot {
            bounds: self.bounds,
            buckets,
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

/// A histogram at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// The upper bounds.
    pub bounds: &'static [u64],
    /// Values in each bucket (not cumulative): one per bound, then the
    /// values above the last bound.
    pub buckets: Vec<u64>,
    /// The sum of the values.
    pub sum: u64,
}

impl HistogramSnapshot {
    /// An empty snapshot over `bounds`, to add others to.
    pub fn empty(bounds: &'static [u64]) -> Self {
        HistogramSnapshot {
            bounds,
            buckets: vec![0; bounds.len() + 1],
            sum: 0,
        }
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Adds `other`, a histogram over the same bounds.
    ///
    /// # Panics
    ///
    /// If the bounds differ: adding them would be meaningless.
    pub fn add(&mut self, other: &HistogramSnapshot) {
        assert_eq!(self.bounds, other.bounds, "adding unlike histograms");
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.sum += other.sum;
    }
}

/// A value that goes up and down (connections open).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// A gauge at zero.
    pub const fn new() -> Self {
        Gauge(AtomicU64::new(0))
    }

    /// Adds one until the returned guard is dropped.
    pub fn hold(&'static self) -> GaugeHold {
        self.0.fetch_add(1, Ordering::Relaxed);
        GaugeHold { gauge: self }
    }

    /// The value now.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One unit of a [`Gauge`], taken back when dropped.
#[derive(Debug)]
pub struct GaugeHold {
    gauge: &'static Gauge,
}

impl Drop for GaugeHold {
    fn drop(&mut self) {
        self.gauge.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The counters of one kind of request (one API of one edge): requests
/// begun, their durations when they end, and errors by an index into the
/// edge's fixed table of `CODES` codes.
#[derive(Debug)]
pub struct RequestCounters<const CODES: usize> {
    started: AtomicU64,
    duration: DurationHistogram,
    errors: [AtomicU64; CODES],
}

impl<const CODES: usize> RequestCounters<CODES> {
    /// Counters at zero.
    pub const fn new() -> Self {
        RequestCounters {
            started: AtomicU64::new(0),
            duration: DurationHistogram::durations(),
            errors: [const { AtomicU64::new(0) }; CODES],
        }
    }

    /// A request begins: it is in flight until the returned timer is
    /// dropped, which counts it as done and observes its duration.
    pub fn start(&'static self) -> RequestTimer {
        self.started.fetch_add(1, Ordering::Relaxed);
        RequestTimer {
            duration: &self.duration,
            start: Instant::now(),
        }
    }

    /// Counts an error with the code at `index` in the edge's table (an
    /// index past its end is ignored: the tables are fixed, so that is a
    /// bug of the caller's, not worth a panic on a request path).
    pub fn error(&self, index: usize) {
        if let Some(count) = self.errors.get(index) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> RequestSnapshot {
        // Done before begun, so that begun - done is never below zero.
        let duration = self.duration.snapshot();
        RequestSnapshot {
            started: self.started.load(Ordering::Relaxed),
            duration,
            errors: self
                .errors
                .iter()
                .map(|e| e.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

impl<const CODES: usize> Default for RequestCounters<CODES> {
    fn default() -> Self {
        Self::new()
    }
}

/// A request in flight; dropping it counts it as done.
#[derive(Debug)]
pub struct RequestTimer {
    duration: &'static DurationHistogram,
    start: Instant,
}

impl RequestTimer {
    /// When the request began.
    pub fn start(&self) -> Instant {
        self.start
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        self.duration.observe_since(self.start);
    }
}

/// One kind of request's counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSnapshot {
    /// Requests begun.
    pub started: u64,
    /// Durations of the requests done (their count: requests done).
    pub duration: HistogramSnapshot,
    /// Errors by index into the edge's table of codes.
    pub errors: Vec<u64>,
}

impl RequestSnapshot {
    /// Requests begun and not yet done.
    pub fn in_flight(&self) -> u64 {
        self.started.saturating_sub(self.duration.count())
    }
}

/// One API's figures, named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSnapshot {
    /// The API (a gRPC method, a Kafka API key's name).
    pub api: String,
    /// Its counters.
    pub requests: RequestSnapshot,
    /// Errors by code name; only codes met.
    pub errors: Vec<(String, u64)>,
}

/// One edge's figures at one moment, named for the collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeSnapshot {
    /// `grpc` or `kafka`.
    pub edge: &'static str,
    /// Every API the edge serves, met or not.
    pub apis: Vec<ApiSnapshot>,
    /// Client connections open.
    pub open_connections: u64,
    /// Requests or connections refused, by the limit that refused them
    /// (every limit of the edge, refused or not).
    pub refused: Vec<(&'static str, u64)>,
}

/// A fixed set of counters, one per name in an edge's table.
#[derive(Debug)]
pub struct Counters<const N: usize>([AtomicU64; N]);

impl<const N: usize> Counters<N> {
    /// Counters at zero.
    pub const fn new() -> Self {
        Counters([const { AtomicU64::new(0) }; N])
    }

    /// Adds one to the counter at `index` (ignored past the end).
    pub fn add(&self, index: usize) {
        if let Some(count) = self.0.get(index) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every counter now.
    pub fn snapshot(&self) -> [u64; N] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }
}

impl<const N: usize> Default for Counters<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static SMALL: [u64; 3] = [10, 20, 40];

    #[test]
    fn values_land_in_the_first_bucket_whose_bound_they_do_not_exceed() {
        let h = Histogram::new(&SMALL);
        for v in [0, 10, 11, 20, 21, 40, 41, u64::MAX / 2] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.bounds, &SMALL);
        // <=10: 0, 10; <=20: 11, 20; <=40: 21, 40; above: 41, MAX/2.
        assert_eq!(s.buckets, vec![2, 2, 2, 2]);
        assert_eq!(s.count(), 8);
        assert_eq!(s.sum, 10 + 11 + 20 + 21 + 40 + 41 + u64::MAX / 2);
    }

    #[test]
    fn durations_are_kept_in_nanoseconds() {
        let h = DurationHistogram::durations();
        h.observe_duration(std::time::Duration::from_micros(30));
        h.observe_duration(std::time::Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.sum, 30_000 + 60_000_000_000);
        // 30 µs: above 25 µs, at most 50 µs.
        assert_eq!(s.buckets[2], 1);
        assert_eq!(s.buckets[DURATION_BOUNDS], 1, "60 s is above every bound");
        assert_eq!(s.count(), 2);
    }

    #[test]
    fn snapshots_add_up() {
        let a = CountHistogram::counts();
        let b = CountHistogram::counts();
        a.observe(1);
        a.observe(3);
        b.observe(3);
        b.observe(5000);
        let mut total = HistogramSnapshot::empty(&COUNT_BOUNDS_VALUES);
        total.add(&a.snapshot());
        total.add(&b.snapshot());
        assert_eq!(total.count(), 4);
        assert_eq!(total.sum, 1 + 3 + 3 + 5000);
        assert_eq!(total.buckets[0], 1);
        assert_eq!(total.buckets[2], 2, "3 is at most 4");
        assert_eq!(total.buckets[COUNT_BOUNDS], 1);
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        static SHARED: DurationHistogram = DurationHistogram::durations();
        const THREADS: u64 = 4;
        const EACH: u64 = 50_000;
        std::thread::scope(|s| {
            for t in 0..THREADS {
                s.spawn(move || {
                    for i in 0..EACH {
                        // Spread over several buckets.
                        SHARED.observe((t * EACH + i) * 1_000);
                    }
                });
            }
        });
        let s = SHARED.snapshot();
        let n = THREADS * EACH;
        assert_eq!(s.count(), n);
        assert_eq!(s.sum, 1_000 * (n * (n - 1) / 2));
        // 0..=10 µs in the first bucket: values 0, 1000, ..., 10_000.
        assert_eq!(s.buckets[0], 11);
    }

    #[test]
    fn a_request_is_in_flight_until_its_timer_drops() {
        static API: RequestCounters<3> = RequestCounters::new();
        let first = API.start();
        let second = API.start();
        assert_eq!(API.snapshot().in_flight(), 2);
        drop(first);
        API.error(2);
        API.error(7); // past the table: ignored
        let s = API.snapshot();
        assert_eq!((s.started, s.duration.count(), s.in_flight()), (2, 1, 1));
        assert_eq!(s.errors, vec![0, 0, 1]);
        drop(second);
        assert_eq!(API.snapshot().in_flight(), 0);
    }

    #[test]
    fn a_gauge_follows_its_holds() {
        static OPEN: Gauge = Gauge::new();
        let a = OPEN.hold();
        let b = OPEN.hold();
        assert_eq!(OPEN.get(), 2);
        drop(a);
        assert_eq!(OPEN.get(), 1);
        drop(b);
        assert_eq!(OPEN.get(), 0);
    }
}
