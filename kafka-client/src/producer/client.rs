//! The producer that talks to brokers: idempotent by default, transactional
//! when given a transactional id.
//!
//! Each partition has at most one batch in flight per producer, so a retried
//! batch (re-sent with the same producer id, epoch and sequence) can never be
//! overtaken by a later one: the broker de-duplicates it, and order holds.
//! Outside transactions, what concurrent callers send to one partition while
//! a batch is in flight leaves together in the next batch (group commit, see
//! the `queue` module), and the batches of all partitions led by one broker
//! leave together in one Produce request (the `broker` module).
//! Transactions follow KIP-98: InitProducerId fences older instances of the
//! same transactional id, partitions join the transaction before their first
//! write, offsets join it with AddOffsetsToTxn + TxnOffsetCommit, and EndTxn
//! commits or aborts everything together.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, GroupId, InitProducerIdRequest, ProducerId,
    TopicName, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::broker::{BrokerQueues, Envelope};
use super::queue::{self, FlushSettings, PartitionQueue};
use super::{
    classify_add_offsets_to_txn, classify_add_partitions_to_txn, classify_end_txn, classify_init_producer_id,
    classify_produce, classify_txn_offset_commit, producer_identity, BatchBuilder, ProduceOutcome, ProducerConfig,
    ProducerIdentity, ProducerRecord, Pushed, SequenceNumbers, TxnOutcome,
};
use crate::backoff::Pauses;
use crate::cluster::{Cluster, CoordinatorKind};
use crate::error::KafkaError;
use crate::group::coordinator::Generation;
use crate::group::protocol::TopicPartition;

/// AddPartitionsToTxn v4+ is the broker-to-broker form.
const ADD_PARTITIONS_CAP: i16 = 3;
/// EndTxn v5 and InitProducerId v6 belong to KIP-890 and KIP-939.
const END_TXN_CAP: i16 = 4;
const INIT_PRODUCER_ID_CAP: i16 = 5;

