//! One transactional producer per input partition (the KIP-98 model):
//! `kfn.<function>.<topic>.<partition>`, whose InitProducerId fences the
//! partition's previous owner. Works on every broker with transactions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::error::DeliverError;
use crate::invoker::committer::Committer;
use crate::invoker::egress::Outgoing;
use crate::invoker::shared::FunctionShared;
use crate::kafka::group::protocol::TopicPartition;
use crate::kafka::producer::{Producer, ProducerConfig};
use crate::metrics::FunctionMetrics;

/// Stage, send the offset, commit: one transaction per chunk.
pub struct PartitionTransaction {
    producer: Producer,
    committer: Arc<Committer>,
    metrics: FunctionMetrics,
}

impl PartitionTransaction {
    /// The producer of one input partition: `kfn.<function>.<topic>.<partition>`.
    ///
    /// Its InitProducerId fences the previous owner of the partition (a zombie
    /// whose session expired), so two members can never both commit outputs for
    /// the same input records. Retries until it works or `stop` turns true.
    pub async fn start(
        shared: &FunctionShared,
        tp: &TopicPartition,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<PartitionTransaction> {
        let config = ProducerConfig {
            transactional_id: Some(format!("kfn.{}.{}.{}", shared.function, tp.topic, tp.partition)),
            ..shared.producer_config.clone()
        };
        loop {
            match Producer::new(shared.cluster.clone(), config.clone()).await {
                Ok(producer) => {
                    return Some(PartitionTransaction {
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

    pub(super) async fn deliver(
        &self,
        tp: &TopicPartition,
        outgoing: Outgoing,
        commit: Option<i64>,
    ) -> Result<(), DeliverError> {
        let start = Instant::now();
        let producer = &self.producer;
        let offsets = BTreeMap::from_iter(commit.map(|offset| (tp.clone(), offset)));
        let Some(generation) = self.committer.generation() else {
            self.metrics.aborted.inc();
            return Err(DeliverError::Unassigned);
        };
        let committed =
            super::transaction::run(producer, self.committer.group(), &generation, [outgoing], &offsets).await;
        match &committed {
            Ok(()) => {
                self.metrics.committed.inc();
                self.metrics.produce_duration.observe(start.elapsed().as_secs_f64());
            }
            Err(e) if e.is_fenced() => {}
            Err(_) => {
                self.metrics.aborted.inc();
                if let Err(e) = producer.abort().await {
                    // The producer ends it with a new epoch before its next transaction.
                    tracing::warn!(partition = %tp, error = %e, "aborting the partition's transaction failed");
                }
            }
        }
        Ok(committed?)
    }
}
