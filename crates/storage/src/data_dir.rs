//! The data directory as the store finds it: which partition directories
//! are provably ours (they hold a `partition.meta` marker naming the topic
//! and partition their name says), which are being deleted, and what is
//! unknown and must be left alone. Besides them it holds two files of
//! ours: `topics.meta` and `producer-ids.meta`.
//!
//! The store never deletes what it cannot prove it created: only a
//! directory whose marker is valid and matches its name, or its own
//! temporary files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::StoreError;
use crate::medium::Medium;
use crate::metadata::{self, METADATA_FILE, PARTITION_MARKER_FILE, PartitionMarker, TopicRecord};
use crate::producers::ids::PRODUCER_IDS_FILE;
use crate::segment::{LOG_SUFFIX, parse_file_name};

/// Suffix of a partition directory whose topic is being deleted.
pub(crate) const DELETED_SUFFIX: &str = ".deleted";
/// The lock file of earlier versions, which locked a file rather than the
/// directory itself; known, and left alone.
const LEGACY_LOCK_FILE: &str = ".lock";

/// The directory of one partition.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// Where a partition directory goes while its topic is deleted.
pub(crate) fn deleted_dir(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}{DELETED_SUFFIX}"))
}

/// What the data directory holds.
#[derive(Debug, Default)]
pub(crate) struct Layout {
    /// `<topic>-<partition>` directories whose marker names them.
    pub partitions: Vec<(PathBuf, PartitionMarker)>,
    /// `<topic>-<partition>.deleted` directories whose marker names them.
    pub deleted: Vec<(PathBuf, PartitionMarker)>,
    /// Entries that are not ours, or not provably: left alone.
    pub unknown: Vec<PathBuf>,
    /// Unknown directories that hold segment files: partition directories
    /// of an earlier version, or whose marker was lost.
    pub unmarked_partitions: Vec<PathBuf>,
    /// Temporary files of ours (an interrupted `topics.meta` or
    /// `producer-ids.meta` write).
    pub leftovers: Vec<PathBuf>,
}

/// Reads the marker of a partition directory: `None` if it has none.
pub(crate) fn read_marker(
    medium: &dyn Medium,
    dir: &Path,
) -> Result<Option<Result<PartitionMarker, String>>, StoreError> {
    let path = dir.join(PARTITION_MARKER_FILE);
    let bytes = medium.read_file(&path).map_err(io_err("reading", &path))?;
    Ok(bytes.map(|b| metadata::decode_marker(&b)))
}

/// Writes the marker of a partition directory; durable.
pub(crate) fn write_marker(
    medium: &dyn Medium,
    dir: &Path,
    marker: &PartitionMarker,
) -> Result<(), StoreError> {
    let path = dir.join(PARTITION_MARKER_FILE);
    write_metadata_file(medium, &path, metadata::encode_marker(marker))
}

/// Replaces the metadata file at `path` with `encoded`; durable.
fn write_metadata_file(
    medium: &dyn Medium,
    path: &Path,
    encoded: Result<Vec<u8>, String>,
) -> Result<(), StoreError> {
    let bytes = encoded.map_err(|reason| StoreError::CorruptMetadata {
        path: path.to_path_buf(),
        reason,
    })?;
    medium
        .write_file_atomic(path, &bytes)
        .map_err(io_err("writing", path))
}

/// Maps an I/O error of `op` on `path` to a store error.
pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes the topic list to `topics.meta`; durable.
pub(crate) fn write_topic_list(
    medium: &dyn Medium,
    dir: &Path,
    records: &[TopicRecord],
) -> Result<(), StoreError> {
    write_metadata_file(medium, &dir.join(METADATA_FILE), metadata::encode(records))
}

/// The topic list: from `topics.meta`, or, if that is missing or damaged,
/// rebuilt from the partition markers (and written back), or refused.
pub(crate) fn read_topic_list(
    medium: &dyn Medium,
    dir: &Path,
    layout: &Layout,
) -> Result<Vec<TopicRecord>, StoreError> {
    let path = dir.join(METADATA_FILE);
    let why = match medium.read_file(&path).map_err(io_err("reading", &path))? {
        Some(bytes) => match metadata::decode(&bytes) {
            Ok(records) => return Ok(records),
            Err(reason) => format!("it is damaged ({reason})"),
        },
        None if layout.partitions.is_empty() && layout.unmarked_partitions.is_empty() => {
            return Ok(Vec::new());
        }
        None => "it is missing".to_string(),
    };
    if let Some(unmarked) = layout.unmarked_partitions.first() {
        return Err(StoreError::CorruptMetadata {
            path,
            reason: format!(
                "{why}, and it cannot be rebuilt: {} holds segment files but no partition marker;                  restore topics.meta from a backup",
                unmarked.display()
            ),
        });
    }
    let records = rebuild_topics(layout).map_err(|detail| StoreError::CorruptMetadata {
        path: path.clone(),
        reason: format!("{why}, and it cannot be rebuilt from the partition directories: {detail}"),
    })?;
    let names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
    tracing::warn!(file = %path.display(), %why, topics = ?names, "rebuilt topics.meta from the partition directories");
    write_topic_list(medium, dir, &records)?;
    Ok(records)
}

/// Removes everything in `dir` but its partition marker, which keeps the
/// directory provably ours until it is removed.
pub(crate) fn empty_but_marker(medium: &dyn Medium, dir: &Path) -> Result<(), StoreError> {
    let names = medium.list_dir(dir).map_err(io_err("listing", dir))?;
    for name in names {
        if name == PARTITION_MARKER_FILE {
            continue;
        }
        let path = dir.join(name);
        medium
            .remove_file(&path)
            .map_err(io_err("removing", &path))?;
    }
    medium.sync_dir(dir).map_err(io_err("syncing", dir))
}

