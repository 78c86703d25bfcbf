//! Moving a stopped group's committed offsets: to the earliest or latest
//! offset, to an offset, or to the first record at a time.
//!
//! Only a group with no active member: a member would overwrite the new
//! offsets with its next commit, and the coordinator refuses commits from
//! outside a live generation anyway. The plan is computed first
//! ([`plan`]), so a caller can show it before [`apply`]ing it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::coordinator::{Generation, GroupClient};
use super::protocol::TopicPartition;
use crate::consumer::LogEnd;
use crate::error::KafkaError;
use crate::fetch::Isolation;
use crate::lag::{log_offsets, offsets_for_time};
use crate::Cluster;

/// Where to move the offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The first offset still kept.
    Earliest,
    /// The log end: skip everything not read yet.
    Latest,
    /// This offset on every partition (kept within the log's bounds).
    Offset(i64),
    /// The first record at or after this time (ms since the epoch); the log end where none is.
    Timestamp(i64),
}

/// Why `--to` was not understood.
#[derive(Debug, thiserror::Error)]
#[error(
    "expected earliest, latest, an offset (e.g. 1200) or an RFC 3339 time (e.g. 2026-05-01T12:00:00Z), found {0:?}"
)]
pub struct ResetToError(String);

impl FromStr for ResetTo {
    type Err = ResetToError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "earliest" => return Ok(Self::Earliest),
            "latest" => return Ok(Self::Latest),
            _ => {}
        }
        if let Ok(offset) = s.parse::<i64>() {
            return if offset >= 0 { Ok(Self::Offset(offset)) } else { Err(ResetToError(s.to_string())) };
        }
        let time = humantime::parse_rfc3339_weak(s).map_err(|_| ResetToError(s.to_string()))?;
        let ms = time.duration_since(std::time::UNIX_EPOCH).map_err(|_| ResetToError(s.to_string()))?.as_millis();
        Ok(Self::Timestamp(i64::try_from(ms).map_err(|_| ResetToError(s.to_string()))?))
    }
}

impl fmt::Display for ResetTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Earliest => write!(f, "earliest"),
            Self::Latest => write!(f, "latest"),
            Self::Offset(o) => write!(f, "offset {o}"),
            Self::Timestamp(ms) => write!(f, "time {ms} ms"),
        }
    }
}

/// Why offsets were not reset.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// The group has members: they would commit over the reset.
    #[error("group {group} has {members} active member(s) ({state}): stop every replica of the function first")]
    Active {
        /// The group.
        group: String,
        /// Its state as the coordinator reports it.
        state: String,
        /// How many members.
        members: usize,
    },
    /// A broker request failed.
    #[error("group {group}: {source}")]
    Kafka {
        /// The group.
        group: String,
        /// The cause.
        #[source]
        source: KafkaError,
    },
}

/// One partition's move.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Move {
    /// The topic.
    pub topic: String,
    /// The partition index.
    pub partition: i32,
    /// The committed offset now (None: nothing committed).
    pub from: Option<i64>,
    /// The offset to commit.
    pub to: i64,
}

/// A client of `group`, once the group is known to have no member (a reset would race them).
async fn idle_group(cluster: &Cluster, group: &str) -> Result<GroupClient, ResetError> {
    let mut client = GroupClient::new(cluster.clone(), group);
    let description =
        client.describe().await.map_err(|source| ResetError::Kafka { group: group.to_string(), source })?;
    if !description.members.is_empty() {
        return Err(ResetError::Active {
            group: group.to_string(),
            state: description.state,
            members: description.members.len(),
        });
    }
    Ok(client)
}

/// The moves that would reset `group` on `partitions` to `to`; refuses a group with members.
pub async fn plan(
    cluster: &Cluster,
    group: &str,
    partitions: &[TopicPartition],
    to: ResetTo,
    isolation: Isolation,
) -> Result<Vec<Move>, ResetError> {
    let kafka = |source| ResetError::Kafka { group: group.to_string(), source };
    let mut client = idle_group(cluster, group).await?;
    let committed = client.committed(partitions).await.map_err(kafka)?;
    let earliest = log_offsets(cluster, partitions, LogEnd::Earliest, isolation).await.map_err(kafka)?;
    let latest = log_offsets(cluster, partitions, LogEnd::Latest, isolation).await.map_err(kafka)?;
    let at_time = match to {
        ResetTo::Timestamp(ms) => offsets_for_time(cluster, partitions, ms, isolation).await.map_err(kafka)?,
        _ => BTreeMap::new(),
    };
    let mut moves = Vec::new();
    for tp in partitions {
        let (low, high) = (earliest.get(tp).copied().unwrap_or(0), latest.get(tp).copied().unwrap_or(0));
        let target = match to {
            ResetTo::Earliest => low,
            ResetTo::Latest => high,
            // Outside the log the next fetch would be reset anyway: say where it will really start.
            ResetTo::Offset(offset) => offset.clamp(low, high.max(low)),
            ResetTo::Timestamp(_) => at_time.get(tp).copied().flatten().unwrap_or(high),
        };
        moves.push(Move {
            topic: tp.topic.clone(),
            partition: tp.partition,
            from: committed.get(tp).copied(),
            to: target,
        });
    }
    Ok(moves)
}

/// Commits `moves` for `group`, checking again that it has no member.
pub async fn apply(cluster: &Cluster, group: &str, moves: &[Move]) -> Result<(), ResetError> {
    let kafka = |source| ResetError::Kafka { group: group.to_string(), source };
    let mut client = idle_group(cluster, group).await?;
    let offsets: BTreeMap<TopicPartition, i64> =
        moves.iter().map(|m| (TopicPartition::new(m.topic.clone(), m.partition), m.to)).collect();
    // A standalone commit (generation -1): accepted for a group with no members only.
    let generation = Generation { id: -1, member_id: String::new(), protocol: String::new() };
    client.commit(&generation, &offsets).await.map_err(kafka)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_parses_ends_offsets_and_times() {
        assert_eq!("earliest".parse::<ResetTo>().unwrap(), ResetTo::Earliest);
        assert_eq!("latest".parse::<ResetTo>().unwrap(), ResetTo::Latest);
        assert_eq!("1200".parse::<ResetTo>().unwrap(), ResetTo::Offset(1200));
        assert_eq!("1970-01-01T00:00:01Z".parse::<ResetTo>().unwrap(), ResetTo::Timestamp(1000));
        for bad in ["-1", "yesterday", ""] {
            let err = bad.parse::<ResetTo>().unwrap_err().to_string();
            assert!(err.contains("expected earliest, latest"), "{bad}: {err}");
        }
    }
}
