//! The data directory, tried as an outside operator would: directories
//! that are not ours beside the data, a lost or damaged `topics.meta`,
//! leftovers of interrupted creates and deletes, a missing partition
//! directory, a stolen lock, and a full disk. Every case checks that no
//! record is lost, hidden or refused, and that what is not ours is left
//! alone.

mod common;

use std::path::Path;

use carteiro_storage::store::partition_dir;
use carteiro_storage::{LogOptions, Medium, SimulatedMedium, Store, StoreError, StoreOptions};
use common::*;

fn sim_store_options(medium: &SimulatedMedium) -> StoreOptions {
    StoreOptions {
        log: sim_options(medium),
        maintenance_interval_ms: None,
        ..StoreOptions::default()
    }
}

/// A store in `dir` with topic `orders` (3 partitions) holding 5 records
/// per partition; returns the values per partition.
fn orders(dir: &Path) -> Vec<Vec<Vec<u8>>> {
    let store = Store::open(dir, store_options()).expect("opens");
    let topic = store
        .create_topic("orders", small_topic(3))
        .expect("create");
    (0..3)
        .map(|p| {
            let log = topic.partition(p).expect("partition");
            log.append(&batch(&format!("p{p}"), 5, 1)).expect("append");
            all_values(log)
        })
        .collect()
}

fn values(store: &Store, topic: &str) -> Vec<Vec<Vec<u8>>> {
    let topic = store.topic(topic).expect("topic");
    topic
        .partitions()
        .iter()
        .map(|log| all_values(log))
        .collect()
}

#[test]
fn directories_that_are_not_ours_are_left_alone_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stored = orders(dir.path());
    // A user's directories beside the data, shaped like partition directories.
    for name in ["photos-2023", "backup-1", "orders-7"] {
        std::fs::create_dir_all(dir.path().join(name)).expect("mkdir");
        std::fs::write(dir.path().join(name).join("keep.txt"), name).expect("write");
    }
    std::fs::write(dir.path().join("notes-3"), "a file").expect("write");
    let store = Store::open(dir.path(), store_options()).expect("reopens");
    for name in ["photos-2023", "backup-1", "orders-7", "notes-3"] {
        assert!(dir.path().join(name).exists(), "{name} was removed");
        assert!(
            store.unknown_entries().contains(&dir.path().join(name)),
            "{name} not reported: {:?}",
            store.unknown_entries()
        );
    }
    assert_eq!(values(&store, "orders"), stored);
    // Creating a topic whose directory would be the user's is refused, and
    // the directory is untouched.
    let err = store
        .create_topic("backup", small_topic(2))
        .expect_err("backup-1 is in the way");
    assert!(
        matches!(&err, StoreError::DirectoryInUse { path, .. } if path.ends_with("backup-1")),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("not a Carteiro partition directory"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("backup-1/keep.txt")).expect("kept"),
        "backup-1"
    );
    assert!(
        !partition_dir(dir.path(), "backup", 0).exists(),
        "nothing half-made is left"
    );
    assert!(store.topic("backup").is_err());
}

#[test]
fn a_missing_or_damaged_topic_list_is_rebuilt_from_the_partition_markers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stored = orders(dir.path());
    let meta = dir.path().join("topics.meta");
    std::fs::remove_file(&meta).expect("lose topics.meta");
    {
        let store = Store::open(dir.path(), store_options()).expect("rebuilds");
        assert_eq!(
            values(&store, "orders"),
            stored,
            "every record still served"
        );
        assert_eq!(
            store.topic("orders").expect("topic").config().log,
            small_config(4096)
        );
    }
    assert!(meta.exists(), "the rebuilt list is written back");
    let mut bytes = std::fs::read(&meta).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x20;
    std::fs::write(&meta, &bytes).expect("damage");
    let store = Store::open(dir.path(), store_options()).expect("rebuilds");
    assert_eq!(values(&store, "orders"), stored);
}

#[test]
fn a_lost_topic_list_that_cannot_be_rebuilt_is_refused_and_nothing_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    orders(dir.path());
    std::fs::remove_file(dir.path().join("topics.meta")).expect("lose topics.meta");
    // One partition directory lost its marker too: it holds segments that
    // nothing can be said about.
    let p1 = partition_dir(dir.path(), "orders", 1);
    std::fs::remove_file(p1.join("partition.meta")).expect("lose the marker");
    let err = Store::open(dir.path(), store_options()).expect_err("refused");
    let message = err.to_string();
    assert!(
        message.contains("topics.meta")
            && message.contains("missing")
            && message.contains("orders-1"),
        "{message}"
    );
    for p in 0..3 {
        assert!(
            partition_dir(dir.path(), "orders", p)
                .join("00000000000000000000.log")
                .exists()
        );
    }
    // The same with every marker there but one partition directory gone.
    let dir = tempfile::tempdir().expect("tempdir");
    orders(dir.path());
    std::fs::remove_file(dir.path().join("topics.meta")).expect("lose topics.meta");
    std::fs::remove_dir_all(partition_dir(dir.path(), "orders", 2)).expect("lose a partition");
    let err = Store::open(dir.path(), store_options()).expect_err("refused");
    assert!(
        err.to_string()
            .contains("directories hold partitions [0, 1]"),
        "{err}"
    );
    assert!(partition_dir(dir.path(), "orders", 0).exists());
}