/// True if `dir` holds a segment file.
fn holds_segments(medium: &dyn Medium, dir: &Path) -> bool {
    medium.list_dir(dir).is_ok_and(|names| {
        names
            .iter()
            .any(|n| parse_file_name(n, LOG_SUFFIX).is_some())
    })
}

/// Sorts the entries of the data directory `dir`.
pub(crate) fn scan(medium: &dyn Medium, dir: &Path) -> Result<Layout, StoreError> {
    let names = medium.list_dir(dir).map_err(io_err("listing", dir))?;
    let mut layout = Layout::default();
    for name in names {
        let path = dir.join(&name);
        if name == METADATA_FILE || name == PRODUCER_IDS_FILE || name == LEGACY_LOCK_FILE {
            continue;
        }
        if name == format!("{METADATA_FILE}.tmp") || name == format!("{PRODUCER_IDS_FILE}.tmp") {
            layout.leftovers.push(path);
            continue;
        }
        if !medium.is_dir(&path) {
            layout.unknown.push(path);
            continue;
        }
        let marker = match read_marker(medium, &path)? {
            Some(Ok(marker)) => Some(marker),
            Some(Err(reason)) => {
                tracing::warn!(dir = %path.display(), %reason, "damaged partition marker: leaving the directory alone");
                None
            }
            None => None,
        };
        let named = |m: &PartitionMarker| {
            let expected = format!("{}-{}", m.topic.name, m.partition);
            if name == expected {
                Some(false)
            } else if name == format!("{expected}{DELETED_SUFFIX}") {
                Some(true)
            } else {
                None
            }
        };
        match marker.as_ref().map(|m| (named(m), m)) {
            Some((Some(false), m)) => layout.partitions.push((path, m.clone())),
            Some((Some(true), m)) => layout.deleted.push((path, m.clone())),
            _ => {
                if holds_segments(medium, &path) {
                    layout.unmarked_partitions.push(path.clone());
                }
                layout.unknown.push(path);
            }
        }
    }
    Ok(layout)
}

/// The topic list the partition directories' markers describe. All of a
/// topic's markers must describe it alike but for the partition count: a
/// topic that grew keeps the markers of its first partitions, which name
/// the count it had when they were made, so its count is the largest any
/// of its markers names, and every partition below it must be there.
pub(crate) fn rebuild_topics(layout: &Layout) -> Result<Vec<TopicRecord>, String> {
    let mut topics: BTreeMap<String, (TopicRecord, Vec<u32>)> = BTreeMap::new();
    for (path, marker) in &layout.partitions {
        let entry = topics
            .entry(marker.topic.name.clone())
            .or_insert_with(|| (marker.topic.clone(), Vec::new()));
        if !entry.0.same_topic(&marker.topic) {
            return Err(format!(
                "{} describes topic {:?} differently from its other partitions",
                path.display(),
                marker.topic.name
            ));
        }
        entry.0.partitions = entry.0.partitions.max(marker.topic.partitions);
        entry.1.push(marker.partition);
    }
    let mut records = Vec::with_capacity(topics.len());
    for (name, (record, mut partitions)) in topics {
        partitions.sort_unstable();
        let expected: Vec<u32> = (0..record.partitions).collect();
        if partitions != expected {
            return Err(format!(
                "topic {name:?} has {} partitions, but directories hold partitions {partitions:?}",
                record.partitions
            ));
        }
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogConfig;

    fn marker(name: &str, partitions: u32, partition: u32) -> PartitionMarker {
        PartitionMarker {
            partition,
            topic: TopicRecord {
                name: name.into(),
                partitions,
                config: LogConfig::default(),
                created_ms: 7,
            },
        }
    }

    #[test]
    fn topics_are_rebuilt_only_from_complete_partition_sets() {
        let mut layout = Layout::default();
        for p in 0..2 {
            layout
                .partitions
                .push((PathBuf::from(format!("orders-{p}")), marker("orders", 2, p)));
        }
        let records = rebuild_topics(&layout).expect("complete");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].partitions, 2);
        layout.partitions.pop();
        let err = rebuild_topics(&layout).expect_err("partition 1 is missing");
        assert!(err.contains("\"orders\" has 2 partitions"), "{err}");
    }

    #[test]
    fn a_grown_topic_is_rebuilt_with_the_largest_count_its_markers_name() {
        let mut layout = Layout::default();
        // Partitions 0 and 1 were made with the topic, 2 to 4 when it grew.
        for (p, count) in [(0, 2), (1, 2), (2, 5), (3, 5), (4, 5)] {
            layout.partitions.push((
                PathBuf::from(format!("orders-{p}")),
                marker("orders", count, p),
            ));
        }
        let records = rebuild_topics(&layout).expect("complete");
        assert_eq!(records[0].partitions, 5);
        layout.partitions.remove(3);
        let err = rebuild_topics(&layout).expect_err("partition 3 is missing");
        assert!(err.contains("[0, 1, 2, 4]"), "{err}");
        let mut other = marker("orders", 5, 3);
        other.topic.created_ms = 8;
        layout.partitions.push((PathBuf::from("orders-3"), other));
        let err = rebuild_topics(&layout).expect_err("another incarnation");
        assert!(err.contains("differently"), "{err}");
    }
}
