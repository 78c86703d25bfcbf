//! Group commit for one partition: the records of concurrent callers queue
//! while a batch is in flight and leave together in the next one.
//!
//! A partition has at most one batch in flight per producer (a retried batch
//! must not be overtaken by a later sequence), so if every caller sent its own
//! batch, N concurrent callers with one record each would mean N round trips
//! one after another. Instead each caller enqueues its records with a oneshot
//! for the answer, and one flusher per busy partition sends batch after batch,
//! each carrying everything that queued while the previous one was in flight
//! (split at `max_batch_bytes`). Throughput then grows with concurrency.
//!
//! - A caller's records stay contiguous and in order; callers land in the
//!   partition in the order they enqueued.
//! - Each caller is answered with the offset of its first record once all of
//!   its records are acknowledged, or with the error of the batch that failed
//!   (its later records are then not sent, as when it sent them itself).
//! - The flusher is a task of its own, spawned when an idle partition gets
//!   records and ending once its queue is empty: a caller whose future is
//!   dropped (an HTTP client that went away) still has its records written,
//!   and no caller's cancellation can stop the others' batch.
//! - Lingering (see [`ProducerConfig::linger`](super::ProducerConfig::linger))
//!   happens once per busy period, before the first batch.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};

use super::{BatchBuilder, ProducerError, ProducerRecord, Pushed, SendError};

/// Where a caller's answer goes.
pub(super) type Reply = oneshot::Sender<Result<i64, SendError>>;

/// What the flusher of one partition needs from the producer's settings.
#[derive(Debug, Clone, Copy)]
pub(super) struct FlushSettings {
    /// How long an idle partition's first records wait for company.
    pub linger: Duration,
    /// Where a batch is closed.
    pub max_batch_bytes: usize,
    /// How long a record may take from enqueueing to its acknowledgement.
    pub delivery_timeout: Duration,
}

/// The queue of one partition, shared by its callers and its flusher.
#[derive(Default)]
pub(super) struct PartitionQueue {
    state: Mutex<QueueState>,
    /// Wakes a lingering flusher once the queue holds a full batch.
    full: Notify,
}

#[derive(Default)]
struct QueueState {
    waiting: VecDeque<Caller>,
    /// Estimated bytes of `waiting`, to end lingering early.
    bytes: usize,
    /// Whether a flusher task is running for this partition.
    flushing: bool,
}

/// One caller's records on their way out.
struct Caller {
    records: VecDeque<ProducerRecord>,
    reply: Reply,
    enqueued: Instant,
    first: FirstOffset,
    /// A record of this caller could not be batched: answered with this error.
    failed: Option<SendError>,
}

/// Where a caller's first record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FirstOffset {
    /// Not in a batch yet.
    Unsent,
    /// At this index of the batch in flight.
    InBatch(usize),
    /// Acknowledged at this offset (-1 when the broker did not say).
    At(i64),
}

