//! Group commit: callers' records queue behind the batch in flight and share
//! the next one. The sender is scripted here: each batch comes to the test,
//! which answers it when it chooses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::decode;
use crate::error::KafkaError;
use crate::producer::queue::{self, check_records, FlushSettings, PartitionQueue};
use crate::producer::{BatchBuilder, Compression, ProducerError, ProducerIdentity, ProducerRecord, SendError};

type Answer = Result<i64, SendError>;

/// A batch the flusher sent, waiting for the test's answer.
struct SentBatch {
    values: Vec<String>,
    deadline: Instant,
    answer: oneshot::Sender<Answer>,
}

impl SentBatch {
    fn acknowledge(self, base_offset: i64) {
        self.answer.send(Ok(base_offset)).expect("the flusher waits for the answer");
    }

    fn fail(self, error: SendError) {
        self.answer.send(Err(error)).expect("the flusher waits for the answer");
    }
}

/// One partition's queue, flushed to the test, which answers as the broker would.
struct Partition {
    queue: Arc<PartitionQueue>,
    settings: FlushSettings,
    batches: mpsc::UnboundedSender<SentBatch>,
}

impl Partition {
    fn new(linger: Duration, max_batch_bytes: usize) -> (Partition, mpsc::UnboundedReceiver<SentBatch>) {
        let (batches, sent) = mpsc::unbounded_channel();
        let settings = FlushSettings { linger, max_batch_bytes, delivery_timeout: Duration::from_secs(120) };
        (Partition { queue: Arc::default(), settings, batches }, sent)
    }

    /// What `Producer::send` does before it awaits its answer.
    fn send(&self, records: Vec<ProducerRecord>) -> oneshot::Receiver<Answer> {
        let (reply, answer) = oneshot::channel();
        if self.queue.enqueue(records, reply, self.settings.max_batch_bytes) {
            let batches = self.batches.clone();
            tokio::spawn(queue::flush(
                self.queue.clone(),
                self.settings,
                "orders-0".into(),
                move |builder, deadline| {
                    let batches = batches.clone();
                    async move {
                        let (answer, answered) = oneshot::channel();
                        let values = values_of(builder);
                        batches.send(SentBatch { values, deadline, answer }).expect("the test is running");
                        answered.await.expect("the test answered the batch")
                    }
                },
            ));
        }
        answer
    }

    fn send_values(&self, values: &[&str]) -> oneshot::Receiver<Answer> {
        self.send(values.iter().map(|v| record(v)).collect())
    }
}

fn record(value: &str) -> ProducerRecord {
    ProducerRecord::new(None, Some(Bytes::from(value.to_string())), 1_700_000_000_000)
}

fn values_of(builder: BatchBuilder) -> Vec<String> {
    let batch = builder.encode(ProducerIdentity::NONE, -1, false, Compression::None).unwrap();
    let (_, records) = decode(&batch);
    records.iter().map(|r| String::from_utf8(r.value.as_deref().unwrap_or_default().to_vec()).unwrap()).collect()
}

async fn next(sent: &mut mpsc::UnboundedReceiver<SentBatch>) -> SentBatch {
    sent.recv().await.expect("the flusher sent a batch")
}

async fn answer(receiver: oneshot::Receiver<Answer>) -> Answer {
    receiver.await.expect("the flusher answered the caller")
}

#[tokio::test]
async fn callers_queued_behind_the_batch_in_flight_share_the_next_one() {
    let (partition, mut sent) = Partition::new(Duration::ZERO, 1_000_000);
    let first = partition.send_values(&["a"]);
    let in_flight = next(&mut sent).await;
    assert_eq!(in_flight.values, ["a"]);

    let before = Instant::now();
    let second = partition.send_values(&["b"]);
    let third = partition.send_values(&["c1", "c2", "c3"]);
    let fourth = partition.send_values(&["d"]);
    in_flight.acknowledge(100);
    assert_eq!(answer(first).await.unwrap(), 100);

    let shared = next(&mut sent).await;
    assert_eq!(shared.values, ["b", "c1", "c2", "c3", "d"], "one batch, in enqueue order, each caller contiguous");
    // The delivery deadline counts from when the oldest record of the batch was enqueued.
    assert!(shared.deadline >= before + Duration::from_secs(120));
    assert!(shared.deadline <= Instant::now() + Duration::from_secs(120));
    shared.acknowledge(101);
    assert_eq!(answer(second).await.unwrap(), 101);
    assert_eq!(answer(third).await.unwrap(), 102);
    assert_eq!(answer(fourth).await.unwrap(), 105);
}

