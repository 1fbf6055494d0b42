//! A partition's messages for the console: the latest N, from an offset or
//! from a time, read through the core's fetch (so they count as fetched,
//! like any consumer's) and decoded on the blocking pool, compressed
//! batches included. Keys, values and header values are shown as JSON (an
//! object or array that parses), UTF-8 text, or hex, each cut at
//! [`FIELD_SHOWN_BYTES_MAX`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use carteiro::record::RecordBatch;
use carteiro_core::fetch::{FetchPartition, FetchRequest, OffsetSpec};
use carteiro_core::{Broker, BrokerError};
use serde::Serialize;
use tokio::sync::Semaphore;

use super::error::ApiError;

/// Most messages one request may ask for.
pub const MESSAGES_LIMIT_MAX: u32 = 500;
/// Messages shown when `limit` is not given.
pub const MESSAGES_LIMIT_DEFAULT: u32 = 50;
/// Most stored bytes one request reads (8 MiB).
pub const MESSAGES_READ_BYTES_MAX: u32 = 8 * 1024 * 1024;
/// Most bytes of compressed batches' records one request decompresses
/// (16 MiB; the first batch is always decoded, up to the codec's own
/// 64 MiB bound).
pub const MESSAGES_DECODED_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Most bytes of one key, value or header value shown (16 KiB); the rest
/// is cut and the field says so.
pub const FIELD_SHOWN_BYTES_MAX: usize = 16 * 1024;
/// Most headers shown of one message.
pub const HEADERS_SHOWN_MAX: usize = 64;
/// Most bytes shown in one answer (4 MiB); past it, no more messages are
/// added (at least one is) and `next_offset` says where to go on.
pub const MESSAGES_SHOWN_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Most message reads served at once, all clients together: each holds up
/// to [`MESSAGES_READ_BYTES_MAX`] read and [`MESSAGES_DECODED_BYTES_MAX`]
/// decompressed.
pub const MESSAGE_READS_IN_FLIGHT_MAX: usize = 4;
/// Longest a message read waits for a place before it is refused (`503`).
pub const MESSAGE_READ_WAIT: Duration = Duration::from_secs(5);

static MESSAGE_READS: Semaphore = Semaphore::const_new(MESSAGE_READS_IN_FLIGHT_MAX);

/// Where reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The last `limit` messages below the high watermark.
    Latest,
    /// From this offset.
    Offset(u64),
    /// From the first message at or after this time (ms).
    Time(i64),
}

impl Start {
    fn name(self) -> &'static str {
        match self {
            Start::Latest => "latest",
            Start::Offset(_) => "offset",
            Start::Time(_) => "time",
        }
    }
}

/// A byte string as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shown {
    /// `null`, `json`, `utf8` or `hex`.
    pub encoding: &'static str,
    /// The text (the hex digits for `hex`); absent for `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The whole byte string's length.
    pub size: usize,
    /// True if `text` shows only the first [`FIELD_SHOWN_BYTES_MAX`] bytes.
    pub truncated: bool,
}

/// One header as shown.
#[derive(Debug, Clone, Serialize)]
pub struct ShownHeader {
    /// Its key (UTF-8; Kafka requires it).
    pub key: String,
    /// Its value.
    pub value: Shown,
}

/// One message as shown.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    /// Its offset.
    pub offset: i64,
    /// Its timestamp, ms since the Unix epoch.
    pub timestamp_ms: i64,
    /// Its key.
    pub key: Shown,
    /// Its value.
    pub value: Shown,
    /// Its headers, the first [`HEADERS_SHOWN_MAX`].
    pub headers: Vec<ShownHeader>,
    /// How many headers it has.
    pub headers_total: usize,
}

/// The answer: where it read and what it found.
#[derive(Debug, Serialize)]
pub struct Messages {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// `latest`, `offset` or `time`.
    pub start: &'static str,
    /// The partition's first offset.
    pub start_offset: u64,
    /// Offsets below this are visible.
    pub high_watermark: u64,
    /// The offset reading started at.
    pub from_offset: u64,
    /// The offset after the last message shown: where to read on.
    pub next_offset: u64,
    /// The limit asked for (or the default).
    pub limit: u32,
    /// The messages, by offset.
    pub messages: Vec<Message>,
}

