//! Error codes to outcomes, over responses encoded and decoded with
//! kafka-protocol at the versions the brokers speak.

use bytes::BytesMut;
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnResponse, AddPartitionsToTxnResponse, EndTxnResponse, InitProducerIdResponse, ProduceResponse,
    ProducerId, TopicName, TransactionalId, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::producer::outcome::producer_identity;
use crate::producer::{
    classify_add_offsets_to_txn, classify_add_partitions_to_txn, classify_end_txn, classify_init_producer_id,
    classify_produce, classify_txn_offset_commit, ProduceOutcome, ProducerIdentity, TxnOutcome,
};

/// The shape of an outcome, without the error it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Delivered(Option<i64>),
    Done,
    Retry { refresh: bool },
    Fenced,
    Reinit,
    Abort,
    Fatal,
}

fn produce_kind(outcome: &ProduceOutcome) -> Kind {
    match outcome {
        ProduceOutcome::Delivered { base_offset } => Kind::Delivered(*base_offset),
        ProduceOutcome::Retry { refresh_metadata, .. } => Kind::Retry { refresh: *refresh_metadata },
        ProduceOutcome::Fenced(_) => Kind::Fenced,
        ProduceOutcome::ReinitProducer(_) => Kind::Reinit,
        ProduceOutcome::AbortTransaction(_) => Kind::Abort,
        ProduceOutcome::Fatal(_) => Kind::Fatal,
    }
}

fn txn_kind(outcome: &TxnOutcome) -> Kind {
    match outcome {
        TxnOutcome::Done => Kind::Done,
        TxnOutcome::Retry { refresh_coordinator, .. } => Kind::Retry { refresh: *refresh_coordinator },
        TxnOutcome::Fenced(_) => Kind::Fenced,
        TxnOutcome::ReinitProducer(_) => Kind::Reinit,
        TxnOutcome::AbortTransaction(_) => Kind::Abort,
        TxnOutcome::Fatal(_) => Kind::Fatal,
    }
}

/// Encode a response at `version` and decode it back, as the wire would.
fn over_the_wire<M: Encodable + Decodable>(message: &M, version: i16) -> M {
    let mut buf = BytesMut::new();
    message.encode(&mut buf, version).unwrap();
    M::decode(&mut buf.freeze(), version).unwrap()
}

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn produce_response(partition: PartitionProduceResponse) -> ProduceResponse {
    ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
        .with_name(TopicName(name("orders.created")))
        .with_partition_responses(vec![partition])])
}

/// Classify one partition's code after a round trip at several versions.
fn produce_outcomes(code: i16, base_offset: i64, transactional: bool) -> Vec<ProduceOutcome> {
    let response = produce_response(
        PartitionProduceResponse::default().with_index(2).with_error_code(code).with_base_offset(base_offset),
    );
    [3i16, 8, 9, 11]
        .into_iter()
        .map(|version| {
            let decoded = over_the_wire(&response, version);
            classify_produce(&decoded.responses[0].partition_responses[0], transactional)
        })
        .collect()
}