#[tokio::test]
async fn a_caller_split_across_batches_is_answered_with_its_first_offset_after_the_last_batch() {
    // Room for two 40-byte values per batch.
    let (partition, mut sent) = Partition::new(Duration::ZERO, 200);
    let value = |n: u8| String::from_utf8(vec![b'a' + n; 40]).unwrap();
    let values: Vec<String> = (0..5).map(value).collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    let mut split = partition.send(refs.iter().map(|v| record(v)).collect());

    let first = next(&mut sent).await;
    assert_eq!(first.values, refs[..2]);
    first.acknowledge(10);
    let second = next(&mut sent).await;
    assert_eq!(second.values, refs[2..4]);
    // Still waiting: its last record is not acknowledged yet.
    assert!(matches!(split.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
    second.acknowledge(12);
    let third = next(&mut sent).await;
    assert_eq!(third.values, refs[4..]);
    third.acknowledge(14);
    assert_eq!(answer(split).await.unwrap(), 10);
}

#[tokio::test]
async fn a_failed_batch_fails_its_callers_alike_and_later_callers_go_on() {
    // Room for two 40-byte values per batch.
    let (partition, mut sent) = Partition::new(Duration::ZERO, 200);
    let value = |c: char| c.to_string().repeat(40);
    let (a, b, c1, c2, d) = (value('a'), value('b'), value('c'), value('C'), value('d'));
    let first = partition.send_values(&[&a]);
    let in_flight = next(&mut sent).await;
    let second = partition.send_values(&[&b]);
    let spanning = partition.send_values(&[&c1, &c2]);
    let last = partition.send_values(&[&d]);
    in_flight.acknowledge(0);
    assert_eq!(answer(first).await.unwrap(), 0);

    let failing = next(&mut sent).await;
    assert_eq!(failing.values, [b.clone(), c1.clone()]);
    failing.fail(SendError::Fenced { transactional_id: None, reason: "INVALID_PRODUCER_EPOCH".into() });
    let second = answer(second).await.unwrap_err();
    let spanning = answer(spanning).await.unwrap_err();
    assert!(second.is_fenced(), "{second}");
    assert!(spanning.is_fenced(), "{spanning}");

    // The failed caller's second record is dropped; the next caller is not.
    let after = next(&mut sent).await;
    assert_eq!(after.values, [d]);
    after.acknowledge(1);
    assert_eq!(answer(last).await.unwrap(), 1);
}

#[test]
fn callers_sharing_a_failed_batch_get_the_variant_that_matters() {
    let target = "orders-0";
    let fenced = SendError::Fenced { transactional_id: Some("kfn.f.0".into()), reason: "fenced".into() };
    assert!(fenced.for_follower(target).is_fenced());
    let abortable = SendError::Abortable("epoch".into()).for_follower(target);
    assert!(matches!(abortable, SendError::Abortable(reason) if reason == "epoch"));
    let timeout =
        SendError::Timeout { target: target.into(), seconds: 120, last: "NOT_LEADER".into() }.for_follower(target);
    assert!(matches!(timeout, SendError::Timeout { seconds: 120, ref last, .. } if last == "NOT_LEADER"));
    let fatal = SendError::Fatal { target: target.into(), reason: "RECORD_TOO_LARGE".into() }.for_follower(target);
    assert!(matches!(fatal, SendError::Fatal { ref reason, .. } if reason == "RECORD_TOO_LARGE"));
    let kafka = SendError::Kafka(KafkaError::Codec { api: "Produce", message: "no answer".into() });
    let message = kafka.to_string();
    let copied = kafka.for_follower(target);
    assert!(
        matches!(&copied, SendError::Fatal { target: t, reason } if t == target && *reason == message),
        "{copied:?}"
    );
}

#[tokio::test]
async fn records_of_a_caller_that_went_away_are_still_written() {
    let (partition, mut sent) = Partition::new(Duration::ZERO, 1_000_000);
    let partition = Arc::new(partition);
    let first = partition.send_values(&["a"]);
    let in_flight = next(&mut sent).await;
    // A caller that enqueued, then was cancelled while its records waited.
    let (enqueued_tx, enqueued) = oneshot::channel();
    let caller = {
        let partition = partition.clone();
        tokio::spawn(async move {
            let answer = partition.send_values(&["gone"]);
            let _ = enqueued_tx.send(());
            answer.await
        })
    };
    enqueued.await.unwrap();
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
    let staying = partition.send_values(&["stays"]);
    in_flight.acknowledge(7);
    assert_eq!(answer(first).await.unwrap(), 7);

    let next_batch = next(&mut sent).await;
    assert_eq!(next_batch.values, ["gone", "stays"]);
    next_batch.acknowledge(8);
    assert_eq!(answer(staying).await.unwrap(), 9);
}

#[tokio::test]
async fn a_flusher_that_dies_lets_the_next_caller_start_another() {
    let (partition, mut sent) = Partition::new(Duration::ZERO, 1_000_000);
    let first = partition.send_values(&["a"]);
    let in_flight = next(&mut sent).await;
    let queued = partition.send_values(&["b"]);
    // Dropping the answer makes the scripted sender panic inside the flusher task.
    drop(in_flight);
    assert!(first.await.is_err(), "the caller sees its answer channel close");
    assert!(queued.await.is_err(), "the queued caller too");

    let later = partition.send_values(&["c"]);
    let batch = next(&mut sent).await;
    assert_eq!(batch.values, ["c"]);
    batch.acknowledge(3);
    assert_eq!(answer(later).await.unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_idle_partition_lingers_for_company() {
    let linger = Duration::from_millis(5);
    let (partition, mut sent) = Partition::new(linger, 1_000_000);
    let start = tokio::time::Instant::now();
    let first = partition.send_values(&["a"]);
    tokio::time::advance(Duration::from_millis(2)).await;
    let second = partition.send_values(&["b"]);
    let batch = next(&mut sent).await;
    assert_eq!(batch.values, ["a", "b"]);
    assert!(start.elapsed() >= linger, "sent after {:?}", start.elapsed());
    batch.acknowledge(0);
    assert_eq!(answer(first).await.unwrap(), 0);
    assert_eq!(answer(second).await.unwrap(), 1);

    // Records that arrive while a batch is in flight leave when it is acknowledged, without lingering again.
    let third = partition.send_values(&["c"]);
    let in_flight = next(&mut sent).await;
    let fourth = partition.send_values(&["d"]);
    let acknowledged_at = tokio::time::Instant::now();
    in_flight.acknowledge(2);
    let batch = next(&mut sent).await;
    assert_eq!(batch.values, ["d"]);
    assert_eq!(acknowledged_at.elapsed(), Duration::ZERO);
    batch.acknowledge(3);
    assert_eq!(answer(third).await.unwrap(), 2);
    assert_eq!(answer(fourth).await.unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn lingering_ends_once_a_full_batch_is_queued() {
    let linger = Duration::from_secs(3600);
    let (partition, mut sent) = Partition::new(linger, 300);
    let start = tokio::time::Instant::now();
    let first = partition.send_values(&["a"]);
    // Let the flusher start lingering before the queue fills.
    tokio::task::yield_now().await;
    let big = "b".repeat(400);
    let second = partition.send_values(&[&big]);
    let batch = next(&mut sent).await;
    assert!(start.elapsed() < linger, "waited the whole linger");
    assert_eq!(batch.values, ["a"]);
    batch.acknowledge(0);
    let batch = next(&mut sent).await;
    assert_eq!(batch.values, [big]);
    batch.acknowledge(1);
    assert_eq!(answer(first).await.unwrap(), 0);
    assert_eq!(answer(second).await.unwrap(), 1);
}

#[tokio::test]
async fn timestamps_too_far_apart_for_one_batch_go_in_two() {
    let (partition, mut sent) = Partition::new(Duration::ZERO, 1_000_000);
    let first = partition.send_values(&["a"]);
    let in_flight = next(&mut sent).await;
    let early = partition.send(vec![ProducerRecord::new(None, Some("early".into()), i64::MIN + 1)]);
    let late = partition.send(vec![ProducerRecord::new(None, Some("late".into()), i64::MAX)]);
    in_flight.acknowledge(0);
    let batch = next(&mut sent).await;
    assert_eq!(batch.values, ["early"]);
    batch.acknowledge(1);
    let batch = next(&mut sent).await;
    assert_eq!(batch.values, ["late"]);
    batch.acknowledge(2);
    assert_eq!(answer(first).await.unwrap(), 0);
    assert_eq!(answer(early).await.unwrap(), 1);
    assert_eq!(answer(late).await.unwrap(), 2);
}

#[test]
fn records_no_batch_could_take_are_refused_before_queueing() {
    let twice = record("x").with_header("trace", None).with_header("trace", Some("1".into()));
    assert!(matches!(
        check_records(&[record("ok"), twice]),
        Err(ProducerError::DuplicateHeader { name }) if name == "trace"
    ));
    let spread = [ProducerRecord::new(None, None, i64::MIN), ProducerRecord::new(None, None, 1)];
    assert!(matches!(check_records(&spread), Err(ProducerError::TimestampSpread { .. })));
    check_records(&[record("a").with_header("trace", None).with_header("span", None), record("b")]).unwrap();
}

#[tokio::test]
async fn acks_without_offsets_answer_minus_one() {
    let (partition, mut sent) = Partition::new(Duration::ZERO, 1_000_000);
    let only = partition.send_values(&["a", "b"]);
    next(&mut sent).await.acknowledge(-1);
    assert_eq!(answer(only).await.unwrap(), -1);
}
