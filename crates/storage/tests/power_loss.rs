//! Simulated power loss: the log runs over a medium that keeps a live and a
//! durable image of every file and loses every unsynced byte when the
//! power fails. The power fails at each sync point in turn; after each
//! failure the log must hold exactly what was acknowledged as durable, an
//! idempotent batch acknowledged as durable must be answered as a
//! duplicate (never stored again) when sent again, and no producer id may
//! be handed out twice. The broker's two durable paths are run too: three
//! threads appending and syncing with the hand-over (`sync_appended`), and
//! three threads queueing appends to the log's draining thread; and a
//! power loss is taken right after each acknowledgement on both. (A
//! process kill cannot show this: the page cache survives it.)

mod common;

use std::sync::Arc;

use carteiro_storage::{
    AfterSync, AppendError, FlushPolicy, Log, LogConfig, LogOptions, ManualClock,
    PRODUCER_BATCHES_KEPT, QueuedAppend, SimulatedMedium, Store, StoreOptions,
};
use common::*;

const DIR: &str = "/data/events-0";
const BATCHES: usize = 40;

fn config(flush: FlushPolicy) -> LogConfig {
    // Small segments so rolls, and with them seals and new files, fall inside the run.
    LogConfig {
        checkpoint_interval_ms: 3,
        index_interval_bytes: 128,
        ..with_flush(small_config(1024), flush)
    }
}

fn options(medium: &SimulatedMedium, clock: &ManualClock) -> LogOptions {
    LogOptions {
        clock: Arc::new(clock.clone()),
        ..sim_options(medium)
    }
}

fn batch_number(i: usize) -> Vec<u8> {
    batch(&format!("p{i}"), 1 + i % 3, i as i64)
}

/// Appends `BATCHES` batches under policy `always`; returns those acknowledged
/// before the power failed (the append returned `Ok`).
fn run_always(medium: &SimulatedMedium) -> Vec<Vec<u8>> {
    let clock = ManualClock::new(0);
    let mut acked = Vec::new();
    let Ok(log) = Log::open(DIR, config(FlushPolicy::Always), &options(medium, &clock)) else {
        return acked;
    };
    for i in 0..BATCHES {
        clock.advance(1);
        let b = batch_number(i);
        match log.append(&b) {
            Ok(info) => {
                assert!(info.durable);
                acked.push(b);
            }
            Err(_) => return acked,
        }
    }
    let _ = log.close();
    acked
}

#[test]
fn power_loss_at_every_sync_point_keeps_exactly_the_acknowledged_batches() {
    let full = SimulatedMedium::new();
    assert_eq!(run_always(&full).len(), BATCHES);
    let sync_points = full.syncs();
    assert!(
        sync_points > BATCHES as u64,
        "every append syncs: {sync_points}"
    );
    println!(
        "{BATCHES} appends under `always` pass {sync_points} sync points; losing power at each in turn"
    );
    for n in 0..=sync_points {
        let medium = SimulatedMedium::new();
        medium.fail_after_syncs(n);
        let acked = run_always(&medium);
        let rebooted = medium.after_power_loss();
        let clock = ManualClock::new(1_000);
        let log = Log::open(
            DIR,
            config(FlushPolicy::Always),
            &options(&rebooted, &clock),
        )
        .unwrap_or_else(|e| panic!("power loss after {n} syncs: reopen failed: {e}"));
        assert_eq!(
            all_values(&log),
            values_of(&acked),
            "power loss after {n} of {sync_points} syncs"
        );
        // Nothing torn is left behind: the log takes appends and reopens to the same state.
        log.append(&batch("after", 1, 0))
            .expect("append after recovery");
        drop(log);
        let again = Log::open(
            DIR,
            config(FlushPolicy::Always),
            &options(&rebooted, &clock),
        )
        .expect("reopens");
        assert_eq!(all_values(&again).len(), values_of(&acked).len() + 1);
    }
}

/// Under `os` and `interval`, batches are durable once a flush covering them
/// returned. Returns (every batch appended, those made durable).
fn run_deferred(medium: &SimulatedMedium, flush: FlushPolicy) -> (Vec<Vec<u8>>, usize) {
    let clock = ManualClock::new(0);
    let (mut appended, mut durable) = (Vec::new(), 0);
    let Ok(log) = Log::open(DIR, config(flush), &options(medium, &clock)) else {
        return (appended, durable);
    };
    for i in 0..BATCHES {
        clock.advance(1);
        let b = batch_number(i);
        if log.append(&b).is_err() {
            return (appended, durable);
        }
        appended.push(b);
        if i % 4 == 3 {
            if log.flush().is_err() {
                return (appended, durable);
            }
            durable = appended.len();
        }
    }
    (appended, durable)
}

