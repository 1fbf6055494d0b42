//! Opening a topic's partitions: each directory made with its marker (a
//! new topic, or partitions added to one), or found and proved to be this
//! topic's (an existing one), then its log opened.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use super::{StoreOptions, Topic, TopicConfig, io_err};
use crate::data_dir::{partition_dir, read_marker, write_marker};
use crate::error::StoreError;
use crate::error::is_disk_full;
use crate::log::Log;
use crate::metadata::{PartitionMarker, TopicRecord};

/// Whether a topic's partitions are being created or already exist.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Opening {
    /// New directories, each with its marker.
    New,
    /// New directories added to an existing topic, each with its marker;
    /// the config is the stored one, as for [`Existing`](Self::Existing).
    Added,
    /// Directories named in `topics.meta`: each must be there (unless
    /// repairing) and be this topic's; one without a marker (an earlier
    /// version's) gets one.
    Existing,
}

fn open_partition(
    dir: &Path,
    options: &StoreOptions,
    record: &TopicRecord,
    partition: u32,
    opening: Opening,
) -> Result<Log, StoreError> {
    let medium = options.log.medium.as_ref();
    let path = partition_dir(dir, &record.name, partition);
    let marker = PartitionMarker {
        partition,
        topic: record.clone(),
    };
    let existing = if opening == Opening::Existing && medium.is_dir(&path) {
        read_marker(medium, &path)?
    } else {
        None
    };
    match existing {
        // Markers only prove whose a directory is: one written before the
        // topic grew names the smaller count it had then.
        Some(Ok(found)) if found.belongs_to(record, partition) => {}
        Some(Ok(found)) => {
            return Err(StoreError::DirectoryInUse {
                path,
                reason: format!(
                    "its marker names partition {} of topic {:?} created at {} ms (with {} partitions then), not partition {partition} of the topic {:?} created at {} ms (with {} partitions) that topics.meta lists",
                    found.partition,
                    found.topic.name,
                    found.topic.created_ms,
                    found.topic.partitions,
                    record.name,
                    record.created_ms,
                    record.partitions
                ),
            });
        }
        Some(Err(reason)) => {
            return Err(StoreError::DirectoryInUse {
                path,
                reason: format!("its partition marker is damaged ({reason})"),
            });
        }
        None => {
            if opening == Opening::Existing && !medium.is_dir(&path) {
                if !options.log.repair {
                    return Err(StoreError::MissingPartition {
                        topic: record.name.clone(),
                        partition,
                        path,
                    });
                }
                tracing::error!(
                    dir = %path.display(), topic = %record.name, partition,
                    "repair: recreating a missing partition directory empty; its records are lost"
                );
            }
            medium
                .create_dir_all(&path)
                .map_err(io_err("creating", &path))?;
            match write_marker(medium, &path, &marker) {
                // A directory topics.meta names is claimed by it: on a full
                // disk its marker (an earlier version's directory has none)
                // can wait for the next open.
                Err(StoreError::Io { source, .. })
                    if opening == Opening::Existing && is_disk_full(&source) =>
                {
                    tracing::warn!(dir = %path.display(), error = %source, "disk full: partition marker not written");
                }
                written => written?,
            }
        }
    }
    let config = match opening {
        Opening::New => record.config.clone(),
        Opening::Existing | Opening::Added => record.config.clamped(),
    };
    Log::open(&path, config, &options.log).map_err(|source| StoreError::Open {
        topic: record.name.clone(),
        partition,
        source,
    })
}

/// Opens partitions `partitions` of the topic `record` describes. On an
/// error, the logs it opened are closed again.
pub(super) fn open_partitions(
    dir: &Path,
    options: &StoreOptions,
    record: &TopicRecord,
    partitions: Range<u32>,
    opening: Opening,
) -> Result<Vec<Arc<Log>>, StoreError> {
    let mut logs: Vec<Arc<Log>> = Vec::with_capacity(partitions.len());
    for partition in partitions {
        let log = match open_partition(dir, options, record, partition, opening) {
            Ok(log) => log,
            Err(e) => {
                for log in &logs {
                    let _ = log.close();
                }
                return Err(e);
            }
        };
        if options.maintenance_interval_ms.is_some() {
            log.defer_checkpoints();
        }
        logs.push(Arc::new(log));
    }
    Ok(logs)
}

pub(super) fn open_topic(
    dir: &Path,
    options: &StoreOptions,
    record: TopicRecord,
    opening: Opening,
) -> Result<Topic, StoreError> {
    let partitions = open_partitions(dir, options, &record, 0..record.partitions, opening)?;
    Ok(Topic {
        name: record.name,
        config: TopicConfig {
            partitions: record.partitions,
            log: record.config,
        },
        created_ms: record.created_ms,
        partitions,
    })
}
