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
    /// The dead letter of `record` (read from `input`) that failed with `failure`.
    pub fn record(
        &self,
        input: &TopicPartition,
        record: &ConsumedRecord,
        failure: &Failure,
    ) -> (TopicPartition, ProducerRecord) {
        let partition = match &record.key {
            Some(key) => partition_for_key(key, self.partitions),
            None => input.partition % self.partitions.max(1),
        };
        let mut out = ProducerRecord::new(record.key.clone(), record.value.clone(), record.timestamp_ms);
        for h in &record.headers {
            // A record dead-lettered before (and replayed) carries old kfn.* headers: the new ones replace them.
            if !h.name.starts_with("kfn.") || h.name == headers::REPLAYED_FROM {
                out = out.with_header(h.name.clone(), h.value.clone());
            }
        }
        let text = |s: String| Some(Bytes::from(s));
        out = out
            .with_header(headers::TOPIC, text(input.topic.clone()))
            .with_header(headers::PARTITION, text(input.partition.to_string()))
            .with_header(headers::OFFSET, text(record.offset.to_string()))
            .with_header(headers::TIMESTAMP, text(record.timestamp_ms.to_string()))
            .with_header(headers::FUNCTION, text(self.function.clone()))
            .with_header(headers::ATTEMPTS, text(failure.attempts.to_string()))
            .with_header(headers::KIND, text(failure.kind.as_str().to_string()))
            .with_header(headers::MESSAGE, text(failure.message.clone()));
        (TopicPartition::new(self.topic.clone(), partition), out)
    }
}
