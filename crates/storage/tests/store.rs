//! The topic store: create, list, describe, delete, reopen, and the errors
//! each gets for bad input.

mod common;

use std::sync::Arc;

use carteiro_storage::store::{PARTITIONS_MAX, partition_dir};
use carteiro_storage::{
    FlushPolicy, Log, LogConfig, LogOptions, ManualClock, SimulatedMedium, Store, StoreError,
    StoreOptions, TopicConfig,
};
use common::*;

#[test]
fn topics_are_created_listed_reopened_and_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path(), store_options()).expect("opens");
        let orders = store
            .create_topic("orders", small_topic(3))
            .expect("create");
        assert_eq!(orders.partitions().len(), 3);
        let audit_config = TopicConfig {
            partitions: 1,
            log: LogConfig {
                flush: FlushPolicy::IntervalMs(10),
                retention_bytes: Some(1 << 20),
                ..small_config(8192)
            },
        };
        store
            .create_topic("audit.log_v-1", audit_config.clone())
            .expect("create");
        for p in 0..3 {
            assert!(partition_dir(dir.path(), "orders", p).is_dir());
            store
                .partition("orders", p)
                .expect("partition")
                .append(&batch(&format!("o{p}"), 2, 1))
                .expect("append");
        }
        let names: Vec<_> = store
            .topics()
            .iter()
            .map(|t| t.name().to_string())
            .collect();
        assert_eq!(names, vec!["audit.log_v-1", "orders"]);
        assert_eq!(
            store.topic("audit.log_v-1").expect("topic").config(),
            &audit_config
        );
        store.close().expect("close");
    }
    let store = Store::open(dir.path(), store_options()).expect("reopens");
    assert_eq!(store.topics().len(), 2);
    assert_eq!(
        store
            .topic("audit.log_v-1")
            .expect("topic")
            .config()
            .log
            .flush,
        FlushPolicy::IntervalMs(10)
    );
    for p in 0..3 {
        let log = store.partition("orders", p).expect("partition");
        assert_eq!(
            all_values(&log),
            vec![
                format!("o{p}-0").into_bytes(),
                format!("o{p}-1").into_bytes()
            ]
        );
    }
    store.delete_topic("orders").expect("delete");
    assert!(
        !partition_dir(dir.path(), "orders", 0).exists(),
        "its data goes"
    );
    assert!(matches!(
        store.topic("orders"),
        Err(StoreError::UnknownTopic { .. })
    ));
    drop(store);
    let store = Store::open(dir.path(), store_options()).expect("reopens");
    assert_eq!(store.topics().len(), 1);
    // The name is free again, and the new topic starts empty.
    let again = store
        .create_topic("orders", small_topic(1))
        .expect("recreate");
    assert_eq!(again.partition(0).expect("p0").end_offset(), 0);
}

#[test]
fn bad_topic_input_gets_a_clear_error_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), store_options()).expect("opens");
    store.create_topic("t", small_topic(1)).expect("create");
    let long = "x".repeat(250);
    for (name, fragment) in [
        ("", "got 0"),
        (long.as_str(), "got 250"),
        ("a/b", "'/'"),
        ("spaces here", "' '"),
        ("..", "'..'"),
        ("ünïcode", "'ü'"),
    ] {
        let err = store
            .create_topic(name, small_topic(1))
            .expect_err("invalid name");
        assert!(
            matches!(err, StoreError::InvalidTopicName { .. }),
            "{name:?}: {err}"
        );
        assert!(err.to_string().contains(fragment), "{name:?}: {err}");
    }
    assert!(
        store.create_topic(&"y".repeat(249), small_topic(1)).is_ok(),
        "249 characters is the limit"
    );
    assert!(matches!(
        store.create_topic("t", small_topic(2)),
        Err(StoreError::TopicExists { .. })
    ));
    let err = store
        .create_topic("zero", small_topic(0))
        .expect_err("no partitions");
    assert!(
        err.to_string().contains("partitions is 0")
            && err.to_string().contains(&PARTITIONS_MAX.to_string()),
        "{err}"
    );
    let err = store
        .create_topic(
            "tiny",
            TopicConfig {
                partitions: 1,
                log: LogConfig {
                    segment_bytes: 5,
                    ..LogConfig::default()
                },
            },
        )
        .expect_err("bad config");
    assert!(err.to_string().contains("segment_bytes is 5"), "{err}");
    assert!(matches!(
        store.partition("t", 1),
        Err(StoreError::UnknownPartition {
            partition: 1,
            count: 1,
            ..
        })
    ));
    assert!(matches!(
        store.delete_topic("nope"),
        Err(StoreError::UnknownTopic { .. })
    ));
    assert_eq!(store.topics().len(), 2);
    assert_eq!(store.topic("t").expect("kept").config().partitions, 1);
}