/// Reads up to `limit` messages of a partition from `start`, once one of
/// the [`MESSAGE_READS_IN_FLIGHT_MAX`] places is free (waiting at most
/// [`MESSAGE_READ_WAIT`]; then `503`).
pub async fn read(
    broker: Arc<Broker>,
    topic: String,
    partition: u32,
    start: Start,
    limit: u32,
) -> Result<Messages, ApiError> {
    let _place = match tokio::time::timeout(MESSAGE_READ_WAIT, MESSAGE_READS.acquire()).await {
        Ok(Ok(permit)) => permit,
        _ => {
            return Err(ApiError::Core(BrokerError::ResourceExhausted {
                what: "console message reads in flight",
                limit: MESSAGE_READS_IN_FLIGHT_MAX as u64,
            }));
        }
    };
    let (from, start_offset, hwm) = {
        let (broker, topic) = (broker.clone(), topic.clone());
        tokio::task::spawn_blocking(move || first_offset(&broker, &topic, partition, start, limit))
            .await
            .map_err(|e| ApiError::Internal(format!("reading offsets: {e}")))??
    };
    let chunks = fetch(&broker, &topic, partition, from, limit).await?;
    let (messages, next) = tokio::task::spawn_blocking(move || decode(&chunks, from, limit))
        .await
        .map_err(|e| ApiError::Internal(format!("decoding: {e}")))??;
    Ok(Messages {
        topic,
        partition,
        start: start.name(),
        start_offset,
        high_watermark: hwm,
        from_offset: from,
        next_offset: next,
        limit,
        messages,
    })
}

/// The offset to read from, the partition's start and high watermark.
/// Blocking (a look-up by time reads the log).
fn first_offset(
    broker: &Broker,
    topic: &str,
    partition: u32,
    start: Start,
    limit: u32,
) -> Result<(u64, u64, u64), ApiError> {
    let first = broker.list_offset(topic, partition, OffsetSpec::Earliest)?;
    let hwm = broker.list_offset(topic, partition, OffsetSpec::Latest)?;
    let from = match start {
        Start::Latest => hwm.saturating_sub(u64::from(limit)).max(first),
        Start::Offset(offset) if (first..=hwm).contains(&offset) => offset,
        Start::Offset(offset) => {
            return Err(ApiError::over_limit(
                "offset",
                &offset.to_string(),
                format!("the partition's offsets, {first} to {hwm}"),
            ));
        }
        Start::Time(ms) => broker
            .list_offset(topic, partition, OffsetSpec::Timestamp(ms))?
            .max(first),
    };
    Ok((from, first, hwm))
}

/// The stored batches from `from`, through the core's fetch, until they
/// hold `limit` records or reach the high watermark, within
/// [`MESSAGES_READ_BYTES_MAX`].
async fn fetch(
    broker: &Arc<Broker>,
    topic: &str,
    partition: u32,
    from: u64,
    limit: u32,
) -> Result<Vec<Bytes>, ApiError> {
    let mut chunks = Vec::new();
    let (mut at, mut read) = (from, 0u32);
    while at < from + u64::from(limit) && read < MESSAGES_READ_BYTES_MAX {
        let left = MESSAGES_READ_BYTES_MAX - read;
        let request = FetchRequest {
            partitions: vec![FetchPartition {
                topic: topic.to_string(),
                partition,
                offset: i64::try_from(at).unwrap_or(i64::MAX),
                max_bytes: left,
            }],
            max_bytes: left,
            min_bytes: 0,
            max_wait_ms: 0,
        };
        let fetched = broker.fetch(request).await?;
        let Some(part) = fetched.partitions.into_iter().next() else {
            break;
        };
        if let Some(e) = part.error {
            // Damage past some batches: show those.
            if chunks.is_empty() {
                return Err(e.into());
            }
            break;
        }
        let next = u64::try_from(part.next_offset).unwrap_or(at);
        let bytes: usize = part.batches.iter().map(Bytes::len).sum();
        if part.batches.is_empty() || next <= at {
            break;
        }
        chunks.extend(part.batches);
        read = read.saturating_add(u32::try_from(bytes).unwrap_or(u32::MAX));
        at = next;
        if at >= part.high_watermark {
            break;
        }
    }
    Ok(chunks)
}

