//! One member of a consumer group: join, sync, heartbeat, rebalance, leave.
//!
//! The member runs in a task of its own, so heartbeats never wait for
//! handler work. The runtime learns about partitions through a
//! [`RebalanceListener`]. Which protocol the member speaks is its
//! [`GroupProtocol`]: on brokers that offer KIP-848 the consumer protocol
//! (incremental: only partitions that change owner stop;
//! [`super::consumer_protocol`]), else the classic one below, which is eager:
//! on a rebalance every partition is revoked (the listener stops its work and
//! commits what finished) before the member rejoins, so no partition is ever
//! processed by two members at once. The sticky assignor then gives most
//! partitions back to their previous owner.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use tokio::sync::watch;

use super::assignor::{assignor_for, MemberSubscription, SUPPORTED};
use super::consumer_protocol::{self, ConsumerMember};
use super::coordinator::{Generation, GroupClient};
use super::membership::{is_fatal, rejoin_pauses, wait_or_shutdown, write};
pub use super::membership::{GroupProtocol, MemberConfig, MemberState, RebalanceListener};
use super::protocol::{decode_assignment, decode_subscription, encode_assignment, encode_subscription, TopicPartition};
use crate::cluster::Cluster;
use crate::error::KafkaError;

/// Why the heartbeat loop ended.
enum Next {
    Rebalance,
    Lost { forget_member_id: bool },
    Shutdown,
}

/// A group member; see the module docs.
pub struct GroupMember {
    config: MemberConfig,
    protocol: GroupProtocol,
    client: GroupClient,
    cluster: Cluster,
    state: Arc<RwLock<MemberState>>,
    state_tx: watch::Sender<u64>,
}

impl GroupMember {
    /// A member of `config.group` on `cluster`; it joins when [`GroupMember::run`] starts.
    pub fn new(cluster: Cluster, config: MemberConfig) -> Self {
        let (state_tx, _) = watch::channel(0);
        Self {
            client: GroupClient::new(cluster.clone(), config.group.clone()),
            cluster,
            config,
            protocol: GroupProtocol::default(),
            state: Arc::default(),
            state_tx,
        }
    }

