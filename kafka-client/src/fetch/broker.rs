//! One fetch per broker: the partitions a process reads from one leader
//! share one connection and one Fetch request (a KIP-227 session where the
//! broker keeps one), and each partition's part of the answer goes to the
//! reader that asked for it. The only part of `fetch/` that does I/O.
//!
//! ```text
//! PartitionReader (one per partition worker)
//!   | FetchSlot::fetch(offset)          one request outstanding per partition
//!   v
//! BrokerFetcher task (one per leader, isolation and fetch limits; Cluster::fetch_slot)
//!   | Fetch: the partitions asked for, incremental in a session
//!   v
//! broker -> each partition's PartitionData back to its reader, decoded there
//! ```
//!
//! A Fetch names a partition once, so a fetcher holds each partition for one
//! reader: a second reader of the same partition in the process (another
//! function reading the same topic) gets a second fetcher of that broker.
//! Connections grow with brokers times the most readers of one partition,
//! not with partitions.
//!
//! Back-pressure is per partition: a partition is in a fetch only while its
//! reader waits for records, so a worker still busy with its last records is
//! left out (and forgotten by the session) until it asks again; a slow worker
//! never holds up the others. The broker may hold a fetch (its max wait) only
//! while every partition of the fetcher is in it: while some are left out
//! the fetch waits at most [`SHORT_WAIT`], so that a partition asking again
//! soon is not stuck behind a long poll that does not include it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::FetchRequest;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use super::request::FetchLimits;
use super::session::{FetchSession, Wanted};
use super::Isolation;
use crate::conn::{Connection, Dial};
use crate::error::KafkaError;
use crate::group::protocol::TopicPartition;

/// Highest Fetch version kfn uses: v13 switches from topic names to topic ids.
pub(crate) const FETCH_CAP: i16 = 12;

/// The longest the broker may hold a fetch that leaves out some of the
/// fetcher's partitions (their workers are busy).
///
/// Under load some partition is nearly always out, so this sets how often a
/// busy fetcher asks the broker: 5 ms cost the broker of the order system at
/// 190 orders/s 730 fetches a second, 20 ms 500, and its end-to-end p50 fell
/// by a third (docs/benchmarks.md).
pub const SHORT_WAIT: Duration = Duration::from_millis(20);

/// What readers share a fetcher by: the leader and the request-wide settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FetcherKey {
    /// The leader's host:port.
    pub addr: String,
    /// The fetch's isolation level.
    pub isolation: Isolation,
    /// The broker's max wait.
    pub max_wait: Duration,
    /// The bytes the broker waits for.
    pub min_bytes: i32,
    /// The most bytes of a response.
    pub max_bytes: i32,
}

impl FetcherKey {
    /// The key of readers of the broker at `addr` with these settings.
    pub fn new(addr: String, isolation: Isolation, limits: &FetchLimits) -> Self {
        Self { addr, isolation, max_wait: limits.max_wait, min_bytes: limits.min_bytes, max_bytes: limits.max_bytes }
    }
}

/// The fetchers of a cluster, by key: as many per key as the most readers of
/// one partition.
pub(crate) type Fetchers = Arc<Mutex<HashMap<FetcherKey, Vec<Arc<BrokerFetcher>>>>>;

/// One partition's request waiting for the next fetch.
struct Want {
    wanted: Wanted,
    /// Not fetched before this instant (read_committed waiting for a marker).
    not_before: Option<Instant>,
    /// When the reader asked: an answer without news comes after the max wait.
    asked: Instant,
    reply: oneshot::Sender<Result<PartitionData, KafkaError>>,
}

#[derive(Default)]
struct State {
    wants: HashMap<TopicPartition, Want>,
    /// The partitions whose readers hold a slot, one reader each; the task
    /// ends when the last one goes.
    held: HashSet<TopicPartition>,
    stopped: bool,
    /// The latest offsets marks seen of each partition, for answers without news.
    marks: HashMap<TopicPartition, (i64, i64, i64)>,
}

/// The fetcher of one broker: a task sending one fetch at a time.
pub(crate) struct BrokerFetcher {
    key: FetcherKey,
    state: Mutex<State>,
    wake: Notify,
}

impl BrokerFetcher {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A reader's place in a broker's fetcher; dropping it takes the partition
/// out of the fetcher, and the last slot's drop ends the fetcher's task.
pub struct FetchSlot {
    fetcher: Arc<BrokerFetcher>,
    fetchers: Fetchers,
    tp: TopicPartition,
}

impl std::fmt::Debug for FetchSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchSlot").field("broker", &self.fetcher.key.addr).field("partition", &self.tp).finish()
    }
}

