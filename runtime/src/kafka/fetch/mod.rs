//! Fetching records: read_committed filtering of aborted transactions.
//!
//! The broker answers a `read_committed` fetch with every record up to the
//! last stable offset, aborted ones included, plus the list of aborted
//! transactions (producer id and first offset) overlapping the fetched range.
//! Dropping the aborted records is the client's job, as in the Java
//! consumer's `CompletedFetch`; rskafka skips that step, so kfn builds its
//! own request ([`fetch_request`]) and decodes each partition of the answer
//! with [`decode_partition`].
//!
//! ```
//! use kafka_protocol::messages::fetch_response::PartitionData;
//! use kfn::kafka::fetch::{decode_partition, Isolation};
//!
//! // A partition that returned nothing yet: no records, the offset stays put.
//! let data = PartitionData::default();
//! let decoded = decode_partition("orders.created", &data, 42, Isolation::ReadCommitted)?;
//! assert!(decoded.records.is_empty());
//! assert_eq!(decoded.next_fetch_offset, 42);
//! # Ok::<(), kfn::kafka::fetch::FetchError>(())
//! ```
//!
//! The filter is stateless across fetches: the broker lists every aborted
//! transaction that overlaps the fetched range, including one that began
//! before `fetch_offset`, so each response carries all it needs.

mod aborted;
mod batch;
mod decode;
mod error;
mod request;
#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use decode::{decode_partition, DecodedPartition};
pub use error::FetchError;
pub use request::{fetch_request, FetchLimits, PartitionFetch};

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
    pub headers: Vec<kfn_sdk::Header>,
}

/// Which records of transactional producers a consumer sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