#[test]
fn a_second_store_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = Store::open(dir.path(), store_options()).expect("opens");
    let err = Store::open(dir.path(), store_options()).expect_err("locked");
    assert!(err.to_string().contains("locked"), "{err}");
}

#[test]
fn maintenance_applies_retention_and_interval_flushes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(5_000_000);
    let options = StoreOptions {
        log: LogOptions {
            clock: Arc::new(clock.clone()),
            ..LogOptions::default()
        },
        maintenance_interval_ms: None,
        retention_check_interval_ms: 1,
    };
    let store = Store::open(dir.path(), options).expect("opens");
    let config = LogConfig {
        retention_ms: Some(1000),
        flush: FlushPolicy::IntervalMs(10),
        ..small_config(1024)
    };
    let topic = store
        .create_topic(
            "r",
            TopicConfig {
                partitions: 1,
                log: config,
            },
        )
        .expect("create");
    let log = topic.partition(0).expect("p0").clone();
    for i in 0..40 {
        log.append(&batch(&format!("m{i}"), 2, 5_000_000))
            .expect("append");
    }
    clock.advance(20);
    store.run_maintenance(false);
    assert_eq!(log.durable_offset(), log.end_offset(), "interval flush ran");
    let segments = log.stats().segment_count;
    clock.advance(5_000);
    store.run_maintenance(true);
    assert_eq!(
        log.stats().segment_count,
        1,
        "all closed segments expired (had {segments})"
    );
    assert!(log.start_offset() > 0);
}

/// The recovery checkpoint's offset field (bytes 8..16, big-endian; see
/// docs/format.md).
fn recovery_point(dir: &std::path::Path) -> u64 {
    let bytes = std::fs::read(dir.join("recovery-point.checkpoint")).expect("checkpoint");
    u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes"))
}

/// A store whose one log ("c", partition 0) finds its checkpoint due 100 ms
/// (on `clock`) after the last, with a maintenance thread or without one.
fn checkpointing_store(
    maintenance_interval_ms: Option<u64>,
) -> (tempfile::TempDir, Arc<Store>, ManualClock, Arc<Log>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(5_000_000);
    let options = StoreOptions {
        log: LogOptions {
            clock: Arc::new(clock.clone()),
            ..LogOptions::default()
        },
        maintenance_interval_ms,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), options).expect("opens");
    let config = TopicConfig {
        partitions: 1,
        log: LogConfig {
            checkpoint_interval_ms: 100,
            ..small_config(1 << 20)
        },
    };
    let topic = store.create_topic("c", config).expect("create");
    let log = topic.partition(0).expect("p0").clone();
    (dir, store, clock, log)
}

#[test]
fn with_a_maintenance_thread_the_due_checkpoint_is_written_by_maintenance_not_by_the_sync() {
    // A thread that will not wake during the test; passes run by hand.
    let (dir, store, clock, log) = checkpointing_store(Some(3_600_000));
    let log_dir = partition_dir(dir.path(), "c", 0);
    for i in 0..10 {
        log.append(&batch(&format!("a{i}"), 2, 5_000_000))
            .expect("append");
    }
    clock.advance(200);
    log.append(&batch("due", 2, 5_000_200)).expect("append");
    assert_eq!(log.durable_offset(), 22);
    assert_eq!(
        recovery_point(&log_dir),
        0,
        "the sync that found it due left it to maintenance"
    );
    store.run_maintenance(false);
    assert_eq!(recovery_point(&log_dir), 22, "maintenance wrote it");
    store.run_maintenance(false);
    assert_eq!(recovery_point(&log_dir), 22, "and only once");
}

#[test]
fn without_a_maintenance_thread_the_sync_writes_the_due_checkpoint() {
    let (dir, _store, clock, log) = checkpointing_store(None);
    log.append(&batch("a", 2, 5_000_000)).expect("append");
    clock.advance(200);
    log.append(&batch("due", 2, 5_000_200)).expect("append");
    assert_eq!(recovery_point(&partition_dir(dir.path(), "c", 0)), 4);
}

