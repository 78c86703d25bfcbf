//! What both group protocols' members share: how a member is configured
//! ([`MemberConfig`], [`GroupProtocol`]), what it tells the runtime
//! ([`RebalanceListener`], [`MemberState`]), and the waits and error
//! classification of their loops. [`super::member`] (the classic protocol and
//! the choice between the two) and [`super::consumer_protocol`] both build on
//! it, so neither imports the other's internals.

use std::sync::RwLock;
use std::time::Duration;

use futures::future::BoxFuture;
use kafka_protocol::ResponseError;
use tokio::sync::watch;

use super::coordinator::Generation;
use super::protocol::TopicPartition;
use crate::backoff::Pauses;
use crate::error::KafkaError;

/// How a member joins its group.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// The group id.
    pub group: String,
    /// The topics to consume.
    pub topics: Vec<String>,
    /// A member silent this long is thrown out by the coordinator.
    pub session_timeout: Duration,
    /// How long the coordinator waits for members to rejoin.
    pub rebalance_timeout: Duration,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
}

/// Which group protocol a member speaks (`runtime.group_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupProtocol {
    /// The consumer protocol where the group coordinator offers
    /// ConsumerGroupHeartbeat (Apache Kafka 4.0 and later), else the classic one.
    #[default]
    Auto,
    /// KIP-848's consumer protocol: the broker assigns, rebalances move only
    /// the partitions that change owner.
    Consumer,
    /// JoinGroup/SyncGroup with kfn's assignors, eager: a rebalance stops
    /// every partition of every member.
    Classic,
}

/// What the runtime does when partitions come and go.
///
/// Calls name only the partitions that change: on the classic protocol a
/// rebalance revokes every partition and assigns the new set; on the consumer
/// protocol it revokes only those that move away and assigns only those
/// gained, while the others keep running. Starting a partition already
/// running must be harmless.
pub trait RebalanceListener: Send + Sync + 'static {
    /// `partitions` became this member's in `generation`: start processing them.
    fn assigned<'a>(&'a self, generation: &'a Generation, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()>;
    /// Stop processing `partitions` and commit what finished; return when done.
    fn revoked<'a>(&'a self, generation: &'a Generation, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()>;
    /// `partitions` were lost (the session expired): stop at once, commit nothing.
    fn lost<'a>(&'a self, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()>;
}

/// The member's current generation and partitions, shared with the runtime.
#[derive(Debug, Clone, Default)]
pub struct MemberState {
    /// The generation, while the member holds an assignment.
    pub generation: Option<Generation>,
    /// The partitions assigned in that generation.
    pub partitions: Vec<TopicPartition>,
    /// How many assignments the member received (1 after the first join).
    pub assignments: u64,
}

/// Errors no rejoin can cure.
pub(super) fn is_fatal(e: &KafkaError) -> bool {
    match e {
        KafkaError::AuthenticationFailed { .. } | KafkaError::Security(_) | KafkaError::UnsupportedApi { .. } => true,
        KafkaError::Broker { code, .. } => matches!(
            ResponseError::try_from_code(*code),
            Some(
                ResponseError::GroupAuthorizationFailed
                    | ResponseError::TopicAuthorizationFailed
                    | ResponseError::InconsistentGroupProtocol
            )
        ),
        _ => false,
    }
}

pub(super) fn write(state: &RwLock<MemberState>) -> std::sync::RwLockWriteGuard<'_, MemberState> {
    state.write().unwrap_or_else(|p| p.into_inner())
}

/// Sleeps for `d`; true when shutdown was asked for meanwhile.
pub(super) async fn wait_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(d) => *shutdown.borrow(),
        changed = shutdown.changed() => changed.is_err() || *shutdown.borrow(),
    }
}

/// Pauses between attempts to rejoin or to reach the coordinator: 100 ms
/// doubling to 2.5 s, each drawn up to twice its step, so that the members
/// which lost the coordinator together do not come back in lockstep.
pub(crate) fn rejoin_pauses() -> Pauses {
    Pauses::jittered(Duration::from_millis(100), Duration::from_millis(2_500))
}
