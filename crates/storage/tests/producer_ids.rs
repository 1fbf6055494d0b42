//! Idempotent producers through the store: producer ids are never handed
//! out twice, across reopens and threads and past a damaged producer-id
//! file; a topic's deletion takes its producers' snapshots with it.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use carteiro_storage::{
    AppendError, LogOptions, Medium, PRODUCER_ID_BLOCK, SimulatedMedium, Store, StoreError,
    StoreOptions, TopicConfig,
};
use common::*;

fn store_options(medium: &SimulatedMedium, repair: bool) -> StoreOptions {
    StoreOptions {
        log: LogOptions {
            repair,
            ..sim_options(medium)
        },
        maintenance_interval_ms: None,
        ..StoreOptions::default()
    }
}

#[test]
fn producer_ids_are_never_handed_out_twice_across_reopens_and_threads() {
    let medium = SimulatedMedium::new();
    let store = Store::open("/data", store_options(&medium, false)).expect("opens");
    let first: Vec<i64> = (0..5)
        .map(|_| store.allocate_producer_id().expect("an id"))
        .collect();
    assert_eq!(first, vec![0, 1, 2, 3, 4]);
    drop(store);
    let store = Arc::new(Store::open("/data", store_options(&medium, false)).expect("reopens"));
    assert!(
        store.unknown_entries().is_empty(),
        "producer-ids.meta is ours: {:?}",
        store.unknown_entries()
    );
    // A restart skips the rest of the block.
    assert_eq!(
        store.allocate_producer_id().expect("an id"),
        PRODUCER_ID_BLOCK
    );
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..700)
                    .map(|_| store.allocate_producer_id().expect("an id"))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ids: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect();
    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "no id twice");
    assert_eq!(
        unique.iter().copied().collect::<Vec<_>>(),
        (PRODUCER_ID_BLOCK + 1..PRODUCER_ID_BLOCK + 2801).collect::<Vec<_>>()
    );
}

#[test]
fn a_damaged_producer_id_file_refuses_to_open_and_repair_restarts_past_every_id_in_use() {
    let medium = SimulatedMedium::new();
    let ids_file = PathBuf::from("/data/producer-ids.meta");
    {
        let store = Store::open("/data", store_options(&medium, false)).expect("opens");
        store.allocate_producer_id().expect("an id");
        let topic = store
            .create_topic(
                "t",
                TopicConfig {
                    partitions: 2,
                    log: small_config(4096),
                },
            )
            .expect("create");
        // A producer id this store never handed out, as a partition holds it.
        topic.partitions()[1]
            .append(&producer_batch(4_242, 0, 0, "x", 1, 1))
            .expect("appended");
    }
    damage(&medium, &ids_file, 9);
    let err = Store::open("/data", store_options(&medium, false)).expect_err("damaged");
    assert!(matches!(err, StoreError::CorruptMetadata { .. }), "{err}");
    assert!(err.to_string().contains("producer-ids.meta"), "{err}");
    // Repair alone makes the file whole again.
    drop(Store::open("/data", store_options(&medium, true)).expect("repair opens"));
    let store = Store::open("/data", store_options(&medium, false)).expect("whole again");
    let id = store.allocate_producer_id().expect("an id");
    assert_eq!(
        id,
        4_243 + PRODUCER_ID_BLOCK,
        "past the largest id in use, and a block"
    );
    drop(store);
    let store = Store::open("/data", store_options(&medium, false)).expect("rewritten, valid");
    assert!(store.allocate_producer_id().expect("an id") > id);
}

#[test]
fn a_topic_deletion_takes_its_producer_snapshots_with_it() {
    let medium = SimulatedMedium::new();
    let store = Store::open("/data", store_options(&medium, false)).expect("opens");
    let topic = store
        .create_topic(
            "gone",
            TopicConfig {
                partitions: 1,
                log: small_config(1024),
            },
        )
        .expect("create");
    for i in 0..20 {
        topic.partitions()[0]
            .append(&producer_batch(3, 0, i, "x", 1, 1))
            .expect("appended");
    }
    let dir = Path::new("/data/gone-0");
    assert!(
        medium
            .list_dir(dir)
            .expect("list")
            .iter()
            .any(|n| n.ends_with(".snapshot")),
        "rolls wrote snapshots"
    );
    drop(topic);
    store.delete_topic("gone").expect("delete");
    assert!(!medium.is_dir(dir));
    // A new topic of that name knows nothing of the old producers.
    let topic = store
        .create_topic(
            "gone",
            TopicConfig {
                partitions: 1,
                log: small_config(1024),
            },
        )
        .expect("create again");
    assert!(matches!(
        topic.partitions()[0].append(&producer_batch(3, 0, 20, "x", 1, 1)),
        Err(AppendError::UnknownProducerId { .. })
    ));
}
