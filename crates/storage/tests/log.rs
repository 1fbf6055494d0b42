//! The partition log through its public API: append, read, roll, indexes,
//! timestamps, retention, waiting, and reopening.

mod common;

use std::sync::Arc;
use std::time::Duration;

use carteiro_storage::{
    AppendError, FlushPolicy, Log, LogConfig, LogOptions, ManualClock, ReadError, SimulatedMedium,
};
use common::*;

fn open_sim(medium: &SimulatedMedium, config: LogConfig) -> Log {
    Log::open("/data/t-0", config, &sim_options(medium)).expect("opens")
}

#[test]
fn appended_batches_read_back_byte_for_byte_with_assigned_offsets() {
    let medium = SimulatedMedium::new();
    let log = open_sim(&medium, small_config(64 * 1024));
    let mut written = Vec::new();
    for i in 0..20 {
        let b = batch(&format!("b{i}"), 3, 1000 + i);
        let info = log.append(&b).expect("append");
        assert_eq!(info.base_offset, i as u64 * 3);
        assert_eq!(info.last_offset, i as u64 * 3 + 2);
        assert!(
            info.durable,
            "policy always acknowledges only synced appends"
        );
        written.push(b);
    }
    assert_eq!(log.end_offset(), 60);
    assert_eq!(log.durable_offset(), 60);
    assert_eq!(all_values(&log), values_of(&written));
    let offsets: Vec<u64> = all_records(&log).iter().map(|r| r.0).collect();
    assert_eq!(offsets, (0..60).collect::<Vec<_>>());

    // A read from inside a batch starts at that batch; the bytes are the
    // producer's batch with only the base offset and leader epoch changed.
    let read = log.read(31, 1).expect("read");
    assert_eq!(read.first_offset, 30);
    assert_eq!(read.next_offset, 33);
    assert_eq!(&read.batches[..8], &30i64.to_be_bytes());
    assert_eq!(&read.batches[8..12], &written[10][8..12]);
    assert_eq!(&read.batches[12..16], &0i32.to_be_bytes());
    assert_eq!(&read.batches[16..], &written[10][16..]);
}

#[test]
fn reads_respect_max_bytes_but_always_return_a_batch() {
    let medium = SimulatedMedium::new();
    let log = open_sim(&medium, small_config(64 * 1024));
    let b = batch("x", 5, 1);
    for _ in 0..10 {
        log.append(&b).expect("append");
    }
    let one = log.read(0, 1).expect("read");
    assert_eq!(one.batches.len(), b.len());
    let three = log.read(0, b.len() * 3 + b.len() / 2).expect("read");
    assert_eq!(three.batches.len(), b.len() * 3);
    assert_eq!(three.next_offset, 15);
}

#[test]
fn reading_at_the_end_is_empty_and_past_it_is_out_of_range() {
    let medium = SimulatedMedium::new();
    let log = open_sim(&medium, small_config(64 * 1024));
    log.append(&batch("a", 2, 1)).expect("append");
    let at_end = log.read(2, 1024).expect("read at end");
    assert!(at_end.batches.is_empty());
    assert_eq!(at_end.next_offset, 2);
    assert_eq!(at_end.log_end_offset, 2);
    assert_eq!(
        log.read(3, 1024),
        Err(ReadError::OffsetOutOfRange {
            requested: 3,
            start: 0,
            end: 2
        })
    );
}

#[test]
fn segments_roll_at_segment_bytes_and_reads_cross_them() {
    let medium = SimulatedMedium::new();
    let log = open_sim(&medium, small_config(1024));
    let mut written = Vec::new();
    for i in 0..60 {
        let b = batch(&format!("r{i}"), 2, i);
        log.append(&b).expect("append");
        written.push(b);
    }
    let bases = log.segment_base_offsets();
    assert!(bases.len() > 5, "2 KiB segments must roll: {bases:?}");
    assert_eq!(all_values(&log), values_of(&written));
    // Every offset, including each segment's first and the one before it.
    for offset in 0..log.end_offset() {
        let read = log.read(offset, 1).expect("read");
        assert!(
            read.first_offset <= offset && offset < read.next_offset,
            "offset {offset}: {read:?}"
        );
    }
    for &base in &bases[1..] {
        assert_eq!(log.read(base, 1).expect("read").first_offset, base);
        assert_eq!(log.read(base - 1, 1).expect("read").next_offset, base);
    }
}

