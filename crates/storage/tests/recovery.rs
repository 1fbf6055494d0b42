//! Recovery after an unclean shutdown, in the segment being written: torn
//! tails, garbage, flipped bits after and before the recovery checkpoint,
//! and damage found later while reading. Each case opens to exactly the
//! expected prefix or refuses with the named error, changing nothing.
//! Closed segments and indexes: recovery_segments.rs.

mod common;

use std::path::{Path, PathBuf};

use carteiro_storage::{LOG_HEADER_BYTES, Log, LogOptions, Medium, OpenError, SimulatedMedium};
use common::*;
use proptest::prelude::*;

const DIR: &str = "/data/topic-0";

/// A crashed log: `durable` batches closed cleanly (so the recovery
/// checkpoint sits after them), then `tail` more appended and acknowledged
/// before the crash. Returns the crash image, the batches and their positions.
struct Crashed {
    image: SimulatedMedium,
    batches: Vec<Vec<u8>>,
    positions: Vec<usize>,
    durable: usize,
}

impl Crashed {
    fn new(durable: usize, tail: usize) -> Crashed {
        let medium = SimulatedMedium::new();
        let mut batches = Vec::new();
        {
            let log =
                Log::open(DIR, small_config(64 * 1024), &sim_options(&medium)).expect("opens");
            for i in 0..durable {
                let b = batch(&format!("d{i}"), 2 + i % 3, i as i64);
                log.append(&b).expect("append");
                batches.push(b);
            }
            log.close().expect("close");
        }
        {
            let log =
                Log::open(DIR, small_config(64 * 1024), &sim_options(&medium)).expect("reopens");
            for i in 0..tail {
                let b = batch(&format!("t{i}"), 1 + i % 4, 100 + i as i64);
                log.append(&b).expect("append");
                batches.push(b);
            }
            // Dropped without close: no clean-shutdown marker.
        }
        let mut positions = vec![LOG_HEADER_BYTES];
        for b in &batches {
            positions.push(positions.last().copied().unwrap_or_default() + b.len());
        }
        Crashed {
            image: medium.after_power_loss(),
            batches,
            positions,
            durable,
        }
    }

    /// A fresh copy of the crash image to damage.
    fn copy(&self) -> SimulatedMedium {
        self.image.after_power_loss()
    }

    fn segment(&self) -> PathBuf {
        segment_path(Path::new(DIR), 0)
    }

    fn open(medium: &SimulatedMedium) -> Result<Log, OpenError> {
        Log::open(DIR, small_config(64 * 1024), &sim_options(medium))
    }

    fn open_repair(medium: &SimulatedMedium) -> Result<Log, OpenError> {
        Log::open(
            DIR,
            small_config(64 * 1024),
            &LogOptions {
                repair: true,
                ..sim_options(medium)
            },
        )
    }

    fn prefix(&self, n: usize) -> Vec<Vec<u8>> {
        values_of(&self.batches[..n])
    }

    fn records_before(&self, n: usize) -> u64 {
        self.prefix(n).len() as u64
    }
}