impl PartitionQueue {
    fn state(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a caller's records (at least one); true when the caller must spawn the flusher.
    pub(super) fn enqueue(&self, records: Vec<ProducerRecord>, reply: Reply, max_batch_bytes: usize) -> bool {
        let bytes: usize = records.iter().map(estimated_size).sum();
        let caller = Caller {
            records: records.into(),
            reply,
            enqueued: Instant::now(),
            first: FirstOffset::Unsent,
            failed: None,
        };
        let mut state = self.state();
        state.waiting.push_back(caller);
        state.bytes = state.bytes.saturating_add(bytes);
        if !state.flushing {
            state.flushing = true;
            return true;
        }
        if state.bytes >= max_batch_bytes {
            // notify_one keeps a permit when nobody waits, so a flusher about to linger still sees it.
            self.full.notify_one();
        }
        false
    }

    /// Waits up to `linger` for a full batch's worth of records.
    async fn linger(&self, linger: Duration, max_batch_bytes: usize) {
        if linger.is_zero() {
            return;
        }
        let deadline = tokio::time::Instant::now() + linger;
        loop {
            let notified = self.full.notified();
            if self.state().bytes >= max_batch_bytes {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = notified => {}
            }
        }
    }

    /// Moves every queued caller to the flusher's own queue; false (and the
    /// flusher's end recorded) when there is nothing left to send.
    fn take(&self, draining: &mut Draining) -> bool {
        let mut state = self.state();
        draining.callers.append(&mut state.waiting);
        state.bytes = 0;
        if draining.callers.is_empty() {
            state.flushing = false;
            return false;
        }
        true
    }
}

/// Sends the partition's queue until it is empty, one batch at a time.
///
/// `send` writes one batch and returns its base offset; its second argument
/// is the batch's delivery deadline, counted from when its oldest record was
/// enqueued. `target` (the partition) names it in errors passed on to callers.
pub(super) async fn flush<F, Fut>(queue: Arc<PartitionQueue>, settings: FlushSettings, target: String, mut send: F)
where
    F: FnMut(BatchBuilder, Instant) -> Fut,
    Fut: Future<Output = Result<i64, SendError>>,
{
    let mut guard = FlusherGuard { queue: &queue, finished: false };
    queue.linger(settings.linger, settings.max_batch_bytes).await;
    let mut draining = Draining::default();
    while queue.take(&mut draining) {
        let Some((builder, oldest)) = draining.next_batch(settings.max_batch_bytes) else {
            continue;
        };
        match send(builder, oldest + settings.delivery_timeout).await {
            Ok(base_offset) => draining.acknowledged(base_offset),
            Err(error) => draining.failed(error, &target),
        }
    }
    guard.finished = true;
}

/// Lets the next caller start a new flusher if this one ends without emptying
/// its queue (a panic, or the runtime shutting down). Callers still queued
/// then see their answer channel close.
struct FlusherGuard<'a> {
    queue: &'a PartitionQueue,
    finished: bool,
}

impl Drop for FlusherGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let mut state = self.queue.state();
            state.waiting.clear();
            state.bytes = 0;
            state.flushing = false;
        }
    }
}

/// The callers a flusher took from the queue, front first, and how many of
/// them have records in the batch in flight.
#[derive(Default)]
struct Draining {
    callers: VecDeque<Caller>,
    in_batch: usize,
}

impl Draining {
    /// The next batch from the front of the queue and the time its oldest
    /// record was enqueued; None when nothing could be batched.
    fn next_batch(&mut self, max_batch_bytes: usize) -> Option<(BatchBuilder, Instant)> {
        let oldest = self.callers.front()?.enqueued;
        let mut builder = BatchBuilder::new(max_batch_bytes);
        let mut timestamps = TimestampRange::default();
        let mut in_batch = 0;
        let mut index = 0;
        while let Some(caller) = self.callers.get_mut(index) {
            let Some(record) = caller.records.pop_front() else {
                index += 1;
                continue;
            };
            if !builder.is_empty() && !timestamps.admits(record.timestamp_ms) {
                // Too far apart to be deltas of one batch: start the next batch here.
                caller.records.push_front(record);
                break;
            }
            let timestamp = record.timestamp_ms;
            let position = builder.record_count() as usize;
            match builder.push(record) {
                Ok(Pushed::Added) => {
                    timestamps.include(timestamp);
                    if caller.first == FirstOffset::Unsent {
                        caller.first = FirstOffset::InBatch(position);
                    }
                }
                Ok(Pushed::Full(record)) => {
                    caller.records.push_front(record);
                    break;
                }
                Err(error) => {
                    // `send` checked each caller's records, so this is unexpected:
                    // the caller fails with the batch; its records already batched still go.
                    caller.records.clear();
                    caller.failed = Some(error.into());
                }
            }
            in_batch = index + 1;
        }
        self.in_batch = in_batch;
        if builder.is_empty() {
            // Only callers whose records could not be batched: answer them now.
            self.acknowledged(-1);
            return None;
        }
        Some((builder, oldest))
    }

