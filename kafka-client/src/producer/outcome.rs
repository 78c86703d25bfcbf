//! What a broker's answer means for a batch or a transaction.
//!
//! Each error code of a Produce partition result, and of InitProducerId,
//! AddPartitionsToTxn, AddOffsetsToTxn, EndTxn and TxnOffsetCommit, maps to
//! one outcome that says what the producer does next. The mapping follows the
//! Java producer's `Sender` and `TransactionManager`, with two kfn choices:
//! authorization failures are [`Fatal`](ProduceOutcome::Fatal) everywhere (an
//! operator must grant an ACL; aborting and redoing the work would only loop),
//! and DUPLICATE_SEQUENCE_NUMBER is a delivery (tansu answers a re-sent batch
//! with it where Apache Kafka answers success with the first write's offset).
//!
//! ```
//! use kafka_protocol::error::ResponseError;
//! use kafka_protocol::messages::produce_response::PartitionProduceResponse;
//! use kfn_kafka::producer::{classify_produce, ProduceOutcome};
//!
//! let answer = PartitionProduceResponse::default()
//!     .with_error_code(ResponseError::NotLeaderOrFollower.code());
//! assert!(matches!(
//!     classify_produce(&answer, false),
//!     ProduceOutcome::Retry { refresh_metadata: true, .. }
//! ));
//! ```

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    AddOffsetsToTxnResponse, AddPartitionsToTxnResponse, EndTxnResponse, InitProducerIdResponse,
    TxnOffsetCommitResponse,
};

use super::ProducerIdentity;

/// An error code a broker answered, with the message it gave, if any.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct BrokerError {
    /// The error code.
    pub error: ResponseError,
    /// The broker's message, or where the error was reported (topic/partition).
    pub message: Option<String>,
}

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "broker answered {} (code {})", self.error, self.error.code())?;
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

/// What to do with a batch after the leader's answer for its partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProduceOutcome {
    /// The batch is in the log (or the broker already had it); `base_offset`
    /// is its first record's offset when the broker said so.
    Delivered {
        /// The offset of the batch's first record, if the broker gave one.
        base_offset: Option<i64>,
    },
    /// A passing broker state: re-send the same batch, same sequence, after a
    /// backoff, looking up the partition's leader again if `refresh_metadata`.
    Retry {
        /// The code the broker answered.
        error: ResponseError,
        /// Whether the partition's leader must be looked up again first.
        refresh_metadata: bool,
    },
    /// A newer instance took this producer's transactional id: stop this
    /// member's work at once, without retrying, and re-initialise before any
    /// new work.
    Fenced(ResponseError),
    /// The broker no longer knows this producer id or epoch: call
    /// InitProducerId again (aborting the open transaction first) and re-send
    /// undelivered batches re-encoded with sequences from 0.
    ReinitProducer(ResponseError),
    /// The open transaction cannot commit: abort it and redo its work.
    AbortTransaction(BrokerError),
    /// Retrying cannot help: fail the batch's records and report the error.
    Fatal(BrokerError),
}

/// Classify a Produce response's result for one partition.
///
/// `transactional` says whether the batch belonged to a transaction:
/// INVALID_PRODUCER_EPOCH then means fencing, while an idempotent producer
/// only needs a new epoch.
pub fn classify_produce(partition: &PartitionProduceResponse, transactional: bool) -> ProduceOutcome {
    use ResponseError as E;
    let Some(error) = ResponseError::try_from_code(partition.error_code) else {
        return delivered(partition.base_offset);
    };
    let retry = |refresh_metadata| ProduceOutcome::Retry { error, refresh_metadata };
    match error {
        E::DuplicateSequenceNumber => delivered(partition.base_offset),
        // The partition moved or its leader is unknown to this broker.
        E::NotLeaderOrFollower
        | E::LeaderNotAvailable
        | E::UnknownTopicOrPartition
        | E::NetworkException
        | E::KafkaStorageError
        | E::FencedLeaderEpoch
        | E::UnknownLeaderEpoch
        | E::ReplicaNotAvailable
        | E::UnknownTopicId
        | E::InconsistentTopicId => retry(true),
        E::RequestTimedOut
        | E::NotEnoughReplicas
        | E::NotEnoughReplicasAfterAppend
        | E::CorruptMessage
        | E::CoordinatorLoadInProgress
        | E::ConcurrentTransactions
        | E::ThrottlingQuotaExceeded => retry(false),
        E::ProducerFenced => ProduceOutcome::Fenced(error),
        E::InvalidProducerEpoch if transactional => ProduceOutcome::Fenced(error),
        E::InvalidProducerEpoch | E::UnknownProducerId | E::InvalidProducerIdMapping => {
            ProduceOutcome::ReinitProducer(error)
        }
        E::TransactionAbortable if transactional => ProduceOutcome::AbortTransaction(produce_error(error, partition)),
        other if other.is_retriable() => retry(false),
        _ => ProduceOutcome::Fatal(produce_error(error, partition)),
    }
}

