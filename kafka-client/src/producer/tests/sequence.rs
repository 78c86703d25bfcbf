//! Sequence numbers: numbering, wrap-around, reset on a new identity, retries.

use bytes::Bytes;

use super::decode;
use crate::producer::{
    increment_sequence, BatchBuilder, Compression, ProducerError, ProducerIdentity, ProducerRecord, Pushed,
    SequenceNumbers,
};

const IDENTITY: ProducerIdentity = ProducerIdentity { id: 11, epoch: 0 };

#[test]
fn increment_wraps_past_max_to_zero() {
    assert_eq!(increment_sequence(0, 5), 5);
    assert_eq!(increment_sequence(i32::MAX - 2, 2), i32::MAX);
    assert_eq!(increment_sequence(i32::MAX, 1), 0);
    assert_eq!(increment_sequence(i32::MAX - 1, 5), 3);
    assert_eq!(increment_sequence(i32::MAX, i32::MAX), i32::MAX - 1);
}

#[test]
fn batches_advance_by_their_record_count_per_partition() {
    let mut sequences = SequenceNumbers::new(IDENTITY);
    assert_eq!(sequences.peek("orders", 0), 0);
    assert_eq!(sequences.assign("orders", 0, 3).unwrap(), 0);
    assert_eq!(sequences.assign("orders", 0, 1).unwrap(), 3);
    assert_eq!(sequences.assign("orders", 1, 2).unwrap(), 0);
    assert_eq!(sequences.assign("payments", 0, 4).unwrap(), 0);
    assert_eq!(sequences.assign("orders", 0, 10).unwrap(), 4);
    assert_eq!(sequences.peek("orders", 0), 14);
    assert_eq!(sequences.peek("orders", 1), 2);
    assert_eq!(sequences.peek("payments", 0), 4);
    assert_eq!(sequences.peek("payments", 1), 0);
}

#[test]
fn sequences_wrap_around_like_kafka() {
    let mut sequences = SequenceNumbers::new(IDENTITY);
    assert_eq!(sequences.assign("orders", 0, i32::MAX).unwrap(), 0);
    assert_eq!(sequences.peek("orders", 0), i32::MAX);
    assert_eq!(sequences.assign("orders", 0, 3).unwrap(), i32::MAX);
    assert_eq!(sequences.peek("orders", 0), 2);
    assert_eq!(sequences.assign("orders", 0, 1).unwrap(), 2);
}

#[test]
fn a_new_epoch_or_id_restarts_every_partition() {
    let mut sequences = SequenceNumbers::new(IDENTITY);
    sequences.assign("orders", 0, 5).unwrap();
    sequences.assign("orders", 1, 5).unwrap();
    assert!(!sequences.set_identity(IDENTITY), "same identity keeps sequences");
    assert_eq!(sequences.peek("orders", 0), 5);

    let bumped = ProducerIdentity { id: 11, epoch: 1 };
    assert!(sequences.set_identity(bumped));
    assert_eq!(sequences.identity(), bumped);
    assert_eq!(sequences.peek("orders", 0), 0);
    assert_eq!(sequences.peek("orders", 1), 0);
    assert_eq!(sequences.assign("orders", 1, 2).unwrap(), 0);

    assert!(sequences.set_identity(ProducerIdentity { id: 12, epoch: 1 }));
    assert_eq!(sequences.peek("orders", 1), 0);
}

#[test]
fn without_idempotence_every_batch_gets_no_sequence() {
    let mut sequences = SequenceNumbers::new(ProducerIdentity::NONE);
    assert_eq!(sequences.assign("orders", 0, 3).unwrap(), -1);
    assert_eq!(sequences.assign("orders", 0, 3).unwrap(), -1);
    assert_eq!(sequences.peek("orders", 0), -1);
}

#[test]
fn empty_or_negative_batches_take_no_sequence() {
    let mut sequences = SequenceNumbers::new(IDENTITY);
    for count in [0, -1] {
        let result = sequences.assign("orders", 2, count);
        assert!(
            matches!(result, Err(ProducerError::InvalidRecordCount { record_count, .. }) if record_count == count),
            "{result:?}"
        );
    }
    assert_eq!(sequences.peek("orders", 2), 0);
}

fn batch_of(count: usize, sequences: &mut SequenceNumbers) -> crate::producer::EncodedBatch {
    let mut builder = BatchBuilder::new(1_000_000);
    for n in 0..count {
        let record = ProducerRecord::new(None, Some(Bytes::from(vec![n as u8; 8])), 0);
        assert!(matches!(builder.push(record).unwrap(), Pushed::Added));
    }
    let base = sequences.assign("orders", 0, builder.record_count()).unwrap();
    builder.encode(sequences.identity(), base, false, Compression::Lz4).unwrap()
}

#[test]
fn a_retried_batch_keeps_its_sequence() {
    let mut sequences = SequenceNumbers::new(IDENTITY);
    let first = batch_of(3, &mut sequences);
    let second = batch_of(2, &mut sequences);
    assert_eq!(decode(&first).0.base_sequence, 0);
    assert_eq!(decode(&second).0.base_sequence, 3);

    // A retry re-sends the batch it has: the same bytes, the same sequence,
    // and the partition's next sequence does not move.
    let retry = first.clone();
    assert_eq!(retry.bytes(), first.bytes());
    assert_eq!(decode(&retry).0.base_sequence, 0);
    assert_eq!(sequences.peek("orders", 0), 5);
    let third = batch_of(1, &mut sequences);
    assert_eq!(decode(&third).0.base_sequence, 5);
}

#[test]
fn undelivered_batches_are_resequenced_under_a_new_identity() {
    let mut sequences = SequenceNumbers::new(IDENTITY);
    let first = batch_of(3, &mut sequences);
    let second = batch_of(2, &mut sequences);

    // UNKNOWN_PRODUCER_ID: InitProducerId hands out a new epoch and both
    // batches go out again, in order, from sequence 0.
    let bumped = ProducerIdentity { id: 11, epoch: 1 };
    sequences.set_identity(bumped);
    let mut resent = Vec::new();
    for batch in [&first, &second] {
        let base = sequences.assign("orders", 0, batch.record_count()).unwrap();
        resent.push(batch.reencode(bumped, base).unwrap());
    }
    let infos: Vec<_> = resent.iter().map(|b| decode(b).0).collect();
    assert_eq!(infos.iter().map(|i| (i.producer_epoch, i.base_sequence)).collect::<Vec<_>>(), vec![(1, 0), (1, 3)]);
    assert_eq!(sequences.peek("orders", 0), 5);
}

#[test]
fn only_the_last_batch_can_hand_its_sequences_back() {
    let mut sequences = SequenceNumbers::new(IDENTITY);
    let first = sequences.assign("orders", 0, 3).unwrap();
    let second = sequences.assign("orders", 0, 2).unwrap();
    assert!(!sequences.release("orders", 0, first, 3), "a later batch holds 3..5");
    assert_eq!(sequences.peek("orders", 0), 5);
    assert!(sequences.release("orders", 0, second, 2));
    assert_eq!(sequences.peek("orders", 0), 3);
    assert!(sequences.release("orders", 0, first, 3));
    assert_eq!(sequences.peek("orders", 0), 0);
    assert!(!sequences.release("orders", 7, 0, 1), "unknown partition");
}