/// Why records could not be delivered or a transaction could not finish.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Another instance took over this transactional id (or the group moved on): stop this work.
    #[error("producer {transactional_id:?} was fenced: {reason}")]
    Fenced {
        /// The transactional id, if any.
        transactional_id: Option<String>,
        /// The broker's answer.
        reason: String,
    },
    /// The open transaction cannot commit; abort it and redo the work.
    #[error("the transaction must be aborted: {0}")]
    Abortable(String),
    /// Retrying cannot help (e.g. record too large, authorization).
    #[error("cannot produce to {target}: {reason}")]
    Fatal {
        /// The topic-partition or request.
        target: String,
        /// The broker's answer.
        reason: String,
    },
    /// Retries did not succeed within the delivery timeout.
    #[error("delivery to {target} timed out after {seconds} s: {last}")]
    Timeout {
        /// The topic-partition or request.
        target: String,
        /// The time allowed.
        seconds: u64,
        /// The last error seen.
        last: String,
    },
    /// A record could not be put in a batch.
    #[error(transparent)]
    Batch(#[from] super::ProducerError),
    /// A request failed in a way no retry cures.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

impl SendError {
    /// Whether the producer was fenced (its work must stop).
    pub fn is_fenced(&self) -> bool {
        matches!(self, SendError::Fenced { .. })
    }

    /// The same failure for another caller whose records shared the failed
    /// batch (or a transaction): fenced, abortable and timed-out stay so; the rest become
    /// [`SendError::Fatal`] on `target` with this error's message.
    pub fn for_follower(&self, target: &str) -> SendError {
        match self {
            SendError::Fenced { transactional_id, reason } => {
                SendError::Fenced { transactional_id: transactional_id.clone(), reason: reason.clone() }
            }
            SendError::Abortable(reason) => SendError::Abortable(reason.clone()),
            // These name their target already.
            SendError::Fatal { target: named, reason } => {
                SendError::Fatal { target: named.clone(), reason: reason.clone() }
            }
            SendError::Timeout { target: named, seconds, last } => {
                SendError::Timeout { target: named.clone(), seconds: *seconds, last: last.clone() }
            }
            SendError::Batch(_) | SendError::Kafka(_) => {
                SendError::Fatal { target: target.to_string(), reason: self.to_string() }
            }
        }
    }
}

/// Whether the brokers advertise what one transactional producer per member
/// needs (KIP-447, Apache Kafka 2.5 and later): TxnOffsetCommit v3, which
/// carries the generation and member id, and OffsetFetch v7, whose
/// require_stable makes a new owner wait for pending transactional offsets.
/// Whether the group coordinator really checks the generation is for
/// [`Producer::group_refuses_strangers`] to find out.
pub async fn advertises_kip447(cluster: &Cluster) -> Result<bool, KafkaError> {
    let conn = cluster.any_connection().await?;
    let supports = |version: Result<i16, KafkaError>, least: i16| version.is_ok_and(|v| v >= least);
    Ok(supports(conn.version::<TxnOffsetCommitRequest>(), 3)
        && supports(conn.version::<kafka_protocol::messages::OffsetFetchRequest>(), 7))
}

struct State {
    identity: ProducerIdentity,
    sequences: SequenceNumbers,
    /// Partitions added to the open transaction.
    in_txn: HashSet<TopicPartition>,
    /// Whether a group's offsets were added to the open transaction.
    offsets_added: HashSet<String>,
    /// Records staged for the open transaction, sent at commit.
    staged: BTreeMap<TopicPartition, Vec<ProducerRecord>>,
    /// The last EndTxn failed without a verdict: the transaction may still be
    /// open at the broker, and must not take the next one's records and
    /// offsets (it would commit them together). The next transactional call
    /// first gets the id's next epoch (InitProducerId), which ends it.
    unsettled: bool,
}

/// A producer; cheap to clone, shared by the partition workers of a function.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

struct Inner {
    cluster: Cluster,
    config: ProducerConfig,
    state: Mutex<State>,
    /// Transactional sends: one caller at a time per partition.
    partition_locks: Mutex<HashMap<TopicPartition, Arc<tokio::sync::Mutex<()>>>>,
    /// Other sends: each partition's queue of callers, drained by one flusher at a time.
    partition_queues: Mutex<HashMap<TopicPartition, Arc<PartitionQueue>>>,
    /// Every partition's batches on their way to each broker, one request at a time.
    brokers: BrokerQueues,
    /// Held while an unsettled transaction is ended (see `State::unsettled`),
    /// so that the partitions of one transaction wait for one InitProducerId.
    settling: tokio::sync::Mutex<()>,
}

impl Producer {
    /// A producer on `cluster`; idempotent and transactional producers get their id now.
    pub async fn new(cluster: Cluster, config: ProducerConfig) -> Result<Self, SendError> {
        let producer = Producer {
            inner: Arc::new(Inner {
                cluster,
                config,
                state: Mutex::new(State {
                    identity: ProducerIdentity::NONE,
                    sequences: SequenceNumbers::new(ProducerIdentity::NONE),
                    in_txn: HashSet::new(),
                    offsets_added: HashSet::new(),
                    staged: BTreeMap::new(),
                    unsettled: false,
                }),
                partition_locks: Mutex::default(),
                partition_queues: Mutex::default(),
                brokers: BrokerQueues::default(),
                settling: tokio::sync::Mutex::new(()),
            }),
        };
        if producer.inner.config.idempotent || producer.inner.config.transactional_id.is_some() {
            producer.init_producer_id().await?;
        }
        Ok(producer)
    }

    /// The producer's id and epoch.
    pub fn identity(&self) -> ProducerIdentity {
        self.state().identity
    }

    /// The transactional id, if this producer is transactional.
    pub fn transactional_id(&self) -> Option<&str> {
        self.inner.config.transactional_id.as_deref()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the transaction coordinator found before when `moved` (it
    /// answered NOT_COORDINATOR or could not be reached), so the next try looks it up.
    fn forget_txn_coordinator_if(&self, moved: bool) {
        if let (true, Some(id)) = (moved, &self.inner.config.transactional_id) {
            self.inner.cluster.forget_coordinator(CoordinatorKind::Transaction, id);
        }
    }

    fn txn_id(&self) -> Option<TransactionalId> {
        self.inner.config.transactional_id.as_ref().map(|t| TransactionalId(StrBytes::from_string(t.clone())))
    }

    /// InitProducerId: a new id (idempotent) or the next epoch of the transactional id, fencing older instances.
    async fn init_producer_id(&self) -> Result<(), SendError> {
        let deadline = Instant::now() + self.inner.config.delivery_timeout;
        let mut pauses = Pauses::new(Duration::from_millis(50), Duration::from_secs(1)).until(deadline);
        loop {
            let conn = match &self.inner.config.transactional_id {
                Some(id) => self.inner.cluster.coordinator(CoordinatorKind::Transaction, id).await,
                None => self.inner.cluster.any_connection().await,
            };
            let last = match conn {
                Ok(conn) => {
                    let version = conn.version_capped::<InitProducerIdRequest>(INIT_PRODUCER_ID_CAP)?;
                    let request = InitProducerIdRequest::default()
                        .with_transactional_id(self.txn_id())
                        .with_transaction_timeout_ms(self.inner.config.transaction_timeout.as_millis() as i32)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1);
                    match conn.send_version(&request, version, Duration::ZERO).await {
                        Ok(response) => match classify_init_producer_id(&response) {
                            TxnOutcome::Done => {
                                let identity = producer_identity(&response).ok_or_else(|| SendError::Fatal {
                                    target: "InitProducerId".into(),
                                    reason: "no producer id in the answer".into(),
                                })?;
                                let mut state = self.state();
                                state.identity = identity;
                                state.sequences.set_identity(identity);
                                state.in_txn.clear();
                                state.offsets_added.clear();
                                tracing::debug!(
                                    producer_id = identity.id,
                                    epoch = identity.epoch,
                                    "producer initialised"
                                );
                                return Ok(());
                            }
                            TxnOutcome::Retry { error, refresh_coordinator } => {
                                self.forget_txn_coordinator_if(refresh_coordinator);
                                error.to_string()
                            }
                            TxnOutcome::Fenced(e) => return Err(self.fenced(e.to_string())),
                            other => {
                                return Err(SendError::Fatal {
                                    target: "InitProducerId".into(),
                                    reason: format!("{other:?}"),
                                })
                            }
                        },
                        Err(e) if e.is_retriable() => {
                            self.forget_txn_coordinator_if(true);
                            e.to_string()
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) if e.is_retriable() || e.response_error().is_some_and(|r| r.is_retriable()) => e.to_string(),
                Err(e) => return Err(e.into()),
            };
            if pauses.expired() {
                return Err(SendError::Timeout {
                    target: "InitProducerId".into(),
                    seconds: self.inner.config.delivery_timeout.as_secs(),
                    last,
                });
            }
            pauses.pause().await;
        }
    }

    fn fenced(&self, reason: String) -> SendError {
        SendError::Fenced { transactional_id: self.inner.config.transactional_id.clone(), reason }
    }

    /// Ends a transaction whose EndTxn failed without a verdict, if there is
    /// one: InitProducerId with the same transactional id makes the
    /// coordinator finish it (abort it, or complete a commit it had already
    /// prepared) and bump the epoch, so that nothing of it can still be
    /// written or committed with what comes next.
    async fn settle(&self) -> Result<(), SendError> {
        if !self.state().unsettled {
            return Ok(());
        }
        let _one = self.inner.settling.lock().await;
        if self.state().unsettled {
            tracing::info!(transactional_id = ?self.inner.config.transactional_id, "ending the transaction whose EndTxn failed");
            self.init_producer_id().await?;
            self.state().unsettled = false;
        }
        Ok(())
    }

    fn partition_lock(&self, tp: &TopicPartition) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.inner.partition_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(tp.clone()).or_default().clone()
    }

    fn partition_queue(&self, tp: &TopicPartition) -> Arc<PartitionQueue> {
        let mut queues = self.inner.partition_queues.lock().unwrap_or_else(|p| p.into_inner());
        queues.entry(tp.clone()).or_default().clone()
    }

    /// Writes `records` to one partition, in order; returns the offset of the first.
    ///
    /// Records are split into batches of at most `max_batch_bytes`; each batch
    /// is retried with its sequence until acknowledged or the delivery timeout,
    /// counted from this call. Outside a transaction, records that concurrent
    /// callers send to the partition share batches (group commit): the
    /// records of one call stay together and in order, calls land in the order
    /// they were made, and records whose call is dropped are still written. The
    /// offset is -1 when the broker did not give one (acks = none, or a re-sent
    /// batch it already had).
    pub async fn send(&self, tp: &TopicPartition, records: Vec<ProducerRecord>) -> Result<i64, SendError> {
        if self.inner.config.transactional_id.is_some() {
            return self.send_in_txn(tp, records).await;
        }
        queue::check_records(&records)?;
        acknowledged(self.enqueue(tp, records), tp).await
    }

    /// Writes each partition's records, as [`Producer::send`] does for one; returns when all are
    /// acknowledged, or with the first failure.
    ///
    /// Outside a transaction the records are queued at once and only their acknowledgements
    /// awaited: a chunk going to hundreds of partitions waits on hundreds of small receivers, not
    /// hundreds of send futures (a process reading 600 partitions held 687 MB of those).
    pub async fn send_each(
        &self,
        batches: impl IntoIterator<Item = (TopicPartition, Vec<ProducerRecord>)>,
    ) -> Result<(), SendError> {
        if self.inner.config.transactional_id.is_some() {
            let sends = batches.into_iter().map(|(tp, records)| async move { self.send_in_txn(&tp, records).await });
            futures::future::try_join_all(sends).await?;
            return Ok(());
        }
        // Every batch checked before any is queued: a refused record leaves nothing half written.
        let batches: Vec<_> = batches.into_iter().collect();
        for (_, records) in &batches {
            queue::check_records(records)?;
        }
        let queued: Vec<_> = batches.into_iter().map(|(tp, records)| (self.enqueue(&tp, records), tp)).collect();
        futures::future::try_join_all(
            queued.into_iter().map(|(answer, tp)| async move { acknowledged(answer, &tp).await }),
        )
        .await?;
        Ok(())
    }

    /// Queues `records` (checked by the caller) for `tp` outside a transaction, starting the
    /// partition's flusher when none runs; the records are written even if the answer is
    /// dropped. `None` when there is nothing to send.
    fn enqueue(&self, tp: &TopicPartition, records: Vec<ProducerRecord>) -> Option<Answer> {
        if records.is_empty() {
            return None;
        }
        let config = &self.inner.config;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let partition_queue = self.partition_queue(tp);
        if partition_queue.enqueue(records, reply, config.max_batch_bytes) {
            let settings = FlushSettings {
                linger: config.linger,
                max_batch_bytes: config.max_batch_bytes,
                delivery_timeout: config.delivery_timeout,
            };
            let producer = self.clone();
            let tp = tp.clone();
            // A task of its own: the batch must not depend on this caller's future staying alive.
            tokio::spawn(async move {
                let target = tp.to_string();
                queue::flush(partition_queue, settings, target, move |builder, deadline| {
                    let producer = producer.clone();
                    let tp = tp.clone();
                    async move { producer.send_batch(&tp, builder, deadline).await }
                })
                .await
            });
        }
        Some(answer)
    }

    /// A transaction's records: the partition joins the transaction before its
    /// first write, and the caller's future does the sending, so nothing of an
    /// aborted or committed transaction can still go out after it ended.
    async fn send_in_txn(&self, tp: &TopicPartition, records: Vec<ProducerRecord>) -> Result<i64, SendError> {
        let lock = self.partition_lock(tp);
        let _in_flight = lock.lock().await;
        self.add_partition_to_txn(tp).await?;
        let deadline = Instant::now() + self.inner.config.delivery_timeout;
        let mut first_offset = None;
        let mut builder = BatchBuilder::new(self.inner.config.max_batch_bytes);
        for record in records {
            if let Pushed::Full(record) = builder.push(record)? {
                let full = std::mem::replace(&mut builder, BatchBuilder::new(self.inner.config.max_batch_bytes));
                let offset = self.send_batch(tp, full, deadline).await?;
                first_offset.get_or_insert(offset);
                // An empty builder takes any record, even one above the batch size.
                let _added = builder.push(record)?;
            }
        }
        if !builder.is_empty() {
            let offset = self.send_batch(tp, builder, deadline).await?;
            first_offset.get_or_insert(offset);
        }
        Ok(first_offset.unwrap_or(-1))
    }

    /// Sends one batch, retrying it with its sequence until acknowledged or `deadline`.
    async fn send_batch(
        &self,
        tp: &TopicPartition,
        builder: BatchBuilder,
        deadline: Instant,
    ) -> Result<i64, SendError> {
        let transactional = self.inner.config.transactional_id.is_some();
        let config = &self.inner.config;
        let (identity, sequence) = {
            let mut state = self.state();
            let sequence = state.sequences.assign(&tp.topic, tp.partition, builder.record_count())?;
            (state.identity, sequence)
        };
        let mut batch = builder.encode(identity, sequence, transactional, config.compression)?;
        let mut pauses = Pauses::new(Duration::from_millis(20), Duration::from_secs(1)).until(deadline);
        let envelope = Envelope {
            acks: config.acks,
            timeout: config.request_timeout,
            transactional_id: config.transactional_id.clone(),
        };
        loop {
            let last = match self.inner.brokers.send(&self.inner.cluster, &envelope, tp, &batch).await {
                Ok(response) => match classify_produce(&response, transactional) {
                    ProduceOutcome::Delivered { base_offset } => return Ok(base_offset.unwrap_or(-1)),
                    ProduceOutcome::Retry { error, refresh_metadata } => {
                        if refresh_metadata {
                            self.inner.cluster.invalidate(&tp.topic);
                        }
                        error.to_string()
                    }
                    ProduceOutcome::ReinitProducer(error) if !transactional => {
                        // The broker forgot this producer (e.g. its state expired): new id, sequences from 0.
                        tracing::info!(partition = %tp, %error, "re-initialising the idempotent producer");
                        self.init_producer_id().await?;
                        let (identity, sequence) = {
                            let mut state = self.state();
                            let sequence = state.sequences.assign(&tp.topic, tp.partition, batch.record_count())?;
                            (state.identity, sequence)
                        };
                        batch = batch.reencode(identity, sequence)?;
                        continue;
                    }
                    ProduceOutcome::ReinitProducer(error) | ProduceOutcome::Fenced(error) => {
                        return Err(self.fenced(error.to_string()))
                    }
                    ProduceOutcome::AbortTransaction(e) => return Err(SendError::Abortable(e.to_string())),
                    ProduceOutcome::Fatal(e) => {
                        self.state().sequences.release(
                            &tp.topic,
                            tp.partition,
                            batch.base_sequence(),
                            batch.record_count(),
                        );
                        return Err(SendError::Fatal { target: tp.to_string(), reason: e.to_string() });
                    }
                },
                Err(e)
                    if !e.is_authorization_failure()
                        && (e.is_retriable() || matches!(e, KafkaError::Broker { .. })) =>
                {
                    self.inner.cluster.invalidate(&tp.topic);
                    e.to_string()
                }
                Err(e) => return Err(e.into()),
            };
            if pauses.expired() {
                return Err(SendError::Timeout {
                    target: tp.to_string(),
                    seconds: config.delivery_timeout.as_secs(),
                    last,
                });
            }
            tracing::debug!(partition = %tp, error = %last, "produce failed; retrying the same batch");
            pauses.pause().await;
        }
    }

    /// Runs a transaction-coordinator request until done, retrying what is passing.
    async fn txn_request<F, Fut>(&self, what: &'static str, mut f: F) -> Result<(), SendError>
    where
        F: FnMut(crate::Connection) -> Fut,
        Fut: std::future::Future<Output = Result<TxnOutcome, KafkaError>>,
    {
        let txn_id = self.inner.config.transactional_id.clone().unwrap_or_default();
        let deadline = Instant::now() + self.inner.config.delivery_timeout;
        let mut pauses = Pauses::new(Duration::from_millis(20), Duration::from_millis(500)).until(deadline);
        loop {
            let last = match self.inner.cluster.coordinator(CoordinatorKind::Transaction, &txn_id).await {
                Ok(conn) => match f(conn).await {
                    Ok(TxnOutcome::Done) => return Ok(()),
                    Ok(TxnOutcome::Retry { error, refresh_coordinator }) => {
                        self.forget_txn_coordinator_if(refresh_coordinator);
                        error.to_string()
                    }
                    Ok(TxnOutcome::Fenced(e)) | Ok(TxnOutcome::ReinitProducer(e)) => {
                        return Err(self.fenced(e.to_string()))
                    }
                    Ok(TxnOutcome::AbortTransaction(e)) => return Err(SendError::Abortable(e.to_string())),
                    Ok(TxnOutcome::Fatal(e)) => {
                        return Err(SendError::Fatal { target: what.into(), reason: e.to_string() })
                    }
                    Err(e) if e.is_retriable() => {
                        self.forget_txn_coordinator_if(true);
                        e.to_string()
                    }
                    Err(e) => return Err(e.into()),
                },
                Err(e) if e.is_retriable() || e.response_error().is_some_and(|r| r.is_retriable()) => e.to_string(),
                Err(e) => return Err(e.into()),
            };
            if pauses.expired() {
                return Err(SendError::Timeout {
                    target: what.into(),
                    seconds: self.inner.config.delivery_timeout.as_secs(),
                    last,
                });
            }
            pauses.pause().await;
        }
    }

    async fn add_partition_to_txn(&self, tp: &TopicPartition) -> Result<(), SendError> {
        self.add_partitions_to_txn(std::slice::from_ref(tp)).await
    }

    /// Adds to the open transaction those of `partitions` not in it yet, in
    /// one AddPartitionsToTxn (one per partition cost a transaction writing
    /// to six partitions six requests).
    async fn add_partitions_to_txn(&self, partitions: &[TopicPartition]) -> Result<(), SendError> {
        self.settle().await?;
        let (identity, new) = {
            let state = self.state();
            let new: Vec<TopicPartition> =
                partitions.iter().filter(|tp| !state.in_txn.contains(*tp)).cloned().collect();
            (state.identity, new)
        };
        if new.is_empty() {
            return Ok(());
        }
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in &new {
            by_topic.entry(tp.topic.as_str()).or_default().push(tp.partition);
        }
        let topics: Vec<AddPartitionsToTxnTopic> = by_topic
            .into_iter()
            .map(|(topic, partitions)| {
                AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(partitions)
            })
            .collect();
        let txn_id = self.txn_id().unwrap_or_default();
        self.txn_request("AddPartitionsToTxn", |conn| {
            let request = AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(txn_id.clone())
                .with_v3_and_below_producer_id(ProducerId(identity.id))
                .with_v3_and_below_producer_epoch(identity.epoch)
                .with_v3_and_below_topics(topics.clone());
            async move {
                let version = conn.version_capped::<AddPartitionsToTxnRequest>(ADD_PARTITIONS_CAP)?;
                let response = conn.send_version(&request, version, Duration::ZERO).await?;
                Ok(classify_add_partitions_to_txn(&response))
            }
        })
        .await?;
        self.state().in_txn.extend(new);
        Ok(())
    }

    /// Adds a group's offsets to the open transaction (KIP-98 AddOffsetsToTxn + TxnOffsetCommit).
    ///
    /// The generation makes the group coordinator refuse the commit of a
    /// member the group has moved on from (KIP-447).
    pub async fn send_offsets(
        &self,
        group: &str,
        generation: &Generation,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), SendError> {
        match self.txn_offset_commit(group, generation, offsets, self.inner.config.delivery_timeout).await? {
            TxnOutcome::Done => Ok(()),
            TxnOutcome::Fenced(e) | TxnOutcome::ReinitProducer(e) => Err(self.fenced(e.to_string())),
            TxnOutcome::AbortTransaction(e) => Err(SendError::Abortable(e.to_string())),
            other => Err(SendError::Fatal {
                target: format!("TxnOffsetCommit for group {group}"),
                reason: format!("{other:?}"),
            }),
        }
    }

    /// Whether the group coordinator refuses transactional offsets from a
    /// member it does not know: what one transactional producer per member
    /// relies on (KIP-447). Some brokers advertise the request versions
    /// without the check (tansu 0.6 accepts a stranger's offsets), so kfn asks:
    /// it opens a transaction, offers offset 0 of `topic`'s partition 0 from a
    /// member and generation that do not exist, and aborts. (Apache Kafka
    /// checks the partition before the member, so it must be a real one; the
    /// abort keeps a broker that took the offset from applying it.) `None`:
    /// neither a refusal by generation nor an acceptance came within `wait`.
    pub async fn group_refuses_strangers(
        &self,
        group: &str,
        topic: &str,
        wait: Duration,
    ) -> Result<Option<bool>, SendError> {
        let stranger = Generation { id: i32::MAX, member_id: "kfn-probe".into(), protocol: String::new() };
        let offsets = BTreeMap::from([(TopicPartition::new(topic, 0), 0)]);
        let outcome = self.txn_offset_commit(group, &stranger, &offsets, wait).await;
        self.abort().await?;
        Ok(match outcome? {
            TxnOutcome::Done => Some(false),
            TxnOutcome::AbortTransaction(e)
                if matches!(
                    e.error,
                    ResponseError::IllegalGeneration | ResponseError::UnknownMemberId | ResponseError::FencedInstanceId
                ) =>
            {
                Some(true)
            }
            _ => None,
        })
    }

    /// AddOffsetsToTxn (once per group and transaction), then TxnOffsetCommit,
    /// retried for up to `wait`: the outcome that ended it.
    async fn txn_offset_commit(
        &self,
        group: &str,
        generation: &Generation,
        offsets: &BTreeMap<TopicPartition, i64>,
        wait: Duration,
    ) -> Result<TxnOutcome, SendError> {
        self.settle().await?;
        let identity = self.identity();
        let txn_id = self.txn_id().unwrap_or_default();
        let group_id = GroupId(StrBytes::from_string(group.to_string()));
        let already = self.state().offsets_added.contains(group);
        if !already {
            self.txn_request("AddOffsetsToTxn", |conn| {
                let request = AddOffsetsToTxnRequest::default()
                    .with_transactional_id(txn_id.clone())
                    .with_producer_id(ProducerId(identity.id))
                    .with_producer_epoch(identity.epoch)
                    .with_group_id(group_id.clone());
                async move { Ok(classify_add_offsets_to_txn(&conn.send(&request).await?)) }
            })
            .await?;
            self.state().offsets_added.insert(group.to_string());
        }
        let mut topics: BTreeMap<&str, Vec<TxnOffsetCommitRequestPartition>> = BTreeMap::new();
        for (tp, offset) in offsets {
            topics.entry(&tp.topic).or_default().push(
                TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(tp.partition)
                    .with_committed_offset(*offset)
                    .with_committed_leader_epoch(-1),
            );
        }
        let request = TxnOffsetCommitRequest::default()
            .with_transactional_id(txn_id)
            .with_group_id(group_id)
            .with_producer_id(ProducerId(identity.id))
            .with_producer_epoch(identity.epoch)
            .with_generation_id(generation.id)
            .with_member_id(StrBytes::from_string(generation.member_id.clone()))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        TxnOffsetCommitRequestTopic::default()
                            .with_name(TopicName(StrBytes::from_string(t.to_string())))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        // Doubling from 50 ms (it was a fixed 50 ms): a group coordinator
        // that is loading or moving can take seconds, and is not asked 20
        // times a second meanwhile.
        let mut pauses = crate::backoff::Pauses::new(Duration::from_millis(50), Duration::from_millis(500))
            .until(Instant::now() + wait);
        loop {
            let conn = self.inner.cluster.coordinator(CoordinatorKind::Group, group).await?;
            let answer = conn.send(&request).await;
            if answer.is_err() {
                self.inner.cluster.forget_coordinator(CoordinatorKind::Group, group);
            }
            match classify_txn_offset_commit(&answer?) {
                TxnOutcome::Retry { error, refresh_coordinator } if !pauses.expired() => {
                    tracing::debug!(group, %error, "TxnOffsetCommit retry");
                    if refresh_coordinator {
                        self.inner.cluster.forget_coordinator(CoordinatorKind::Group, group);
                    }
                    pauses.pause().await;
                }
                outcome => return Ok(outcome),
            }
        }
    }

    /// Stages records for the open transaction; they are sent by [`Producer::commit`].
    ///
    /// Sending a transaction's records only when it commits means an aborted
    /// transaction usually never reaches the log at all: readers of brokers that
    /// do not filter aborted records (see docs/guarantees.md) see nothing of it.
    pub fn stage(&self, tp: &TopicPartition, records: Vec<ProducerRecord>) {
        self.state().staged.entry(tp.clone()).or_default().extend(records);
    }

    /// Commits the open transaction: staged records are sent, then records and offsets become visible together.
    pub async fn commit(&self) -> Result<(), SendError> {
        self.send_staged().await?;
        self.end_txn(true).await
    }

    /// Sends the staged records of the open transaction without ending it:
    /// once this returns, they are in the log (undecided), so a reader that
    /// waits for the high watermark it reads next sees the transaction's
    /// outcome. On failure the transaction is aborted (unless fenced).
    pub async fn send_staged(&self) -> Result<(), SendError> {
        let staged = std::mem::take(&mut self.state().staged);
        let partitions: Vec<TopicPartition> = staged.keys().cloned().collect();
        if let Err(e) = self.add_partitions_to_txn(&partitions).await {
            if !e.is_fenced() {
                let _ = self.end_txn(false).await;
            }
            return Err(e);
        }
        let sends = staged.into_iter().map(|(tp, records)| async move { self.send(&tp, records).await });
        for result in futures::future::join_all(sends).await {
            if let Err(e) = result {
                // Whatever was sent is rolled back with the transaction.
                if !e.is_fenced() {
                    let _ = self.end_txn(false).await;
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Aborts the open transaction: staged records are dropped, sent ones rolled back.
    ///
    /// When the abort (or a commit before it) fails without a verdict, the
    /// transaction may still be open at the broker; the producer then ends it
    /// with a new epoch before its next transaction begins (or here, on the
    /// next abort), so it can always be used again.
    pub async fn abort(&self) -> Result<(), SendError> {
        self.state().staged.clear();
        self.end_txn(false).await
    }

    async fn end_txn(&self, committed: bool) -> Result<(), SendError> {
        self.settle().await?;
        let (identity, empty) = {
            let state = self.state();
            (state.identity, state.in_txn.is_empty() && state.offsets_added.is_empty())
        };
        if !empty {
            let txn_id = self.txn_id().unwrap_or_default();
            self.txn_request("EndTxn", |conn| {
                let request = EndTxnRequest::default()
                    .with_transactional_id(txn_id.clone())
                    .with_producer_id(ProducerId(identity.id))
                    .with_producer_epoch(identity.epoch)
                    .with_committed(committed);
                async move {
                    let version = conn.version_capped::<EndTxnRequest>(END_TXN_CAP)?;
                    Ok(classify_end_txn(&conn.send_version(&request, version, Duration::ZERO).await?))
                }
            })
            .await
            .inspect_err(|e| self.state().unsettled = !e.is_fenced())?;
        }
        let mut state = self.state();
        state.in_txn.clear();
        state.offsets_added.clear();
        Ok(())
    }
}

/// The partition queue's answer to queued records: the offset of the first, or the failure.
type Answer = tokio::sync::oneshot::Receiver<Result<i64, SendError>>;

/// The offset of the first record of what was queued for `tp` once acknowledged (-1 when the
/// broker gave none, or nothing was queued).
async fn acknowledged(answer: Option<Answer>, tp: &TopicPartition) -> Result<i64, SendError> {
    let Some(answer) = answer else { return Ok(-1) };
    answer.await.unwrap_or_else(|_| {
        Err(SendError::Fatal {
            target: tp.to_string(),
            reason: "the producer stopped sending to this partition before the records were acknowledged".into(),
        })
    })
}
