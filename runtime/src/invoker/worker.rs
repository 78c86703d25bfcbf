//! One partition of one function: fetch, invoke, produce, commit; in order.
//!
//! A batch's outputs and dead letters are produced before its offset is
//! committed (at_least_once), or staged, then committed with the offset in
//! one transaction (exactly_once). No offset is committed past a record that
//! is neither done nor dead-lettered.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use kfn_sdk::{Ctx, Emit};
use tokio::sync::watch;

use super::aggregate::{Aggregate, PartitionState};
use super::committer::Committer;
use super::dead_letter::{DeadLetters, Origin};
use super::invoke::{Failure, FailureKind, Pipeline};
use super::outputs::{EncodeBuffers, OutputError, Outputs, Target};
use super::retry_topic::{RetryTopic, Waiting};
use crate::config::{Guarantee, Ordering};
use crate::kafka::consumer::{list_offset, LogEnd, PartitionReader};
use crate::kafka::fetch::{ConsumedRecord, FetchLimits, Isolation};
use crate::kafka::group::protocol::TopicPartition;
use crate::kafka::producer::{Producer, ProducerConfig, ProducerRecord, SendError};
use crate::kafka::Cluster;
use crate::metrics::FunctionMetrics;

/// Most records processed (and committed) as one unit.
///
/// Each unit is a commit, and under exactly_once a transaction of five broker
/// round trips: 2,000 instead of 500 ran 4 times as many records/s through
/// exactly_once on the local broker (docs/benchmarks.md). A crash redoes at
/// most this many records per partition; fetches at low rates bring fewer.
pub(super) const MAX_CHUNK: usize = 2000;

