//! The consumer group protocol of KIP-848 (ConsumerGroupHeartbeat, Apache
//! Kafka 4.0 and later): incremental rebalancing, driven by the broker.
//!
//! The member heartbeats its subscription and the partitions it owns; the
//! coordinator runs the assignor (`uniform`, the sticky and balanced one, as
//! the classic protocol's `sticky` is kfn's first choice) and answers with the
//! partitions the member may hold now. The member reconciles one step at a
//! time:
//!
//! 1. partitions it owns but was not given are revoked: their workers finish
//!    in-flight work and commit (under exactly_once the open transaction ends)
//!    while the member keeps heartbeating, with the epoch it holds;
//! 2. it heartbeats at once with what it still owns: the acknowledgement
//!    that lets the coordinator hand those partitions to their next owner;
//! 3. partitions given but not owned are started, with the member epoch of
//!    the answer that gave them.
//!
//! Partitions that stay are never stopped: a replica joining or leaving moves
//! only the partitions that change owner. The member epoch plays the part of
//! the classic generation: it goes into [`Generation::id`], so OffsetCommit
//! (v9) and TxnOffsetCommit carry it and the coordinator refuses a member it
//! fenced. FENCED_MEMBER_EPOCH and UNKNOWN_MEMBER_ID drop every partition
//! without commit and rejoin with epoch 0; shutdown revokes everything and
//! leaves with epoch -1.
//!
//! The session timeout and heartbeat interval are the broker's
//! (`group.consumer.session.timeout.ms`, `group.consumer.heartbeat.interval.ms`);
//! kfn's own session timeout still bounds how long a member that cannot reach
//! its coordinator keeps its partitions.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::consumer_group_heartbeat_response::Assignment;
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, DescribeTopicPartitionsRequest, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::sync::watch;
use uuid::Uuid;

use super::coordinator::{Generation, GroupClient};
use super::membership::{
    is_fatal, rejoin_pauses, wait_or_shutdown, write, MemberConfig, MemberState, RebalanceListener,
};
use super::protocol::TopicPartition;
use crate::cluster::Cluster;
use crate::error::KafkaError;

/// The server-side assignor kfn asks for: sticky and balanced, like the
/// classic protocol's `sticky` that kfn prefers there.
pub const SERVER_ASSIGNOR: &str = "uniform";

/// Member epoch of a member that joins (or rejoins after it was fenced).
const JOIN_EPOCH: i32 = 0;
/// Member epoch of a member that leaves the group.
const LEAVE_EPOCH: i32 = -1;

/// What the coordinator answered to one heartbeat.
struct Answer {
    epoch: i32,
    interval: Duration,
    assignment: Option<Assignment>,
}

/// Why the heartbeat loop handed control back.
enum Outcome {
    /// FENCED_MEMBER_EPOCH or UNKNOWN_MEMBER_ID, or the coordinator was out of
    /// reach past the session timeout: the partitions are someone else's now.
    Fenced,
    /// Shutdown was asked for.
    Shutdown,
    /// An error no retry can cure.
    Fatal(KafkaError),
}

/// One member of a group on the consumer protocol; see the module docs.
pub(super) struct ConsumerMember {
    config: MemberConfig,
    client: GroupClient,
    cluster: Cluster,
    state: Arc<RwLock<MemberState>>,
    state_tx: watch::Sender<u64>,
    member_id: String,
    epoch: i32,
    owned: BTreeSet<TopicPartition>,
    /// The coordinator's last assignment not yet reconciled.
    target: Option<Assignment>,
    interval: Duration,
    topic_names: HashMap<Uuid, String>,
}

impl ConsumerMember {
    pub(super) fn new(
        config: MemberConfig,
        client: GroupClient,
        cluster: Cluster,
        state: Arc<RwLock<MemberState>>,
        state_tx: watch::Sender<u64>,
    ) -> Self {
        let interval = config.heartbeat_interval;
        Self {
            config,
            client,
            cluster,
            state,
            state_tx,
            // KIP-848 (ConsumerGroupHeartbeat v1): the member makes its own id and keeps it for its lifetime.
            member_id: Uuid::from_u128(rand::random()).to_string(),
            epoch: JOIN_EPOCH,
            owned: BTreeSet::new(),
            target: None,
            interval,
            topic_names: HashMap::new(),
        }
    }

