//! The four codecs of a compressed batch's records section, each as Kafka
//! frames it, writer and reader side by side:
//!
//! | codec | id | framing |
//! |---|---|---|
//! | gzip | 1 | a gzip stream (members may follow one another) |
//! | snappy | 2 | Java's xerial framing (magic, two ints, blocks each after a big-endian length); a plain raw snappy block is read too |
//! | lz4 | 3 | a standard LZ4 frame, independent 64 KiB blocks |
//! | zstd | 4 | a zstd frame |
//!
//! Decompression never trusts a size the bytes declare: output is read in
//! steps and refused as soon as it would pass the limit, so a small batch
//! cannot make the reader hold more than the limit.

use std::io::{Read, Write};

use super::*;

/// Magic of Java's xerial snappy framing (`SnappyOutputStream`), which Kafka's
/// Java client writes: `0x82 'S' 'N' 'A' 'P' 'P' 'Y' 0x00`.
pub const XERIAL_SNAPPY_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Bytes of the xerial header: the magic, then `version` and
/// `compatible_version` (i32, big-endian, both 1).
pub const XERIAL_SNAPPY_HEADER_BYTES: usize = 16;
/// Uncompressed bytes per xerial snappy block we write (xerial's default, as in Kafka).
pub const XERIAL_SNAPPY_BLOCK_BYTES: usize = 32 * 1024;
/// The xerial `version` and `compatible_version` we write.
const XERIAL_SNAPPY_VERSION: i32 = 1;
/// gzip level we write: Java's `Deflater.DEFAULT_COMPRESSION`, Kafka's default.
const GZIP_LEVEL: u32 = 6;
/// zstd level we write: zstd's and Kafka's default.
const ZSTD_LEVEL: i32 = 3;
/// Bytes read from a decompressor at a time.
const READ_STEP_BYTES: usize = 64 * 1024;

/// Magic of an LZ4 frame, little-endian.
const LZ4_FRAME_MAGIC: u32 = 0x184D_2204;

const _: () = assert!(XERIAL_SNAPPY_MAGIC.len() + 8 == XERIAL_SNAPPY_HEADER_BYTES);
const _: () = assert!(1usize << ZSTD_WINDOW_LOG_MAX == DECOMPRESSED_BYTES_MAX);

/// Compresses a records section with `codec` (not `None`, not `Unknown`).
pub(super) fn compress(codec: Compression, records: &[u8]) -> Result<Vec<u8>, BatchError> {
    let failed = |reason: String| BatchError::CompressionFailed {
        codec: codec.name(),
        reason,
    };
    match codec {
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(records.len() / 2),
                flate2::Compression::new(GZIP_LEVEL),
            );
            encoder
                .write_all(records)
                .map_err(|e| failed(e.to_string()))?;
            encoder.finish().map_err(|e| failed(e.to_string()))
        }
        Compression::Snappy => {
            let mut out = Vec::with_capacity(XERIAL_SNAPPY_HEADER_BYTES + records.len() / 2);
            out.extend_from_slice(&XERIAL_SNAPPY_MAGIC);
            out.extend_from_slice(&XERIAL_SNAPPY_VERSION.to_be_bytes());
            out.extend_from_slice(&XERIAL_SNAPPY_VERSION.to_be_bytes());
            let mut encoder = snap::raw::Encoder::new();
            for chunk in records.chunks(XERIAL_SNAPPY_BLOCK_BYTES) {
                let block = encoder
                    .compress_vec(chunk)
                    .map_err(|e| failed(e.to_string()))?;
                let length = i32::try_from(block.len())
                    .map_err(|_| failed("a snappy block over i32::MAX bytes".into()))?;
                out.extend_from_slice(&length.to_be_bytes());
                out.extend_from_slice(&block);
            }
            Ok(out)
        }
        Compression::Lz4 => {
            // Kafka's Java reader decodes every block on its own: independent blocks.
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(
                info,
                Vec::with_capacity(records.len() / 2),
            );
            encoder
                .write_all(records)
                .map_err(|e| failed(e.to_string()))?;
            encoder.finish().map_err(|e| failed(e.to_string()))
        }
        Compression::Zstd => {
            zstd::bulk::compress(records, ZSTD_LEVEL).map_err(|e| failed(e.to_string()))
        }
        Compression::None | Compression::Unknown(_) => Err(BatchError::UnsupportedCodec {
            codec: codec.id(),
            name: codec.name(),
        }),
    }
}

/// Decompresses a records section compressed with `codec`; refuses output
/// past `limit` bytes.
pub(super) fn decompress(
    codec: Compression,
    section: &[u8],
    limit: usize,
) -> Result<Vec<u8>, BatchError> {
    let failed = |reason: String| BatchError::DecompressionFailed {
        codec: codec.name(),
        compressed: section.len(),
        reason,
    };
    match codec {
        Compression::Gzip => read_bounded(
            codec,
            section.len(),
            flate2::read::MultiGzDecoder::new(section),
            limit,
        ),
        Compression::Snappy if section.starts_with(&XERIAL_SNAPPY_MAGIC) => {
            xerial_snappy(section, limit)
        }
        Compression::Snappy => {
            // No magic: one raw block, as librdkafka writes.
            let mut out = Vec::new();
            raw_snappy(section, section.len(), limit, &mut out)?;
            Ok(out)
        }
        Compression::Lz4 => {
            // The decoder takes a frame cut before its end mark for a whole one.
            lz4_frames_whole(section).map_err(|reason| failed(reason.to_string()))?;
            read_bounded(
                codec,
                section.len(),
                lz4_flex::frame::FrameDecoder::new(section),
                limit,
            )
        }
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(section)
                .map_err(|e| failed(e.to_string()))?;
            // A window over the limit could only serve output we refuse;
            // without this a 20-byte frame could ask for a 128 MiB window.
            decoder
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|e| failed(e.to_string()))?;
            read_bounded(codec, section.len(), decoder, limit)
        }
        Compression::None | Compression::Unknown(_) => Err(BatchError::UnsupportedCodec {
            codec: codec.id(),
            name: codec.name(),
        }),
    }
}

