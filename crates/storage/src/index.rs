//! The sparse offset index and the timestamp index of a segment.
//!
//! Both are files of fixed-size entries behind a 16-byte
//! header, looked up by binary search. While a segment is active its index
//! grows with each entry and is unsealed; when the segment closes, a 16-byte trailer
//! with the entry count and a CRC-32 seals it. An index that is missing,
//! unsealed or fails its checks is rebuilt from the log.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::medium::Medium;
use crate::region::{Growth, Region, RegionWriter};

/// Size of an index file's header, in bytes.
pub(crate) const INDEX_HEADER_BYTES: usize = 16;
/// Size of a sealed index file's trailer, in bytes.
pub(crate) const INDEX_TRAILER_BYTES: usize = 16;
/// Version of the index file format.
pub(crate) const INDEX_VERSION: u16 = 1;
const SEAL_MAGIC: [u8; 4] = *b"SEAL";
/// The largest entry of any index kind, in bytes.
const ENTRY_BYTES_MAX: usize = 12;

/// One kind of index: its magic and its entry layout.
pub(crate) trait IndexKind {
    /// File magic.
    const MAGIC: [u8; 4];
    /// Bytes per entry.
    const ENTRY_BYTES: usize;
    /// A decoded entry.
    type Entry: Copy + std::fmt::Debug + PartialEq;
    /// Writes an entry.
    fn encode(entry: &Self::Entry) -> Vec<u8>;
    /// Reads an entry from exactly `ENTRY_BYTES` bytes.
    fn decode(bytes: &[u8]) -> Self::Entry;
    /// The value entries are sorted by (non-decreasing).
    fn key(entry: &Self::Entry) -> i64;
}

/// An offset-index entry: a batch's base offset relative to the segment's,
/// and the byte position of the batch in the segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// A time-index entry: the largest timestamp seen so far in the segment and
/// the relative base offset of the batch that carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

fn be_u32(bytes: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[..4]);
    u32::from_be_bytes(b)
}

fn be_i64(bytes: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    i64::from_be_bytes(b)
}

/// Offset index kind (`.index`).
#[derive(Debug)]
pub(crate) struct OffsetKind;
impl IndexKind for OffsetKind {
    const MAGIC: [u8; 4] = *b"CIDX";
    const ENTRY_BYTES: usize = 8;
    type Entry = OffsetEntry;
    fn encode(e: &OffsetEntry) -> Vec<u8> {
        let mut out = Vec::with_capacity(8);
        out.extend_from_slice(&e.relative_offset.to_be_bytes());
        out.extend_from_slice(&e.position.to_be_bytes());
        out
    }
    fn decode(b: &[u8]) -> OffsetEntry {
        OffsetEntry {
            relative_offset: be_u32(b),
            position: be_u32(&b[4..]),
        }
    }
    fn key(e: &OffsetEntry) -> i64 {
        i64::from(e.relative_offset)
    }
}

/// Time index kind (`.timeindex`).
#[derive(Debug)]
pub(crate) struct TimeKind;
impl IndexKind for TimeKind {
    const MAGIC: [u8; 4] = *b"CTIX";
    const ENTRY_BYTES: usize = 12;
    type Entry = TimeEntry;
    fn encode(e: &TimeEntry) -> Vec<u8> {
        let mut out = Vec::with_capacity(12);
        out.extend_from_slice(&e.timestamp.to_be_bytes());
        out.extend_from_slice(&e.relative_offset.to_be_bytes());
        out
    }
    fn decode(b: &[u8]) -> TimeEntry {
        TimeEntry {
            timestamp: be_i64(b),
            relative_offset: be_u32(&b[8..]),
        }
    }
    fn key(e: &TimeEntry) -> i64 {
        e.timestamp
    }
}

fn header<K: IndexKind>(base_offset: u64) -> [u8; INDEX_HEADER_BYTES] {
    let mut h = [0u8; INDEX_HEADER_BYTES];
    h[0..4].copy_from_slice(&K::MAGIC);
    h[4..6].copy_from_slice(&INDEX_VERSION.to_be_bytes());
    h[6..8].copy_from_slice(&(K::ENTRY_BYTES as u16).to_be_bytes());
    h[8..16].copy_from_slice(&base_offset.to_be_bytes());
    h
}

/// The read side of an index.
pub(crate) struct Index<K: IndexKind> {
    /// `None` for an index kept nowhere (look-ups then scan the log).
    region: Option<Region>,
    entries: AtomicUsize,
    kind: PhantomData<K>,
}

/// The write side of an active index. Entries are a speed-up, never needed
/// for correctness: a write that fails (a full disk) stops the indexing of
/// this segment, and the index is left unsealed, to be rebuilt from the log.
pub(crate) struct IndexWriter<K: IndexKind> {
    writer: RegionWriter,
    path: PathBuf,
    entries: usize,
    last_key: Option<i64>,
    /// A write failed: no more entries, and no seal.
    stopped: bool,
    /// CRC-32 of everything written so far, for the trailer.
    crc: crc32fast::Hasher,
    kind: PhantomData<K>,
}