#[test]
fn a_topic_grows_keeping_its_logs_and_data_and_reopens_grown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stored: Vec<Vec<Vec<u8>>>;
    {
        let store = Store::open(dir.path(), store_options()).expect("opens");
        let before = store
            .create_topic("orders", small_topic(2))
            .expect("create");
        for (p, log) in before.partitions().iter().enumerate() {
            log.append(&batch(&format!("o{p}"), 3, 1)).expect("append");
        }
        let grown = store.add_partitions("orders", 5).expect("grows");
        assert_eq!(grown.config().partitions, 5);
        assert_eq!(grown.partitions().len(), 5);
        assert_eq!(grown.created_ms(), before.created_ms());
        assert_eq!(grown.config().log, before.config().log);
        for p in 0..2 {
            assert!(
                Arc::ptr_eq(&before.partitions()[p], &grown.partitions()[p]),
                "partition {p} keeps its log, not reopened"
            );
        }
        assert!(
            Arc::ptr_eq(&store.topic("orders").expect("topic"), &grown),
            "the grown topic replaces the old one"
        );
        assert_eq!(before.partitions().len(), 2, "the old view is unchanged");
        for p in 2..5 {
            let log = store.partition("orders", p).expect("a new partition");
            assert_eq!(log.end_offset(), 0, "starts empty");
            log.append(&batch(&format!("o{p}"), 1, 1)).expect("append");
        }
        stored = (0..5)
            .map(|p| all_values(&store.partition("orders", p).expect("partition")))
            .collect();
        assert_eq!(stored[0].len(), 3, "old data untouched");
        store.close().expect("close");
    }
    {
        let store = Store::open(dir.path(), store_options()).expect("reopens");
        let topic = store.topic("orders").expect("topic");
        assert_eq!(topic.config().partitions, 5);
        let found: Vec<_> = topic.partitions().iter().map(|l| all_values(l)).collect();
        assert_eq!(found, stored);
        // Grown again after a restart: markers of three ages now.
        store.add_partitions("orders", 6).expect("grows again");
    }
    // A lost topics.meta is rebuilt with the largest count the markers name.
    std::fs::remove_file(dir.path().join("topics.meta")).expect("lose topics.meta");
    let store = Store::open(dir.path(), store_options()).expect("rebuilds");
    let topic = store.topic("orders").expect("topic");
    assert_eq!(topic.config().partitions, 6);
    for (p, values) in stored.iter().enumerate() {
        assert_eq!(&all_values(&topic.partitions()[p]), values);
    }
}

#[test]
fn growing_refuses_a_count_not_above_the_current_or_over_the_limit_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), store_options()).expect("opens");
    store.create_topic("t", small_topic(3)).expect("create");
    for asked in [0, 2, 3, PARTITIONS_MAX + 1, u32::MAX] {
        let err = store.add_partitions("t", asked).expect_err("refused");
        match &err {
            StoreError::InvalidPartitionIncrease {
                topic,
                current,
                asked: a,
                max,
            } => assert_eq!(
                (topic.as_str(), *current, *a, *max),
                ("t", 3, asked, PARTITIONS_MAX)
            ),
            other => panic!("expected InvalidPartitionIncrease, got {other:?}"),
        }
        let message = err.to_string();
        for part in [
            "\"t\"",
            "3 partitions",
            &asked.to_string(),
            &PARTITIONS_MAX.to_string(),
        ] {
            assert!(message.contains(part), "{message:?} lacks {part:?}");
        }
    }
    assert!(matches!(
        store.add_partitions("nope", 2),
        Err(StoreError::UnknownTopic { .. })
    ));
    assert_eq!(store.topic("t").expect("kept").partitions().len(), 3);
    assert!(!partition_dir(dir.path(), "t", 3).exists());
    // The limit itself is allowed (in memory: 1,024 logs keep 3,072 files open).
    let medium = SimulatedMedium::new();
    let options = StoreOptions {
        log: sim_options(&medium),
        ..store_options()
    };
    let store = Store::open("/data", options).expect("opens");
    store.create_topic("t", small_topic(1)).expect("create");
    let grown = store
        .add_partitions("t", PARTITIONS_MAX)
        .expect("up to the limit");
    assert_eq!(grown.partitions().len(), PARTITIONS_MAX as usize);
}
