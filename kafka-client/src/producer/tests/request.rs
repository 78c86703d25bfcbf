//! The ProduceRequest builder, checked by encoding and decoding the request.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::producer::{
    produce_request, Acks, BatchBuilder, Compression, EncodedBatch, PartitionBatch, ProducerError, ProducerIdentity,
    ProducerRecord, Pushed,
};

/// Topic name and, per partition, its index and records, as decoded.
type Layout = Vec<(String, Vec<(i32, Option<Bytes>)>)>;

fn batch(value: &'static [u8]) -> EncodedBatch {
    let mut builder = BatchBuilder::new(1_000_000);
    let record = ProducerRecord::new(None, Some(Bytes::from_static(value)), 0);
    assert!(matches!(builder.push(record).unwrap(), Pushed::Added));
    builder.encode(ProducerIdentity { id: 1, epoch: 0 }, 0, true, Compression::None).unwrap()
}

#[test]
fn batches_are_grouped_by_topic_and_survive_the_wire() {
    let (a, b, c) = (batch(b"a"), batch(b"b"), batch(b"c"));
    let request = produce_request(
        [
            PartitionBatch { topic: "orders", partition: 1, batch: &a },
            PartitionBatch { topic: "payments", partition: 0, batch: &b },
            PartitionBatch { topic: "orders", partition: 4, batch: &c },
        ],
        Acks::All,
        Duration::from_millis(1_500),
        Some("kfn.validation.0"),
    )
    .unwrap();
    // Versions the dev broker and Apache Kafka 3.x/4.x speak with topic names.
    for version in [3i16, 7, 9, 11, 12] {
        let mut buf = BytesMut::new();
        request.encode(&mut buf, version).unwrap();
        let decoded = ProduceRequest::decode(&mut buf.freeze(), version).unwrap();
        assert_eq!(decoded.acks, -1);
        assert_eq!(decoded.timeout_ms, 1_500);
        assert_eq!(decoded.transactional_id.as_ref().map(|id| id.0.to_string()), Some("kfn.validation.0".to_owned()));
        let layout: Layout = decoded
            .topic_data
            .iter()
            .map(|t| {
                let partitions = t.partition_data.iter().map(|p| (p.index, p.records.clone())).collect();
                (t.name.0.to_string(), partitions)
            })
            .collect();
        assert_eq!(
            layout,
            vec![
                ("orders".to_owned(), vec![(1, Some(a.bytes().clone())), (4, Some(c.bytes().clone()))]),
                ("payments".to_owned(), vec![(0, Some(b.bytes().clone()))]),
            ],
            "version {version}"
        );
    }
}

#[test]
fn one_batch_per_partition() {
    let (a, b) = (batch(b"a"), batch(b"b"));
    let result = produce_request(
        [
            PartitionBatch { topic: "orders", partition: 1, batch: &a },
            PartitionBatch { topic: "orders", partition: 1, batch: &b },
        ],
        Acks::All,
        Duration::from_secs(30),
        None,
    );
    assert!(
        matches!(&result, Err(ProducerError::DuplicatePartition { topic, partition: 1 }) if topic == "orders"),
        "{result:?}"
    );
}

#[test]
fn acks_and_a_huge_timeout_fit_the_wire() {
    let a = batch(b"a");
    let one = [PartitionBatch { topic: "t", partition: 0, batch: &a }];
    let request = produce_request(one, Acks::Leader, Duration::from_secs(u64::MAX), None).unwrap();
    assert_eq!(request.acks, 1);
    assert_eq!(request.timeout_ms, i32::MAX);
    assert!(request.transactional_id.is_none());
    assert_eq!(Acks::None.wire_value(), 0);
}
