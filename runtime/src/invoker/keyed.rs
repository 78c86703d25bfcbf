//! `ordering = "key"` as a stream: each key in offset order, different keys at
//! once (at most `max_in_flight` handler calls), and records fetched ahead
//! while a slow key runs, so one slow key never holds the others.
//!
//! The window holds fetched records not yet finished, in offset order. A
//! record runs once the records of its key before it are done. Finished
//! records are written out every [`FLUSH_INTERVAL`] or [`MAX_CHUNK`] records:
//! under at_least_once every finished record's outputs go out at once and the
//! offset committed is that of the oldest unfinished record; under
//! exactly_once only the finished prefix of the window goes out, with its
//! offset, in one transaction, since anything beyond the committed offset is
//! processed again after a crash.
//!
//! Both guarantees stream. The offset commits an earlier kill -9 test lost
//! under exactly_once (`exactly_once_with_key_ordering_survives_kill_9_without_duplicates`)
//! were lost by tansu, not by this path: tansu answers EndTxn without error but
//! parks the transaction's offsets while another transaction writing the same
//! output partitions is open, and never times an open transaction out, so a
//! killed replica's open transaction holds them until its id is initialised
//! again (docs/guarantees.md). The chunked path loses them the same way there;
//! on Apache Kafka neither does.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use kfn_sdk::Emit;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::dead_letter::Origin;
use super::deliver::{Deliver, MAX_CHUNK};
use super::invoke::{Failure, FailureKind};
use super::shared::FunctionShared;
use crate::kafka::consumer::PartitionReader;
use crate::kafka::fetch::{ConsumedRecord, DecodedPartition};
use crate::kafka::group::protocol::TopicPartition;

/// Most records fetched ahead of the oldest unfinished one.
const MAX_WINDOW: usize = 5_000;
/// Longest a finished record waits before its outputs are written.
const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

struct Slot {
    record: ConsumedRecord,
    /// Where the record entered the function, once it ran.
    origin: Option<Origin>,
    result: Option<Result<Emit, Failure>>,
    /// Its outputs (or dead letter) are written.
    sent: bool,
}

/// The fetched, unfinished records of one partition and which may run next.
#[derive(Default)]
struct Window {
    /// Sequence number of `slots[0]`; a record keeps its number while in the window.
    base: u64,
    slots: VecDeque<Slot>,
    /// Keys with a record running or ready, and their later records, waiting.
    busy: HashMap<Option<Bytes>, VecDeque<u64>>,
    /// Records whose key is free, waiting for a handler slot.
    ready: VecDeque<u64>,
    /// How many slots at the front are finished.
    prefix: usize,
    /// Finished slots not yet sent.
    unsent: usize,
}

impl Window {
    fn push(&mut self, record: ConsumedRecord) {
        let seq = self.base + self.slots.len() as u64;
        match self.busy.entry(record.key.clone()) {
            Entry::Occupied(mut waiting) => waiting.get_mut().push_back(seq),
            Entry::Vacant(free) => {
                free.insert(VecDeque::new());
                self.ready.push_back(seq);
            }
        }
        self.slots.push_back(Slot { record, origin: None, result: None, sent: false });
    }

    fn slot(&mut self, seq: u64) -> &mut Slot {
        &mut self.slots[(seq - self.base) as usize]
    }

    /// The next record that may run, with its sequence number.
    fn next_ready(&mut self) -> Option<(u64, &mut Slot)> {
        let seq = self.ready.pop_front()?;
        Some((seq, self.slot(seq)))
    }

    /// Records the result of `seq`; the next record of its key becomes ready.
    fn complete(&mut self, seq: u64, result: Result<Emit, Failure>) {
        let slot = self.slot(seq);
        slot.result = Some(result);
        let key = slot.record.key.clone();
        self.unsent += 1;
        match self.busy.get_mut(&key).and_then(VecDeque::pop_front) {
            Some(next) => self.ready.push_back(next),
            None => {
                self.busy.remove(&key);
            }
        }
        while self.slots.get(self.prefix).is_some_and(|s| s.result.is_some()) {
            self.prefix += 1;
        }
    }

