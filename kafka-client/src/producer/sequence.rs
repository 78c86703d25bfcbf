//! Per-partition sequence numbers of an idempotent producer.
//!
//! The broker keeps, per producer id and partition, the sequence it expects
//! next; a batch whose base sequence it has already seen is a duplicate, one
//! that skips ahead is OUT_OF_ORDER_SEQUENCE_NUMBER. So a batch takes its
//! base sequence once, when it is first sent, and keeps it through every
//! retry; sequences advance by the batch's record count and wrap from
//! `i32::MAX` to 0, as Kafka's do. A new producer id or epoch starts every
//! partition at 0 again.
//!
//! ```
//! use kfn_kafka::producer::{ProducerIdentity, SequenceNumbers};
//!
//! let mut sequences = SequenceNumbers::new(ProducerIdentity { id: 7, epoch: 0 });
//! assert_eq!(sequences.assign("orders", 0, 3)?, 0);
//! assert_eq!(sequences.assign("orders", 0, 2)?, 3);
//! assert_eq!(sequences.assign("orders", 1, 1)?, 0);
//! // The epoch was bumped: every partition starts over.
//! sequences.set_identity(ProducerIdentity { id: 7, epoch: 1 });
//! assert_eq!(sequences.assign("orders", 0, 1)?, 0);
//! # Ok::<(), kfn_kafka::producer::ProducerError>(())
//! ```

use std::collections::HashMap;

use kafka_protocol::records::NO_SEQUENCE;

use super::{ProducerError, ProducerIdentity};

/// `sequence + increment` the way Kafka counts: past `i32::MAX` comes 0.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    let next = (sequence as i64 + increment as i64).rem_euclid(i32::MAX as i64 + 1);
    // rem_euclid by 2^31 lands in 0..=i32::MAX.
    next as i32
}

/// The next base sequence of every partition a producer writes to, under
/// one producer identity.
#[derive(Debug, Clone)]
pub struct SequenceNumbers {
    identity: ProducerIdentity,
    /// topic -> partition -> next base sequence.
    next: HashMap<String, HashMap<i32, i32>>,
}

impl SequenceNumbers {
    /// Sequences for a producer that has just been given `identity`.
    pub fn new(identity: ProducerIdentity) -> Self {
        SequenceNumbers { identity, next: HashMap::new() }
    }

    /// The identity the sequences belong to.
    pub fn identity(&self) -> ProducerIdentity {
        self.identity
    }

    /// Adopt the identity from a new InitProducerId answer. A different id or
    /// epoch restarts every partition at 0; returns whether it did.
    pub fn set_identity(&mut self, identity: ProducerIdentity) -> bool {
        if identity == self.identity {
            return false;
        }
        self.identity = identity;
        self.next.clear();
        true
    }

    /// The base sequence the next batch for this partition would get
    /// (-1 without idempotence).
    pub fn peek(&self, topic: &str, partition: i32) -> i32 {
        if !self.identity.is_idempotent() {
            return NO_SEQUENCE;
        }
        self.next.get(topic).and_then(|partitions| partitions.get(&partition)).copied().unwrap_or(0)
    }

    /// Give a new batch of `record_count` records its base sequence and move
    /// the partition's next sequence past it. Call once per batch: a retry
    /// re-sends the batch with the base sequence it already has.
    ///
    /// Without idempotence every batch gets -1 and nothing advances.
    pub fn assign(&mut self, topic: &str, partition: i32, record_count: i32) -> Result<i32, ProducerError> {
        if record_count <= 0 {
            return Err(ProducerError::InvalidRecordCount { topic: topic.to_owned(), partition, record_count });
        }
        if !self.identity.is_idempotent() {
            return Ok(NO_SEQUENCE);
        }
        let partitions = match self.next.get_mut(topic) {
            Some(partitions) => partitions,
            None => self.next.entry(topic.to_owned()).or_default(),
        };
        let next = partitions.entry(partition).or_insert(0);
        let base = *next;
        *next = increment_sequence(base, record_count);
        Ok(base)
    }

    /// Hand back the sequences of a batch the broker never wrote (it failed
    /// for good before being appended), so the partition's next batch does
    /// not leave a gap the broker would answer with OUT_OF_ORDER_SEQUENCE_NUMBER.
    ///
    /// Only the most recently assigned batch can be handed back; returns
    /// false (and changes nothing) otherwise, in which case batches after it
    /// already carry later sequences and the producer must be re-initialised.
    pub fn release(&mut self, topic: &str, partition: i32, base_sequence: i32, record_count: i32) -> bool {
        if !self.identity.is_idempotent() || record_count <= 0 {
            return false;
        }
        let Some(next) = self.next.get_mut(topic).and_then(|partitions| partitions.get_mut(&partition)) else {
            return false;
        };
        if *next != increment_sequence(base_sequence, record_count) {
            return false;
        }
        *next = base_sequence;
        true
    }
}