impl FetchSlot {
    /// A slot for `tp` in a fetcher of `key` that holds no other reader of
    /// `tp`, starting one if every running fetcher does.
    pub(crate) fn open(dial: Arc<dyn Dial>, fetchers: &Fetchers, key: FetcherKey, tp: TopicPartition) -> Self {
        let mut all = fetchers.lock().unwrap_or_else(|p| p.into_inner());
        let same_key = all.entry(key.clone()).or_default();
        let free = same_key.iter().find(|f| {
            let mut state = f.state();
            // Under the registry's lock: a fetcher found here is not ending (its last drop takes it out first).
            state.held.insert(tp.clone())
        });
        let fetcher = match free {
            Some(f) => f.clone(),
            None => {
                let fetcher =
                    Arc::new(BrokerFetcher { key: key.clone(), state: Mutex::default(), wake: Notify::new() });
                fetcher.state().held.insert(tp.clone());
                tokio::spawn(run(fetcher.clone(), dial));
                same_key.push(fetcher.clone());
                fetcher
            }
        };
        drop(all);
        Self { fetcher, fetchers: fetchers.clone(), tp }
    }

    /// The broker this slot fetches from.
    pub fn addr(&self) -> &str {
        &self.fetcher.key.addr
    }

    /// The partition's part of the next fetch that includes it from `wanted`
    /// (not before `not_before`), or, after the max wait without news, an
    /// answer without records carrying the latest offsets marks.
    pub async fn fetch(
        &self,
        wanted: Wanted,
        not_before: Option<std::time::Instant>,
    ) -> Result<PartitionData, KafkaError> {
        let (reply, answer) = oneshot::channel();
        let want = Want { wanted, not_before: not_before.map(Instant::from_std), asked: Instant::now(), reply };
        self.fetcher.state().wants.insert(self.tp.clone(), want);
        self.fetcher.wake.notify_one();
        answer.await.unwrap_or_else(|_| {
            Err(KafkaError::Disconnected {
                broker: self.fetcher.key.addr.clone(),
                reason: "the broker's fetcher stopped".into(),
            })
        })
    }
}

impl Drop for FetchSlot {
    fn drop(&mut self) {
        // The registry's lock first, as in `open`, so no slot joins a fetcher that is ending.
        let mut all = self.fetchers.lock().unwrap_or_else(|p| p.into_inner());
        let mut state = self.fetcher.state();
        state.wants.remove(&self.tp);
        state.marks.remove(&self.tp);
        state.held.remove(&self.tp);
        if state.held.is_empty() {
            state.stopped = true;
            drop(state);
            if let Some(same_key) = all.get_mut(&self.fetcher.key) {
                same_key.retain(|f| !Arc::ptr_eq(f, &self.fetcher));
                if same_key.is_empty() {
                    all.remove(&self.fetcher.key);
                }
            }
            self.fetcher.wake.notify_one();
        }
    }
}

/// What one round fetches.
struct Round {
    wanted: BTreeMap<TopicPartition, Wanted>,
    /// Whether every partition of the fetcher is in it (the broker may hold it the whole max wait).
    everyone: bool,
}

/// The fetcher's task: fetch what is wanted, hand out the answers, until the last slot goes.
async fn run(fetcher: Arc<BrokerFetcher>, dial: Arc<dyn Dial>) {
    let key = fetcher.key.clone();
    let mut conn: Option<Connection> = None;
    let mut session = FetchSession::default();
    tracing::debug!(broker = %key.addr, "broker fetcher started");
    loop {
        let woken = fetcher.wake.notified();
        let (round, next_wake) = match next_round(&fetcher) {
            Some(r) => r,
            None => break,
        };
        let Some(round) = round else {
            match next_wake {
                Some(at) => {
                    tokio::select! {
                        _ = woken => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => woken.await,
            }
            continue;
        };
        let c = match &conn {
            Some(c) if !c.is_closed() => c.clone(),
            _ => {
                session.reset();
                match dial.dial(&key.addr).await {
                    Ok(c) => {
                        conn = Some(c.clone());
                        c
                    }
                    Err(e) => {
                        fail(&fetcher, &round.wanted, &e);
                        continue;
                    }
                }
            }
        };
        let max_wait = if round.everyone { key.max_wait } else { key.max_wait.min(SHORT_WAIT) };
        let limits = FetchLimits { max_wait, min_bytes: key.min_bytes, max_bytes: key.max_bytes, ..Default::default() };
        let result = match c.version_capped::<FetchRequest>(FETCH_CAP) {
            Ok(version) => {
                let request = session.request(&round.wanted, &limits, key.isolation);
                c.send_decoded(&request, version, max_wait, super::response::decode).await
            }
            Err(e) => Err(e),
        };
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                // The session's state is unknown after a failed request.
                session.reset();
                fail(&fetcher, &round.wanted, &e);
                continue;
            }
        };
        session.answered(response.error_code, response.session_id);
        if response.error_code != 0 {
            let session_error = matches!(
                kafka_protocol::ResponseError::try_from_code(response.error_code),
                Some(
                    kafka_protocol::ResponseError::FetchSessionIdNotFound
                        | kafka_protocol::ResponseError::InvalidFetchSessionEpoch
                )
            );
            if !session_error {
                let e = KafkaError::Broker { api: "Fetch", code: response.error_code, context: key.addr.clone() };
                fail(&fetcher, &round.wanted, &e);
            }
            // A lost session: the same partitions again, in a full fetch.
            continue;
        }
        deliver(&fetcher, &round.wanted, response.responses);
    }
    tracing::debug!(broker = %key.addr, "broker fetcher stopped");
}