impl<K: IndexKind> Index<K> {
    /// Creates an empty active index able to hold `max_entries`.
    pub(crate) fn create(
        medium: &dyn Medium,
        path: &Path,
        base_offset: u64,
        max_entries: usize,
    ) -> std::io::Result<(Index<K>, IndexWriter<K>)> {
        let capacity = INDEX_HEADER_BYTES + max_entries * K::ENTRY_BYTES + INDEX_TRAILER_BYTES;
        let growth = Growth {
            capacity,
            allocate_step: 0,
        };
        let (_, writer) = medium.create_region(path, growth)?;
        let mut writer = IndexWriter {
            writer: writer.0,
            path: path.to_path_buf(),
            entries: 0,
            last_key: None,
            stopped: false,
            crc: crc32fast::Hasher::new(),
            kind: PhantomData,
        };
        writer.write(&header::<K>(base_offset));
        let index = Index {
            region: Some(writer.writer.region()),
            entries: AtomicUsize::new(0),
            kind: PhantomData,
        };
        Ok((index, writer))
    }

    /// An index with no entries, kept nowhere: look-ups scan the log.
    pub(crate) fn empty() -> Index<K> {
        Index {
            region: None,
            entries: AtomicUsize::new(0),
            kind: PhantomData,
        }
    }

    /// Opens a sealed index, checking its header, trailer, CRC and order.
    /// `Err` says why it cannot be trusted; the caller rebuilds it.
    pub(crate) fn open_sealed(
        medium: &dyn Medium,
        path: &Path,
        base_offset: u64,
    ) -> Result<Index<K>, String> {
        let (region, _) = medium.open_region(path, None).map_err(|e| e.to_string())?;
        let region = region.0;
        let len = region.published();
        if len < INDEX_HEADER_BYTES + INDEX_TRAILER_BYTES {
            return Err(format!("{len} bytes is too short to be sealed"));
        }
        let body = len - INDEX_HEADER_BYTES - INDEX_TRAILER_BYTES;
        let bytes = region.read(0, len).map_err(|e| e.to_string())?;
        if bytes[..INDEX_HEADER_BYTES] != header::<K>(base_offset) {
            return Err("header does not match (magic, version, entry size or base offset)".into());
        }
        let trailer = &bytes[len - INDEX_TRAILER_BYTES..];
        if trailer[0..4] != SEAL_MAGIC {
            return Err("not sealed".into());
        }
        let count = be_u32(&trailer[4..]) as usize;
        if !body.is_multiple_of(K::ENTRY_BYTES) || body / K::ENTRY_BYTES != count {
            return Err(format!(
                "trailer says {count} entries, file holds {body} bytes of entries"
            ));
        }
        let expected = be_u32(&trailer[8..]);
        let actual = crc32fast::hash(&bytes[..len - INDEX_TRAILER_BYTES]);
        if expected != actual {
            return Err(format!(
                "checksum mismatch: trailer says {expected:#010x}, bytes give {actual:#010x}"
            ));
        }
        let mut previous = i64::MIN;
        for i in 0..count {
            let at = INDEX_HEADER_BYTES + i * K::ENTRY_BYTES;
            let key = K::key(&K::decode(&bytes[at..at + K::ENTRY_BYTES]));
            if key < previous {
                return Err(format!("entry {i} is out of order"));
            }
            previous = key;
        }
        Ok(Index {
            region: Some(region),
            entries: AtomicUsize::new(count),
            kind: PhantomData,
        })
    }

    /// Entries visible now.
    pub(crate) fn len(&self) -> usize {
        self.entries.load(Ordering::Acquire)
    }

    /// Entry `i`, if visible and readable.
    pub(crate) fn entry(&self, i: usize) -> Option<K::Entry> {
        if i >= self.len() {
            return None;
        }
        let start = INDEX_HEADER_BYTES + i * K::ENTRY_BYTES;
        let mut buf = [0u8; ENTRY_BYTES_MAX];
        let buf = &mut buf[..K::ENTRY_BYTES];
        self.region.as_ref()?.read_into(start, buf).ok()?;
        Some(K::decode(buf))
    }

    /// All visible entries, in order, read at once (none if they cannot be read).
    pub(crate) fn entries(&self) -> Vec<K::Entry> {
        let end = INDEX_HEADER_BYTES + self.len() * K::ENTRY_BYTES;
        match self
            .region
            .as_ref()
            .map(|r| r.read(INDEX_HEADER_BYTES, end))
        {
            Some(Ok(bytes)) => bytes.chunks_exact(K::ENTRY_BYTES).map(K::decode).collect(),
            _ => Vec::new(),
        }
    }

    /// The last visible entry.
    pub(crate) fn last(&self) -> Option<K::Entry> {
        self.len().checked_sub(1).and_then(|i| self.entry(i))
    }

    /// The last entry whose key satisfies `below` (keys are sorted, so the
    /// entries that satisfy it form a prefix).
    pub(crate) fn last_where(&self, below: impl Fn(i64) -> bool) -> Option<K::Entry> {
        let (mut lo, mut hi) = (0usize, self.len());
        let mut found = None;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.entry(mid) {
                Some(e) if below(K::key(&e)) => {
                    found = Some(e);
                    lo = mid + 1;
                }
                _ => hi = mid,
            }
        }
        found
    }
}

