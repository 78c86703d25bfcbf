//! Splitting a partition's record set into batches by their length fields.
//!
//! Only the fixed-size v2 batch header is read here, so that aborted batches
//! are dropped without decompressing them and a batch cut off by the fetch
//! size limit is recognised before any decoder sees it.

use bytes::{Buf, Bytes};
use kafka_protocol::records::{Compression, RecordBatchDecoder, RecordSet};

use super::error::{FetchError, Where};
use super::varint::{signed32, unsigned};

/// Base offset (8) and batch length (4): the part every message format shares.
const LOG_OVERHEAD: usize = 12;
/// The whole v2 batch header, up to and including the record count.
const V2_HEADER: usize = 61;
const MAGIC_AT: usize = 16;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const FIRST_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const RECORD_COUNT_AT: usize = 57;
/// The smallest v2 record: length, attributes, timestamp delta, offset delta,
/// key length, value length and header count, one byte each.
const MIN_RECORD: usize = 7;

const TRANSACTIONAL: i16 = 1 << 4;
const CONTROL: i16 = 1 << 5;
const LOG_APPEND_TIME: i16 = 1 << 3;

/// What the v2 header of one complete batch says.
#[derive(Debug, Clone, Copy)]
pub(super) struct BatchHeader {
    pub(super) base_offset: i64,
    /// The offset the batch was written up to; compaction never lowers it.
    pub(super) last_offset: i64,
    pub(super) producer_id: i64,
    pub(super) max_timestamp: i64,
    /// The timestamp the records' deltas count from.
    first_timestamp: i64,
    attributes: i16,
    /// The record count the header claims (checked against the records' bytes on decoding).
    record_count: i32,
}

impl BatchHeader {
    pub(super) fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL != 0
    }

    pub(super) fn is_control(&self) -> bool {
        self.attributes & CONTROL != 0
    }

    /// On `LogAppendTime` topics the broker stamps only the batch's max timestamp.
    pub(super) fn is_log_append_time(&self) -> bool {
        self.attributes & LOG_APPEND_TIME != 0
    }

    /// Idempotent and transactional batches carry a producer id; plain ones carry -1.
    pub(super) fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
}

/// The next piece of a record set.
pub(super) enum Piece {
    /// A complete batch: its header and its bytes (a slice, no copy).
    Batch(BatchHeader, Bytes),
    /// The rest of the set is a batch cut off by the fetch size limit.
    Partial {
        /// The batch's base offset, when its first 12 bytes arrived.
        base_offset: Option<i64>,
        /// Bytes the whole batch needs, as far as is known.
        needed: usize,
    },
}

/// Walks a record set batch by batch.
pub(super) struct Batches<'a> {
    rest: Bytes,
    at: Where<'a>,
}

impl<'a> Batches<'a> {
    pub(super) fn new(records: Bytes, at: Where<'a>) -> Self {
        Self { rest: records, at }
    }

    /// The next piece, or `None` at the end of the set.
    pub(super) fn next_piece(&mut self) -> Result<Option<Piece>, FetchError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        if self.rest.len() < LOG_OVERHEAD {
            let piece = Piece::Partial { base_offset: None, needed: LOG_OVERHEAD };
            self.rest.clear();
            return Ok(Some(piece));
        }
        let mut head = &self.rest[..LOG_OVERHEAD];
        let base_offset = head.get_i64();
        let length = head.get_i32();
        let Ok(length) = usize::try_from(length) else {
            return Err(self.at.corrupt(base_offset, "negative batch length"));
        };
        let total = LOG_OVERHEAD.saturating_add(length);
        if total > self.rest.len() {
            self.rest.clear();
            return Ok(Some(Piece::Partial { base_offset: Some(base_offset), needed: total }));
        }
        let bytes = self.rest.split_to(total);
        // The magic byte sits at the same place in every message format.
        let magic = if bytes.len() > MAGIC_AT {
            bytes[MAGIC_AT] as i8
        } else {
            return Err(self.at.corrupt(base_offset, "batch shorter than its header"));
        };
        if magic != 2 {
            return Err(FetchError::UnsupportedFormat {
                topic: self.at.topic.to_owned(),
                partition: self.at.partition,
                offset: base_offset,
                magic,
            });
        }
        if bytes.len() < V2_HEADER {
            return Err(self.at.corrupt(base_offset, "batch shorter than its header"));
        }
        let header = parse_v2(&bytes, base_offset);
        if header.last_offset < base_offset {
            return Err(self.at.corrupt(base_offset, "negative last offset delta"));
        }
        Ok(Some(Piece::Batch(header, bytes)))
    }
}

