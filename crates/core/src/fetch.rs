//! Fetch with long poll, and list offsets.
//!
//! A fetch reads whole batches from each partition below its high
//! watermark, within a byte limit per partition and per reply. If fewer
//! than `min_bytes` are ready it waits, woken by the append (or sync) that
//! makes more visible, until `max_wait` or shutdown. A round is first
//! answered from the logs' tail caches, on the async task (memory only: a
//! consumer at the tail costs no system call and no thread hop); if any
//! partition needs its segment file, the round runs on the blocking pool
//! (it reads files and checks CRCs).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use bytes::Bytes;
use carteiro_storage::{Log, LogRead, ReadError};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

use crate::broker::Broker;
use crate::error::{BrokerError, join_error};

/// Default byte limit of one fetch reply (16 MiB).
pub const FETCH_MAX_BYTES_DEFAULT: u32 = 16 * 1024 * 1024;
/// Default byte limit of one partition in a fetch reply (1 MiB).
pub const PARTITION_FETCH_MAX_BYTES_DEFAULT: u32 = 1024 * 1024;
/// Most bytes a client may ask for in one fetch reply (64 MiB).
pub const FETCH_MAX_BYTES_LIMIT: u32 = 64 * 1024 * 1024;
/// Longest a fetch may wait for data, in ms (5 minutes).
pub const FETCH_MAX_WAIT_MS_MAX: u32 = 5 * 60 * 1000;
/// Default most bytes of fetch replies being gathered or waiting to be sent at once (256 MiB).
pub const FETCH_BYTES_IN_FLIGHT_MAX_DEFAULT: u64 = 256 * 1024 * 1024;
/// Most partitions in one fetch, list-offsets or commit request.
pub const PARTITIONS_PER_REQUEST_MAX: usize = 10_000;

/// One partition of a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The first offset wanted (the first batch returned may start before it).
    pub offset: i64,
    /// Byte limit for this partition; 0 takes [`PARTITION_FETCH_MAX_BYTES_DEFAULT`].
    pub max_bytes: u32,
}

/// A fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// The partitions, in the order their batches fill the reply.
    pub partitions: Vec<FetchPartition>,
    /// Byte limit of the reply; 0 takes [`FETCH_MAX_BYTES_DEFAULT`].
    pub max_bytes: u32,
    /// Wait until at least this many bytes are ready, or `max_wait_ms`.
    pub min_bytes: u32,
    /// Longest wait, in ms, at most [`FETCH_MAX_WAIT_MS_MAX`].
    pub max_wait_ms: u32,
}

/// One partition's part of a fetch reply.
#[derive(Debug)]
pub struct PartitionData {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// Whole batches, in order; the first may start before the offset asked for.
    pub batches: Vec<Bytes>,
    /// Offsets below this are visible.
    pub high_watermark: u64,
    /// The partition's first offset.
    pub log_start_offset: u64,
    /// Where the next fetch of this partition should start.
    pub next_offset: i64,
    /// Set if this partition failed (the others are unaffected): damaged
    /// data after the batches returned, an offset out of range, an unknown
    /// topic or partition.
    pub error: Option<BrokerError>,
}

/// Where a list-offsets query points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The partition's first offset.
    Earliest,
    /// Its high watermark: the next offset a consumer will see.
    Latest,
    /// The first offset whose timestamp is at or after this (ms), or the
    /// high watermark if every record is older.
    Timestamp(i64),
}

/// Checks the length of a request's list of partitions (or commits, or
/// queries): at most [`PARTITIONS_PER_REQUEST_MAX`], and at least one unless `may_be_empty`.
pub fn check_entries(field: &'static str, n: usize, may_be_empty: bool) -> Result<(), BrokerError> {
    if n == 0 && !may_be_empty {
        return Err(BrokerError::invalid(
            field,
            "empty: name at least one partition",
        ));
    }
    if n > PARTITIONS_PER_REQUEST_MAX {
        return Err(BrokerError::invalid(
            field,
            format!("{n} entries exceed the limit of {PARTITIONS_PER_REQUEST_MAX}"),
        ));
    }
    Ok(())
}

