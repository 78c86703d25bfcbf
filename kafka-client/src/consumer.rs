//! Reading one partition: fetch from its leader, decode with the
//! read_committed filter, follow leader moves, reset out-of-range offsets.
//!
//! A [`PartitionReader`] is a handle on the fetcher of its partition's leader
//! ([`crate::fetch::broker`]): the readers of one broker share one
//! connection and one Fetch request, and each decodes its own part.

use std::time::Duration;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::cluster::Cluster;
use super::error::KafkaError;
use super::fetch::broker::{FetchSlot, FetcherKey};
use super::fetch::{
    decode_partition, decode_partition_with, DecodedPartition, FetchError, FetchLimits, Isolation, Undecided, Wanted,
};
use super::group::protocol::TopicPartition;
use crate::backoff::Pauses;

/// The most bytes per partition a fetch may grow to while looking for the
/// marker of a transaction cut off by the fetch size.
const UNDECIDED_FETCH_CAP: i32 = 64 << 20;

/// Which end of a partition's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogEnd {
    /// The first offset still kept.
    Earliest,
    /// The offset the next record will get (read_committed: the last stable offset).
    Latest,
}

/// Pauses between failed fetches of one reader: 100 ms doubling to 2 s.
fn fetch_pauses() -> Pauses {
    Pauses::new(Duration::from_millis(100), Duration::from_secs(2))
}

/// The offset at one end of a partition's log.
///
/// Follows leadership: a moved leader (NOT_LEADER_OR_FOLLOWER after a broker
/// failed over) or a lost connection refreshes the metadata and asks again,
/// for up to the request timeout.
pub async fn list_offset(
    cluster: &Cluster,
    tp: &TopicPartition,
    end: LogEnd,
    isolation: Isolation,
) -> Result<i64, KafkaError> {
    use backon::Retryable;
    let backoff = crate::backoff::within(cluster.options().request_timeout);
    (|| list_offset_once(cluster, tp, end, isolation))
        .retry(backoff)
        .when(KafkaError::is_retriable)
        .notify(|_, _| cluster.invalidate(&tp.topic))
        .await
}

async fn list_offset_once(
    cluster: &Cluster,
    tp: &TopicPartition,
    end: LogEnd,
    isolation: Isolation,
) -> Result<i64, KafkaError> {
    let conn = cluster.leader(&tp.topic, tp.partition).await?;
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation.wire_level())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(tp.topic.clone())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(tp.partition)
                .with_current_leader_epoch(-1)
                .with_timestamp(match end {
                    LogEnd::Earliest => -2,
                    LogEnd::Latest => -1,
                })])]);
    let response = conn.send(&request).await?;
    let partition = response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == tp.partition)
        .ok_or_else(|| KafkaError::Codec { api: "ListOffsets", message: format!("no answer for {tp}") })?;
    KafkaError::check("ListOffsets", partition.error_code, || tp.to_string())?;
    Ok(partition.offset)
}

/// Reads a partition from its first kept offset to the end it had when
/// opened: for restoring state and for tools that read a whole topic.
///
/// Some brokers (tansu 0.6) answer ListOffsets(latest) with the base offset of
/// the partition's last batch + 1, short of that batch's later records; the
/// first fetch's last stable offset (or high watermark) corrects the end.
pub struct ReadToEnd {
    reader: PartitionReader,
    end: i64,
    corrected: bool,
}

impl ReadToEnd {
    /// Finds the partition's ends; reading starts at the first kept offset.
    pub async fn open(cluster: &Cluster, tp: &TopicPartition, isolation: Isolation) -> Result<Self, KafkaError> {
        // read_committed: the last stable offset, below which every transaction is decided.
        Self::open_to(cluster, tp, isolation, isolation).await
    }

    /// Reads with `isolation` up to the end that ListOffsets gives with `end_isolation`.
    async fn open_to(
        cluster: &Cluster,
        tp: &TopicPartition,
        isolation: Isolation,
        end_isolation: Isolation,
    ) -> Result<Self, KafkaError> {
        let start = list_offset(cluster, tp, LogEnd::Earliest, isolation).await?;
        let end = list_offset(cluster, tp, LogEnd::Latest, end_isolation).await?;
        let reader = PartitionReader::new(cluster.clone(), tp.clone(), start, isolation, LogEnd::Earliest);
        // An empty log is empty on every broker: the short answer is at least the last base offset + 1.
        Ok(Self { reader, end, corrected: end <= start })
    }

    /// Reads read_committed to the partition's high watermark, not its last
    /// stable offset: every record written before the call, each of whose
    /// transactions must be decided before reading passes it.
    ///
    /// A new owner restoring an aggregate's state needs this. The previous
    /// owner's last transaction commits its input offsets and its table rows
    /// together, but the commit markers reach the partitions one by one: the
    /// offsets can read as committed while this partition's last stable offset
    /// still stops short of that transaction's rows. An end at the last stable
    /// offset would restore a state without them, and fold on from after them.
    pub async fn open_decided(cluster: &Cluster, tp: &TopicPartition) -> Result<Self, KafkaError> {
        Self::open_to(cluster, tp, Isolation::ReadCommitted, Isolation::ReadUncommitted).await
    }