#[test]
fn a_missing_partition_directory_is_refused_and_repair_recreates_it_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stored = orders(dir.path());
    std::fs::remove_dir_all(partition_dir(dir.path(), "orders", 1)).expect("lose a partition");
    match Store::open(dir.path(), store_options()) {
        Err(StoreError::MissingPartition {
            topic, partition, ..
        }) => {
            assert_eq!((topic.as_str(), partition), ("orders", 1));
        }
        other => panic!("expected MissingPartition, got {other:?}"),
    }
    let repair = StoreOptions {
        log: LogOptions {
            repair: true,
            ..LogOptions::default()
        },
        ..store_options()
    };
    let store = Store::open(dir.path(), repair).expect("repair opens");
    let found = values(&store, "orders");
    assert_eq!(found[0], stored[0]);
    assert!(found[1].is_empty());
    assert_eq!(found[2], stored[2]);
}

/// Copies the directory `from` (one level of files) to `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

#[test]
fn leftovers_of_an_interrupted_create_or_delete_are_removed_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stored = orders(dir.path());
    // A partition written by a create whose topic was never recorded: made
    // in another data directory, so its marker names a topic this one lacks.
    let other = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(other.path(), store_options()).expect("opens");
        store.create_topic("ghost", small_topic(1)).expect("create");
    }
    copy_dir(
        &partition_dir(other.path(), "ghost", 0),
        &partition_dir(dir.path(), "ghost", 0),
    );
    copy_dir(
        &partition_dir(other.path(), "ghost", 0),
        &dir.path().join("ghost-0.deleted"),
    );
    // A copy of a real partition under another partition's name: its marker
    // does not match its name, so it is not provably ours.
    copy_dir(
        &partition_dir(dir.path(), "orders", 0),
        &dir.path().join("orders-9"),
    );
    let store = Store::open(dir.path(), store_options()).expect("reopens");
    assert!(!partition_dir(dir.path(), "ghost", 0).exists());
    assert!(!dir.path().join("ghost-0.deleted").exists());
    assert!(
        dir.path().join("orders-9").exists(),
        "a marker that does not match is not proof"
    );
    assert_eq!(values(&store, "orders"), stored);
}

#[test]
fn the_producer_id_file_and_snapshots_are_ours_and_their_temporaries_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stored = orders(dir.path());
    {
        let store = Store::open(dir.path(), store_options()).expect("reopens");
        assert_eq!(store.allocate_producer_id().expect("an id"), 0);
    }
    let snapshot = partition_dir(dir.path(), "orders", 0).join("00000000000000000005.snapshot");
    assert!(snapshot.exists(), "written at close");
    // Temporary files of writes a crash interrupted.
    std::fs::write(dir.path().join("producer-ids.meta.tmp"), "half").expect("write");
    let snapshot_tmp =
        partition_dir(dir.path(), "orders", 0).join("00000000000000000005.snapshot.tmp");
    std::fs::write(&snapshot_tmp, "half").expect("write");
    let store = Store::open(dir.path(), store_options()).expect("reopens");
    assert!(
        store.unknown_entries().is_empty(),
        "{:?}",
        store.unknown_entries()
    );
    assert!(dir.path().join("producer-ids.meta").exists());
    assert!(!dir.path().join("producer-ids.meta.tmp").exists());
    assert!(!snapshot_tmp.exists());
    assert!(snapshot.exists());
    assert_eq!(values(&store, "orders"), stored);
    assert!(store.allocate_producer_id().expect("an id") >= 1000);
}

#[test]
fn a_delete_interrupted_after_renaming_a_partition_aside_is_finished_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    orders(dir.path());
    {
        let store = Store::open(dir.path(), store_options()).expect("opens");
        store.create_topic("kept", small_topic(1)).expect("create");
    }
    // As a crash after the first rename of a delete leaves it.
    std::fs::rename(
        partition_dir(dir.path(), "orders", 1),
        dir.path().join("orders-1.deleted"),
    )
    .expect("rename");
    let store = Store::open(dir.path(), store_options()).expect("reopens");
    assert!(store.topic("orders").is_err(), "the deletion was finished");
    for p in 0..3 {
        assert!(!partition_dir(dir.path(), "orders", p).exists());
    }
    assert!(!dir.path().join("orders-1.deleted").exists());
    assert!(store.topic("kept").is_ok());
    drop(store);
    let store = Store::open(dir.path(), store_options()).expect("reopens again");
    assert_eq!(store.topics().len(), 1);
}

