//! Idempotent producers through the log's public API: a
//! batch sent again is answered with the original's offsets and stored
//! once, across clean and unclean reopens, with damaged snapshots or one
//! past a repaired log's end, after retention; refused batches write
//! nothing; idle producers expire; a partition holds at most
//! `PRODUCERS_PER_PARTITION_MAX`. Producer ids and the store: producer_ids.rs.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use carteiro_storage::{
    AppendError, AppendInfo, FlushPolicy, Log, LogConfig, LogOptions, ManualClock, Medium,
    PRODUCER_BATCHES_KEPT, PRODUCERS_PER_PARTITION_MAX, SimulatedMedium,
};
use common::*;

const DIR: &str = "/data/t-0";

fn options(medium: &SimulatedMedium, clock: &ManualClock) -> LogOptions {
    LogOptions {
        clock: Arc::new(clock.clone()),
        ..sim_options(medium)
    }
}

fn open(medium: &SimulatedMedium, clock: &ManualClock, config: &LogConfig) -> Log {
    Log::open(DIR, config.clone(), &options(medium, clock)).expect("opens")
}

/// The producer snapshot files of the log, by name.
fn snapshot_files(medium: &SimulatedMedium) -> Vec<String> {
    medium
        .list_dir(Path::new(DIR))
        .expect("list")
        .into_iter()
        .filter(|n| n.ends_with(".snapshot"))
        .collect()
}

/// The offsets of an answer, and whether it was a duplicate.
fn placed(info: &AppendInfo) -> (u64, u64, bool) {
    (info.base_offset, info.last_offset, info.duplicate)
}

#[test]
fn a_batch_sent_again_is_answered_with_the_original_offsets_and_stored_once() {
    let medium = SimulatedMedium::new();
    let clock = ManualClock::new(1_000);
    let config = small_config(64 * 1024);
    let log = open(&medium, &clock, &config);
    let first = producer_batch(1, 0, 0, "a", 3, 5);
    let plain = batch("plain", 1, 5);
    let second = producer_batch(1, 0, 3, "b", 2, 6);
    let a = log.append(&first).expect("appended");
    assert_eq!(
        (placed(&a), a.durable, a.append_time_ms),
        ((0, 2, false), true, 1_000)
    );
    clock.advance(10);
    log.append(&plain).expect("appended");
    clock.advance(10);
    let b = log.append(&second).expect("appended");
    assert_eq!(placed(&b), (4, 5, false));
    clock.advance(10);
    // Sent again: the original's offsets and time, nothing written.
    let again = log.append(&first).expect("a duplicate");
    assert_eq!(
        again,
        AppendInfo {
            duplicate: true,
            ..a
        }
    );
    assert_eq!(
        log.append(&second).expect("a duplicate"),
        AppendInfo {
            duplicate: true,
            ..b
        }
    );
    assert_eq!(log.end_offset(), 6);
    // A batch without a producer id is stored each time it is sent.
    let c = log.append(&plain).expect("appended");
    assert_eq!(placed(&c), (6, 6, false));
    let expected = values_of(&[first.clone(), plain.clone(), second.clone(), plain.clone()]);
    assert_eq!(all_values(&log), expected);
    assert_eq!(log.producer_count(), 1);

    // A clean reopen starts from the snapshot written at close.
    log.close().expect("close");
    drop(log);
    let log = open(&medium, &clock, &config);
    assert_eq!(log.recovery_report().producer_snapshot, Some(7));
    assert_eq!(log.recovery_report().producer_batches_scanned, 0);
    assert_eq!(
        log.append(&first).expect("a duplicate"),
        AppendInfo {
            duplicate: true,
            ..a
        }
    );
    assert_eq!(
        log.append(&second).expect("a duplicate"),
        AppendInfo {
            duplicate: true,
            ..b
        }
    );
    let third = producer_batch(1, 0, 5, "c", 1, 77);
    assert_eq!(
        placed(&log.append(&third).expect("appended")),
        (7, 7, false)
    );

    // An unclean shutdown: the batch after the snapshot is found by a scan.
    drop(log);
    let log = open(&medium, &clock, &config);
    let report = log.recovery_report();
    assert!(!report.clean_shutdown);
    assert_eq!(report.producer_snapshot, Some(7));
    assert_eq!(report.producer_batches_scanned, 1);
    let t = log.append(&third).expect("a duplicate");
    assert_eq!(placed(&t), (7, 7, true));
    // Its append time is not in the batch: its largest timestamp stands for it.
    assert_eq!(t.append_time_ms, 77);
    assert_eq!(
        log.append(&first).expect("a duplicate"),
        AppendInfo {
            duplicate: true,
            ..a
        }
    );
    let mut expected = expected;
    expected.extend(values_of(&[third]));
    assert_eq!(all_values(&log), expected);
}

