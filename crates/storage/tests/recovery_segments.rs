//! Recovery of a log of several segments after an unclean shutdown: closed
//! segments damaged, cut short or missing, damaged or misleading indexes, a
//! recovery point past the log's end. Each case opens to exactly the
//! expected log or refuses with the named error, changing nothing; repair
//! reports what it gives up.

mod common;

use std::path::Path;

use carteiro_storage::{LOG_HEADER_BYTES, Log, LogOptions, Medium, OpenError, SimulatedMedium};
use common::*;

const DIR: &str = "/data/topic-0";

fn rolled_log(medium: &SimulatedMedium) -> Vec<Vec<u8>> {
    let log = Log::open(DIR, small_config(1024), &sim_options(medium)).expect("opens");
    let mut batches = Vec::new();
    for i in 0..40 {
        let b = batch(&format!("x{i}"), 2, i);
        log.append(&b).expect("append");
        batches.push(b);
    }
    assert!(log.segment_base_offsets().len() >= 3);
    log.close().expect("close");
    batches
}

#[test]
fn a_deleted_or_damaged_index_is_rebuilt() {
    let medium = SimulatedMedium::new();
    let batches = rolled_log(&medium);
    let dir = Path::new(DIR);
    let bases = Log::open(DIR, small_config(1024), &sim_options(&medium))
        .expect("opens")
        .segment_base_offsets();
    // The previous open rewrote nothing; now damage two closed segments' indexes.
    medium
        .remove_file(&dir.join(format!("{:020}.index", bases[0])))
        .expect("delete index");
    medium
        .corrupt(
            &dir.join(format!("{:020}.timeindex", bases[1])),
            20,
            &[0xee],
        )
        .expect("damage");
    let log = Log::open(DIR, small_config(1024), &sim_options(&medium)).expect("opens");
    let rebuilt = &log.recovery_report().rebuilt_indexes;
    assert!(
        rebuilt.contains(&bases[0]) && rebuilt.contains(&bases[1]),
        "{rebuilt:?}"
    );
    assert_eq!(all_values(&log), values_of(&batches));
    for offset in 0..log.end_offset() {
        let read = log.read(offset, 1).expect("read");
        assert!(read.first_offset <= offset && offset < read.next_offset);
    }
    assert_eq!(log.offset_for_timestamp(20).expect("lookup"), Some(40));
}

#[test]
fn a_flipped_bit_in_a_closed_segment_before_the_checkpoint_refuses_to_open() {
    let medium = SimulatedMedium::new();
    rolled_log(&medium);
    let path = segment_path(Path::new(DIR), 0);
    // The last byte of the closed segment's last batch: its tail is checked.
    let len = read_file(&medium, &path).len();
    medium
        .corrupt(&path, 20, &[0x55])
        .expect("damage the segment header");
    match Log::open(DIR, small_config(1024), &sim_options(&medium)) {
        Err(OpenError::CorruptDurableData { file, position, .. }) => {
            assert_eq!(file, path);
            assert_eq!(position, 0);
        }
        other => panic!("expected CorruptDurableData, got {other:?} (file of {len} bytes)"),
    }
}

#[test]
fn a_closed_segment_cut_short_is_refused_naming_where_the_gap_shows() {
    let medium = SimulatedMedium::new();
    let batches = rolled_log(&medium);
    let path = segment_path(Path::new(DIR), 0);
    let len = read_file(&medium, &path).len();
    // Cut the first closed segment's last batch off: its sealed index passes
    // its own checks, and the gap shows where the next segment begins.
    let log = Log::open(DIR, small_config(1024), &sim_options(&medium)).expect("opens");
    let second = log.segment_base_offsets()[1];
    drop(log);
    let last_batch = batches
        .iter()
        .map(Vec::len)
        .scan(LOG_HEADER_BYTES, |at, l| {
            *at += l;
            Some(*at)
        });
    let cut = last_batch
        .take_while(|&end| end < len)
        .last()
        .unwrap_or(LOG_HEADER_BYTES);
    medium.truncate(&path, cut as u64).expect("cut");
    match Log::open(DIR, small_config(1024), &sim_options(&medium)) {
        // The cut batch had been synced: refusing is right, and nothing panics.
        Err(OpenError::CorruptDurableData { file, .. }) => {
            assert_eq!(file, segment_path(Path::new(DIR), second))
        }
        other => panic!("expected CorruptDurableData, got {other:?}"),
    }
}

/// A log in `DIR` over `medium` that rolled a few times and crashed (no
/// close); returns its batches and segment bases.
fn crashed_rolled_log(medium: &SimulatedMedium) -> (Vec<Vec<u8>>, Vec<u64>) {
    let log = Log::open(DIR, small_config(1024), &sim_options(medium)).expect("opens");
    let mut batches = Vec::new();
    for i in 0..40 {
        let b = batch(&format!("m{i}"), 2, i);
        log.append(&b).expect("append");
        batches.push(b);
    }
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 4, "{bases:?}");
    (batches, bases)
}

/// Opens the log in `DIR` expecting a refusal whose message holds `needle`;
/// returns the message.
fn expect_refusal(medium: &SimulatedMedium, needle: &str) -> String {
    let (file, position, reason) =
        refusal(Log::open(DIR, small_config(1024), &sim_options(medium)));
    let message = format!("{} at byte {position}: {reason}", file.display());
    assert!(message.contains(needle), "{message}");
    message
}

fn open_repair(medium: &SimulatedMedium) -> Log {
    Log::open(
        DIR,
        small_config(1024),
        &LogOptions {
            repair: true,
            ..sim_options(medium)
        },
    )
    .expect("repair opens")
}