#[test]
fn the_lock_is_on_the_directory_itself_and_cannot_be_stolen_by_deleting_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = Store::open(dir.path(), store_options()).expect("opens");
    // Whatever files an operator deletes, the second open is refused.
    for entry in std::fs::read_dir(dir.path()).expect("list") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            std::fs::remove_file(path).expect("delete");
        }
    }
    let err = Store::open(dir.path(), store_options()).expect_err("still locked");
    assert!(
        err.to_string().contains("locked by another process"),
        "{err}"
    );
    drop(first);
    Store::open(dir.path(), store_options()).expect("free once the first store is gone");
}

#[test]
fn a_topic_creation_that_runs_out_of_space_leaves_nothing_behind() {
    let medium = SimulatedMedium::new();
    let store = Store::open("/data", sim_store_options(&medium)).expect("opens");
    store.create_topic("small", small_topic(1)).expect("create");
    let used = medium.used_bytes();
    // Room for the first partition, not the second.
    medium.set_space_limit(Some(used + 4096 + 1024));
    let err = store
        .create_topic("big", small_topic(3))
        .expect_err("disk full");
    assert!(err.to_string().contains("no space left"), "{err}");
    assert_eq!(
        medium.used_bytes(),
        used,
        "every byte it took is given back"
    );
    assert!(
        medium
            .list_dir(Path::new("/data"))
            .expect("list")
            .iter()
            .all(|n| !n.starts_with("big"))
    );
    assert!(store.topic("big").is_err());
    medium.set_space_limit(None);
    store
        .create_topic("big", small_topic(3))
        .expect("creates once there is room");
}

