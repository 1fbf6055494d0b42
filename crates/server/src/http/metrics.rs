//! `/metrics`: every figure read from the broker when scraped (nothing is
//! counted through a metrics library on the produce path: the partitions
//! keep their own atomic counters and histograms, each edge fixed arrays
//! of atomics per API; see `carteiro_storage::metrics`), rendered in
//! Prometheus' text format by `prometheus-client`.
//!
//! Labels are bounded: topic and partition (the broker's own limits bound
//! both), group (bounded by the coordinator's group limit), and edge, api,
//! code and limit from fixed tables (`crate::grpc_metrics`,
//! `carteiro_kafka::metrics`); nothing else a client chooses. The families
//! are listed in `docs/http.md`.

use std::fmt;
use std::sync::Arc;

use carteiro_core::Broker;
use carteiro_storage::TimingsSnapshot;
use carteiro_storage::metrics::{EdgeSnapshot, HistogramSnapshot};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

type Labels = Vec<(&'static str, String)>;

/// One family's rows.
struct Family {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    kind: MetricType,
    rows: Vec<(Labels, u64)>,
}

impl Family {
    fn new(name: &'static str, help: &'static str, unit: Option<Unit>, kind: MetricType) -> Self {
        Family {
            name,
            help,
            unit,
            kind,
            rows: Vec::new(),
        }
    }

    fn push(&mut self, labels: Labels, value: u64) {
        self.rows.push((labels, value));
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let kind = self.kind;
        let mut family =
            encoder.encode_descriptor(self.name, self.help, self.unit.as_ref(), self.kind)?;
        match self.rows.as_slice() {
            // One sample with no labels: written bare, not with `{}`.
            [(labels, value)] if labels.is_empty() => encode_value(kind, family, *value),
            rows => {
                for (labels, value) in rows {
                    encode_value(kind, family.encode_family(labels)?, *value)?;
                }
                Ok(())
            }
        }
    }
}

fn encode_value(kind: MetricType, metric: MetricEncoder<'_>, value: u64) -> Result<(), fmt::Error> {
    match kind {
        MetricType::Counter => ConstCounter::new(value).encode(metric),
        _ => ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(metric),
    }
}

/// Nanoseconds in a second: histograms of durations are kept in ns and
/// shown in seconds.
const NANOS_PER_SECOND: f64 = 1e9;

/// One histogram family's rows.
struct HistogramFamily {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    /// What one unit of a kept value is in the shown unit (1e-9 for ns shown as s).
    scale: f64,
    rows: Vec<(Labels, HistogramSnapshot)>,
}

impl HistogramFamily {
    fn new(name: &'static str, help: &'static str, unit: Option<Unit>, scale: f64) -> Self {
        HistogramFamily {
            name,
            help,
            unit,
            scale,
            rows: Vec::new(),
        }
    }

    /// A family of durations kept in ns, shown in seconds.
    fn seconds(name: &'static str, help: &'static str) -> Self {
        Self::new(name, help, Some(Unit::Seconds), 1.0 / NANOS_PER_SECOND)
    }

    fn push(&mut self, labels: Labels, histogram: HistogramSnapshot) {
        self.rows.push((labels, histogram));
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let mut family = encoder.encode_descriptor(
            self.name,
            self.help,
            self.unit.as_ref(),
            MetricType::Histogram,
        )?;
        for (labels, histogram) in &self.rows {
            // Each bound's own count; the encoder adds them up. The last,
            // above every bound, is `+Inf` (written for f64::MAX).
            let buckets: Vec<(f64, u64)> = histogram
                .bounds
                .iter()
                .map(|&b| b as f64 * self.scale)
                .chain([f64::MAX])
                .zip(histogram.buckets.iter().copied())
                .collect();
            let sum = histogram.sum as f64 * self.scale;
            let count = histogram.count();
            if labels.is_empty() {
                family.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            } else {
                family
                    .encode_family(labels)?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
        }
        Ok(())
    }
}

/// The figures of one scrape.
#[derive(Default)]
struct Scrape {
    families: Vec<Family>,
    histograms: Vec<HistogramFamily>,
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrape")
            .field("families", &self.families.len())
            .finish()
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        for family in &self.families {
            family.encode(&mut encoder)?;
        }
        for family in &self.histograms {
            family.encode(&mut encoder)?;
        }
        Ok(())
    }
}

fn partition_labels(topic: &str, partition: usize) -> Labels {
    vec![
        ("topic", topic.to_string()),
        ("partition", partition.to_string()),
    ]
}

/// The partitions' figures: traffic, offsets, disk, and what recovery found.
fn partitions(broker: &Broker, scrape: &mut Scrape) {
    use MetricType::{Counter, Gauge};
    let mut produced_records = Family::new(
        "carteiro_produced_records",
        "Records appended since the broker started.",
        None,
        Counter,
    );
    let mut produced_bytes = Family::new(
        "carteiro_produced",
        "Bytes of record batches appended since the broker started.",
        Some(Unit::Bytes),
        Counter,
    );
    let mut fetched_records = Family::new(
        "carteiro_fetched_records",
        "Records handed to consumers since the broker started.",
        None,
        Counter,
    );
    let mut fetched_bytes = Family::new(
        "carteiro_fetched",
        "Bytes of record batches handed to consumers since the broker started.",
        Some(Unit::Bytes),
        Counter,
    );
    let mut start = Family::new(
        "carteiro_log_start_offset",
        "The partition's first offset.",
        None,
        Gauge,
    );
    let mut end = Family::new(
        "carteiro_log_end_offset",
        "The next offset to be written.",
        None,
        Gauge,
    );
    let mut hwm = Family::new(
        "carteiro_log_high_watermark",
        "Offsets below this are visible to consumers.",
        None,
        Gauge,
    );
    let mut size = Family::new(
        "carteiro_log_size",
        "Bytes of the partition's segment files.",
        Some(Unit::Bytes),
        Gauge,
    );
    let mut segments = Family::new(
        "carteiro_log_segments",
        "Segments of the partition.",
        None,
        Gauge,
    );
    let mut scanned = Family::new(
        "carteiro_recovery_scanned",
        "Bytes recovery read to check the partition at the last start.",
        Some(Unit::Bytes),
        Gauge,
    );
    let mut truncated = Family::new(
        "carteiro_recovery_truncated",
        "Bytes of torn tail recovery cut at the last start.",
        Some(Unit::Bytes),
        Gauge,
    );
    let mut unclean = Family::new(
        "carteiro_recovery_unclean",
        "1 if the partition was not closed cleanly before the last start (or was new).",
        None,
        Gauge,
    );
    // Every partition's timings, added up: one histogram each for the broker.
    let mut timings = TimingsSnapshot::default();
    for topic in broker.store().topics() {
        for (partition, log) in topic.partitions().iter().enumerate() {
            let labels = || partition_labels(topic.name(), partition);
            let traffic = log.traffic().snapshot();
            produced_records.push(labels(), traffic.produced_records);
            produced_bytes.push(labels(), traffic.produced_bytes);
            fetched_records.push(labels(), traffic.fetched_records);
            fetched_bytes.push(labels(), traffic.fetched_bytes);
            let stats = log.stats();
            start.push(labels(), stats.start_offset);
            end.push(labels(), stats.end_offset);
            hwm.push(labels(), log.high_watermark());
            size.push(labels(), stats.size_bytes);
            segments.push(labels(), stats.segment_count as u64);
            let report = log.recovery_report();
            scanned.push(labels(), report.scanned_bytes);
            truncated.push(labels(), report.truncated_bytes);
            unclean.push(labels(), u64::from(!report.clean_shutdown));
            timings.add(&log.timings().snapshot());
        }
    }
    storage(timings, scrape);
    scrape.families.extend([
        produced_records,
        produced_bytes,
        fetched_records,
        fetched_bytes,
        start,
        end,
        hwm,
        size,
        segments,
        scanned,
        truncated,
        unclean,
    ]);
}

/// The storage engine's histograms, over every partition.
fn storage(timings: TimingsSnapshot, scrape: &mut Scrape) {
    let mut append = HistogramFamily::seconds(
        "carteiro_storage_append_duration",
        "Time appends held their partition's writer lock (write, index, roll if due, publish).",
    );
    append.push(Vec::new(), timings.append);
    let mut sync = HistogramFamily::seconds(
        "carteiro_storage_sync_duration",
        "Time of each group-commit sync (fdatasync of a partition's active segment).",
    );
    sync.push(Vec::new(), timings.sync);
    let mut batches = HistogramFamily::new(
        "carteiro_storage_sync_batches",
        "Batches appended to the partition since its sync before, for each sync (the group commit's size).",
        None,
        1.0,
    );
    batches.push(Vec::new(), timings.sync_batches);
    let mut durable_wait = HistogramFamily::seconds(
        "carteiro_storage_durable_wait",
        "The durable write path: time from a durable append's arrival at its partition (queued, or appended) until the sync that made it durable (flush always).",
    );
    durable_wait.push(Vec::new(), timings.durable_wait);
    scrape
        .histograms
        .extend([append, sync, batches, durable_wait]);
}

/// Both edges' requests, connections and refusals.
fn edges(scrape: &mut Scrape) {
    use MetricType::{Counter, Gauge};
    let mut requests = Family::new(
        "carteiro_requests",
        "Requests done, by edge and API.",
        None,
        Counter,
    );
    let mut errors = Family::new(
        "carteiro_request_errors",
        "Errors by edge, API and code: a gRPC request's non-OK status; each non-zero error code in a Kafka reply.",
        None,
        Counter,
    );
    let mut in_flight = Family::new(
        "carteiro_requests_in_flight",
        "Requests begun and not done, by edge.",
        None,
        Gauge,
    );
    let mut connections = Family::new(
        "carteiro_open_connections",
        "Client connections open, by edge.",
        None,
        Gauge,
    );
    let mut refused = Family::new(
        "carteiro_limit_refusals",
        "Requests or connections refused by a limit, by edge and limit (the flag that sets it).",
        None,
        Counter,
    );
    let mut durations = HistogramFamily::seconds(
        "carteiro_request_duration",
        "Time from a request's arrival to its reply being written, by edge and API.",
    );
    for edge in [
        crate::grpc_metrics::snapshot(),
        carteiro_kafka::metrics::snapshot(),
    ] {
        let EdgeSnapshot {
            edge,
            apis,
            open_connections,
            refused: refusals,
        } = edge;
        let mut flying = 0;
        for api in apis {
            flying += api.requests.in_flight();
            // An API shows once it has been called.
            if api.requests.started == 0 {
                continue;
            }
            let labels = || vec![("edge", edge.to_string()), ("api", api.api.clone())];
            requests.push(labels(), api.requests.duration.count());
            for (code, n) in &api.errors {
                let mut labels = labels();
                labels.push(("code", code.clone()));
                errors.push(labels, *n);
            }
            durations.push(labels(), api.requests.duration);
        }
        in_flight.push(vec![("edge", edge.to_string())], flying);
        connections.push(vec![("edge", edge.to_string())], open_connections);
        for (limit, n) in refusals {
            refused.push(
                vec![("edge", edge.to_string()), ("limit", limit.to_string())],
                n,
            );
        }
    }
    scrape
        .families
        .extend([requests, errors, in_flight, connections, refused]);
    scrape.histograms.push(durations);
}

/// Every group's committed offsets and lag, as `logctl groups describe`
/// shows them.
fn groups(broker: &Broker, scrape: &mut Scrape) {
    use MetricType::Gauge;
    let mut committed = Family::new(
        "carteiro_group_committed_offset",
        "The next offset the group will consume.",
        None,
        Gauge,
    );
    let mut lag = Family::new(
        "carteiro_group_lag_records",
        "Records between the group's commit and the partition's high watermark.",
        None,
        Gauge,
    );
    let mut members = Family::new(
        "carteiro_group_members",
        "Members of the group.",
        None,
        Gauge,
    );
    for group in broker.list_groups() {
        let Ok(described) = broker.describe_group(&group) else {
            continue;
        };
        members.push(
            vec![("group", group.clone())],
            described.members.len() as u64,
        );
        for p in described.partitions {
            let labels = vec![
                ("group", group.clone()),
                ("topic", p.topic.clone()),
                ("partition", p.partition.to_string()),
            ];
            committed.push(
                labels.clone(),
                u64::try_from(p.committed.offset).unwrap_or(0),
            );
            lag.push(labels, p.lag);
        }
    }
    scrape.families.extend([committed, lag, members]);
}

/// A field of `/proc/self/status` in KiB, as bytes.
fn status_bytes(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The process: memory and open files.
fn process(scrape: &mut Scrape) {
    use MetricType::Gauge;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mut resident = Family::new(
        "carteiro_process_resident_memory",
        "Resident memory of the broker process.",
        Some(Unit::Bytes),
        Gauge,
    );
    let mut anonymous = Family::new(
        "carteiro_process_anonymous_memory",
        "Resident anonymous memory (the heap) of the broker process.",
        Some(Unit::Bytes),
        Gauge,
    );
    if let Some(rss) = status_bytes(&status, "VmRSS:") {
        resident.push(Vec::new(), rss);
    }
    if let Some(anon) = status_bytes(&status, "RssAnon:") {
        anonymous.push(Vec::new(), anon);
    }
    let mut files = Family::new(
        "carteiro_process_open_fds",
        "File descriptors the broker process holds.",
        None,
        Gauge,
    );
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        files.push(Vec::new(), entries.count() as u64);
    }
    scrape.families.extend([resident, anonymous, files]);
}

/// Renders every metric. Blocking: it reads every partition's figures.
pub(super) fn render(broker: Option<Arc<Broker>>, ready: bool) -> Result<String, fmt::Error> {
    let mut scrape = Scrape::default();
    let mut up = Family::new(
        "carteiro_ready",
        "1 once recovery ended and every listener is up.",
        None,
        MetricType::Gauge,
    );
    up.push(Vec::new(), u64::from(ready));
    scrape.families.push(up);
    if let Some(broker) = &broker {
        partitions(broker, &mut scrape);
        groups(broker, &mut scrape);
    }
    edges(&mut scrape);
    process(&mut scrape);
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_in_the_text_format_with_conventional_names() {
        let mut scrape = Scrape::default();
        let mut bytes = Family::new(
            "carteiro_produced",
            "Bytes.",
            Some(Unit::Bytes),
            MetricType::Counter,
        );
        bytes.push(partition_labels("orders", 2), 42);
        scrape.families.push(bytes);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(scrape));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("renders");
        assert!(
            text.contains("carteiro_produced_bytes_total{topic=\"orders\",partition=\"2\"} 42"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE carteiro_produced_bytes counter"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn histograms_render_cumulative_buckets_in_seconds() {
        static BOUNDS: [u64; 2] = [1_000_000, 1_000_000_000];
        let histogram = carteiro_storage::metrics::Histogram::new(&BOUNDS);
        histogram.observe(500_000);
        histogram.observe(2_000_000);
        histogram.observe(5_000_000_000);
        let mut family = HistogramFamily::seconds("carteiro_request_duration", "Time.");
        family.push(
            vec![
                ("edge", "kafka".to_string()),
                ("api", "Produce".to_string()),
            ],
            histogram.snapshot(),
        );
        let mut scrape = Scrape::default();
        scrape.histograms.push(family);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(scrape));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("renders");
        let labels = "edge=\"kafka\",api=\"Produce\"";
        for line in [
            "# TYPE carteiro_request_duration_seconds histogram".to_string(),
            format!("carteiro_request_duration_seconds_count{{{labels}}} 3"),
            format!("carteiro_request_duration_seconds_sum{{{labels}}} 5.0025"),
            format!("carteiro_request_duration_seconds_bucket{{le=\"0.001\",{labels}}} 1"),
            format!("carteiro_request_duration_seconds_bucket{{le=\"1.0\",{labels}}} 2"),
            format!("carteiro_request_duration_seconds_bucket{{le=\"+Inf\",{labels}}} 3"),
        ] {
            assert!(text.contains(&line), "{line} in {text}");
        }
    }

    #[test]
    fn process_figures_are_read_from_proc() {
        let status = "Name:\tcarteiro\nVmRSS:\t    2048 kB\nRssAnon:\t1024 kB\n";
        assert_eq!(status_bytes(status, "VmRSS:"), Some(2 * 1024 * 1024));
        assert_eq!(status_bytes(status, "RssAnon:"), Some(1024 * 1024));
        assert_eq!(status_bytes(status, "VmSwap:"), None);
    }
}