impl<K: IndexKind> IndexWriter<K> {
    /// Room for another entry (the trailer's room is kept free).
    fn has_room(&self) -> bool {
        self.writer.remaining() >= K::ENTRY_BYTES + INDEX_TRAILER_BYTES
    }

    /// Writes `bytes` and publishes them; on a failure, stops the index.
    fn write(&mut self, bytes: &[u8]) -> bool {
        if self.stopped {
            return false;
        }
        match self.writer.append(&[bytes]) {
            Ok(_) => {
                self.writer.publish();
                self.crc.update(bytes);
                true
            }
            Err(e) => {
                self.stopped = true;
                tracing::warn!(
                    index = %self.path.display(), error = %e,
                    "index write failed: this segment's index stops here and is rebuilt from the log at the next open"
                );
                false
            }
        }
    }

    /// Appends and publishes an entry; keys must not decrease.
    pub(crate) fn append(&mut self, index: &Index<K>, entry: K::Entry) {
        debug_assert!(
            self.last_key.is_none_or(|k| k <= K::key(&entry)),
            "index keys must not decrease"
        );
        // Sparse entries are a speed-up: a full index simply takes no more.
        if !self.has_room() || !self.write(&K::encode(&entry)) {
            return;
        }
        self.entries += 1;
        self.last_key = Some(K::key(&entry));
        index.entries.store(self.entries, Ordering::Release);
    }

    /// Writes the trailer, syncs, and cuts the file to its used length. An
    /// index whose writes failed is left unsealed (rebuilt at the next
    /// open), and so is one whose seal fails: neither is an error.
    pub(crate) fn seal(mut self) {
        if self.stopped {
            return;
        }
        // The CRC of what was written, kept as it was written: no read-back.
        let crc = self.crc.clone().finalize();
        let mut trailer = [0u8; INDEX_TRAILER_BYTES];
        trailer[0..4].copy_from_slice(&SEAL_MAGIC);
        trailer[4..8].copy_from_slice(&(self.entries as u32).to_be_bytes());
        trailer[8..12].copy_from_slice(&crc.to_be_bytes());
        if !self.write(&trailer) {
            return;
        }
        let path = self.path.clone();
        if let Err(e) = self.writer.seal() {
            tracing::warn!(index = %path.display(), error = %e, "index left unsealed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulated::SimulatedMedium;

    #[test]
    fn sealed_index_round_trips_and_damage_is_detected() {
        let medium = SimulatedMedium::new();
        let path = Path::new("/d/00000000000000000100.index");
        let (index, mut writer) =
            Index::<OffsetKind>::create(&medium, path, 100, 10).expect("create");
        for i in 0..5u32 {
            writer.append(
                &index,
                OffsetEntry {
                    relative_offset: i * 10,
                    position: i * 4096,
                },
            );
        }
        assert_eq!(
            index.last_where(|k| k <= 25),
            Some(OffsetEntry {
                relative_offset: 20,
                position: 8192
            })
        );
        assert_eq!(index.last_where(|k| k < 0), None);
        writer.seal();
        let reopened =
            Index::<OffsetKind>::open_sealed(&medium, path, 100).expect("sealed index opens");
        assert_eq!(reopened.entries(), index.entries());
        assert!(
            Index::<OffsetKind>::open_sealed(&medium, path, 101).is_err(),
            "base offset is checked"
        );
        medium
            .corrupt(path, INDEX_HEADER_BYTES + 3, &[0xff])
            .expect("corrupt");
        let err = Index::<OffsetKind>::open_sealed(&medium, path, 100)
            .err()
            .expect("crc catches it");
        assert!(err.contains("checksum"), "{err}");
    }

    #[test]
    fn unsealed_index_is_not_trusted() {
        let medium = SimulatedMedium::new();
        let path = Path::new("/d/0.timeindex");
        let (index, mut writer) = Index::<TimeKind>::create(&medium, path, 0, 4).expect("create");
        writer.append(
            &index,
            TimeEntry {
                timestamp: 5,
                relative_offset: 0,
            },
        );
        assert!(Index::<TimeKind>::open_sealed(&medium, path, 0).is_err());
    }

    #[test]
    fn a_full_disk_stops_the_index_without_an_error_and_leaves_it_unsealed() {
        let medium = SimulatedMedium::new();
        let path = Path::new("/d/00000000000000000000.index");
        let (index, mut writer) =
            Index::<OffsetKind>::create(&medium, path, 0, 100).expect("create");
        let entry = |i: u32| OffsetEntry {
            relative_offset: i,
            position: 32 + i,
        };
        writer.append(&index, entry(0));
        medium.set_space_limit(Some(medium.used_bytes()));
        writer.append(&index, entry(1));
        medium.set_space_limit(None);
        writer.append(&index, entry(2));
        assert_eq!(
            index.entries(),
            vec![entry(0)],
            "no entry after the failed one"
        );
        writer.seal();
        assert!(Index::<OffsetKind>::open_sealed(&medium, path, 0).is_err());
    }
}