#[test]
fn power_loss_under_deferred_flush_keeps_every_flushed_batch_and_tears_nothing() {
    for flush in [FlushPolicy::Os, FlushPolicy::IntervalMs(5)] {
        let full = SimulatedMedium::new();
        run_deferred(&full, flush);
        let sync_points = full.syncs();
        println!("{flush:?}: losing power at each of {sync_points} sync points");
        for n in 0..=sync_points {
            let medium = SimulatedMedium::new();
            medium.fail_after_syncs(n);
            let (appended, durable) = run_deferred(&medium, flush);
            let rebooted = medium.after_power_loss();
            let clock = ManualClock::new(1_000);
            let log = Log::open(DIR, config(flush), &options(&rebooted, &clock))
                .unwrap_or_else(|e| panic!("{flush:?}, power loss after {n} syncs: {e}"));
            let values = all_values(&log);
            let all = values_of(&appended);
            let must = values_of(&appended[..durable]);
            assert!(
                values.len() >= must.len(),
                "{flush:?} after {n} syncs: lost flushed records"
            );
            assert_eq!(
                &values[..],
                &all[..values.len()],
                "{flush:?} after {n} syncs: not a prefix"
            );
        }
    }
}

/// Polls a future once: `None` if it is not ready. The durable waits below
/// are ready by the time they are polled (the sync that moved the durable
/// offset returned, or `wait_past` saw it move).
fn ready<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

/// Threads of the durable-path run, and batches each appends.
const HANDOVER_THREADS: usize = 3;
const HANDOVER_BATCHES: usize = 12;

/// The broker's durable path under `always`: append without waiting, then
/// `sync_appended` on the appending thread (it syncs, or leaves the sync to
/// the thread already syncing), then wait for the durable offset. Several
/// threads at once, so syncs are handed from one to another. Returns every
/// batch appended, and those acknowledged (their durable wait succeeded).
fn run_handover(medium: &SimulatedMedium) -> Outcome {
    let clock = ManualClock::new(0);
    let Ok(log) = Log::open(DIR, config(FlushPolicy::Always), &options(medium, &clock)) else {
        return (Vec::new(), Vec::new());
    };
    let log = Arc::new(log);
    let threads: Vec<_> = (0..HANDOVER_THREADS)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let (mut appended, mut acked) = (Vec::new(), Vec::new());
                for i in 0..HANDOVER_BATCHES {
                    let b = batch(&format!("t{t}-{i}"), 1 + i % 2, i as i64);
                    let Ok(info) = log.append_unsynced(&b) else {
                        break;
                    };
                    appended.push(b.clone());
                    if log.sync_appended().is_err() {
                        break;
                    }
                    let end = info.last_offset + 1;
                    // Another thread may be the one syncing: wait for it.
                    log.wait_past(info.last_offset, true, std::time::Duration::from_secs(10));
                    match ready(log.wait_durable(end)) {
                        Some(Ok(())) => acked.push(b),
                        Some(Err(_)) => break,
                        None => panic!("durable offset passed {end} but wait_durable is pending"),
                    }
                }
                (appended, acked)
            })
        })
        .collect();
    let (mut appended, mut acked) = (Vec::new(), Vec::new());
    for thread in threads {
        let (a, k) = thread.join().expect("thread");
        appended.extend(a);
        acked.extend(k);
    }
    let _ = log.close();
    (appended, acked)
}