/// A client's offset field, which must not be negative.
pub fn offset_field(field: &'static str, offset: i64) -> Result<u64, BrokerError> {
    u64::try_from(offset).map_err(|_| BrokerError::invalid(field, format!("{offset} is negative")))
}

/// Most damaged batches remembered as already logged; past it, the memory
/// starts afresh (and each is logged once more).
const DAMAGE_REPORTED_MAX: usize = 1024;

/// Damage already logged, so that a consumer retrying at a damaged batch
/// does not flood the log with the same line.
static DAMAGE_REPORTED: Mutex<std::collections::BTreeSet<String>> =
    Mutex::new(std::collections::BTreeSet::new());

fn report_damage_once(e: &BrokerError) {
    let message = e.to_string();
    let mut reported = DAMAGE_REPORTED.lock().unwrap_or_else(|p| p.into_inner());
    if reported.len() >= DAMAGE_REPORTED_MAX {
        reported.clear();
    }
    if reported.insert(message) {
        tracing::error!(error = %e, "serving a fetch: damaged data");
    }
}

/// The bytes of fetch replies that may be gathered at once. A fetch holds
/// its share only while it reads and its reply is built, never while it
/// waits for records; when the budget runs low it gathers less, and with
/// nothing left it waits (within its own deadline).
#[derive(Debug, Clone)]
pub(crate) struct FetchBudget {
    kib: Arc<Semaphore>,
}

/// A fetch's share of the budget; dropping it gives the share back.
#[derive(Debug)]
pub struct FetchReservation {
    _permit: Option<OwnedSemaphorePermit>,
}

/// `bytes` as permits of a byte budget, which every budget counts in KiB
/// (a semaphore acquires at most u32 permits at once): rounded up, at least 1.
pub fn kib(bytes: u64) -> u32 {
    bytes.div_ceil(1024).clamp(1, u64::from(u32::MAX)) as u32
}

impl FetchBudget {
    pub(crate) fn new(bytes: u64) -> Self {
        FetchBudget {
            kib: Arc::new(Semaphore::new(kib(bytes) as usize)),
        }
    }

    /// Reserves up to `bytes` now; if less than one partition's default is
    /// free, waits for that much until `deadline`. Returns the bytes granted
    /// (0 if the deadline came first).
    async fn reserve(&self, bytes: u32, deadline: Instant) -> (FetchReservation, usize) {
        let least = kib(u64::from(PARTITION_FETCH_MAX_BYTES_DEFAULT)).min(kib(u64::from(bytes)));
        let want = kib(u64::from(bytes));
        let free = (self.kib.available_permits() as u32).min(want);
        if free >= least
            && let Ok(permit) = self.kib.clone().try_acquire_many_owned(free)
        {
            return (reserved(permit), (free as usize * 1024).min(bytes as usize));
        }
        match tokio::time::timeout_at(deadline, self.kib.clone().acquire_many_owned(least)).await {
            Ok(Ok(permit)) => (
                reserved(permit),
                (least as usize * 1024).min(bytes as usize),
            ),
            _ => (FetchReservation { _permit: None }, 0),
        }
    }
}

fn reserved(permit: OwnedSemaphorePermit) -> FetchReservation {
    FetchReservation {
        _permit: Some(permit),
    }
}

/// A fetch's answer: each partition's part, and the share of the reply
/// budget it holds until the edge has built its reply.
#[derive(Debug)]
pub struct Fetched {
    /// The partitions, in the order asked.
    pub partitions: Vec<PartitionData>,
    /// Dropped once the reply is built.
    pub reservation: FetchReservation,
}

/// One partition's part, the bytes and records it holds, and what to wait
/// on if short.
struct Gathered {
    data: PartitionData,
    bytes: usize,
    records: u64,
    watch: Option<(Arc<Log>, u64)>,
}

/// How a round reads a log: from `at`, within a byte budget, below a high
/// watermark; `None` if it cannot answer (see [`read_from_memory`]).
type ReadFn = dyn Fn(&Log, u64, usize, u64) -> Option<Result<LogRead, ReadError>> + Sync;