fn delivered(base_offset: i64) -> ProduceOutcome {
    ProduceOutcome::Delivered { base_offset: (base_offset >= 0).then_some(base_offset) }
}

/// The broker's message and per-record errors (INVALID_RECORD names the
/// records it refused) in one line.
fn produce_error(error: ResponseError, partition: &PartitionProduceResponse) -> BrokerError {
    let mut parts: Vec<String> = Vec::new();
    if let Some(message) = &partition.error_message {
        parts.push(message.to_string());
    }
    for record in &partition.record_errors {
        let message = record.batch_index_error_message.as_ref().map(|m| m.to_string()).unwrap_or_default();
        parts.push(format!("record {}: {message}", record.batch_index));
    }
    BrokerError { error, message: (!parts.is_empty()).then(|| parts.join("; ")) }
}

/// The transaction and producer-id requests whose errors [`classify_txn_error`]
/// knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnApi {
    /// InitProducerId: get (or bump) a producer id and epoch.
    InitProducerId,
    /// AddPartitionsToTxn: register partitions with the open transaction.
    AddPartitionsToTxn,
    /// AddOffsetsToTxn: register the consumer group with the open transaction.
    AddOffsetsToTxn,
    /// EndTxn: commit or abort the open transaction.
    EndTxn,
    /// TxnOffsetCommit: commit consumed offsets inside the transaction
    /// (answered by the group coordinator).
    TxnOffsetCommit,
}

/// What to do after a transaction or producer-id request's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOutcome {
    /// The request did what it asked.
    Done,
    /// A passing coordinator state: send the request again after a backoff,
    /// looking up the coordinator again first if `refresh_coordinator` (the
    /// group coordinator for TxnOffsetCommit, the transaction coordinator
    /// otherwise).
    Retry {
        /// The code the broker answered.
        error: ResponseError,
        /// Whether the coordinator must be looked up again first.
        refresh_coordinator: bool,
    },
    /// A newer instance took this producer's transactional id: stop this
    /// member's work at once, without retrying.
    Fenced(ResponseError),
    /// The coordinator no longer knows this producer id or epoch: abort the
    /// open transaction and call InitProducerId again.
    ReinitProducer(ResponseError),
    /// The open transaction cannot commit (for TxnOffsetCommit: the group
    /// moved on without this member): abort it and redo or hand over its work.
    AbortTransaction(BrokerError),
    /// Retrying cannot help: stop and report the error.
    Fatal(BrokerError),
}

impl TxnOutcome {
    /// How bad an outcome is, to report the worst of several partitions.
    fn severity(&self) -> u8 {
        match self {
            TxnOutcome::Done => 0,
            TxnOutcome::Retry { refresh_coordinator: false, .. } => 1,
            TxnOutcome::Retry { .. } => 2,
            TxnOutcome::AbortTransaction(_) => 3,
            TxnOutcome::ReinitProducer(_) => 4,
            TxnOutcome::Fenced(_) => 5,
            TxnOutcome::Fatal(_) => 6,
        }
    }

