//! The registry's storage: a compacted single-partition topic read by a
//! follower task into [`State`], written through kfn's producer.
//!
//! Reads first catch up with the log's end (best effort: a broker outage
//! serves the last known state). A write, one at a time per instance:
//! 1. reads the log to its end, so it plans against everything written so far;
//! 2. plans its records ([`super::ops`]) and appends them (acks=all, idempotent);
//! 3. reads the log to its new end, applying its own records through the same
//!    rules as everyone else's;
//! 4. if another instance appended a record for the same version between 1
//!    and 2, the earlier record won: this writer removes its own record with a
//!    tombstone and starts again at 1, so its client only hears an answer the
//!    log agrees with.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backoff::Pauses;
use crate::kafka::consumer::{list_offset, LogEnd, PartitionReader};
use crate::kafka::fetch::{FetchLimits, Isolation};
use crate::kafka::group::protocol::TopicPartition;
use crate::kafka::producer::{Compression, Producer, ProducerConfig, ProducerRecord};
use crate::kafka::{Admin, Cluster, KafkaError, NewTopic};

use super::error::{ApiErrorReply, RegistryServerError};
use super::ops::{LogRecord, Plan};
use super::state::{RecordEffect, State};
use super::RegistryConfig;

/// How often a write re-plans after losing a race before giving up.
const MAX_WRITE_ATTEMPTS: u32 = 10;

/// The longest pause before re-planning a write that lost a race.
const MAX_RACE_BACKOFF: Duration = Duration::from_millis(500);

/// How long a read waits for the log before answering from what it has.
const READ_CATCH_UP: Duration = Duration::from_secs(2);

/// How often an idle follower looks for records written by other instances
/// (requests do not wait for it: each one catches up itself).
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// The registry's state and the log behind it; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    cluster: Cluster,
    tp: TopicPartition,
    producer: Producer,
    state: Arc<RwLock<State>>,
    /// The offset the follower has applied everything below.
    applied: watch::Receiver<i64>,
    /// The offset a request waits for the follower to reach.
    wanted: watch::Sender<i64>,
    write_lock: tokio::sync::Mutex<()>,
    writer: String,
    timeout: Duration,
    shutdown: watch::Sender<bool>,
    follower: Mutex<Option<JoinHandle<()>>>,
}

impl Store {
    /// Creates the topic if needed, reads it to its end, and keeps following it.
    pub async fn open(cluster: Cluster, config: &RegistryConfig) -> Result<Store, RegistryServerError> {
        let cluster = private_cluster(&cluster).await?;
        ensure_topic(&cluster, config).await?;
        let producer_config = ProducerConfig {
            // Plain JSON records stay readable with any tool (kcat, console consumer).
            compression: Compression::None,
            linger: Duration::ZERO,
            ..ProducerConfig::default()
        };
        let producer = Producer::new(cluster.clone(), producer_config)
            .await
            .map_err(|source| RegistryServerError::Produce { topic: config.topic.clone(), source })?;
        let tp = TopicPartition::new(config.topic.clone(), 0);
        let state = Arc::new(RwLock::new(State::default()));
        let (applied_tx, applied) = watch::channel(0);
        let (wanted, wanted_rx) = watch::channel(0);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let follower = Follower { tp: tp.clone(), state: state.clone(), applied: applied_tx, wanted: wanted_rx };
        let follower = tokio::spawn(follower.run(cluster.clone(), shutdown_rx));
        let store = Store {
            inner: Arc::new(Inner {
                cluster,
                tp,
                producer,
                state,
                applied,
                wanted,
                write_lock: tokio::sync::Mutex::new(()),
                writer: format!("{:016x}", rand::random::<u64>()),
                timeout: config.timeout,
                shutdown,
                follower: Mutex::new(Some(follower)),
            }),
        };
        store.catch_up(config.load_timeout).await?;
        let (subjects, max_id) = store.with_state(|s| (s.subjects(true, "").len(), s.max_id()));
        tracing::info!(topic = %config.topic, subjects, max_id, "schema registry state loaded");
        Ok(store)
    }

