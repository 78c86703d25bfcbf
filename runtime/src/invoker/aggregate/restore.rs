//! Restoring a partition's state from the aggregate's table topic.
//!
//! Input partition p and table partition p hold the same keys (same count,
//! same partitioner), so the state of p is table partition p read
//! read_committed from its first offset to the high watermark it had when the
//! restore began, once every transaction below it is decided
//! ([`ReadToEnd::open_decided`]), the last value of each key winning.

use std::time::{Duration, Instant};

use super::state::PartitionState;
use super::AggregateError;
use crate::avro::SchemaCache;
use crate::kafka::consumer::ReadToEnd;
use crate::kafka::group::protocol::TopicPartition;
use crate::kafka::Cluster;

/// A restore that makes no progress this long fails (and is tried again).
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads table partition `table` from its start to its decided end into a new state.
pub async fn restore(
    cluster: &Cluster,
    schemas: &SchemaCache,
    decode: &kfn_sdk::ErasedRowDecode,
    table: &TopicPartition,
) -> Result<PartitionState, AggregateError> {
    let kafka = |e| AggregateError::Kafka { partition: table.to_string(), source: e };
    let mut reader = ReadToEnd::open_decided(cluster, table).await.map_err(kafka)?;
    let mut state = PartitionState::new();
    let mut progress = Instant::now();
    loop {
        let before = reader.position();
        let Some(batch) = reader.next().await.map_err(kafka)? else { break };
        for record in batch {
            let key = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned();
            state.observe(record.timestamp_ms);
            let Some(value) = record.value else {
                state.remove(&key);
                continue;
            };
            let writer = schemas.resolve(&value).await.map_err(|e| AggregateError::Row {
                partition: table.to_string(),
                offset: record.offset,
                message: e.to_string(),
            })?;
            let row = decode(writer.datum, &writer.schema).map_err(|e| AggregateError::Row {
                partition: table.to_string(),
                offset: record.offset,
                message: e.to_string(),
            })?;
            state.insert(key, row);
        }
        if reader.position() > before {
            progress = Instant::now();
        } else if progress.elapsed() > STALL_TIMEOUT {
            return Err(AggregateError::Stalled {
                partition: table.to_string(),
                position: reader.position(),
                end: reader.end(),
            });
        }
    }
    Ok(state)
}
