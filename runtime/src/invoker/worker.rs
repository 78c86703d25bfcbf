//! One partition of one function: find where to start, set up its delivery
//! (and an aggregate's state), then run the driver its ordering asks for.
//!
//! ```text
//! worker::run -> start offset, Deliver (transactional producer fences the previous owner),
//!                aggregate state restored
//!             -> keyed::run    (ordering = "key": a stream of keys in flight)
//!             -> chunked::run  (partition order, aggregates, the retry topic)
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::aggregate::{Aggregate, PartitionState};
use super::deliver::{Deliver, Lease};
use super::shared::FunctionShared;
use super::{chunked, keyed};
use crate::config::Ordering;
use crate::kafka::consumer::{list_offset, PartitionReader};
use crate::kafka::group::protocol::TopicPartition;

/// Runs one partition until `stop` turns true (between batches).
pub async fn run(shared: Arc<FunctionShared>, tp: TopicPartition, lease: Lease, mut stop: watch::Receiver<bool>) {
    if let Some(member) = &shared.member_transaction {
        // Before the committed offset is read: a transaction still carrying an
        // earlier chunk of this partition must end first (deliver/member.rs).
        tokio::select! {
            settled = member.settled() => if settled.is_err() { return },
            _ = stop.changed() => return,
        }
    }
    let Some(start) = start_offset(&shared, &tp, &mut stop).await else { return };
    let reader = PartitionReader::new(shared.cluster.clone(), tp.clone(), start, shared.isolation, shared.reset)
        .with_limits(shared.fetch_limits);
    let Some(deliver) = Deliver::start(&shared, &tp, lease, &mut stop).await else { return };
    // After the transactional producer: its InitProducerId aborted whatever the
    // previous owner left open, so the table's read_committed end is decided.
    let state = match &shared.aggregate {
        Some(aggregate) => match restore_state(&shared, aggregate, &tp, &mut stop).await {
            Some(s) => Some(s),
            None => return,
        },
        None => None,
    };
    let delayed = shared.inputs.is_retry_topic(&tp.topic);
    tracing::debug!(function = %shared.function, partition = %tp, offset = start, "partition worker started");
    if shared.ordering == Ordering::Key && shared.aggregate.is_none() && !delayed {
        keyed::run(shared, tp, reader, deliver, stop, start).await
    } else {
        chunked::run(shared, tp, reader, deliver, state, stop, start).await
    }
}

async fn start_offset(shared: &FunctionShared, tp: &TopicPartition, stop: &mut watch::Receiver<bool>) -> Option<i64> {
    let mut wait = Duration::from_millis(100);
    loop {
        let found = match shared.committer.committed(tp).await {
            Ok(Some(offset)) => Ok(offset),
            Ok(None) => list_offset(&shared.cluster, tp, shared.reset, shared.isolation).await,
            Err(e) => Err(e),
        };
        match found {
            Ok(offset) => return Some(offset),
            Err(e) => {
                tracing::warn!(function = %shared.function, partition = %tp, error = %e, "cannot find the start offset; retrying");
                if tokio::time::timeout(wait, stop.changed()).await.is_ok() {
                    return None;
                }
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Restores an aggregate's partition state, retrying until it works or the worker stops.
async fn restore_state(
    shared: &FunctionShared,
    aggregate: &Aggregate,
    tp: &TopicPartition,
    stop: &mut watch::Receiver<bool>,
) -> Option<PartitionState> {
    let mut wait = Duration::from_millis(200);
    loop {
        let started = Instant::now();
        match aggregate.restore(&shared.cluster, tp).await {
            Ok(state) => {
                tracing::debug!(
                    function = %shared.function, partition = %tp, table = %aggregate.table, rows = state.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64, "aggregate state restored"
                );
                return Some(state);
            }
            Err(e) => {
                tracing::warn!(function = %shared.function, partition = %tp, error = %e, "cannot restore the aggregate's state; retrying");
                if tokio::time::timeout(wait, stop.changed()).await.is_ok() {
                    return None;
                }
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}