/// Reads the fields kfn needs from a v2 header at least `V2_HEADER` bytes long.
fn parse_v2(bytes: &[u8], base_offset: i64) -> BatchHeader {
    let attributes = (&bytes[ATTRIBUTES_AT..]).get_i16();
    let last_offset_delta = (&bytes[LAST_OFFSET_DELTA_AT..]).get_i32();
    let max_timestamp = (&bytes[MAX_TIMESTAMP_AT..]).get_i64();
    let first_timestamp = (&bytes[FIRST_TIMESTAMP_AT..]).get_i64();
    let producer_id = (&bytes[PRODUCER_ID_AT..]).get_i64();
    let record_count = (&bytes[RECORD_COUNT_AT..]).get_i32();
    BatchHeader {
        base_offset,
        last_offset: base_offset.saturating_add(i64::from(last_offset_delta)),
        producer_id,
        max_timestamp,
        first_timestamp,
        attributes,
        record_count,
    }
}

/// Decodes the records of one complete batch (its `bytes`, header included).
///
/// kafka-protocol reserves room for the header's record count before it
/// reads a record, so a batch claiming 2^31 records would abort the process
/// on a 32 GB allocation (found by the `record_batches` fuzz target). The
/// decompressed records bound the count (every record takes at least
/// [`MIN_RECORD`] bytes), so a larger count is refused as corrupt first.
pub(super) fn decode_records(header: &BatchHeader, bytes: &Bytes, at: Where<'_>) -> Result<RecordSet, FetchError> {
    let count = usize::try_from(header.record_count).unwrap_or(0);
    // Every codec (none included: kafka-protocol calls this for every batch) through
    // compression.rs (LZ4 and zstd in pure Rust), then the bounds.
    let decompress = |buf: &mut Bytes, compression: Compression| -> anyhow::Result<Bytes> {
        let records = crate::compression::decompress(buf, compression)?;
        check_records(&records, count, header)?;
        Ok(records)
    };
    RecordBatchDecoder::decode_with_custom_compression(&mut bytes.clone(), Some(decompress))
        .map_err(|e| at.decode(header.base_offset, e))
}

/// Refuses, before kafka-protocol's decoder reserves room for them, a record
/// count or a record's header count that the bytes cannot hold (a record
/// takes at least [`MIN_RECORD`] bytes, a header 2): the decoder calls
/// `with_capacity` with the counts read from the wire, and a failed
/// allocation aborts the process (both found by the `record_batches` fuzz
/// target: 32 GB, then 38 and 98 GB for a header map). It also refuses a
/// record whose timestamp or offset delta overflows the batch's base, which
/// the decoder adds unchecked (a panic where overflow checks are on, a
/// wrapped timestamp or offset where not; found by the same target). The
/// record framing is read exactly as the decoder reads it (its varints stop
/// after 5 or 10 bytes whatever their last byte says); what is wrong with it
/// otherwise is left to the decoder, which reports it.
fn check_records(records: &[u8], count: usize, header: &BatchHeader) -> anyhow::Result<()> {
    if count > records.len() / MIN_RECORD {
        anyhow::bail!("batch claims {count} records in {} bytes", records.len());
    }
    let mut rest = records;
    for _ in 0..count {
        let Some(size) = signed32(&mut rest).and_then(|s| usize::try_from(s).ok()) else {
            return Ok(());
        };
        let Some((record, after)) = rest.split_at_checked(size) else {
            return Ok(());
        };
        rest = after;
        let framing = Framing::read(record);
        if let Some(delta) = framing.timestamp_delta {
            if header.first_timestamp.checked_add(delta).is_none() {
                anyhow::bail!("a record's timestamp delta {delta} overflows its batch's {}", header.first_timestamp);
            }
        }
        if let Some(delta) = framing.offset_delta {
            if header.base_offset.checked_add(i64::from(delta)).is_none() {
                anyhow::bail!("a record's offset delta {delta} overflows its batch's {}", header.base_offset);
            }
        }
        if let Some((headers, left)) = framing.headers {
            if headers > 0 && headers as u64 > (left / 2) as u64 {
                anyhow::bail!("a record claims {headers} headers in {left} bytes");
            }
        }
    }
    Ok(())
}

/// What the pre-check reads of a record, as far as its bytes go.
#[derive(Default)]
struct Framing {
    timestamp_delta: Option<i64>,
    offset_delta: Option<i32>,
    /// The header count and the bytes after it.
    headers: Option<(i32, usize)>,
}

