//! The FetchRequest builder, checked through the wire format.

use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::protocol::{Decodable, Encodable};
use uuid::Uuid;

use crate::fetch::{fetch_request, FetchLimits, Isolation, PartitionFetch};

const ORDERS: Uuid = Uuid::from_u128(1);
const PAYMENTS: Uuid = Uuid::from_u128(2);

/// A topic entry as (name, id, [(partition, fetch offset, max bytes)]).
type TopicEntry<'a> = (&'a str, Uuid, Vec<(i32, i64, i32)>);

fn wanted() -> Vec<PartitionFetch<'static>> {
    vec![
        PartitionFetch { topic: "orders", topic_id: ORDERS, partition: 0, fetch_offset: 10 },
        PartitionFetch { topic: "payments", topic_id: PAYMENTS, partition: 2, fetch_offset: 7 },
        PartitionFetch { topic: "orders", topic_id: ORDERS, partition: 1, fetch_offset: 20 },
    ]
}

fn limits() -> FetchLimits {
    FetchLimits { max_wait: Duration::from_millis(250), min_bytes: 1, max_bytes: 4096, partition_max_bytes: 1024 }
}

fn round_trip(request: &FetchRequest, version: i16) -> FetchRequest {
    let mut wire = BytesMut::new();
    request.encode(&mut wire, version).unwrap();
    let mut wire = wire.freeze();
    FetchRequest::decode(&mut wire, version).unwrap()
}

#[test]
fn groups_partitions_by_topic_and_sets_limits() {
    let request = fetch_request(&wanted(), &limits(), Isolation::ReadCommitted);
    assert_eq!(request.isolation_level, 1);
    assert_eq!(request.max_wait_ms, 250);
    assert_eq!(request.min_bytes, 1);
    assert_eq!(request.max_bytes, 4096);
    assert_eq!(request.replica_id, -1);
    let topics: Vec<TopicEntry<'_>> = request
        .topics
        .iter()
        .map(|t| {
            let parts = t.partitions.iter().map(|p| (p.partition, p.fetch_offset, p.partition_max_bytes));
            (t.topic.0.as_str(), t.topic_id, parts.collect())
        })
        .collect();
    assert_eq!(
        topics,
        vec![("orders", ORDERS, vec![(0, 10, 1024), (1, 20, 1024)]), ("payments", PAYMENTS, vec![(2, 7, 1024)]),]
    );

    let uncommitted = fetch_request(&wanted(), &limits(), Isolation::ReadUncommitted);
    assert_eq!(uncommitted.isolation_level, 0);
}

#[test]
fn names_go_on_the_wire_up_to_v12_and_ids_from_v13() {
    let request = fetch_request(&wanted(), &limits(), Isolation::ReadCommitted);
    for version in [4, 11, 12] {
        let decoded = round_trip(&request, version);
        assert_eq!(decoded.topics[0].topic.0.as_str(), "orders", "v{version}");
        assert_eq!(decoded.topics[0].topic_id, Uuid::nil(), "v{version}");
        assert_eq!(decoded.isolation_level, 1, "v{version}");
    }
    for version in [13, 15, 17] {
        let decoded = round_trip(&request, version);
        assert_eq!(decoded.topics[1].topic_id, PAYMENTS, "v{version}");
        assert_eq!(decoded.topics[1].topic.0.as_str(), "", "v{version}");
        assert_eq!(decoded.topics[1].partitions[0].fetch_offset, 7, "v{version}");
    }
}

#[test]
fn a_huge_wait_is_clamped() {
    let mut limits = limits();
    limits.max_wait = Duration::from_secs(u64::MAX / 4);
    let request = fetch_request(&wanted(), &limits, Isolation::ReadCommitted);
    assert_eq!(request.max_wait_ms, i32::MAX);
}
