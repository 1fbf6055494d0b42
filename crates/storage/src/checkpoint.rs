//! The small per-partition files that make recovery cheap and safe:
//! the recovery checkpoint (every offset below it was synced) and the
//! clean-shutdown marker (the log was closed cleanly at this end offset).
//! Both share one 20-byte layout and are replaced atomically.

/// File name of the recovery checkpoint in a partition directory.
pub(crate) const RECOVERY_CHECKPOINT_FILE: &str = "recovery-point.checkpoint";
/// File name of the clean-shutdown marker in a partition directory.
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown.marker";
/// Size of a checkpoint or marker file, in bytes.
pub(crate) const CHECKPOINT_BYTES: usize = 20;
/// Version of the checkpoint format.
pub(crate) const CHECKPOINT_VERSION: u16 = 1;

/// Which of the two files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckpointKind {
    /// `recovery-point.checkpoint`: offsets below this were synced.
    RecoveryPoint,
    /// `clean-shutdown.marker`: the log ended here when it was closed.
    CleanShutdown,
}

impl CheckpointKind {
    fn magic(self) -> [u8; 4] {
        match self {
            CheckpointKind::RecoveryPoint => *b"CRTC",
            CheckpointKind::CleanShutdown => *b"CRTS",
        }
    }

    pub(crate) fn file_name(self) -> &'static str {
        match self {
            CheckpointKind::RecoveryPoint => RECOVERY_CHECKPOINT_FILE,
            CheckpointKind::CleanShutdown => CLEAN_SHUTDOWN_FILE,
        }
    }
}

/// Encodes a checkpoint or marker holding `offset`.
pub(crate) fn encode(kind: CheckpointKind, offset: u64) -> [u8; CHECKPOINT_BYTES] {
    let mut out = [0u8; CHECKPOINT_BYTES];
    out[0..4].copy_from_slice(&kind.magic());
    out[4..6].copy_from_slice(&CHECKPOINT_VERSION.to_be_bytes());
    out[8..16].copy_from_slice(&offset.to_be_bytes());
    let crc = crc32fast::hash(&out[..16]);
    out[16..20].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Decodes a checkpoint or marker; `Err` says why it cannot be trusted.
pub(crate) fn decode(kind: CheckpointKind, bytes: &[u8]) -> Result<u64, String> {
    if bytes.len() != CHECKPOINT_BYTES {
        return Err(format!(
            "{} bytes, expected {CHECKPOINT_BYTES}",
            bytes.len()
        ));
    }
    let stored = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    let actual = crc32fast::hash(&bytes[..16]);
    if stored != actual {
        return Err(format!(
            "checksum mismatch: stored {stored:#010x}, bytes give {actual:#010x}"
        ));
    }
    if bytes[0..4] != kind.magic() {
        return Err("bad magic".into());
    }
    let version = u16::from_be_bytes([bytes[4], bytes[5]]);
    if version != CHECKPOINT_VERSION {
        return Err(format!("version {version} not supported"));
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[8..16]);
    Ok(u64::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(offset in any::<u64>()) {
            for kind in [CheckpointKind::RecoveryPoint, CheckpointKind::CleanShutdown] {
                prop_assert_eq!(decode(kind, &encode(kind, offset)), Ok(offset));
            }
        }

        #[test]
        fn any_flipped_bit_is_caught(offset in any::<u64>(), bit in 0usize..CHECKPOINT_BYTES * 8) {
            let mut bytes = encode(CheckpointKind::RecoveryPoint, offset);
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode(CheckpointKind::RecoveryPoint, &bytes).is_err());
        }
    }

    #[test]
    fn kinds_are_not_interchangeable() {
        let bytes = encode(CheckpointKind::CleanShutdown, 5);
        assert!(decode(CheckpointKind::RecoveryPoint, &bytes).is_err());
    }
}
