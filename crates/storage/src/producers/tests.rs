//! The producer state machine with plain values: duplicates, sequences,
//! epochs, limits and expiry, and a randomized run against a plain model.

use std::collections::HashMap;

use super::*;

const EXPIRATION_MS: u64 = 1000;

fn states() -> ProducerStates {
    ProducerStates::new(PRODUCERS_PER_PARTITION_MAX, EXPIRATION_MS)
}

/// A batch of producer `id` in `epoch` with `records` records from `first_seq`.
fn batch(id: i64, epoch: i16, first_seq: i32, records: i32) -> ProducerBatch {
    ProducerBatch {
        producer_id: id,
        epoch,
        first_seq,
        last_seq: sequence_after(first_seq, records - 1),
    }
}

/// Checks and, if accepted, records `b` at `*offset`, moving it on.
/// Returns the check's answer.
fn send(
    states: &mut ProducerStates,
    b: &ProducerBatch,
    offset: &mut u64,
    now: i64,
) -> Result<Option<BatchMetadata>, AppendError> {
    let verdict = states.check(b, now)?;
    if verdict.is_none() {
        let records = (b.last_seq.wrapping_sub(b.first_seq) as u32 as u64) + 1;
        let placed = b.placed(*offset, *offset + records - 1, now);
        states.record(b, placed, now);
        *offset += records;
    }
    Ok(verdict)
}

fn snapshot(states: &ProducerStates) -> Vec<(i64, ProducerEntry)> {
    states
        .sorted()
        .into_iter()
        .map(|(id, e)| (id, e.clone()))
        .collect()
}

#[test]
fn a_batch_without_a_producer_id_is_not_idempotent() {
    let mut header = carteiro::record::BatchHeader {
        base_offset: 0,
        batch_length: 49,
        partition_leader_epoch: 0,
        crc: 0,
        attributes: carteiro::record::Attributes(0),
        last_offset_delta: 2,
        base_timestamp: 0,
        max_timestamp: 0,
        producer_id: NO_PRODUCER_ID,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: 3,
    };
    assert_eq!(ProducerBatch::of(&header), None);
    header.producer_id = -7;
    assert_eq!(
        ProducerBatch::of(&header),
        None,
        "any negative id, as Kafka"
    );
    header.producer_id = 0;
    header.producer_epoch = 4;
    header.base_sequence = 10;
    assert_eq!(ProducerBatch::of(&header), Some(batch(0, 4, 10, 3)));
    assert_eq!(ProducerBatch::of(&header).map(|b| b.last_seq), Some(12));
}

#[test]
fn sequences_wrap_from_i32_max_to_zero() {
    // A producer whose last batch ends at i32::MAX goes on at 0, and a
    // batch that wraps inside itself is a duplicate by its wrapped range.
    let mut s = states();
    let mut offset = 0;
    let near_end = batch(1, 0, i32::MAX - 2, 3);
    s.record(&near_end, near_end.placed(0, 2, 0), 0);
    offset += 3;
    let wrapped = batch(1, 0, 0, 2);
    assert_eq!(
        send(&mut s, &wrapped, &mut offset, 0).expect("accepted"),
        None
    );
    let err = s.check(&batch(1, 0, i32::MAX, 1), 0).expect_err("gap");
    assert!(
        matches!(
            err,
            AppendError::OutOfOrderSequence {
                expected: 2,
                received: i32::MAX,
                ..
            }
        ),
        "{err}"
    );
    let mut s = states();
    let across = batch(2, 0, i32::MAX - 1, 4);
    assert_eq!(across.last_seq, 1);
    s.record(&across, across.placed(10, 13, 5), 5);
    let original = s.check(&across, 5).expect("a duplicate").expect("found");
    assert_eq!((original.base_offset, original.last_offset), (10, 13));
    assert_eq!(s.check(&batch(2, 0, 2, 1), 5).expect("accepted"), None);
}