    fn worst(self, other: TxnOutcome) -> TxnOutcome {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    fn located(self, topic: &str, partition: i32) -> TxnOutcome {
        let locate = |error: BrokerError| BrokerError {
            message: Some(match error.message {
                Some(message) => format!("{topic}/{partition}: {message}"),
                None => format!("{topic}/{partition}"),
            }),
            ..error
        };
        match self {
            TxnOutcome::Fatal(error) => TxnOutcome::Fatal(locate(error)),
            TxnOutcome::AbortTransaction(error) => TxnOutcome::AbortTransaction(locate(error)),
            other => other,
        }
    }
}

/// Classify one error code of a transaction or producer-id request.
pub fn classify_txn_error(api: TxnApi, error_code: i16) -> TxnOutcome {
    use ResponseError as E;
    let Some(error) = ResponseError::try_from_code(error_code) else {
        return TxnOutcome::Done;
    };
    let retry = |refresh_coordinator| TxnOutcome::Retry { error, refresh_coordinator };
    let broker_error = BrokerError { error, message: None };
    match error {
        E::NotCoordinator | E::CoordinatorNotAvailable => retry(true),
        E::RequestTimedOut if api == TxnApi::TxnOffsetCommit => retry(true),
        E::CoordinatorLoadInProgress | E::ConcurrentTransactions => retry(false),
        E::UnknownTopicOrPartition if matches!(api, TxnApi::AddPartitionsToTxn | TxnApi::TxnOffsetCommit) => {
            retry(false)
        }
        // Reported for the partitions a request skipped because another one
        // failed; that other partition's outcome decides.
        E::OperationNotAttempted if api == TxnApi::AddPartitionsToTxn => retry(false),
        E::InvalidProducerEpoch | E::ProducerFenced => TxnOutcome::Fenced(error),
        E::UnknownProducerId | E::InvalidProducerIdMapping if api != TxnApi::InitProducerId => {
            TxnOutcome::ReinitProducer(error)
        }
        E::TransactionAbortable => TxnOutcome::AbortTransaction(broker_error),
        // The last two: the consumer group protocol's member epoch (KIP-848) moved on.
        E::UnknownMemberId
        | E::IllegalGeneration
        | E::FencedInstanceId
        | E::RebalanceInProgress
        | E::FencedMemberEpoch
        | E::StaleMemberEpoch
            if api == TxnApi::TxnOffsetCommit =>
        {
            TxnOutcome::AbortTransaction(broker_error)
        }
        other if other.is_retriable() => retry(false),
        _ => TxnOutcome::Fatal(broker_error),
    }
}

/// Classify an InitProducerId answer; on [`TxnOutcome::Done`] read the
/// identity with [`producer_identity`].
pub fn classify_init_producer_id(response: &InitProducerIdResponse) -> TxnOutcome {
    classify_txn_error(TxnApi::InitProducerId, response.error_code)
}

/// The producer id and epoch an InitProducerId answer handed out, if it
/// succeeded.
pub fn producer_identity(response: &InitProducerIdResponse) -> Option<ProducerIdentity> {
    (response.error_code == 0)
        .then_some(ProducerIdentity { id: response.producer_id.0, epoch: response.producer_epoch })
}

/// Classify an AddPartitionsToTxn answer: the top-level code (v4+) and the
/// worst of its partitions' codes (v0-3 and v4+ layouts alike).
pub fn classify_add_partitions_to_txn(response: &AddPartitionsToTxnResponse) -> TxnOutcome {
    let api = TxnApi::AddPartitionsToTxn;
    let topics = response
        .results_by_topic_v3_and_below
        .iter()
        .chain(response.results_by_transaction.iter().flat_map(|t| &t.topic_results));
    let mut outcome = classify_txn_error(api, response.error_code);
    for topic in topics {
        for partition in &topic.results_by_partition {
            let partition_outcome = classify_txn_error(api, partition.partition_error_code)
                .located(&topic.name.0, partition.partition_index);
            outcome = outcome.worst(partition_outcome);
        }
    }
    outcome
}

/// Classify an AddOffsetsToTxn answer.
pub fn classify_add_offsets_to_txn(response: &AddOffsetsToTxnResponse) -> TxnOutcome {
    classify_txn_error(TxnApi::AddOffsetsToTxn, response.error_code)
}

/// Classify an EndTxn answer.
pub fn classify_end_txn(response: &EndTxnResponse) -> TxnOutcome {
    classify_txn_error(TxnApi::EndTxn, response.error_code)
}

/// Classify a TxnOffsetCommit answer: the worst of its partitions' codes.
pub fn classify_txn_offset_commit(response: &TxnOffsetCommitResponse) -> TxnOutcome {
    let mut outcome = TxnOutcome::Done;
    for topic in &response.topics {
        for partition in &topic.partitions {
            let partition_outcome = classify_txn_error(TxnApi::TxnOffsetCommit, partition.error_code)
                .located(&topic.name.0, partition.partition_index);
            outcome = outcome.worst(partition_outcome);
        }
    }
    outcome
}
