//! The write side of the active segment: the only code that appends bytes
//! to a segment and its indexes.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use carteiro::record::{BATCH_LENGTH_AT, BatchHeader, MAGIC_AT, PARTITION_LEADER_EPOCH_AT};

use crate::config::{LogConfig, SEGMENT_ALLOCATE_STEP_BYTES};
use crate::cursor::RegionCursor;
use crate::index::{Index, IndexWriter, OffsetEntry, OffsetKind, TimeEntry, TimeKind};
use crate::medium::Medium;
use crate::region::{Growth, RegionWriter};
use crate::segment::{IndexCadence, LEADER_EPOCH, LOG_HEADER_BYTES, Segment, encode_log_header};

/// The active segment with its writers. Owned by the log's writer lock.
pub(crate) struct ActiveSegment {
    pub segment: Arc<Segment>,
    log: RegionWriter,
    offset_index: IndexWriter<OffsetKind>,
    time_index: IndexWriter<TimeKind>,
    cadence: IndexCadence,
}

/// What a reopened active segment starts from.
pub(crate) struct Resume {
    pub base_offset: u64,
    pub created_ms: i64,
    pub next_offset: u64,
    pub offset_entries: Vec<OffsetEntry>,
    pub time_entries: Vec<TimeEntry>,
    pub cadence: IndexCadence,
}

/// How a segment file grows: to `segment_bytes`, a step at a time.
fn growth(config: &LogConfig) -> Growth {
    Growth {
        capacity: config.segment_bytes as usize,
        allocate_step: SEGMENT_ALLOCATE_STEP_BYTES as usize,
    }
}

impl ActiveSegment {
    /// Creates the three files of a new segment at `base_offset`; the log
    /// header is synced before this returns. On an error (a full disk, say)
    /// none of the three files is left behind.
    pub(crate) fn create(
        medium: &dyn Medium,
        dir: &Path,
        base_offset: u64,
        config: &LogConfig,
        now_ms: i64,
    ) -> io::Result<Self> {
        let created = Self::create_files(medium, dir, base_offset, config, now_ms);
        if created.is_err() {
            for path in Segment::paths(dir, base_offset) {
                let _ = medium.remove_file(&path);
            }
        }
        created
    }

    fn create_files(
        medium: &dyn Medium,
        dir: &Path,
        base_offset: u64,
        config: &LogConfig,
        now_ms: i64,
    ) -> io::Result<Self> {
        let [log_path, index_path, time_path] = Segment::paths(dir, base_offset);
        let (_, log) = medium.create_region(&log_path, growth(config))?;
        let mut log = log.0;
        log.append(&[&encode_log_header(base_offset, now_ms)])?;
        log.publish();
        log.region().sync()?;
        let resume = Resume {
            base_offset,
            created_ms: now_ms,
            next_offset: base_offset,
            offset_entries: Vec::new(),
            time_entries: Vec::new(),
            cadence: IndexCadence::new(config.index_interval_bytes),
        };
        Self::assemble(
            medium,
            base_offset,
            config,
            log,
            (&index_path, &time_path),
            resume,
            log_path,
        )
    }

    /// Reopens the segment at `base_offset`, whose first `valid_len` bytes are
    /// its content, for appending; its indexes are written anew from `resume`.
    pub(crate) fn reopen(
        medium: &dyn Medium,
        dir: &Path,
        base_offset: u64,
        config: &LogConfig,
        resume: Resume,
    ) -> io::Result<Self> {
        let [log_path, index_path, time_path] = Segment::paths(dir, base_offset);
        let (_, log) = medium.open_region(&log_path, Some(growth(config)))?;
        Self::assemble(
            medium,
            base_offset,
            config,
            log.0,
            (&index_path, &time_path),
            resume,
            log_path,
        )
    }

