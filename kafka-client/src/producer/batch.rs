//! Record batches for one partition: accumulate records, then encode them as
//! one v2 record batch with kafka-protocol's [`RecordBatchEncoder`].
//!
//! The producer id, epoch, base sequence and transactional flag live in the
//! batch header, which is how the broker de-duplicates a retried batch and
//! ties it to a transaction. A retry re-sends the same [`EncodedBatch`]
//! bytes, so it keeps its base sequence; only a new producer identity calls
//! for [`EncodedBatch::reencode`].
//!
//! ```
//! use kfn_kafka::producer::{BatchBuilder, Compression, ProducerIdentity, ProducerRecord, Pushed};
//!
//! let mut builder = BatchBuilder::new(150);
//! let record = |n: u8| ProducerRecord::new(None, Some(vec![n; 60].into()), 1_700_000_000_000);
//! assert!(matches!(builder.push(record(1))?, Pushed::Added));
//! // Header (61 bytes) and two 68-byte records would pass 150: the second comes back.
//! let Pushed::Full(second) = builder.push(record(2))? else { panic!("batch should be full") };
//! assert_eq!(second.value.as_deref(), Some(&[2u8; 60][..]));
//! let batch = builder.encode(ProducerIdentity::NONE, -1, false, Compression::None)?;
//! assert_eq!(batch.record_count(), 1);
//! # Ok::<(), kfn_kafka::producer::ProducerError>(())
//! ```

use std::sync::Arc;

use crate::compression::compress;
use crate::record::Header;
use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType, NO_PARTITION_LEADER_EPOCH, NO_SEQUENCE,
};

use super::{Compression, ProducerError, ProducerIdentity};

/// The bytes of a v2 batch header before its first record: base offset (8),
/// length (4), partition leader epoch (4), magic (1), CRC (4), attributes (2),
/// last offset delta (4), first and max timestamp (8 + 8), producer id (8),
/// producer epoch (2), base sequence (4) and record count (4).
pub const RECORD_BATCH_OVERHEAD: usize = 61;

/// One record on its way to a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    /// The record's key (the partitioner has already used it).
    pub key: Option<Bytes>,
    /// The record's value; `None` is a tombstone on a compacted topic.
    pub value: Option<Bytes>,
    /// The record's headers; each name at most once.
    pub headers: Vec<Header>,
    /// Creation time in milliseconds since the epoch.
    pub timestamp_ms: i64,
}

impl ProducerRecord {
    /// A record without headers.
    pub fn new(key: Option<Bytes>, value: Option<Bytes>, timestamp_ms: i64) -> Self {
        ProducerRecord { key, value, headers: Vec::new(), timestamp_ms }
    }

    /// This record with one more header.
    pub fn with_header(mut self, name: impl Into<String>, value: Option<Bytes>) -> Self {
        self.headers.push(Header { name: name.into(), value });
        self
    }
}

/// What became of a record offered to a [`BatchBuilder`].
#[derive(Debug)]
#[must_use = "a full batch hands the record back; it belongs in the next batch"]
pub enum Pushed {
    /// The record is in the batch.
    Added,
    /// The batch would pass its size limit: send it and offer the record to a
    /// new batch.
    Full(ProducerRecord),
}

/// Records for one partition, waiting to become one record batch.
///
/// The builder tracks the batch's uncompressed encoded size exactly (as
/// kafka-protocol lays it out), so [`BatchBuilder::estimated_size`] equals the
/// encoded length when compression is off and bounds it otherwise, give or
/// take the codec's framing. An empty builder accepts any record, so a record
/// larger than the limit still travels, alone; the broker then judges it
/// against the topic's `max.message.bytes`.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    max_batch_bytes: usize,
    records: Vec<Record>,
    /// Per record, every byte of its body except the timestamp delta, which
    /// depends on the batch's smallest timestamp.
    sizes_without_timestamp: Vec<usize>,
    min_timestamp: i64,
    max_timestamp: i64,
    records_bytes: usize,
}

impl BatchBuilder {
    /// An empty batch that closes once it would pass `max_batch_bytes`.
    pub fn new(max_batch_bytes: usize) -> Self {
        BatchBuilder {
            max_batch_bytes,
            records: Vec::new(),
            sizes_without_timestamp: Vec::new(),
            min_timestamp: i64::MAX,
            max_timestamp: i64::MIN,
            records_bytes: 0,
        }
    }