    /// The next records below the end, or None once the end is reached (an
    /// empty list when the broker sent nothing this time).
    pub async fn next(&mut self) -> Result<Option<Vec<super::fetch::ConsumedRecord>>, KafkaError> {
        if self.corrected && self.reader.position() >= self.end {
            return Ok(None);
        }
        let batch = self.reader.next().await?;
        if !std::mem::replace(&mut self.corrected, true) {
            let fetched = if batch.last_stable_offset >= 0 { batch.last_stable_offset } else { batch.high_watermark };
            self.end = self.end.max(fetched);
        }
        let end = self.end;
        Ok(Some(batch.records.into_iter().filter(|r| r.offset < end).collect()))
    }

    /// The next offset to read.
    pub fn position(&self) -> i64 {
        self.reader.position()
    }

    /// The offset reading stops at.
    pub fn end(&self) -> i64 {
        self.end
    }
}

/// Reads one partition from a position, batch by batch.
pub struct PartitionReader {
    cluster: Cluster,
    tp: TopicPartition,
    position: i64,
    isolation: Isolation,
    limits: FetchLimits,
    reset: LogEnd,
    /// Pauses between failed fetches; restarted by each successful one.
    pauses: Pauses,
    /// Whether the warning about trusting the broker's aborted list was logged.
    warned_trusting_broker: bool,
    /// The reader's place in its leader's fetcher.
    slot: Option<FetchSlot>,
    /// Where and since when fetches bring nothing though the log holds more.
    held: Option<Held>,
}

/// A reader standing still below the high watermark: with read_committed, a
/// transaction left open holds it at the last stable offset.
struct Held {
    offset: i64,
    since: std::time::Instant,
    warned: bool,
}

/// How long a reader may stand still below the high watermark before it says so.
///
/// Above kfn's transaction timeout (60 s), after which Apache Kafka aborts a
/// transaction its producer abandoned.
const HELD_WARNING: Duration = Duration::from_secs(90);

impl PartitionReader {
    /// A reader of `tp` starting at `position`; an out-of-range position resets to `reset`.
    pub fn new(cluster: Cluster, tp: TopicPartition, position: i64, isolation: Isolation, reset: LogEnd) -> Self {
        Self {
            cluster,
            tp,
            position,
            isolation,
            limits: FetchLimits::default(),
            reset,
            pauses: fetch_pauses(),
            warned_trusting_broker: false,
            slot: None,
            held: None,
        }
    }

    /// Sets how long the broker may wait for records and how much it may send.
    ///
    /// Readers share their leader's fetch only with readers of the same
    /// isolation, max wait, min bytes and max bytes.
    pub fn with_limits(mut self, limits: FetchLimits) -> Self {
        self.limits = limits;
        self.slot = None;
        self
    }

    /// The partition read.
    pub fn partition(&self) -> &TopicPartition {
        &self.tp
    }

    /// The next offset to read.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// Moves the position.
    pub fn seek(&mut self, offset: i64) {
        self.position = offset;
    }

