//! The ProduceRequest for a set of encoded batches.
//!
//! The caller picks the version from ApiVersions when it encodes the request.
//! Topics are named, not numbered: version 13 (KIP-516) wants `topic_id`
//! instead, which the caller sets from metadata on each `TopicProduceData`.
//!
//! ```
//! use std::time::Duration;
//! use kfn_kafka::producer::{
//!     produce_request, Acks, BatchBuilder, Compression, PartitionBatch, ProducerIdentity,
//!     ProducerRecord, Pushed,
//! };
//!
//! let mut builder = BatchBuilder::new(1_000_000);
//! assert!(matches!(builder.push(ProducerRecord::new(None, Some("v".into()), 0))?, Pushed::Added));
//! let batch = builder.encode(ProducerIdentity::NONE, -1, false, Compression::None)?;
//! let request = produce_request(
//!     [PartitionBatch { topic: "orders.created", partition: 3, batch: &batch }],
//!     Acks::All,
//!     Duration::from_secs(30),
//!     None,
//! )?;
//! assert_eq!(request.acks, -1);
//! assert_eq!(request.topic_data[0].partition_data[0].index, 3);
//! # Ok::<(), kfn_kafka::producer::ProducerError>(())
//! ```

use std::time::Duration;

use indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;

use super::{Acks, EncodedBatch, ProducerError};

/// One partition's batch in a produce request.
#[derive(Debug, Clone, Copy)]
pub struct PartitionBatch<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// The encoded batch for it.
    pub batch: &'a EncodedBatch,
}

/// Build the ProduceRequest that carries `batches` to one broker.
///
/// Kafka takes exactly one record batch per partition and request (since
/// Produce v3), so a partition named twice is refused. `timeout` is how long
/// the leader waits for the in-sync replicas; it is capped at `i32::MAX` ms.
pub fn produce_request<'a>(
    batches: impl IntoIterator<Item = PartitionBatch<'a>>,
    acks: Acks,
    timeout: Duration,
    transactional_id: Option<&str>,
) -> Result<ProduceRequest, ProducerError> {
    let mut topics: IndexMap<&str, Vec<PartitionProduceData>> = IndexMap::new();
    for PartitionBatch { topic, partition, batch } in batches {
        let partitions = topics.entry(topic).or_default();
        if partitions.iter().any(|p| p.index == partition) {
            return Err(ProducerError::DuplicatePartition { topic: topic.to_owned(), partition });
        }
        partitions
            .push(PartitionProduceData::default().with_index(partition).with_records(Some(batch.bytes().clone())));
    }
    let topic_data = topics
        .into_iter()
        .map(|(topic, partitions)| {
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partition_data(partitions)
        })
        .collect();
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    Ok(ProduceRequest::default()
        .with_transactional_id(transactional_id.map(|id| TransactionalId(StrBytes::from_string(id.to_owned()))))
        .with_acks(acks.wire_value())
        .with_timeout_ms(timeout_ms)
        .with_topic_data(topic_data))
}