    /// The offset below which every record is finished, given the fetch position `fetched_to`.
    fn watermark(&self, fetched_to: i64) -> i64 {
        self.slots.get(self.prefix).map(|s| s.record.offset).unwrap_or(fetched_to)
    }

    /// Marks the finished slots of the prefix (or of the whole window) sent and drops the sent front.
    fn sent(&mut self, only_prefix: bool) {
        let upto = if only_prefix { self.prefix } else { self.slots.len() };
        for slot in self.slots.iter_mut().take(upto) {
            if slot.result.is_some() && !slot.sent {
                slot.sent = true;
                self.unsent -= 1;
            }
        }
        while self.slots.front().is_some_and(|s| s.sent) {
            self.slots.pop_front();
            self.base += 1;
            self.prefix -= 1;
        }
    }
}

/// Aborts the fetching task when the worker ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs one input partition of a key-ordered function until `stop` turns true.
pub(super) async fn run(
    shared: Arc<FunctionShared>,
    tp: TopicPartition,
    reader: PartitionReader,
    deliver: Deliver,
    mut stop: watch::Receiver<bool>,
    start: i64,
) {
    // Fetching runs on its own so a long poll is never cut short by a finishing handler.
    let (tx, mut fetched) = mpsc::channel(1);
    let _fetcher = AbortOnDrop(tokio::spawn(fetch(reader, tx, shared.function.clone(), tp.clone())));
    let lag = shared.metrics.lag(&tp.topic, tp.partition);
    let exactly_once = deliver.is_exactly_once();
    let mut window = Window::default();
    let mut tasks: JoinSet<(u64, Result<Emit, Failure>)> = JoinSet::new();
    let (mut fetched_to, mut committed) = (start, start);
    let mut last_flush = Instant::now();
    let mut stopping = false;
    loop {
        while !stopping && tasks.len() < shared.max_in_flight {
            let Some((seq, slot)) = window.next_ready() else { break };
            let invocation = shared.inputs.invocation(&shared.function, &tp, &slot.record);
            slot.origin = Some(invocation.origin.clone());
            let value = slot.record.value.clone().unwrap_or_default();
            let shared = shared.clone();
            tasks.spawn(async move {
                let call = shared.inputs.run(&invocation, &value);
                // The handler layer catches handler panics; this keeps a bug in kfn from losing the record.
                let result = AssertUnwindSafe(call).catch_unwind().await.unwrap_or_else(|_| {
                    Err(Failure { kind: FailureKind::Panic, message: "the invocation panicked".into(), attempts: 1 })
                });
                (seq, result)
            });
        }
        let ready = if exactly_once { window.prefix } else { window.unsent };
        let idle = tasks.is_empty();
        if ready > 0 && (ready >= MAX_CHUNK || idle || last_flush.elapsed() >= FLUSH_INTERVAL) {
            let commit = window.watermark(fetched_to);
            let processed = window
                .slots
                .iter()
                .take(if exactly_once { window.prefix } else { window.slots.len() })
                .filter(|s| !s.sent)
                .filter_map(|s| Some((&s.record, s.origin.as_ref()?, s.result.as_ref()?)));
            let outgoing = shared.egress.route(&tp, processed, kfn_sdk::now_ms());
            let commit = (exactly_once || commit > committed).then_some(commit);
            match deliver.deliver(&tp, outgoing, commit).await {
                Ok(()) => {
                    window.sent(exactly_once);
                    committed = commit.unwrap_or(committed);
                    last_flush = Instant::now();
                    continue;
                }
                Err(e) if e.is_fenced() => {
                    tracing::warn!(function = %shared.function, partition = %tp, error = %e, "fenced: another member owns this partition now");
                    return;
                }
                Err(e) => {
                    tracing::warn!(function = %shared.function, partition = %tp, error = %e, "writing finished records failed; trying again");
                    if tokio::time::timeout(Duration::from_millis(500), stop.changed()).await.is_ok() {
                        stopping = true;
                        fetched.close();
                    }
                    continue;
                }
            }
        }
        if stopping && idle {
            break;
        }
        let flush_at = last_flush + FLUSH_INTERVAL;
        tokio::select! {
            biased;
            _ = stop.changed(), if !stopping => {
                // Stop fetching and starting; what runs finishes, then is written and committed.
                stopping = true;
                fetched.close();
            }
            Some(joined) = tasks.join_next(), if !idle => {
                if let Ok((seq, result)) = joined {
                    window.complete(seq, result);
                }
            }
            decoded = fetched.recv(), if !stopping && window.slots.len() < MAX_WINDOW => {
                let Some(decoded) = decoded else { break };
                lag.set(decoded.high_watermark.saturating_sub(decoded.next_fetch_offset));
                fetched_to = decoded.next_fetch_offset;
                for record in decoded.records {
                    window.push(record);
                }
            }
            _ = tokio::time::sleep_until(flush_at), if ready > 0 => {}
        }
    }
    // Offsets moved past control records or aborted data since the last commit.
    let done = window.watermark(fetched_to);
    deliver.stopped_at(&tp, committed, done).await;
    tracing::debug!(function = %shared.function, partition = %tp, offset = done, "partition worker stopped");
}