    /// The next batch of records (possibly empty after the broker's max wait).
    ///
    /// Retriable problems (leader moved, connection lost, broker restarting)
    /// are retried here with backoff; the caller sees only what retrying cannot fix.
    pub async fn next(&mut self) -> Result<DecodedPartition, KafkaError> {
        loop {
            match self.fetch_once().await {
                Ok(decoded) => {
                    self.pauses = fetch_pauses();
                    self.position = decoded.next_fetch_offset;
                    self.watch_for_a_stall(&decoded);
                    return Ok(decoded);
                }
                Err(e) if e.is_retriable() || self.is_metadata_error(&e) => {
                    self.cluster.invalidate(&self.tp.topic);
                    tracing::debug!(partition = %self.tp, error = %e, "fetch failed; retrying");
                    self.pauses.pause().await;
                }
                Err(e) if e.response_error() == Some(ResponseError::OffsetOutOfRange) => {
                    // OFFSET_OUT_OF_RANGE: the records were deleted (retention) or never written,
                    // or the broker answering was not up to date (a leader that just took over, a
                    // restarting broker). Reset only when the log's own ends say the position is
                    // outside: a reset that is not needed skips records.
                    let earliest = list_offset(&self.cluster, &self.tp, LogEnd::Earliest, self.isolation).await?;
                    let latest =
                        list_offset(&self.cluster, &self.tp, LogEnd::Latest, Isolation::ReadUncommitted).await?;
                    if (earliest..=latest).contains(&self.position) {
                        tracing::debug!(partition = %self.tp, position = self.position, earliest, latest,
                            "offset out of range, but inside the log; retrying");
                        self.cluster.invalidate(&self.tp.topic);
                        self.pauses.pause().await;
                        continue;
                    }
                    let offset = list_offset(&self.cluster, &self.tp, self.reset, self.isolation).await?;
                    tracing::warn!(partition = %self.tp, from = self.position, to = offset, earliest, latest,
                        "offset out of range; reset");
                    self.position = offset;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Warns once when fetches bring nothing for [`HELD_WARNING`] though the log
    /// holds more records: a stall that would otherwise be silent.
    fn watch_for_a_stall(&mut self, decoded: &DecodedPartition) {
        let behind = decoded.records.is_empty() && decoded.high_watermark > decoded.next_fetch_offset;
        if !behind {
            self.held = None;
            return;
        }
        let offset = decoded.next_fetch_offset;
        let held = match &mut self.held {
            Some(h) if h.offset == offset => h,
            _ => self.held.insert(Held { offset, since: std::time::Instant::now(), warned: false }),
        };
        if !held.warned && held.since.elapsed() >= HELD_WARNING {
            held.warned = true;
            tracing::warn!(
                partition = %self.tp, offset, high_watermark = decoded.high_watermark,
                last_stable_offset = decoded.last_stable_offset, seconds = held.since.elapsed().as_secs(),
                "no record delivered though the log holds more: a transaction left open holds read_committed \
                 readers at the last stable offset until it ends (Apache Kafka aborts it after its producer's \
                 transaction timeout; tansu only when its transactional id is initialised again)"
            );
        }
    }

    fn is_metadata_error(&self, e: &KafkaError) -> bool {
        use ResponseError::{
            FencedLeaderEpoch, LeaderNotAvailable, NotLeaderOrFollower, UnknownLeaderEpoch, UnknownTopicOrPartition,
        };
        matches!(
            e.response_error(),
            Some(
                NotLeaderOrFollower
                    | UnknownTopicOrPartition
                    | LeaderNotAvailable
                    | FencedLeaderEpoch
                    | UnknownLeaderEpoch
            )
        )
    }

    async fn fetch_once(&mut self) -> Result<DecodedPartition, KafkaError> {
        // Set once an answer was held back by a transaction open on the
        // broker: it answers at once while it has records at the position, so
        // the next fetch of this partition waits for the max wait instead of
        // spinning (the shared request's min bytes cannot ask for more).
        let mut not_before: Option<std::time::Instant> = None;
        loop {
            let info = self.cluster.topic(&self.tp.topic).await?;
            let addr = self.cluster.leader_addr(&self.tp.topic, self.tp.partition).await?;
            let slot = match &self.slot {
                Some(s) if s.addr() == addr => s,
                _ => {
                    // A new leader: leave the old broker's fetcher first.
                    self.slot = None;
                    let key = FetcherKey::new(addr, self.isolation, &self.limits);
                    self.slot.insert(self.cluster.fetch_slot(key, self.tp.clone()))
                }
            };
            let wanted = Wanted {
                topic_id: info.id,
                fetch_offset: self.position,
                partition_max_bytes: self.limits.partition_max_bytes,
            };
            let data = slot.fetch(wanted, not_before).await?;
            let data = &data;
            return match decode_partition(&self.tp.topic, data, self.position, self.isolation) {
                // Nothing deliverable, the transaction open on the broker:
                // wait once for more, then return empty.
                Ok(DecodedPartition { held_back: Some(held), next_fetch_offset, .. })
                    if !held.cut_short && next_fetch_offset == self.position && not_before.is_none() =>
                {
                    not_before = Some(std::time::Instant::now() + self.limits.max_wait);
                    continue;
                }
                // Nothing deliverable because the response may have stopped
                // before a transaction's marker: grow the fetch, then, at the
                // cap, trust the broker's aborted list for this response.
                Ok(DecodedPartition { held_back: Some(held), next_fetch_offset, .. })
                    if held.cut_short && next_fetch_offset == self.position =>
                {
                    if self.limits.partition_max_bytes < UNDECIDED_FETCH_CAP {
                        // Per partition only: the request-wide max bytes stays (the broker
                        // always sends a partition's first batch whole, KIP-74).
                        self.limits.partition_max_bytes = self.limits.partition_max_bytes.saturating_mul(2);
                        continue;
                    }
                    if !self.warned_trusting_broker {
                        self.warned_trusting_broker = true;
                        tracing::warn!(
                            partition = %self.tp,
                            offset = held.first_offset,
                            producer_id = held.producer_id,
                            partition_max_bytes = self.limits.partition_max_bytes,
                            "no fetch size reaches this transaction's marker; trusting the broker's aborted list, \
                             exact on Apache Kafka but not on brokers that send aborted records unlisted"
                        );
                    }
                    decode_partition_with(&self.tp.topic, data, self.position, self.isolation, Undecided::TrustBroker)
                        .map_err(|e| KafkaError::Codec { api: "Fetch", message: e.to_string() })
                }
                Ok(decoded) => Ok(decoded),
                Err(FetchError::Broker { error, .. }) => {
                    Err(KafkaError::Broker { api: "Fetch", code: error.code(), context: self.tp.to_string() })
                }
                Err(FetchError::BatchTooLarge { .. }) if self.limits.partition_max_bytes < (256 << 20) => {
                    // One batch is bigger than a fetch may carry: ask for more.
                    self.limits.partition_max_bytes = self.limits.partition_max_bytes.saturating_mul(2);
                    continue;
                }
                Err(e) => Err(KafkaError::Codec { api: "Fetch", message: e.to_string() }),
            };
        }
    }
}