#[test]
fn on_a_full_disk_appends_fail_and_succeed_again_once_space_is_freed_and_delete_works_at_zero_free()
{
    let medium = SimulatedMedium::new();
    let store = Store::open("/data", sim_store_options(&medium)).expect("opens");
    let keep = store.create_topic("keep", small_topic(1)).expect("create");
    store
        .create_topic("scratch", small_topic(2))
        .expect("create");
    let log = keep.partition(0).expect("partition").clone();
    let mut acked = Vec::new();
    for i in 0..3 {
        let b = batch(&format!("k{i}"), 4, 1);
        log.append(&b).expect("append");
        acked.push(b);
    }
    // The disk fills up: appends that need a new segment fail with a full
    // disk, and nothing of them is stored.
    medium.set_space_limit(Some(medium.used_bytes()));
    let mut refused = 0;
    for i in 0..100 {
        match log.append(&batch(&format!("x{i}"), 4, 1)) {
            Ok(_) => acked.push(batch(&format!("x{i}"), 4, 1)),
            Err(e) => {
                assert!(e.to_string().contains("no space left"), "{e}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "the disk never filled");
    assert_eq!(all_values(&log), values_of(&acked));
    // Deleting a topic works with not one byte free, and frees its space.
    let before = medium.used_bytes();
    store
        .delete_topic("scratch")
        .expect("delete at zero bytes free");
    assert!(medium.used_bytes() < before);
    // With room again, the same log takes appends: no restart needed.
    medium.set_space_limit(None);
    let b = batch("after", 2, 1);
    log.append(&b).expect("append once there is room");
    acked.push(b);
    assert_eq!(all_values(&log), values_of(&acked));
    drop(log);
    drop(keep);
    drop(store);
    let store = Store::open("/data", sim_store_options(&medium)).expect("reopens");
    assert!(store.topic("scratch").is_err());
    assert_eq!(values(&store, "keep")[0], values_of(&acked));
}

#[test]
fn the_store_opens_on_a_full_disk_after_a_crash_and_loses_nothing() {
    let medium = SimulatedMedium::new();
    let mut acked = Vec::new();
    {
        let store = Store::open("/data", sim_store_options(&medium)).expect("opens");
        let topic = store.create_topic("t", small_topic(1)).expect("create");
        let log = topic.partition(0).expect("partition");
        for i in 0..6 {
            let b = batch(&format!("v{i}"), 3, 1);
            log.append(&b).expect("append");
            acked.push(b);
        }
        // Crash: no close. The disk is full from here on.
        std::mem::forget(store);
    }
    let rebooted = medium.after_power_loss();
    rebooted.set_space_limit(Some(rebooted.used_bytes()));
    let store = Store::open("/data", sim_store_options(&rebooted)).expect("opens on a full disk");
    assert_eq!(values(&store, "t")[0], values_of(&acked));
}

/// A simulated medium holding topic `orders` (3 partitions, 5 records
/// each), closed cleanly; returns it with the values per partition.
fn sim_orders() -> (SimulatedMedium, Vec<Vec<Vec<u8>>>) {
    let medium = SimulatedMedium::new();
    let store = Store::open("/data", sim_store_options(&medium)).expect("opens");
    let topic = store
        .create_topic("orders", small_topic(3))
        .expect("create");
    for (p, log) in topic.partitions().iter().enumerate() {
        log.append(&batch(&format!("p{p}"), 5, 1)).expect("append");
    }
    let stored = values(&store, "orders");
    store.close().expect("close");
    (medium, stored)
}

#[test]
fn a_growth_cut_by_power_loss_at_any_sync_point_opens_with_the_old_count_or_the_new() {
    let (base, stored) = sim_orders();
    // How many sync points a whole growth passes.
    let full = base.after_power_loss();
    let store = Store::open("/data", sim_store_options(&full)).expect("opens");
    let start = full.syncs();
    store.add_partitions("orders", 5).expect("grows");
    let sync_points = full.syncs() - start;
    drop(store);
    println!("growing 3 partitions to 5 passes {sync_points} sync points; losing power at each");
    let mut counts = std::collections::BTreeSet::new();
    for n in 0..=sync_points {
        let medium = base.after_power_loss();
        let store = Store::open("/data", sim_store_options(&medium)).expect("opens");
        medium.fail_after_syncs(n);
        let grown = store.add_partitions("orders", 5);
        assert_eq!(
            grown.is_err(),
            medium.is_powered_off(),
            "after {n} syncs: {grown:?}"
        );
        drop(store);
        let rebooted = medium.after_power_loss();
        let store = Store::open("/data", sim_store_options(&rebooted))
            .unwrap_or_else(|e| panic!("power loss after {n} of {sync_points} syncs: {e}"));
        let found = values(&store, "orders");
        counts.insert(found.len());
        if grown.is_ok() {
            assert_eq!(found.len(), 5, "a growth that returned is durable");
        }
        assert!(
            found.len() == 3 || found.len() == 5,
            "after {n} syncs: {} partitions",
            found.len()
        );
        assert_eq!(found[..3], stored[..], "after {n} syncs: old data changed");
        assert!(found[3..].iter().all(Vec::is_empty), "after {n} syncs");
        // A crash between making a directory and writing its marker
        // leaves an empty directory: not provably ours, so reported, and
        // taken by the next growth (nothing in it to lose).
        for entry in store.unknown_entries() {
            assert!(
                entry.ends_with("orders-3") || entry.ends_with("orders-4"),
                "after {n} syncs: {entry:?}"
            );
            assert_eq!(
                rebooted.list_dir(entry).expect("list"),
                Vec::<String>::new()
            );
        }
        let again = store
            .add_partitions("orders", 6)
            .expect("grows after the crash");
        again.partitions()[5]
            .append(&batch("new", 1, 1))
            .expect("append to a new partition");
        drop(again);
        drop(store);
        let store = Store::open("/data", sim_store_options(&rebooted)).expect("reopens");
        assert!(store.unknown_entries().is_empty(), "after {n} syncs");
        let found = values(&store, "orders");
        assert_eq!(found.len(), 6);
        assert_eq!(found[..3], stored[..]);
        assert_eq!(found[5].len(), 1);
    }
    assert_eq!(
        counts.into_iter().collect::<Vec<_>>(),
        vec![3, 5],
        "both outcomes were met"
    );
}

#[test]
fn a_growth_that_runs_out_of_space_leaves_nothing_behind() {
    let (medium, stored) = sim_orders();
    let store = Store::open("/data", sim_store_options(&medium)).expect("opens");
    let used = medium.used_bytes();
    // Room for the first new partition, not the second.
    medium.set_space_limit(Some(used + 4096 + 1024));
    let err = store.add_partitions("orders", 5).expect_err("disk full");
    assert!(err.to_string().contains("no space left"), "{err}");
    assert_eq!(
        medium.used_bytes(),
        used,
        "every byte it took is given back"
    );
    for p in 3..5 {
        assert!(!medium.is_dir(&partition_dir(Path::new("/data"), "orders", p)));
    }
    assert_eq!(values(&store, "orders"), stored);
    medium.set_space_limit(None);
    store
        .add_partitions("orders", 5)
        .expect("grows once there is room");
    drop(store);
    let store = Store::open("/data", sim_store_options(&medium)).expect("reopens");
    assert_eq!(values(&store, "orders").len(), 5);
}