    /// Runs `f` on the state, after catching up with the log if the broker answers in time.
    pub async fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        if let Err(e) = self.catch_up(READ_CATCH_UP.min(self.inner.timeout)).await {
            tracing::warn!(topic = %self.inner.tp.topic, error = %e, "answering from the last known state");
        }
        self.with_state(f)
    }

    /// Plans a write against the caught-up state, appends it, and answers once
    /// the log agrees (see the module docs).
    pub async fn write<T>(&self, plan: impl Fn(&State) -> Result<Plan<T>, ApiErrorReply>) -> Result<T, ApiErrorReply> {
        let _one_writer = self.inner.write_lock.lock().await;
        // Two instances that retry in lockstep would collide again: random
        // pauses let one of them through first. Each pause lies between its
        // step (10 ms doubling) and twice it, up to MAX_RACE_BACKOFF; before
        // backoff.rs it was anywhere from 0 to 20 ms << attempt, which could
        // be no pause at all.
        let mut pauses = Pauses::jittered(Duration::from_millis(10), MAX_RACE_BACKOFF / 2);
        for attempt in 1..=MAX_WRITE_ATTEMPTS {
            self.catch_up(self.inner.timeout).await?;
            let (records, answer, claim) = match self.with_state(&plan)? {
                Plan::Ready(answer) => return Ok(answer),
                Plan::Write { records, answer, claim } => (records, answer, claim),
            };
            self.append(records).await?;
            self.catch_up(self.inner.timeout).await?;
            match claim {
                Some(claim) if !self.with_state(|s| claim.held(s)) => {
                    tracing::info!(
                        subject = %claim.subject,
                        version = claim.version,
                        attempt,
                        "another registry instance took this version first; retrying"
                    );
                    self.append(vec![(claim.key, None)]).await?;
                    pauses.pause().await;
                }
                _ => return Ok(answer),
            }
        }
        Err(ApiErrorReply::backend(format!(
            "gave up after {MAX_WRITE_ATTEMPTS} attempts: other registry instances kept writing the same subject"
        )))
    }

    /// The writer id this instance puts in its keys.
    pub fn writer(&self) -> &str {
        &self.inner.writer
    }

    /// Stops following the log.
    pub async fn close(&self) {
        let _ = self.inner.shutdown.send(true);
        let follower = self.inner.follower.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(follower) = follower {
            let _ = follower.await;
        }
    }

    fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let state = self.inner.state.read().unwrap_or_else(|p| p.into_inner());
        f(&state)
    }

    async fn append(&self, records: Vec<LogRecord>) -> Result<(), ApiErrorReply> {
        let now = kfn_sdk::now_ms();
        let records = records.into_iter().map(|(key, value)| ProducerRecord::new(Some(key), value, now)).collect();
        self.inner.producer.send(&self.inner.tp, records).await.map_err(|e| {
            ApiErrorReply::from(RegistryServerError::Produce { topic: self.inner.tp.topic.clone(), source: e })
        })?;
        Ok(())
    }

    /// Waits until the follower has applied every record up to the log's current end.
    async fn catch_up(&self, timeout: Duration) -> Result<(), RegistryServerError> {
        let topic = &self.inner.tp.topic;
        let deadline = tokio::time::Instant::now() + timeout;
        let end = tokio::time::timeout_at(
            deadline,
            list_offset(&self.inner.cluster, &self.inner.tp, LogEnd::Latest, Isolation::ReadCommitted),
        )
        .await
        .map_err(|_| RegistryServerError::CatchUpTimeout {
            topic: topic.clone(),
            target: -1,
            seconds: timeout.as_secs(),
        })?
        .map_err(|source| RegistryServerError::Kafka {
            context: format!("finding the end of topic {topic}"),
            source,
        })?;
        self.inner.wanted.send_if_modified(|wanted| {
            let behind = *wanted < end;
            *wanted = (*wanted).max(end);
            behind
        });
        let mut applied = self.inner.applied.clone();
        let reached = tokio::time::timeout_at(deadline, async {
            applied.wait_for(|&position| position >= end).await.map(|_| ())
        })
        .await;
        match reached {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(RegistryServerError::ReaderStopped { topic: topic.clone() }),
            Err(_) => Err(RegistryServerError::CatchUpTimeout {
                topic: topic.clone(),
                target: end,
                seconds: timeout.as_secs(),
            }),
        }
    }
}

