//! The tail cache against the segment files: whatever a read from memory
//! answers, a read from the file answers the same, byte for byte, over
//! random runs of small and large batches, rolls, and syncs.

mod common;

use carteiro_storage::{FlushPolicy, Log, SimulatedMedium, TAIL_BATCH_BYTES_MAX};
use common::*;
use proptest::prelude::*;

const DIR: &str = "/data/tail-0";

#[derive(Debug, Clone)]
enum Step {
    /// A batch of `records` records of `value_bytes` each.
    Small {
        records: usize,
        value_bytes: usize,
    },
    /// A batch too large for the cache.
    Large,
    Roll,
    Sync,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (1usize..4, 1usize..400).prop_map(|(records, value_bytes)| Step::Small { records, value_bytes }),
        1 => Just(Step::Large),
        1 => Just(Step::Roll),
        2 => Just(Step::Sync),
    ]
}

fn value_batch(n: usize, records: usize, value_bytes: usize) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..records)
        .map(|r| {
            format!("{n}-{r}-")
                .into_bytes()
                .into_iter()
                .cycle()
                .take(value_bytes)
                .collect()
        })
        .collect();
    let records: Vec<(&[u8], i64)> = values.iter().map(|v| (&v[..], n as i64)).collect();
    batch_of(&records)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn a_read_from_the_tail_cache_equals_the_read_from_the_file(
        steps in proptest::collection::vec(step(), 1..60),
        always in any::<bool>(),
        max_bytes in prop_oneof![Just(1usize), 100usize..2000, Just(usize::MAX)],
    ) {
        let medium = SimulatedMedium::new();
        let flush = if always { FlushPolicy::Always } else { FlushPolicy::Os };
        let config = with_flush(small_config(256 * 1024), flush);
        let log = Log::open(DIR, config, &sim_options(&medium)).expect("open");
        for (n, step) in steps.iter().enumerate() {
            match step {
                Step::Small { records, value_bytes } => {
                    log.append_unsynced(&value_batch(n, *records, *value_bytes)).expect("append");
                }
                Step::Large => {
                    log.append_unsynced(&value_batch(n, 1, TAIL_BATCH_BYTES_MAX + 1)).expect("append");
                }
                Step::Roll => {
                    log.roll().expect("roll");
                }
                Step::Sync => log.flush().expect("sync"),
            }
            let hwm = log.high_watermark();
            for from in log.start_offset()..=log.end_offset() {
                let Some(cached) = log.read_visible_tail(from, max_bytes, hwm) else {
                    continue;
                };
                let file = log.read_visible_below(from, max_bytes, hwm);
                match (cached, file) {
                    (Ok(cached), Ok(file)) => prop_assert_eq!(cached, file, "step {}, from {}", n, from),
                    (Err(cached), Err(file)) => prop_assert_eq!(cached.to_string(), file.to_string()),
                    (cached, file) => prop_assert!(false, "step {n}, from {from}: {cached:?} vs {file:?}"),
                }
            }
        }
    }
}

#[test]
fn small_batches_at_the_tail_are_answered_from_memory_until_a_roll_or_a_large_batch() {
    let medium = SimulatedMedium::new();
    let log = Log::open(
        DIR,
        with_flush(small_config(256 * 1024), FlushPolicy::Os),
        &sim_options(&medium),
    )
    .expect("open");
    for n in 0..10 {
        log.append_unsynced(&value_batch(n, 2, 50)).expect("append");
    }
    let end = log.end_offset();
    let read = log
        .read_visible_tail(end - 2, usize::MAX, end)
        .expect("answered from memory")
        .expect("read");
    assert_eq!((read.first_offset, read.next_offset), (end - 2, end));
    assert_eq!(
        read,
        log.read_visible_below(end - 2, usize::MAX, end)
            .expect("read")
    );
    // At the end: nothing yet, from memory.
    let empty = log
        .read_visible_tail(end, usize::MAX, end)
        .expect("answered")
        .expect("read");
    assert!(empty.batches.is_empty());
    log.roll().expect("roll");
    assert!(
        log.read_visible_tail(end - 2, usize::MAX, end).is_none(),
        "a roll empties the cache"
    );
    log.append_unsynced(&value_batch(10, 1, 50))
        .expect("append");
    log.append_unsynced(&value_batch(11, 1, TAIL_BATCH_BYTES_MAX + 1))
        .expect("append");
    let end = log.end_offset();
    assert!(
        log.read_visible_tail(end - 1, usize::MAX, end).is_none(),
        "a large batch empties it"
    );
}