#[test]
fn each_of_the_last_five_batches_is_a_duplicate_and_older_ones_are_out_of_order() {
    let mut s = states();
    let mut offset = 100;
    let mut placed = Vec::new();
    for i in 0..8 {
        let b = batch(7, 3, i * 3, 3);
        assert_eq!(
            send(&mut s, &b, &mut offset, i64::from(i)).expect("accepted"),
            None
        );
        placed.push((b, offset - 3, offset - 1, i64::from(i)));
    }
    let before = snapshot(&s);
    for (b, base, last, time) in &placed[8 - PRODUCER_BATCHES_KEPT..] {
        let original = s.check(b, 99).expect("accepted").expect("a duplicate");
        assert_eq!(
            (
                original.base_offset,
                original.last_offset,
                original.append_time_ms
            ),
            (*base, *last, *time)
        );
    }
    for (b, _, _, _) in &placed[..8 - PRODUCER_BATCHES_KEPT] {
        let err = s.check(b, 99).expect_err("no longer kept");
        assert!(
            matches!(
                err,
                AppendError::OutOfOrderSequence {
                    producer_id: 7,
                    expected: 24,
                    ..
                }
            ),
            "{err}"
        );
    }
    // Same first sequence, other last: not the same batch.
    let err = s
        .check(&batch(7, 3, 21, 2), 99)
        .expect_err("not a duplicate");
    assert!(
        matches!(
            err,
            AppendError::OutOfOrderSequence {
                expected: 24,
                received: 21,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(snapshot(&s), before, "checks change nothing");
    assert_eq!(
        s.get(7).map(|e| e.batches.len()),
        Some(PRODUCER_BATCHES_KEPT)
    );
}

#[test]
fn a_gap_is_out_of_order_and_names_what_was_expected() {
    let mut s = states();
    let mut offset = 0;
    send(&mut s, &batch(1, 0, 0, 3), &mut offset, 0).expect("first");
    let before = snapshot(&s);
    let err = s.check(&batch(1, 0, 5, 1), 0).expect_err("gap");
    assert!(
        matches!(
            err,
            AppendError::OutOfOrderSequence {
                producer_id: 1,
                expected: 3,
                received: 5
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("producer 1")
            && text.contains("expected sequence 3")
            && text.contains("received 5"),
        "{text}"
    );
    assert_eq!(snapshot(&s), before, "a refused batch changes nothing");
    assert_eq!(
        send(&mut s, &batch(1, 0, 3, 1), &mut offset, 0).expect("accepted"),
        None
    );
}

#[test]
fn an_older_epoch_is_fenced_and_a_newer_one_starts_at_zero() {
    let mut s = states();
    let mut offset = 0;
    send(&mut s, &batch(4, 2, 0, 2), &mut offset, 0).expect("first");
    send(&mut s, &batch(4, 2, 2, 2), &mut offset, 0).expect("second");
    let before = snapshot(&s);
    let err = s.check(&batch(4, 1, 4, 1), 0).expect_err("older epoch");
    assert!(
        matches!(
            err,
            AppendError::ProducerFenced {
                producer_id: 4,
                epoch: 1,
                current: 2
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("producer 4") && text.contains("epoch 1") && text.contains("current epoch 2"),
        "{text}"
    );
    let err = s
        .check(&batch(4, 3, 4, 1), 0)
        .expect_err("new epoch not at 0");
    assert!(
        matches!(
            err,
            AppendError::OutOfOrderSequence {
                producer_id: 4,
                expected: 0,
                received: 4
            }
        ),
        "{err}"
    );
    assert_eq!(snapshot(&s), before, "refused batches change nothing");
    // A new epoch at 0 replaces the state: the old epoch is fenced from now on.
    assert_eq!(
        send(&mut s, &batch(4, 3, 0, 1), &mut offset, 0).expect("accepted"),
        None
    );
    let entry = s.get(4).expect("kept");
    assert_eq!(entry.epoch, 3);
    assert_eq!(entry.batches.len(), 1);
    assert!(matches!(
        s.check(&batch(4, 2, 2, 2), 0),
        Err(AppendError::ProducerFenced { current: 3, .. })
    ));
    assert_eq!(
        send(&mut s, &batch(4, 3, 1, 1), &mut offset, 0).expect("accepted"),
        None
    );
}

#[test]
fn an_unknown_producer_must_start_at_zero() {
    let mut s = states();
    let err = s.check(&batch(9, 0, 5, 1), 0).expect_err("unknown");
    assert!(
        matches!(
            err,
            AppendError::UnknownProducerId {
                producer_id: 9,
                sequence: 5
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("producer 9") && err.to_string().contains("sequence 5"),
        "{err}"
    );
    assert!(s.is_empty(), "nothing kept for a refused batch");
    let mut offset = 0;
    assert_eq!(
        send(&mut s, &batch(9, 5, 0, 1), &mut offset, 0).expect("accepted"),
        None
    );
    assert_eq!(s.get(9).map(|e| e.epoch), Some(5), "any epoch may start");
}

#[test]
fn idle_producers_expire_and_an_active_one_does_not() {
    let mut s = states();
    let mut offset = 0;
    send(&mut s, &batch(1, 0, 0, 1), &mut offset, 0).expect("first");
    send(&mut s, &batch(2, 0, 0, 1), &mut offset, 500).expect("second");
    assert_eq!(s.remove_expired(999), 0);
    assert_eq!(s.remove_expired(1000), 1, "idle for the expiration time");
    assert!(s.get(1).is_none() && s.get(2).is_some());
    // An append keeps a producer alive.
    send(&mut s, &batch(2, 0, 1, 1), &mut offset, 1400).expect("third");
    assert_eq!(s.remove_expired(2300), 0);
    assert_eq!(s.remove_expired(2400), 1);
    // Expired, it is unknown: it must start again at 0.
    assert!(matches!(
        s.check(&batch(2, 0, 2, 1), 2400),
        Err(AppendError::UnknownProducerId { .. })
    ));
}

#[test]
fn a_new_producer_past_the_limit_is_refused_after_idle_ones_expire() {
    let mut s = ProducerStates::new(3, EXPIRATION_MS);
    let mut offset = 0;
    for id in 0..3 {
        send(&mut s, &batch(id, 0, 0, 1), &mut offset, id * 100).expect("under the limit");
    }
    let before = snapshot(&s);
    let err = s.check(&batch(3, 0, 0, 1), 999).expect_err("at the limit");
    assert!(
        matches!(err, AppendError::TooManyProducers { limit: 3 }),
        "{err}"
    );
    assert!(err.to_string().contains("3 idempotent producers"), "{err}");
    assert_eq!(snapshot(&s), before, "nobody was idle");
    // Known producers go on at the limit.
    assert_eq!(
        send(&mut s, &batch(2, 0, 1, 1), &mut offset, 999).expect("accepted"),
        None
    );
    // Producer 0 has been idle for the expiration time: it makes room.
    assert_eq!(
        send(&mut s, &batch(3, 0, 0, 1), &mut offset, 1000).expect("accepted"),
        None
    );
    assert!(s.get(0).is_none());
    assert_eq!(s.len(), 3);
}

#[test]
fn the_partition_limit_is_ten_thousand_producers() {
    let mut s = states();
    let mut offset = 0;
    for id in 0..PRODUCERS_PER_PARTITION_MAX as i64 {
        send(&mut s, &batch(id, 0, 0, 1), &mut offset, 0).expect("under the limit");
    }
    assert!(matches!(
        s.check(&batch(20_000, 0, 0, 1), 1),
        Err(AppendError::TooManyProducers {
            limit: PRODUCERS_PER_PARTITION_MAX
        })
    ));
    assert_eq!(s.len(), PRODUCERS_PER_PARTITION_MAX);
}

#[test]
fn a_rebuild_keeps_the_producers_that_appended_last() {
    let mut s = states();
    let mut offset = 0;
    for id in [5, 1, 9, 3] {
        send(&mut s, &batch(id, 0, 0, 1), &mut offset, 0).expect("appended");
    }
    assert_eq!(s.keep_newest(2), 2);
    let ids: Vec<i64> = s.sorted().into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, vec![3, 9]);
    assert_eq!(s.max_producer_id(), Some(9));
}

/// xorshift64*, reproducible from the seed.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// The plain model: every batch a producer appended in its current epoch,
/// never trimmed, and the last time it appended.
#[derive(Default)]
struct Model {
    producers: HashMap<i64, (i16, Vec<BatchMetadata>, i64)>,
}

impl Model {
    fn check(&self, b: &ProducerBatch) -> Result<Option<BatchMetadata>, &'static str> {
        let Some((epoch, history, _)) = self.producers.get(&b.producer_id) else {
            return if b.first_seq == 0 {
                Ok(None)
            } else {
                Err("unknown")
            };
        };
        if b.epoch < *epoch {
            return Err("fenced");
        }
        if b.epoch > *epoch {
            return if b.first_seq == 0 {
                Ok(None)
            } else {
                Err("out of order")
            };
        }
        let recent = &history[history.len().saturating_sub(PRODUCER_BATCHES_KEPT)..];
        if let Some(m) = recent
            .iter()
            .find(|m| m.first_seq == b.first_seq && m.last_seq == b.last_seq)
        {
            return Ok(Some(*m));
        }
        let last = history.last().map_or(-1, |m| m.last_seq);
        let expected = if last == i32::MAX { 0 } else { last + 1 };
        if b.first_seq == expected {
            Ok(None)
        } else {
            Err("out of order")
        }
    }
}

fn kind(e: &AppendError) -> &'static str {
    match e {
        AppendError::UnknownProducerId { .. } => "unknown",
        AppendError::ProducerFenced { .. } => "fenced",
        AppendError::OutOfOrderSequence { .. } => "out of order",
        AppendError::TooManyProducers { .. } => "too many",
        _ => "other",
    }
}

#[test]
fn random_batches_get_the_answers_of_a_plain_model() {
    let seed = std::env::var("CARTEIRO_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    println!("seed {seed} (rerun with CARTEIRO_TEST_SEED={seed})");
    let mut rng = seed;
    let mut seen: HashMap<&'static str, u64> = HashMap::new();
    for run in 0..200 {
        let limit = 1 + (next(&mut rng) % 4) as usize;
        let mut s = ProducerStates::new(limit, EXPIRATION_MS);
        let mut model = Model::default();
        let mut offset = 0u64;
        let mut now = 0i64;
        for step in 0..300 {
            let at = format!("seed {seed}, run {run}, step {step}");
            let roll = next(&mut rng);
            if roll.is_multiple_of(20) {
                now += (next(&mut rng) % 600) as i64;
                continue;
            }
            let id = (next(&mut rng) % 5) as i64;
            let known = model.producers.get(&id);
            assert_eq!(known.is_some(), s.get(id).is_some(), "{at}: membership");
            let (epoch, history) = known.map_or((0, &[][..]), |(e, h, _)| (*e, &h[..]));
            let records = 1 + (next(&mut rng) % 3) as i32;
            if roll % 20 == 1 && !history.is_empty() {
                // Replayed from the log (no check): a batch right before
                // the wrap, so that the next ones cross it.
                let b = batch(id, epoch, i32::MAX - (next(&mut rng) % 4) as i32, records);
                let count = u64::from(b.last_seq.wrapping_sub(b.first_seq) as u32) + 1;
                let placed = b.placed(offset, offset + count - 1, now);
                offset += count;
                s.record(&b, placed, now);
                let entry = model.producers.get_mut(&id).expect("known");
                entry.1.push(placed);
                entry.2 = now;
                continue;
            }
            let b = match next(&mut rng) % 10 {
                // The next batch.
                0..=4 => {
                    let last = history.last().map_or(-1, |m| m.last_seq);
                    batch(id, epoch, sequence_after(last, 1).max(0), records)
                }
                // A batch sent again, maybe older than the kept ones.
                5..=6 if !history.is_empty() => {
                    let back = (next(&mut rng) % (history.len() as u64).min(7)) as usize;
                    let m = history[history.len() - 1 - back];
                    ProducerBatch {
                        producer_id: id,
                        epoch,
                        first_seq: m.first_seq,
                        last_seq: m.last_seq,
                    }
                }
                // Another epoch, at 0 or not.
                7 => batch(
                    id,
                    epoch + (next(&mut rng) % 3) as i16 - 1,
                    if next(&mut rng).is_multiple_of(2) {
                        0
                    } else {
                        4
                    },
                    records,
                ),
                // Anywhere.
                _ => batch(id, epoch, (next(&mut rng) % 20) as i32, records),
            };
            // The model knows no limit nor expiry: apply both as the
            // machine does, first.
            let new = s.get(id).is_none() && b.first_seq == 0;
            if new && s.len() >= limit {
                model
                    .producers
                    .retain(|_, (_, _, last)| now.saturating_sub(*last) < EXPIRATION_MS as i64);
            }
            let before = snapshot(&s);
            let got = s.check(&b, now);
            let expected = if new && model.producers.len() >= limit {
                Err("too many")
            } else {
                model.check(&b)
            };
            let outcome = match &got {
                Ok(None) => "appended",
                Ok(Some(_)) => "duplicate",
                Err(e) => kind(e),
            };
            *seen.entry(outcome).or_default() += 1;
            match (&got, expected) {
                (Ok(got), Ok(want)) => assert_eq!(*got, want, "{at}: {b:?}"),
                (Err(e), Err(want)) => assert_eq!(kind(e), want, "{at}: {b:?}: {e}"),
                (got, want) => panic!("{at}: {b:?}: got {got:?}, the model says {want:?}"),
            }
            if got.is_err() {
                // Nothing changed but, for a new producer, expiry.
                let after = snapshot(&s);
                let mut pruned = before.clone();
                if new {
                    pruned.retain(|(id, _)| after.iter().any(|(a, _)| a == id));
                }
                assert_eq!(after, pruned, "{at}: a refused batch changed the state");
                continue;
            }
            if let Ok(Some(_)) = got {
                assert_eq!(snapshot(&s), before, "{at}: a duplicate changed the state");
                continue;
            }
            let count = u64::from(b.last_seq.wrapping_sub(b.first_seq) as u32) + 1;
            let placed = b.placed(offset, offset + count - 1, now);
            s.record(&b, placed, now);
            offset += count;
            let entry = model
                .producers
                .entry(id)
                .or_insert((b.epoch, Vec::new(), now));
            if entry.0 != b.epoch {
                *entry = (b.epoch, Vec::new(), now);
            }
            entry.1.push(placed);
            entry.2 = now;
            // The machine keeps exactly the model's last five.
            let kept: Vec<BatchMetadata> =
                s.get(id).expect("kept").batches.iter().copied().collect();
            let history = &entry.1;
            assert_eq!(
                kept,
                history[history.len().saturating_sub(PRODUCER_BATCHES_KEPT)..],
                "{at}"
            );
            assert!(s.len() <= limit, "{at}: {} producers", s.len());
        }
    }
    println!("answers: {seen:?}");
    for outcome in [
        "appended",
        "duplicate",
        "unknown",
        "fenced",
        "out of order",
        "too many",
    ] {
        assert!(seen.contains_key(outcome), "seed {seed}: never {outcome}");
    }
}
