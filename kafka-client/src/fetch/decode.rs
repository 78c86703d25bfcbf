//! Turning one partition of a fetch response into the records a handler sees.

use crate::record::Header;
use bytes::Bytes;
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::records::Record;
use kafka_protocol::ResponseError;

use super::aborted::AbortedTransactions;
use super::batch::{decode_records, BatchHeader, Batches, Piece};
use super::error::{FetchError, Where};
use super::markers::{marker_of, next_markers, Marker};
use super::{ConsumedRecord, Isolation};

/// The records of one partition of a fetch response, and where to go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedPartition {
    /// The data records to hand to the handler, in offset order.
    pub records: Vec<ConsumedRecord>,
    /// The offset to fetch next; also the highest offset it is safe to commit
    /// once every record above was processed. It moves past aborted records and
    /// transaction markers, and stops before a batch the response cut off and
    /// before a transaction the response does not show the end of.
    pub next_fetch_offset: i64,
    /// The partition's high watermark, for consumer lag.
    pub high_watermark: i64,
    /// The partition's last stable offset (the read_committed end of the log).
    pub last_stable_offset: i64,
    /// The partition's log start offset.
    pub log_start_offset: i64,
    /// How many batches of aborted transactions were dropped.
    pub aborted_batches: usize,
    /// Set when read_committed stopped before a transaction whose marker the
    /// response did not hold; `next_fetch_offset` is then its first offset.
    pub held_back: Option<HeldBack>,
}

/// A transaction left undecided by one response, and everything after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldBack {
    /// The first offset not delivered: the transaction's first offset, or the
    /// fetch offset when it began earlier. Equals `next_fetch_offset`.
    pub first_offset: i64,
    /// The producer whose transaction it is.
    pub producer_id: i64,
    /// Whether the response may have stopped before the marker: it ended with
    /// a batch cut off by the size limit, or below the last stable offset.
    /// When false the transaction is really open on the broker and only time
    /// helps; when true a larger fetch may bring the marker.
    pub cut_short: bool,
}

/// What read_committed does with a transaction whose marker is not in the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Undecided {
    /// Deliver nothing from its first offset on until a fetch brings the marker.
    #[default]
    Hold,
    /// Deliver it unless the broker's aborted list names it. Right on Apache
    /// Kafka, which sends read_committed consumers only decided records (below
    /// the last stable offset); the last resort when no fetch size reaches the marker.
    TrustBroker,
}

/// How one batch of the response is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Its records go to the handler.
    Deliver,
    /// A control batch: never delivered.
    Marker,
    /// A batch of an aborted transaction: dropped.
    Aborted,
    /// A batch of a transaction whose marker the response does not hold.
    Undecided,
}

/// One complete batch of the response.
struct Entry {
    header: BatchHeader,
    bytes: Bytes,
}

/// Decodes one partition of a fetch response fetched from `fetch_offset`,
/// holding back undecided transactions ([`Undecided::Hold`]).
///
/// Under [`Isolation::ReadCommitted`] a transactional batch is dropped when
/// its producer's next marker in the response is an ABORT or when the
/// response's aborted-transaction list covers it (as in the Java consumer);
/// it is delivered when that marker is a COMMIT; with no marker in the
/// response, it and every record after it wait for a later fetch (see
/// [`DecodedPartition::held_back`]). Control batches are never returned;
/// records below `fetch_offset` (a batch starting earlier) are trimmed. A
/// batch cut off at the end of the response is left for the next fetch,
/// unless it is the only one, in which case [`FetchError::BatchTooLarge`]
/// says to raise the fetch size.
pub fn decode_partition(
    topic: &str,
    data: &PartitionData,
    fetch_offset: i64,
    isolation: Isolation,
) -> Result<DecodedPartition, FetchError> {
    decode_partition_with(topic, data, fetch_offset, isolation, Undecided::Hold)
}

