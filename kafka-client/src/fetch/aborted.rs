//! The aborted transactions of one fetch response, consumed in offset order.

use std::collections::HashSet;

use kafka_protocol::messages::fetch_response::AbortedTransaction;

/// Tracks which producers are inside an aborted transaction at the current batch.
///
/// A producer joins the set when the reader reaches the first offset of one
/// of its aborted transactions and leaves it at that producer's ABORT marker;
/// a producer writes one transaction at a time, so this is unambiguous.
#[derive(Debug, Default)]
pub(super) struct AbortedTransactions {
    /// (first offset, producer id), sorted by first offset; `next` indexes the first unreached.
    pending: Vec<(i64, i64)>,
    next: usize,
    open: HashSet<i64>,
}

impl AbortedTransactions {
    pub(super) fn new(list: &[AbortedTransaction]) -> Self {
        let mut pending: Vec<(i64, i64)> = list.iter().map(|txn| (txn.first_offset, txn.producer_id.0)).collect();
        pending.sort_unstable();
        Self { pending, next: 0, open: HashSet::new() }
    }

    /// Opens every aborted transaction that began at or before `offset`.
    pub(super) fn reach(&mut self, offset: i64) {
        while let Some(&(first_offset, producer_id)) = self.pending.get(self.next) {
            if first_offset > offset {
                break;
            }
            self.open.insert(producer_id);
            self.next += 1;
        }
    }

    /// Whether a transactional batch of this producer belongs to an aborted transaction.
    pub(super) fn is_aborted(&self, producer_id: i64) -> bool {
        self.open.contains(&producer_id)
    }

    /// The producer's ABORT marker ends its aborted transaction.
    pub(super) fn close(&mut self, producer_id: i64) {
        self.open.remove(&producer_id);
    }
}
