use super::*;
use proptest::prelude::*;

mod codecs;

#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnedRecord {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl OwnedRecord {
    fn of(record: &Record<'_>) -> OwnedRecord {
        OwnedRecord {
            timestamp: record.timestamp,
            key: record.key.map(<[u8]>::to_vec),
            value: record.value.map(<[u8]>::to_vec),
            headers: record
                .headers
                .iter()
                .map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec)))
                .collect(),
        }
    }
}

fn encode(records: &[OwnedRecord]) -> Vec<u8> {
    encode_with(records, Compression::None)
}

fn encode_with(records: &[OwnedRecord], codec: Compression) -> Vec<u8> {
    let mut builder = RecordBatchBuilder::new().with_compression(codec);
    for r in records {
        let headers: Vec<Header<'_>> = r
            .headers
            .iter()
            .map(|(k, v)| Header {
                key: k,
                value: v.as_deref(),
            })
            .collect();
        let record = NewRecord {
            timestamp: r.timestamp,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: &headers,
        };
        let before = builder.size_bytes();
        let predicted = builder.record_size(&record);
        builder.append(&record).expect("small records fit");
        assert_eq!(builder.size_bytes() - before, predicted);
    }
    builder.build().expect("non-empty")
}

fn record_strategy() -> impl Strategy<Value = OwnedRecord> {
    let bytes = proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64));
    // Header keys are strings; values any bytes.
    let header = (
        ".{0,8}".prop_map(String::into_bytes),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
    );
    (
        any::<i64>(),
        bytes.clone(),
        bytes,
        proptest::collection::vec(header, 0..4),
    )
        .prop_map(|(timestamp, key, value, headers)| OwnedRecord {
            timestamp,
            key,
            value,
            headers,
        })
}

fn one_record_batch() -> Vec<u8> {
    encode(&[OwnedRecord {
        timestamp: 1_700_000_000_000,
        key: Some(b"k".to_vec()),
        value: Some(b"value".to_vec()),
        headers: vec![(b"h".to_vec(), Some(b"v".to_vec()))],
    }])
}

#[test]
fn layout_matches_kafka_record_batch_v2() {
    let batch = one_record_batch();
    // The record, by hand from Kafka's spec: length, attributes, timestamp
    // delta, offset delta, key, value, one header; all varints zigzag.
    let record: &[u8] = &[
        0x00, // attributes
        0x00, // timestamp delta 0
        0x00, // offset delta 0
        0x02, b'k', // key length 1
        0x0a, b'v', b'a', b'l', b'u', b'e', // value length 5
        0x02, // one header
        0x02, b'h', 0x02, b'v',
    ];
    let mut expected = Vec::new();
    expected.extend_from_slice(&0i64.to_be_bytes()); // base offset
    let batch_length = (BATCH_HEADER_BYTES - 12 + 1 + record.len()) as i32;
    expected.extend_from_slice(&batch_length.to_be_bytes());
    expected.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    expected.push(2); // magic
    expected.extend_from_slice(&[0; 4]); // crc, filled below
    expected.extend_from_slice(&0i16.to_be_bytes()); // attributes
    expected.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    expected.extend_from_slice(&1_700_000_000_000i64.to_be_bytes()); // base timestamp
    expected.extend_from_slice(&1_700_000_000_000i64.to_be_bytes()); // max timestamp
    expected.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    expected.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    expected.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    expected.extend_from_slice(&1i32.to_be_bytes()); // record count
    assert_eq!(expected.len(), BATCH_HEADER_BYTES);
    expected.push((record.len() as u8) << 1); // record length varint
    expected.extend_from_slice(record);
    let crc = crc32c::crc32c(&expected[ATTRIBUTES_AT..]);
    expected[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(batch, expected);
}

#[test]
fn reads_back_fields_and_records() {
    let batch = one_record_batch();
    let parsed = RecordBatch::parse_exact(&batch).expect("valid");
    parsed.validate().expect("valid records");
    let section = parsed.records().expect("uncompressed");
    assert!(section.decompressed().is_none());
    let records: Vec<_> = section.iter().collect::<Result<_, _>>().expect("valid");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key, Some(&b"k"[..]));
    assert_eq!(records[0].value, Some(&b"value"[..]));
    let headers: Vec<_> = records[0].headers.iter().collect();
    assert_eq!(
        headers,
        vec![Header {
            key: b"h",
            value: Some(b"v")
        }]
    );
}

#[test]
fn base_offset_rewrite_keeps_the_crc_valid() {
    let mut batch = one_record_batch();
    set_base_offset(&mut batch, 42);
    let parsed = RecordBatch::parse_exact(&batch).expect("crc excludes base offset");
    assert_eq!(parsed.base_offset(), 42);
    let records = parsed.records().expect("uncompressed");
    let first = records.iter().next().expect("one").expect("valid");
    assert_eq!(first.offset, 42);
}