#[test]
fn compressed_batches_are_kept_as_sent_through_an_unclean_shutdown() {
    use carteiro::record::{Compression, MAGIC_AT};
    let medium = SimulatedMedium::new();
    let mut batches = Vec::new();
    let mut values = Vec::new();
    let mut append = |log: &Log, codec: Compression, round: usize| {
        let owned: Vec<String> = (0..4)
            .map(|i| format!("{}-{round}-{i} ", codec.name()).repeat(20))
            .collect();
        let records: Vec<(&[u8], i64)> = owned
            .iter()
            .enumerate()
            .map(|(i, v)| (v.as_bytes(), (batches.len() * 10 + i) as i64))
            .collect();
        let b = compressed_batch_of(codec, &records);
        let header = carteiro::record::BatchHeader::parse(&b).expect("header");
        assert_eq!(header.attributes.compression(), codec);
        log.append(&b).expect("append");
        values.extend(owned.into_iter().map(String::into_bytes));
        batches.push(b);
    };
    {
        let log = Crashed::open(&medium).expect("opens");
        for codec in Compression::ALL {
            append(&log, codec, 0);
        }
        log.close().expect("close");
    }
    {
        let log = Crashed::open(&medium).expect("reopens");
        for codec in Compression::ALL {
            append(&log, codec, 1);
        }
        // Dropped without close: no clean-shutdown marker.
    }
    let image = medium.after_power_loss();
    let log = Crashed::open(&image).expect("opens after the crash");
    assert!(!log.recovery_report().clean_shutdown);
    assert_eq!(log.recovery_report().truncated_bytes, 0);
    assert_eq!(log.end_offset(), values.len() as u64);
    let read: Vec<Vec<u8>> = all_records(&log).into_iter().map(|(_, v, _)| v).collect();
    assert_eq!(read, values);
    // Stored as sent: byte for byte from the magic on (the broker sets the
    // base offset and leader epoch, which the CRC does not cover).
    let stored = log.read(0, 1 << 20).expect("readable").batches;
    let mut rest = &stored[..];
    for sent in &batches {
        let (stored, tail) = rest.split_at(sent.len());
        assert_eq!(stored[MAGIC_AT..], sent[MAGIC_AT..]);
        rest = tail;
    }
    // Timestamps inside compressed batches are found (each record's is 10 * batch + i).
    assert_eq!(log.offset_for_timestamp(22).expect("lookup"), Some(10));
    assert_eq!(log.offset_for_timestamp(94).expect("lookup"), None);
}

#[test]
fn an_uncut_crash_image_keeps_every_acknowledged_batch() {
    let crashed = Crashed::new(3, 3);
    let medium = crashed.copy();
    let log = Crashed::open(&medium).expect("opens");
    assert!(!log.recovery_report().clean_shutdown);
    assert_eq!(
        log.recovery_report().recovery_point,
        crashed.records_before(3)
    );
    assert_eq!(
        log.recovery_report().truncated_bytes,
        0,
        "preallocated zeros are not data"
    );
    assert_eq!(all_values(&log), crashed.prefix(6));
}

#[test]
fn tail_cut_at_every_byte_of_the_last_batch_opens_to_the_prefix() {
    let crashed = Crashed::new(3, 3);
    let last_start = crashed.positions[5];
    let last_end = crashed.positions[6];
    let stored = read_file(&crashed.copy(), &crashed.segment());
    for cut in last_start..last_end {
        let medium = crashed.copy();
        medium
            .truncate(&crashed.segment(), cut as u64)
            .expect("cut");
        let log = Crashed::open(&medium).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(all_values(&log), crashed.prefix(5), "cut at {cut}");
        assert_eq!(log.end_offset(), crashed.records_before(5));
        // What was cut is reported, up to its last non-zero byte (zeros are
        // indistinguishable from the preallocated end of the segment).
        let fragment = &stored[last_start..cut];
        let data = fragment.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1) as u64;
        assert_eq!(log.recovery_report().truncated_bytes, data, "cut at {cut}");
        if data > 0 {
            assert_eq!(
                log.recovery_report().truncated_at_offset,
                Some(crashed.records_before(5))
            );
        }
        // The log goes on from the cut, and a second open agrees.
        log.append(&batch("next", 1, 9))
            .expect("append after recovery");
        drop(log);
        let again = Crashed::open(&medium).expect("reopens");
        assert_eq!(
            all_values(&again).len() as u64,
            crashed.records_before(5) + 1
        );
    }
}

#[test]
fn zeros_after_the_last_batch_are_ignored() {
    let crashed = Crashed::new(2, 2);
    let medium = crashed.copy();
    let end = crashed.positions[4] as u64;
    medium
        .truncate(&crashed.segment(), end)
        .expect("cut to the data");
    medium
        .truncate(&crashed.segment(), end + 10_000)
        .expect("grow with zeros");
    let log = Crashed::open(&medium).expect("opens");
    assert_eq!(all_values(&log), crashed.prefix(4));
    assert_eq!(log.recovery_report().truncated_bytes, 0);
}