/// What every partition worker of a function shares.
pub struct FunctionShared {
    /// The function's name.
    pub function: Arc<str>,
    /// The handler stack.
    pub pipeline: Pipeline,
    /// Output routing and encoding.
    pub outputs: Outputs,
    /// The dead-letter topic.
    pub dead_letters: DeadLetters,
    /// The retry topic, for functions that opted in.
    pub retry_topic: Option<RetryTopic>,
    /// Metric handles.
    pub metrics: FunctionMetrics,
    /// The cluster.
    pub cluster: Cluster,
    /// The shared idempotent producer (at_least_once).
    pub producer: Producer,
    /// Settings for per-partition transactional producers (exactly_once).
    pub producer_config: ProducerConfig,
    /// Offset commits.
    pub committer: Committer,
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

/// How a batch could not be finished.
pub(super) enum BatchError {
    /// This member was fenced: stop the partition.
    Fenced(String),
    /// Something passing: redo the batch.
    Retry(String),
}

/// Runs one partition until `stop` turns true (between batches).
pub async fn run(shared: Arc<FunctionShared>, tp: TopicPartition, mut stop: watch::Receiver<bool>) {
    let Some(start) = start_offset(&shared, &tp, &mut stop).await else { return };
    let topic: Arc<str> = Arc::from(tp.topic.as_str());
    let mut reader = PartitionReader::new(shared.cluster.clone(), tp.clone(), start, shared.isolation, shared.reset)
        .with_limits(shared.fetch_limits);
    let transactional = match shared.guarantee {
        Guarantee::ExactlyOnce => match transactional_producer(&shared, &tp, &mut stop).await {
            Some(p) => Some(p),
            None => return,
        },
        Guarantee::AtLeastOnce => None,
    };
    // After the transactional producer: its InitProducerId aborted whatever the
    // previous owner left open, so the table's read_committed end is decided.
    let mut state = match &shared.aggregate {
        Some(aggregate) => match restore_state(&shared, aggregate, &tp, &mut stop).await {
            Some(s) => Some(s),
            None => return,
        },
        None => None,
    };
    let lag = shared.metrics.lag(&tp.topic, tp.partition);
    let delayed = shared.retry_topic.as_ref().is_some_and(|r| r.topic == tp.topic);
    tracing::info!(function = %shared.function, partition = %tp, offset = start, "partition worker started");
    if shared.ordering == Ordering::Key && shared.aggregate.is_none() && !delayed {
        return super::keyed::run(shared.clone(), tp, reader, transactional, stop, start).await;
    }
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
                match process_batch(&shared, &tp, &topic, chunk, chunk_next, transactional.as_ref(), state.as_mut())
                    .await
                {
                    Ok(()) => {
                        committed = chunk_next;
                        done = chunk_next;
                        failures = 0;
                        break;
                    }
                    Err(BatchError::Fenced(reason)) => {
                        tracing::warn!(function = %shared.function, partition = %tp, %reason, "fenced: another member owns this partition now");
                        return;
                    }
                    Err(BatchError::Retry(reason)) => {
                        failures += 1;
                        tracing::warn!(function = %shared.function, partition = %tp, %reason, failures, "batch failed; processing it again");
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
    if done > committed && shared.guarantee == Guarantee::AtLeastOnce {
        let _ = shared.committer.commit(&tp, done).await;
    }
    tracing::info!(function = %shared.function, partition = %tp, offset = done, "partition worker stopped");
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

/// The producer of one input partition: `kfn.<function>.<topic>.<partition>`.
///
/// Its InitProducerId fences the previous owner of the partition (a zombie
/// whose session expired), so two members can never both commit outputs for
/// the same input records.
async fn transactional_producer(
    shared: &FunctionShared,
    tp: &TopicPartition,
    stop: &mut watch::Receiver<bool>,
) -> Option<Producer> {
    let config = ProducerConfig {
        transactional_id: Some(format!("kfn.{}.{}.{}", shared.function, tp.topic, tp.partition)),
        ..shared.producer_config.clone()
    };
    loop {
        match Producer::new(shared.cluster.clone(), config.clone()).await {
            Ok(p) => return Some(p),
            Err(e) => {
                tracing::warn!(function = %shared.function, partition = %tp, error = %e, "cannot start the transactional producer; retrying");
                if tokio::time::timeout(Duration::from_secs(1), stop.changed()).await.is_ok() {
                    return None;
                }
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
                tracing::info!(
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

async fn process_batch(
    shared: &FunctionShared,
    tp: &TopicPartition,
    topic: &Arc<str>,
    records: &[ConsumedRecord],
    next_offset: i64,
    transactional: Option<&Producer>,
    state: Option<&mut PartitionState>,
) -> Result<(), BatchError> {
    let (results, overlay) = match (&shared.aggregate, state.as_deref()) {
        (Some(aggregate), Some(base)) => {
            let (results, overlay) = aggregate.fold_all(&shared.function, &shared.metrics, tp, base, records).await;
            (results, Some(overlay))
        }
        _ => (invoke_all(shared, tp, topic, records).await, None),
    };
    let result = finish(shared, tp, records.iter().zip(&results), Some(next_offset), transactional).await;
    if result.is_ok() {
        // Only now: the table holds these rows, so the state may include them.
        if let (Some(state), Some(overlay)) = (state, overlay) {
            state.apply(overlay);
        }
    }
    result
}

/// Writes the outputs, retry copies and dead letters of processed records,
/// then commits `commit` (at_least_once), or does both in one transaction.
pub(super) async fn finish<'r>(
    shared: &FunctionShared,
    tp: &TopicPartition,
    processed: impl Iterator<Item = (&'r ConsumedRecord, &'r Result<Emit, Failure>)>,
    commit: Option<i64>,
    transactional: Option<&Producer>,
) -> Result<(), BatchError> {
    let now = kfn_sdk::now_ms();
    let mut by_tp: BTreeMap<Target, Vec<ProducerRecord>> = BTreeMap::new();
    let delayed = shared.retry_topic.as_ref().filter(|r| r.topic == tp.topic);
    let mut buffers = EncodeBuffers::default();
    // One record's outputs, kept until all of them could be encoded.
    let mut routed: Vec<(Target, ProducerRecord)> = Vec::new();
    for (record, result) in processed {
        // Outputs carry the input's timestamp (event time, as Kafka Streams does),
        // so windows downstream see when things happened, not when kfn ran.
        let timestamp = if record.timestamp_ms >= 0 { record.timestamp_ms } else { now };
        let failure = match result {
            Ok(emit) => {
                routed.clear();
                let all = emit.events.iter().try_for_each(|e| {
                    routed.push(shared.outputs.route(e, timestamp, &mut buffers)?);
                    Ok::<_, OutputError>(())
                });
                match all {
                    Ok(()) => {
                        for (target, out) in routed.drain(..) {
                            by_tp.entry(target).or_default().push(out);
                        }
                        shared.metrics.ok.inc();
                        continue;
                    }
                    Err(e) => Failure { kind: FailureKind::Output, message: e.to_string(), attempts: 1 },
                }
            }
            Err(failure) => failure.clone(),
        };
        // A record from the retry topic is reported under the input record it started as.
        let origin = match delayed.map(|_| Waiting::parse(record)) {
            Some(Ok(waiting)) => waiting.origin,
            _ => Origin::input(tp, record),
        };
        if let (FailureKind::Deferred, Some(retry)) = (failure.kind, &shared.retry_topic) {
            let due = now + retry.delay(failure.attempts).as_millis() as i64;
            tracing::debug!(
                function = %shared.function, partition = %tp, offset = record.offset, attempts = failure.attempts,
                due, error = %failure.message, "record sent to the retry topic"
            );
            let (retry_tp, out) = retry.record(&origin, record, &failure, due);
            by_tp.entry((Arc::from(retry_tp.topic), retry_tp.partition)).or_default().push(out);
            continue;
        }
        shared.metrics.failed.inc();
        shared.metrics.dead_letter(failure.kind.as_str());
        tracing::warn!(
            function = %shared.function, partition = %tp, offset = record.offset,
            kind = failure.kind.as_str(), attempts = failure.attempts, error = %failure.message,
            "record dead-lettered"
        );
        let (dlq_tp, dlq) = shared.dead_letters.record(&origin, record, &failure);
        by_tp.entry((Arc::from(dlq_tp.topic), dlq_tp.partition)).or_default().push(dlq);
    }
    let start = Instant::now();
    let result = match transactional {
        None => {
            // The records move into the producer: no copy of each batch's record list.
            let sends = by_tp.into_iter().map(|((topic, partition), recs)| async move {
                shared.producer.send(&TopicPartition::new(topic.to_string(), partition), recs).await
            });
            match futures::future::try_join_all(sends).await {
                Ok(_) => {
                    shared.metrics.produce_duration.observe(start.elapsed().as_secs_f64());
                    let Some(next_offset) = commit else { return Ok(()) };
                    if let Err(e) = shared.committer.commit(tp, next_offset).await {
                        // The outputs are written; after the rebalance the next owner may process these records again.
                        tracing::info!(function = %shared.function, partition = %tp, error = %e, "offset commit failed");
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        Some(producer) => {
            for ((topic, partition), recs) in by_tp {
                producer.stage(&TopicPartition::new(topic.to_string(), partition), recs);
            }
            let Some(generation) = shared.committer.generation() else {
                let _ = producer.abort().await;
                return Err(BatchError::Fenced("the member lost its assignment".into()));
            };
            let offsets = BTreeMap::from_iter(commit.map(|offset| (tp.clone(), offset)));
            let committed = async {
                if !offsets.is_empty() {
                    producer.send_offsets(shared.committer.group(), &generation, &offsets).await?;
                }
                producer.commit().await
            }
            .await;
            if committed.is_ok() {
                shared.metrics.produce_duration.observe(start.elapsed().as_secs_f64());
            } else if !matches!(&committed, Err(e) if e.is_fenced()) {
                let _ = producer.abort().await;
            }
            committed
        }
    };
    result.map_err(
        |e: SendError| if e.is_fenced() { BatchError::Fenced(e.to_string()) } else { BatchError::Retry(e.to_string()) },
    )
}

/// Invokes every record: in offset order, or per key in parallel (each key in order).
async fn invoke_all(
    shared: &FunctionShared,
    tp: &TopicPartition,
    topic: &Arc<str>,
    records: &[ConsumedRecord],
) -> Vec<Result<Emit, Failure>> {
    let delayed = shared.retry_topic.as_ref().is_some_and(|r| r.topic == tp.topic);
    let ctx = |r: &ConsumedRecord| context(shared, tp, topic, r, delayed);
    let empty = Bytes::new();
    let value = |r: &ConsumedRecord| r.value.clone().unwrap_or_else(|| empty.clone());
    match shared.ordering {
        Ordering::Partition => {
            let mut results = Vec::with_capacity(records.len());
            for r in records {
                results.push(match ctx(r) {
                    Ok(ctx) => shared.pipeline.run(ctx, &value(r)).await,
                    Err(failure) => Err(failure),
                });
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
                        let r = &records[i];
                        let result = match ctx(r) {
                            Ok(ctx) => shared.pipeline.run(ctx, &value(r)).await,
                            Err(failure) => Err(failure),
                        };
                        out.push((i, result));
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

/// The handler's context for `record`.
///
/// A record from the retry topic (`delayed`) runs as the input record it
/// started as, at its next attempt.
pub(super) fn context(
    shared: &FunctionShared,
    tp: &TopicPartition,
    topic: &Arc<str>,
    record: &ConsumedRecord,
    delayed: bool,
) -> Result<Ctx, Failure> {
    let mut ctx = Ctx {
        function: shared.function.clone(),
        topic: topic.clone(),
        partition: tp.partition,
        offset: record.offset,
        key: record.key.clone(),
        timestamp_ms: record.timestamp_ms,
        attempt: 1,
        headers: record.headers.iter().cloned().map(Into::into).collect(),
    };
    if delayed {
        let waiting = Waiting::parse(record).map_err(|e| Failure {
            kind: FailureKind::Undecodable,
            message: e.to_string(),
            attempts: 0,
        })?;
        ctx.topic = Arc::from(waiting.origin.topic.as_str());
        ctx.partition = waiting.origin.partition;
        ctx.offset = waiting.origin.offset;
        ctx.timestamp_ms = waiting.origin.timestamp_ms;
        ctx.attempt = waiting.attempts + 1;
        ctx.headers.retain(|h| !h.name.starts_with("kfn.") || h.name == super::dead_letter::headers::REPLAYED_FROM);
    }
    Ok(ctx)
}
