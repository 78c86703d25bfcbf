//! Deliver: write a chunk's records and commit its input offset, by the
//! function's guarantee.
//!
//! - [`AtLeastOnce`]: produce with the shared idempotent producer, then
//!   commit the offset. A crash between the two redoes the chunk.
//! - [`ExactlyOnce`]: stage the records in the partition's transaction, send
//!   the offset to it, commit it: all or nothing. The transactional producer
//!   of an input partition fences its previous owner.
//!
//! No offset is committed past a record that is neither done nor
//! dead-lettered: the drivers pass only offsets below which every record's
//! outcome is in the chunk or already delivered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::committer::Committer;
use super::egress::Outgoing;
use super::shared::FunctionShared;
use crate::config::Guarantee;
use crate::kafka::group::protocol::TopicPartition;
use crate::kafka::producer::{Producer, ProducerConfig, SendError};
use crate::metrics::FunctionMetrics;

/// Most records processed (and committed) as one unit.
///
/// Each unit is a commit, and under exactly_once a transaction of five broker
/// round trips: 2,000 instead of 500 ran 4 times as many records/s through
/// exactly_once on the local broker (docs/benchmarks.md). A crash redoes at
/// most this many records per partition; fetches at low rates bring fewer.
pub const MAX_CHUNK: usize = 2000;

/// Why a chunk could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The member holds no assignment any more: the partition is someone else's.
    #[error("the member lost its assignment")]
    Unassigned,
    /// Producing, staging or committing the transaction failed.
    #[error("cannot write the chunk: {0}")]
    Send(#[from] SendError),
}

impl DeliverError {
    /// This member was fenced: stop the partition; otherwise, redo the chunk.
    pub fn is_fenced(&self) -> bool {
        match self {
            DeliverError::Unassigned => true,
            DeliverError::Send(e) => e.is_fenced(),
        }
    }
}

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
        let sends = outgoing.into_iter().map(|((topic, partition), recs)| async move {
            self.producer.send(&TopicPartition::new(topic.to_string(), partition), recs).await
        });
        futures::future::try_join_all(sends).await?;
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

/// Stage, send the offset, commit: one transaction per chunk.
pub struct ExactlyOnce {
    producer: Producer,
    committer: Arc<Committer>,
    metrics: FunctionMetrics,
}

impl ExactlyOnce {
    /// The producer of one input partition: `kfn.<function>.<topic>.<partition>`.
    ///
    /// Its InitProducerId fences the previous owner of the partition (a zombie
    /// whose session expired), so two members can never both commit outputs for
    /// the same input records. Retries until it works or `stop` turns true.
    pub async fn start(
        shared: &FunctionShared,
        tp: &TopicPartition,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<ExactlyOnce> {
        let config = ProducerConfig {
            transactional_id: Some(format!("kfn.{}.{}.{}", shared.function, tp.topic, tp.partition)),
            ..shared.producer_config.clone()
        };
        loop {
            match Producer::new(shared.cluster.clone(), config.clone()).await {
                Ok(producer) => {
                    return Some(ExactlyOnce {
                        producer,
                        committer: shared.committer.clone(),
                        metrics: shared.metrics.clone(),
                    })
                }
                Err(e) => {
                    tracing::warn!(function = %shared.function, partition = %tp, error = %e, "cannot start the transactional producer; retrying");
                    if tokio::time::timeout(Duration::from_secs(1), stop.changed()).await.is_ok() {
                        return None;
                    }
                }
            }
        }
    }

    async fn deliver(&self, tp: &TopicPartition, outgoing: Outgoing, commit: Option<i64>) -> Result<(), DeliverError> {
        let start = Instant::now();
        let producer = &self.producer;
        for ((topic, partition), recs) in outgoing {
            producer.stage(&TopicPartition::new(topic.to_string(), partition), recs);
        }
        let Some(generation) = self.committer.generation() else {
            self.metrics.aborted.inc();
            let _ = producer.abort().await;
            return Err(DeliverError::Unassigned);
        };
        let offsets = BTreeMap::from_iter(commit.map(|offset| (tp.clone(), offset)));
        let committed = async {
            if !offsets.is_empty() {
                producer.send_offsets(self.committer.group(), &generation, &offsets).await?;
            }
            producer.commit().await
        }
        .await;
        match &committed {
            Ok(()) => {
                self.metrics.committed.inc();
                self.metrics.produce_duration.observe(start.elapsed().as_secs_f64());
            }
            Err(e) if e.is_fenced() => {}
            Err(_) => {
                self.metrics.aborted.inc();
                let _ = producer.abort().await;
            }
        }
        Ok(committed?)
    }
}

/// The delivery of one partition worker, by the function's guarantee.
pub enum Deliver {
    /// Produce then commit.
    AtLeastOnce(AtLeastOnce),
    /// One transaction per chunk.
    ExactlyOnce(ExactlyOnce),
}

impl Deliver {
    /// The delivery of partition `tp` of `shared`'s function, by its guarantee;
    /// `None` when `stop` turned true before it could start.
    pub async fn start(
        shared: &FunctionShared,
        tp: &TopicPartition,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Deliver> {
        Some(match shared.guarantee {
            Guarantee::AtLeastOnce => Deliver::AtLeastOnce(AtLeastOnce {
                function: shared.function.clone(),
                producer: shared.producer.clone(),
                committer: shared.committer.clone(),
                metrics: shared.metrics.clone(),
            }),
            Guarantee::ExactlyOnce => Deliver::ExactlyOnce(ExactlyOnce::start(shared, tp, stop).await?),
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
            Deliver::ExactlyOnce(d) => d.deliver(tp, outgoing, commit).await,
        }
    }

    /// Whether delivery is transactional: only a chunk's finished prefix, with its offset, may go out.
    pub fn is_exactly_once(&self) -> bool {
        matches!(self, Deliver::ExactlyOnce(_))
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