    /// The batch in flight is in the log from `base_offset` on: callers whose
    /// records are all acknowledged get their first record's offset.
    fn acknowledged(&mut self, base_offset: i64) {
        for caller in self.callers.iter_mut().take(self.in_batch) {
            if let FirstOffset::InBatch(index) = caller.first {
                let offset = if base_offset < 0 { -1 } else { base_offset + index as i64 };
                caller.first = FirstOffset::At(offset);
            }
        }
        for _ in 0..self.in_batch {
            if self.callers.front().is_some_and(|c| !c.records.is_empty()) {
                // The last caller of the batch continues in the next one.
                break;
            }
            if let Some(caller) = self.callers.pop_front() {
                let answer = match (caller.failed, caller.first) {
                    (Some(error), _) => Err(error),
                    (None, FirstOffset::At(offset)) => Ok(offset),
                    (None, _) => Ok(-1),
                };
                // A caller that went away no longer waits for its answer; its records are written all the same.
                let _ = caller.reply.send(answer);
            }
        }
        self.in_batch = 0;
    }

    /// The batch in flight failed: every caller with records in it fails, and
    /// records of theirs not sent yet are dropped. The first caller gets
    /// `error` itself, the others an equivalent one.
    fn failed(&mut self, error: SendError, target: &str) {
        let copy = error.for_follower(target);
        let mut original = Some(error);
        for _ in 0..self.in_batch {
            let Some(caller) = self.callers.pop_front() else { break };
            let answer = caller.failed.unwrap_or_else(|| original.take().unwrap_or_else(|| copy.for_follower(target)));
            let _ = caller.reply.send(Err(answer));
        }
        self.in_batch = 0;
    }
}

/// The smallest and largest timestamp of a batch: the record format writes
/// each as a delta from the smallest, which must fit.
#[derive(Debug, Clone, Copy)]
struct TimestampRange {
    min: i64,
    max: i64,
}

impl Default for TimestampRange {
    fn default() -> Self {
        TimestampRange { min: i64::MAX, max: i64::MIN }
    }
}

impl TimestampRange {
    fn admits(&self, timestamp: i64) -> bool {
        self.max.max(timestamp).checked_sub(self.min.min(timestamp)).is_some()
    }

    fn include(&mut self, timestamp: i64) {
        self.min = self.min.min(timestamp);
        self.max = self.max.max(timestamp);
    }
}

/// Refuses a caller's records that no batch could take, before any is queued,
/// so that such a caller fails whole instead of partly written.
pub(super) fn check_records(records: &[ProducerRecord]) -> Result<(), ProducerError> {
    let mut timestamps = TimestampRange::default();
    for record in records {
        if !timestamps.admits(record.timestamp_ms) {
            return Err(ProducerError::TimestampSpread {
                min: timestamps.min.min(record.timestamp_ms),
                max: timestamps.max.max(record.timestamp_ms),
            });
        }
        timestamps.include(record.timestamp_ms);
        for (i, header) in record.headers.iter().enumerate() {
            if record.headers[..i].iter().any(|h| h.name == header.name) {
                return Err(ProducerError::DuplicateHeader { name: header.name.clone() });
            }
        }
    }
    Ok(())
}

/// A record's uncompressed size, roughly: enough to tell when lingering can stop.
fn estimated_size(record: &ProducerRecord) -> usize {
    let len = |b: &Option<bytes::Bytes>| b.as_ref().map_or(0, |b| b.len());
    let headers: usize = record.headers.iter().map(|h| h.name.len() + len(&h.value) + 2).sum();
    // Length, attributes, timestamp and offset deltas, key and value lengths, header count.
    12 + len(&record.key) + len(&record.value) + headers
}