#[test]
fn a_codec_kafka_does_not_define_gets_codec_not_supported() {
    for id in 5..=7u8 {
        let mut batch = one_record_batch();
        batch[ATTRIBUTES_AT + 1] = id;
        let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        let parsed = RecordBatch::parse_exact(&batch).expect("header and crc valid");
        let err = parsed.records().expect_err("no such codec");
        assert_eq!(
            err,
            BatchError::UnsupportedCodec {
                codec: id,
                name: "unknown"
            }
        );
        assert!(err.to_string().contains("codec not supported"), "{err}");
        assert_eq!(parsed.validate().expect_err("validate too"), err);
    }
}

#[test]
fn every_truncation_is_an_error() {
    let batch = one_record_batch();
    for len in 0..batch.len() {
        assert!(
            RecordBatch::parse(&batch[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
}

#[test]
fn empty_builder_refuses_to_build() {
    assert_eq!(RecordBatchBuilder::new().build(), Err(BatchError::Empty));
}

#[test]
fn validate_rejects_wrong_max_timestamp() {
    let mut batch = one_record_batch();
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&5i64.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    let parsed = RecordBatch::parse_exact(&batch).expect("crc valid");
    assert!(matches!(
        parsed.validate(),
        Err(BatchError::HeaderMismatch {
            field: "max_timestamp",
            ..
        })
    ));
}

proptest! {
    #[test]
    fn random_batches_round_trip(records in proptest::collection::vec(record_strategy(), 1..20), base in 0i64..i64::MAX / 2) {
        let mut batch = encode(&records);
        set_base_offset(&mut batch, base);
        let parsed = RecordBatch::parse_exact(&batch).expect("builder output parses");
        parsed.validate().expect("builder output validates");
        prop_assert_eq!(parsed.record_count() as usize, records.len());
        prop_assert_eq!(parsed.last_offset(), base + records.len() as i64 - 1);
        let section = parsed.records().expect("uncompressed");
        let decoded: Vec<_> = section.iter().collect::<Result<_, _>>().expect("valid");
        for (i, (got, want)) in decoded.iter().zip(&records).enumerate() {
            prop_assert_eq!(got.offset, base + i as i64);
            prop_assert_eq!(got.timestamp, want.timestamp);
            prop_assert_eq!(got.key, want.key.as_deref());
            prop_assert_eq!(got.value, want.value.as_deref());
            let headers: Vec<_> = got.headers.iter().map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec))).collect();
            prop_assert_eq!(&headers, &want.headers);
        }
        prop_assert_eq!(parsed.header().max_timestamp, records.iter().map(|r| r.timestamp).max().expect("non-empty"));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        exercise(&bytes);
    }

    #[test]
    fn corrupted_batches_never_panic(
        records in proptest::collection::vec(record_strategy(), 1..6),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        fix_crc in any::<bool>(),
    ) {
        let mut batch = encode(&records);
        for (at, byte) in &flips {
            let i = at.index(batch.len());
            batch[i] ^= byte | 1;
        }
        if fix_crc && batch.len() >= BATCH_HEADER_BYTES {
            // Past the CRC, so the record parser itself meets the damage.
            let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
            batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        }
        exercise(&batch);
    }
}

/// Runs every reader entry point over `bytes`; only a panic fails.
fn exercise(bytes: &[u8]) {
    let _ = BatchHeader::parse(bytes);
    if let Ok((batch, _)) = RecordBatch::parse(bytes) {
        let _ = batch.validate();
        if let Ok(records) = batch.records() {
            for record in records.iter().flatten() {
                for header in record.headers.iter() {
                    let _ = (header.key.len(), header.value.map(<[u8]>::len));
                }
            }
        }
    }
}

#[test]
fn a_header_key_that_is_not_utf8_is_refused_by_the_builder_and_the_reader() {
    let bad = [Header {
        key: &[0xff, 0xfe],
        value: None,
    }];
    let record = NewRecord {
        timestamp: 1,
        key: None,
        value: Some(b"v"),
        headers: &bad,
    };
    let refused = RecordBatchBuilder::new()
        .append(&record)
        .expect_err("builder");
    assert!(refused.to_string().contains("not UTF-8"), "{refused}");
    // A batch some other client wrote with such a key: built with a good
    // key of the same length, then patched, with its CRC fixed.
    let good = [Header {
        key: b"ok",
        value: None,
    }];
    let mut builder = RecordBatchBuilder::new();
    builder
        .append(&NewRecord {
            headers: &good,
            ..record
        })
        .expect("good key");
    let mut batch = builder.build().expect("batch");
    let at = batch
        .windows(2)
        .rposition(|w| w == b"ok")
        .expect("the key's bytes");
    batch[at..at + 2].copy_from_slice(&[0xff, 0xfe]);
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    let parsed = RecordBatch::parse_exact(&batch).expect("crc valid");
    let refused = parsed.validate().expect_err("reader");
    assert!(refused.to_string().contains("not UTF-8"), "{refused}");
}

#[test]
fn a_producer_stamp_lands_in_the_header_under_the_crc() {
    let stamp = ProducerStamp {
        producer_id: 4_000_000_123,
        epoch: 7,
        base_sequence: 41,
    };
    let mut builder = RecordBatchBuilder::new().with_producer(stamp);
    for value in [b"a".as_slice(), b"b"] {
        builder
            .append(&NewRecord {
                timestamp: 1,
                key: None,
                value: Some(value),
                headers: &[],
            })
            .expect("fits");
    }
    let bytes = builder.build().expect("built");
    let parsed = RecordBatch::parse_exact(&bytes).expect("parses");
    parsed.validate().expect("the CRC covers the stamp");
    let header = parsed.header();
    assert_eq!(
        (
            header.producer_id,
            header.producer_epoch,
            header.base_sequence
        ),
        (4_000_000_123, 7, 41)
    );
    assert_eq!(header.last_offset_delta, 1);
}

fn two_record_batch(codec: Compression) -> Vec<u8> {
    two_records_in(RecordBatchBuilder::new().with_compression(codec))
}

/// Two records (the same each time) built by `builder`.
fn two_records_in(mut builder: RecordBatchBuilder) -> Vec<u8> {
    for value in [b"first".repeat(40), b"second".repeat(40)] {
        builder
            .append(&NewRecord {
                timestamp: 1_700_000_000_000,
                key: Some(b"k"),
                value: Some(&value),
                headers: &[],
            })
            .expect("fits");
    }
    builder.build().expect("built")
}

#[test]
fn stamp_producer_rewrites_the_stamp_and_the_crc_as_the_builder_would_write_them() {
    let stamp = ProducerStamp {
        producer_id: 9_000_000_001,
        epoch: 3,
        base_sequence: i32::MAX - 1,
    };
    for codec in [Compression::None, Compression::Zstd] {
        let mut batch = two_record_batch(codec);
        stamp_producer(&mut batch, stamp).expect("stamped");
        let parsed = RecordBatch::parse_exact(&batch).expect("the new CRC holds");
        let header = parsed.header();
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (9_000_000_001, 3, i32::MAX - 1)
        );
        assert_eq!(parsed.validate().expect("records intact").iter().count(), 2);
        // The same bytes as a batch built stamped.
        let built = two_records_in(
            RecordBatchBuilder::new()
                .with_compression(codec)
                .with_producer(stamp),
        );
        assert_eq!(batch, built, "{codec:?}");
        // Stamped again (a new epoch): still valid, the new stamp.
        let bumped = ProducerStamp {
            epoch: 4,
            base_sequence: 0,
            ..stamp
        };
        stamp_producer(&mut batch, bumped).expect("restamped");
        let header = *RecordBatch::parse_exact(&batch).expect("valid").header();
        assert_eq!((header.producer_epoch, header.base_sequence), (4, 0));
    }
}

