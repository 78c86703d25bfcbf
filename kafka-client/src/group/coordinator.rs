//! The group coordinator's requests, with version differences and error
//! codes handled here so the membership loop reads as a state machine.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, DescribeGroupsRequest, GroupId, HeartbeatRequest, JoinGroupRequest,
    LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::protocol::TopicPartition;
use crate::backoff::Pauses;
use crate::cluster::{Cluster, CoordinatorKind};
use crate::conn::Connection;
use crate::error::KafkaError;

/// Highest OffsetCommit/OffsetFetch versions kfn speaks: v10 switches to topic ids.
const OFFSET_API_CAP: i16 = 9;

/// The member's identity in one generation of the group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Generation {
    /// The generation id (-1 before the first join).
    pub id: i32,
    /// The member id the coordinator gave.
    pub member_id: String,
    /// The protocol (assignor) the group uses.
    pub protocol: String,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Stable, PreparingRebalance, CompletingRebalance, Empty or Dead.
    pub state: String,
    /// The assignor the group uses.
    pub protocol: String,
    /// (member id, client id) of each member.
    pub members: Vec<(String, String)>,
}

/// A JoinGroup answer.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The generation joined.
    pub generation: Generation,
    /// The leader's member id.
    pub leader: String,
    /// Every member's metadata, when this member is the leader.
    pub members: Vec<(String, Bytes)>,
}

/// Requests to one group's coordinator.
#[derive(Clone)]
pub struct GroupClient {
    cluster: Cluster,
    group: String,
    coordinator: Option<Connection>,
}

impl GroupClient {
    /// A client for `group`.
    pub fn new(cluster: Cluster, group: impl Into<String>) -> Self {
        Self { cluster, group: group.into(), coordinator: None }
    }

    /// The group id.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The coordinator connection, found on first use and after it moved.
    pub async fn coordinator(&mut self) -> Result<Connection, KafkaError> {
        if let Some(c) = &self.coordinator {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        // A connection of its own: JoinGroup is a long poll that would hold up other requests.
        let addr = self.cluster.coordinator_addr(CoordinatorKind::Group, &self.group).await?;
        let c = self.cluster.open(&addr).await?;
        self.coordinator = Some(c.clone());
        Ok(c)
    }

    /// Forgets the coordinator (after NOT_COORDINATOR or a lost connection).
    pub fn reset_coordinator(&mut self) {
        self.coordinator = None;
        self.cluster.forget_coordinator(CoordinatorKind::Group, &self.group);
    }

    fn group_id(&self) -> GroupId {
        GroupId(StrBytes::from_string(self.group.clone()))
    }

    /// JoinGroup; handles MEMBER_ID_REQUIRED by joining again with the id given.
    pub async fn join(
        &mut self,
        member_id: &str,
        session_timeout: Duration,
        rebalance_timeout: Duration,
        protocols: &[(&str, Bytes)],
    ) -> Result<Joined, KafkaError> {
        let mut member_id = member_id.to_string();
        for _ in 0..2 {
            let conn = self.coordinator().await?;
            let request = JoinGroupRequest::default()
                .with_group_id(self.group_id())
                .with_session_timeout_ms(session_timeout.as_millis() as i32)
                .with_rebalance_timeout_ms(rebalance_timeout.as_millis() as i32)
                .with_member_id(StrBytes::from_string(member_id.clone()))
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(
                    protocols
                        .iter()
                        .map(|(name, meta)| {
                            JoinGroupRequestProtocol::default()
                                .with_name(StrBytes::from_string(name.to_string()))
                                .with_metadata(meta.clone())
                        })
                        .collect(),
                );
            // The coordinator holds JoinGroup until the rebalance completes.
            let version = conn.version::<JoinGroupRequest>()?;
            let response = conn.send_version(&request, version, rebalance_timeout + session_timeout).await?;
            if ResponseError::try_from_code(response.error_code) == Some(ResponseError::MemberIdRequired) {
                // MEMBER_ID_REQUIRED (KIP-394): join again with the id the coordinator made.
                member_id = response.member_id.to_string();
                continue;
            }
            KafkaError::check("JoinGroup", response.error_code, || format!("group {}", self.group))?;
            return Ok(Joined {
                generation: Generation {
                    id: response.generation_id,
                    member_id: response.member_id.to_string(),
                    protocol: response.protocol_name.map(|p| p.to_string()).unwrap_or_default(),
                },
                leader: response.leader.to_string(),
                members: response.members.into_iter().map(|m| (m.member_id.to_string(), m.metadata)).collect(),
            });
        }
        Err(KafkaError::Codec { api: "JoinGroup", message: "MEMBER_ID_REQUIRED twice".into() })
    }

    /// SyncGroup: sends the leader's assignments (empty for followers) and returns this member's.
    pub async fn sync(
        &mut self,
        generation: &Generation,
        assignments: Vec<(String, Bytes)>,
        rebalance_timeout: Duration,
    ) -> Result<Bytes, KafkaError> {
        let conn = self.coordinator().await?;
        let request = SyncGroupRequest::default()
            .with_group_id(self.group_id())
            .with_generation_id(generation.id)
            .with_member_id(StrBytes::from_string(generation.member_id.clone()))
            .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
            .with_protocol_name(Some(StrBytes::from_string(generation.protocol.clone())))
            .with_assignments(
                assignments
                    .into_iter()
                    .map(|(member, assignment)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(StrBytes::from_string(member))
                            .with_assignment(assignment)
                    })
                    .collect(),
            );
        let version = conn.version::<SyncGroupRequest>()?;
        let response = conn.send_version(&request, version, rebalance_timeout).await?;
        KafkaError::check("SyncGroup", response.error_code, || format!("group {}", self.group))?;
        Ok(response.assignment)
    }