/// The messages at or after `from` in `chunks`, at most `limit` and
/// within [`MESSAGES_SHOWN_BYTES_MAX`] and [`MESSAGES_DECODED_BYTES_MAX`];
/// and the offset after the last. Blocking (decompression).
fn decode(chunks: &[Bytes], from: u64, limit: u32) -> Result<(Vec<Message>, u64), ApiError> {
    let mut messages = Vec::new();
    let mut next = from;
    let (mut shown, mut decoded) = (0usize, 0usize);
    let damaged = |offset: i64, e: &dyn std::fmt::Display| {
        ApiError::Core(BrokerError::DataLoss(format!(
            "stored batch at offset {offset}: {e}"
        )))
    };
    'chunks: for chunk in chunks {
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let (batch, tail) = RecordBatch::parse(rest).map_err(|e| damaged(-1, &e))?;
            rest = tail;
            if u64::try_from(batch.last_offset()).unwrap_or(0) < from {
                continue;
            }
            let records = batch
                .records()
                .map_err(|e| damaged(batch.base_offset(), &e))?;
            if let Some(section) = records.decompressed() {
                if !messages.is_empty() && decoded + section.len() > MESSAGES_DECODED_BYTES_MAX {
                    break 'chunks;
                }
                decoded += section.len();
            }
            for record in records.iter() {
                let record = record.map_err(|e| damaged(batch.base_offset(), &e))?;
                let offset = u64::try_from(record.offset).unwrap_or(0);
                if offset < from {
                    continue;
                }
                if messages.len() >= limit as usize || shown >= MESSAGES_SHOWN_BYTES_MAX {
                    break 'chunks;
                }
                let message = Message {
                    offset: record.offset,
                    timestamp_ms: record.timestamp,
                    key: show(record.key),
                    value: show(record.value),
                    headers: record
                        .headers
                        .iter()
                        .take(HEADERS_SHOWN_MAX)
                        .map(|h| ShownHeader {
                            key: String::from_utf8_lossy(
                                &h.key[..h.key.len().min(FIELD_SHOWN_BYTES_MAX)],
                            )
                            .into_owned(),
                            value: show(h.value),
                        })
                        .collect(),
                    headers_total: record.headers.len(),
                };
                shown += shown_bytes(&message);
                messages.push(message);
                next = offset + 1;
            }
        }
    }
    Ok((messages, next))
}

fn shown_bytes(message: &Message) -> usize {
    let text = |s: &Shown| s.text.as_ref().map_or(0, String::len);
    text(&message.key)
        + text(&message.value)
        + message
            .headers
            .iter()
            .map(|h| h.key.len() + text(&h.value))
            .sum::<usize>()
}

/// A byte string as JSON (an object or array that parses), UTF-8 text
/// (with no control characters but tab and line breaks), or hex; cut at
/// [`FIELD_SHOWN_BYTES_MAX`].
pub fn show(bytes: Option<&[u8]>) -> Shown {
    let Some(bytes) = bytes else {
        return Shown {
            encoding: "null",
            text: None,
            size: 0,
            truncated: false,
        };
    };
    let truncated = bytes.len() > FIELD_SHOWN_BYTES_MAX;
    let head = &bytes[..bytes.len().min(FIELD_SHOWN_BYTES_MAX)];
    let text = match std::str::from_utf8(head) {
        Ok(text) => Some(text),
        // Cut inside a character: the whole characters before it.
        Err(e) if truncated && e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).ok()
        }
        Err(_) => None,
    };
    let printable = |t: &str| {
        t.chars()
            .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
    };
    let (encoding, text) = match text {
        Some(t) if !truncated && looks_like_json(t) => ("json", t.to_string()),
        Some(t) if printable(t) => ("utf8", t.to_string()),
        _ => ("hex", hex(head)),
    };
    Shown {
        encoding,
        text: Some(text),
        size: bytes.len(),
        truncated,
    }
}

