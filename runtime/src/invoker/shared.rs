//! What every partition worker of a function shares: its stages (ingress,
//! the layer stack, egress), its clients and its settings.

use std::sync::Arc;

use super::aggregate::Aggregate;
use super::committer::Committer;
use super::deliver::member::MemberTransaction;
use super::egress::Egress;
use super::ingress::Inputs;
use crate::config::{Guarantee, Ordering};
use crate::kafka::consumer::LogEnd;
use crate::kafka::fetch::{FetchLimits, Isolation};
use crate::kafka::producer::{Producer, ProducerConfig};
use crate::kafka::Cluster;
use crate::metrics::FunctionMetrics;

/// What every partition worker of a function shares.
pub struct FunctionShared {
    /// The function's name.
    pub function: Arc<str>,
    /// The topics it reads and the handler stack of each.
    pub inputs: Inputs,
    /// Where outcomes go: outputs, retry topic, dead letters.
    pub egress: Egress,
    /// Metric handles.
    pub metrics: FunctionMetrics,
    /// The cluster.
    pub cluster: Cluster,
    /// The shared idempotent producer (at_least_once).
    pub producer: Producer,
    /// Settings for per-partition transactional producers (exactly_once).
    pub producer_config: ProducerConfig,
    /// The member's shared transaction, when an exactly_once function holds
    /// one per member rather than one per partition.
    pub member_transaction: Option<MemberTransaction>,
    /// Offset commits.
    pub committer: Arc<Committer>,
    /// At-least-once or exactly-once.
    pub guarantee: Guarantee,
    /// Partition or key order.
    pub ordering: Ordering,
    /// Bound on keys in flight (key order).
    pub max_in_flight: usize,
    /// read_committed or not.
    pub isolation: Isolation,
    /// Where to start without a committed offset.
    pub reset: LogEnd,
    /// How long and how much each fetch may wait for and bring.
    pub fetch_limits: FetchLimits,
    /// Set for an aggregate: the fold replaces the handler pipeline.
    pub aggregate: Option<Arc<Aggregate>>,
}