    fn generation(&self) -> Generation {
        Generation { id: self.epoch, member_id: self.member_id.clone(), protocol: SERVER_ASSIGNOR.to_string() }
    }

    /// Takes part in the group until `shutdown` turns true, then revokes and leaves.
    pub(super) async fn run(
        mut self,
        listener: Arc<dyn RebalanceListener>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), KafkaError> {
        tracing::info!(group = %self.config.group, member = %self.member_id, "joining with the consumer group protocol (KIP-848)");
        loop {
            match self.heartbeat_and_reconcile(&*listener, &mut shutdown).await {
                Outcome::Fenced => {
                    let dropped: Vec<TopicPartition> = std::mem::take(&mut self.owned).into_iter().collect();
                    tracing::warn!(group = %self.config.group, epoch = self.epoch, partitions = dropped.len(), "fenced (or the session expired): partitions dropped without commit; rejoining");
                    self.epoch = JOIN_EPOCH;
                    self.target = None;
                    self.publish(None);
                    listener.lost(&dropped).await;
                }
                Outcome::Shutdown => {
                    let owned: Vec<TopicPartition> = self.owned.iter().cloned().collect();
                    let generation = self.generation();
                    self.revoke_while_heartbeating(&*listener, &generation, &owned).await;
                    self.owned.clear();
                    self.publish(None);
                    if let Err(e) = self.heartbeat(LEAVE_EPOCH).await {
                        tracing::info!(group = %self.config.group, error = %e, "leaving the group failed; the session timeout will remove this member");
                    }
                    return Ok(());
                }
                Outcome::Fatal(e) => {
                    let owned: Vec<TopicPartition> = std::mem::take(&mut self.owned).into_iter().collect();
                    self.publish(None);
                    listener.lost(&owned).await;
                    return Err(e);
                }
            }
        }
    }

    /// Heartbeats and reconciles until fenced, shut down or failed for good.
    async fn heartbeat_and_reconcile(
        &mut self,
        listener: &dyn RebalanceListener,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let mut backoff = rejoin_pauses();
        let mut last_ok = Instant::now();
        // The first heartbeat (the join) goes at once; so does the one that acknowledges a change.
        let mut wait = Duration::ZERO;
        loop {
            if wait_or_shutdown(wait, shutdown).await {
                return Outcome::Shutdown;
            }
            wait = self.interval;
            match self.heartbeat(self.epoch).await {
                Ok(answer) => {
                    backoff = rejoin_pauses();
                    last_ok = Instant::now();
                    self.take(answer);
                }
                Err(e) => match self.classify(e, last_ok) {
                    Some(outcome) => return outcome,
                    None => {
                        wait =
                            backoff.next_delay().unwrap_or_default().min(self.interval.max(Duration::from_millis(100)));
                        continue;
                    }
                },
            }
            match self.reconcile(listener).await {
                Ok(true) => wait = Duration::ZERO,
                Ok(false) => {}
                Err(outcome) => return outcome,
            }
        }
    }

    /// Records what an answer says: the epoch, the interval, a new assignment.
    fn take(&mut self, answer: Answer) {
        if answer.epoch != self.epoch {
            tracing::debug!(group = %self.config.group, from = self.epoch, to = answer.epoch, "member epoch");
            self.epoch = answer.epoch;
            // Commits from now on carry the new epoch; the coordinator refuses the old one.
            let mut state = write(&self.state);
            if let Some(generation) = state.generation.as_mut() {
                generation.id = answer.epoch;
            }
        }
        if !answer.interval.is_zero() {
            self.interval = answer.interval;
        }
        if answer.assignment.is_some() {
            self.target = answer.assignment;
        }
    }

