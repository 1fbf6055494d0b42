//! Acknowledgement levels under a log's flush policy: what an append still
//! needs before it is acknowledged, and what consumers may see. The one
//! place the flush policy decides either.

use super::{AppendInfo, Log};
use crate::config::FlushPolicy;

/// How much an acknowledgement of an append promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// The batch is in the log (readable once visible).
    Appended,
    /// The batch is durable as far as the log's flush policy makes it:
    /// synced for `always`, flushed for `interval`, written for `os`.
    Durable,
}

/// What an append still needs before it can be acknowledged
/// ([`Log::ack_wait`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckWait {
    /// Nothing: acknowledge now.
    Now,
    /// Acknowledge now, and sync up to `end` soon without waiting
    /// ([`Log::sync_appended`]): readers of an `always` log see only synced
    /// records.
    NowSyncSoon {
        /// The offset after the append.
        end: u64,
    },
    /// Sync up to `end` first: [`Log::sync_appended`] on the appending
    /// thread, then [`Log::wait_durable`] (or [`Log::sync_to`] in place;
    /// concurrent callers share one sync either way).
    Sync {
        /// The offset after the append.
        end: u64,
    },
    /// Wait until the interval flush makes `end` durable
    /// ([`Log::grown_past`] with `durable`).
    Flush {
        /// The offset after the append.
        end: u64,
    },
}

impl Log {
    /// What an append still needs before it is acknowledged with `acks`
    /// under this log's flush policy. The one place that policy decides.
    pub fn ack_wait(&self, info: &AppendInfo, acks: Acks) -> AckWait {
        let end = info.last_offset + 1;
        match (self.config.flush, acks) {
            (_, _) if info.durable => AckWait::Now,
            (FlushPolicy::Always, Acks::Durable) => AckWait::Sync { end },
            // Readers of an `always` log see only synced records.
            (FlushPolicy::Always, Acks::Appended) => AckWait::NowSyncSoon { end },
            (FlushPolicy::IntervalMs(_), Acks::Durable) => AckWait::Flush { end },
            // `os`: the operating system decides when; nobody waits for it.
            _ => AckWait::Now,
        }
    }

    /// True if every append wants a sync soon, whatever its acks
    /// ([`Log::sync_appended`]): a flush-`always` log shows consumers only
    /// synced records.
    pub fn syncs_after_append(&self) -> bool {
        self.config.flush == FlushPolicy::Always
    }

    /// Offsets below this are visible to consumers: what a crash cannot take
    /// back for flush-`always` logs (the durable offset), the end otherwise.
    pub fn high_watermark(&self) -> u64 {
        if self.config.flush == FlushPolicy::Always {
            self.durable_offset()
        } else {
            self.end_offset()
        }
    }
}
