//! Idempotency-Keys remembered in Kafka, so that a retried request gets the
//! first answer from any replica of an HTTP function.
//!
//! # Design
//!
//! Each HTTP function has a topic `<function>.idempotency` (derived by
//! [`crate::config`] like the dead-letter topics: 3 partitions,
//! `cleanup.policy = compact,delete`, `retention.ms` = 24 h), keyed by the
//! Idempotency-Key; a record's value is the answer that was given,
//! `{"status": 202, "body": "..."}` (JSON).
//!
//! - **Write**: a request with a key the function has not answered runs its
//!   handler, then the answer record and the handler's events are written in
//!   *one* transaction (a transactional producer per replica and function,
//!   transactional id `kfn.<function>.http.<random>`). Either both are
//!   committed or neither: an order whose answer is lost, or an answer
//!   without its order, cannot exist. Requests that arrive together share
//!   one transaction (group commit), so a replica does not queue its keyed
//!   requests one transaction at a time.
//! - **Read**: every replica follows every partition of the topic
//!   (read_committed, from the first kept offset, like a
//!   [`crate::table::GlobalTable`]) into a map key -> answer.
//! - **Look-up**: before running the handler for a key it has not seen, a
//!   replica asks the key's partition for its high watermark (ListOffsets,
//!   read_uncommitted) and waits until its follower read past it. A
//!   read_committed reader passes an offset only once every transaction
//!   below it is decided, so the replica answers from the map only after
//!   every answer *written* anywhere before the request arrived is committed
//!   (and read) or aborted. A retry that arrives while the first attempt's
//!   transaction is still committing on another replica waits for it and
//!   gets its answer.
//! - **A deadline for the write**: a request's answer and events must be in
//!   the log (sent, not yet committed) within [`ANSWER_DEADLINE`] of its
//!   arrival, or its transaction is aborted and it gets 503. So an attempt
//!   still in flight when its client gives up on it cannot commit after a
//!   retry's look-up: either its records were in the log before the retry
//!   read the high watermark (the retry waits for their outcome), or they
//!   are aborted. Without it, a replica whose transaction coordinator was
//!   away for longer than the client's timeout committed its order after the
//!   retry on another replica had created a second one (the chaos runner's
//!   broker failover, docs/chaos.md).
//! - **The remaining window**: a retry sent less than [`ANSWER_DEADLINE`]
//!   after the first attempt, while that attempt still runs (a client that
//!   does not wait for an answer or an error), may run too; the key's last
//!   answer wins in the topic. Kafka has no conditional write to close it:
//!   routing a key to one replica (a load balancer hashing the
//!   Idempotency-Key header) would.
//! - **Expiry**: an answer is forgotten once older than the topic's
//!   retention (the broker deletes it, and the map ignores it meanwhile).
//!
//! A replica keeps every unexpired key of its functions in memory (a key
//! and a short answer: about 200 bytes each).
//!
//! ```no_run
//! # async fn demo(cluster: kfn::kafka::Cluster) -> Result<(), kfn::trigger::idempotency::IdempotencyError> {
//! use std::time::Duration;
//! use kfn::kafka::producer::ProducerConfig;
//! use kfn::trigger::idempotency::{Answer, IdempotencyLog};
//! let (_stop, shutdown) = tokio::sync::watch::channel(false);
//! let day = Duration::from_secs(86_400);
//! let log = IdempotencyLog::start(&cluster, "order_api", "order_api.idempotency", day, &ProducerConfig::default(), shutdown).await?;
//! if log.remembered("key-1").await?.is_none() {
//!     let arrived = std::time::Instant::now();
//!     log.commit("key-1", Answer { status: 202, body: "{}".into() }, Vec::new(), arrived).await?;
//! }
//! # Ok(()) }
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use crate::backoff::Pauses;
use crate::kafka::consumer::{list_offset, LogEnd, PartitionReader};
use crate::kafka::fetch::{ConsumedRecord, Isolation};
use crate::kafka::group::protocol::TopicPartition;
use crate::kafka::producer::partitioner::partition_for_key;
use crate::kafka::producer::{Producer, ProducerConfig, ProducerRecord, SendError};
use crate::kafka::{Cluster, KafkaError};