#[test]
fn produce_codes_lead_to_their_outcomes() {
    let retry = |refresh| Kind::Retry { refresh };
    let table: Vec<(i16, bool, Kind)> = vec![
        (0, false, Kind::Delivered(Some(42))),
        (0, true, Kind::Delivered(Some(42))),
        (E::DuplicateSequenceNumber.code(), false, Kind::Delivered(Some(42))),
        (E::NotLeaderOrFollower.code(), false, retry(true)),
        (E::LeaderNotAvailable.code(), false, retry(true)),
        (E::UnknownTopicOrPartition.code(), false, retry(true)),
        (E::NetworkException.code(), true, retry(true)),
        (E::KafkaStorageError.code(), false, retry(true)),
        (E::RequestTimedOut.code(), false, retry(false)),
        (E::NotEnoughReplicas.code(), false, retry(false)),
        (E::NotEnoughReplicasAfterAppend.code(), true, retry(false)),
        (E::CoordinatorLoadInProgress.code(), true, retry(false)),
        (E::ConcurrentTransactions.code(), true, retry(false)),
        (E::InvalidProducerEpoch.code(), true, Kind::Fenced),
        (E::InvalidProducerEpoch.code(), false, Kind::Reinit),
        (E::ProducerFenced.code(), true, Kind::Fenced),
        (E::ProducerFenced.code(), false, Kind::Fenced),
        (E::UnknownProducerId.code(), false, Kind::Reinit),
        (E::UnknownProducerId.code(), true, Kind::Reinit),
        (E::TransactionAbortable.code(), true, Kind::Abort),
        (E::TransactionAbortable.code(), false, Kind::Fatal),
        (E::TransactionalIdAuthorizationFailed.code(), true, Kind::Fatal),
        (E::OutOfOrderSequenceNumber.code(), false, Kind::Fatal),
        (E::MessageTooLarge.code(), false, Kind::Fatal),
        (E::RecordListTooLarge.code(), false, Kind::Fatal),
        (E::InvalidRecord.code(), false, Kind::Fatal),
        (E::TopicAuthorizationFailed.code(), false, Kind::Fatal),
        (E::ClusterAuthorizationFailed.code(), false, Kind::Fatal),
        (E::InvalidTxnState.code(), true, Kind::Fatal),
        (E::UnknownServerError.code(), false, Kind::Fatal),
        (9_999, false, Kind::Fatal),
    ];
    for (code, transactional, expected) in table {
        for outcome in produce_outcomes(code, 42, transactional) {
            assert_eq!(
                produce_kind(&outcome),
                expected,
                "code {code} ({:?}), transactional {transactional}: {outcome:?}",
                E::try_from_code(code)
            );
        }
    }
}

#[test]
fn duplicate_without_an_offset_is_still_delivered() {
    for outcome in produce_outcomes(E::DuplicateSequenceNumber.code(), -1, true) {
        assert_eq!(outcome, ProduceOutcome::Delivered { base_offset: None });
    }
}

#[test]
fn fatal_produce_error_keeps_the_brokers_words() {
    let response = produce_response(
        PartitionProduceResponse::default()
            .with_error_code(E::InvalidRecord.code())
            .with_error_message(Some(name("compacted topic needs keys")))
            .with_record_errors(vec![BatchIndexAndErrorMessage::default()
                .with_batch_index(3)
                .with_batch_index_error_message(Some(name("null key")))]),
    );
    // Per-record errors exist from Produce v8 on.
    for version in [8i16, 11] {
        let decoded = over_the_wire(&response, version);
        match classify_produce(&decoded.responses[0].partition_responses[0], false) {
            ProduceOutcome::Fatal(error) => {
                assert_eq!(error.error, E::InvalidRecord);
                let text = error.to_string();
                assert!(text.contains("compacted topic needs keys"), "{text}");
                assert!(text.contains("record 3: null key"), "{text}");
                assert!(text.contains("code 87"), "{text}");
            }
            other => panic!("expected a fatal outcome, got {other:?}"),
        }
    }
}

#[test]
fn init_producer_id_codes_lead_to_their_outcomes() {
    let table = [
        (0, Kind::Done),
        (E::NotCoordinator.code(), Kind::Retry { refresh: true }),
        (E::CoordinatorNotAvailable.code(), Kind::Retry { refresh: true }),
        (E::CoordinatorLoadInProgress.code(), Kind::Retry { refresh: false }),
        (E::ConcurrentTransactions.code(), Kind::Retry { refresh: false }),
        (E::InvalidProducerEpoch.code(), Kind::Fenced),
        (E::ProducerFenced.code(), Kind::Fenced),
        (E::TransactionalIdAuthorizationFailed.code(), Kind::Fatal),
        (E::ClusterAuthorizationFailed.code(), Kind::Fatal),
        (E::InvalidTransactionTimeout.code(), Kind::Fatal),
        (E::UnknownProducerId.code(), Kind::Fatal),
    ];
    for (code, expected) in table {
        let response = InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(9_000))
            .with_producer_epoch(3);
        for version in 0i16..=5 {
            let decoded = over_the_wire(&response, version);
            let outcome = classify_init_producer_id(&decoded);
            assert_eq!(txn_kind(&outcome), expected, "code {code} v{version}: {outcome:?}");
            let identity = producer_identity(&decoded);
            if expected == Kind::Done {
                assert_eq!(identity, Some(ProducerIdentity { id: 9_000, epoch: 3 }));
            } else {
                assert_eq!(identity, None);
            }
        }
    }
}

