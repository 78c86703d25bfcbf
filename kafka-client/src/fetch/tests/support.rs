//! Writing partition logs and fetch responses with kafka-protocol's encoders.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchResponse, ProducerId, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

use crate::fetch::{decode_partition, decode_partition_with, DecodedPartition, FetchError, Isolation, Undecided};

pub(super) const TOPIC: &str = "orders.created";
pub(super) const PARTITION: i32 = 3;
/// Producer ids of transactional producers.
pub(super) const P1: i64 = 1001;
pub(super) const P2: i64 = 1002;
/// The producer id of an idempotent, non-transactional producer.
pub(super) const IDEMPOTENT: i64 = 2001;

const ABORT: i16 = 0;
const COMMIT: i16 = 1;

/// A partition log written batch by batch, as a broker stores it.
pub(super) struct Log {
    buf: BytesMut,
    next_offset: i64,
    compression: Compression,
    /// Per batch: its offsets and its byte range in `buf`.
    batches: Vec<(Range<i64>, Range<usize>)>,
}

impl Log {
    /// An empty log whose next offset is `start`, writing uncompressed data batches.
    pub(super) fn new(start: i64) -> Self {
        Self::compressed(start, Compression::None)
    }

    /// An empty log whose data batches use `compression` (markers never do).
    pub(super) fn compressed(start: i64, compression: Compression) -> Self {
        Self { buf: BytesMut::new(), next_offset: start, compression, batches: Vec::new() }
    }

    /// Non-transactional records without a producer id.
    pub(super) fn plain(&mut self, count: i64) -> Range<i64> {
        self.data(-1, false, count)
    }

    /// Non-transactional records of an idempotent producer.
    pub(super) fn idempotent(&mut self, producer_id: i64, count: i64) -> Range<i64> {
        self.data(producer_id, false, count)
    }

    /// A transactional data batch of `producer_id`.
    pub(super) fn txn(&mut self, producer_id: i64, count: i64) -> Range<i64> {
        self.data(producer_id, true, count)
    }

    /// A COMMIT marker of `producer_id`; returns its offset.
    pub(super) fn commit(&mut self, producer_id: i64) -> i64 {
        self.marker(producer_id, COMMIT)
    }

    /// An ABORT marker of `producer_id`; returns its offset.
    pub(super) fn abort(&mut self, producer_id: i64) -> i64 {
        self.marker(producer_id, ABORT)
    }

    /// The offset the next batch will get.
    pub(super) fn end_offset(&self) -> i64 {
        self.next_offset
    }

    /// The whole log's bytes.
    pub(super) fn bytes(&self) -> Bytes {
        Bytes::copy_from_slice(&self.buf)
    }

    /// Each batch's offsets and byte range.
    pub(super) fn batches(&self) -> &[(Range<i64>, Range<usize>)] {
        &self.batches
    }

    /// The bytes of batches `from..to` (by index), then `extra` bytes of batch `to`.
    pub(super) fn slice(&self, from: usize, to: usize, extra: usize) -> Bytes {
        let start = self.batches.get(from).map_or(self.buf.len(), |b| b.1.start);
        let end = self.batches.get(to).map_or(self.buf.len(), |b| b.1.start + extra);
        Bytes::copy_from_slice(&self.buf[start..end])
    }

    /// What a broker sends for a fetch from `from` limited to `limit` bytes:
    /// whole batches from the one holding `from`, the last possibly cut off.
    /// Also returns the end offset of the last batch touched.
    pub(super) fn read(&self, from: i64, limit: usize) -> (Bytes, i64) {
        let first = self.batches.iter().position(|b| b.0.end > from).unwrap_or(self.batches.len());
        let start = self.batches.get(first).map_or(self.buf.len(), |b| b.1.start);
        let end = self.buf.len().min(start.saturating_add(limit));
        let upper = self.batches.iter().filter(|b| b.1.start < end).map(|b| b.0.end).max().unwrap_or(from);
        (Bytes::copy_from_slice(&self.buf[start..end]), upper)
    }

    fn data(&mut self, producer_id: i64, transactional: bool, count: i64) -> Range<i64> {
        let offsets = self.next_offset..self.next_offset + count;
        let records: Vec<Record> = offsets
            .clone()
            .map(|offset| {
                let mut headers = IndexMap::new();
                headers.insert(StrBytes::from_static_str("offset"), Some(Bytes::from(offset.to_string())));
                record(producer_id, transactional, false, offset, key_of(offset), value_of(offset), headers)
            })
            .collect();
        self.write(&records, self.compression);
        offsets
    }

    fn marker(&mut self, producer_id: i64, kind: i16) -> i64 {
        let offset = self.next_offset;
        // Key: version 0, type; value: version 0, coordinator epoch.
        let mut key = Vec::from(0i16.to_be_bytes());
        key.extend_from_slice(&kind.to_be_bytes());
        let mut value = Vec::from(0i16.to_be_bytes());
        value.extend_from_slice(&7i32.to_be_bytes());
        let control = record(producer_id, true, true, offset, Bytes::from(key), Bytes::from(value), IndexMap::new());
        self.write(&[control], Compression::None);
        offset
    }

