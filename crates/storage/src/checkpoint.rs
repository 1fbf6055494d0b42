//! The small per-partition files that make recovery cheap and safe:
//! the recovery checkpoint (every offset below it was synced) and the
//! clean-shutdown marker (the log was closed cleanly at this end offset).
//! Both share one 28-byte layout, name the newest segment so that a missing
//! one is noticed, and are replaced atomically. Version 1 files (20 bytes,
//! no newest segment) are still read.

/// File name of the recovery checkpoint in a partition directory.
pub(crate) const RECOVERY_CHECKPOINT_FILE: &str = "recovery-point.checkpoint";
/// File name of the clean-shutdown marker in a partition directory.
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown.marker";
/// Size of a checkpoint or marker file, in bytes.
pub(crate) const CHECKPOINT_BYTES: usize = 28;
/// Size of a version 1 file, in bytes.
pub(crate) const CHECKPOINT_V1_BYTES: usize = 20;
/// Version of the checkpoint format.
pub(crate) const CHECKPOINT_VERSION: u16 = 2;

/// Which of the two files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckpointKind {
    /// `recovery-point.checkpoint`: offsets below this were synced.
    RecoveryPoint,
    /// `clean-shutdown.marker`: the log ended here when it was closed.
    CleanShutdown,
}

/// What a checkpoint or marker holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// Checkpoint: every offset below it was synced. Marker: the log's end.
    pub offset: u64,
    /// Base offset of the newest segment when it was written (`None` in a
    /// version 1 file).
    pub newest_segment: Option<u64>,
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

fn be_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(b)
}

/// Encodes a checkpoint or marker.
pub(crate) fn encode(
    kind: CheckpointKind,
    offset: u64,
    newest_segment: u64,
) -> [u8; CHECKPOINT_BYTES] {
    let mut out = [0u8; CHECKPOINT_BYTES];
    out[0..4].copy_from_slice(&kind.magic());
    out[4..6].copy_from_slice(&CHECKPOINT_VERSION.to_be_bytes());
    out[8..16].copy_from_slice(&offset.to_be_bytes());
    out[16..24].copy_from_slice(&newest_segment.to_be_bytes());
    let crc = crc32fast::hash(&out[..24]);
    out[24..28].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Decodes a checkpoint or marker (version 2, or 1); `Err` says why it
/// cannot be trusted.
pub(crate) fn decode(kind: CheckpointKind, bytes: &[u8]) -> Result<Checkpoint, String> {
    let crc_at = match bytes.len() {
        CHECKPOINT_BYTES => 24,
        CHECKPOINT_V1_BYTES => 16,
        n => {
            return Err(format!(
                "{n} bytes, expected {CHECKPOINT_BYTES} (or {CHECKPOINT_V1_BYTES} for version 1)"
            ));
        }
    };
    let stored = u32::from_be_bytes([
        bytes[crc_at],
        bytes[crc_at + 1],
        bytes[crc_at + 2],
        bytes[crc_at + 3],
    ]);
    let actual = crc32fast::hash(&bytes[..crc_at]);
    if stored != actual {
        return Err(format!(
            "checksum mismatch: stored {stored:#010x}, bytes give {actual:#010x}"
        ));
    }
    if bytes[0..4] != kind.magic() {
        return Err("bad magic".into());
    }
    let version = u16::from_be_bytes([bytes[4], bytes[5]]);
    let expected_version = if crc_at == 24 { CHECKPOINT_VERSION } else { 1 };
    if version != expected_version {
        return Err(format!(
            "version {version} in a {}-byte file not supported",
            bytes.len()
        ));
    }
    Ok(Checkpoint {
        offset: be_u64(&bytes[8..16]),
        newest_segment: (crc_at == 24).then(|| be_u64(&bytes[16..24])),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(offset in any::<u64>(), newest in any::<u64>()) {
            for kind in [CheckpointKind::RecoveryPoint, CheckpointKind::CleanShutdown] {
                let decoded = decode(kind, &encode(kind, offset, newest));
                prop_assert_eq!(decoded, Ok(Checkpoint { offset, newest_segment: Some(newest) }));
            }
        }

        #[test]
        fn any_flipped_bit_is_caught(offset in any::<u64>(), bit in 0usize..CHECKPOINT_BYTES * 8) {
            let mut bytes = encode(CheckpointKind::RecoveryPoint, offset, 0);
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode(CheckpointKind::RecoveryPoint, &bytes).is_err());
        }
    }

    #[test]
    fn kinds_are_not_interchangeable() {
        let bytes = encode(CheckpointKind::CleanShutdown, 5, 0);
        assert!(decode(CheckpointKind::RecoveryPoint, &bytes).is_err());
    }

    #[test]
    fn version_1_files_are_still_read() {
        let mut v1 = [0u8; CHECKPOINT_V1_BYTES];
        v1[0..4].copy_from_slice(b"CRTC");
        v1[4..6].copy_from_slice(&1u16.to_be_bytes());
        v1[8..16].copy_from_slice(&42u64.to_be_bytes());
        let crc = crc32fast::hash(&v1[..16]);
        v1[16..20].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            decode(CheckpointKind::RecoveryPoint, &v1),
            Ok(Checkpoint {
                offset: 42,
                newest_segment: None
            })
        );
    }
}
