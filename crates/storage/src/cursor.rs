//! Sequential reads of a region through one buffer, so that walking batch
//! headers (recovery, index look-ups, rebuilding an index) costs a system
//! call per window rather than per batch.

use std::io;

use carteiro::record::{BATCH_HEADER_BYTES, BatchHeader};

use crate::config::MAX_BATCH_BYTES_MAX;
use crate::region::Region;

/// Most bytes read at a time when the buffer is refilled (256 KiB).
pub(crate) const CURSOR_WINDOW_BYTES: usize = 256 * 1024;
/// Bytes read by the first refill (4 KiB): a look-up that needs a header or
/// two reads little; each refill doubles the window up to the most.
const CURSOR_FIRST_WINDOW_BYTES: usize = 4 * 1024;

/// A window over the published bytes `0..end` of a region.
pub(crate) struct RegionCursor<'a> {
    region: &'a Region,
    end: usize,
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    at: usize,
    /// Bytes the next refill reads (at least).
    window: usize,
}

impl<'a> RegionCursor<'a> {
    /// A cursor over the first `end` bytes of `region`.
    pub(crate) fn new(region: &'a Region, end: usize) -> Self {
        RegionCursor {
            region,
            end,
            buf: Vec::new(),
            at: 0,
            window: CURSOR_FIRST_WINDOW_BYTES,
        }
    }

    /// Where the bytes it reads end.
    pub(crate) fn end(&self) -> usize {
        self.end
    }

    /// The bytes `position..position + len`; an error if they run past the end.
    pub(crate) fn bytes(&mut self, position: usize, len: usize) -> io::Result<&[u8]> {
        let wanted_end = position.saturating_add(len);
        if wanted_end > self.end {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "bytes {position}..{wanted_end} run past the end at {}",
                    self.end
                ),
            ));
        }
        let buffered = position >= self.at && wanted_end <= self.at + self.buf.len();
        if !buffered {
            let read = len.max(self.window).min(self.end - position);
            self.window = (self.window * 2).min(CURSOR_WINDOW_BYTES);
            self.buf.resize(read, 0);
            if let Err(e) = self.region.read_into(position, &mut self.buf) {
                self.buf.clear();
                return Err(e);
            }
            self.at = position;
        }
        let from = position - self.at;
        Ok(&self.buf[from..from + len])
    }

    /// Up to `len` bytes from `position`, fewer where the end comes first.
    pub(crate) fn bytes_up_to(&mut self, position: usize, len: usize) -> io::Result<&[u8]> {
        let len = len.min(self.end.saturating_sub(position));
        self.bytes(position, len)
    }

    /// The batch header at `position`, checked to end within the region;
    /// `Err` says what is wrong with it.
    pub(crate) fn header(&mut self, position: usize) -> Result<BatchHeader, String> {
        let bytes = self
            .bytes_up_to(position, BATCH_HEADER_BYTES)
            .map_err(|e| e.to_string())?;
        let header = BatchHeader::parse(bytes).map_err(|e| e.to_string())?;
        if header.total_bytes() > MAX_BATCH_BYTES_MAX as usize {
            return Err(format!(
                "batch of {} bytes is larger than any batch a log accepts ({MAX_BATCH_BYTES_MAX})",
                header.total_bytes()
            ));
        }
        let available = self.end - position;
        if header.total_bytes() > available {
            return Err(format!(
                "batch of {} bytes runs past the end of the data ({available} bytes left)",
                header.total_bytes()
            ));
        }
        Ok(header)
    }

    /// True if every byte from `position` to the end is zero.
    pub(crate) fn zeros_from(&mut self, mut position: usize) -> io::Result<bool> {
        while position < self.end {
            let chunk = self.bytes_up_to(position, CURSOR_WINDOW_BYTES)?;
            if chunk.iter().any(|&b| b != 0) {
                return Ok(false);
            }
            position += chunk.len();
        }
        Ok(true)
    }
}
