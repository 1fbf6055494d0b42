//! Compressed batches: every codec round trips, reads what kafka-python
//! writes, and refuses garbage, cut streams and bombs.

use super::*;

/// What `tests/fixtures/kafka-python/*.bin` hold: kafka-python 3.0.12's
/// `DefaultRecordBatchBuilder` wrote them (see the README beside them).
fn fixture_records() -> Vec<OwnedRecord> {
    vec![
        OwnedRecord {
            timestamp: 1_700_000_000_000,
            key: Some(b"key-0".to_vec()),
            value: Some(b"hello, compressed world".to_vec()),
            headers: vec![(b"h1".to_vec(), Some(b"v1".to_vec()))],
        },
        OwnedRecord {
            timestamp: 1_700_000_000_005,
            key: None,
            value: Some(b"carteiro ".repeat(10_000)),
            headers: vec![],
        },
        OwnedRecord {
            timestamp: 1_700_000_000_003,
            key: Some(b"key-2".to_vec()),
            value: None,
            headers: vec![(b"h2".to_vec(), None)],
        },
    ]
}

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/kafka-python/",
            $name,
            ".bin"
        ))
        .as_slice()
    };
}

const CODECS: [Compression; 4] = [
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// Every record of a batch, owned, after checking it fully.
fn read_back(batch: &[u8]) -> Vec<OwnedRecord> {
    let parsed = RecordBatch::parse_exact(batch).expect("header and crc");
    let records = parsed.validate().expect("records agree with the header");
    records
        .iter()
        .map(|r| OwnedRecord::of(&r.expect("valid record")))
        .collect()
}

fn codec_of(batch: &[u8]) -> Compression {
    BatchHeader::parse(batch)
        .expect("header")
        .attributes
        .compression()
}

/// `batch` with its records section replaced by `section`, its codec set
/// to `codec` and its length and CRC made right, as a client could send it.
fn with_section(batch: &[u8], codec: Compression, section: &[u8]) -> Vec<u8> {
    let mut out = batch[..BATCH_HEADER_BYTES].to_vec();
    out.extend_from_slice(section);
    let batch_length = (out.len() - BATCH_LOG_OVERHEAD_BYTES) as i32;
    out[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&i16::from(codec.id()).to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Records whose values repeat, so every codec makes them smaller.
fn compressible(count: usize) -> Vec<OwnedRecord> {
    (0..count)
        .map(|i| OwnedRecord {
            timestamp: 1_700_000_000_000 + (i as i64 % 7),
            key: Some(format!("key-{i}").into_bytes()),
            value: Some(format!("value {i} ").repeat(50).into_bytes()),
            headers: vec![(b"trace".to_vec(), Some(b"abc".to_vec()))],
        })
        .collect()
}

#[test]
fn batches_kafka_python_wrote_with_every_codec_are_read() {
    let fixtures = [
        (fixture!("gzip"), Compression::Gzip),
        (fixture!("snappy-xerial"), Compression::Snappy),
        (fixture!("snappy-raw"), Compression::Snappy),
        (fixture!("lz4"), Compression::Lz4),
        (fixture!("zstd"), Compression::Zstd),
    ];
    for (bytes, codec) in fixtures {
        assert_eq!(codec_of(bytes), codec);
        assert_eq!(read_back(bytes), fixture_records(), "{}", codec.name());
        let parsed = RecordBatch::parse_exact(bytes).expect("valid");
        assert_eq!(parsed.last_offset(), 2);
        assert_eq!(parsed.header().max_timestamp, 1_700_000_000_005);
        let records = parsed.records().expect("decompresses");
        let section = records.decompressed().expect("a buffer of its own");
        let first = records.iter().next().expect("one").expect("valid");
        let key = first.key.expect("a key");
        // Slicing out of the decompressed buffer, as the gRPC edge does.
        assert_eq!(&section.slice_ref(key)[..], b"key-0");
    }
    // The framing each fixture was written with.
    assert!(fixture!("snappy-xerial")[BATCH_HEADER_BYTES..].starts_with(&XERIAL_SNAPPY_MAGIC));
    assert!(!fixture!("snappy-raw")[BATCH_HEADER_BYTES..].starts_with(&XERIAL_SNAPPY_MAGIC));
}

#[test]
fn compressible_records_are_compressed_with_the_codec_asked() {
    let records = compressible(40);
    let plain = encode(&records);
    for codec in CODECS {
        let batch = encode_with(&records, codec);
        assert_eq!(codec_of(&batch), codec);
        assert!(
            batch.len() < plain.len() / 4,
            "{}: {} bytes, {} uncompressed",
            codec.name(),
            batch.len(),
            plain.len()
        );
        // The header but attributes and CRC is the uncompressed batch's.
        assert_eq!(batch[..BATCH_LENGTH_AT], plain[..BATCH_LENGTH_AT]);
        assert_eq!(
            batch[LAST_OFFSET_DELTA_AT..BATCH_HEADER_BYTES],
            plain[LAST_OFFSET_DELTA_AT..BATCH_HEADER_BYTES]
        );
        assert_eq!(read_back(&batch), records);
        // The CRC covers the compressed bytes.
        let mut damaged = batch.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0x40;
        assert!(matches!(
            RecordBatch::parse_exact(&damaged),
            Err(BatchError::ChecksumMismatch { .. })
        ));
    }
}

#[test]
fn records_that_do_not_shrink_are_written_uncompressed() {
    // One record whose value is a few incompressible bytes: every codec's framing costs more.
    let records = vec![OwnedRecord {
        timestamp: 9,
        key: None,
        value: Some(vec![0x5a, 0x13, 0xc7, 0x02, 0x9e, 0x71]),
        headers: vec![],
    }];
    let plain = encode(&records);
    for codec in CODECS {
        let batch = encode_with(&records, codec);
        assert_eq!(codec_of(&batch), Compression::None, "{}", codec.name());
        assert_eq!(batch, plain);
    }
}

#[test]
fn the_builder_refuses_a_codec_kafka_does_not_define() {
    let mut builder = RecordBatchBuilder::new().with_compression(Compression::Unknown(6));
    builder
        .append(&NewRecord {
            timestamp: 1,
            value: Some(b"v"),
            ..NewRecord::default()
        })
        .expect("fits");
    assert_eq!(
        builder.build(),
        Err(BatchError::UnsupportedCodec {
            codec: 6,
            name: "unknown"
        })
    );
}

#[test]
fn output_past_the_limit_is_refused_by_every_codec() {
    let zeros = vec![0u8; 100_000];
    for codec in CODECS {
        let compressed = compression::compress(codec, &zeros).expect("compresses");
        let got = compression::decompress(codec, &compressed, zeros.len()).expect("at the limit");
        assert_eq!(got, zeros);
        let err = compression::decompress(codec, &compressed, zeros.len() - 1)
            .expect_err("one byte past the limit");
        assert_eq!(
            err,
            BatchError::DecompressedTooLarge {
                codec: codec.name(),
                compressed: compressed.len(),
                limit: zeros.len() - 1,
            }
        );
        let message = err.to_string();
        assert!(
            message.contains(codec.name()) && message.contains("99999 bytes"),
            "{message}"
        );
    }
    // A raw snappy block, as librdkafka writes.
    let raw = snap::raw::Encoder::new()
        .compress_vec(&zeros)
        .expect("compresses");
    assert!(compression::decompress(Compression::Snappy, &raw, zeros.len()).is_ok());
    assert!(matches!(
        compression::decompress(Compression::Snappy, &raw, zeros.len() - 1),
        Err(BatchError::DecompressedTooLarge { .. })
    ));
}

#[test]
fn a_snappy_block_declaring_4_gib_is_refused_before_anything_is_allocated() {
    // Length varint 0xffff_ffff, then one literal byte.
    let raw = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, b'x'];
    let batch = with_section(&one_record_batch(), Compression::Snappy, &raw);
    let parsed = RecordBatch::parse_exact(&batch).expect("crc valid");
    assert_eq!(
        parsed.validate().expect_err("a bomb"),
        BatchError::DecompressedTooLarge {
            codec: "snappy",
            compressed: raw.len(),
            limit: DECOMPRESSED_BYTES_MAX,
        }
    );
    // The same inside xerial framing.
    let mut xerial = compression::compress(Compression::Snappy, b"").expect("header only");
    xerial.extend_from_slice(&(raw.len() as i32).to_be_bytes());
    xerial.extend_from_slice(&raw);
    let batch = with_section(&one_record_batch(), Compression::Snappy, &xerial);
    let parsed = RecordBatch::parse_exact(&batch).expect("crc valid");
    assert!(matches!(
        parsed.validate(),
        Err(BatchError::DecompressedTooLarge {
            limit: DECOMPRESSED_BYTES_MAX,
            ..
        })
    ));
}

#[test]
fn a_gzip_bomb_is_refused_at_the_decompression_limit() {
    // 65 gzip members of 1 MiB of zeros each (a gzip stream may hold
    // several): about 65 KiB that would decompress to 65 MiB.
    let member = compression::compress(Compression::Gzip, &vec![0u8; 1 << 20]).expect("compresses");
    let bomb = member.repeat(DECOMPRESSED_BYTES_MAX / (1 << 20) + 1);
    assert!(bomb.len() < 128 * 1024, "{} bytes", bomb.len());
    let batch = with_section(&one_record_batch(), Compression::Gzip, &bomb);
    let parsed = RecordBatch::parse_exact(&batch).expect("crc valid");
    let err = parsed.validate().expect_err("a bomb");
    assert_eq!(
        err,
        BatchError::DecompressedTooLarge {
            codec: "gzip",
            compressed: bomb.len(),
            limit: DECOMPRESSED_BYTES_MAX,
        }
    );
    assert!(err.to_string().contains("67108864 bytes"), "{err}");
    // One member fewer is under the limit: read, then refused for its records.
    let under = member.repeat(DECOMPRESSED_BYTES_MAX / (1 << 20));
    let batch = with_section(&one_record_batch(), Compression::Gzip, &under);
    let parsed = RecordBatch::parse_exact(&batch).expect("crc valid");
    assert!(matches!(
        parsed.validate(),
        Err(BatchError::MalformedRecord { .. } | BatchError::TrailingBytes { .. })
    ));
}

#[test]
fn a_zstd_frame_asking_for_a_window_past_the_limit_is_refused() {
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).expect("encoder");
    encoder.window_log(ZSTD_WINDOW_LOG_MAX + 1).expect("window");
    encoder.include_contentsize(false).expect("no size");
    std::io::Write::write_all(&mut encoder, b"tiny").expect("written");
    let frame = encoder.finish().expect("frame");
    let err = compression::decompress(Compression::Zstd, &frame, DECOMPRESSED_BYTES_MAX)
        .expect_err("window too large");
    assert!(
        matches!(err, BatchError::DecompressionFailed { codec: "zstd", .. }),
        "{err}"
    );
}

#[test]
fn garbage_in_place_of_a_compressed_section_is_refused() {
    let garbage = b"these bytes were never compressed by anything at all";
    for codec in CODECS {
        let batch = with_section(&one_record_batch(), codec, garbage);
        let parsed = RecordBatch::parse_exact(&batch).expect("crc valid");
        let err = parsed.validate().expect_err("garbage");
        if codec != Compression::Snappy {
            assert!(
                matches!(err, BatchError::DecompressionFailed { codec: name, compressed, .. }
                    if name == codec.name() && compressed == garbage.len()),
                "{}: {err}",
                codec.name()
            );
        }
    }
    // Garbage after a good xerial header.
    let mut xerial = compression::compress(Compression::Snappy, b"").expect("header only");
    xerial.extend_from_slice(garbage);
    let batch = with_section(&one_record_batch(), Compression::Snappy, &xerial);
    let parsed = RecordBatch::parse_exact(&batch).expect("crc valid");
    assert!(matches!(
        parsed.validate(),
        Err(BatchError::DecompressionFailed {
            codec: "snappy",
            ..
        })
    ));
}

#[test]
fn compressed_records_that_disagree_with_the_header_are_refused() {
    for codec in CODECS {
        let mut batch = encode_with(&compressible(2), codec);
        // One record more announced than the section holds.
        batch[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&3i32.to_be_bytes());
        batch[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].copy_from_slice(&2i32.to_be_bytes());
        let section = batch[BATCH_HEADER_BYTES..].to_vec();
        let batch = with_section(&batch, codec, &section);
        let parsed = RecordBatch::parse_exact(&batch).expect("crc valid");
        let err = parsed.validate().expect_err("two records, not three");
        assert!(
            matches!(err, BatchError::MalformedRecord { index: 2, .. }),
            "{}: {err}",
            codec.name()
        );
        // And a max_timestamp the records do not have.
        let mut batch = encode_with(&compressible(2), codec);
        batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&7i64.to_be_bytes());
        let section = batch[BATCH_HEADER_BYTES..].to_vec();
        let batch = with_section(&batch, codec, &section);
        let parsed = RecordBatch::parse_exact(&batch).expect("crc valid");
        assert!(matches!(
            parsed.validate(),
            Err(BatchError::HeaderMismatch {
                field: "max_timestamp",
                ..
            })
        ));
    }
}

