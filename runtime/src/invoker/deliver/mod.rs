//! Deliver: write a chunk's records and commit its input offset, by the
//! function's guarantee.
//!
//! - [`AtLeastOnce`]: produce with the shared idempotent producer, then
//!   commit the offset. A crash between the two redoes the chunk.
//! - [`PartitionTransaction`]: stage the records in the partition's transaction, send
//!   the offset to it, commit it: all or nothing. The transactional producer
//!   of an input partition fences its previous owner.
//! - [`MemberTransaction`]: the same, in the member's one transaction shared
//!   by all its partitions; the group generation fences a zombie (KIP-447).
//!
//! No offset is committed past a record that is neither done nor
//! dead-lettered: the drivers pass only offsets below which every record's
//! outcome is in the chunk or already delivered.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::committer::Committer;
use super::egress::Outgoing;
use super::shared::FunctionShared;
use crate::config::Guarantee;
use crate::kafka::group::protocol::TopicPartition;
use crate::kafka::producer::Producer;
use crate::metrics::FunctionMetrics;

mod error;
mod lease;
pub mod member;
mod partition;
mod transaction;

pub use error::DeliverError;
pub use lease::Lease;
pub use member::MemberTransaction;
pub use partition::PartitionTransaction;

/// Most records processed (and committed) as one unit.
///
/// Each unit is a commit, and under exactly_once a transaction of five broker
/// round trips: 2,000 instead of 500 ran 4 times as many records/s through
/// exactly_once on the local broker (docs/benchmarks.md). A crash redoes at
/// most this many records per partition; fetches at low rates bring fewer.
pub const MAX_CHUNK: usize = 2000;

/// Produce, then commit, with the function's shared idempotent producer.
pub struct AtLeastOnce {
    function: Arc<str>,
    producer: Producer,
    committer: Arc<Committer>,
    metrics: FunctionMetrics,
}

impl AtLeastOnce {
    async fn deliver(&self, tp: &TopicPartition, outgoing: Outgoing, commit: Option<i64>) -> Result<(), DeliverError> {
        let start = Instant::now();
        // The records move into the producer: no copy of each batch's record list.
        let batches = outgoing
            .into_iter()
            .map(|((topic, partition), recs)| (TopicPartition::new(topic.to_string(), partition), recs));
        self.producer.send_each(batches).await?;
        self.metrics.produce_duration.observe(start.elapsed().as_secs_f64());
        if let Some(next_offset) = commit {
            if let Err(e) = self.committer.commit(tp, next_offset).await {
                // The outputs are written; after the rebalance the next owner may process these records again.
                tracing::info!(function = %self.function, partition = %tp, error = %e, "offset commit failed");
            }
        }
        Ok(())
    }
}

/// The delivery of one partition worker, by the function's guarantee.
pub enum Deliver {
    /// Produce then commit.
    AtLeastOnce(AtLeastOnce),
    /// One transaction per chunk, on the partition's own producer.
    PartitionTransaction(PartitionTransaction),
    /// The chunk joins the member's next transaction while the worker holds
    /// its partition.
    MemberTransaction(MemberTransaction, Lease),
}

impl Deliver {
    /// The delivery of partition `tp` of `shared`'s function, by its guarantee,
    /// for a worker holding `lease`; `None` when `stop` turned true before it
    /// could start.
    pub async fn start(
        shared: &FunctionShared,
        tp: &TopicPartition,
        lease: Lease,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Deliver> {
        Some(match shared.guarantee {
            Guarantee::AtLeastOnce => Deliver::AtLeastOnce(AtLeastOnce {
                function: shared.function.clone(),
                producer: shared.producer.clone(),
                committer: shared.committer.clone(),
                metrics: shared.metrics.clone(),
            }),
            Guarantee::ExactlyOnce => match &shared.member_transaction {
                Some(shared) => Deliver::MemberTransaction(shared.clone(), lease),
                None => Deliver::PartitionTransaction(PartitionTransaction::start(shared, tp, stop).await?),
            },
        })
    }

    /// Writes `outgoing` and commits `commit` (the next offset to read of `tp`), when given.
    pub async fn deliver(
        &self,
        tp: &TopicPartition,
        outgoing: Outgoing,
        commit: Option<i64>,
    ) -> Result<(), DeliverError> {
        match self {
            Deliver::AtLeastOnce(d) => d.deliver(tp, outgoing, commit).await,
            Deliver::PartitionTransaction(d) => d.deliver(tp, outgoing, commit).await,
            Deliver::MemberTransaction(d, lease) => d.deliver(tp, lease, outgoing, commit).await,
        }
    }

    /// Whether delivery is transactional: only a chunk's finished prefix, with its offset, may go out.
    pub fn is_exactly_once(&self) -> bool {
        matches!(self, Deliver::PartitionTransaction(_) | Deliver::MemberTransaction(..))
    }

    /// At the worker's end: commits `done` when offsets moved past control
    /// records or aborted data since `committed` (at_least_once only; a
    /// transaction commits its offsets itself).
    pub async fn stopped_at(&self, tp: &TopicPartition, committed: i64, done: i64) {
        if let Deliver::AtLeastOnce(d) = self {
            if done > committed {
                let _ = d.committer.commit(tp, done).await;
            }
        }
    }
}