/// How long an HTTP replica's transaction may stay open before the broker
/// aborts it: the longest a crashed replica holds back read_committed readers
/// of the function's outputs (and the look-ups of its keys' partitions).
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after a request arrived its answer and events may reach the log;
/// a later one is aborted. A client that retries with the same key no sooner
/// than this after its first attempt never gets two orders (see the module
/// documentation); clients typically time out after 10 s or more.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(5);
/// How long a look-up waits for the follower to reach the key's log end; past
/// the transaction timeout, so a crashed replica's open transaction is
/// aborted by then.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(15);

/// The answer an HTTP function gave: status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body (JSON text).
    pub body: String,
}

/// Why a key could not be looked up or its answer not stored.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The topic's metadata or log end could not be read.
    #[error("cannot read the Idempotency-Keys of function {function} on {topic}")]
    Kafka {
        /// The HTTP function.
        function: String,
        /// Its idempotency topic.
        topic: String,
        /// The broker's error.
        #[source]
        source: KafkaError,
    },
    /// The follower did not reach the key's log end in time (broker unreachable,
    /// or a transaction held open).
    #[error(
        "the Idempotency-Keys of function {function} on {partition} were not read to offset {end} within {seconds} s"
    )]
    CatchUp {
        /// The HTTP function.
        function: String,
        /// The key's partition.
        partition: TopicPartition,
        /// The offset to reach.
        end: i64,
        /// The time allowed.
        seconds: u64,
    },
    /// The transactional producer could not start.
    #[error("the transactional producer of function {function}'s HTTP replica could not start")]
    Producer {
        /// The HTTP function.
        function: String,
        /// Why.
        #[source]
        source: SendError,
    },
    /// The transaction of the answer and the events did not commit: neither was written.
    #[error("the answer and events of function {function} were not committed")]
    Commit {
        /// The HTTP function.
        function: String,
        /// Why (shared by every request of the transaction).
        #[source]
        source: Arc<SendError>,
    },
    /// The answer and events did not reach the log within [`ANSWER_DEADLINE`]
    /// of the request (of one sharing its transaction): aborted, so that a
    /// retry elsewhere cannot create a second order.
    #[error(
        "the answer and events of function {function} were not written within {} s of the request: aborted",
        ANSWER_DEADLINE.as_secs()
    )]
    Late {
        /// The HTTP function.
        function: String,
    },
    /// The replica is stopping.
    #[error("the Idempotency-Keys of function {function} are no longer written: the replica is stopping")]
    Stopped {
        /// The HTTP function.
        function: String,
    },
}

/// An answer as remembered, with its record's timestamp for expiry.
#[derive(Debug, Clone)]
struct Remembered {
    answer: Answer,
    at_ms: i64,
}

/// The answers by key, and the keys in the order they came for expiry.
#[derive(Default)]
struct Answers {
    by_key: HashMap<String, Remembered>,
    order: VecDeque<(i64, String)>,
}

impl Answers {
    fn insert(&mut self, key: String, remembered: Remembered, retention: Duration) {
        let at_ms = remembered.at_ms;
        self.order.push_back((at_ms, key.clone()));
        self.by_key.insert(key, remembered);
        let horizon = horizon(retention);
        while let Some((at, _)) = self.order.front().filter(|(at, _)| *at < horizon) {
            let at = *at;
            if let Some((_, old)) = self.order.pop_front() {
                // The key may have been answered again since: only its newest entry counts.
                if self.by_key.get(&old).is_some_and(|r| r.at_ms == at) {
                    self.by_key.remove(&old);
                }
            }
        }
    }

    fn get(&self, key: &str, retention: Duration) -> Option<Answer> {
        let horizon = horizon(retention);
        self.by_key.get(key).filter(|r| r.at_ms >= horizon).map(|r| r.answer.clone())
    }
}

/// The timestamp before which an answer is forgotten.
fn horizon(retention: Duration) -> i64 {
    kfn_sdk::now_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX))
}

/// Why a request's transaction did not commit (shared by its requests).
#[derive(Debug, Clone)]
enum Failed {
    /// Sending or committing failed.
    Send(Arc<SendError>),
    /// Its records were not in the log by the deadline of a request in it.
    Late,
}

/// One request's answer and events, waiting for the next transaction.
struct Pending {
    key: String,
    /// The partition of the key's answer.
    answer_at: TopicPartition,
    answer: Answer,
    records: Vec<(TopicPartition, Vec<ProducerRecord>)>,
    /// When its records must be in the log: [`ANSWER_DEADLINE`] after the request arrived.
    deadline: Instant,
    done: oneshot::Sender<Result<(), Failed>>,
}