fn too_large(codec: Compression, compressed: usize, limit: usize) -> BatchError {
    BatchError::DecompressedTooLarge {
        codec: codec.name(),
        compressed,
        limit,
    }
}

/// Reads `reader` to its end, refusing more than `limit` bytes. Grows the
/// buffer as output comes, never past `limit`.
fn read_bounded(
    codec: Compression,
    compressed: usize,
    mut reader: impl Read,
    limit: usize,
) -> Result<Vec<u8>, BatchError> {
    let mut out: Vec<u8> = Vec::with_capacity(compressed.saturating_mul(4).min(limit));
    let mut step = vec![0u8; READ_STEP_BYTES];
    loop {
        let n = match reader.read(&mut step) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(BatchError::DecompressionFailed {
                    codec: codec.name(),
                    compressed,
                    reason: e.to_string(),
                });
            }
        };
        let len = out.len() + n;
        if len > limit {
            return Err(too_large(codec, compressed, limit));
        }
        if len > out.capacity() {
            // Doubling, but never past the limit.
            let want = out.capacity().saturating_mul(2).clamp(len, limit);
            out.reserve_exact(want - out.len());
        }
        out.extend_from_slice(&step[..n]);
    }
}

/// Java's xerial framing: header, then blocks each after a big-endian
/// length; a second header may start again where a block would (streams
/// written one after another).
fn xerial_snappy(section: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    let failed = |reason: &str| BatchError::DecompressionFailed {
        codec: Compression::Snappy.name(),
        compressed: section.len(),
        reason: reason.to_string(),
    };
    let mut out = Vec::new();
    let mut rest = section;
    while !rest.is_empty() {
        if rest.starts_with(&XERIAL_SNAPPY_MAGIC) {
            rest = rest
                .get(XERIAL_SNAPPY_HEADER_BYTES..)
                .ok_or_else(|| failed("xerial header cut short"))?;
            continue;
        }
        let (length, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| failed("xerial block length cut short"))?;
        let length = usize::try_from(i32::from_be_bytes(*length))
            .map_err(|_| failed("negative xerial block length"))?;
        if length > tail.len() {
            return Err(failed("xerial block runs past the records section"));
        }
        let (block, tail) = tail.split_at(length);
        raw_snappy(block, section.len(), limit, &mut out)?;
        rest = tail;
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`. The length the block declares is
/// only compared with what is left of the limit before it is allocated.
fn raw_snappy(
    block: &[u8],
    compressed: usize,
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), BatchError> {
    let failed = |e: snap::Error| BatchError::DecompressionFailed {
        codec: Compression::Snappy.name(),
        compressed,
        reason: e.to_string(),
    };
    let declared = snap::raw::decompress_len(block).map_err(failed)?;
    if declared > limit - out.len() {
        return Err(too_large(Compression::Snappy, compressed, limit));
    }
    let start = out.len();
    out.resize(start + declared, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(failed)?;
    out.truncate(start + written);
    Ok(())
}

/// Walks the LZ4 frames of `section` by their sizes alone (magic, frame
/// descriptor, each block's length, the end mark, the checksums the flags
/// announce) and checks that the last one ends exactly where the section
/// does. The block contents are left to the decoder.
fn lz4_frames_whole(section: &[u8]) -> Result<(), &'static str> {
    fn take<'s>(
        rest: &mut &'s [u8],
        n: usize,
        what: &'static str,
    ) -> Result<&'s [u8], &'static str> {
        if rest.len() < n {
            return Err(what);
        }
        let (taken, tail) = rest.split_at(n);
        *rest = tail;
        Ok(taken)
    }
    fn u32_le(bytes: &[u8]) -> u32 {
        let mut word = [0u8; 4];
        word.copy_from_slice(&bytes[..4]);
        u32::from_le_bytes(word)
    }
    const CUT: &str = "LZ4 frame cut short (no end mark)";
    let mut rest = section;
    if rest.is_empty() {
        return Err("no LZ4 frame");
    }
    while !rest.is_empty() {
        if u32_le(take(&mut rest, 4, CUT)?) != LZ4_FRAME_MAGIC {
            return Err("not an LZ4 frame (bad magic)");
        }
        let descriptor = take(&mut rest, 2, CUT)?;
        let flags = descriptor[0];
        let block_checksum = flags & 0b0001_0000 != 0;
        let content_size = flags & 0b0000_1000 != 0;
        let content_checksum = flags & 0b0000_0100 != 0;
        let dictionary_id = flags & 0b0000_0001 != 0;
        // Content size, dictionary id, header checksum.
        let optional = 8 * usize::from(content_size) + 4 * usize::from(dictionary_id) + 1;
        take(&mut rest, optional, CUT)?;
        loop {
            let size = u32_le(take(&mut rest, 4, CUT)?);
            if size == 0 {
                break;
            }
            let data = (size & 0x7FFF_FFFF) as usize + 4 * usize::from(block_checksum);
            take(&mut rest, data, CUT)?;
        }
        if content_checksum {
            take(&mut rest, 4, CUT)?;
        }
    }
    Ok(())
}