    /// What to do about a failed heartbeat: `None` retries.
    fn classify(&mut self, e: KafkaError, last_ok: Instant) -> Option<Outcome> {
        if is_fatal(&e) {
            return Some(Outcome::Fatal(e));
        }
        match e.response_error() {
            Some(ResponseError::FencedMemberEpoch | ResponseError::UnknownMemberId) => {
                tracing::warn!(group = %self.config.group, epoch = self.epoch, error = %e, "the coordinator fenced this member");
                Some(Outcome::Fenced)
            }
            Some(
                ResponseError::UnsupportedAssignor
                | ResponseError::InvalidRequest
                | ResponseError::UnsupportedVersion
                | ResponseError::GroupMaxSizeReached,
            ) => Some(Outcome::Fatal(e)),
            _ => {
                tracing::info!(group = %self.config.group, error = %e, "heartbeat failed; retrying");
                self.client.reset_coordinator();
                // Past the session timeout the coordinator has given our partitions
                // away: stop them before their next owner starts. The broker's
                // session is not in its answers; it is longer than its heartbeat
                // interval, which alone would make one failed beat look like an
                // expired session, so the bound is at least three beats (the
                // member epoch fences any commit past the broker's real one).
                let session = self.config.session_timeout.max(self.interval * 3);
                let expired = last_ok.elapsed() >= session && !self.owned.is_empty();
                if expired {
                    tracing::warn!(group = %self.config.group, silent = ?last_ok.elapsed(), "no heartbeat answered for a session timeout");
                }
                expired.then_some(Outcome::Fenced)
            }
        }
    }

    /// One reconciliation step toward the last assignment; whether the
    /// coordinator should hear about it at once.
    async fn reconcile(&mut self, listener: &dyn RebalanceListener) -> Result<bool, Outcome> {
        let Some(assignment) = self.target.clone() else { return Ok(false) };
        let Some(target) = self.resolve(&assignment).await else {
            // A topic id the metadata does not know yet (just created): ask again next beat.
            return Ok(false);
        };
        let revoke: Vec<TopicPartition> = self.owned.difference(&target).cloned().collect();
        if !revoke.is_empty() {
            tracing::info!(group = %self.config.group, epoch = self.epoch, partitions = ?names(&revoke), "revoking partitions");
            let generation = self.generation();
            if let Some(outcome) = self.revoke_while_heartbeating(listener, &generation, &revoke).await {
                return Err(outcome);
            }
            for tp in &revoke {
                self.owned.remove(tp);
            }
            self.publish(Some(self.generation()));
            // The next heartbeat acknowledges the revocation; the new partitions
            // (if any) come with the epoch that answer brings.
            return Ok(true);
        }
        self.target = None;
        let add: Vec<TopicPartition> = target.difference(&self.owned).cloned().collect();
        let first = write(&self.state).generation.is_none();
        if add.is_empty() && !first {
            return Ok(false);
        }
        self.owned.extend(add.iter().cloned());
        let generation = self.generation();
        self.publish(Some(generation.clone()));
        tracing::info!(group = %self.config.group, epoch = self.epoch, partitions = ?names(&add), "partitions assigned");
        listener.assigned(&generation, &add).await;
        Ok(!add.is_empty())
    }

    /// Revokes `partitions` while heartbeats keep the session; `Some` when
    /// the coordinator fenced the member meanwhile (the commits were refused).
    async fn revoke_while_heartbeating(
        &mut self,
        listener: &dyn RebalanceListener,
        generation: &Generation,
        partitions: &[TopicPartition],
    ) -> Option<Outcome> {
        let revoke = listener.revoked(generation, partitions);
        tokio::pin!(revoke);
        let mut fenced = false;
        loop {
            tokio::select! {
                () = &mut revoke => return fenced.then_some(Outcome::Fenced),
                () = tokio::time::sleep(self.interval) => {
                    match self.heartbeat(self.epoch).await {
                        Ok(answer) => self.take(answer),
                        Err(e) if matches!(e.response_error(), Some(ResponseError::FencedMemberEpoch | ResponseError::UnknownMemberId)) => fenced = true,
                        Err(e) => {
                            tracing::debug!(group = %self.config.group, error = %e, "heartbeat during revocation failed");
                            self.client.reset_coordinator();
                        }
                    }
                }
            }
        }
    }

    /// Shares the generation and owned partitions with the runtime.
    fn publish(&self, generation: Option<Generation>) {
        {
            let mut state = write(&self.state);
            state.generation = generation.clone();
            state.partitions = self.owned.iter().cloned().collect();
            if generation.is_some() {
                state.assignments += 1;
            }
        }
        if generation.is_some() {
            self.state_tx.send_modify(|n| *n += 1);
        }
    }

