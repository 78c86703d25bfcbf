//! Building the FetchRequest of a consumer.

use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::Isolation;

/// One partition to fetch and the offset to start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionFetch<'a> {
    /// The topic's name (sent up to Fetch v12).
    pub topic: &'a str,
    /// The topic's id from metadata (sent from Fetch v13); nil when unknown.
    pub topic_id: Uuid,
    /// The partition index.
    pub partition: i32,
    /// The first offset wanted.
    pub fetch_offset: i64,
}

/// How long the broker may wait and how much it may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// How long the broker may hold the request waiting for `min_bytes`.
    pub max_wait: Duration,
    /// The broker answers as soon as it has this many bytes.
    pub min_bytes: i32,
    /// The most bytes of the whole response (the first batch is always sent whole).
    pub max_bytes: i32,
    /// The most bytes per partition.
    pub partition_max_bytes: i32,
}

impl Default for FetchLimits {
    /// The Java consumer's defaults: 500 ms, 1 byte, 50 MiB, 1 MiB.
    fn default() -> Self {
        Self {
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            max_bytes: 52_428_800,
            partition_max_bytes: 1_048_576,
        }
    }
}

/// Builds a full (sessionless) consumer FetchRequest for these partitions.
///
/// Partitions of one topic are grouped under one topic entry, in the order
/// they first appear. Both the topic name and the topic id are filled in;
/// the version the caller encodes with decides which one goes on the wire.
pub fn fetch_request(partitions: &[PartitionFetch<'_>], limits: &FetchLimits, isolation: Isolation) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for wanted in partitions {
        let partition = FetchPartition::default()
            .with_partition(wanted.partition)
            .with_fetch_offset(wanted.fetch_offset)
            .with_partition_max_bytes(limits.partition_max_bytes);
        let existing = topics.iter_mut().find(|t| t.topic.0.as_str() == wanted.topic && t.topic_id == wanted.topic_id);
        match existing {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(wanted.topic.to_owned())))
                    .with_topic_id(wanted.topic_id)
                    .with_partitions(vec![partition]),
            ),
        }
    }
    FetchRequest::default()
        .with_max_wait_ms(i32::try_from(limits.max_wait.as_millis()).unwrap_or(i32::MAX))
        .with_min_bytes(limits.min_bytes)
        .with_max_bytes(limits.max_bytes)
        .with_isolation_level(isolation.wire_level())
        .with_topics(topics)
}
