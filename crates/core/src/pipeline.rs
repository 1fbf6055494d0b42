//! Produces of one sender that pipelines (a gRPC produce stream): appended
//! in the order sent, without the sender waiting for each append.
//!
//! A request for one partition with a client's batch (what the client
//! library's `Producer` sends) is queued to that partition's log
//! ([`Log::queue_append`]); the sender goes on reading. The log's
//! draining thread appends everything queued, syncs once for all of it,
//! and answers each request when it meets its acks. Before its first
//! request to another partition, or any other kind of request, the sender
//! waits until what it queued is appended: its appends happen in the order
//! it sent them, across partitions too.
//!
//! Once one of its appends fails, the later ones are refused
//! ([`BrokerError::NotAppendedAfterFailure`]) and not appended, so that a
//! client's retry cannot reorder a partition. A [`Pipeline::standalone`]
//! pipeline (a Kafka connection's) refuses nothing after a failure: Kafka
//! answers each produce request on its own, and an idempotent client's
//! sequence numbers keep its retries in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use carteiro_storage::{AckWait, AfterSync, AppendError, Log, QueuedAppend};
use tokio::sync::oneshot;

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::produce::{Appended, Payload, ProduceRequest, check_batch};

/// See the module documentation. One per sender; not shared.
#[derive(Debug)]
pub struct Pipeline {
    /// Set when one of its appends fails; `None` when its appends stand
    /// alone ([`Pipeline::standalone`]).
    failed: Option<Arc<AtomicBool>>,
    /// The log its queued appends went to, and the signal that the last
    /// of them (so all: a log's queue is in order) is appended or refused.
    queued: Option<(Arc<Log>, oneshot::Receiver<()>)>,
}

impl Default for Pipeline {
    /// A pipeline that refuses every append after one fails.
    fn default() -> Pipeline {
        Pipeline {
            failed: Some(Arc::default()),
            queued: None,
        }
    }
}

impl Pipeline {
    /// A pipeline whose appends stand alone: one failing refuses none of
    /// the later ones (they are still appended in the order sent).
    pub fn standalone() -> Pipeline {
        Pipeline {
            failed: None,
            queued: None,
        }
    }

    /// Waits until every append it queued is appended or refused; refuses
    /// what comes next if one of them failed.
    async fn settle(&mut self) -> Result<(), BrokerError> {
        if let Some((_, done)) = self.queued.take() {
            // A dropped sender means the append ran (or the log went away).
            let _ = done.await;
        }
        self.refuse_after_failure()
    }

    /// [`BrokerError::NotAppendedAfterFailure`] once one of its appends
    /// failed (never for a standalone pipeline).
    fn refuse_after_failure(&self) -> Result<(), BrokerError> {
        match &self.failed {
            Some(failed) if failed.load(Ordering::Acquire) => {
                Err(BrokerError::NotAppendedAfterFailure)
            }
            _ => Ok(()),
        }
    }

    fn mark_failed(&self) {
        if let Some(failed) = &self.failed {
            failed.store(true, Ordering::Release);
        }
    }
}

impl Broker {
    /// Appends one request of `pipeline`'s sender, in order after its
    /// earlier ones, without waiting for the append when it can be queued
    /// (see the module documentation); the returned [`Appended`] waits for
    /// the acks.
    pub async fn append_in(
        self: &Arc<Self>,
        pipeline: &mut Pipeline,
        request: ProduceRequest,
    ) -> Result<Appended, BrokerError> {
        self.check_running()?;
        pipeline.refuse_after_failure()?;
        let (partition, bytes) = match (&request.payload, request.partition) {
            (Payload::Batch(bytes), Some(partition)) => (partition, bytes.clone()),
            _ => {
                pipeline.settle().await?;
                let appended = self.append(request).await;
                if appended.is_err() {
                    pipeline.mark_failed();
                }
                return appended;
            }
        };
        self.check_user_topic("topic", &request.topic)?;
        let log = self.store.partition(&request.topic, partition)?;
        if pipeline
            .queued
            .as_ref()
            .is_some_and(|(queued, _)| !Arc::ptr_eq(queued, &log))
        {
            pipeline.settle().await?;
        }
        let (done, settled) = oneshot::channel();
        let (answer, answered) = oneshot::channel();
        let append = queued_append(bytes, request.acks, pipeline.failed.clone(), done, answer);
        if log.queue_append(append) {
            let drainer = log.clone();
            tokio::task::spawn_blocking(move || {
                drainer.drain_appends(&|sync| {
                    tokio::task::spawn_blocking(sync);
                })
            });
        }
        pipeline.queued = Some((log.clone(), settled));
        Ok(Appended::queued(request.acks, partition, log, answered))
    }
}

/// The append that runs on the log's draining thread: checks the batch
/// (it reads all of it), appends it unless an earlier append of the
/// pipeline failed (`failed`, when the pipeline refuses after a failure),
/// and answers once the acks are met.
fn queued_append(
    bytes: bytes::Bytes,
    acks: carteiro_storage::Acks,
    failed: Option<Arc<AtomicBool>>,
    done: oneshot::Sender<()>,
    answer: oneshot::Sender<Result<carteiro_storage::AppendInfo, BrokerError>>,
) -> QueuedAppend {
    Box::new(move |log: &Log| {
        let appended = if failed.as_ref().is_some_and(|f| f.load(Ordering::Acquire)) {
            Err(BrokerError::NotAppendedAfterFailure)
        } else {
            check_batch("record_batch", bytes).and_then(|batch| {
                log.append_checked(&batch, carteiro_storage::Acks::Appended)
                    .map_err(|source| BrokerError::Append {
                        field: "record_batch",
                        source,
                    })
            })
        };
        if let (Err(_), Some(failed)) = (&appended, &failed) {
            failed.store(true, Ordering::Release);
        }
        let _ = done.send(());
        let info = match appended {
            Ok(info) => info,
            Err(e) => {
                let _ = answer.send(Err(e));
                return None;
            }
        };
        match log.ack_wait(&info, acks) {
            AckWait::Sync { .. } => Some(Box::new(move |synced: Result<(), AppendError>| {
                let _ = answer.send(
                    synced
                        .map(|()| carteiro_storage::AppendInfo {
                            durable: true,
                            ..info
                        })
                        .map_err(|source| BrokerError::Append {
                            field: "record_batch",
                            source,
                        }),
                );
            }) as AfterSync),
            // Readers of an `always` log see only synced records: sync,
            // with nobody waiting for it.
            AckWait::NowSyncSoon { .. } => {
                let _ = answer.send(Ok(info));
                Some(Box::new(|_| {}))
            }
            // `Flush`: the answer's receiver waits for the interval flush.
            AckWait::Now | AckWait::Flush { .. } => {
                let _ = answer.send(Ok(info));
                None
            }
        }
    })
}
