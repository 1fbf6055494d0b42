//! The producer's background task: the batch open for each partition, the
//! `ProduceStream` and what is in flight on it, sending (pipelined, in
//! order per partition), acknowledgements, and putting unacknowledged
//! batches back in order after a failed stream, with backoff, until the
//! delivery timeout. An idempotent producer's identity (asked of the broker
//! before the first batch, and its next epoch after a batch is given up)
//! and the stamping of each batch as it is sent, by `idempotence`'s
//! bookkeeping.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use carteiro::proto::{self, admin_client::AdminClient, broker_client::BrokerClient};
use carteiro::record::{Header, NewRecord, RecordBatchBuilder};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

use super::batch::Pending;
use super::idempotence::{Identity, Sequences};
use super::partitioner::{Partitioner, TopicLayout};
use super::{
    COMMANDS_PER_ROUND_MAX, Command, DeliveryResult, ProducerConfig, RETRY_BACKOFF_MAX_MS,
};
use crate::connection::{REQUEST_BYTES_MAX, call_error};
use crate::error::ClientError;
use crate::record::{ProducerRecord, TopicPartition};

/// The open `ProduceStream` and what was sent on it.
struct ProduceStream {
    requests: mpsc::Sender<proto::ProduceRequest>,
    replies: Streaming<proto::ProduceStreamReply>,
    next_sequence: u64,
    /// Sent and not yet acknowledged, by sequence; on a failed request, it
    /// and everything after it (which the broker did not append).
    unacked: BTreeMap<u64, (TopicPartition, Pending)>,
    /// A request failed: the broker acknowledges the ones before it and
    /// ends the stream; nothing more is sent on it.
    closing: bool,
    /// The first request that failed: the broker appended none after it.
    failed_at: Option<u64>,
}

pub(crate) struct Sender {
    config: ProducerConfig,
    client: BrokerClient<Channel>,
    admin: AdminClient<Channel>,
    partitioner: Partitioner,
    /// Never appended to: sizes a record as the only one of a batch.
    empty_batch: RecordBatchBuilder,
    open: HashMap<TopicPartition, Pending>,
    ready: HashMap<TopicPartition, VecDeque<Pending>>,
    in_flight: HashMap<TopicPartition, usize>,
    stream: Option<ProduceStream>,
    /// Streams failed in a row; sets the backoff before the next one.
    stream_failures: u32,
    /// No new stream before this.
    reconnect_at: Option<Instant>,
    flush_waiters: Vec<oneshot::Sender<()>>,
    /// An idempotent producer's identity and sequences, once the broker gave them.
    sequences: Option<Sequences>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Sender {
    pub(crate) fn new(config: ProducerConfig, channel: Channel) -> Self {
        Sender {
            client: BrokerClient::new(channel.clone()).max_encoding_message_size(REQUEST_BYTES_MAX),
            admin: AdminClient::new(channel),
            partitioner: Partitioner::new(config.sticky_bytes, config.metadata_max_age),
            empty_batch: RecordBatchBuilder::new(),
            config,
            open: HashMap::new(),
            ready: HashMap::new(),
            in_flight: HashMap::new(),
            stream: None,
            stream_failures: 0,
            reconnect_at: None,
            flush_waiters: Vec::new(),
            sequences: None,
        }
    }

    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut accepting = true;
        loop {
            // Without waiting for the timer: its 1 ms resolution would add
            // up to a millisecond to every batch with a zero linger.
            self.seal_expired();
            self.dispatch().await;
            self.notify_flushed();
            if !accepting && self.is_idle() {
                return;
            }
            let wake = self.next_wake();
            tokio::select! {
                command = commands.recv(), if accepting => {
                    accepting = self.handle(command).await;
                    // Take what else is waiting before the per-round work
                    // (sealing, dispatch, timers), so it is paid per burst,
                    // not per record.
                    let mut taken = 1;
                    while accepting && taken < COMMANDS_PER_ROUND_MAX {
                        let Ok(command) = commands.try_recv() else { break };
                        accepting = self.handle(Some(command)).await;
                        taken += 1;
                    }
                }
                reply = next_reply(self.stream.as_mut()) => self.on_reply(reply),
                _ = sleep_until(wake) => {}
            }
        }
    }

    /// Handles one command (`None`: the producer was dropped or closed);
    /// returns whether to keep accepting.
    async fn handle(&mut self, command: Option<Command>) -> bool {
        match command {
            Some(Command::Send {
                topic,
                record,
                done,
            }) => self.accept(topic, record, done).await,
            Some(Command::Flush(done)) => {
                self.seal_all();
                self.flush_waiters.push(done);
            }
            None => {
                self.seal_all();
                return false;
            }
        }
        true
    }