    /// Heartbeat; the error code is returned as an error (REBALANCE_IN_PROGRESS included).
    pub async fn heartbeat(&mut self, generation: &Generation) -> Result<(), KafkaError> {
        let conn = self.coordinator().await?;
        let request = HeartbeatRequest::default()
            .with_group_id(self.group_id())
            .with_generation_id(generation.id)
            .with_member_id(StrBytes::from_string(generation.member_id.clone()));
        let response = conn.send(&request).await?;
        KafkaError::check("Heartbeat", response.error_code, || format!("group {}", self.group))
    }

    /// The group as the coordinator describes it, whichever its protocol.
    ///
    /// DescribeGroups knows classic groups only: a group of the consumer
    /// protocol (KIP-848) comes back dead or not found there, and is asked
    /// again with ConsumerGroupDescribe where the broker offers it.
    pub async fn describe(&mut self) -> Result<GroupDescription, KafkaError> {
        let conn = self.coordinator().await?;
        let request = DescribeGroupsRequest::default().with_groups(vec![self.group_id()]);
        let response = conn.send(&request).await?;
        let group = response
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| KafkaError::Codec { api: "DescribeGroups", message: "no group in the answer".into() })?;
        let not_classic = group.error_code == ResponseError::GroupIdNotFound.code()
            || (group.error_code == 0 && group.group_state.as_str() == "Dead");
        if not_classic && conn.version::<ConsumerGroupDescribeRequest>().is_ok() {
            if let Some(description) = self.describe_consumer_group(&conn).await? {
                return Ok(description);
            }
            return Ok(GroupDescription { state: "Dead".into(), protocol: String::new(), members: Vec::new() });
        }
        KafkaError::check("DescribeGroups", group.error_code, || format!("group {}", self.group))?;
        Ok(GroupDescription {
            state: group.group_state.to_string(),
            protocol: group.protocol_data.to_string(),
            members: group.members.iter().map(|m| (m.member_id.to_string(), m.client_id.to_string())).collect(),
        })
    }

    /// A consumer protocol group's description; `None` when there is no such group.
    async fn describe_consumer_group(&self, conn: &Connection) -> Result<Option<GroupDescription>, KafkaError> {
        let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![self.group_id()]);
        let response = conn.send(&request).await?;
        let Some(group) = response.groups.into_iter().next() else { return Ok(None) };
        if group.error_code == ResponseError::GroupIdNotFound.code() {
            return Ok(None);
        }
        KafkaError::check("ConsumerGroupDescribe", group.error_code, || format!("group {}", self.group))?;
        Ok(Some(GroupDescription {
            state: group.group_state.to_string(),
            protocol: group.assignor_name.to_string(),
            members: group.members.iter().map(|m| (m.member_id.to_string(), m.client_id.to_string())).collect(),
        }))
    }

    /// LeaveGroup, so the group rebalances at once instead of after the session timeout.
    pub async fn leave(&mut self, member_id: &str) -> Result<(), KafkaError> {
        let conn = self.coordinator().await?;
        let version = conn.version::<LeaveGroupRequest>()?;
        let mut request = LeaveGroupRequest::default().with_group_id(self.group_id());
        if version >= 3 {
            request.members = vec![MemberIdentity::default()
                .with_member_id(StrBytes::from_string(member_id.to_string()))
                .with_reason(Some(StrBytes::from_static_str("kfn member shutting down")))];
        } else {
            request.member_id = StrBytes::from_string(member_id.to_string());
        }
        let response = conn.send_version(&request, version, Duration::ZERO).await?;
        KafkaError::check("LeaveGroup", response.error_code, || format!("group {}", self.group))?;
        for m in response.members {
            KafkaError::check("LeaveGroup", m.error_code, || {
                format!("member {} of group {}", m.member_id, self.group)
            })?;
        }
        Ok(())
    }

    /// Commits offsets (the next offset to read) for this generation.
    pub async fn commit(
        &mut self,
        generation: &Generation,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), KafkaError> {
        self.commit_each(generation, offsets).await?.into_values().collect()
    }

    /// Commits offsets (the next offset to read) for this generation: the
    /// request's failure, or each partition's outcome.
    pub async fn commit_each(
        &mut self,
        generation: &Generation,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<BTreeMap<TopicPartition, Result<(), KafkaError>>, KafkaError> {
        if offsets.is_empty() {
            return Ok(BTreeMap::new());
        }
        let conn = self.coordinator().await?;
        let version = conn.version_capped::<OffsetCommitRequest>(OFFSET_API_CAP)?;
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (tp, offset) in offsets {
            topics.entry(&tp.topic).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(tp.partition)
                    .with_committed_offset(*offset)
                    .with_committed_leader_epoch(-1),
            );
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(self.group_id())
            .with_generation_id_or_member_epoch(generation.id)
            .with_member_id(StrBytes::from_string(generation.member_id.clone()))
            .with_retention_time_ms(-1)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let response = conn.send_version(&request, version, Duration::ZERO).await?;
        let mut outcomes = BTreeMap::new();
        for t in response.topics {
            for p in t.partitions {
                let outcome = KafkaError::check("OffsetCommit", p.error_code, || {
                    format!("{}-{} in group {}", t.name.0, p.partition_index, self.group)
                });
                outcomes.insert(TopicPartition::new(t.name.0.to_string(), p.partition_index), outcome);
            }
        }
        Ok(outcomes)
    }

    /// The committed offsets of `partitions` (absent: nothing committed).
    pub async fn committed(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, KafkaError> {
        // UNSTABLE_OFFSET_COMMIT: a transaction holding offsets of these partitions is
        // being completed; the Java consumer waits it out the same way.
        let deadline = tokio::time::Instant::now() + self.cluster.options().request_timeout;
        let mut pauses = Pauses::new(Duration::from_millis(20), Duration::from_millis(500)).until(deadline);
        loop {
            match self.committed_once(partitions).await {
                Err(e) if e.is_retriable() && !pauses.would_pass_deadline() => {
                    if matches!(
                        e.response_error(),
                        Some(
                            ResponseError::CoordinatorLoadInProgress
                                | ResponseError::CoordinatorNotAvailable
                                | ResponseError::NotCoordinator
                        )
                    ) {
                        self.reset_coordinator();
                    }
                    pauses.pause().await;
                }
                other => return other,
            }
        }
    }

    async fn committed_once(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, KafkaError> {
        let conn = self.coordinator().await?;
        let version = conn.version_capped::<OffsetFetchRequest>(OFFSET_API_CAP)?;
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in partitions {
            by_topic.entry(&tp.topic).or_default().push(tp.partition);
        }
        let name = |t: &str| TopicName(StrBytes::from_string(t.to_string()));
        let mut request = OffsetFetchRequest::default().with_require_stable(version >= 7);
        if version >= 8 {
            request.groups = vec![OffsetFetchRequestGroup::default().with_group_id(self.group_id()).with_topics(Some(
                by_topic
                    .iter()
                    .map(|(t, ps)| {
                        OffsetFetchRequestTopics::default().with_name(name(t)).with_partition_indexes(ps.clone())
                    })
                    .collect(),
            ))];
        } else {
            request.group_id = self.group_id();
            request.topics = Some(
                by_topic
                    .iter()
                    .map(|(t, ps)| {
                        OffsetFetchRequestTopic::default().with_name(name(t)).with_partition_indexes(ps.clone())
                    })
                    .collect(),
            );
        }
        let response = conn.send_version(&request, version, Duration::ZERO).await?;
        let mut out = BTreeMap::new();
        let mut record = |topic: &str, partition: i32, offset: i64, code: i16| -> Result<(), KafkaError> {
            KafkaError::check("OffsetFetch", code, || format!("{topic}-{partition} in group {}", self.group))?;
            if offset >= 0 {
                out.insert(TopicPartition::new(topic, partition), offset);
            }
            Ok(())
        };
        if version >= 8 {
            for g in response.groups {
                KafkaError::check("OffsetFetch", g.error_code, || format!("group {}", self.group))?;
                for t in g.topics {
                    for p in t.partitions {
                        record(&t.name.0, p.partition_index, p.committed_offset, p.error_code)?;
                    }
                }
            }
        } else {
            KafkaError::check("OffsetFetch", response.error_code, || format!("group {}", self.group))?;
            for t in response.topics {
                for p in t.partitions {
                    record(&t.name.0, p.partition_index, p.committed_offset, p.error_code)?;
                }
            }
        }
        Ok(out)
    }
}