    /// Add a record, or hand it back when the batch is full.
    ///
    /// Fails only for a record kfn cannot write at all: two headers with one
    /// name, or timestamps too far apart to be written as deltas.
    pub fn push(&mut self, record: ProducerRecord) -> Result<Pushed, ProducerError> {
        let headers = header_map(&record.headers)?;
        let offset_delta = self.records.len();
        if offset_delta >= i32::MAX as usize {
            return Ok(Pushed::Full(record));
        }
        let size_without_timestamp = size_without_timestamp(&record, offset_delta as i32);
        let min_timestamp = self.min_timestamp.min(record.timestamp_ms);
        let max_timestamp = self.max_timestamp.max(record.timestamp_ms);
        // Timestamps are written as deltas from the smallest one.
        if max_timestamp.checked_sub(min_timestamp).is_none() {
            return Err(ProducerError::TimestampSpread { min: min_timestamp, max: max_timestamp });
        }
        // The batch's smallest timestamp is the base of every record's delta,
        // so an earlier record changes the size of all the others.
        let existing = if min_timestamp == self.min_timestamp {
            self.records_bytes
        } else {
            self.records
                .iter()
                .zip(&self.sizes_without_timestamp)
                .map(|(r, size)| record_size(*size, r.timestamp - min_timestamp))
                .sum()
        };
        let added = record_size(size_without_timestamp, record.timestamp_ms - min_timestamp);
        let total = RECORD_BATCH_OVERHEAD + existing + added;
        if !self.records.is_empty() && total > self.max_batch_bytes {
            return Ok(Pushed::Full(record));
        }
        self.records.push(Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: ProducerIdentity::NONE.id,
            producer_epoch: ProducerIdentity::NONE.epoch,
            timestamp_type: TimestampType::Creation,
            offset: offset_delta as i64,
            sequence: NO_SEQUENCE,
            timestamp: record.timestamp_ms,
            key: record.key,
            value: record.value,
            headers,
        });
        self.sizes_without_timestamp.push(size_without_timestamp);
        self.min_timestamp = min_timestamp;
        self.max_timestamp = max_timestamp;
        self.records_bytes = existing + added;
        Ok(Pushed::Added)
    }

    /// How many records the batch holds.
    pub fn record_count(&self) -> i32 {
        // push() never lets the count past i32::MAX.
        self.records.len() as i32
    }

    /// Whether the batch holds no record yet.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The batch's encoded size before compression, header included.
    pub fn estimated_size(&self) -> usize {
        RECORD_BATCH_OVERHEAD + self.records_bytes
    }

    /// The size limit this builder was made with.
    pub fn max_batch_bytes(&self) -> usize {
        self.max_batch_bytes
    }

    /// Encode the records as one v2 record batch.
    ///
    /// A producer without idempotence passes [`ProducerIdentity::NONE`],
    /// base sequence -1 and `transactional = false`; anything else is refused,
    /// as the broker would refuse it.
    pub fn encode(
        self,
        producer: ProducerIdentity,
        base_sequence: i32,
        transactional: bool,
        compression: Compression,
    ) -> Result<EncodedBatch, ProducerError> {
        EncodedBatch::encode(self.records, producer, base_sequence, transactional, compression)
    }
}

/// One encoded record batch, ready to be sent to its partition's leader.
///
/// Cloning is cheap: the bytes and the records are shared.
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    bytes: Bytes,
    producer: ProducerIdentity,
    base_sequence: i32,
    transactional: bool,
    compression: Compression,
    /// Kept for [`EncodedBatch::reencode`]; the payloads are shared `Bytes`.
    records: Arc<[Record]>,
}