    /// The member speaks `protocol` ([`GroupProtocol::Auto`] unless told).
    pub fn with_protocol(mut self, protocol: GroupProtocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// The shared state (generation and partitions) for commits and readiness.
    pub fn state(&self) -> Arc<RwLock<MemberState>> {
        self.state.clone()
    }

    /// A receiver that changes each time an assignment is received.
    pub fn assignments(&self) -> watch::Receiver<u64> {
        self.state_tx.subscribe()
    }

    /// Takes part in the group until `shutdown` turns true, then revokes and leaves.
    ///
    /// Coordinator moves, lost connections, broker restarts and expired
    /// sessions are handled by rejoining with backoff; only errors no retry
    /// can cure (authentication, authorization) end the loop.
    pub async fn run(
        mut self,
        listener: Arc<dyn RebalanceListener>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), KafkaError> {
        let consumer = match self.protocol {
            GroupProtocol::Classic => false,
            GroupProtocol::Consumer => true,
            GroupProtocol::Auto => match self.consumer_protocol_offered(&mut shutdown).await? {
                Some(offered) => offered,
                None => return Ok(()),
            },
        };
        if consumer {
            let member = ConsumerMember::new(self.config, self.client, self.cluster, self.state, self.state_tx);
            return member.run(listener, shutdown).await;
        }
        tracing::info!(group = %self.config.group, "joining with the classic group protocol (eager rebalancing)");
        self.run_classic(listener, shutdown).await
    }

    /// Whether the group coordinator offers ConsumerGroupHeartbeat, asked
    /// until it answers; `None` when shutdown came first.
    async fn consumer_protocol_offered(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<bool>, KafkaError> {
        /// How long a broker that may offer the consumer protocol soon is asked again.
        const UNDECIDED: Duration = Duration::from_secs(10);
        let mut backoff = rejoin_pauses();
        let mut undecided_since: Option<Instant> = None;
        loop {
            match consumer_protocol::offered(&mut self.client).await {
                Ok(Some(offered)) => return Ok(Some(offered)),
                Ok(None) if undecided_since.is_some_and(|t| t.elapsed() >= UNDECIDED) => {
                    tracing::info!(group = %self.config.group, "the broker does not offer ConsumerGroupHeartbeat (group.version off?)");
                    return Ok(Some(false));
                }
                Ok(None) => {
                    undecided_since.get_or_insert_with(Instant::now);
                    // A new connection negotiates ApiVersions again.
                    self.client.reset_coordinator();
                    if wait_or_shutdown(Duration::from_millis(200), shutdown).await {
                        return Ok(None);
                    }
                }
                Err(e) if is_fatal(&e) => return Err(e),
                Err(e) => {
                    // COORDINATOR_NOT_AVAILABLE until __consumer_offsets exists, a broker restarting.
                    tracing::info!(group = %self.config.group, error = %e, "finding the group coordinator failed; retrying");
                    self.client.reset_coordinator();
                    if wait_or_shutdown(backoff.next_delay().unwrap_or_default(), shutdown).await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// The classic protocol's loop: join, sync, heartbeat, revoke everything, rejoin.
    async fn run_classic(
        mut self,
        listener: Arc<dyn RebalanceListener>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), KafkaError> {
        let mut member_id = String::new();
        let mut owned: Vec<TopicPartition> = Vec::new();
        let mut backoff = rejoin_pauses();
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let generation = match self.join_and_sync(&member_id, &owned).await {
                Ok((generation, partitions)) => {
                    backoff = rejoin_pauses();
                    member_id = generation.member_id.clone();
                    owned = partitions;
                    generation
                }
                Err(e) => {
                    if is_fatal(&e) {
                        return Err(e);
                    }
                    match e.response_error() {
                        Some(ResponseError::UnknownMemberId) => member_id.clear(),
                        Some(ResponseError::RebalanceInProgress) => {} // rejoin at once
                        _ => self.client.reset_coordinator(),
                    }
                    tracing::info!(group = %self.config.group, error = %e, "joining the group failed; retrying");
                    if wait_or_shutdown(backoff.next_delay().unwrap_or_default(), &mut shutdown).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            {
                let mut state = write(&self.state);
                state.generation = Some(generation.clone());
                state.partitions = owned.clone();
                state.assignments += 1;
            }
            self.state_tx.send_modify(|n| *n += 1);
            tracing::info!(
                group = %self.config.group,
                generation = generation.id,
                partitions = ?owned.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "partitions assigned"
            );
            listener.assigned(&generation, &owned).await;

            match self.heartbeat_until_change(&generation, &mut shutdown).await {
                Next::Rebalance => {
                    tracing::info!(group = %self.config.group, generation = generation.id, "rebalance: revoking partitions");
                    self.revoke_while_heartbeating(&*listener, &generation, &owned).await;
                    write(&self.state).generation = None;
                    // `owned` is kept: the sticky assignor gives these back when balance allows.
                }
                Next::Lost { forget_member_id } => {
                    tracing::warn!(group = %self.config.group, generation = generation.id, "session lost: partitions dropped without commit");
                    write(&self.state).generation = None;
                    listener.lost(&owned).await;
                    owned.clear();
                    if forget_member_id {
                        member_id.clear();
                    }
                }
                Next::Shutdown => {
                    listener.revoked(&generation, &owned).await;
                    write(&self.state).generation = None;
                    if let Err(e) = self.client.leave(&member_id).await {
                        tracing::info!(group = %self.config.group, error = %e, "leaving the group failed; the session timeout will remove this member");
                    }
                    return Ok(());
                }
            }
        }
    }

    async fn join_and_sync(
        &mut self,
        member_id: &str,
        owned: &[TopicPartition],
    ) -> Result<(Generation, Vec<TopicPartition>), KafkaError> {
        let subscription = encode_subscription(&self.config.topics, owned, None).map_err(codec)?;
        let protocols: Vec<(&str, bytes::Bytes)> = SUPPORTED.iter().map(|n| (*n, subscription.clone())).collect();
        let joined =
            self.client.join(member_id, self.config.session_timeout, self.config.rebalance_timeout, &protocols).await?;
        let assignments = if joined.leader == joined.generation.member_id {
            self.assign(&joined.generation.protocol, &joined.members).await?
        } else {
            Vec::new()
        };
        let bytes = self.client.sync(&joined.generation, assignments, self.config.rebalance_timeout).await?;
        let assignment = decode_assignment(&bytes).map_err(codec)?;
        Ok((joined.generation, assignment.topic_partitions().collect()))
    }

    /// The leader's work: every member's assignment, encoded.
    async fn assign(
        &self,
        protocol: &str,
        members: &[(String, bytes::Bytes)],
    ) -> Result<Vec<(String, bytes::Bytes)>, KafkaError> {
        let assignor = assignor_for(protocol).ok_or_else(|| KafkaError::Codec {
            api: "JoinGroup",
            message: format!("the group chose protocol {protocol:?}, which kfn does not implement"),
        })?;
        let mut subscriptions = Vec::with_capacity(members.len());
        let mut topics: Vec<String> = Vec::new();
        for (member, metadata) in members {
            let subscription = decode_subscription(metadata).map_err(codec)?;
            topics.extend(subscription.topics.iter().cloned());
            subscriptions.push(MemberSubscription { member_id: member.clone(), subscription });
        }
        topics.sort();
        topics.dedup();
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let counts =
            self.cluster.refresh(&names).await?.into_iter().map(|t| (t.name, t.partitions.len() as i32)).collect();
        let plan = assignor.assign(&subscriptions, &counts);
        tracing::debug!(group = %self.config.group, protocol, members = members.len(), "assigned partitions as leader");
        plan.into_iter()
            .map(|(member, assignment)| Ok((member, encode_assignment(&assignment).map_err(codec)?)))
            .collect()
    }

    async fn heartbeat_until_change(&mut self, generation: &Generation, shutdown: &mut watch::Receiver<bool>) -> Next {
        let mut last_ok = Instant::now();
        loop {
            if wait_or_shutdown(self.config.heartbeat_interval, shutdown).await {
                return Next::Shutdown;
            }
            match self.client.heartbeat(generation).await {
                Ok(()) => last_ok = Instant::now(),
                Err(e) => match e.response_error() {
                    Some(ResponseError::RebalanceInProgress) => return Next::Rebalance,
                    Some(ResponseError::UnknownMemberId) => return Next::Lost { forget_member_id: true },
                    Some(ResponseError::IllegalGeneration | ResponseError::FencedInstanceId) => {
                        return Next::Lost { forget_member_id: false }
                    }
                    _ => {
                        tracing::debug!(group = %self.config.group, error = %e, "heartbeat failed");
                        self.client.reset_coordinator();
                        // Past the session timeout the coordinator has given our
                        // partitions away: stop before another member starts them.
                        if last_ok.elapsed() >= self.config.session_timeout {
                            return Next::Lost { forget_member_id: true };
                        }
                    }
                },
            }
        }
    }

    async fn revoke_while_heartbeating(
        &mut self,
        listener: &dyn RebalanceListener,
        generation: &Generation,
        owned: &[TopicPartition],
    ) {
        let revoke = listener.revoked(generation, owned);
        tokio::pin!(revoke);
        let interval = self.config.heartbeat_interval;
        loop {
            tokio::select! {
                () = &mut revoke => return,
                () = tokio::time::sleep(interval) => {
                    // Keeps the session alive while in-flight work finishes; the answer is
                    // REBALANCE_IN_PROGRESS, which is expected here.
                    let _ = self.client.heartbeat(generation).await;
                }
            }
        }
    }
}

fn codec(e: super::protocol::ProtocolError) -> KafkaError {
    KafkaError::Codec { api: "consumer protocol", message: e.to_string() }
}
