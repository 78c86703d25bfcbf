//! Errors of the fetch path, each naming the topic and partition.

use kafka_protocol::ResponseError;

/// Why a partition of a fetch response could not be turned into records.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The broker answered the partition with a Kafka error code.
    #[error("fetch of {topic} partition {partition} failed: {error} (Kafka error code {code})", code = error.code())]
    Broker {
        /// The topic fetched.
        topic: String,
        /// The partition fetched.
        partition: i32,
        /// The Kafka error the broker returned.
        error: ResponseError,
    },
    /// Not even the first record batch fits in the bytes the broker sent.
    #[error(
        "{topic} partition {partition}: the record batch at offset {offset} needs at least \
         {needed} bytes but the fetch returned {received}; raise the fetch max bytes"
    )]
    BatchTooLarge {
        /// The topic fetched.
        topic: String,
        /// The partition fetched.
        partition: i32,
        /// The batch's base offset, or the fetch offset when even that was cut off.
        offset: i64,
        /// The batch's full size when its header arrived, else the header's size.
        needed: usize,
        /// How many bytes of record data the partition carried.
        received: usize,
    },
    /// A batch header or control record breaks the record format.
    #[error("{topic} partition {partition}: corrupt record batch at offset {offset}: {reason}")]
    Corrupt {
        /// The topic fetched.
        topic: String,
        /// The partition fetched.
        partition: i32,
        /// The batch's base offset.
        offset: i64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// kafka-protocol could not decode a batch (bad CRC, bad varint, decompression failure).
    #[error("{topic} partition {partition}: cannot decode the record batch at offset {offset}")]
    Decode {
        /// The topic fetched.
        topic: String,
        /// The partition fetched.
        partition: i32,
        /// The batch's base offset.
        offset: i64,
        /// The decoder's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The batch uses the pre-0.11 message format (v0/v1), which kfn does not read.
    #[error(
        "{topic} partition {partition}: the batch at offset {offset} uses message format v{magic}; \
         kfn reads only v2 (Kafka 0.11 and later)"
    )]
    UnsupportedFormat {
        /// The topic fetched.
        topic: String,
        /// The partition fetched.
        partition: i32,
        /// The batch's base offset.
        offset: i64,
        /// The batch's magic byte.
        magic: i8,
    },
}

impl FetchError {
    /// Whether fetching again (after a metadata refresh) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            FetchError::Broker { error, .. } => error.is_retriable(),
            _ => false,
        }
    }
}

/// The partition being decoded, so that every error can name it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Where<'a> {
    pub(super) topic: &'a str,
    pub(super) partition: i32,
}

impl Where<'_> {
    pub(super) fn corrupt(self, offset: i64, reason: &'static str) -> FetchError {
        FetchError::Corrupt { topic: self.topic.to_owned(), partition: self.partition, offset, reason }
    }

    pub(super) fn decode(self, offset: i64, source: anyhow::Error) -> FetchError {
        FetchError::Decode { topic: self.topic.to_owned(), partition: self.partition, offset, source: source.into() }
    }
}