#[test]
fn refused_batches_write_nothing_and_name_the_producer() {
    let medium = SimulatedMedium::new();
    let clock = ManualClock::new(0);
    let config = small_config(64 * 1024);
    let log = open(&medium, &clock, &config);
    let first = producer_batch(5, 2, 0, "a", 2, 1);
    log.append(&first).expect("appended");
    let end = log.end_offset();
    let refuse = |b: Vec<u8>| log.append(&b).expect_err("refused");

    let err = refuse(producer_batch(5, 1, 2, "old", 1, 1));
    assert!(
        matches!(
            err,
            AppendError::ProducerFenced {
                producer_id: 5,
                epoch: 1,
                current: 2
            }
        ),
        "{err}"
    );
    let err = refuse(producer_batch(5, 2, 7, "gap", 1, 1));
    assert!(
        matches!(
            err,
            AppendError::OutOfOrderSequence {
                producer_id: 5,
                expected: 2,
                received: 7
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("expected sequence 2"), "{err}");
    let err = refuse(producer_batch(5, 3, 2, "new epoch", 1, 1));
    assert!(
        matches!(
            err,
            AppendError::OutOfOrderSequence {
                producer_id: 5,
                expected: 0,
                received: 2
            }
        ),
        "{err}"
    );
    let err = refuse(producer_batch(6, 0, 3, "stranger", 1, 1));
    assert!(
        matches!(
            err,
            AppendError::UnknownProducerId {
                producer_id: 6,
                sequence: 3
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("unknown producer 6"), "{err}");
    assert_eq!(log.end_offset(), end, "nothing written");
    assert_eq!(all_values(&log), values_of(std::slice::from_ref(&first)));
    // The right next batch still goes in, and a new epoch at 0 fences the old.
    let next = producer_batch(5, 2, 2, "next", 1, 1);
    assert_eq!(placed(&log.append(&next).expect("appended")), (2, 2, false));
    let epoch = producer_batch(5, 3, 0, "epoch 3", 1, 1);
    assert_eq!(
        placed(&log.append(&epoch).expect("appended")),
        (3, 3, false)
    );
    assert!(matches!(
        log.append(&next),
        Err(AppendError::ProducerFenced { current: 3, .. })
    ));
    // A closed log answers no one, not even a duplicate.
    log.close().expect("close");
    assert!(matches!(
        log.append(&epoch),
        Err(AppendError::Closed { .. })
    ));
}

/// Appends 30 batches of three producers (and batches without one)
/// through small segments; returns each producer's batches with where
/// they landed.
fn three_producers(log: &Log) -> HashMap<i64, Vec<(Vec<u8>, AppendInfo)>> {
    let mut sent: HashMap<i64, Vec<(Vec<u8>, AppendInfo)>> = HashMap::new();
    let mut sequences = [0i32; 3];
    for i in 0..30 {
        let id = (i % 3) as i64;
        let count = 1 + i % 2;
        let b = producer_batch(
            id,
            0,
            sequences[id as usize],
            &format!("p{id}-{i}"),
            count,
            100 + i as i64,
        );
        sequences[id as usize] += count as i32;
        let info = log.append(&b).expect("appended");
        sent.entry(id).or_default().push((b, info));
        if i % 7 == 0 {
            log.append(&batch("plain", 2, 1)).expect("appended");
        }
    }
    sent
}

/// Each producer's last batches sent again: the answers, checking that
/// nothing was written.
fn answers(log: &Log, sent: &HashMap<i64, Vec<(Vec<u8>, AppendInfo)>>) -> Vec<(u64, u64, bool)> {
    let end = log.end_offset();
    let mut out = Vec::new();
    for id in 0..3 {
        let batches = &sent[&id];
        for (b, _) in &batches[batches.len() - PRODUCER_BATCHES_KEPT..] {
            out.push(placed(&log.append(b).expect("a duplicate")));
        }
    }
    assert_eq!(log.end_offset(), end, "nothing written again");
    out
}

#[test]
fn a_damaged_snapshot_is_ignored_and_the_state_rebuilt_from_the_log() {
    let medium = SimulatedMedium::new();
    let clock = ManualClock::new(0);
    let config = small_config(1024);
    let log = open(&medium, &clock, &config);
    let sent = three_producers(&log);
    assert!(log.segment_base_offsets().len() > 2, "segments rolled");
    let expected: Vec<(u64, u64, bool)> = (0..3)
        .flat_map(|id| {
            let batches = &sent[&id];
            batches[batches.len() - PRODUCER_BATCHES_KEPT..]
                .iter()
                .map(|(_, info)| (info.base_offset, info.last_offset, true))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(answers(&log, &sent), expected);
    let end = log.end_offset();
    log.close().expect("close");
    drop(log);
    // The newest at the end and the one of the last roll are kept.
    let files = snapshot_files(&medium);
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(files[1], format!("{end:020}.snapshot"));
    let older: u64 = files[0]
        .trim_end_matches(".snapshot")
        .parse()
        .expect("an offset");

    // The newest damaged: the older one, and a scan of the batches after it.
    damage(&medium, &Path::new(DIR).join(&files[1]), 30);
    let log = open(&medium, &clock, &config);
    let report = log.recovery_report();
    assert_eq!(report.producer_snapshot, Some(older));
    assert!(report.producer_batches_scanned > 0);
    // The damaged one was removed, and written again, whole, at open.
    assert_eq!(snapshot_files(&medium), files);
    assert_eq!(answers(&log, &sent), expected, "the same answers");
    log.close().expect("close");
    drop(log);

    // Every snapshot damaged: the state is rebuilt from the whole log.
    for file in snapshot_files(&medium) {
        damage(&medium, &Path::new(DIR).join(file), 3);
    }
    let log = open(&medium, &clock, &config);
    let report = log.recovery_report();
    assert_eq!(report.producer_snapshot, None);
    assert_eq!(report.producer_batches_scanned, 30);
    assert_eq!(answers(&log, &sent), expected, "the same answers");
    // The damaged files are gone; the one written at open is good.
    assert_eq!(snapshot_files(&medium), vec![format!("{end:020}.snapshot")]);
    log.close().expect("close");
    drop(log);
    let log = open(&medium, &clock, &config);
    assert_eq!(log.recovery_report().producer_snapshot, Some(end));
    assert_eq!(answers(&log, &sent), expected);
}

#[test]
fn a_snapshot_past_the_end_of_a_repaired_log_is_removed_and_never_trusted() {
    let medium = SimulatedMedium::new();
    let clock = ManualClock::new(0);
    let config = small_config(1024);
    let log = open(&medium, &clock, &config);
    let batches: Vec<Vec<u8>> = (0..20)
        .map(|i| producer_batch(1, 0, i, &format!("v{i}"), 1, 1))
        .collect();
    for (i, b) in batches.iter().enumerate() {
        assert_eq!(log.append(b).expect("appended").base_offset, i as u64);
    }
    let last_segment = *log.segment_base_offsets().last().expect("a segment");
    assert!(last_segment > 5 && last_segment < 19, "{last_segment}");
    log.close().expect("close");
    drop(log);
    assert!(snapshot_files(&medium).contains(&format!("{:020}.snapshot", 20)));
    // Damage inside the newest segment's first batch, with valid batches after
    // it: repair cuts the log there, below the snapshot at 20.
    let dir = Path::new(DIR);
    damage(&medium, &segment_path(dir, last_segment), 32 + 70);
    medium
        .remove_file(&dir.join("clean-shutdown.marker"))
        .expect("remove");
    let repair = LogOptions {
        repair: true,
        ..options(&medium, &clock)
    };
    let log = Log::open(DIR, config.clone(), &repair).expect("repaired");
    assert_eq!(log.end_offset(), last_segment);
    let report = log.recovery_report();
    assert_eq!(report.lost_offsets, Some(last_segment..20));
    assert_eq!(
        report.producer_snapshot,
        Some(last_segment),
        "the roll's snapshot"
    );
    assert!(!snapshot_files(&medium).contains(&format!("{:020}.snapshot", 20)));
    // The batches before the cut are duplicates; the first one cut goes in again.
    let kept = last_segment as usize - 1;
    assert_eq!(
        placed(&log.append(&batches[kept]).expect("a duplicate")),
        (kept as u64, kept as u64, true)
    );
    for b in &batches[kept + 1..] {
        assert!(!log.append(b).expect("appended again").duplicate);
    }
    assert_eq!(log.end_offset(), 20);
    // Past 20 again with other batches, after an unclean shutdown: the
    // answers are this log's.
    let extra = producer_batch(1, 0, 20, "extra", 1, 1);
    log.append(&extra).expect("appended");
    drop(log);
    let log = open(&medium, &clock, &config);
    assert_eq!(
        placed(&log.append(&extra).expect("a duplicate")),
        (20, 20, true)
    );
    assert_eq!(
        placed(&log.append(&batches[19]).expect("a duplicate")),
        (19, 19, true)
    );
    assert_eq!(
        all_values(&log),
        values_of(&[&batches[..], &[extra]].concat())
    );
}

#[test]
fn retention_keeps_the_state_of_producers_whose_batches_it_deleted() {
    let medium = SimulatedMedium::new();
    let clock = ManualClock::new(0);
    let config = LogConfig {
        retention_bytes: Some(1),
        ..small_config(1024)
    };
    let log = open(&medium, &clock, &config);
    let mine: Vec<(Vec<u8>, AppendInfo)> = (0..6)
        .map(|i| {
            let b = producer_batch(9, 1, i * 2, &format!("m{i}"), 2, 1);
            let info = log.append(&b).expect("appended");
            (b, info)
        })
        .collect();
    for i in 0..40 {
        log.append(&batch(&format!("filler{i}"), 2, 1))
            .expect("appended");
    }
    let report = log.apply_retention();
    assert!(log.start_offset() > mine[5].1.last_offset, "{report:?}");
    let (last, original) = &mine[5];
    let answer = log.append(last).expect("a duplicate");
    assert_eq!(
        answer,
        AppendInfo {
            duplicate: true,
            ..*original
        }
    );
    log.close().expect("close");
    drop(log);
    for reopen in ["clean", "unclean"] {
        let log = open(&medium, &clock, &config);
        assert_eq!(
            placed(&log.append(last).expect("a duplicate")),
            (original.base_offset, original.last_offset, true),
            "{reopen}"
        );
        if reopen == "unclean" {
            let next = producer_batch(9, 1, 12, "next", 1, 1);
            assert!(!log.append(&next).expect("appended").duplicate);
        } else {
            log.close().expect("close");
        }
    }
}

#[test]
fn idle_producers_expire_by_the_log_clock_and_stay_expired_across_a_reopen() {
    let medium = SimulatedMedium::new();
    let clock = ManualClock::new(10_000);
    let config = small_config(64 * 1024);
    let options = LogOptions {
        producer_id_expiration_ms: 1_000,
        ..options(&medium, &clock)
    };
    let log = Log::open(DIR, config.clone(), &options).expect("opens");
    log.append(&producer_batch(1, 0, 0, "a", 1, 1))
        .expect("appended");
    clock.advance(500);
    log.append(&producer_batch(2, 0, 0, "b", 1, 1))
        .expect("appended");
    clock.advance(499);
    assert_eq!(log.remove_expired_producers(), 0);
    clock.advance(1);
    assert_eq!(
        log.remove_expired_producers(),
        1,
        "producer 1, idle 1000 ms"
    );
    assert_eq!(log.producer_count(), 1);
    assert!(matches!(
        log.append(&producer_batch(1, 0, 1, "a", 1, 1)),
        Err(AppendError::UnknownProducerId {
            producer_id: 1,
            sequence: 1
        })
    ));
    // Producer 2's last append is in the snapshot written at close; by the
    // time the log reopens it has been idle long enough.
    log.close().expect("close");
    drop(log);
    clock.advance(600);
    let log = Log::open(DIR, config, &options).expect("reopens");
    assert_eq!(log.producer_count(), 0);
    assert!(matches!(
        log.append(&producer_batch(2, 0, 1, "b", 1, 1)),
        Err(AppendError::UnknownProducerId { producer_id: 2, .. })
    ));
    // Starting again at 0 is a new producer.
    assert!(
        !log.append(&producer_batch(2, 0, 0, "b", 1, 1))
            .expect("appended")
            .duplicate
    );
}

#[test]
fn a_partition_refuses_a_new_producer_past_the_limit_until_idle_ones_expire() {
    let medium = SimulatedMedium::new();
    let clock = ManualClock::new(0);
    let config = with_flush(small_config(4 << 20), FlushPolicy::Os);
    let log = open(&medium, &clock, &config);
    let limit = PRODUCERS_PER_PARTITION_MAX as i64;
    for id in 0..limit {
        log.append_unsynced(&producer_batch(id, 0, 0, "x", 1, 1))
            .expect("under the limit");
    }
    clock.advance(1_000);
    // One producer stays active.
    log.append_unsynced(&producer_batch(0, 0, 1, "x", 1, 1))
        .expect("a known producer goes on");
    let end = log.end_offset();
    let err = log
        .append_unsynced(&producer_batch(limit, 0, 0, "new", 1, 1))
        .expect_err("one too many");
    assert!(
        matches!(err, AppendError::TooManyProducers { limit } if limit == PRODUCERS_PER_PARTITION_MAX),
        "{err}"
    );
    assert!(err.to_string().contains("10000"), "{err}");
    assert_eq!(log.end_offset(), end, "nothing written");
    // A day later every producer but 0 has been idle for the expiration time.
    clock.advance(carteiro_storage::PRODUCER_ID_EXPIRATION_MS_DEFAULT as i64 - 500);
    assert!(
        !log.append_unsynced(&producer_batch(limit, 0, 0, "new", 1, 1))
            .expect("room once idle ones expire")
            .duplicate
    );
    assert_eq!(log.producer_count(), 2);
}

#[test]
fn a_damaged_batch_header_that_recovery_trusted_refuses_the_rebuild_and_repair_skips_it() {
    let medium = SimulatedMedium::new();
    let clock = ManualClock::new(0);
    let config = small_config(1024);
    let log = open(&medium, &clock, &config);
    let batches: Vec<Vec<u8>> = (0..30)
        .map(|i| producer_batch(1, 0, i, &format!("v{i:02}"), 1, 1))
        .collect();
    for b in &batches {
        log.append(b).expect("appended");
    }
    log.close().expect("close");
    drop(log);
    // No snapshot: the state must be rebuilt from the whole log. The second
    // batch of the first (sealed, trusted) segment loses its magic byte.
    let dir = Path::new(DIR);
    for file in snapshot_files(&medium) {
        medium.remove_file(&dir.join(file)).expect("remove");
    }
    medium.sync_dir(dir).expect("sync");
    let second = 32 + batches[0].len();
    damage(&medium, &segment_path(dir, 0), second + 16);
    let err = Log::open(DIR, config.clone(), &options(&medium, &clock)).expect_err("damaged");
    let text = err.to_string();
    assert!(
        text.contains(&format!("at byte {second}")) && text.contains("idempotent producers"),
        "{text}"
    );
    let repair = LogOptions {
        repair: true,
        ..options(&medium, &clock)
    };
    let log = Log::open(DIR, config, &repair).expect("repair opens");
    // The later segments were read: the last batch is known.
    assert!(log.append(&batches[29]).expect("a duplicate").duplicate);
}