    fn unacked(&self) -> usize {
        self.stream.as_ref().map_or(0, |s| s.unacked.len())
    }

    fn is_idle(&self) -> bool {
        self.open.is_empty() && self.ready.values().all(VecDeque::is_empty) && self.unacked() == 0
    }

    fn notify_flushed(&mut self) {
        if !self.flush_waiters.is_empty() && self.is_idle() {
            for waiter in self.flush_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    /// True if `tp` may have another request out.
    fn has_room(&self, tp: &TopicPartition) -> bool {
        self.in_flight.get(tp).copied().unwrap_or(0) < self.config.max_in_flight_per_partition
    }

    fn next_wake(&self) -> Option<Instant> {
        // A saturated partition's open batch waits for a reply, not for a timer.
        let linger = self
            .open
            .iter()
            .filter(|(tp, _)| self.has_room(tp))
            .map(|(_, p)| p.created + self.config.linger);
        let reconnect = self
            .reconnect_at
            .filter(|_| (self.stream.is_none() || self.needs_identity()) && !self.ready.is_empty());
        linger.chain(reconnect).min()
    }

    /// The layout of `topic`, asked of the broker the first time and again
    /// once it is older than `metadata_max_age`.
    async fn layout(&mut self, topic: &str) -> Result<TopicLayout, ClientError> {
        if let Some(layout) = self.partitioner.layout(topic) {
            return Ok(layout);
        }
        let described = self
            .admin
            .describe_topic(proto::DescribeTopicRequest {
                name: topic.to_string(),
            })
            .await
            .map_err(|s| call_error(&self.config.broker, s))?
            .into_inner();
        let layout = TopicLayout {
            partitions: described.partitions,
            batch_bytes_max: described
                .config
                .and_then(|c| c.max_batch_bytes)
                .map_or(usize::MAX, |b| b as usize),
        };
        self.partitioner.learn(topic, layout);
        Ok(layout)
    }

    async fn accept(
        &mut self,
        topic: String,
        record: ProducerRecord,
        done: oneshot::Sender<DeliveryResult>,
    ) {
        let layout = match self.layout(&topic).await {
            Ok(layout) => layout,
            Err(e) => {
                let _ = done.send(Err(e));
                return;
            }
        };
        let timestamp = record.timestamp_ms.unwrap_or_else(now_ms);
        let headers: Vec<Header<'_>> = record
            .headers
            .iter()
            .map(|(k, v)| Header {
                key: k.as_bytes(),
                value: v.as_deref(),
            })
            .collect();
        let new = NewRecord {
            timestamp,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &headers,
        };
        // A batch holding only this record: if even that is over the
        // topic's limit, the broker would refuse it whatever the batching.
        let record_bytes = self.empty_batch.record_size(&new);
        let alone_bytes = self.empty_batch.size_bytes() + record_bytes;
        if alone_bytes > layout.batch_bytes_max {
            let message = format!(
                "a record of {record_bytes} bytes (a batch of {alone_bytes} bytes) is over topic {topic:?}'s max_batch_bytes {}",
                layout.batch_bytes_max
            );
            let _ = done.send(Err(ClientError::Invalid(message)));
            return;
        }
        let partition = match self.partitioner.choose(&topic, &record, record_bytes) {
            Ok(partition) => partition,
            Err(e) => {
                let _ = done.send(Err(e));
                return;
            }
        };
        let tp = TopicPartition::new(topic, partition);
        // Batches end at the producer's batch size or the topic's limit, whichever is smaller.
        let batch_bytes = self.config.batch_bytes.min(layout.batch_bytes_max);
        let size = self
            .open
            .get(&tp)
            .map(|p| p.builder.record_size(&new) + p.builder.size_bytes());
        if size.is_some_and(|s| s > batch_bytes) {
            self.seal(&tp);
        }
        if !self.open.contains_key(&tp) {
            self.open
                .insert(tp.clone(), Pending::new(self.config.compression));
        }
        let Some(pending) = self.open.get_mut(&tp) else {
            return;
        };
        if let Err(e) = pending.builder.append(&new) {
            let _ = done.send(Err(ClientError::Invalid(e.to_string())));
            return;
        }
        pending.waiters.push((done, timestamp));
        if pending.builder.size_bytes() >= batch_bytes {
            self.seal(&tp);
        }
    }

    /// Moves a partition's open batch to its send queue.
    fn seal(&mut self, tp: &TopicPartition) {
        if let Some(pending) = self.open.remove(tp) {
            self.partitioner.batch_sealed(&tp.topic, tp.partition);
            self.ready.entry(tp.clone()).or_default().push_back(pending);
        }
    }

    fn seal_all(&mut self) {
        let all: Vec<TopicPartition> = self.open.keys().cloned().collect();
        for tp in all {
            self.seal(&tp);
        }
    }

    /// Seals the open batches that have lingered long enough, of partitions
    /// with room for another request: while a partition's requests are
    /// out, its open batch keeps filling, so the next request carries
    /// everything that arrived meanwhile (Kafka's accumulator does the same).
    fn seal_expired(&mut self) {
        let now = Instant::now();
        let expired: Vec<TopicPartition> = self
            .open
            .iter()
            .filter(|(tp, p)| self.has_room(tp) && p.created + self.config.linger <= now)
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in expired {
            self.seal(&tp);
        }
    }

    /// Opens a stream if none is open and the backoff has passed.
    async fn ensure_stream(&mut self) -> bool {
        if self.stream.is_some() {
            return true;
        }
        if self.reconnect_at.is_some_and(|at| at > Instant::now()) {
            return false;
        }
        let (requests, outgoing) = mpsc::channel(self.config.max_in_flight);
        match self
            .client
            .produce_stream(ReceiverStream::new(outgoing))
            .await
        {
            Ok(replies) => {
                self.stream = Some(ProduceStream {
                    requests,
                    replies: replies.into_inner(),
                    next_sequence: 0,
                    unacked: BTreeMap::new(),
                    closing: false,
                    failed_at: None,
                });
                true
            }
            Err(status) => {
                let e = call_error(&self.config.broker, status);
                self.stream_failed(&e);
                self.expire_ready(e);
                false
            }
        }
    }

    /// Backs off before the next stream.
    fn stream_failed(&mut self, error: &ClientError) {
        self.stream_failures = self.stream_failures.saturating_add(1);
        let backoff = self
            .config
            .retry_backoff
            .saturating_mul(1 << (self.stream_failures - 1).min(16));
        let backoff = backoff.min(Duration::from_millis(RETRY_BACKOFF_MAX_MS));
        tracing::debug!(failures = self.stream_failures, ?backoff, %error, "produce stream failed; retrying");
        self.reconnect_at = Some(Instant::now() + backoff);
    }

    /// Fails queued batches that are out of time, or all of them if the
    /// error will not pass.
    fn expire_ready(&mut self, error: ClientError) {
        let timeout = self.config.delivery_timeout;
        let mut expired = Vec::new();
        for queue in self.ready.values_mut() {
            let (keep, out): (VecDeque<Pending>, VecDeque<Pending>) = queue
                .drain(..)
                .partition(|p| error.is_transient() && p.created.elapsed() < timeout);
            *queue = keep;
            expired.extend(out);
        }
        self.ready.retain(|_, q| !q.is_empty());
        for pending in expired {
            if error.is_transient() {
                self.give_up(pending, ClientError::Timeout(timeout));
            } else {
                self.give_up(pending, error.clone());
            }
        }
    }

    /// Fails a batch for good. If it carries a stamp of the current epoch,
    /// its sequence numbers are a gap the broker would refuse every later
    /// batch of its partition for: the next epoch is needed.
    fn give_up(&mut self, pending: Pending, error: ClientError) {
        if let (Some(sequences), Some(stamp)) = (self.sequences.as_mut(), &pending.stamp) {
            sequences.given_up(stamp);
        }
        pending.fail(error);
    }

    /// True if an idempotent producer must ask the broker for an identity
    /// (its first, or the next epoch) before it sends what is queued.
    fn needs_identity(&self) -> bool {
        self.config.idempotent && self.sequences.as_ref().is_none_or(Sequences::bump_needed)
    }

    /// True while a batch that may be in the log under its stamp is in
    /// flight or first in its queue: the broker must say what became of it
    /// (sent again, it is appended or recognised) before its epoch ends, or
    /// restamped it could be appended twice.
    fn unresolved(&self) -> bool {
        self.unacked() > 0
            || self
                .ready
                .values()
                .any(|q| q.front().is_some_and(|p| p.maybe_appended))
    }

    /// An idempotent producer's identity: a new one before the first batch,
    /// the next epoch once a batch was given up and nothing unresolved is
    /// left of the old one. Returns whether batches may be sent now; a
    /// transient failure backs off as a failed stream does, any other fails
    /// the queued batches.
    async fn ensure_identity(&mut self) -> bool {
        if !self.needs_identity() {
            return true;
        }
        let current = self.sequences.as_ref().map(Sequences::identity);
        if current.is_some() && self.unresolved() {
            // Those are sent under the current epoch first (see `dispatch`).
            return true;
        }
        if self.reconnect_at.is_some_and(|at| at > Instant::now()) {
            return false;
        }
        let request = proto::InitProducerIdRequest {
            producer_id: current.map(|c| c.producer_id),
            producer_epoch: current.map(|c| i32::from(c.epoch)),
        };
        let given = match self.client.init_producer_id(request).await {
            Ok(reply) => reply.into_inner(),
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                self.expire_ready(ClientError::Invalid(format!(
                    "broker {} does not give producer ids (InitProducerId): set idempotent to false to produce to it",
                    self.config.broker
                )));
                return false;
            }
            Err(status) => {
                let e = call_error(&self.config.broker, status);
                if e.is_transient() {
                    self.stream_failed(&e);
                }
                self.expire_ready(e);
                return false;
            }
        };
        let Ok(epoch) = i16::try_from(given.producer_epoch) else {
            self.expire_ready(ClientError::Invalid(format!(
                "the broker gave producer epoch {}, outside 0..={}",
                given.producer_epoch,
                i16::MAX
            )));
            return false;
        };
        let identity = Identity {
            producer_id: given.producer_id,
            epoch,
        };
        tracing::debug!(?current, ?identity, "idempotent producer identity");
        match self.sequences.as_mut() {
            Some(sequences) => sequences.adopt(identity),
            None => self.sequences = Some(Sequences::new(identity)),
        }
        true
    }

    /// Sends ready batches of partitions with room, oldest first per
    /// partition; an idempotent producer's stamped as they are first sent.
    async fn dispatch(&mut self) {
        if self.ready.is_empty() || !self.ensure_identity().await || !self.ensure_stream().await {
            return;
        }
        if self.config.idempotent && self.sequences.is_none() {
            return;
        }
        // While the next epoch waits, only batches that may be in the log
        // under their stamp are sent (again, as they are): see `unresolved`.
        let bumping = self.sequences.as_ref().is_some_and(Sequences::bump_needed);
        let candidates: Vec<TopicPartition> = self
            .ready
            .keys()
            .filter(|tp| self.has_room(tp))
            .cloned()
            .collect();
        for tp in candidates {
            while self.has_room(&tp) && self.unacked() < self.config.max_in_flight {
                let Some(stream) = self.stream.as_mut().filter(|s| !s.closing) else {
                    return;
                };
                let Some(queue) = self.ready.get_mut(&tp) else {
                    break;
                };
                if bumping && !queue.front().is_some_and(|p| p.maybe_appended) {
                    break;
                }
                let Some(mut pending) = queue.pop_front() else {
                    break;
                };
                let sequences = self.sequences.as_mut().filter(|_| self.config.idempotent);
                let batch = match pending.encode(&tp, sequences) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        // Never sent with a stamp of this epoch: no gap.
                        pending.fail(ClientError::Invalid(e.to_string()));
                        continue;
                    }
                };
                let request = proto::ProduceRequest {
                    topic: tp.topic.clone(),
                    partition: Some(tp.partition),
                    record_batch: batch,
                    acks: proto::Acks::from(self.config.acks) as i32,
                    ..Default::default()
                };
                // Room is certain: the channel holds `max_in_flight` and
                // fewer than that are unacknowledged. A closed channel means
                // the stream ended; its reply says so next.
                if stream.requests.try_send(request).is_err() {
                    stream.closing = true;
                }
                let sequence = stream.next_sequence;
                stream.next_sequence += 1;
                stream.unacked.insert(sequence, (tp.clone(), pending));
                *self.in_flight.entry(tp.clone()).or_insert(0) += 1;
            }
            if self.ready.get(&tp).is_some_and(VecDeque::is_empty) {
                self.ready.remove(&tp);
            }
        }
    }

    fn on_reply(&mut self, reply: Result<Option<proto::ProduceStreamReply>, tonic::Status>) {
        let reply = match reply {
            Ok(Some(reply)) => reply,
            Ok(None) => return self.stream_ended(None),
            Err(status) => {
                let e = call_error(&self.config.broker, status);
                return self.stream_ended(Some(e));
            }
        };
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        if reply.error_code != 0 {
            let e = call_error(
                &self.config.broker,
                tonic::Status::new(tonic::Code::from_i32(reply.error_code), reply.error_message),
            );
            stream.closing = true;
            stream.failed_at = Some(
                stream
                    .failed_at
                    .map_or(reply.sequence, |f| f.min(reply.sequence)),
            );
            if e.is_transient() {
                // Stays unacknowledged: sent again, in order, on the next stream.
                self.stream_failed(&e);
                return;
            }
            if let Some((tp, pending)) = stream.unacked.remove(&reply.sequence) {
                self.release(&tp);
                if e.is_not_found() {
                    self.partitioner.forget(&tp.topic);
                }
                self.give_up(pending, e);
            }
            return;
        }
        let Some((tp, pending)) = stream.unacked.remove(&reply.sequence) else {
            tracing::warn!(
                sequence = reply.sequence,
                "produce stream acknowledged a request it was not sent"
            );
            return;
        };
        self.stream_failures = 0;
        self.release(&tp);
        let landed = reply.response.and_then(|r| r.partitions.into_iter().next());
        if landed.as_ref().is_some_and(|p| p.duplicate) {
            // Appended before, its acknowledgement lost: these are the
            // offsets it got then.
            tracing::debug!(topic = %tp.topic, partition = tp.partition, stamp = ?pending.stamp, "batch sent again was already appended");
        }
        pending.deliver(&tp, landed.map_or(-1, |p| p.base_offset));
    }

    fn release(&mut self, tp: &TopicPartition) {
        if let Some(n) = self.in_flight.get_mut(tp) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.in_flight.remove(tp);
            }
        }
    }

    /// Puts every unacknowledged batch back at the front of its partition's
    /// queue, in the order it was first sent.
    fn stream_ended(&mut self, error: Option<ClientError>) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        if let Some(e) = &error {
            self.stream_failed(e);
        }
        let failed_at = stream.failed_at;
        for (sequence, (tp, mut pending)) in stream.unacked.into_iter().rev() {
            self.release(&tp);
            // The broker appends nothing after a failed request; of any
            // other, the stream's end leaves unknown whether it is in the log.
            if failed_at.is_none_or(|f| sequence <= f) {
                pending.maybe_appended = true;
            }
            if pending.created.elapsed() >= self.config.delivery_timeout {
                self.give_up(pending, ClientError::Timeout(self.config.delivery_timeout));
            } else {
                self.ready.entry(tp).or_default().push_front(pending);
            }
        }
    }
}