/// The Idempotency-Keys of one HTTP function: its topic followed, and its
/// transactions written, in this replica.
pub struct IdempotencyLog {
    function: String,
    topic: String,
    partitions: i32,
    retention: Duration,
    cluster: Cluster,
    answers: RwLock<Answers>,
    /// Per partition: the next offset the follower will read.
    positions: Vec<watch::Sender<i64>>,
    transactions: mpsc::UnboundedSender<Pending>,
}

impl IdempotencyLog {
    /// Follows `topic` (the keys of `function`, remembered for `retention`)
    /// from its first kept offset and starts the replica's transactional
    /// producer (`base` with a transactional id of its own); following stops
    /// when `shutdown` turns true.
    pub async fn start(
        cluster: &Cluster,
        function: &str,
        topic: &str,
        retention: Duration,
        base: &ProducerConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, IdempotencyError> {
        let kafka = |source| IdempotencyError::Kafka { function: function.into(), topic: topic.into(), source };
        let info = cluster.topic(topic).await.map_err(kafka)?;
        let config = ProducerConfig {
            transactional_id: Some(format!("kfn.{function}.http.{:016x}", rand::random::<u64>())),
            transaction_timeout: TRANSACTION_TIMEOUT,
            idempotent: true,
            ..base.clone()
        };
        let producer = Producer::new(cluster.clone(), config.clone())
            .await
            .map_err(|source| IdempotencyError::Producer { function: function.into(), source })?;
        let (transactions, pending) = mpsc::unbounded_channel();
        let mut starts = Vec::new();
        for p in &info.partitions {
            let tp = TopicPartition::new(topic, p.partition);
            let start = list_offset(cluster, &tp, LogEnd::Earliest, Isolation::ReadCommitted).await.map_err(kafka)?;
            starts.push((tp, start));
        }
        starts.sort_by_key(|(tp, _)| tp.partition);
        let log = Arc::new(Self {
            function: function.to_string(),
            topic: topic.to_string(),
            partitions: starts.len() as i32,
            retention,
            cluster: cluster.clone(),
            answers: RwLock::default(),
            positions: starts.iter().map(|(_, start)| watch::Sender::new(*start)).collect(),
            transactions,
        });
        for (tp, start) in starts {
            let reader = PartitionReader::new(cluster.clone(), tp, start, Isolation::ReadCommitted, LogEnd::Earliest);
            tokio::spawn(log.clone().follow(reader, shutdown.clone()));
        }
        tokio::spawn(commit_in_groups(function.to_string(), cluster.clone(), config, producer, pending));
        tracing::info!(function, topic, partitions = log.partitions, "following the Idempotency-Keys");
        Ok(log)
    }

    /// The topic followed.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The answer given to `key` by any replica, once this replica has read
    /// every answer written to the key's partition before this call.
    pub async fn remembered(&self, key: &str) -> Result<Option<Answer>, IdempotencyError> {
        if let Some(answer) = self.lookup(key) {
            return Ok(Some(answer));
        }
        let tp = self.partition_of(key);
        // Read uncommitted: the high watermark, past every answer written so far, decided or not.
        let end =
            list_offset(&self.cluster, &tp, LogEnd::Latest, Isolation::ReadUncommitted).await.map_err(|source| {
                IdempotencyError::Kafka { function: self.function.clone(), topic: self.topic.clone(), source }
            })?;
        let mut position = self.positions[tp.partition as usize].subscribe();
        let caught_up = tokio::time::timeout(CATCH_UP_TIMEOUT, position.wait_for(|p| *p >= end)).await;
        if !matches!(caught_up, Ok(Ok(_))) {
            return Err(IdempotencyError::CatchUp {
                function: self.function.clone(),
                partition: tp,
                end,
                seconds: CATCH_UP_TIMEOUT.as_secs(),
            });
        }
        Ok(self.lookup(key))
    }

    /// Writes `answer` for `key` and the request's `records` in one
    /// transaction; returns once it committed (then the answer is remembered
    /// here at once) or failed (then nothing was written). A request that
    /// `arrived` more than [`ANSWER_DEADLINE`] before its records reach the
    /// log fails with [`IdempotencyError::Late`].
    pub async fn commit(
        &self,
        key: &str,
        answer: Answer,
        records: Vec<(TopicPartition, Vec<ProducerRecord>)>,
        arrived: Instant,
    ) -> Result<(), IdempotencyError> {
        let (done, result) = oneshot::channel();
        let answer_at = self.partition_of(key);
        let deadline = arrived + ANSWER_DEADLINE;
        let pending = Pending { key: key.to_string(), answer_at, answer: answer.clone(), records, deadline, done };
        let stopped = || IdempotencyError::Stopped { function: self.function.clone() };
        self.transactions.send(pending).map_err(|_| stopped())?;
        match result.await {
            Ok(Ok(())) => {
                let remembered = Remembered { answer, at_ms: kfn_sdk::now_ms() };
                self.write().insert(key.to_string(), remembered, self.retention);
                Ok(())
            }
            Ok(Err(Failed::Send(source))) => Err(IdempotencyError::Commit { function: self.function.clone(), source }),
            Ok(Err(Failed::Late)) => Err(IdempotencyError::Late { function: self.function.clone() }),
            Err(_) => Err(stopped()),
        }
    }

    /// The partition of `key`: the Java client's, as the producer uses.
    fn partition_of(&self, key: &str) -> TopicPartition {
        TopicPartition::new(self.topic.clone(), partition_for_key(key.as_bytes(), self.partitions))
    }

    fn lookup(&self, key: &str) -> Option<Answer> {
        self.answers.read().unwrap_or_else(|p| p.into_inner()).get(key, self.retention)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Answers> {
        self.answers.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads one partition for as long as the replica runs.
    async fn follow(self: Arc<Self>, mut reader: PartitionReader, mut shutdown: watch::Receiver<bool>) {
        let new_pauses = || Pauses::new(Duration::from_millis(500), Duration::from_secs(5));
        let mut pauses = new_pauses();
        let position = &self.positions[reader.partition().partition as usize];
        while !*shutdown.borrow() {
            let batch = tokio::select! {
                b = reader.next() => b,
                _ = shutdown.changed() => break,
            };
            match batch {
                Ok(batch) => {
                    pauses = new_pauses();
                    for record in batch.records {
                        self.apply(record);
                    }
                    position.send_replace(reader.position());
                }
                Err(e) => {
                    tracing::warn!(function = %self.function, partition = %reader.partition(), error = %e, "fetching Idempotency-Keys failed");
                    tokio::select! {
                        _ = pauses.pause() => {}
                        _ = shutdown.changed() => break,
                    }
                }
            }
        }
    }

    fn apply(&self, record: ConsumedRecord) {
        let key = record.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned());
        let answer = record.value.as_deref().map(serde_json::from_slice::<Answer>);
        match (key, answer) {
            (Some(key), Some(Ok(answer))) => {
                self.write().insert(key, Remembered { answer, at_ms: record.timestamp_ms }, self.retention)
            }
            (Some(key), None) => {
                // A tombstone: someone made the key usable again.
                self.write().by_key.remove(&key);
            }
            (_, Some(Err(e))) => {
                tracing::warn!(topic = %self.topic, offset = record.offset, error = %e, "Idempotency-Key record skipped: not an answer")
            }
            (None, _) => {
                tracing::warn!(topic = %self.topic, offset = record.offset, "Idempotency-Key record skipped: no key")
            }
        }
    }
}

/// The record remembering `answer` under `key`.
fn answer_record(key: &str, answer: &Answer) -> ProducerRecord {
    // An Answer is a number and a string: serializing it cannot fail.
    let value = serde_json::to_vec(answer).unwrap_or_default();
    ProducerRecord::new(Some(Bytes::from(key.to_string())), Some(Bytes::from(value)), kfn_sdk::now_ms())
}

/// Commits whatever requests are waiting, together, one transaction at a time.
async fn commit_in_groups(
    function: String,
    cluster: Cluster,
    config: ProducerConfig,
    mut producer: Producer,
    mut pending: mpsc::UnboundedReceiver<Pending>,
) {
    // Whether the producer must be made again before the next transaction:
    // fenced (the broker aborted a transaction past its timeout and bumped
    // the epoch). A transaction whose end got no answer the producer settles itself.
    let mut stale = false;
    while let Some(first) = pending.recv().await {
        let mut group = vec![first];
        while let Ok(next) = pending.try_recv() {
            group.push(next);
        }
        // Requests already past their deadline (the previous transaction took
        // that long) are not written at all; the others go on.
        let now = Instant::now();
        let (group, late): (Vec<Pending>, Vec<Pending>) = group.into_iter().partition(|r| r.deadline > now);
        if !late.is_empty() {
            tracing::warn!(function, requests = late.len(), "requests past their answer deadline get 503, unwritten");
        }
        for request in late {
            let _ = request.done.send(Err(Failed::Late));
        }
        if group.is_empty() {
            continue;
        }
        if stale {
            // Nothing may go through the old producer: its InitProducerId again
            // fences it and aborts whatever it left open.
            match Producer::new(cluster.clone(), config.clone()).await {
                Ok(fresh) => {
                    producer = fresh;
                    stale = false;
                }
                Err(e) => {
                    tracing::error!(function, error = %e, "the HTTP transactional producer could not restart");
                    let e = Arc::new(e);
                    for request in group {
                        let _ = request.done.send(Err(Failed::Send(e.clone())));
                    }
                    continue;
                }
            }
        }
        for request in &group {
            for (tp, records) in &request.records {
                producer.stage(tp, records.clone());
            }
            producer.stage(&request.answer_at, vec![answer_record(&request.key, &request.answer)]);
        }
        let result = match producer.send_staged().await {
            Ok(()) if group.iter().any(|r| Instant::now() > r.deadline) => {
                // A retry of one of these may already have looked its key up elsewhere
                // without seeing these records: they must never commit.
                tracing::warn!(
                    function,
                    requests = group.len(),
                    "the HTTP transaction reached the log past a request's deadline; aborted, its requests get 503"
                );
                if let Err(e) = producer.abort().await {
                    // The producer ends it with a new epoch before its next transaction.
                    tracing::info!(function, error = %e, "aborting the late HTTP transaction failed");
                }
                Err(Failed::Late)
            }
            Ok(()) => producer.commit().await.map_err(|e| Failed::Send(Arc::new(e))),
            Err(e) => Err(Failed::Send(Arc::new(e))),
        };
        if let Err(Failed::Send(e)) = &result {
            tracing::warn!(function, requests = group.len(), error = %e, "the HTTP transaction failed; its requests get 503");
            // A transaction open past its timeout was aborted by the broker and the
            // epoch bumped: this id's next epoch (InitProducerId) starts afresh.
            stale |= e.is_fenced();
        }
        for request in group {
            // A request whose caller went away no longer waits for its answer.
            let _ = request.done.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &str) -> Answer {
        Answer { status: 202, body: body.into() }
    }

    #[test]
    fn an_answer_is_remembered_until_it_is_older_than_the_retention() {
        let day = Duration::from_secs(86_400);
        let now = kfn_sdk::now_ms();
        let mut answers = Answers::default();
        answers.insert("old".into(), Remembered { answer: answer("1"), at_ms: now - 2 * 86_400_000 }, day);
        answers.insert("new".into(), Remembered { answer: answer("2"), at_ms: now }, day);
        assert_eq!(answers.get("new", day), Some(answer("2")));
        assert_eq!(answers.get("old", day), None, "an answer older than the retention is forgotten");
        assert!(!answers.by_key.contains_key("old"), "and dropped from memory");
        // Kept forever: nothing expires (no overflow of the horizon).
        let mut forever = Answers::default();
        forever.insert("k".into(), Remembered { answer: answer("3"), at_ms: 0 }, Duration::MAX);
        assert_eq!(forever.get("k", Duration::MAX), Some(answer("3")));
    }

    #[test]
    fn a_key_answered_again_keeps_its_newest_answer() {
        let day = Duration::from_secs(86_400);
        let now = kfn_sdk::now_ms();
        let mut answers = Answers::default();
        answers.insert("k".into(), Remembered { answer: answer("first"), at_ms: now - 2 * 86_400_000 }, day);
        answers.insert("k".into(), Remembered { answer: answer("second"), at_ms: now }, day);
        assert_eq!(answers.get("k", day), Some(answer("second")), "the expired first entry must not remove the second");
    }

    #[test]
    fn an_answer_record_is_json_keyed_by_the_idempotency_key() {
        let record = answer_record("cart-42", &Answer { status: 202, body: r#"{"order_id":"o-1"}"#.into() });
        assert_eq!(record.key.as_deref(), Some(&b"cart-42"[..]));
        let value: serde_json::Value = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
        assert_eq!(value, serde_json::json!({"status": 202, "body": "{\"order_id\":\"o-1\"}"}));
    }
}
