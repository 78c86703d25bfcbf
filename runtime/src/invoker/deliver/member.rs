//! One transaction at a time for every partition a member of an exactly_once
//! function processes: the KIP-447 model (Kafka Streams' exactly_once_v2).
//!
//! ```text
//! worker p0 ─┐ chunk + next offset                 ┌ stage every chunk's records
//! worker p1 ─┼──────────────────────> transaction ─┤ TxnOffsetCommit (all offsets, group generation)
//! worker p5 ─┘ <──── outcome, to each ─── task     └ send the records, EndTxn
//! ```
//!
//! Chunks that arrive while a transaction commits wait and go together in the
//! next one, so a member with many busy partitions runs a few large
//! transactions instead of one per partition and chunk, on one producer
//! instead of one per partition. When a shared transaction fails, its
//! partitions' next chunks run alone until each commits, so one chunk that
//! cannot be written does not hold up every partition of the member.
//!
//! Fencing moves from the transactional id to the group: the group
//! coordinator refuses TxnOffsetCommit from a generation it has moved on
//! from, so a zombie's transaction aborts. A dead member's open transaction
//! holds the offsets of its partitions as pending: the next owner's
//! OffsetFetch (require_stable) waits until it ends, by commit or by the
//! transaction timeout. The records of a transaction reach the log only after
//! its offsets were accepted, so whatever a new owner reads (an aggregate's
//! table, say) is decided once its start offset is.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::error::DeliverError;
use super::lease::Lease;
use crate::invoker::committer::Committer;
use crate::invoker::egress::Outgoing;
use crate::kafka::group::coordinator::Generation;
use crate::kafka::group::protocol::TopicPartition;
use crate::kafka::producer::{advertises_kip447, Producer, ProducerConfig, SendError};
use crate::kafka::Cluster;
use crate::metrics::FunctionMetrics;

/// How long the broker lets one of the member's transactions stay open.
///
/// A transaction opens when its chunks are complete and lives for the few
/// round trips of its commit, so this is far above what a live member needs;
/// it is what a crashed member's partitions wait before their next owner may
/// start (Kafka Streams uses the same 10 s for exactly_once_v2).
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the check that the group coordinator refuses strangers may take
/// before it counts as no (and the function holds a producer per partition).
const PROBE_WAIT: Duration = Duration::from_secs(10);

/// One partition's chunk, waiting for the next transaction.
struct Chunk {
    tp: TopicPartition,
    lease: Lease,
    outgoing: Outgoing,
    commit: Option<i64>,
    done: oneshot::Sender<Result<(), DeliverError>>,
}

/// What the transaction task is handed: a chunk, or a request to say when
/// everything handed in before it has ended.
enum Job {
    Chunk(Chunk),
    Settled(oneshot::Sender<()>),
}

/// The member's transactions: a handle to the task that runs them.
///
/// The task ends when the last handle is dropped (the function stopped).
#[derive(Clone)]
pub struct MemberTransaction {
    chunks: mpsc::UnboundedSender<Job>,
}

impl MemberTransaction {
    /// The settings of the member's producer: `base` with the transactional
    /// id `kfn.<function>.<16 random hex digits>`, unique to this process as
    /// fencing is the group's work here, and a short transaction timeout.
    pub fn producer_config(function: &str, base: &ProducerConfig) -> ProducerConfig {
        ProducerConfig {
            transactional_id: Some(format!("kfn.{function}.{:016x}", rand::random::<u64>())),
            transaction_timeout: TRANSACTION_TIMEOUT,
            ..base.clone()
        }
    }

    /// Whether the member may hold one transaction for all its partitions:
    /// the brokers advertise KIP-447 and the group coordinator refuses a
    /// stranger's offsets for `group` (read on `input`, one of its topics).
    /// Returns the producer that asked, for [`MemberTransaction::start`].
    pub async fn supported(
        cluster: &Cluster,
        config: &ProducerConfig,
        group: &str,
        input: &str,
    ) -> Result<(bool, Option<Producer>), SendError> {
        if !advertises_kip447(cluster).await? {
            return Ok((false, None));
        }
        let producer = Producer::new(cluster.clone(), config.clone()).await?;
        let answer = producer.group_refuses_strangers(group, input, PROBE_WAIT).await?;
        if answer.is_none() {
            tracing::warn!(
                group,
                "cannot tell whether the group coordinator refuses a stranger's transactional offsets \
                 (no clear answer within {PROBE_WAIT:?}); holding one transactional producer per partition"
            );
        }
        Ok((answer == Some(true), Some(producer)))
    }

