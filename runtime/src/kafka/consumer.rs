//! Reading one partition: fetch from its leader, decode with the
//! read_committed filter, follow leader moves, reset out-of-range offsets.

use std::time::Duration;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::cluster::Cluster;
use super::error::KafkaError;
use super::fetch::{decode_partition, fetch_request, DecodedPartition, FetchError, FetchLimits, Isolation, PartitionFetch};
use super::group::protocol::TopicPartition;

/// Highest Fetch version kfn uses: v13 switches from topic names to topic ids.
const FETCH_CAP: i16 = 12;

/// Which end of a partition's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogEnd {
    /// The first offset still kept.
    Earliest,
    /// The offset the next record will get (read_committed: the last stable offset).
    Latest,
}

/// The offset at one end of a partition's log.
pub async fn list_offset(
    cluster: &Cluster,
    tp: &TopicPartition,
    end: LogEnd,
    isolation: Isolation,
) -> Result<i64, KafkaError> {
    let conn = cluster.leader(&tp.topic, tp.partition).await?;
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation.wire_level())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(tp.topic.clone())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(tp.partition)
                .with_current_leader_epoch(-1)
                .with_timestamp(match end {
                    LogEnd::Earliest => -2,
                    LogEnd::Latest => -1,
                })])]);
    let response = conn.send(&request).await?;
    let partition = response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == tp.partition)
        .ok_or_else(|| KafkaError::Codec { api: "ListOffsets", message: format!("no answer for {tp}") })?;
    KafkaError::check("ListOffsets", partition.error_code, || tp.to_string())?;
    Ok(partition.offset)
}

/// Reads one partition from a position, batch by batch.
pub struct PartitionReader {
    cluster: Cluster,
    tp: TopicPartition,
    position: i64,
    isolation: Isolation,
    limits: FetchLimits,
    reset: LogEnd,
    failures: u32,
}

impl PartitionReader {
    /// A reader of `tp` starting at `position`; an out-of-range position resets to `reset`.
    pub fn new(cluster: Cluster, tp: TopicPartition, position: i64, isolation: Isolation, reset: LogEnd) -> Self {
        Self { cluster, tp, position, isolation, limits: FetchLimits::default(), reset, failures: 0 }
    }

    /// Sets how long the broker may wait for records and how much it may send.
    pub fn with_limits(mut self, limits: FetchLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The partition read.
    pub fn partition(&self) -> &TopicPartition {
        &self.tp
    }

    /// The next offset to read.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// Moves the position.
    pub fn seek(&mut self, offset: i64) {
        self.position = offset;
    }

    /// The next batch of records (possibly empty after the broker's max wait).
    ///
    /// Retriable problems (leader moved, connection lost, broker restarting)
    /// are retried here with backoff; the caller sees only what retrying cannot fix.
    pub async fn next(&mut self) -> Result<DecodedPartition, KafkaError> {
        loop {
            match self.fetch_once().await {
                Ok(decoded) => {
                    self.failures = 0;
                    self.position = decoded.next_fetch_offset;
                    return Ok(decoded);
                }
                Err(e) if e.is_retriable() || self.is_metadata_error(&e) => {
                    self.failures += 1;
                    self.cluster.invalidate(&self.tp.topic);
                    let wait = Duration::from_millis(50u64.saturating_mul(1 << self.failures.min(6)).min(2_000));
                    tracing::debug!(partition = %self.tp, error = %e, "fetch failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(KafkaError::Broker { code: 1, .. }) => {
                    // OFFSET_OUT_OF_RANGE: the records were deleted (retention) or never written.
                    let offset = list_offset(&self.cluster, &self.tp, self.reset, self.isolation).await?;
                    tracing::warn!(partition = %self.tp, from = self.position, to = offset, "offset out of range; reset");
                    self.position = offset;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn is_metadata_error(&self, e: &KafkaError) -> bool {
        // NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH
        matches!(e, KafkaError::Broker { code: 6 | 3 | 5 | 74 | 75, .. })
    }

    async fn fetch_once(&mut self) -> Result<DecodedPartition, KafkaError> {
        loop {
            let info = self.cluster.topic(&self.tp.topic).await?;
            let conn = self.cluster.leader(&self.tp.topic, self.tp.partition).await?;
            let version = conn.version_capped::<FetchRequest>(FETCH_CAP)?;
            let request = fetch_request(
                &[PartitionFetch {
                    topic: &self.tp.topic,
                    topic_id: info.id,
                    partition: self.tp.partition,
                    fetch_offset: self.position,
                }],
                &self.limits,
                self.isolation,
            );
            let response = conn.send_version(&request, version, self.limits.max_wait).await?;
            KafkaError::check("Fetch", response.error_code, || self.tp.to_string())?;
            let data = response
                .responses
                .iter()
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition_index == self.tp.partition)
                .ok_or_else(|| KafkaError::Codec { api: "Fetch", message: format!("no answer for {}", self.tp) })?;
            return match decode_partition(&self.tp.topic, data, self.position, self.isolation) {
                Ok(decoded) => Ok(decoded),
                Err(FetchError::Broker { error, .. }) => {
                    Err(KafkaError::Broker { api: "Fetch", code: error.code(), context: self.tp.to_string() })
                }
                Err(FetchError::BatchTooLarge { .. }) if self.limits.partition_max_bytes < (256 << 20) => {
                    // One batch is bigger than a fetch may carry: ask for more.
                    self.limits.partition_max_bytes = self.limits.partition_max_bytes.saturating_mul(2);
                    self.limits.max_bytes = self.limits.max_bytes.max(self.limits.partition_max_bytes);
                    continue;
                }
                Err(e) => Err(KafkaError::Codec { api: "Fetch", message: e.to_string() }),
            };
        }
    }
}
