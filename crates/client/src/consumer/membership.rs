//! A consumer's group membership: joining (and rejoining) its group, the
//! heartbeat task that says when to rejoin, giving partitions up and taking
//! new ones with the rebalance events, and leaving.

use std::time::Duration;

use carteiro::proto::{self, groups_client::GroupsClient};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use super::Consumer;
use crate::error::ClientError;
use crate::record::TopicPartition;

/// How the coordinator splits partitions among a group's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Consecutive ranges per topic (Kafka's range).
    #[default]
    Range,
    /// Partitions dealt in turn (Kafka's round robin).
    RoundRobin,
}

/// What a rebalance did to this consumer's partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceEvent {
    /// These partitions were given up (after their positions were committed).
    Revoked(Vec<TopicPartition>),
    /// These partitions are now this consumer's, in `generation`.
    Assigned {
        /// The group generation.
        generation: u32,
        /// The partitions.
        partitions: Vec<TopicPartition>,
    },
}

/// What the heartbeat task tells `poll`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Signal {
    Ok,
    Rejoin,
    RejoinAsNew,
}

/// A callback told of every assignment and revocation.
pub(super) type RebalanceListener = Box<dyn FnMut(&RebalanceEvent) + Send>;

/// The consumer's place in its group's current generation.
pub(super) struct Membership {
    pub member_id: String,
    pub generation: u32,
    pub signal: watch::Receiver<Signal>,
    pub heartbeat: JoinHandle<()>,
}

impl Consumer {
    /// Calls `listener` with every partition assignment and revocation.
    pub fn on_rebalance(&mut self, listener: impl FnMut(&RebalanceEvent) + Send + 'static) {
        self.listener = Some(Box::new(listener));
    }

    pub(super) fn emit(&mut self, event: RebalanceEvent) {
        if let Some(listener) = self.listener.as_mut() {
            listener(&event);
        }
    }

    /// The group generation this consumer belongs to, if it joined one.
    pub fn generation(&self) -> Option<u32> {
        self.membership.as_ref().map(|m| m.generation)
    }

    /// This consumer's member id in its group, if it joined one.
    pub fn member_id(&self) -> Option<&str> {
        self.membership.as_ref().map(|m| m.member_id.as_str())
    }

    /// Joins (or rejoins) the group and takes the partitions it is given.
    pub(super) async fn join(&mut self) -> Result<(), ClientError> {
        let Some(group) = self.config.group_id.clone() else {
            return Err(ClientError::Invalid("joining needs a group_id".into()));
        };
        let member_id = match &self.membership {
            Some(m) if *m.signal.borrow() != Signal::RejoinAsNew => m.member_id.clone(),
            _ => String::new(),
        };
        if let Some(old) = self.membership.take() {
            old.heartbeat.abort();
        }
        let strategy = match self.config.strategy {
            Strategy::Range => proto::AssignmentStrategy::Range,
            Strategy::RoundRobin => proto::AssignmentStrategy::RoundRobin,
        };
        let mut request = proto::JoinGroupRequest {
            group: group.clone(),
            member_id,
            topics: self.subscription.clone(),
            session_timeout_ms: self.config.session_timeout_ms,
            rebalance_timeout_ms: self.config.rebalance_timeout_ms,
            strategy: strategy as i32,
            client_id: self.config.client_id.clone(),
        };
        let joined = loop {
            match self.groups.join_group(request.clone()).await {
                Ok(reply) => break reply.into_inner(),
                // The coordinator no longer knows this member (a broker
                // restart, an expired session): join afresh under a new id.
                Err(status)
                    if status.code() == tonic::Code::FailedPrecondition
                        && !request.member_id.is_empty() =>
                {
                    request.member_id.clear();
                }
                Err(status) => return Err(self.err()(status)),
            }
        };
        let (tx, signal) = watch::channel(Signal::Ok);
        let interval = Duration::from_millis(u64::from(self.config.session_timeout_ms / 3).max(1));
        let heartbeat = tokio::spawn(heartbeat(
            self.groups.clone(),
            group,
            joined.member_id.clone(),
            joined.generation,
            interval,
            tx,
        ));
        self.membership = Some(Membership {
            member_id: joined.member_id,
            generation: joined.generation,
            signal,
            heartbeat,
        });
        let partitions: Vec<TopicPartition> = joined
            .assignment
            .into_iter()
            .map(|tp| TopicPartition::new(tp.topic, tp.partition))
            .collect();
        self.assign_positions(partitions.clone()).await?;
        self.emit(RebalanceEvent::Assigned {
            generation: joined.generation,
            partitions,
        });
        Ok(())
    }

    /// Gives up the current partitions (committing their positions first) and joins again.
    pub(super) async fn rebalance(&mut self) -> Result<(), ClientError> {
        let revoked = self.assignment();
        if !revoked.is_empty() {
            if let Err(e) = self.commit().await {
                tracing::warn!(error = %e, "commit before giving up partitions failed");
            }
            self.emit(RebalanceEvent::Revoked(revoked));
        }
        self.positions.clear();
        self.join().await
    }

    pub(super) fn signal(&self) -> Signal {
        self.membership
            .as_ref()
            .map_or(Signal::Ok, |m| *m.signal.borrow())
    }

    /// Leaves the group at once (committing positions first), so the others
    /// take over its partitions without waiting for the session to expire.
    pub async fn close(mut self) -> Result<(), ClientError> {
        if self.config.group_id.is_none() {
            return Ok(());
        }
        let commit = if self.positions.is_empty() {
            Ok(())
        } else {
            self.commit().await
        };
        if let (Some(group), Some(membership)) =
            (self.config.group_id.clone(), self.membership.take())
        {
            membership.heartbeat.abort();
            let request = proto::LeaveGroupRequest {
                group,
                member_id: membership.member_id,
            };
            self.groups.leave_group(request).await.map_err(self.err())?;
        }
        commit
    }

    pub(super) fn member(&self) -> (String, u32) {
        self.membership
            .as_ref()
            .map_or((String::new(), 0), |m| (m.member_id.clone(), m.generation))
    }

    pub(super) fn force_rejoin(&mut self) {
        if let Some(membership) = self.membership.as_mut() {
            membership.heartbeat.abort();
            let (tx, rx) = watch::channel(Signal::Rejoin);
            drop(tx);
            membership.signal = rx;
        }
    }
}

/// Heartbeats every `interval` until the coordinator says to rejoin.
async fn heartbeat(
    mut groups: GroupsClient<Channel>,
    group: String,
    member_id: String,
    generation: u32,
    interval: Duration,
    signal: watch::Sender<Signal>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    loop {
        tick.tick().await;
        let request = proto::HeartbeatRequest {
            group: group.clone(),
            member_id: member_id.clone(),
            generation,
        };
        let status = match groups.heartbeat(request).await {
            Ok(reply) => reply.into_inner().status(),
            // The broker may be restarting: keep trying; the session decides.
            Err(_) => continue,
        };
        let next = match status {
            proto::HeartbeatStatus::Ok => continue,
            proto::HeartbeatStatus::Rebalance | proto::HeartbeatStatus::StaleGeneration => {
                Signal::Rejoin
            }
            proto::HeartbeatStatus::UnknownMember => Signal::RejoinAsNew,
        };
        let _ = signal.send(next);
        return;
    }
}
