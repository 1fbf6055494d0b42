//! Simulated power loss: the log runs over a medium that keeps a live and a
//! durable image of every file and loses every unsynced byte when the
//! power fails. The power fails at each sync point in turn; after each
//! failure the log must hold exactly what was acknowledged as durable.
//! (A process kill cannot show this: the page cache survives it.)

mod common;

use std::sync::Arc;

use carteiro_storage::{FlushPolicy, Log, LogConfig, LogOptions, ManualClock, SimulatedMedium};
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
