//! What both fetch targets check on a decoded FetchResponse: every partition
//! through kfn's decoder, under both isolation levels and both treatments of
//! undecided transactions, with the invariants a partition worker relies on.

use bytes::Bytes;
use kfn::kafka::fetch::{decode_partition_with, response, Isolation, Undecided};

/// The Fetch versions kfn sends and reads.
pub const VERSIONS: std::ops::RangeInclusive<i16> = response::VERSIONS;

/// Decodes `wire` as a FetchResponse of `version` with kfn's bounded decoder (as kfn's
/// fetcher does), then every partition of it.
pub fn check_response(version: i16, wire: &[u8]) {
    let mut buf = Bytes::copy_from_slice(wire);
    let Ok(response) = response::decode(&mut buf, version) else {
        return;
    };
    for topic in &response.responses {
        for data in &topic.partitions {
            // From the start of the log, and from inside the first batch (a trimmed batch).
            for fetch_offset in [data.log_start_offset.max(0), first_base_offset(data).saturating_add(1)] {
                check_partition(data, fetch_offset);
            }
        }
    }
}

/// Decodes one partition four ways and checks what a partition worker relies on.
pub fn check_partition(data: &kafka_protocol::messages::fetch_response::PartitionData, fetch_offset: i64) {
    for isolation in [Isolation::ReadCommitted, Isolation::ReadUncommitted] {
        for undecided in [Undecided::Hold, Undecided::TrustBroker] {
            let Ok(decoded) = decode_partition_with("fuzz", data, fetch_offset, isolation, undecided) else {
                continue;
            };
            let mut previous = None;
            for record in &decoded.records {
                assert!(
                    record.offset >= fetch_offset,
                    "record {} below the fetch offset {fetch_offset}",
                    record.offset
                );
                assert!(previous < Some(record.offset), "offsets must increase: {previous:?} then {}", record.offset);
                previous = Some(record.offset);
            }
            assert!(decoded.next_fetch_offset >= fetch_offset, "the fetch offset went back");
            if let Some(last) = previous {
                assert!(decoded.next_fetch_offset > last, "the next fetch would read record {last} again");
            }
            if isolation == Isolation::ReadUncommitted || undecided == Undecided::TrustBroker {
                assert!(decoded.held_back.is_none(), "held back without waiting for markers");
            }
            if let Some(held) = decoded.held_back {
                assert_eq!(decoded.next_fetch_offset, held.first_offset);
                assert!(previous.is_none_or(|last| last < held.first_offset), "delivered past a held transaction");
            }
        }
    }
}

/// The base offset of the first batch of the partition's records, or 0.
fn first_base_offset(data: &kafka_protocol::messages::fetch_response::PartitionData) -> i64 {
    match data.records.as_deref() {
        Some([a, b, c, d, e, f, g, h, ..]) => i64::from_be_bytes([*a, *b, *c, *d, *e, *f, *g, *h]),
        _ => 0,
    }
}