    fn assemble(
        medium: &dyn Medium,
        base_offset: u64,
        config: &LogConfig,
        log: RegionWriter,
        (index_path, time_path): (&Path, &Path),
        resume: Resume,
        log_path: std::path::PathBuf,
    ) -> io::Result<Self> {
        let entries = config.max_index_entries();
        let (offset_index, mut offset_writer) =
            Index::<OffsetKind>::create(medium, index_path, base_offset, entries)?;
        let (time_index, mut time_writer) =
            Index::<TimeKind>::create(medium, time_path, base_offset, entries)?;
        for entry in resume.offset_entries {
            offset_writer.append(&offset_index, entry);
        }
        for entry in resume.time_entries {
            time_writer.append(&time_index, entry);
        }
        let segment = Arc::new(Segment {
            base_offset,
            created_ms: resume.created_ms,
            log_path,
            log: log.region(),
            offset_index,
            time_index,
            next_offset: AtomicU64::new(resume.next_offset),
            max_timestamp: AtomicI64::new(resume.cadence.max_timestamp()),
            scanned_index: OnceLock::new(),
            index_interval_bytes: config.index_interval_bytes,
        });
        Ok(ActiveSegment {
            segment,
            log,
            offset_index: offset_writer,
            time_index: time_writer,
            cadence: resume.cadence,
        })
    }

    /// Bytes still free in the segment.
    pub(crate) fn remaining(&self) -> usize {
        self.log.remaining()
    }

    /// True if a batch of `count` records starting at `base_offset` would
    /// overflow the 32-bit relative offsets of the indexes.
    pub(crate) fn offsets_exhausted(&self, base_offset: u64, count: u32) -> bool {
        base_offset - self.segment.base_offset + u64::from(count) > u64::from(u32::MAX)
    }

    /// Appends `batch` (validated, with `header`) at `base_offset` and
    /// publishes it with its index entries. The caller checked the room.
    /// On an error (a full disk, say) nothing changed: the batch is not
    /// published and the next append writes over whatever part of it
    /// reached the file.
    pub(crate) fn append(
        &mut self,
        base_offset: u64,
        batch: &[u8],
        header: &BatchHeader,
    ) -> io::Result<()> {
        debug_assert_eq!(
            base_offset,
            self.segment.next_offset(),
            "offsets must be contiguous"
        );
        let position = self.log.written();
        let mut header = *header;
        header.base_offset = base_offset as i64;
        // The log's base offset and leader epoch replace the producer's; the
        // CRC covers neither, so the batch stays valid.
        self.log.append(&[
            &(base_offset as i64).to_be_bytes(),
            &batch[BATCH_LENGTH_AT..PARTITION_LEADER_EPOCH_AT],
            &LEADER_EPOCH.to_be_bytes(),
            &batch[MAGIC_AT..],
        ])?;
        self.log.publish();
        let (offset_entry, time_entry) =
            self.cadence
                .observe(self.segment.base_offset, position, &header);
        if let Some(entry) = offset_entry {
            self.offset_index.append(&self.segment.offset_index, entry);
        }
        if let Some(entry) = time_entry {
            self.time_index.append(&self.segment.time_index, entry);
        }
        self.segment
            .max_timestamp
            .fetch_max(header.max_timestamp, Ordering::AcqRel);
        self.segment
            .next_offset
            .store(header.next_offset() as u64, Ordering::Release);
        Ok(())
    }

    /// Closes the segment: a last time-index entry for its largest timestamp,
    /// the log synced and cut to its used length, both indexes sealed (an
    /// index that cannot be sealed is rebuilt at the next open).
    pub(crate) fn seal(mut self) -> io::Result<Arc<Segment>> {
        let next = self.segment.next_offset();
        if next > self.segment.base_offset {
            let last_relative = self.last_batch_relative_offset();
            if let Some(entry) = self.cadence.time_entry(last_relative) {
                self.time_index.append(&self.segment.time_index, entry);
            }
        }
        self.log.seal()?;
        self.offset_index.seal();
        self.time_index.seal();
        Ok(self.segment)
    }

    fn last_batch_relative_offset(&self) -> u32 {
        let end = self.log.written();
        let mut position = self
            .segment
            .offset_index
            .last()
            .map_or(LOG_HEADER_BYTES, |e| e.position as usize);
        let mut cursor = RegionCursor::new(&self.segment.log, end);
        let mut last = 0;
        while position < end {
            match cursor.header(position) {
                Ok(header) => {
                    last = (header.base_offset as u64 - self.segment.base_offset) as u32;
                    position += header.total_bytes();
                }
                Err(_) => break,
            }
        }
        last
    }
}