    fn write(&mut self, records: &[Record], compression: Compression) {
        let start = self.buf.len();
        let options = RecordEncodeOptions { version: 2, compression };
        RecordBatchEncoder::encode_with_custom_compression(
            &mut self.buf,
            records,
            &options,
            Some(crate::compression::compress),
        )
        .expect("encode batch");
        let first = records.first().map_or(self.next_offset, |r| r.offset);
        let last = records.last().map_or(self.next_offset, |r| r.offset);
        self.batches.push((first..last + 1, start..self.buf.len()));
        self.next_offset = last + 1;
    }
}

fn record(
    producer_id: i64,
    transactional: bool,
    control: bool,
    offset: i64,
    key: Bytes,
    value: Bytes,
    headers: IndexMap<StrBytes, Option<Bytes>>,
) -> Record {
    Record {
        transactional,
        control,
        delete_horizon: false,
        partition_leader_epoch: 5,
        producer_id,
        producer_epoch: if producer_id >= 0 { 0 } else { -1 },
        timestamp_type: TimestampType::Creation,
        offset,
        // Constant offset - sequence keeps one call's records in one batch.
        sequence: offset as i32,
        timestamp: timestamp_of(offset),
        key: Some(key),
        value: Some(value),
        headers,
    }
}

/// The key written at `offset`.
pub(super) fn key_of(offset: i64) -> Bytes {
    Bytes::from(format!("order-{offset}"))
}

/// The value written at `offset`.
pub(super) fn value_of(offset: i64) -> Bytes {
    Bytes::from(format!("{{\"offset\":{offset}}}"))
}

/// The creation timestamp written at `offset`.
pub(super) fn timestamp_of(offset: i64) -> i64 {
    1_700_000_000_000 + offset * 10
}

/// Aborted transactions as (producer id, first offset).
pub(super) fn aborted(list: &[(i64, i64)]) -> Option<Vec<AbortedTransaction>> {
    Some(
        list.iter()
            .map(|&(producer_id, first_offset)| {
                AbortedTransaction::default().with_producer_id(ProducerId(producer_id)).with_first_offset(first_offset)
            })
            .collect(),
    )
}

/// A partition of a fetch response, sent through the wire format of Fetch `version`.
pub(super) fn partition_via(
    version: i16,
    records: Bytes,
    aborted_transactions: Option<Vec<AbortedTransaction>>,
) -> PartitionData {
    bounded_via(version, records, aborted_transactions, 1_000, 900)
}

/// A partition of a Fetch v16 response with this high watermark and last stable offset.
pub(super) fn partition_at(
    records: Bytes,
    aborted_transactions: Option<Vec<AbortedTransaction>>,
    high_watermark: i64,
    last_stable_offset: i64,
) -> PartitionData {
    bounded_via(16, records, aborted_transactions, high_watermark, last_stable_offset)
}

fn bounded_via(
    version: i16,
    records: Bytes,
    aborted_transactions: Option<Vec<AbortedTransaction>>,
    high_watermark: i64,
    last_stable_offset: i64,
) -> PartitionData {
    let data = PartitionData::default()
        .with_partition_index(PARTITION)
        .with_high_watermark(high_watermark)
        .with_last_stable_offset(last_stable_offset)
        .with_log_start_offset(0)
        .with_aborted_transactions(aborted_transactions)
        .with_records(Some(records));
    let mut topic = FetchableTopicResponse::default().with_partitions(vec![data]);
    if version >= 13 {
        topic.topic_id = uuid::Uuid::from_u128(0x5eed);
    } else {
        topic.topic = TopicName(StrBytes::from_static_str(TOPIC));
    }
    let response = FetchResponse::default().with_responses(vec![topic]);
    let mut wire = BytesMut::new();
    response.encode(&mut wire, version).expect("encode response");
    let mut wire = wire.freeze();
    let mut decoded = FetchResponse::decode(&mut wire, version).expect("decode response");
    assert!(wire.is_empty(), "response fully read");
    decoded.responses.remove(0).partitions.remove(0)
}

/// A partition of a Fetch v16 response (topic ids).
pub(super) fn partition(records: Bytes, aborted_transactions: Option<Vec<AbortedTransaction>>) -> PartitionData {
    partition_via(16, records, aborted_transactions)
}

/// Decodes a partition fetched from `fetch_offset`.
pub(super) fn decode(
    data: &PartitionData,
    fetch_offset: i64,
    isolation: Isolation,
) -> Result<DecodedPartition, FetchError> {
    decode_partition(TOPIC, data, fetch_offset, isolation)
}

/// Decodes a partition trusting the broker about undecided transactions.
pub(super) fn decode_trusting(data: &PartitionData, fetch_offset: i64) -> Result<DecodedPartition, FetchError> {
    decode_partition_with(TOPIC, data, fetch_offset, Isolation::ReadCommitted, Undecided::TrustBroker)
}

/// The offsets of the delivered records.
pub(super) fn offsets(decoded: &DecodedPartition) -> Vec<i64> {
    decoded.records.iter().map(|r| r.offset).collect()
}

/// Offsets `a..b` chained, for expectations.
pub(super) fn ranges(parts: &[Range<i64>]) -> Vec<i64> {
    parts.iter().flat_map(|r| r.clone()).collect()
}
