//! Turning one partition of a fetch response into the records a handler sees.

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use kafka_protocol::ResponseError;
use kfn_sdk::Header;

use super::aborted::AbortedTransactions;
use super::batch::{BatchHeader, Batches, Piece};
use super::error::{FetchError, Where};
use super::{ConsumedRecord, Isolation};

/// Control record type of an ABORT marker (key: version i16, type i16).
const CONTROL_TYPE_ABORT: i16 = 0;

/// The records of one partition of a fetch response, and where to go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedPartition {
    /// The data records to hand to the handler, in offset order.
    pub records: Vec<ConsumedRecord>,
    /// The offset to fetch next; also the highest offset it is safe to commit
    /// once every record above was processed. It moves past aborted records and
    /// transaction markers, and stops before a batch the response cut off.
    pub next_fetch_offset: i64,
    /// The partition's high watermark, for consumer lag.
    pub high_watermark: i64,
    /// The partition's last stable offset (the read_committed end of the log).
    pub last_stable_offset: i64,
    /// The partition's log start offset.
    pub log_start_offset: i64,
    /// How many batches of aborted transactions were dropped.
    pub aborted_batches: usize,
}

/// Decodes one partition of a fetch response fetched from `fetch_offset`.
///
/// Under [`Isolation::ReadCommitted`] the records of aborted transactions are
/// dropped using the response's aborted-transaction list, as the Java consumer
/// does; control batches are never returned; records below `fetch_offset` (a
/// batch starting earlier) are trimmed. A batch cut off at the end of the
/// response is left for the next fetch, unless it is the only one, in which
/// case [`FetchError::BatchTooLarge`] says to raise the fetch size.
pub fn decode_partition(
    topic: &str,
    data: &PartitionData,
    fetch_offset: i64,
    isolation: Isolation,
) -> Result<DecodedPartition, FetchError> {
    let at = Where {
        topic,
        partition: data.partition_index,
    };
    if let Some(error) = ResponseError::try_from_code(data.error_code) {
        return Err(FetchError::Broker {
            topic: topic.to_owned(),
            partition: data.partition_index,
            error,
        });
    }
    let mut decoded = DecodedPartition {
        records: Vec::new(),
        next_fetch_offset: fetch_offset,
        high_watermark: data.high_watermark,
        last_stable_offset: data.last_stable_offset,
        log_start_offset: data.log_start_offset,
        aborted_batches: 0,
    };
    let Some(records) = data.records.as_ref() else {
        return Ok(decoded);
    };
    // A read_uncommitted answer has no list; a read_committed one with no
    // list (null) has nothing to drop, as in the Java consumer.
    let mut aborted = match (isolation, data.aborted_transactions.as_deref()) {
        (Isolation::ReadCommitted, Some(list)) if !list.is_empty() => {
            Some(AbortedTransactions::new(list))
        }
        _ => None,
    };
    let mut batches = Batches::new(records.clone(), at);
    let mut complete = 0usize;
    while let Some(piece) = batches.next_piece()? {
        match piece {
            Piece::Batch(header, bytes) => {
                complete += 1;
                decoded.take_batch(header, bytes, aborted.as_mut(), at)?;
            }
            Piece::Partial {
                base_offset,
                needed,
            } => {
                if complete == 0 {
                    return Err(FetchError::BatchTooLarge {
                        topic: topic.to_owned(),
                        partition: data.partition_index,
                        offset: base_offset.unwrap_or(fetch_offset),
                        needed,
                        received: records.len(),
                    });
                }
                tracing::trace!(
                    topic,
                    partition = data.partition_index,
                    next_fetch_offset = decoded.next_fetch_offset,
                    "last batch cut off by the fetch size; fetching it again"
                );
            }
        }
    }
    Ok(decoded)
}

impl DecodedPartition {
    /// Handles one complete batch: drop it, skip it, or decode its records.
    fn take_batch(
        &mut self,
        header: BatchHeader,
        mut bytes: Bytes,
        aborted: Option<&mut AbortedTransactions>,
        at: Where<'_>,
    ) -> Result<(), FetchError> {
        let batch_end = header.last_offset.saturating_add(1);
        if let Some(aborted) = aborted.filter(|_| header.has_producer_id()) {
            // The last offset, not the base, so that a transaction beginning
            // inside this batch's range is known before the batch is judged.
            aborted.reach(header.last_offset);
            if header.is_control() {
                if is_abort_marker(&header, &bytes, at)? {
                    aborted.close(header.producer_id);
                }
            } else if header.is_transactional() && aborted.is_aborted(header.producer_id) {
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
        }
        if header.is_control() {
            self.advance_to(batch_end);
            return Ok(());
        }
        let set =
            RecordBatchDecoder::decode(&mut bytes).map_err(|e| at.decode(header.base_offset, e))?;
        self.records.reserve(set.records.len());
        for record in set.records {
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
    let timestamp_ms = if header.is_log_append_time() {
        header.max_timestamp
    } else {
        record.timestamp
    };
    ConsumedRecord {
        offset: record.offset,
        timestamp_ms,
        key: record.key,
        value: record.value,
        headers: record
            .headers
            .into_iter()
            .map(|(name, value)| Header {
                name: name.as_str().to_owned(),
                value,
            })
            .collect(),
    }
}

/// Whether a control batch is an ABORT marker, judged by its first record's key.
fn is_abort_marker(header: &BatchHeader, bytes: &Bytes, at: Where<'_>) -> Result<bool, FetchError> {
    let set = RecordBatchDecoder::decode(&mut bytes.clone())
        .map_err(|e| at.decode(header.base_offset, e))?;
    let Some(first) = set.records.first() else {
        return Ok(false);
    };
    let key = first.key.as_deref().unwrap_or_default();
    if key.len() < 4 {
        return Err(at.corrupt(
            header.base_offset,
            "control record key shorter than 4 bytes",
        ));
    }
    let version = i16::from_be_bytes([key[0], key[1]]);
    if version < 0 {
        return Err(at.corrupt(header.base_offset, "negative control record version"));
    }
    // Newer key versions keep the type at the same place; unknown types are
    // neither ABORT nor data, so they are skipped like any control record.
    Ok(i16::from_be_bytes([key[2], key[3]]) == CONTROL_TYPE_ABORT)
}
