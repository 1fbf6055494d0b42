//! The log's recovery checkpoint and clean-shutdown marker: written at
//! open, roll and close, and periodically (by the store's maintenance
//! thread, off the sync path). One lock serializes the writes; the
//! checkpoint never moves back.

use std::sync::atomic::Ordering;

use super::{Log, lock};
use crate::checkpoint::{self, CheckpointKind};

impl Log {
    /// From now on, a sync that finds the periodic recovery checkpoint due
    /// leaves it to [`write_due_checkpoint`](Self::write_due_checkpoint)
    /// (which the store's maintenance thread calls) instead of writing it
    /// while appenders wait.
    pub fn defer_checkpoints(&self) {
        self.background_checkpoints.store(true, Ordering::Release);
    }

    /// Writes the recovery checkpoint if a sync found it due since the last call.
    pub fn write_due_checkpoint(&self) {
        if self.checkpoint_due.swap(false, Ordering::AcqRel)
            && let Err(e) = self.write_recovery_point(self.durable_offset())
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not write recovery checkpoint");
        }
    }

    /// Records that offsets below `offset` are synced, unless a later point
    /// is already written.
    pub(super) fn write_recovery_point(&self, offset: u64) -> std::io::Result<()> {
        let mut written = lock(&self.checkpoint);
        if offset < *written {
            return Ok(());
        }
        debug_assert!(
            offset <= self.durable_offset(),
            "checkpoint past the synced end"
        );
        self.write_checkpoint(CheckpointKind::RecoveryPoint, offset)?;
        *written = offset;
        Ok(())
    }

    /// Writes the checkpoint or marker `kind` with `offset` and the newest
    /// segment's base offset.
    pub(super) fn write_checkpoint(
        &self,
        kind: CheckpointKind,
        offset: u64,
    ) -> std::io::Result<()> {
        let path = self.dir.join(kind.file_name());
        let newest = self
            .segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .map_or(offset, |s| s.base_offset);
        self.medium
            .write_file_atomic(&path, &checkpoint::encode(kind, offset, newest))
    }
}