#[test]
fn segments_roll_at_segment_ms() {
    let medium = SimulatedMedium::new();
    let clock = ManualClock::new(1_000_000);
    let config = LogConfig {
        segment_ms: 60_000,
        ..small_config(1 << 20)
    };
    let options = LogOptions {
        clock: Arc::new(clock.clone()),
        ..sim_options(&medium)
    };
    let log = Log::open("/d/t-0", config, &options).expect("opens");
    log.append(&batch("a", 1, 1)).expect("append");
    clock.advance(59_999);
    log.append(&batch("b", 1, 1)).expect("append");
    assert_eq!(log.segment_base_offsets(), vec![0]);
    clock.advance(1);
    log.append(&batch("c", 1, 1)).expect("append");
    assert_eq!(log.segment_base_offsets(), vec![0, 2]);
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let medium = SimulatedMedium::new();
    let log = open_sim(
        &medium,
        LogConfig {
            index_interval_bytes: 0,
            ..small_config(2048)
        },
    );
    // Timestamps rise overall but not strictly within and across batches.
    let mut model = Vec::new();
    for i in 0..80i64 {
        let ts = [100 + i * 10, 95 + i * 10, 105 + i * 10];
        let values: Vec<String> = (0..3).map(|j| format!("{i}-{j}")).collect();
        let records: Vec<(&[u8], i64)> = values.iter().map(|v| v.as_bytes()).zip(ts).collect();
        log.append(&batch_of(&records)).expect("append");
        model.extend(ts);
    }
    assert!(log.segment_base_offsets().len() > 2);
    for target in (80..=910).step_by(7) {
        let expected = model.iter().position(|&ts| ts >= target).map(|p| p as u64);
        assert_eq!(
            log.offset_for_timestamp(target).expect("lookup"),
            expected,
            "target {target}"
        );
    }
    assert_eq!(log.offset_for_timestamp(i64::MAX).expect("lookup"), None);
}

#[test]
fn retention_by_time_deletes_old_closed_segments_and_moves_the_start() {
    let medium = SimulatedMedium::new();
    let clock = ManualClock::new(10_000_000);
    let config = LogConfig {
        retention_ms: Some(60_000),
        ..small_config(2048)
    };
    let options = LogOptions {
        clock: Arc::new(clock.clone()),
        ..sim_options(&medium)
    };
    let log = Log::open("/d/t-0", config, &options).expect("opens");
    for i in 0..30 {
        log.append(&batch("old", 4, 10_000_000 + i))
            .expect("append");
    }
    clock.advance(120_000);
    for i in 0..5 {
        log.append(&batch("new", 4, 10_120_000 + i))
            .expect("append");
    }
    let before = log.segment_base_offsets();
    let report = log.apply_retention();
    assert!(!report.deleted_segments.is_empty());
    let after = log.segment_base_offsets();
    assert_eq!(after.first().copied(), Some(report.log_start_offset));
    assert!(after.len() < before.len());
    // Only segments whose newest record is older than retention go.
    assert!(
        all_values(&log)
            .iter()
            .all(|v| v.starts_with(b"old") || v.starts_with(b"new"))
    );
    assert!(all_values(&log).iter().any(|v| v.starts_with(b"new")));
    let start = log.start_offset();
    assert!(start > 0);
    assert_eq!(
        log.read(0, 100),
        Err(ReadError::OffsetOutOfRange {
            requested: 0,
            start,
            end: log.end_offset()
        })
    );
}

