//! Kafka's consumer protocol, the bytes a classic group of protocol type
//! `consumer` carries opaquely: the leader's assignment to each member.
//! The broker only relays them; it decodes them to show which partitions
//! each member of a Kafka group holds.
//!
//! `ConsumerProtocolAssignment`, versions 0 to 3, big-endian, never
//! flexible:
//!
//! | field | type |
//! |---|---|
//! | version | i16 |
//! | assigned_partitions | i32 count, then per topic: topic (i16 length + UTF-8), partitions (i32 count + i32 each) |
//! | user_data | i32 length (-1 null) + bytes |
//!
//! Every count is checked against the bytes left before anything is
//! reserved for it.

/// Why assignment bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerProtocolError {
    /// The bytes end inside a field.
    #[error("consumer protocol assignment: truncated at byte {at} of {len}")]
    Truncated {
        /// Where the missing field starts.
        at: usize,
        /// The bytes given.
        len: usize,
    },
    /// A version this reader does not know.
    #[error("consumer protocol assignment: version {0} is not 0 to 3")]
    UnknownVersion(i16),
    /// A count or length that is negative or larger than the bytes left could hold.
    #[error(
        "consumer protocol assignment: {what} {value} at byte {at} is impossible with {left} bytes left"
    )]
    BadCount {
        /// Which count.
        what: &'static str,
        /// Its value.
        value: i64,
        /// Where it is.
        at: usize,
        /// The bytes after it.
        left: usize,
    },
    /// A topic name that is not UTF-8.
    #[error("consumer protocol assignment: topic name at byte {at} is not UTF-8")]
    NotUtf8 {
        /// Where it is.
        at: usize,
    },
}

/// The highest assignment version this reader knows.
pub const ASSIGNMENT_VERSION_MAX: i16 = 3;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ConsumerProtocolError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return Err(ConsumerProtocolError::Truncated {
                at: self.at,
                len: self.bytes.len(),
            });
        };
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn i16(&mut self) -> Result<i16, ConsumerProtocolError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, ConsumerProtocolError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A count of entries of at least `entry_bytes` each.
    fn count(
        &mut self,
        what: &'static str,
        entry_bytes: usize,
    ) -> Result<usize, ConsumerProtocolError> {
        let at = self.at;
        let value = self.i32()?;
        let left = self.bytes.len() - self.at;
        match usize::try_from(value) {
            Ok(n) if n <= left / entry_bytes => Ok(n),
            _ => Err(ConsumerProtocolError::BadCount {
                what,
                value: i64::from(value),
                at,
                left,
            }),
        }
    }
}

/// The `(topic, partition)` pairs an assignment gives its member, in the
/// order it lists them.
pub fn assigned_partitions(bytes: &[u8]) -> Result<Vec<(String, u32)>, ConsumerProtocolError> {
    let mut reader = Reader { bytes, at: 0 };
    let version = reader.i16()?;
    if !(0..=ASSIGNMENT_VERSION_MAX).contains(&version) {
        return Err(ConsumerProtocolError::UnknownVersion(version));
    }
    // A topic takes at least its name length and its partition count.
    let topics = reader.count("topic count", 6)?;
    let mut assigned = Vec::new();
    for _ in 0..topics {
        let at = reader.at;
        let length = reader.i16()?;
        let length = usize::try_from(length).map_err(|_| ConsumerProtocolError::BadCount {
            what: "topic name length",
            value: i64::from(length),
            at,
            left: bytes.len() - reader.at,
        })?;
        let name = std::str::from_utf8(reader.take(length)?)
            .map_err(|_| ConsumerProtocolError::NotUtf8 { at })?
            .to_string();
        let partitions = reader.count("partition count", 4)?;
        for _ in 0..partitions {
            let at = reader.at;
            let partition = reader.i32()?;
            let partition =
                u32::try_from(partition).map_err(|_| ConsumerProtocolError::BadCount {
                    what: "partition",
                    value: i64::from(partition),
                    at,
                    left: bytes.len() - reader.at,
                })?;
            assigned.push((name.clone(), partition));
        }
    }
    Ok(assigned)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An assignment as the Java client and librdkafka encode it.
    fn assignment(version: i16, topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut out = version.to_be_bytes().to_vec();
        out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
        for (name, partitions) in topics {
            out.extend_from_slice(&(name.len() as i16).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
            for p in *partitions {
                out.extend_from_slice(&p.to_be_bytes());
            }
        }
        out.extend_from_slice(&(-1i32).to_be_bytes());
        out
    }

    #[test]
    fn reads_the_partitions_of_each_topic() {
        let bytes = assignment(1, &[("orders", &[0, 2]), ("audit", &[1])]);
        assert_eq!(
            assigned_partitions(&bytes).expect("valid"),
            vec![
                ("orders".to_string(), 0),
                ("orders".to_string(), 2),
                ("audit".to_string(), 1)
            ]
        );
    }

    #[test]
    fn lying_counts_and_short_bytes_are_errors_not_allocations() {
        let mut bytes = assignment(0, &[("t", &[0])]);
        bytes[2..6].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            assigned_partitions(&bytes),
            Err(ConsumerProtocolError::BadCount { .. })
        ));
        let whole = assignment(0, &[("t", &[0])]);
        for cut in 0..whole.len() - 4 {
            assert!(assigned_partitions(&whole[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(
            assigned_partitions(&assignment(9, &[])),
            Err(ConsumerProtocolError::UnknownVersion(9))
        );
    }
}