/// [`decode_partition`], choosing what happens to undecided transactions.
pub fn decode_partition_with(
    topic: &str,
    data: &PartitionData,
    fetch_offset: i64,
    isolation: Isolation,
    undecided: Undecided,
) -> Result<DecodedPartition, FetchError> {
    let at = Where { topic, partition: data.partition_index };
    if let Some(error) = ResponseError::try_from_code(data.error_code) {
        return Err(FetchError::Broker { topic: topic.to_owned(), partition: data.partition_index, error });
    }
    let mut decoded = DecodedPartition {
        records: Vec::new(),
        next_fetch_offset: fetch_offset,
        high_watermark: data.high_watermark,
        last_stable_offset: data.last_stable_offset,
        log_start_offset: data.log_start_offset,
        aborted_batches: 0,
        held_back: None,
    };
    let Some(records) = data.records.as_ref() else {
        return Ok(decoded);
    };
    let (entries, truncated) = split(records, fetch_offset, at)?;
    let response_end = entries.last().map_or(fetch_offset, |e| e.header.last_offset.saturating_add(1));
    let verdicts = match isolation {
        Isolation::ReadUncommitted => {
            entries.iter().map(|e| if e.header.is_control() { Verdict::Marker } else { Verdict::Deliver }).collect()
        }
        Isolation::ReadCommitted => judge(&entries, data, undecided, at)?,
    };
    // The earliest undecided transaction bounds what may be delivered, so
    // that records keep their offset order: the client's own stable offset.
    let hold = entries
        .iter()
        .zip(&verdicts)
        .filter(|(e, v)| **v == Verdict::Undecided && e.header.last_offset >= fetch_offset)
        .map(|(e, _)| (e.header.base_offset.max(fetch_offset), e.header.producer_id))
        .min();
    for (entry, verdict) in entries.into_iter().zip(verdicts) {
        if hold.is_some_and(|(first, _)| entry.header.last_offset >= first) {
            break;
        }
        decoded.take_batch(entry, verdict, at)?;
    }
    if let Some((first_offset, producer_id)) = hold {
        let cut_short = truncated || (data.last_stable_offset >= 0 && response_end < data.last_stable_offset);
        decoded.next_fetch_offset = first_offset;
        decoded.held_back = Some(HeldBack { first_offset, producer_id, cut_short });
        tracing::debug!(
            topic,
            partition = data.partition_index,
            producer_id,
            first_offset,
            cut_short,
            "transaction without a marker in the response; holding back from its first offset"
        );
    }
    Ok(decoded)
}

/// Splits the record set into complete batches; says whether a cut-off batch followed.
fn split(records: &Bytes, fetch_offset: i64, at: Where<'_>) -> Result<(Vec<Entry>, bool), FetchError> {
    let mut batches = Batches::new(records.clone(), at);
    let mut entries = Vec::new();
    let mut truncated = false;
    while let Some(piece) = batches.next_piece()? {
        match piece {
            Piece::Batch(header, bytes) => entries.push(Entry { header, bytes }),
            Piece::Partial { base_offset, needed } => {
                if entries.is_empty() {
                    return Err(FetchError::BatchTooLarge {
                        topic: at.topic.to_owned(),
                        partition: at.partition,
                        offset: base_offset.unwrap_or(fetch_offset),
                        needed,
                        received: records.len(),
                    });
                }
                tracing::trace!(
                    topic = at.topic,
                    partition = at.partition,
                    base_offset,
                    "last batch cut off by the fetch size; fetching it again"
                );
                truncated = true;
            }
        }
    }
    Ok((entries, truncated))
}