#[test]
fn a_compressed_section_cut_short_is_refused() {
    let records = compressible(40);
    for codec in CODECS {
        let batch = encode_with(&records, codec);
        let section = &batch[BATCH_HEADER_BYTES..];
        for cut in 1..section.len().min(64) {
            let cut_batch = with_section(&batch, codec, &section[..section.len() - cut]);
            let parsed = RecordBatch::parse_exact(&cut_batch).expect("crc valid");
            assert!(
                parsed.validate().is_err(),
                "{} cut by {cut} bytes was accepted",
                codec.name()
            );
        }
    }
}

#[test]
fn xerial_streams_written_one_after_another_are_read_as_one() {
    let section = {
        let batch = encode(&compressible(200));
        batch[BATCH_HEADER_BYTES..].to_vec()
    };
    assert!(
        section.len() > 2 * XERIAL_SNAPPY_BLOCK_BYTES,
        "several blocks"
    );
    let (a, b) = section.split_at(section.len() / 3);
    let mut both = compression::compress(Compression::Snappy, a).expect("compresses");
    both.extend(compression::compress(Compression::Snappy, b).expect("compresses"));
    let got = compression::decompress(Compression::Snappy, &both, DECOMPRESSED_BYTES_MAX)
        .expect("decompresses");
    assert_eq!(got, section);
}

