//! Producers: idempotent and transactional record batches.
//!
//! rskafka always writes producer id -1 and no transactional flag, so kfn
//! builds its own v2 record batches here. This module is the pure core of the
//! producer: no sockets, no clocks, only the parts a test can pin down.
//!
//! - [`config`]: what a producer is asked to do ([`ProducerConfig`], [`Acks`],
//!   [`Compression`]).
//! - [`batch`]: records for one partition accumulate in a [`BatchBuilder`]
//!   and become an [`EncodedBatch`] carrying the producer id, epoch, base
//!   sequence and transactional flag.
//! - [`sequence`]: per-partition sequence numbers under one producer identity
//!   ([`SequenceNumbers`]).
//! - [`outcome`]: what a broker's answer means for the batch or transaction
//!   ([`ProduceOutcome`], [`TxnOutcome`]).
//! - [`request`]: the `ProduceRequest` for a set of encoded batches.
//!
//! [`client`] sends the requests and acts on the outcomes; its `broker`
//! module gathers the ready batches of every partition led by one broker into
//! one Produce request.
//!
//! ```
//! use kfn_kafka::producer::{
//!     BatchBuilder, Compression, ProducerIdentity, ProducerRecord, Pushed, SequenceNumbers,
//! };
//!
//! let identity = ProducerIdentity { id: 4000, epoch: 0 };
//! let mut sequences = SequenceNumbers::new(identity);
//! let mut builder = BatchBuilder::new(1_000_000);
//! let record = ProducerRecord::new(Some("order-1".into()), Some("payload".into()), 1_700_000_000_000);
//! assert!(matches!(builder.push(record)?, Pushed::Added));
//! let base_sequence = sequences.assign("orders.created", 0, builder.record_count())?;
//! let batch = builder.encode(identity, base_sequence, false, Compression::Lz4)?;
//! assert_eq!(batch.base_sequence(), 0);
//! assert_eq!(sequences.peek("orders.created", 0), 1);
//! # Ok::<(), kfn_kafka::producer::ProducerError>(())
//! ```

pub mod batch;
mod broker;
pub mod client;
pub mod config;
pub mod outcome;
pub mod partitioner;
mod queue;
pub mod request;
pub mod sequence;

#[cfg(test)]
mod tests;

pub use batch::{BatchBuilder, EncodedBatch, ProducerRecord, Pushed};
pub use client::{advertises_kip447, Producer, SendError};
pub use config::{Acks, Compression, ProducerConfig};
pub use outcome::{
    classify_add_offsets_to_txn, classify_add_partitions_to_txn, classify_end_txn, classify_init_producer_id,
    classify_produce, classify_txn_error, classify_txn_offset_commit, producer_identity, BrokerError, ProduceOutcome,
    TxnApi, TxnOutcome,
};
pub use request::{produce_request, PartitionBatch};
pub use sequence::{increment_sequence, SequenceNumbers};

/// The producer id and epoch the broker handed out with InitProducerId.
///
/// A new epoch for the same id (or a new id) starts every partition's
/// sequence at 0 again; [`ProducerIdentity::NONE`] is what a producer without
/// idempotence writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProducerIdentity {
    /// The producer id (-1 when idempotence is off).
    pub id: i64,
    /// The producer epoch (-1 when idempotence is off).
    pub epoch: i16,
}

impl ProducerIdentity {
    /// The identity of a producer without idempotence: id -1, epoch -1.
    pub const NONE: ProducerIdentity = ProducerIdentity {
        id: kafka_protocol::records::NO_PRODUCER_ID,
        epoch: kafka_protocol::records::NO_PRODUCER_EPOCH,
    };

    /// Whether this identity came from InitProducerId (the broker checks
    /// sequences only for such producers).
    pub fn is_idempotent(&self) -> bool {
        self.id >= 0
    }
}

impl std::fmt::Display for ProducerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "producer {} epoch {}", self.id, self.epoch)
    }
}

/// What can go wrong while building batches and producer state, before any
/// request is sent.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// kafka-protocol keeps a record's headers in a map, so two headers with
    /// one name cannot both be written; refusing beats silently dropping one.
    #[error(
        "record has two headers named {name:?}; kfn's producer writes each header name once, \
         merge or rename the headers"
    )]
    DuplicateHeader {
        /// The repeated header name.
        name: String,
    },
    /// A batch writes timestamps as deltas from its smallest one.
    #[error("record timestamps {min} and {max} are too far apart for one batch")]
    TimestampSpread {
        /// The smallest timestamp.
        min: i64,
        /// The largest timestamp.
        max: i64,
    },
    /// Sequences and transactions need a producer id from InitProducerId.
    #[error(
        "base sequence {base_sequence} (transactional: {transactional}) needs a producer id; \
         without idempotence use sequence -1 and no transaction"
    )]
    SequenceWithoutProducerId {
        /// The base sequence that was asked for.
        base_sequence: i32,
        /// Whether a transactional batch was asked for.
        transactional: bool,
    },
    /// Kafka takes one record batch per partition and produce request.
    #[error("{topic}/{partition} appears twice in one produce request")]
    DuplicatePartition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// A batch must carry at least one record.
    #[error("cannot encode an empty record batch")]
    EmptyBatch,
    /// A batch holds at most `i32::MAX` records (the wire format's count).
    #[error("a record batch holds at most {max} records, got {count}")]
    TooManyRecords {
        /// How many records were offered.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Sequence numbers advance by a batch's record count, which must be positive.
    #[error("cannot assign a sequence to a batch of {record_count} records for {topic}/{partition}")]
    InvalidRecordCount {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The record count that was offered.
        record_count: i32,
    },
    /// kafka-protocol's record batch encoder refused the records.
    #[error("cannot encode a record batch of {record_count} records with {compression:?}")]
    Encode {
        /// How many records the batch held.
        record_count: usize,
        /// The compression that was asked for.
        compression: Compression,
        /// The encoder's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A producer setting contradicts another one or the wire format.
    #[error("invalid producer setting {field}: {reason}")]
    InvalidConfig {
        /// The setting's name as written in functions.toml.
        field: &'static str,
        /// What was expected.
        reason: String,
    },
}