    /// Starts the member's transaction task with `config` (from
    /// [`MemberTransaction::producer_config`]); `producer`, when given, was
    /// made with it.
    pub fn start(
        function: Arc<str>,
        cluster: Cluster,
        config: ProducerConfig,
        producer: Option<Producer>,
        committer: Arc<Committer>,
        metrics: FunctionMetrics,
    ) -> Self {
        let (chunks, queue) = mpsc::unbounded_channel();
        let task = Task { function, cluster, config, committer, metrics, producer };
        tokio::spawn(task.run(queue));
        MemberTransaction { chunks }
    }

    /// Writes `outgoing` and commits `commit` (the next offset to read of
    /// `tp`) in the member's next transaction, with whatever other partitions
    /// hand in meanwhile, unless `lease` is void by then; returns once that
    /// transaction ended.
    pub async fn deliver(
        &self,
        tp: &TopicPartition,
        lease: &Lease,
        outgoing: Outgoing,
        commit: Option<i64>,
    ) -> Result<(), DeliverError> {
        let (done, outcome) = oneshot::channel();
        let chunk = Chunk { tp: tp.clone(), lease: lease.clone(), outgoing, commit, done };
        self.chunks.send(Job::Chunk(chunk)).map_err(|_| DeliverError::Stopped)?;
        outcome.await.map_err(|_| DeliverError::Stopped)?
    }

    /// Returns once every transaction that began before the call has ended.
    ///
    /// A partition worker starting on a partition waits for this before it
    /// reads the committed offset. The member may have lost the partition and
    /// been given it back while a transaction holding a chunk of it was still
    /// on its way to a group coordinator that was away: when the member keeps
    /// its epoch across such a rejoin (the coordinator accepts a member that
    /// comes back with nothing owned), that transaction's offsets are still
    /// accepted. Read before it ends, the committed offset would be the old
    /// one, and the chunk would be written twice, once by each.
    pub async fn settled(&self) -> Result<(), DeliverError> {
        let (waiter, settled) = oneshot::channel();
        self.chunks.send(Job::Settled(waiter)).map_err(|_| DeliverError::Stopped)?;
        settled.await.map_err(|_| DeliverError::Stopped)
    }
}

/// The task behind [`MemberTransaction`]: its producer, made on first use and
/// again after the broker fenced it.
struct Task {
    function: Arc<str>,
    cluster: Cluster,
    config: ProducerConfig,
    committer: Arc<Committer>,
    metrics: FunctionMetrics,
    producer: Option<Producer>,
}