/// Every batch appended, and those acknowledged.
type Outcome = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// Loses power at every sync point of `run` (and a little past its last)
/// in turn, and checks the reopened log: every acknowledged batch is
/// there, no record twice, none that nobody appended; it takes appends.
fn lose_power_at_every_sync_point(what: &str, run: fn(&SimulatedMedium) -> Outcome) {
    let full = SimulatedMedium::new();
    let (appended, acked) = run(&full);
    assert_eq!(acked.len(), HANDOVER_THREADS * HANDOVER_BATCHES);
    assert_eq!(appended.len(), acked.len());
    let sync_points = full.syncs();
    println!(
        "{what}: {HANDOVER_THREADS} threads × {HANDOVER_BATCHES} durable appends pass about {sync_points} sync points; losing power at each in turn"
    );
    for n in 0..=sync_points + 2 {
        let medium = SimulatedMedium::new();
        medium.fail_after_syncs(n);
        let (appended, acked) = run(&medium);
        let rebooted = medium.after_power_loss();
        let log = Log::open(
            DIR,
            config(FlushPolicy::Always),
            &options(&rebooted, &ManualClock::new(1_000)),
        )
        .unwrap_or_else(|e| panic!("{what}, power loss after {n} syncs: reopen failed: {e}"));
        let stored = all_values(&log);
        let unique: std::collections::HashSet<&Vec<u8>> = stored.iter().collect();
        assert_eq!(
            unique.len(),
            stored.len(),
            "{what} after {n} syncs: a record twice"
        );
        let appended: std::collections::HashSet<Vec<u8>> =
            values_of(&appended).into_iter().collect();
        assert!(
            stored.iter().all(|v| appended.contains(v)),
            "{what} after {n} syncs: a record nobody appended"
        );
        for value in values_of(&acked) {
            assert!(
                unique.contains(&value),
                "{what}: power loss after {n} of {sync_points} syncs lost an acknowledged record"
            );
        }
        log.append(&batch("after", 1, 0))
            .expect("append after recovery");
    }
}

#[test]
fn power_loss_at_every_sync_point_of_the_handed_over_durable_path_keeps_every_acknowledged_batch() {
    lose_power_at_every_sync_point("hand-over", run_handover);
}

#[test]
fn a_record_acknowledged_as_durable_survives_a_power_loss_right_after_its_acknowledgement() {
    let medium = SimulatedMedium::new();
    let clock = ManualClock::new(0);
    let log = Log::open(DIR, config(FlushPolicy::Always), &options(&medium, &clock)).expect("open");
    let mut acked = Vec::new();
    for i in 0..BATCHES {
        clock.advance(1);
        let b = batch_number(i);
        let info = log.append_unsynced(&b).expect("append");
        log.sync_appended().expect("sync");
        ready(log.wait_durable(info.last_offset + 1))
            .expect("the sync on this thread made it durable")
            .expect("durable");
        acked.push(b);
        // The power fails the moment the acknowledgement is given.
        let rebooted = medium.after_power_loss();
        let reopened = Log::open(
            DIR,
            config(FlushPolicy::Always),
            &options(&rebooted, &ManualClock::new(1_000)),
        )
        .unwrap_or_else(|e| panic!("after acknowledgement {i}: reopen failed: {e}"));
        assert_eq!(
            all_values(&reopened),
            values_of(&acked),
            "power loss right after acknowledgement {i}"
        );
    }
}

/// Batches shared between the queueing threads and the answers.
type Shared = Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

/// A queued append of `b` (the produce-stream path): appended by the
/// log's draining thread, acknowledged once the sync after its round
/// returned `Ok`.
fn queued(b: Vec<u8>, appended: &Shared, acked: &Shared) -> QueuedAppend {
    let (appended, acked) = (appended.clone(), acked.clone());
    Box::new(move |log: &Log| {
        log.append_unsynced(&b).ok()?;
        appended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(b.clone());
        Some(Box::new(move |synced: Result<(), AppendError>| {
            if synced.is_ok() {
                acked.lock().unwrap_or_else(|p| p.into_inner()).push(b);
            }
        }) as AfterSync)
    })
}