async fn fetch(
    mut reader: PartitionReader,
    tx: mpsc::Sender<DecodedPartition>,
    function: Arc<str>,
    tp: TopicPartition,
) {
    loop {
        match reader.next().await {
            Ok(decoded) => {
                if tx.send(decoded).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(%function, partition = %tp, error = %e, "fetch failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64, key: &'static str) -> ConsumedRecord {
        ConsumedRecord {
            offset,
            timestamp_ms: 0,
            key: Some(Bytes::from_static(key.as_bytes())),
            value: None,
            headers: vec![],
        }
    }

    fn ready(window: &mut Window) -> Vec<i64> {
        std::iter::from_fn(|| window.next_ready().map(|(_, s)| s.record.offset)).collect()
    }

    #[test]
    fn a_key_runs_one_record_at_a_time_and_others_go_on() {
        let mut w = Window::default();
        for (offset, key) in [(10, "s"), (11, "f"), (12, "f"), (13, "s"), (14, "g")] {
            w.push(record(offset, key));
        }
        assert_eq!(ready(&mut w), [10, 11, 14], "the first record of each key");
        w.complete(1, Ok(Emit::none()));
        assert_eq!(ready(&mut w), [12], "f's next");
        w.complete(2, Ok(Emit::none()));
        w.complete(4, Ok(Emit::none()));
        assert_eq!(ready(&mut w), Vec::<i64>::new(), "s-2 waits for s-1");
        assert_eq!((w.prefix, w.unsent, w.watermark(15)), (0, 3, 10), "nothing below the slow record is committed");

        // at_least_once sends what is finished, behind the slow record too.
        w.sent(false);
        assert_eq!((w.slots.len(), w.unsent, w.watermark(15)), (5, 0, 10));
        w.complete(0, Ok(Emit::none()));
        assert_eq!(ready(&mut w), [13]);
        assert_eq!(w.prefix, 3, "10, 11, 12 finished");
        w.sent(false);
        assert_eq!((w.base, w.slots.len(), w.watermark(15)), (3, 2, 13));
        w.complete(3, Ok(Emit::none()));
        w.sent(true);
        assert!(w.slots.is_empty() && w.busy.is_empty());
        assert_eq!(w.watermark(15), 15, "all finished: the fetch position");
    }

    #[test]
    fn exactly_once_sends_only_the_finished_prefix() {
        let mut w = Window::default();
        for (offset, key) in [(0, "a"), (1, "b"), (2, "c")] {
            w.push(record(offset, key));
        }
        assert_eq!(ready(&mut w), [0, 1, 2]);
        w.complete(1, Ok(Emit::none()));
        w.complete(2, Ok(Emit::none()));
        w.sent(true);
        assert_eq!((w.slots.len(), w.unsent), (3, 2), "b and c wait for a");
        w.complete(0, Ok(Emit::none()));
        assert_eq!(w.prefix, 3);
        w.sent(true);
        assert!(w.slots.is_empty());
        assert_eq!((w.base, w.prefix, w.unsent), (3, 0, 0));
    }
}