fn looks_like_json(text: &str) -> bool {
    let trimmed = text.trim_start();
    (trimmed.starts_with('{') || trimmed.starts_with('['))
        && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use carteiro::record::{Compression, Header, NewRecord, RecordBatchBuilder};

    #[test]
    fn values_show_as_json_text_or_hex() {
        assert_eq!(show(None).encoding, "null");
        let json = show(Some(br#" {"item": "book", "n": [1, 2]}"#));
        assert_eq!(json.encoding, "json");
        assert_eq!(
            json.text.as_deref(),
            Some(r#" {"item": "book", "n": [1, 2]}"#)
        );
        assert_eq!(show(Some(b"42")).encoding, "utf8", "a bare number is text");
        assert_eq!(show(Some(b"{not json")).encoding, "utf8");
        let text = show(Some("olá\nmundo".as_bytes()));
        assert_eq!((text.encoding, text.size), ("utf8", 10));
        let binary = show(Some(&[0, 1, 0xfe, 0xff]));
        assert_eq!(binary.encoding, "hex");
        assert_eq!(binary.text.as_deref(), Some("0001feff"));
        assert_eq!(show(Some(b"a\x00b")).encoding, "hex", "control characters");
    }

    #[test]
    fn long_values_are_cut_at_a_character() {
        let mut long = "é".repeat(FIELD_SHOWN_BYTES_MAX);
        long.push('!');
        let shown = show(Some(long.as_bytes()));
        assert_eq!(shown.encoding, "utf8");
        assert!(shown.truncated);
        assert_eq!(shown.size, long.len());
        assert_eq!(
            shown.text.as_ref().map(String::len),
            Some(FIELD_SHOWN_BYTES_MAX)
        );
        let json = format!("[{}]", "1,".repeat(FIELD_SHOWN_BYTES_MAX) + "1");
        assert_eq!(
            show(Some(json.as_bytes())).encoding,
            "utf8",
            "cut JSON is text"
        );
        let binary = vec![0xffu8; FIELD_SHOWN_BYTES_MAX + 1];
        let shown = show(Some(&binary));
        assert_eq!(shown.encoding, "hex");
        assert_eq!(shown.text.map(|t| t.len()), Some(2 * FIELD_SHOWN_BYTES_MAX));
    }

    fn batch(base: i64, values: &[&str], compression: Compression) -> Vec<u8> {
        let mut builder = RecordBatchBuilder::new().with_compression(compression);
        let headers = [Header {
            key: b"h",
            value: Some(b"v"),
        }];
        for value in values {
            builder
                .append(&NewRecord {
                    timestamp: 1_700_000_000_000,
                    key: Some(b"k"),
                    value: Some(value.as_bytes()),
                    headers: &headers,
                })
                .expect("appended");
        }
        let mut bytes = builder.build().expect("built");
        carteiro::record::set_base_offset(&mut bytes, base);
        bytes
    }

    #[test]
    fn decoding_starts_at_the_offset_and_stops_at_the_limit() {
        let mut stored = batch(0, &["a", "b", "c"], Compression::None);
        stored.extend(batch(3, &["d", "e", "f"], Compression::Zstd));
        let chunks = [Bytes::from(stored)];
        let (messages, next) = decode(&chunks, 2, 3).expect("decodes");
        let values: Vec<_> = messages
            .iter()
            .map(|m| m.value.text.clone().unwrap_or_default())
            .collect();
        assert_eq!(values, ["c", "d", "e"]);
        assert_eq!(next, 5);
        assert_eq!(messages[0].headers[0].key, "h");
        assert_eq!(messages[0].headers[0].value.text.as_deref(), Some("v"));
        assert_eq!(messages[0].key.text.as_deref(), Some("k"));
        let (all, next) = decode(&chunks, 0, 500).expect("decodes");
        assert_eq!(all.len(), 6);
        assert_eq!(next, 6);
        let damaged = [Bytes::from_static(
            b"not a batch at all, not even close to one, no",
        )];
        assert!(decode(&damaged, 0, 10).is_err());
    }
}