/// The produce-stream path under `always`: three threads queue appends to
/// the log; whichever finds no drainer drains (appending every queued
/// batch, one sync a round, answers after it). Returns every batch appended
/// and those acknowledged.
fn run_queued(medium: &SimulatedMedium) -> Outcome {
    let clock = ManualClock::new(0);
    let Ok(log) = Log::open(DIR, config(FlushPolicy::Always), &options(medium, &clock)) else {
        return (Vec::new(), Vec::new());
    };
    let log = Arc::new(log);
    let (appended, acked): (Shared, Shared) = Default::default();
    let threads: Vec<_> = (0..HANDOVER_THREADS)
        .map(|t| {
            let (log, appended, acked) = (log.clone(), appended.clone(), acked.clone());
            std::thread::spawn(move || {
                for i in 0..HANDOVER_BATCHES {
                    let b = batch(&format!("q{t}-{i}"), 1 + i % 2, i as i64);
                    if log.queue_append(queued(b, &appended, &acked)) {
                        log.drain_appends(&|sync| sync());
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("thread");
    }
    let _ = log.close();
    let take =
        |shared: &Shared| std::mem::take(&mut *shared.lock().unwrap_or_else(|p| p.into_inner()));
    (take(&appended), take(&acked))
}

#[test]
fn power_loss_at_every_sync_point_of_the_queued_path_keeps_every_acknowledged_batch() {
    lose_power_at_every_sync_point("queued", run_queued);
}

#[test]
fn a_queued_append_acknowledged_as_durable_survives_a_power_loss_right_after_its_answer() {
    let medium = SimulatedMedium::new();
    let clock = ManualClock::new(0);
    let log = Arc::new(
        Log::open(DIR, config(FlushPolicy::Always), &options(&medium, &clock)).expect("open"),
    );
    let (appended, acked): (Shared, Shared) = Default::default();
    for i in 0..BATCHES {
        clock.advance(1);
        assert!(log.queue_append(queued(batch_number(i), &appended, &acked)));
        log.drain_appends(&|sync| sync());
        let acknowledged = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(acknowledged.len(), i + 1, "answered after its sync");
        // The power fails the moment the answer is given.
        let rebooted = medium.after_power_loss();
        let reopened = Log::open(
            DIR,
            config(FlushPolicy::Always),
            &options(&rebooted, &ManualClock::new(1_000)),
        )
        .unwrap_or_else(|e| panic!("after answer {i}: reopen failed: {e}"));
        assert_eq!(
            all_values(&reopened),
            values_of(&acknowledged),
            "power loss right after answer {i}"
        );
    }
}

/// Batch `i` of the idempotent run: producers 0, 1 and 2 in turn, each
/// batch of 1 to 3 records following its producer's last.
fn producer_batches() -> Vec<((i64, i32), Vec<u8>)> {
    let mut sequences = [0i32; 3];
    (0..BATCHES)
        .map(|i| {
            let id = i % 3;
            let count = 1 + (i / 3) % 3;
            let b = producer_batch(
                id as i64,
                0,
                sequences[id],
                &format!("q{i}"),
                count,
                i as i64,
            );
            let first = sequences[id];
            sequences[id] += count as i32;
            ((id as i64, first), b)
        })
        .collect()
}

/// Sends the idempotent run; returns the index and answer of every batch
/// acknowledged as durable under the flush policy before the power failed
/// (`always`: the append returned; otherwise: a flush returned after it).
fn run_producers(
    medium: &SimulatedMedium,
    flush: FlushPolicy,
) -> Vec<(usize, carteiro_storage::AppendInfo)> {
    let clock = ManualClock::new(0);
    let mut acked = Vec::new();
    let Ok(log) = Log::open(DIR, config(flush), &options(medium, &clock)) else {
        return acked;
    };
    let mut unflushed = Vec::new();
    for (i, (_, b)) in producer_batches().iter().enumerate() {
        clock.advance(1);
        let Ok(info) = log.append(b) else {
            return acked;
        };
        unflushed.push((i, info));
        if flush == FlushPolicy::Always || i % 4 == 3 {
            if log.flush().is_err() {
                return acked;
            }
            acked.append(&mut unflushed);
        }
    }
    let _ = log.close();
    acked
}

/// Every `(producer, base sequence)` stored in the log, in order.
fn stored_sequences(log: &Log) -> Vec<(i64, i32)> {
    let mut out = Vec::new();
    for_each_batch(log, |batch| {
        out.push((batch.header().producer_id, batch.header().base_sequence));
    });
    out
}

#[test]
fn power_loss_at_every_sync_point_never_stores_an_acknowledged_idempotent_batch_twice() {
    let batches = producer_batches();
    for flush in [FlushPolicy::Always, FlushPolicy::Os] {
        let full = SimulatedMedium::new();
        assert_eq!(run_producers(&full, flush).len(), BATCHES);
        let sync_points = full.syncs();
        println!(
            "{flush:?}: {BATCHES} idempotent batches pass {sync_points} sync points; losing power at each in turn"
        );
        let mut from_snapshot = 0;
        for n in 0..=sync_points {
            let at = format!("{flush:?}, power loss after {n} of {sync_points} syncs");
            let medium = SimulatedMedium::new();
            medium.fail_after_syncs(n);
            let acked = run_producers(&medium, flush);
            let rebooted = medium.after_power_loss();
            let clock = ManualClock::new(1_000);
            let log = Log::open(DIR, config(flush), &options(&rebooted, &clock))
                .unwrap_or_else(|e| panic!("{at}: reopen failed: {e}"));
            let stored = stored_sequences(&log);
            let end = log.end_offset();
            if log.recovery_report().producer_snapshot.is_some() {
                from_snapshot += 1;
            }
            // Every batch acknowledged as durable, sent again: answered as a
            // duplicate with its original offsets if among its producer's
            // last kept, else refused as out of order; never stored again.
            for (i, original) in &acked {
                let (id, b) = &batches[*i];
                match log.append(b) {
                    Ok(info) => {
                        assert!(info.duplicate, "{at}: batch {i} stored again");
                        assert_eq!(
                            (info.base_offset, info.last_offset),
                            (original.base_offset, original.last_offset),
                            "{at}: batch {i}"
                        );
                    }
                    Err(AppendError::OutOfOrderSequence { producer_id, .. }) => {
                        assert_eq!(producer_id, id.0, "{at}");
                        let at_in_log = stored
                            .iter()
                            .position(|s| s == id)
                            .unwrap_or_else(|| panic!("{at}: acknowledged batch {i} lost"));
                        let later_stored = stored[at_in_log + 1..]
                            .iter()
                            .filter(|s| s.0 == id.0)
                            .count();
                        assert!(
                            later_stored >= PRODUCER_BATCHES_KEPT,
                            "{at}: batch {i}, among the last kept, refused"
                        );
                    }
                    Err(e) => panic!("{at}: batch {i}: {e}"),
                }
            }
            assert_eq!(log.end_offset(), end, "{at}: nothing stored again");
            // Under `always` the log holds exactly what was acknowledged, so
            // each producer's last five acknowledged are its kept batches.
            if flush == FlushPolicy::Always {
                assert_eq!(stored.len(), acked.len(), "{at}");
            }
            // Then every batch, in order, as a producer resending all it
            // sent would: each is stored exactly once in the end.
            for (_, b) in &batches {
                let _ = log.append(b);
            }
            let mut all = stored_sequences(&log);
            let count = all.len();
            all.sort_unstable();
            all.dedup();
            assert_eq!(all.len(), count, "{at}: a batch stored twice");
            drop(log);
            // And a reopen after that gives the same answers.
            let log = Log::open(DIR, config(flush), &options(&rebooted, &clock))
                .unwrap_or_else(|e| panic!("{at}: second reopen failed: {e}"));
            let end = log.end_offset();
            for (_, b) in &batches[BATCHES - 3..] {
                assert!(log.append(b).expect("a duplicate").duplicate, "{at}");
            }
            assert_eq!(log.end_offset(), end, "{at}");
        }
        println!("{flush:?}: {from_snapshot} reopens started from a producer snapshot");
        assert!(
            from_snapshot > sync_points / 2,
            "{flush:?}: rolls wrote snapshots"
        );
    }
}

fn store_options(medium: &SimulatedMedium) -> StoreOptions {
    StoreOptions {
        log: sim_options(medium),
        maintenance_interval_ms: None,
        ..StoreOptions::default()
    }
}

/// Allocates up to 2,500 producer ids (three blocks); returns those handed out.
fn allocate_ids(medium: &SimulatedMedium) -> Vec<i64> {
    let Ok(store) = Store::open("/data", store_options(medium)) else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    for _ in 0..2_500 {
        match store.allocate_producer_id() {
            Ok(id) => ids.push(id),
            Err(_) => break,
        }
    }
    std::mem::forget(store);
    ids
}

#[test]
fn power_loss_at_every_sync_point_never_hands_out_a_producer_id_twice() {
    let full = SimulatedMedium::new();
    assert_eq!(allocate_ids(&full).len(), 2_500);
    let sync_points = full.syncs();
    println!("2500 producer ids pass {sync_points} sync points; losing power at each in turn");
    for n in 0..=sync_points {
        let medium = SimulatedMedium::new();
        medium.fail_after_syncs(n);
        let before = allocate_ids(&medium);
        let rebooted = medium.after_power_loss();
        let after = allocate_ids(&rebooted);
        assert_eq!(
            after.len(),
            2_500,
            "after {n} syncs: allocation works again"
        );
        let mut all: Vec<i64> = before.iter().chain(&after).copied().collect();
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count, "after {n} syncs: an id handed out twice");
        if let (Some(last), Some(first)) = (before.last(), after.first()) {
            assert!(first > last, "after {n} syncs: {first} after {last}");
        }
    }
}