#[test]
fn retention_by_size_keeps_the_log_under_retention_bytes() {
    let medium = SimulatedMedium::new();
    let config = LogConfig {
        retention_bytes: Some(8 * 1024),
        ..small_config(2048)
    };
    let log = open_sim(&medium, config);
    for i in 0..200 {
        log.append(&batch(&format!("s{i}"), 2, i)).expect("append");
    }
    let report = log.apply_retention();
    assert!(!report.deleted_segments.is_empty());
    let stats = log.stats();
    assert!(stats.size_bytes <= 8 * 1024 + 2048, "{stats:?}");
    assert_eq!(stats.start_offset, report.log_start_offset);
    // What remains still reads back in order to the end.
    let records = all_records(&log);
    assert_eq!(records.first().map(|r| r.0), Some(stats.start_offset));
    assert_eq!(records.last().map(|r| r.0), Some(399));
}

#[test]
fn a_reader_outlives_the_deletion_of_its_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(1_000_000);
    let config = LogConfig {
        retention_ms: Some(1_000),
        ..small_config(1024)
    };
    let log = Log::open(
        dir.path(),
        config,
        &os_options_with_clock(Arc::new(clock.clone())),
    )
    .expect("opens");
    for i in 0..40 {
        log.append(&batch(&format!("v{i}"), 2, 1_000_000))
            .expect("append");
    }
    let held = log.read(0, 1 << 20).expect("read").batches;
    let copy = held.to_vec();
    clock.advance(10_000);
    let report = log.apply_retention();
    assert!(report.deleted_segments.contains(&0));
    assert!(
        !segment_path(dir.path(), 0).exists(),
        "segment file deleted"
    );
    assert_eq!(
        &held[..],
        &copy[..],
        "the view still reads the deleted segment's bytes"
    );
    let mut rest = &held[..];
    while !rest.is_empty() {
        let (_, tail) = carteiro::record::RecordBatch::parse(rest).expect("still valid");
        rest = tail;
    }
}

#[test]
fn clean_close_and_reopen_keeps_everything_and_continues_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut written = Vec::new();
    {
        let log = Log::open(dir.path(), small_config(4096), &LogOptions::default()).expect("opens");
        for i in 0..50 {
            let b = batch(&format!("c{i}"), 2, i);
            log.append(&b).expect("append");
            written.push(b);
        }
        log.close().expect("close");
        assert!(matches!(
            log.append(&written[0]),
            Err(AppendError::Closed { .. })
        ));
    }
    let log = Log::open(dir.path(), small_config(4096), &LogOptions::default()).expect("reopens");
    assert!(log.recovery_report().clean_shutdown);
    assert!(
        log.recovery_report().rebuilt_indexes.is_empty(),
        "{:?}",
        log.recovery_report()
    );
    assert_eq!(all_values(&log), values_of(&written));
    let info = log
        .append(&batch("after", 1, 99))
        .expect("append after reopen");
    assert_eq!(info.base_offset, 100);
    assert_eq!(log.offset_for_timestamp(49).expect("lookup"), Some(98));
}

#[test]
fn invalid_or_oversized_batches_are_rejected_and_change_nothing() {
    let medium = SimulatedMedium::new();
    let config = LogConfig {
        max_batch_bytes: 512,
        ..small_config(64 * 1024)
    };
    let log = open_sim(&medium, config);
    log.append(&batch("ok", 2, 1)).expect("append");
    let before = log.read(0, 1 << 20).expect("read").batches.to_vec();

    let big = batch_of(&[(&[7u8; 600][..], 1)]);
    match log.append(&big) {
        Err(AppendError::BatchTooLarge { bytes, limit: 512 }) => assert_eq!(bytes, big.len()),
        other => panic!("expected BatchTooLarge, got {other:?}"),
    }
    let mut corrupt = batch("bad", 2, 1);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert!(matches!(
        log.append(&corrupt),
        Err(AppendError::InvalidBatch(_))
    ));
    assert!(matches!(
        log.append(b"not a batch"),
        Err(AppendError::InvalidBatch(_))
    ));

    assert_eq!(log.end_offset(), 2);
    assert_eq!(log.read(0, 1 << 20).expect("read").batches.to_vec(), before);
}