impl Task {
    async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Job>) {
        // Partitions whose last shared transaction failed: their chunks run
        // alone until one commits, so a chunk that cannot be written (a record
        // too large, a topic denied) holds up its own partition, not the others.
        let mut alone: HashSet<TopicPartition> = HashSet::new();
        while let Some(first) = queue.recv().await {
            let mut jobs = vec![first];
            while let Ok(next) = queue.try_recv() {
                jobs.push(next);
            }
            let mut chunks = Vec::with_capacity(jobs.len());
            let mut settled = Vec::new();
            for job in jobs {
                match job {
                    Job::Chunk(chunk) => chunks.push(chunk),
                    Job::Settled(waiter) => settled.push(waiter),
                }
            }
            let (solo, shared): (Vec<Chunk>, Vec<Chunk>) = chunks.into_iter().partition(|c| alone.contains(&c.tp));
            for chunk in solo {
                let tp = chunk.tp.clone();
                if self.commit(vec![chunk]).await {
                    alone.remove(&tp);
                }
            }
            if !shared.is_empty() {
                let tps: Vec<TopicPartition> = shared.iter().map(|c| c.tp.clone()).collect();
                if !self.commit(shared).await && tps.len() > 1 {
                    alone.extend(tps);
                }
            }
            // Every chunk handed in before these requests has ended, committed or not.
            for waiter in settled {
                let _ = waiter.send(());
            }
        }
    }

    /// Runs `chunks` in one transaction and tells each its outcome; whether it committed.
    async fn commit(&mut self, chunks: Vec<Chunk>) -> bool {
        // The generation first, the leases after (see deliver/lease.rs): a chunk
        // of a partition this member lost (its session given up while the group
        // coordinator was away, say) must not commit under the generation the
        // member holds by then, while the partition runs again from its committed
        // offset here or on another member. Its lease was voided before the member
        // could rejoin, so a generation read now is either the one the partition
        // was held in (refused by the coordinator if the member moved on) or a
        // later one, and then the lease reads void.
        let generation = self.committer.generation();
        let (chunks, stale): (Vec<Chunk>, Vec<Chunk>) =
            chunks.into_iter().partition(|c| c.lease.is_held() && !c.done.is_closed());
        if !stale.is_empty() {
            let partitions: Vec<String> = stale.iter().map(|c| c.tp.to_string()).collect();
            tracing::info!(function = %self.function, ?partitions, "chunks of lost partitions dropped, not committed");
        }
        if chunks.is_empty() {
            return true;
        }
        let Some(generation) = generation else {
            self.metrics.aborted.inc();
            for chunk in chunks {
                let _ = chunk.done.send(Err(DeliverError::Unassigned));
            }
            return false;
        };
        let mut done = Vec::with_capacity(chunks.len());
        let mut outgoing = Vec::with_capacity(chunks.len());
        let mut offsets = BTreeMap::new();
        for chunk in chunks {
            if let Some(offset) = chunk.commit {
                offsets.insert(chunk.tp.clone(), offset);
            }
            outgoing.push(chunk.outgoing);
            done.push((chunk.tp, chunk.done));
        }
        let outcome = self.transaction(&generation, outgoing, &offsets).await;
        for (tp, done) in done {
            let _ = done.send(match &outcome {
                Ok(()) => Ok(()),
                Err(DeliverError::Unassigned) => Err(DeliverError::Unassigned),
                Err(DeliverError::Stopped) => Err(DeliverError::Stopped),
                Err(DeliverError::Send(e)) => Err(DeliverError::Send(e.for_follower(&tp.to_string()))),
            });
        }
        outcome.is_ok()
    }

    /// One transaction: every chunk's records and offsets, all or nothing.
    async fn transaction(
        &mut self,
        generation: &Generation,
        outgoing: Vec<Outgoing>,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), DeliverError> {
        let start = Instant::now();
        let producer = match &self.producer {
            Some(p) => p.clone(),
            None => {
                let p = Producer::new(self.cluster.clone(), self.config.clone()).await?;
                self.producer.insert(p).clone()
            }
        };
        match super::transaction::run(&producer, self.committer.group(), generation, outgoing, offsets).await {
            Ok(()) => {
                self.metrics.committed.inc();
                self.metrics.produce_duration.observe(start.elapsed().as_secs_f64());
                Ok(())
            }
            Err(e) if e.is_fenced() => {
                // The broker bumped the producer's epoch: it aborted a transaction
                // that outlived the timeout. That says nothing about who owns the
                // partitions (the generation does), so the chunks are redone with a
                // new producer rather than their partitions stopped.
                tracing::warn!(function = %self.function, error = %e, "the member's transactional producer was fenced; starting a new one");
                self.metrics.aborted.inc();
                self.producer = None;
                Err(DeliverError::Send(SendError::Abortable(e.to_string())))
            }
            Err(e) => {
                self.metrics.aborted.inc();
                if let Err(abort) = producer.abort().await {
                    // The producer ends it with a new epoch before its next transaction.
                    tracing::warn!(function = %self.function, error = %abort, "aborting the member's transaction failed");
                }
                Err(e.into())
            }
        }
    }
}