/// Creates the topic (1 partition, compacted) unless it exists, and checks it has one partition.
async fn ensure_topic(cluster: &Cluster, config: &RegistryConfig) -> Result<(), RegistryServerError> {
    let topic = &config.topic;
    let new = NewTopic {
        name: topic.clone(),
        partitions: 1,
        replication: config.replication,
        configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
    };
    let outcome = Admin::new(cluster.clone())
        .create_topics(&[new])
        .await
        .map_err(|source| RegistryServerError::Kafka { context: format!("creating topic {topic}"), source })?;
    tracing::debug!(topic = %topic, ?outcome, "schema registry topic");
    // Metadata of a topic just created can lag behind on other brokers.
    let deadline = tokio::time::Instant::now() + config.load_timeout;
    let mut pauses = Pauses::new(Duration::from_millis(50), Duration::from_secs(1)).until(deadline);
    let info = loop {
        cluster.invalidate(topic);
        match cluster.topic(topic).await {
            Ok(info) if !info.partitions.is_empty() && info.partitions.iter().all(|p| p.leader >= 0) => break info,
            Ok(_) | Err(KafkaError::Broker { .. }) if !pauses.expired() => {}
            Ok(info) => break info,
            Err(source) => {
                return Err(RegistryServerError::Kafka { context: format!("describing topic {topic}"), source })
            }
        }
        pauses.pause().await;
    };
    if info.partitions.len() != 1 {
        return Err(RegistryServerError::TopicLayout { topic: topic.clone(), partitions: info.partitions.len() });
    }
    Ok(())
}

/// The registry's own connections to the cluster.
///
/// A broker answers the requests of one connection in order, so sharing
/// connections with consumers whose fetches long-poll would hold every
/// registry request behind their wait. The broker `shared` reaches first
/// becomes the bootstrap; metadata then names the others.
async fn private_cluster(shared: &Cluster) -> Result<Cluster, RegistryServerError> {
    let conn = shared
        .any_connection()
        .await
        .map_err(|source| RegistryServerError::Kafka { context: "connecting to the cluster".into(), source })?;
    let mut options = shared.options().clone();
    options.client_id = format!("{}-schema-registry", options.client_id);
    Ok(Cluster::new(vec![conn.broker().to_string()], options))
}

/// Reads the log from its start for as long as the store lives: at once when
/// a request waits for an offset, else every [`FOLLOW_EVERY`].
///
/// Fetches do not long-poll: the store's other requests share the follower's
/// connections and would queue behind a waiting fetch.
struct Follower {
    tp: TopicPartition,
    state: Arc<RwLock<State>>,
    applied: watch::Sender<i64>,
    wanted: watch::Receiver<i64>,
}

impl Follower {
    async fn run(mut self, cluster: Cluster, mut shutdown: watch::Receiver<bool>) {
        // 1 ms, not 0: tansu leaves a Fetch with max_wait_ms 0 unanswered.
        let limits = FetchLimits { max_wait: Duration::from_millis(1), ..FetchLimits::default() };
        let mut reader = PartitionReader::new(cluster, self.tp.clone(), 0, Isolation::ReadCommitted, LogEnd::Earliest)
            .with_limits(limits);
        let mut tick = tokio::time::interval(FOLLOW_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if reader.position() >= *self.wanted.borrow_and_update() {
                tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => return,
                    _ = self.wanted.changed() => {}
                    _ = tick.tick() => {}
                }
            }
            let batch = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                batch = reader.next() => batch,
            };
            match batch {
                Ok(decoded) => {
                    self.apply(&decoded.records);
                    self.applied.send_replace(reader.position());
                }
                Err(e) => {
                    tracing::warn!(topic = %self.tp.topic, error = %e, "reading the schemas log failed; retrying");
                    tokio::select! {
                        _ = shutdown.wait_for(|stop| *stop) => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    fn apply(&self, records: &[crate::kafka::fetch::ConsumedRecord]) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        for record in records {
            match state.apply(record.offset, record.key.as_ref(), record.value.as_ref()) {
                RecordEffect::Changed => {}
                RecordEffect::Ignored(reason) => {
                    tracing::debug!(topic = %self.tp.topic, offset = record.offset, %reason, "record lost a race")
                }
                RecordEffect::Skipped(reason) => {
                    tracing::warn!(topic = %self.tp.topic, offset = record.offset, %reason, "record skipped")
                }
            }
        }
    }
}