#[test]
fn stamp_producer_refuses_anything_but_one_whole_undamaged_batch() {
    let stamp = ProducerStamp {
        producer_id: 1,
        epoch: 0,
        base_sequence: 0,
    };
    let good = two_record_batch(Compression::None);
    let refused = |mut bytes: Vec<u8>| {
        let before = bytes.clone();
        let e = stamp_producer(&mut bytes, stamp).expect_err("refused");
        assert_eq!(bytes, before, "unchanged on {e}");
        e
    };
    assert!(matches!(
        refused(good[..good.len() - 1].to_vec()),
        BatchError::Truncated { .. }
    ));
    assert!(matches!(
        refused(good[..BATCH_HEADER_BYTES - 1].to_vec()),
        BatchError::Truncated { .. }
    ));
    let mut longer = good.clone();
    longer.push(0);
    assert!(matches!(
        refused(longer),
        BatchError::TrailingBytes { extra: 1, .. }
    ));
    let mut damaged = good.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    assert!(matches!(
        refused(damaged),
        BatchError::ChecksumMismatch { .. }
    ));
    let mut damaged_stamp = good.clone();
    damaged_stamp[BASE_SEQUENCE_AT] ^= 0x10;
    assert!(matches!(
        refused(damaged_stamp),
        BatchError::ChecksumMismatch { .. }
    ));
    let mut v1 = good;
    v1[MAGIC_AT] = 1;
    assert!(matches!(
        refused(v1),
        BatchError::UnsupportedMagic { magic: 1 }
    ));
}

#[test]
fn sequences_wrap_from_i32_max_to_zero_as_kafka_counts_them() {
    assert_eq!(sequence_after(0, 4), 4);
    assert_eq!(sequence_after(0, 5), 5);
    assert_eq!(sequence_after(i32::MAX - 5, 5), i32::MAX);
    assert_eq!(sequence_after(i32::MAX, 1), 0);
    assert_eq!(sequence_after(i32::MAX - 1, 3), 1);
    assert_eq!(sequence_after(i32::MAX - 1, 5), 3);
    assert_eq!(sequence_after(i32::MAX, 0), i32::MAX);
    assert_eq!(sequence_after(i32::MAX, i32::MAX), i32::MAX - 1);
    assert_eq!(sequence_after(5, -3), 5, "a negative count counts as 0");
}
