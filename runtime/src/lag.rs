//! The lag of a function's group from its committed offsets: for `kfn lag`,
//! and exported by every running replica as `kfn_committed_lag`.
//!
//! `kfn_consumer_lag` is set by the replica holding a partition, after each
//! fetch: when every replica of a function is down nobody sets it. This lag
//! is computed from what the brokers keep (the group's committed offsets and
//! the log ends, [`crate::kafka::lag`]), so any process can compute it for
//! every partition: each replica exports it for all partitions of its
//! functions, held or not, and the lag alert still sees a function whose
//! replicas all died as long as one replica of the application runs.

use std::time::Duration;

use tokio::sync::watch;

use crate::config::FunctionSpec;
use crate::kafka::fetch::Isolation;
use crate::kafka::group::protocol::TopicPartition;
use crate::kafka::lag::{group_lag, PartitionLag};
use crate::kafka::{Cluster, KafkaError};
use crate::metrics::{Metrics, PartitionLabels};

/// How often a running replica recomputes `kfn_committed_lag`.
pub const EXPORT_INTERVAL: Duration = Duration::from_secs(15);

/// The lag of one function's group on every partition it reads.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FunctionLag {
    /// The function.
    pub function: String,
    /// Its consumer group (`kfn.<function>`).
    pub group: String,
    /// Each partition of each input topic, then of the retry topic.
    pub partitions: Vec<PartitionLag>,
}

impl FunctionLag {
    /// The sum over the partitions.
    pub fn total(&self) -> i64 {
        self.partitions.iter().map(|p| p.lag).sum()
    }
}

/// The topics a topic function's group reads: its inputs, then its retry topic.
pub fn group_topics(spec: &FunctionSpec) -> Vec<String> {
    spec.inputs().iter().chain(&spec.retry.topic).cloned().collect()
}

/// The lag of `spec`'s group on every partition of its topics, counted to the
/// log end `isolation` reads to.
pub async fn function_lag(
    cluster: &Cluster,
    spec: &FunctionSpec,
    isolation: Isolation,
) -> Result<FunctionLag, KafkaError> {
    let group = spec.group_id();
    let partitions = group_lag(cluster, &group, &group_partitions(cluster, spec).await?, isolation).await?;
    Ok(FunctionLag { function: spec.name.clone(), group, partitions })
}

/// Every partition of the topics `spec`'s group reads, as the brokers have them now.
pub async fn group_partitions(cluster: &Cluster, spec: &FunctionSpec) -> Result<Vec<TopicPartition>, KafkaError> {
    let mut partitions = Vec::new();
    for topic in group_topics(spec) {
        // Fresh metadata: partitions may have been added since the last look.
        cluster.invalidate(&topic);
        let info = cluster.topic(&topic).await?;
        partitions.extend(info.partitions.iter().map(|p| TopicPartition::new(topic.clone(), p.partition)));
    }
    Ok(partitions)
}

/// Sets `kfn_committed_lag` of every partition in `lag`.
pub fn export(metrics: &Metrics, lag: &FunctionLag) {
    for p in &lag.partitions {
        let labels = PartitionLabels {
            function: lag.function.clone(),
            topic: p.topic.clone(),
            partition: p.partition.to_string(),
        };
        metrics.committed_lag.get_or_create(&labels).set(p.lag);
    }
}

/// Recomputes and exports the committed lag of `functions` every `interval`
/// (the first round at once) until `shutdown` turns true.
///
/// A failed round is logged and the gauges keep their last values: the
/// next round tries again.
pub async fn export_every(
    cluster: Cluster,
    functions: Vec<FunctionSpec>,
    isolation: Isolation,
    metrics: Metrics,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        for spec in &functions {
            match function_lag(&cluster, spec, isolation).await {
                Ok(lag) => export(&metrics, &lag),
                Err(error) => {
                    tracing::warn!(function = %spec.name, %error, "cannot compute the committed lag; trying again next round")
                }
            }
        }
    }
}