async fn next_reply(
    stream: Option<&mut ProduceStream>,
) -> Result<Option<proto::ProduceStreamReply>, tonic::Status> {
    match stream {
        Some(stream) => stream.replies.message().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::super::batch::filled;
    use super::*;

    #[tokio::test]
    async fn the_next_epoch_waits_while_a_batch_may_be_in_the_log_under_the_old_one() {
        // Nothing listens on port 1: asking the broker fails at once.
        let config = ProducerConfig::new("127.0.0.1:1");
        let channel = crate::connection::channel(&config.broker).expect("lazy channel");
        let mut sender = Sender::new(config, channel);
        let tp = TopicPartition::new("t", 0);
        let mut sequences = Sequences::new(Identity {
            producer_id: 42,
            epoch: 0,
        });
        let mut queue: Vec<Pending> = (0..3).map(|_| filled(1).0).collect();
        for p in &mut queue {
            p.encode(&tp, Some(&mut sequences)).expect("stamped");
        }
        sender.sequences = Some(sequences);
        let refused = queue.remove(0);
        queue[0].maybe_appended = true;
        sender.ready.insert(tp.clone(), queue.into());
        sender.give_up(refused, ClientError::Invalid("refused".into()));
        assert!(sender.needs_identity(), "a gap in epoch 0");
        // The first queued batch was in flight when a stream broke: it is
        // sent again under epoch 0 before the broker is asked for epoch 1.
        assert!(sender.unresolved());
        assert!(sender.ensure_identity().await, "may send, under epoch 0");
        let sequences = sender.sequences.as_ref().expect("identity");
        assert_eq!(sequences.identity().epoch, 0);
        // Once it is answered, the next epoch is asked for: here the broker
        // is unreachable, a transient failure that backs off.
        sender.ready.get_mut(&tp).and_then(VecDeque::pop_front);
        assert!(!sender.unresolved());
        assert!(!sender.ensure_identity().await, "nothing sent");
        assert!(sender.reconnect_at.is_some(), "backing off");
        assert_eq!(
            sender.ready[&tp].len(),
            1,
            "kept: within its delivery timeout"
        );
        assert!(sender.needs_identity());
    }
}