#[test]
fn garbage_after_the_last_batch_is_cut_and_reported() {
    let crashed = Crashed::new(2, 2);
    let medium = crashed.copy();
    let garbage: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
    medium
        .corrupt(&crashed.segment(), crashed.positions[4], &garbage)
        .expect("append garbage");
    let log = Crashed::open(&medium).expect("opens");
    assert_eq!(all_values(&log), crashed.prefix(4));
    assert_eq!(log.recovery_report().truncated_bytes, 300);
    assert_eq!(
        log.recovery_report().truncated_at_offset,
        Some(crashed.records_before(4))
    );
}

#[test]
fn a_flipped_bit_after_the_checkpoint_with_a_valid_batch_after_it_is_damage_not_a_torn_tail() {
    let crashed = Crashed::new(3, 3);
    let damaged = 4; // the second batch after the checkpoint; batch 5 follows intact
    let (start, end) = (crashed.positions[damaged], crashed.positions[damaged + 1]);
    // Every field: base offset (not covered by the CRC), length, leader
    // epoch (not covered either), CRC, body.
    for at in [
        start,
        start + 5,
        start + 9,
        start + 13,
        start + 17,
        start + 21,
        start + 40,
        end - 1,
    ] {
        let medium = crashed.copy();
        let byte = read_file(&medium, &crashed.segment())[at];
        medium
            .corrupt(&crashed.segment(), at, &[byte ^ 0x10])
            .expect("flip");
        let before = read_file(&medium, &crashed.segment());
        let (file, position, reason) = refusal(Crashed::open(&medium));
        assert_eq!(file, crashed.segment(), "flip at {at}");
        assert_eq!(position, start as u64, "flip at {at}");
        assert!(
            reason.contains(&format!("a valid batch follows at byte {end}")),
            "flip at {at}: {reason}"
        );
        assert_eq!(
            read_file(&medium, &crashed.segment()),
            before,
            "refusing changes nothing"
        );
        // Repair cuts at the damage and names exactly the offsets it gave up.
        let log = Crashed::open_repair(&medium).unwrap_or_else(|e| panic!("flip at {at}: {e}"));
        assert_eq!(all_values(&log), crashed.prefix(damaged), "flip at {at}");
        let report = log.recovery_report();
        assert!(report.repaired_durable_data);
        assert_eq!(
            report.lost_offsets,
            Some(crashed.records_before(damaged)..crashed.records_before(6)),
            "flip at {at}"
        );
    }
}

#[test]
fn a_flipped_bit_in_the_last_batch_after_the_checkpoint_is_a_torn_tail_and_cut() {
    let crashed = Crashed::new(3, 3);
    let last = 5;
    for at in [
        crashed.positions[last] + 21,
        crashed.positions[last + 1] - 1,
    ] {
        let medium = crashed.copy();
        let byte = read_file(&medium, &crashed.segment())[at];
        medium
            .corrupt(&crashed.segment(), at, &[byte ^ 0x10])
            .expect("flip");
        let log = Crashed::open(&medium).unwrap_or_else(|e| panic!("flip at {at}: {e}"));
        assert_eq!(all_values(&log), crashed.prefix(last), "flip at {at}");
        let report = log.recovery_report();
        assert_eq!(
            report.truncated_at_offset,
            Some(crashed.records_before(last))
        );
        assert!(!report.repaired_durable_data);
        assert_eq!(report.lost_offsets, None);
    }
}