#[test]
fn end_txn_codes_lead_to_their_outcomes() {
    let table = [
        (0, Kind::Done),
        (E::NotCoordinator.code(), Kind::Retry { refresh: true }),
        (E::CoordinatorLoadInProgress.code(), Kind::Retry { refresh: false }),
        (E::ConcurrentTransactions.code(), Kind::Retry { refresh: false }),
        (E::InvalidProducerEpoch.code(), Kind::Fenced),
        (E::ProducerFenced.code(), Kind::Fenced),
        (E::UnknownProducerId.code(), Kind::Reinit),
        (E::InvalidProducerIdMapping.code(), Kind::Reinit),
        (E::TransactionAbortable.code(), Kind::Abort),
        (E::InvalidTxnState.code(), Kind::Fatal),
        (E::TransactionalIdAuthorizationFailed.code(), Kind::Fatal),
    ];
    for (code, expected) in table {
        let response = EndTxnResponse::default().with_error_code(code);
        for version in 0i16..=4 {
            let outcome = classify_end_txn(&over_the_wire(&response, version));
            assert_eq!(txn_kind(&outcome), expected, "code {code} v{version}: {outcome:?}");
        }
    }
}

#[test]
fn add_offsets_to_txn_codes_lead_to_their_outcomes() {
    let table = [
        (0, Kind::Done),
        (E::CoordinatorNotAvailable.code(), Kind::Retry { refresh: true }),
        (E::ConcurrentTransactions.code(), Kind::Retry { refresh: false }),
        (E::ProducerFenced.code(), Kind::Fenced),
        (E::UnknownProducerId.code(), Kind::Reinit),
        (E::GroupAuthorizationFailed.code(), Kind::Fatal),
    ];
    for (code, expected) in table {
        let response = AddOffsetsToTxnResponse::default().with_error_code(code);
        for version in 0i16..=4 {
            let outcome = classify_add_offsets_to_txn(&over_the_wire(&response, version));
            assert_eq!(txn_kind(&outcome), expected, "code {code} v{version}: {outcome:?}");
        }
    }
}

fn add_partitions_topic(codes: &[i16]) -> AddPartitionsToTxnTopicResult {
    AddPartitionsToTxnTopicResult::default().with_name(TopicName(name("orders.validated"))).with_results_by_partition(
        codes
            .iter()
            .enumerate()
            .map(|(index, code)| {
                AddPartitionsToTxnPartitionResult::default()
                    .with_partition_index(index as i32)
                    .with_partition_error_code(*code)
            })
            .collect(),
    )
}

/// The same partition codes in the v0-3 layout and in the v4+ layout.
fn add_partitions_outcomes(top_level: i16, codes: &[i16]) -> Vec<TxnOutcome> {
    let old =
        AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(vec![add_partitions_topic(codes)]);
    let new = AddPartitionsToTxnResponse::default().with_error_code(top_level).with_results_by_transaction(vec![
        AddPartitionsToTxnResult::default()
            .with_transactional_id(TransactionalId(name("kfn.validation.0")))
            .with_topic_results(vec![add_partitions_topic(codes)]),
    ]);
    let mut outcomes = Vec::new();
    if top_level == 0 {
        for version in 0i16..=3 {
            outcomes.push(classify_add_partitions_to_txn(&over_the_wire(&old, version)));
        }
    }
    for version in 4i16..=5 {
        outcomes.push(classify_add_partitions_to_txn(&over_the_wire(&new, version)));
    }
    outcomes
}