#[test]
fn waiters_wake_on_append_and_time_out_without_one() {
    let medium = SimulatedMedium::new();
    let log = Arc::new(open_sim(&medium, small_config(64 * 1024)));
    assert!(
        !log.wait_past(0, false, Duration::from_millis(20)),
        "nothing appended: times out"
    );
    let waiter = {
        let log = log.clone();
        std::thread::spawn(move || log.wait_past(0, true, Duration::from_secs(30)))
    };
    log.append(&batch("w", 1, 1)).expect("append");
    assert!(
        waiter.join().expect("waiter thread"),
        "woken by the append well before the timeout"
    );
}

#[test]
fn concurrent_appends_share_syncs_and_get_distinct_contiguous_offsets() {
    let medium = SimulatedMedium::new();
    let log = Arc::new(open_sim(&medium, small_config(1 << 20)));
    let syncs_before = medium.syncs();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..100)
                    .map(|i| {
                        log.append(&batch(&format!("t{t}-{i}"), 2, i))
                            .expect("append")
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut infos: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect();
    infos.sort_by_key(|i| i.base_offset);
    for (i, info) in infos.iter().enumerate() {
        assert_eq!(info.base_offset, i as u64 * 2);
        assert!(info.durable);
    }
    assert_eq!(log.durable_offset(), 800);
    let syncs = medium.syncs() - syncs_before;
    assert!(syncs <= 400, "at most one sync per append: {syncs}");
    assert_eq!(all_values(&log).len(), 800);
    // Each thread's own records stay in its order.
    let values = all_values(&log);
    for t in 0..4 {
        let mine: Vec<_> = values
            .iter()
            .filter(|v| v.starts_with(format!("t{t}-").as_bytes()))
            .collect();
        assert_eq!(mine.len(), 200);
    }
}

#[test]
fn waiting_appends_share_one_sync() {
    let medium = SimulatedMedium::new();
    let log = Arc::new(open_sim(&medium, small_config(1 << 20)));
    let ends: Vec<u64> = (0..8)
        .map(|i| {
            log.append_unsynced(&batch("g", 1, i))
                .expect("append")
                .last_offset
                + 1
        })
        .collect();
    let syncs_before = medium.syncs();
    let waiters: Vec<_> = ends
        .into_iter()
        .map(|end| {
            let log = log.clone();
            std::thread::spawn(move || log.sync_to(end))
        })
        .collect();
    for waiter in waiters {
        waiter.join().expect("thread").expect("sync");
    }
    assert_eq!(
        medium.syncs() - syncs_before,
        1,
        "the first sync covers every waiter"
    );
    assert_eq!(log.durable_offset(), 8);
}

#[test]
fn interval_and_os_policies_sync_later() {
    let medium = SimulatedMedium::new();
    let clock = ManualClock::new(0);
    let options = LogOptions {
        clock: Arc::new(clock.clone()),
        ..sim_options(&medium)
    };
    let log = Log::open(
        "/d/i-0",
        with_flush(small_config(1 << 20), FlushPolicy::IntervalMs(100)),
        &options,
    )
    .expect("opens");
    let info = log.append(&batch("i", 1, 0)).expect("append");
    assert!(!info.durable);
    assert_eq!(log.durable_offset(), 0);
    clock.advance(100);
    log.flush_if_due().expect("flush");
    assert_eq!(log.durable_offset(), 1);

    let os = Log::open(
        "/d/o-0",
        with_flush(small_config(1 << 20), FlushPolicy::Os),
        &options,
    )
    .expect("opens");
    os.append(&batch("o", 1, 0)).expect("append");
    clock.advance(1_000_000);
    os.flush_if_due().expect("no-op");
    assert_eq!(os.durable_offset(), 0);
    assert!(
        os.read_durable(0, 100).expect("read").batches.is_empty(),
        "unsynced records are not durable reads"
    );
    os.flush().expect("flush");
    assert_eq!(os.durable_offset(), 1);
    assert!(!os.read_durable(0, 100).expect("read").batches.is_empty());
}

#[test]
fn invalid_config_is_rejected_with_the_field_and_limit() {
    let medium = SimulatedMedium::new();
    let config = LogConfig {
        segment_bytes: 10,
        ..LogConfig::default()
    };
    let err = Log::open("/d/x-0", config, &sim_options(&medium)).expect_err("too small");
    let message = err.to_string();
    assert!(
        message.contains("segment_bytes") && message.contains("10") && message.contains("1024"),
        "{message}"
    );
}

#[test]
fn the_flush_policy_alone_decides_what_an_acknowledgement_waits_for_and_what_readers_see() {
    use carteiro_storage::{AckWait, Acks, CheckedBatch};
    for flush in [
        FlushPolicy::Always,
        FlushPolicy::IntervalMs(1000),
        FlushPolicy::Os,
    ] {
        let medium = SimulatedMedium::new();
        let log = Log::open(
            "/data/t-0",
            with_flush(small_config(64 * 1024), flush),
            &sim_options(&medium),
        )
        .expect("opens");
        let checked = || CheckedBatch::new(batch("a", 3, 1).into()).expect("valid");
        // Appended only: nothing waits; an `always` log syncs soon, for readers.
        let info = log
            .append_checked(&checked(), Acks::Appended)
            .expect("append");
        assert!(!info.durable);
        let expected = match flush {
            FlushPolicy::Always => AckWait::NowSyncSoon { end: 3 },
            _ => AckWait::Now,
        };
        assert_eq!(log.ack_wait(&info, Acks::Appended), expected, "{flush:?}");
        // Readers see unsynced records only when the policy is not `always`.
        let visible = log.read_visible(0, 1 << 20).expect("read");
        assert_eq!(
            visible.batches.is_empty(),
            flush == FlushPolicy::Always,
            "{flush:?}"
        );
        assert_eq!(
            log.high_watermark(),
            if flush == FlushPolicy::Always { 0 } else { 3 }
        );
        // Durable: `always` syncs inside the append; `interval` waits for its flush.
        let info = log
            .append_checked(&checked(), Acks::Durable)
            .expect("append");
        let expected = match flush {
            FlushPolicy::Always => {
                assert!(info.durable);
                AckWait::Now
            }
            FlushPolicy::IntervalMs(_) => AckWait::Flush { end: 6 },
            FlushPolicy::Os => AckWait::Now,
        };
        assert_eq!(log.ack_wait(&info, Acks::Durable), expected, "{flush:?}");
        assert_eq!(log.high_watermark(), 6, "{flush:?}");
    }
}

#[test]
fn timings_count_every_append_and_every_sync_with_the_batches_it_covered() {
    let medium = SimulatedMedium::new();
    let log = open_sim(&medium, small_config(1 << 20));
    // Five appends synced one by one, then three that one flush covers.
    for i in 0..5 {
        log.append(&batch(&format!("d{i}"), 2, 1)).expect("append");
    }
    for i in 0..3 {
        log.append_unsynced(&batch(&format!("u{i}"), 2, 1))
            .expect("append");
    }
    log.flush().expect("flush");
    // Nothing new: no sync, nothing observed.
    log.flush().expect("flush");
    let t = log.timings().snapshot();
    assert_eq!(t.append.count(), 8);
    assert!(t.append.sum > 0);
    assert_eq!(t.sync.count(), 6, "{t:?}");
    assert_eq!(t.sync_batches.count(), 6);
    assert_eq!(t.sync_batches.sum, 8, "every batch covered by one sync");
    // Five syncs of 1 batch (the first bucket), one of 3 (at most 4).
    assert_eq!(t.sync_batches.buckets[0], 5);
    assert_eq!(t.sync_batches.buckets[2], 1);
    // Added over partitions.
    let mut total = carteiro_storage::TimingsSnapshot::default();
    total.add(&t);
    total.add(&t);
    assert_eq!(total.sync.count(), 12);
}
