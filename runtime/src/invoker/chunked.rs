//! The chunked driver: a partition's records in chunks of at most
//! [`MAX_CHUNK`], each invoked, routed and delivered before the next; used for
//! partition order, aggregates and retry topics.
//!
//! A chunk's outputs and dead letters are produced before its offset is
//! committed (at_least_once), or staged, then committed with the offset in
//! one transaction (exactly_once). No offset is committed past a record that
//! is neither done nor dead-lettered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use kfn_sdk::Emit;
use tokio::sync::watch;

use super::aggregate::PartitionState;
use super::deliver::{Deliver, DeliverError, MAX_CHUNK};
use super::ingress::Invocation;
use super::invoke::{Failure, FailureKind};
use super::retry_topic::Waiting;
use super::shared::FunctionShared;
use crate::config::Ordering;
use crate::kafka::consumer::PartitionReader;
use crate::kafka::fetch::ConsumedRecord;
use crate::kafka::group::protocol::TopicPartition;

/// Runs one partition, chunk by chunk, until `stop` turns true (between chunks).
pub(super) async fn run(
    shared: Arc<FunctionShared>,
    tp: TopicPartition,
    mut reader: PartitionReader,
    deliver: Deliver,
    mut state: Option<PartitionState>,
    mut stop: watch::Receiver<bool>,
    start: i64,
) {
    let lag = shared.metrics.lag(&tp.topic, tp.partition);
    let delayed = shared.inputs.is_retry_topic(&tp.topic);
    let mut committed = start;
    // Everything below `done` is processed (or was a control or aborted record).
    let mut done = start;
    let mut failures = 0u32;
    while !*stop.borrow() {
        let decoded = tokio::select! {
            r = reader.next() => r,
            _ = stop.changed() => break,
        };
        let decoded = match decoded {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(function = %shared.function, partition = %tp, error = %e, "fetch failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        lag.set(decoded.high_watermark.saturating_sub(decoded.next_fetch_offset));
        let next = decoded.next_fetch_offset;
        if decoded.records.is_empty() {
            done = next;
            continue;
        }
        // A fetch may bring thousands of records: commit (and, under exactly_once,
        // close the transaction) every MAX_CHUNK records so progress is saved
        // steadily and a crash redoes little.
        let mut rest: &[ConsumedRecord] = &decoded.records;
        while !rest.is_empty() {
            let mut n = rest.len().min(MAX_CHUNK);
            if delayed {
                // A retry topic's records wait for their due time, the earliest first.
                let now = kfn_sdk::now_ms();
                n = rest[..n].iter().take_while(|r| Waiting::due_ms(r) <= now).count();
                if n == 0 {
                    let wait = Duration::from_millis((Waiting::due_ms(&rest[0]) - now).max(1) as u64);
                    if tokio::time::timeout(wait, stop.changed()).await.is_ok() {
                        break;
                    }
                    continue;
                }
            }
            let (chunk, after) = rest.split_at(n);
            let chunk_next = after.first().map(|r| r.offset).unwrap_or(next);
            loop {
                match process_batch(&shared, &tp, chunk, chunk_next, &deliver, state.as_mut()).await {
                    Ok(()) => {
                        committed = chunk_next;
                        done = chunk_next;
                        failures = 0;
                        break;
                    }
                    Err(e) if e.is_fenced() => {
                        tracing::warn!(function = %shared.function, partition = %tp, error = %e, "fenced: another member owns this partition now");
                        return;
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(function = %shared.function, partition = %tp, error = %e, failures, "batch failed; processing it again");
                        let wait = Duration::from_millis(100u64.saturating_mul(1 << failures.min(6)).min(5_000));
                        if tokio::time::timeout(wait, stop.changed()).await.is_ok() {
                            return;
                        }
                    }
                }
            }
            rest = after;
            if *stop.borrow() {
                // Revoked: what is committed stays; the next owner starts at `committed`.
                break;
            }
        }
        if !rest.is_empty() {
            break;
        }
    }
    // Offsets moved past control records or aborted data since the last commit.
    deliver.stopped_at(&tp, committed, done).await;
    tracing::debug!(function = %shared.function, partition = %tp, offset = done, "partition worker stopped");
}

/// Invokes a chunk, routes its outcomes and delivers them with the chunk's end offset.
async fn process_batch(
    shared: &FunctionShared,
    tp: &TopicPartition,
    records: &[ConsumedRecord],
    next_offset: i64,
    deliver: &Deliver,
    state: Option<&mut PartitionState>,
) -> Result<(), DeliverError> {
    let invocations: Vec<Invocation> =
        records.iter().map(|r| shared.inputs.invocation(&shared.function, tp, r)).collect();
    let (results, overlay) = match (&shared.aggregate, state.as_deref()) {
        (Some(aggregate), Some(base)) => {
            let (results, overlay) = aggregate.fold_all(&shared.function, &shared.metrics, tp, base, records).await;
            (results, Some(overlay))
        }
        _ => (invoke_all(shared, records, &invocations).await, None),
    };
    let processed = records.iter().zip(&invocations).zip(&results).map(|((r, i), x)| (r, &i.origin, x));
    let outgoing = shared.egress.route(tp, processed, kfn_sdk::now_ms());
    let result = deliver.deliver(tp, outgoing, Some(next_offset)).await;
    if result.is_ok() {
        // Only now: the table holds these rows, so the state may include them.
        if let (Some(state), Some(overlay)) = (state, overlay) {
            state.apply(overlay);
        }
    }
    result
}

/// Invokes every record: in offset order, or per key in parallel (each key in order).
async fn invoke_all(
    shared: &FunctionShared,
    records: &[ConsumedRecord],
    invocations: &[Invocation],
) -> Vec<Result<Emit, Failure>> {
    let run = |i: usize| async move {
        let value = records[i].value.clone().unwrap_or_default();
        shared.inputs.run(&invocations[i], &value).await
    };
    match shared.ordering {
        Ordering::Partition => {
            let mut results = Vec::with_capacity(records.len());
            for i in 0..records.len() {
                results.push(run(i).await);
            }
            results
        }
        Ordering::Key => {
            let mut index: HashMap<Option<Bytes>, usize> = HashMap::new();
            let mut groups: Vec<Vec<usize>> = Vec::new();
            for (i, r) in records.iter().enumerate() {
                let g = *index.entry(r.key.clone()).or_insert_with(|| {
                    groups.push(Vec::new());
                    groups.len() - 1
                });
                groups[g].push(i);
            }
            drop(index);
            let mut results: Vec<Option<Result<Emit, Failure>>> = (0..records.len()).map(|_| None).collect();
            let done: Vec<Vec<(usize, Result<Emit, Failure>)>> = futures::stream::iter(groups)
                .map(|indices| async move {
                    let mut out = Vec::with_capacity(indices.len());
                    for i in indices {
                        out.push((i, run(i).await));
                    }
                    out
                })
                .buffer_unordered(shared.max_in_flight)
                .collect()
                .await;
            for (i, result) in done.into_iter().flatten() {
                results[i] = Some(result);
            }
            results
                .into_iter()
                .map(|r| {
                    r.unwrap_or_else(|| {
                        Err(Failure { kind: FailureKind::Panic, message: "lost result".into(), attempts: 0 })
                    })
                })
                .collect()
        }
    }
}
