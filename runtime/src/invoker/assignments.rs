//! Starts and stops partition workers as the group assigns and revokes partitions.
//!
//! Only the partitions named are touched: under the consumer group protocol
//! a rebalance names just those that change owner, so the others' workers
//! run on. `kfn_partition_workers_started_total` and
//! `kfn_partition_workers_stopped_total` count each start and stop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::deliver::Lease;
use super::shared::FunctionShared;
use super::worker;
use crate::kafka::group::coordinator::Generation;
use crate::kafka::group::member::RebalanceListener;
use crate::kafka::group::protocol::TopicPartition;

struct Running {
    stop: watch::Sender<bool>,
    /// Voided before the worker is aborted (deliver/lease.rs).
    lease: Lease,
    handle: JoinHandle<()>,
}

/// The partition workers of one function in this process.
pub struct PartitionWorkers {
    shared: Arc<FunctionShared>,
    running: Mutex<HashMap<TopicPartition, Running>>,
    shutdown_timeout: Duration,
}

impl PartitionWorkers {
    /// Workers sharing `shared`; revocation waits at most `shutdown_timeout` for in-flight work.
    pub fn new(shared: Arc<FunctionShared>, shutdown_timeout: Duration) -> Self {
        Self { shared, running: Mutex::default(), shutdown_timeout }
    }

    fn take(&self, partitions: &[TopicPartition]) -> Vec<(TopicPartition, Running)> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        partitions.iter().filter_map(|tp| running.remove(tp).map(|r| (tp.clone(), r))).collect()
    }
}

impl RebalanceListener for PartitionWorkers {
    fn assigned<'a>(&'a self, _generation: &'a Generation, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.shared.metrics.rebalances.inc();
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            for tp in partitions {
                if running.contains_key(tp) {
                    continue;
                }
                let (stop, stop_rx) = watch::channel(false);
                let lease = Lease::new();
                let handle = tokio::spawn(worker::run(self.shared.clone(), tp.clone(), lease.clone(), stop_rx));
                self.shared.metrics.workers_started.inc();
                running.insert(tp.clone(), Running { stop, lease, handle });
            }
        })
    }

    fn revoked<'a>(&'a self, _generation: &'a Generation, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let workers = self.take(partitions);
            for (_, w) in &workers {
                let _ = w.stop.send(true);
                self.shared.metrics.workers_stopped.inc();
            }
            // One deadline for all: waiting `shutdown_timeout` per partition in turn would
            // hold the member past its rebalance timeout (consumer protocol: fenced) and
            // shutdown past its budget (no leave: the next owner waits out the session).
            let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
            for (tp, w) in workers {
                let abort = w.handle.abort_handle();
                if tokio::time::timeout_at(deadline, w.handle).await.is_err() {
                    tracing::warn!(function = %self.shared.function, partition = %tp, "in-flight work did not finish within the shutdown timeout; aborted");
                    w.lease.void();
                    abort.abort();
                }
            }
        })
    }

    fn lost<'a>(&'a self, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            for (_, w) in self.take(partitions) {
                w.lease.void();
                w.handle.abort();
                self.shared.metrics.workers_stopped.inc();
            }
        })
    }
}