#[test]
fn a_flipped_bit_before_the_checkpoint_refuses_to_open_and_changes_nothing() {
    let crashed = Crashed::new(3, 2);
    let damaged = 1;
    let at = crashed.positions[damaged] + 30;
    let medium = crashed.copy();
    let byte = read_file(&medium, &crashed.segment())[at];
    medium
        .corrupt(&crashed.segment(), at, &[byte ^ 0x01])
        .expect("flip");
    let before = read_file(&medium, &crashed.segment());
    let (file, position, reason) = refusal(Crashed::open(&medium));
    assert_eq!(file, crashed.segment());
    assert_eq!(position, crashed.positions[damaged] as u64);
    assert!(reason.contains("checksum"), "{reason}");
    assert_eq!(
        read_file(&medium, &crashed.segment()),
        before,
        "refusing changes nothing"
    );
    let message = Crashed::open(&medium)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("00000000000000000000.log")
            && message.contains(&format!("byte {}", crashed.positions[damaged])),
        "{message}"
    );

    // The operator asks for repair: the log is cut at the damage.
    let log = Crashed::open_repair(&medium).expect("repair opens");
    assert!(log.recovery_report().repaired_durable_data);
    assert_eq!(all_values(&log), crashed.prefix(damaged));
}

#[test]
fn a_damaged_checkpoint_refuses_to_open() {
    let crashed = Crashed::new(2, 1);
    let medium = crashed.copy();
    let path = Path::new(DIR).join("recovery-point.checkpoint");
    medium.corrupt(&path, 9, &[0xff]).expect("flip");
    match Crashed::open(&medium) {
        Err(OpenError::CorruptDurableData { file, .. }) => assert_eq!(file, path),
        other => panic!("expected CorruptDurableData, got {other:?}"),
    }
    let log = Crashed::open_repair(&medium).expect("repair opens");
    assert_eq!(
        all_values(&log),
        crashed.prefix(3),
        "with no checkpoint, every valid batch is kept"
    );
}

#[test]
fn real_files_recover_a_garbage_tail_and_refuse_damaged_durable_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config(64 * 1024);
    let mut batches = Vec::new();
    {
        let log = Log::open(dir.path(), config.clone(), &LogOptions::default()).expect("opens");
        for i in 0..3 {
            let b = batch(&format!("r{i}"), 3, i);
            log.append(&b).expect("append");
            batches.push(b);
        }
        log.close().expect("close");
        let log = Log::open(dir.path(), config.clone(), &LogOptions::default()).expect("reopens");
        let b = batch("after", 2, 9);
        log.append(&b).expect("append");
        batches.push(b);
    }
    let path = segment_path(dir.path(), 0);
    let mut bytes = std::fs::read(&path).expect("read");
    assert_eq!(
        bytes.len(),
        64 * 1024,
        "the active segment was preallocated"
    );
    let end: usize = LOG_HEADER_BYTES + batches.iter().map(Vec::len).sum::<usize>();
    bytes[end..end + 64].fill(0xab);
    std::fs::write(&path, &bytes).expect("write garbage");
    {
        let log = Log::open(dir.path(), config.clone(), &LogOptions::default()).expect("opens");
        assert_eq!(all_values(&log), values_of(&batches));
        assert_eq!(log.recovery_report().truncated_bytes, 64);
    }
    // Now damage the first batch, which the checkpoint says was synced.
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[LOG_HEADER_BYTES + 40] ^= 0x04;
    std::fs::write(&path, &bytes).expect("flip");
    let err = Log::open(dir.path(), config, &LogOptions::default()).expect_err("refuses");
    assert!(
        matches!(err, OpenError::CorruptDurableData { position, .. } if position == LOG_HEADER_BYTES as u64),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&path).expect("read"),
        bytes,
        "refusing changes nothing"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Damage after the checkpoint: a torn tail (a cut, or damage in the
    /// last batch) opens to exactly the batches before the damaged one;
    /// damage with a valid batch after it refuses to open, changing
    /// nothing, and repair then opens to those same batches. Either way the
    /// log then accepts appends.
    #[test]
    fn damage_after_the_checkpoint_is_cut_only_when_nothing_valid_follows(
        durable in 0usize..4,
        tail in 1usize..6,
        which in any::<prop::sample::Index>(),
        offset_in_batch in any::<prop::sample::Index>(),
        kind in 0u8..3,
        noise in proptest::collection::vec(any::<u8>(), 1..64),
    ) {
        let crashed = Crashed::new(durable, tail);
        let damaged = durable + which.index(tail);
        let (start, end) = (crashed.positions[damaged], crashed.positions[damaged + 1]);
        let at = start + offset_in_batch.index(end - start);
        let medium = crashed.copy();
        match kind {
            0 => medium.truncate(&crashed.segment(), at as u64).expect("cut"),
            1 => {
                let byte = read_file(&medium, &crashed.segment())[at];
                medium.corrupt(&crashed.segment(), at, &[byte ^ noise[0].max(1)]).expect("flip");
            }
            _ => {
                let len = noise.len().min(end - at);
                let original = &read_file(&medium, &crashed.segment())[at..at + len];
                prop_assume!(original != &noise[..len]);
                medium.corrupt(&crashed.segment(), at, &noise[..len]).expect("overwrite");
            }
        }
        let torn = kind == 0 || damaged + 1 == durable + tail;
        let log = if torn {
            Crashed::open(&medium).expect("a torn tail never refuses")
        } else {
            let before = read_file(&medium, &crashed.segment());
            let refused = Crashed::open(&medium);
            prop_assert!(
                matches!(refused, Err(OpenError::CorruptDurableData { position, .. }) if position == start as u64),
                "expected a refusal at byte {}, got {:?}", start, refused.map(|_| ())
            );
            prop_assert_eq!(read_file(&medium, &crashed.segment()), before);
            Crashed::open_repair(&medium).expect("repair opens")
        };
        prop_assert_eq!(all_values(&log), crashed.prefix(damaged));
        prop_assert!(crashed.durable <= damaged);
        log.append(&batch("more", 1, 1)).expect("append");
    }
}