#[test]
fn add_partitions_to_txn_reports_the_worst_partition() {
    let table: Vec<(i16, Vec<i16>, Kind)> = vec![
        (0, vec![0, 0], Kind::Done),
        (0, vec![0, E::ConcurrentTransactions.code()], Kind::Retry { refresh: false }),
        (0, vec![E::UnknownTopicOrPartition.code()], Kind::Retry { refresh: false }),
        (0, vec![E::CoordinatorLoadInProgress.code(), E::NotCoordinator.code()], Kind::Retry { refresh: true }),
        (0, vec![E::OperationNotAttempted.code(), E::TopicAuthorizationFailed.code()], Kind::Fatal),
        (0, vec![0, E::ProducerFenced.code()], Kind::Fenced),
        (0, vec![E::InvalidProducerIdMapping.code()], Kind::Reinit),
        (E::NotCoordinator.code(), vec![], Kind::Retry { refresh: true }),
        (E::ProducerFenced.code(), vec![], Kind::Fenced),
    ];
    for (top_level, codes, expected) in table {
        let outcomes = add_partitions_outcomes(top_level, &codes);
        assert!(!outcomes.is_empty());
        for outcome in outcomes {
            assert_eq!(txn_kind(&outcome), expected, "{top_level} {codes:?}: {outcome:?}");
        }
    }
}

#[test]
fn add_partitions_fatal_names_the_partition() {
    let codes = [0, E::TopicAuthorizationFailed.code()];
    for outcome in add_partitions_outcomes(0, &codes) {
        match outcome {
            TxnOutcome::Fatal(error) => {
                assert_eq!(error.error, E::TopicAuthorizationFailed);
                assert_eq!(error.message.as_deref(), Some("orders.validated/1"));
            }
            other => panic!("expected a fatal outcome, got {other:?}"),
        }
    }
}

#[test]
fn txn_offset_commit_reports_the_worst_partition() {
    let table: Vec<(Vec<i16>, Kind)> = vec![
        (vec![0, 0], Kind::Done),
        (vec![0, E::CoordinatorLoadInProgress.code()], Kind::Retry { refresh: false }),
        (vec![E::RequestTimedOut.code()], Kind::Retry { refresh: true }),
        (vec![E::CoordinatorLoadInProgress.code(), E::NotCoordinator.code()], Kind::Retry { refresh: true }),
        (vec![0, E::UnknownMemberId.code()], Kind::Abort),
        (vec![E::IllegalGeneration.code()], Kind::Abort),
        (vec![E::FencedInstanceId.code()], Kind::Abort),
        // The consumer group protocol's member epoch (KIP-848): the chunk is redone, not the function stopped.
        (vec![E::FencedMemberEpoch.code()], Kind::Abort),
        (vec![E::StaleMemberEpoch.code()], Kind::Abort),
        (vec![E::ProducerFenced.code(), E::IllegalGeneration.code()], Kind::Fenced),
        (vec![E::GroupAuthorizationFailed.code()], Kind::Fatal),
        (vec![E::TransactionalIdAuthorizationFailed.code()], Kind::Fatal),
    ];
    for (codes, expected) in table {
        let response = TxnOffsetCommitResponse::default().with_topics(vec![TxnOffsetCommitResponseTopic::default()
            .with_name(TopicName(name("orders.created")))
            .with_partitions(
                codes
                    .iter()
                    .enumerate()
                    .map(|(index, code)| {
                        TxnOffsetCommitResponsePartition::default()
                            .with_partition_index(index as i32)
                            .with_error_code(*code)
                    })
                    .collect(),
            )]);
        for version in 0i16..=4 {
            let outcome = classify_txn_offset_commit(&over_the_wire(&response, version));
            assert_eq!(txn_kind(&outcome), expected, "{codes:?} v{version}: {outcome:?}");
        }
    }
}