    /// The assignment's partitions by topic name; `None` while an id is unknown.
    async fn resolve(&mut self, assignment: &Assignment) -> Option<BTreeSet<TopicPartition>> {
        if assignment.topic_partitions.iter().any(|t| !self.topic_names.contains_key(&t.topic_id)) {
            let topics: Vec<&str> = self.config.topics.iter().map(String::as_str).collect();
            match self.cluster.refresh(&topics).await {
                Ok(infos) => {
                    for info in infos {
                        self.topic_names.insert(info.id, info.name);
                    }
                }
                Err(e) => {
                    tracing::info!(group = %self.config.group, error = %e, "metadata for the assignment failed");
                    return None;
                }
            }
        }
        let mut out = BTreeSet::new();
        for t in &assignment.topic_partitions {
            let name = self.topic_names.get(&t.topic_id)?;
            out.extend(t.partitions.iter().map(|p| TopicPartition::new(name.clone(), *p)));
        }
        Some(out)
    }

    /// One ConsumerGroupHeartbeat with `epoch`: the full subscription and the
    /// owned partitions every time (the coordinator accepts a full request in
    /// any state, so a lost answer needs no bookkeeping).
    async fn heartbeat(&mut self, epoch: i32) -> Result<Answer, KafkaError> {
        let conn = self.client.coordinator().await?;
        let mut owned: HashMap<&str, Vec<i32>> = HashMap::new();
        for tp in &self.owned {
            owned.entry(tp.topic.as_str()).or_default().push(tp.partition);
        }
        let ids: HashMap<&str, Uuid> = self.topic_names.iter().map(|(id, name)| (name.as_str(), *id)).collect();
        let mut topic_partitions = Vec::with_capacity(owned.len());
        for (topic, partitions) in owned {
            let Some(id) = ids.get(topic) else { continue };
            topic_partitions.push(TopicPartitions::default().with_topic_id(*id).with_partitions(partitions));
        }
        let leaving = epoch == LEAVE_EPOCH;
        let request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.config.group.clone())))
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(if leaving { -1 } else { self.config.rebalance_timeout.as_millis() as i32 })
            .with_subscribed_topic_names(
                (!leaving)
                    .then(|| self.config.topics.iter().map(|t| TopicName(StrBytes::from_string(t.clone()))).collect()),
            )
            .with_server_assignor((!leaving).then(|| StrBytes::from_static_str(SERVER_ASSIGNOR)))
            .with_topic_partitions((!leaving).then_some(topic_partitions));
        let response = conn.send(&request).await?;
        if response.error_code != 0 {
            let message = response.error_message.map(|m| m.to_string()).unwrap_or_default();
            return Err(KafkaError::Broker {
                api: "ConsumerGroupHeartbeat",
                code: response.error_code,
                context: format!("group {}: {message}", self.config.group),
            });
        }
        Ok(Answer {
            epoch: response.member_epoch,
            interval: Duration::from_millis(response.heartbeat_interval_ms.max(0) as u64),
            assignment: response.assignment,
        })
    }
}

/// Whether the broker behind `client` offers the consumer group protocol;
/// `None` when it cannot tell yet.
///
/// Apache Kafka advertises ConsumerGroupHeartbeat only once it knows the
/// cluster's `group.version` feature, which a broker just started may not:
/// a broker that offers DescribeTopicPartitions (3.8 and later) but not
/// ConsumerGroupHeartbeat may offer it a moment later (or run 3.8/3.9 with
/// the feature off), so the caller asks again on a new connection for a while.
pub(super) async fn offered(client: &mut GroupClient) -> Result<Option<bool>, KafkaError> {
    let conn = client.coordinator().await?;
    if conn.version::<ConsumerGroupHeartbeatRequest>().is_ok() {
        return Ok(Some(true));
    }
    Ok(conn.version::<DescribeTopicPartitionsRequest>().is_err().then_some(false))
}

fn names(partitions: &[TopicPartition]) -> Vec<String> {
    partitions.iter().map(ToString::to_string).collect()
}