#[test]
fn damage_found_while_reading_serves_the_batches_before_it_and_names_the_bad_one() {
    let crashed = Crashed::new(4, 0);
    let medium = crashed.copy();
    let log = Crashed::open(&medium).expect("opens");
    let damaged = 2;
    let at = crashed.positions[damaged] + 40;
    let byte = read_file(&medium, &crashed.segment())[at];
    medium
        .corrupt(&crashed.segment(), at, &[byte ^ 0x08])
        .expect("bit rot while running");
    let read = log.read(0, 1 << 20).expect("the good batches come back");
    assert_eq!(read.next_offset, crashed.records_before(damaged));
    assert_eq!(
        read.batches.len(),
        crashed.positions[damaged] - LOG_HEADER_BYTES
    );
    match log.read(read.next_offset, 1 << 20) {
        Err(carteiro_storage::ReadError::Corrupt {
            file,
            position,
            offset,
            reason,
        }) => {
            assert_eq!(file, crashed.segment());
            assert_eq!(position, crashed.positions[damaged] as u64);
            assert_eq!(offset, crashed.records_before(damaged));
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_segment_cut_short_from_outside_is_an_error_on_read_not_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), small_config(1024), &LogOptions::default()).expect("opens");
    for i in 0..40 {
        log.append(&batch(&format!("c{i}"), 2, i)).expect("append");
    }
    let first = segment_path(dir.path(), 0);
    let len = std::fs::metadata(&first).expect("stat").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .and_then(|f| f.set_len(len / 2))
        .expect("cut from outside");
    let err = (0..4)
        .find_map(|offset| log.read(offset, 1 << 20).err())
        .expect("some read of the cut segment fails");
    assert!(err.to_string().contains("cut from outside"), "{err}");
    // The rest of the log is served as before.
    let second = log.segment_base_offsets()[1];
    assert!(log.read(second, 1 << 20).is_ok());
}