/// Reads from the segment files. Blocking.
fn read_from_file(
    log: &Log,
    at: u64,
    max_bytes: usize,
    limit: u64,
) -> Option<Result<LogRead, ReadError>> {
    Some(log.read_visible_below(at, max_bytes, limit))
}

/// Reads from a log's tail in memory only; `None` where the file is needed.
fn read_from_memory(
    log: &Log,
    at: u64,
    max_bytes: usize,
    limit: u64,
) -> Option<Result<LogRead, ReadError>> {
    log.read_visible_tail(at, max_bytes, limit)
}

/// One pass over a fetch's partitions.
struct FetchRound {
    partitions: Vec<PartitionData>,
    /// Bytes of batches gathered.
    total: usize,
    /// Bytes of the reply's limit left.
    budget: usize,
    /// The logs to wait on, and the high watermark each was read at.
    watches: Vec<(Arc<Log>, u64)>,
}

impl Broker {
    /// Fetches, waiting (bounded) for `min_bytes`. See the module documentation.
    pub async fn fetch(self: &Arc<Self>, request: FetchRequest) -> Result<Fetched, BrokerError> {
        self.check_running()?;
        check_entries("partitions", request.partitions.len(), false)?;
        if request.max_wait_ms > FETCH_MAX_WAIT_MS_MAX {
            let message = format!(
                "{} exceeds the limit of {FETCH_MAX_WAIT_MS_MAX}",
                request.max_wait_ms
            );
            return Err(BrokerError::invalid("max_wait_ms", message));
        }
        let max_bytes = match request.max_bytes {
            0 => FETCH_MAX_BYTES_DEFAULT,
            n => n.min(FETCH_MAX_BYTES_LIMIT),
        };
        let deadline = Instant::now() + Duration::from_millis(u64::from(request.max_wait_ms));
        let mut shutdown = self.shutdown_signal();
        let request = Arc::new(request);
        loop {
            let (reservation, granted) = self.fetch_budget.reserve(max_bytes, deadline).await;
            // A reader at the tail is answered from the logs' memory, here;
            // only a read that needs a segment file goes to a blocking thread.
            let round = match self.gather(&request, granted, &read_from_memory) {
                Some(round) => round,
                None => {
                    let (broker, asked) = (self.clone(), request.clone());
                    tokio::task::spawn_blocking(move || {
                        broker.gather(&asked, granted, &read_from_file)
                    })
                    .await
                    .map_err(join_error)?
                    .ok_or_else(|| BrokerError::Internal("a file read gave no answer".into()))?
                }
            };
            let done = round.total >= request.min_bytes as usize
                || round.total > 0 && round.budget == 0
                || round.watches.is_empty()
                || Instant::now() >= deadline
                || *shutdown.borrow();
            if done {
                return Ok(Fetched {
                    partitions: round.partitions,
                    reservation,
                });
            }
            // Waiting holds no share of the budget.
            drop(reservation);
            // Woken by an append (or sync) of any partition, never by polling.
            let mut grown: FuturesUnordered<_> = round
                .watches
                .iter()
                .map(|(log, hwm)| log.visible_past(*hwm))
                .collect();
            tokio::select! {
                _ = grown.next() => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Every partition's part of a fetch reply, within `max_bytes` in all,
    /// read with `read`; `None` if `read` could not answer for one of them.
    /// Blocking if `read` is.
    fn gather(
        &self,
        request: &FetchRequest,
        max_bytes: usize,
        read: &ReadFn,
    ) -> Option<FetchRound> {
        let mut round = FetchRound {
            partitions: Vec::with_capacity(request.partitions.len()),
            total: 0,
            budget: max_bytes,
            watches: Vec::new(),
        };
        let mut fetched = Vec::with_capacity(request.partitions.len());
        for partition in &request.partitions {
            let gathered = self.gather_partition(partition, round.budget, read)?;
            round.budget = round.budget.saturating_sub(gathered.bytes);
            round.total += gathered.bytes;
            if let Some((log, _)) = &gathered.watch {
                fetched.push((log.clone(), gathered.records, gathered.bytes));
            }
            round.partitions.push(gathered.data);
            round.watches.extend(gathered.watch);
        }
        // Counted once the round is whole: a round from memory that gives
        // up on a later partition is read again from the files.
        for (log, records, bytes) in fetched {
            if bytes > 0 {
                log.traffic().count_fetched(records, bytes as u64);
            }
        }
        Some(round)
    }

    /// One partition's part: whole batches from its offset within `budget`.
    /// Damage met after some batches ends the part there; damage at the
    /// first batch is the partition's error.
    fn gather_partition(
        &self,
        request: &FetchPartition,
        budget: usize,
        read: &ReadFn,
    ) -> Option<Gathered> {
        let mut data = PartitionData {
            topic: request.topic.clone(),
            partition: request.partition,
            batches: Vec::new(),
            high_watermark: 0,
            log_start_offset: 0,
            next_offset: request.offset,
            error: None,
        };
        let failed = |mut data: PartitionData, e: BrokerError| {
            if matches!(
                &e,
                BrokerError::PartitionRead {
                    source: ReadError::Corrupt { .. },
                    ..
                }
            ) {
                report_damage_once(&e);
            }
            data.error = Some(e);
            Some(Gathered {
                data,
                bytes: 0,
                records: 0,
                watch: None,
            })
        };
        let log = match self.store.partition(&request.topic, request.partition) {
            Ok(log) => log,
            Err(e) => return failed(data, e.into()),
        };
        let hwm = log.high_watermark();
        data.high_watermark = hwm;
        data.log_start_offset = log.start_offset();
        let offset = match offset_field("partitions.offset", request.offset) {
            Ok(offset) => offset,
            Err(e) => return failed(data, e),
        };
        let partition_max = match request.max_bytes {
            0 => PARTITION_FETCH_MAX_BYTES_DEFAULT,
            n => n.min(FETCH_MAX_BYTES_LIMIT),
        } as usize;
        let budget = budget.min(partition_max);
        let (mut at, mut taken, mut records) = (offset, 0usize, 0u64);
        while taken < budget {
            // No further than the high watermark this reply reports.
            match read(&log, at, budget - taken, hwm)? {
                Ok(read) if read.batches.is_empty() => break,
                Ok(read) => {
                    taken += read.batches.len();
                    at = read.next_offset;
                    // Batches are contiguous: the offsets they span are their records.
                    records += read.next_offset - read.first_offset;
                    data.batches.push(read.batches);
                }
                // The batches before the damage are served; the next fetch,
                // at the damaged offset, gets the error.
                Err(ReadError::Corrupt { .. }) if !data.batches.is_empty() => break,
                Err(source) => {
                    let e = BrokerError::PartitionRead {
                        topic: request.topic.clone(),
                        partition: request.partition,
                        source,
                    };
                    return failed(data, e);
                }
            }
        }
        data.next_offset = at as i64;
        Some(Gathered {
            data,
            bytes: taken,
            records,
            watch: Some((log, hwm)),
        })
    }

    /// The offset `spec` points at in a partition. Blocking (a look-up by
    /// time reads the log).
    pub fn list_offset(
        &self,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
    ) -> Result<u64, BrokerError> {
        let log = self.store.partition(topic, partition)?;
        let hwm = log.high_watermark();
        Ok(match spec {
            OffsetSpec::Earliest => log.start_offset(),
            OffsetSpec::Latest => hwm,
            OffsetSpec::Timestamp(ts) => self.offset_at_time(topic, partition, ts)?.unwrap_or(hwm),
        })
    }

    /// The first visible offset whose timestamp is at or after `ts` (ms),
    /// or `None` if every visible record is older. Blocking (it reads the log).
    pub fn offset_at_time(
        &self,
        topic: &str,
        partition: u32,
        ts: i64,
    ) -> Result<Option<u64>, BrokerError> {
        let log = self.store.partition(topic, partition)?;
        let hwm = log.high_watermark();
        Ok(log.offset_for_timestamp(ts)?.filter(|&o| o < hwm))
    }
}