/// The partitions to fetch now and when the next one's pause ends; None once stopped.
#[allow(clippy::type_complexity)]
fn next_round(fetcher: &BrokerFetcher) -> Option<(Option<Round>, Option<Instant>)> {
    let mut state = fetcher.state();
    if state.stopped {
        return None;
    }
    // A reader that stopped waiting (its worker was stopped) wants nothing.
    state.wants.retain(|_, w| !w.reply.is_closed());
    let now = Instant::now();
    let mut wanted = BTreeMap::new();
    let mut next_wake: Option<Instant> = None;
    let mut paused = 0;
    for (tp, want) in &state.wants {
        match want.not_before {
            Some(at) if at > now => {
                paused += 1;
                next_wake = Some(next_wake.map_or(at, |w| w.min(at)));
            }
            _ => {
                wanted.insert(tp.clone(), want.wanted);
            }
        }
    }
    if wanted.is_empty() {
        return Some((None, next_wake));
    }
    // Paused partitions do not count: they will not ask again before their pause ends.
    let everyone = wanted.len() + paused >= state.held.len();
    Some((Some(Round { wanted, everyone }), next_wake))
}

/// Hands each partition of the answer to its reader, if it still waits for
/// that offset; readers that waited the max wait without news get an empty answer.
fn deliver(
    fetcher: &BrokerFetcher,
    wanted: &BTreeMap<TopicPartition, Wanted>,
    responses: Vec<kafka_protocol::messages::fetch_response::FetchableTopicResponse>,
) {
    let mut state = fetcher.state();
    for topic in responses {
        let name = topic.topic.0.to_string();
        for data in topic.partitions {
            let tp = TopicPartition::new(name.clone(), data.partition_index);
            if data.error_code == 0 {
                state.marks.insert(tp.clone(), (data.high_watermark, data.last_stable_offset, data.log_start_offset));
            }
            let asked = wanted.get(&tp).map(|w| w.fetch_offset);
            let waiting = state.wants.get(&tp).map(|w| w.wanted.fetch_offset);
            // Neither records nor an error is no news: the reader keeps
            // waiting (in the session) and hears of its marks with the stale
            // ones below. A broker answers at once for a partition added to
            // its fetch session, so answering the reader would have it leave
            // the next round while it asks again, be forgotten by the
            // session, be added back, be answered at once, and so on:
            // a fetch every few milliseconds with nothing in it.
            let news = data.error_code != 0 || data.records.as_ref().is_some_and(|r| !r.is_empty());
            // An answer for an offset the reader no longer waits at (it was stopped and asked again) is dropped.
            if news && asked.is_some() && asked == waiting {
                if let Some(want) = state.wants.remove(&tp) {
                    let _ = want.reply.send(Ok(data));
                }
            }
        }
    }
    // Partitions without news (an incremental answer leaves them out) hear
    // so about once per max wait, with their latest marks: for lag and the
    // held-at-LSO warning. Once one of them has waited the max wait, all of
    // the round's hear it together. Answered one by one, each at its own
    // max wait after it asked, their asks drift apart, and one of them is
    // nearly always between its answer and its next ask: every round is
    // then a short one, and an idle process polled the broker every few
    // milliseconds on each fetcher.
    let due = state.wants.iter().any(|(tp, w)| wanted.contains_key(tp) && w.asked.elapsed() >= fetcher.key.max_wait);
    if !due {
        return;
    }
    let stale: Vec<TopicPartition> =
        state.wants.keys().filter(|tp| wanted.contains_key(*tp) && state.marks.contains_key(*tp)).cloned().collect();
    for tp in stale {
        let (high_watermark, last_stable_offset, log_start_offset) = state.marks[&tp];
        if let Some(want) = state.wants.remove(&tp) {
            let data = PartitionData::default()
                .with_partition_index(tp.partition)
                .with_high_watermark(high_watermark)
                .with_last_stable_offset(last_stable_offset)
                .with_log_start_offset(log_start_offset);
            let _ = want.reply.send(Ok(data));
        }
    }
}

/// Fails the round's readers with a copy of `error`; they retry as they see fit.
fn fail(fetcher: &BrokerFetcher, wanted: &BTreeMap<TopicPartition, Wanted>, error: &KafkaError) {
    let mut state = fetcher.state();
    for tp in wanted.keys() {
        if let Some(want) = state.wants.remove(tp) {
            let _ = want.reply.send(Err(error.copy_for("Fetch")));
        }
    }
}
