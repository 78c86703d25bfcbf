//! A consumer group's lag from what the brokers know: its committed offsets
//! and the log ends, with no member of the group running.
//!
//! A running member knows its own position; this is the view from outside,
//! so it tells the truth when every member is down (`kfn lag`, and the
//! `kfn_committed_lag` gauge every replica exports for all partitions).
//!
//! One OffsetFetch for the group, and one ListOffsets per leader broker (a
//! second one for the earliest offsets of partitions with nothing committed).
//!
//! ```no_run
//! # async fn example(cluster: kfn_kafka::Cluster) -> Result<(), kfn_kafka::KafkaError> {
//! use kfn_kafka::fetch::Isolation;
//! use kfn_kafka::group::protocol::TopicPartition;
//! let partitions = [TopicPartition::new("orders", 0), TopicPartition::new("orders", 1)];
//! for p in kfn_kafka::lag::group_lag(&cluster, "kfn.validation", &partitions, Isolation::ReadCommitted).await? {
//!     println!("{}/{} lag {}", p.topic, p.partition, p.lag);
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::cluster::Cluster;
use super::consumer::{list_offset, LogEnd};
use super::error::KafkaError;
use super::fetch::Isolation;
use super::group::coordinator::GroupClient;
use super::group::protocol::TopicPartition;

/// One partition's lag for a group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition index.
    pub partition: i32,
    /// The group's committed offset (the next to read); None when nothing is committed.
    pub committed: Option<i64>,
    /// Where the lag counts from: the committed offset, else the earliest kept
    /// offset (where auto_offset_reset = earliest would start).
    pub from: i64,
    /// The log end: under read_committed the last stable offset, else the high watermark.
    pub end: i64,
    /// Records the group has still to read: `end - from`, never below 0.
    pub lag: i64,
}

/// The lag of `group` on each of `partitions`, in the order given.
///
/// `isolation` picks the log end: read_committed counts to the last stable
/// offset (records of open transactions are not readable yet).
pub async fn group_lag(
    cluster: &Cluster,
    group: &str,
    partitions: &[TopicPartition],
    isolation: Isolation,
) -> Result<Vec<PartitionLag>, KafkaError> {
    let committed = GroupClient::new(cluster.clone(), group).committed(partitions).await?;
    let ends = log_offsets(cluster, partitions, LogEnd::Latest, isolation).await?;
    let uncommitted: Vec<TopicPartition> =
        partitions.iter().filter(|tp| !committed.contains_key(tp)).cloned().collect();
    let earliest = log_offsets(cluster, &uncommitted, LogEnd::Earliest, isolation).await?;
    partitions
        .iter()
        .map(|tp| {
            let end = ends.get(tp).copied().ok_or_else(|| missing(tp))?;
            let committed = committed.get(tp).copied();
            let from = match committed {
                Some(offset) => offset,
                None => earliest.get(tp).copied().ok_or_else(|| missing(tp))?,
            };
            Ok(PartitionLag {
                topic: tp.topic.clone(),
                partition: tp.partition,
                committed,
                from,
                end,
                lag: (end - from).max(0),
            })
        })
        .collect()
}

fn missing(tp: &TopicPartition) -> KafkaError {
    KafkaError::Codec { api: "ListOffsets", message: format!("no answer for {tp}") }
}

/// One end of each partition's log: one ListOffsets per leader broker; a
/// partition whose answer failed (a moved leader, a lost connection) is asked
/// again alone, with [`list_offset`]'s retries.
pub async fn log_offsets(
    cluster: &Cluster,
    partitions: &[TopicPartition],
    end: LogEnd,
    isolation: Isolation,
) -> Result<BTreeMap<TopicPartition, i64>, KafkaError> {
    let mut by_leader: BTreeMap<i32, Vec<&TopicPartition>> = BTreeMap::new();
    for tp in partitions {
        let info = cluster.topic(&tp.topic).await?;
        let leader = info.partitions.iter().find(|p| p.partition == tp.partition).map_or(-1, |p| p.leader);
        by_leader.entry(leader).or_default().push(tp);
    }
    let mut out = BTreeMap::new();
    let mut again = Vec::new();
    let timestamp = match end {
        LogEnd::Earliest => EARLIEST,
        LogEnd::Latest => LATEST,
    };
    for (leader, tps) in by_leader {
        match leader_offsets(cluster, leader, &tps, timestamp, isolation).await {
            Ok(found) => {
                let found: BTreeMap<_, _> = found.into_iter().filter(|(_, offset)| *offset >= 0).collect();
                again.extend(tps.into_iter().filter(|tp| !found.contains_key(*tp)));
                out.extend(found);
            }
            Err(_) => again.extend(tps),
        }
    }
    for tp in again {
        out.insert(tp.clone(), list_offset(cluster, tp, end, isolation).await?);
    }
    Ok(out)
}

/// ListOffsets' timestamp for the earliest offset.
const EARLIEST: i64 = -2;
/// ListOffsets' timestamp for the log end.
const LATEST: i64 = -1;

/// The first offset of each partition whose record's timestamp is at or
/// after `timestamp_ms`; None where no record is that recent (the log end
/// then is where such a record would go).
pub async fn offsets_for_time(
    cluster: &Cluster,
    partitions: &[TopicPartition],
    timestamp_ms: i64,
    isolation: Isolation,
) -> Result<BTreeMap<TopicPartition, Option<i64>>, KafkaError> {
    let mut out = BTreeMap::new();
    for tp in partitions {
        let info = cluster.topic(&tp.topic).await?;
        let leader = info.partitions.iter().find(|p| p.partition == tp.partition).map_or(-1, |p| p.leader);
        let found = leader_offsets(cluster, leader, &[tp], timestamp_ms, isolation).await?;
        let offset = found.get(tp).copied().ok_or_else(|| missing(tp))?;
        out.insert(tp.clone(), (offset >= 0).then_some(offset));
    }
    Ok(out)
}

/// One ListOffsets to `leader`; the partitions it answered without an error
/// (offset -1: no record at or after a timestamp asked for).
async fn leader_offsets(
    cluster: &Cluster,
    leader: i32,
    partitions: &[&TopicPartition],
    timestamp: i64,
    isolation: Isolation,
) -> Result<BTreeMap<TopicPartition, i64>, KafkaError> {
    if leader < 0 {
        return Ok(BTreeMap::new());
    }
    let conn = cluster.broker(leader).await?;
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation.wire_level())
        .with_topics(
            by_topic
                .into_iter()
                .map(|(topic, ps)| {
                    ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    ListOffsetsPartition::default()
                                        .with_partition_index(p)
                                        .with_current_leader_epoch(-1)
                                        .with_timestamp(timestamp)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let response = conn.send(&request).await?;
    let mut out = BTreeMap::new();
    for t in response.topics {
        for p in t.partitions {
            // Errors are left out: the caller asks those partitions again, one by one.
            if p.error_code == 0 {
                out.insert(TopicPartition::new(t.name.0.to_string(), p.partition_index), p.offset);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_lag_serialises_flat() {
        let lag = PartitionLag { topic: "t".into(), partition: 2, committed: None, from: 3, end: 10, lag: 7 };
        let json = serde_json::to_value(&lag).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"topic": "t", "partition": 2, "committed": null, "from": 3, "end": 10, "lag": 7})
        );
    }
}
