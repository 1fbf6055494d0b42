//! Which partition a record goes to: the function the broker and every
//! client share, so that a key always lands in the same partition.
//!
//! It is Kafka's default partitioner for keyed records:
//! `(murmur2(key) & 0x7fffffff) % partition_count`, with murmur2 seeded
//! with `0x9747b28c` as in Kafka's `Utils.murmur2`. Records without a key
//! are spread across partitions by the caller (the broker: round robin).

/// Kafka's murmur2 hash of `data` (signed, as Java returns it).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `key` among `partition_count` partitions (at least 1).
pub fn partition_for_key(key: &[u8], partition_count: u32) -> u32 {
    let positive = (murmur2(key) & 0x7fff_ffff) as u32;
    positive % partition_count.max(1)
}

/// "it has 3 partitions, numbered 0 to 2": a topic's partitions, for the
/// messages of every crate that refuses a partition.
pub fn partition_count_text(count: u32) -> String {
    match count {
        0 => "it has no partitions".to_string(),
        1 => "it has 1 partition, numbered 0".to_string(),
        n => format!("it has {n} partitions, numbered 0 to {}", n - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Kafka's UtilsTest.testMurmur2.
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for &(key, expected) in cases {
            assert_eq!(murmur2(key), expected, "{:?}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn partitions_are_in_range_and_stable() {
        for n in 1..20u32 {
            for key in [&b""[..], b"a", b"user-42", b"\xff\xfe"] {
                let p = partition_for_key(key, n);
                assert!(p < n);
                assert_eq!(p, partition_for_key(key, n));
            }
        }
        assert_eq!(
            partition_for_key(b"k", 0),
            0,
            "zero partitions is treated as one"
        );
    }
}