#[test]
fn a_missing_newest_segment_file_is_refused_and_repair_reports_the_offsets_it_gives_up() {
    let medium = SimulatedMedium::new();
    let (batches, bases) = crashed_rolled_log(&medium);
    let newest = *bases.last().expect("segments");
    let total = values_of(&batches).len() as u64;
    // Only the .log goes: its index files say it was there.
    medium
        .remove_file(&segment_path(Path::new(DIR), newest))
        .expect("lose the newest segment");
    expect_refusal(&medium, &format!("{newest:020}.log is missing"));
    // All three files go: the recovery checkpoint names the newest segment.
    for suffix in ["index", "timeindex"] {
        medium
            .remove_file(&Path::new(DIR).join(format!("{newest:020}.{suffix}")))
            .expect("lose its indexes");
    }
    expect_refusal(&medium, "the newest segment starts at offset");
    let log = open_repair(&medium);
    let report = log.recovery_report();
    assert!(report.repaired_durable_data);
    assert_eq!(
        report.lost_offsets,
        Some(newest..newest.max(report.recovery_point))
    );
    assert_eq!(
        all_values(&log),
        values_of(&batches)[..newest as usize].to_vec()
    );
    assert!(newest < total);
}

#[test]
fn a_missing_middle_segment_is_refused_naming_the_gap() {
    let medium = SimulatedMedium::new();
    let (batches, bases) = crashed_rolled_log(&medium);
    let (gone, after) = (bases[1], bases[2]);
    for path in [
        segment_path(Path::new(DIR), gone),
        Path::new(DIR).join(format!("{gone:020}.index")),
        Path::new(DIR).join(format!("{gone:020}.timeindex")),
    ] {
        medium.remove_file(&path).expect("lose a segment");
    }
    let err = expect_refusal(
        &medium,
        &format!(
            "segment starts at offset {after}, but the segment before it ends at offset {gone}"
        ),
    );
    assert!(
        err.to_string().contains(&format!("{after:020}.log")),
        "{err}"
    );
    let log = open_repair(&medium);
    assert_eq!(
        all_values(&log),
        values_of(&batches)[..gone as usize].to_vec()
    );
    assert_eq!(
        log.recovery_report().lost_offsets,
        Some(gone..values_of(&batches).len() as u64)
    );
}

#[test]
fn a_recovery_point_beyond_the_end_of_the_log_is_refused() {
    // A longer log's checkpoint beside a shorter log: the log ends before
    // offsets its checkpoint says were synced.
    let long = SimulatedMedium::new();
    {
        let log = Log::open(DIR, small_config(64 * 1024), &sim_options(&long)).expect("opens");
        for i in 0..10 {
            log.append(&batch(&format!("l{i}"), 2, i)).expect("append");
        }
        log.close().expect("close");
    }
    let checkpoint = Path::new(DIR).join("recovery-point.checkpoint");
    let long_point = read_file(&long, &checkpoint);
    let medium = SimulatedMedium::new();
    {
        let log = Log::open(DIR, small_config(1024), &sim_options(&medium)).expect("opens");
        log.append(&batch("short", 3, 1)).expect("append");
    }
    medium
        .write_file_atomic(&checkpoint, &long_point)
        .expect("swap the checkpoint");
    expect_refusal(
        &medium,
        "the log ends at offset 3, but the recovery checkpoint says",
    );
}

#[test]
fn an_index_entry_with_a_valid_checksum_that_names_the_wrong_batch_is_not_followed() {
    let medium = SimulatedMedium::new();
    let config = small_config(16 * 1024);
    let mut batches = Vec::new();
    {
        let log = Log::open(DIR, config.clone(), &sim_options(&medium)).expect("opens");
        for i in 0..40 {
            let b = batch(&format!("w{i}"), 2, i);
            log.append(&b).expect("append");
            batches.push(b);
        }
        log.close().expect("close");
    }
    let index = Path::new(DIR).join(format!("{:020}.index", 0));
    let bytes = read_file(&medium, &index);
    // Entries are 8 bytes after a 16-byte header, then a 16-byte trailer
    // whose CRC-32 covers header and entries. Give the second entry the
    // position of the third and seal it again with a valid CRC.
    let entries = (bytes.len() - 32) / 8;
    assert!(entries >= 3, "{entries} entries");
    let mut forged = bytes.clone();
    let third_position = forged[16 + 2 * 8 + 4..16 + 2 * 8 + 8].to_vec();
    forged[16 + 8 + 4..16 + 8 + 8].copy_from_slice(&third_position);
    let body = forged.len() - 16;
    let crc = crc32fast::hash(&forged[..body]);
    forged[body + 8..body + 12].copy_from_slice(&crc.to_be_bytes());
    medium.write_file_atomic(&index, &forged).expect("forge");
    let log = Log::open(DIR, config, &sim_options(&medium)).expect("opens");
    let relative = u32::from_be_bytes(forged[16 + 8..16 + 12].try_into().expect("4 bytes"));
    let asked = u64::from(relative) + 1;
    let read = log.read(asked, 1).expect("read");
    assert!(
        read.first_offset <= asked && asked < read.next_offset,
        "asked for {asked}, got {}..{}",
        read.first_offset,
        read.next_offset
    );
    assert_eq!(all_values(&log), values_of(&batches));
    for offset in 0..log.end_offset() {
        let read = log.read(offset, 1).expect("read");
        assert!(read.first_offset <= offset && offset < read.next_offset);
    }
}
