//! Dead letters: the original record, unchanged, plus `kfn.*` headers with the cause.
//!
//! | header | value |
//! |---|---|
//! | kfn.original.topic | the input topic |
//! | kfn.original.partition | its partition (decimal) |
//! | kfn.original.offset | the record's offset (decimal) |
//! | kfn.original.timestamp | the record's timestamp, ms since the epoch (decimal) |
//! | kfn.function | the function that gave up |
//! | kfn.attempts | how many attempts were made (decimal) |
//! | kfn.error.kind | permanent, retries_exhausted, undecodable, panic or output |
//! | kfn.error.message | the error |
//!
//! A record that failed after waiting in the function's retry topic names the
//! input record it came from, not its place in the retry topic.

use bytes::Bytes;

use super::invoke::Failure;
use crate::kafka::fetch::ConsumedRecord;
use crate::kafka::group::protocol::TopicPartition;
use crate::kafka::producer::partitioner::partition_for_key;
use crate::kafka::producer::ProducerRecord;

/// Header names of a dead letter.
pub mod headers {
    /// The input topic.
    pub const TOPIC: &str = "kfn.original.topic";
    /// The input partition.
    pub const PARTITION: &str = "kfn.original.partition";
    /// The input offset.
    pub const OFFSET: &str = "kfn.original.offset";
    /// The input timestamp.
    pub const TIMESTAMP: &str = "kfn.original.timestamp";
    /// The function.
    pub const FUNCTION: &str = "kfn.function";
    /// The attempt count.
    pub const ATTEMPTS: &str = "kfn.attempts";
    /// The failure kind.
    pub const KIND: &str = "kfn.error.kind";
    /// The error message.
    pub const MESSAGE: &str = "kfn.error.message";
    /// Set on a record `kfn dlq replay` wrote back to the input: `<dlq topic>/<partition>/<offset>`.
    pub const REPLAYED_FROM: &str = "kfn.replayed.from";
}

/// Where a record first entered the function: its input topic, partition, offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The input topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// The record's offset there.
    pub offset: i64,
    /// The record's timestamp, ms since the epoch.
    pub timestamp_ms: i64,
}

impl Origin {
    /// The origin of a record read from its input topic.
    pub fn input(tp: &TopicPartition, record: &ConsumedRecord) -> Self {
        Origin {
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
        }
    }
}

/// The partition a copy of `record` goes to in a topic of `partitions`: by key, else beside its origin.
pub(super) fn partition_of(record: &ConsumedRecord, origin: &Origin, partitions: i32) -> i32 {
    match &record.key {
        Some(key) => partition_for_key(key, partitions),
        None => origin.partition % partitions.max(1),
    }
}

/// A copy of `record` with its own headers but none of the `kfn.*` ones kfn added on earlier trips.
fn bare_copy(record: &ConsumedRecord, timestamp_ms: i64) -> ProducerRecord {
    let mut out = ProducerRecord::new(record.key.clone(), record.value.clone(), timestamp_ms);
    for h in &record.headers {
        // The replay marker stays: it is what makes a second replay a no-op.
        if !h.name.starts_with("kfn.") || h.name == headers::REPLAYED_FROM {
            out = out.with_header(h.name.clone(), h.value.clone());
        }
    }
    out
}

/// A bare copy of `record` with the headers saying where it entered `function` and how its last attempt failed.
pub(super) fn traced_copy(
    record: &ConsumedRecord,
    origin: &Origin,
    function: &str,
    failure: &Failure,
) -> ProducerRecord {
    let text = |s: String| Some(Bytes::from(s));
    bare_copy(record, origin.timestamp_ms)
        .with_header(headers::TOPIC, text(origin.topic.clone()))
        .with_header(headers::PARTITION, text(origin.partition.to_string()))
        .with_header(headers::OFFSET, text(origin.offset.to_string()))
        .with_header(headers::TIMESTAMP, text(origin.timestamp_ms.to_string()))
        .with_header(headers::FUNCTION, text(function.to_string()))
        .with_header(headers::ATTEMPTS, text(failure.attempts.to_string()))
        .with_header(headers::MESSAGE, text(failure.message.clone()))
}

/// The dead-letter topic of one function.
pub struct DeadLetters {
    /// The topic.
    pub topic: String,
    /// Its partition count.
    pub partitions: i32,
    /// The function.
    pub function: String,
}

impl DeadLetters {
    /// The dead letter of `record` (which entered the function at `origin`) that failed with `failure`.
    pub fn record(
        &self,
        origin: &Origin,
        record: &ConsumedRecord,
        failure: &Failure,
    ) -> (TopicPartition, ProducerRecord) {
        let partition = partition_of(record, origin, self.partitions);
        let out = traced_copy(record, origin, &self.function, failure)
            .with_header(headers::KIND, Some(Bytes::from(failure.kind.as_str())));
        (TopicPartition::new(self.topic.clone(), partition), out)
    }
}