impl EncodedBatch {
    fn encode(
        mut records: Vec<Record>,
        producer: ProducerIdentity,
        base_sequence: i32,
        transactional: bool,
        compression: Compression,
    ) -> Result<Self, ProducerError> {
        if records.is_empty() {
            return Err(ProducerError::EmptyBatch);
        }
        if records.len() > i32::MAX as usize {
            return Err(ProducerError::TooManyRecords { count: records.len(), max: i32::MAX as usize });
        }
        if !producer.is_idempotent() && (base_sequence != NO_SEQUENCE || transactional) {
            return Err(ProducerError::SequenceWithoutProducerId { base_sequence, transactional });
        }
        for (index, record) in records.iter_mut().enumerate() {
            record.transactional = transactional;
            record.producer_id = producer.id;
            record.producer_epoch = producer.epoch;
            record.offset = index as i64;
            // kafka-protocol derives the header's base sequence from the first
            // record and splits the batch wherever offset - sequence changes,
            // so the sequence must step with the offset in two's complement
            // (Kafka's own wrap to 0 only matters between batches).
            record.sequence = base_sequence.wrapping_add(index as i32);
        }
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions { version: 2, compression: compression.to_protocol() };
        // Every codec through kafka/compression.rs (LZ4 in fast mode, as librdkafka writes it).
        RecordBatchEncoder::encode_with_custom_compression(&mut buf, records.iter(), &options, Some(compress))
            .map_err(|source| ProducerError::Encode {
                record_count: records.len(),
                compression,
                source: source.into(),
            })?;
        Ok(EncodedBatch {
            bytes: buf.freeze(),
            producer,
            base_sequence,
            transactional,
            compression,
            records: records.into(),
        })
    }

    /// The same records under a new producer identity and base sequence,
    /// for when the producer was re-initialised (the broker forgot the old id,
    /// or the epoch was bumped) while this batch was still undelivered.
    pub fn reencode(&self, producer: ProducerIdentity, base_sequence: i32) -> Result<EncodedBatch, ProducerError> {
        EncodedBatch::encode(self.records.to_vec(), producer, base_sequence, self.transactional, self.compression)
    }

    /// The encoded batch, as the `records` field of a Produce partition.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The encoded length in bytes.
    pub fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    /// How many records the batch holds.
    pub fn record_count(&self) -> i32 {
        // encode() refuses more than i32::MAX records.
        self.records.len() as i32
    }

    /// The producer id and epoch written into the batch.
    pub fn producer(&self) -> ProducerIdentity {
        self.producer
    }

    /// The sequence of the batch's first record (-1 without idempotence).
    pub fn base_sequence(&self) -> i32 {
        self.base_sequence
    }

    /// Whether the batch belongs to a transaction.
    pub fn transactional(&self) -> bool {
        self.transactional
    }

    /// The codec the records were compressed with.
    pub fn compression(&self) -> Compression {
        self.compression
    }
}

/// kafka-protocol's record keeps headers in a map; a repeated name would
/// silently replace the first value, so it is an error instead.
fn header_map(headers: &[Header]) -> Result<IndexMap<StrBytes, Option<Bytes>>, ProducerError> {
    let mut map = IndexMap::with_capacity(headers.len());
    for header in headers {
        let name = StrBytes::from_string(header.name.clone());
        if map.insert(name, header.value.clone()).is_some() {
            return Err(ProducerError::DuplicateHeader { name: header.name.clone() });
        }
    }
    Ok(map)
}

/// A record's body size without its timestamp delta: attributes, offset
/// delta, key, value and headers, each length as a zigzag varint (-1 for null).
fn size_without_timestamp(record: &ProducerRecord, offset_delta: i32) -> usize {
    let bytes_field = |field: Option<usize>| match field {
        Some(len) => varint_size(len as i64) + len,
        None => varint_size(-1),
    };
    let headers: usize = record
        .headers
        .iter()
        .map(|h| bytes_field(Some(h.name.len())) + bytes_field(h.value.as_ref().map(Bytes::len)))
        .sum();
    1 + varint_size(offset_delta as i64)
        + bytes_field(record.key.as_ref().map(Bytes::len))
        + bytes_field(record.value.as_ref().map(Bytes::len))
        + varint_size(record.headers.len() as i64)
        + headers
}

/// A record's full size: its length prefix and its body.
fn record_size(size_without_timestamp: usize, timestamp_delta: i64) -> usize {
    let body = size_without_timestamp + varint_size(timestamp_delta);
    varint_size(body as i64) + body
}

/// Bytes of a zigzag varint (or varlong: the encoding is the same per value).
fn varint_size(value: i64) -> usize {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    let mut size = 1;
    while zigzag >= 0x80 {
        zigzag >>= 7;
        size += 1;
    }
    size
}