impl Framing {
    /// Past the attributes: the timestamp delta (a zigzag varlong), the
    /// offset delta, the key and the value, then the header count.
    fn read(record: &[u8]) -> Framing {
        let mut framing = Framing::default();
        let Some(mut rest) = record.get(1..) else { return framing };
        let Some(zigzag) = unsigned(&mut rest, 10) else { return framing };
        framing.timestamp_delta = Some((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64));
        framing.offset_delta = signed32(&mut rest);
        if framing.offset_delta.is_none() {
            return framing;
        }
        for _ in 0..2 {
            let Some(len) = signed32(&mut rest) else { return framing };
            if len > 0 {
                let Some(after) = usize::try_from(len).ok().and_then(|l| rest.get(l..)) else { return framing };
                rest = after;
            }
        }
        framing.headers = signed32(&mut rest).map(|headers| (headers, rest.len()));
        framing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zigzag(mut buf: Vec<u8>, value: i64) -> Vec<u8> {
        let mut raw = ((value << 1) ^ (value >> 63)) as u64;
        while raw >= 0x80 {
            buf.push((raw as u8 & 0x7f) | 0x80);
            raw >>= 7;
        }
        buf.push(raw as u8);
        buf
    }

    /// One record (no key, value "v") claiming `headers` headers, with `extra` bytes after the count.
    fn record(headers: i64, extra: &[u8]) -> Vec<u8> {
        record_at(0, 0, headers, extra)
    }

    /// [`record`] with its timestamp and offset deltas.
    fn record_at(timestamp_delta: i64, offset_delta: i64, headers: i64, extra: &[u8]) -> Vec<u8> {
        let mut body = vec![0u8]; // attributes
        body = zigzag(body, timestamp_delta);
        body = zigzag(body, offset_delta);
        body = zigzag(body, -1); // no key
        body = zigzag(body, 1); // a value of one byte
        body.push(b'v');
        body = zigzag(body, headers);
        body.extend_from_slice(extra);
        let mut out = zigzag(Vec::new(), body.len() as i64);
        out.extend(body);
        out
    }

    fn batch_at(base_offset: i64, first_timestamp: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            last_offset: base_offset,
            producer_id: -1,
            max_timestamp: first_timestamp,
            first_timestamp,
            attributes: 0,
            record_count: 1,
        }
    }

    /// Found by the `record_batches` fuzz target: kafka-protocol adds a
    /// record's deltas to its batch's base unchecked (a panic with overflow
    /// checks on, a wrapped timestamp or offset without).
    #[test]
    fn a_delta_that_overflows_the_batch_base_is_refused_before_decoding() {
        let late = check_records(&record_at(i64::MAX, 0, 0, &[]), 1, &batch_at(0, 1_700_000_000_000)).unwrap_err();
        assert!(late.to_string().contains("timestamp delta"), "{late}");
        let early = check_records(&record_at(i64::MIN, 0, 0, &[]), 1, &batch_at(0, -1)).unwrap_err();
        assert!(early.to_string().contains("timestamp delta"), "{early}");
        let far = check_records(&record_at(0, i64::from(i32::MAX), 0, &[]), 1, &batch_at(i64::MAX - 5, 0)).unwrap_err();
        assert!(far.to_string().contains("offset delta"), "{far}");
        // Deltas within range, negative ones included, are the decoder's to read.
        assert!(check_records(&record_at(-1_000, 3, 0, &[]), 1, &batch_at(7, 1_700_000_000_000)).is_ok());
    }

    #[test]
    fn a_header_count_beyond_the_record_bytes_is_refused_before_decoding() {
        // Found by the record_batches fuzz target: 2^31 - 1 headers made the decoder reserve 38 GB.
        let header = batch_at(0, 1_700_000_000_000);
        let err = check_records(&record(i64::from(i32::MAX), &[]), 1, &header).unwrap_err();
        assert!(err.to_string().contains("headers"), "{err}");
        // One header ("k" = "x") fits its record; no header at all too.
        let mut one = zigzag(Vec::new(), 1);
        one.push(b'k');
        one = zigzag(one, 1);
        one.push(b'x');
        assert!(check_records(&record(1, &one), 1, &header).is_ok());
        assert!(check_records(&record(0, &[]), 1, &header).is_ok());
    }

    #[test]
    fn varints_are_read_as_kafka_protocol_reads_them() {
        for value in [0, -1, 1, 63, -64, 300, i32::MAX, i32::MIN] {
            let bytes = zigzag(Vec::new(), i64::from(value));
            assert_eq!(signed32(&mut &bytes[..]), Some(value), "{value}");
        }
        // Over-long encodings: kafka-protocol stops after 5 bytes and keeps the low 32 bits
        // (a 98 GB header map came from such a count read one way here and another there).
        assert_eq!(signed32(&mut &[0xffu8; 6][..]), Some(i32::MIN));
        assert_eq!(signed32(&mut &[0x80u8, 0x80, 0x80, 0x80, 0x80, 0x01][..]), Some(0));
        assert_eq!(signed32(&mut &[0xfeu8, 0xff, 0xff, 0xff, 0x7f][..]), Some(i32::MAX));
    }
}