fn codec_strategy() -> impl Strategy<Value = Compression> {
    prop::sample::select(CODECS.to_vec())
}

proptest! {
    #[test]
    fn every_codec_round_trips(
        records in proptest::collection::vec(record_strategy(), 1..20),
        repeat in 1usize..40,
        codec in codec_strategy(),
        base in 0i64..i64::MAX / 2,
    ) {
        // Values repeated `repeat` times: from incompressible to very compressible.
        let records: Vec<OwnedRecord> = records
            .into_iter()
            .map(|r| OwnedRecord { value: r.value.map(|v| v.repeat(repeat)), ..r })
            .collect();
        let plain = encode(&records);
        let mut batch = encode_with(&records, codec);
        let got = codec_of(&batch);
        prop_assert!(got == codec || (got == Compression::None && batch == plain));
        prop_assert!(batch.len() <= plain.len());
        set_base_offset(&mut batch, base);
        prop_assert_eq!(read_back(&batch), records.clone());
        let parsed = RecordBatch::parse_exact(&batch).expect("valid");
        let section = parsed.records().expect("decompresses");
        prop_assert_eq!(section.decompressed().is_some(), got != Compression::None);
        for (i, record) in section.iter().enumerate() {
            prop_assert_eq!(record.expect("valid").offset, base + i as i64);
        }
    }

    #[test]
    fn corrupted_compressed_batches_never_panic(
        records in proptest::collection::vec(record_strategy(), 1..6),
        codec in codec_strategy(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in 0usize..16,
    ) {
        let records: Vec<OwnedRecord> = records
            .into_iter()
            .map(|r| OwnedRecord { value: r.value.map(|v| v.repeat(8)), ..r })
            .collect();
        let batch = encode_with(&records, codec);
        let mut section = batch[BATCH_HEADER_BYTES..].to_vec();
        section.truncate(section.len().saturating_sub(cut));
        if !section.is_empty() {
            for (at, byte) in &flips {
                let i = at.index(section.len());
                section[i] ^= byte | 1;
            }
        }
        // The CRC made right, so the decompressor itself meets the damage.
        exercise(&with_section(&batch, codec_of(&batch), &section));
    }
}