/// The read_committed verdict on every batch, from the markers and the aborted list.
///
/// Both are needed: tansu lists no aborted transactions (and gives a last
/// stable offset equal to the high watermark) but sends the markers, while
/// Apache Kafka may list an aborted transaction whose marker lies beyond the
/// fetched range. A batch is dropped if either says it was aborted.
fn judge(
    entries: &[Entry],
    data: &PartitionData,
    undecided: Undecided,
    at: Where<'_>,
) -> Result<Vec<Verdict>, FetchError> {
    let mut producers = Vec::with_capacity(entries.len());
    for entry in entries {
        let marker = if entry.header.is_control() && entry.header.has_producer_id() {
            marker_of(&entry.header, &entry.bytes, at)?
        } else {
            None
        };
        producers.push((entry.header.producer_id, marker));
    }
    let next = next_markers(&producers);
    // A read_uncommitted answer has no list; a null or empty one drops nothing.
    let mut listed = data.aborted_transactions.as_deref().filter(|l| !l.is_empty()).map(AbortedTransactions::new);
    let mut verdicts = Vec::with_capacity(entries.len());
    for ((entry, &(_, marker)), next) in entries.iter().zip(&producers).zip(next) {
        let header = &entry.header;
        let mut listed_aborted = false;
        if let Some(listed) = listed.as_mut().filter(|_| header.has_producer_id()) {
            // The last offset, not the base, so that a transaction beginning
            // inside this batch's range is known before the batch is judged.
            listed.reach(header.last_offset);
            if marker == Some(Marker::Abort) {
                listed.close(header.producer_id);
            }
            listed_aborted = !header.is_control() && header.is_transactional() && listed.is_aborted(header.producer_id);
        }
        let verdict = if header.is_control() {
            Verdict::Marker
        } else if !header.is_transactional() {
            Verdict::Deliver
        } else if listed_aborted || next == Some(Marker::Abort) {
            Verdict::Aborted
        } else if next == Some(Marker::Commit) || undecided == Undecided::TrustBroker {
            Verdict::Deliver
        } else {
            Verdict::Undecided
        };
        verdicts.push(verdict);
    }
    Ok(verdicts)
}

impl DecodedPartition {
    /// Handles one complete batch below the hold: deliver, drop or skip it.
    fn take_batch(&mut self, entry: Entry, verdict: Verdict, at: Where<'_>) -> Result<(), FetchError> {
        let Entry { header, bytes } = entry;
        let batch_end = header.last_offset.saturating_add(1);
        match verdict {
            Verdict::Deliver => {}
            Verdict::Aborted => {
                tracing::debug!(
                    topic = at.topic,
                    partition = at.partition,
                    producer_id = header.producer_id,
                    base_offset = header.base_offset,
                    last_offset = header.last_offset,
                    "skipping a batch of an aborted transaction"
                );
                self.aborted_batches += 1;
                self.advance_to(batch_end);
                return Ok(());
            }
            // An undecided batch reaches here only when it lies wholly below
            // the fetch offset, where it has nothing to deliver.
            Verdict::Marker | Verdict::Undecided => {
                self.advance_to(batch_end);
                return Ok(());
            }
        }
        let set = decode_records(&header, &bytes, at)?;
        self.records.reserve(set.records.len());
        for record in set.records {
            // A record outside its batch's own range is corrupt (found by the
            // record_batches fuzz target): delivered, it could lie past a held
            // transaction and be read again when the fetch goes back to it.
            if record.offset > header.last_offset {
                let e = anyhow::anyhow!(
                    "record offset {} beyond its batch's last offset {}",
                    record.offset,
                    header.last_offset
                );
                return Err(at.decode(header.base_offset, e));
            }
            // Trims a batch that starts before the fetch offset, and guards
            // against offsets that do not increase.
            if record.offset < self.next_fetch_offset {
                continue;
            }
            self.next_fetch_offset = record.offset.saturating_add(1);
            self.records.push(consumed(record, &header));
        }
        self.advance_to(batch_end);
        Ok(())
    }

    fn advance_to(&mut self, offset: i64) {
        self.next_fetch_offset = self.next_fetch_offset.max(offset);
    }
}

/// Moves a decoded record's slices into the handler-facing type.
fn consumed(record: Record, header: &BatchHeader) -> ConsumedRecord {
    let timestamp_ms = if header.is_log_append_time() { header.max_timestamp } else { record.timestamp };
    ConsumedRecord {
        offset: record.offset,
        timestamp_ms,
        key: record.key,
        value: record.value,
        headers: record
            .headers
            .into_iter()
            .map(|(name, value)| Header { name: name.as_str().to_owned(), value })
            .collect(),
    }
}
