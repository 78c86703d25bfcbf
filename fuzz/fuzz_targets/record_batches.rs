//! Record batches of every compression, built around fuzzer-chosen content
//! so that kfn's fetch decoder reaches the decompressors and the record
//! parser past the batch CRC (which raw mutations almost never pass).
//!
//! Each batch is either records encoded by kafka-protocol with a codec, then
//! given fuzzer-chosen header fields (transactional, control, producer id,
//! last offset delta) and optionally a corrupted payload; or a v2 header
//! written here around arbitrary bytes declared compressed with a codec.
//! Either way the CRC is recomputed so the decoder looks inside. The
//! partition (aborted list, watermarks, a cut-off tail) is fuzzed too, and
//! the whole response also goes through the wire format of a Fetch version.
//!
//! With `KFN_FUZZ_WRITE_SEEDS=<dir>`, each response is also written there in
//! the `fetch_response` target's input format (its seeds).

#![no_main]

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchResponse, ProducerId, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use libfuzzer_sys::fuzz_target;

#[path = "common/fetch.rs"]
mod fetch;

/// Producers the batches and the aborted list pick from: -1 is "no producer id".
const PRODUCERS: [i64; 4] = [-1, 1001, 1002, 2001];

const HEADER: usize = 61;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const PRODUCER_ID_AT: usize = 43;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    fn compression(self) -> Compression {
        match self {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct RecordSpec {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp_delta: i16,
}

#[derive(Arbitrary, Debug)]
enum Body {
    /// Records kafka-protocol encodes and compresses; the marker kind, if
    /// any, becomes the first record's control key.
    Records { records: Vec<RecordSpec>, marker: Option<bool>, corrupt: Option<(u16, u8)> },
    /// Arbitrary bytes declared compressed with the batch's codec.
    Raw { record_count: i32, payload: Vec<u8> },
}

#[derive(Arbitrary, Debug)]
struct BatchSpec {
    codec: Codec,
    producer: u8,
    transactional: bool,
    control: bool,
    log_append_time: bool,
    /// Offsets skipped before the batch (compaction leaves gaps).
    gap: u8,
    /// Replaces the last offset delta the records imply.
    last_offset_delta: Option<i8>,
    body: Body,
}

#[derive(Arbitrary, Debug)]
struct Input {
    base: u8,
    fetch_offset: u8,
    batches: Vec<BatchSpec>,
    aborted: Option<Vec<(u8, u8)>>,
    high_watermark: u8,
    last_stable_offset: i8,
    /// Bytes cut off the end, as a fetch size limit does.
    cut: u8,
    version: u8,
}

fn producer(choice: u8) -> i64 {
    PRODUCERS[usize::from(choice) % PRODUCERS.len()]
}

/// Appends one batch at `offset`; returns the offset after it.
fn write_batch(out: &mut BytesMut, offset: i64, spec: &BatchSpec) -> i64 {
    let producer_id = producer(spec.producer);
    let start = out.len();
    let mut attributes = spec.codec.compression() as i16;
    let count = match &spec.body {
        Body::Records { records, marker, .. } => {
            let records: Vec<Record> = records
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let mut key = r.key.clone().map(Bytes::from);
                    if let (0, Some(commit)) = (i, marker) {
                        key = Some(Bytes::from(vec![0, 0, 0, u8::from(*commit)]));
                    }
                    Record {
                        transactional: spec.transactional,
                        control: spec.control,
                        delete_horizon: false,
                        partition_leader_epoch: 1,
                        producer_id,
                        producer_epoch: if producer_id >= 0 { 0 } else { -1 },
                        timestamp_type: TimestampType::Creation,
                        offset: offset + i as i64,
                        sequence: if producer_id >= 0 { (offset + i as i64) as i32 } else { -1 },
                        timestamp: 1_700_000_000_000 + i64::from(r.timestamp_delta),
                        key,
                        value: r.value.clone().map(Bytes::from),
                        headers: r
                            .headers
                            .iter()
                            .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone().map(Bytes::from)))
                            .collect::<IndexMap<_, _>>(),
                    }
                })
                .collect();
            if records.is_empty() {
                return offset;
            }
            let options = RecordEncodeOptions { version: 2, compression: spec.codec.compression() };
            if RecordBatchEncoder::encode(out, &records, &options).is_err() || out.len() < start + HEADER {
                out.truncate(start);
                return offset;
            }
            // The encoder writes one batch per run of records; keep the header fields fuzzable on the first.
            attributes = i16::from_be_bytes([out[start + ATTRIBUTES_AT], out[start + ATTRIBUTES_AT + 1]]);
            if let Some((at, xor)) = spec.body_corruption() {
                let payload = out.len() - start - HEADER;
                if payload > 0 {
                    let at = start + HEADER + usize::from(at) % payload;
                    out[at] ^= xor.max(1);
                }
            }
            records.len() as i64
        }
        Body::Raw { record_count, payload } => {
            out.extend_from_slice(&offset.to_be_bytes());
            out.extend_from_slice(&((HEADER - 12 + payload.len()) as i32).to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes()); // partition leader epoch
            out.extend_from_slice(&[2]); // magic
            out.extend_from_slice(&[0; 4]); // crc, below
            out.extend_from_slice(&[0; 2]); // attributes, below
            out.extend_from_slice(&(record_count.saturating_sub(1)).to_be_bytes());
            out.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
            out.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
            out.extend_from_slice(&producer_id.to_be_bytes());
            out.extend_from_slice(&(if producer_id >= 0 { 0i16 } else { -1 }).to_be_bytes());
            out.extend_from_slice(&(if producer_id >= 0 { offset as i32 } else { -1 }).to_be_bytes());
            out.extend_from_slice(&record_count.to_be_bytes());
            out.extend_from_slice(payload);
            i64::from((*record_count).clamp(1, 1000))
        }
    };
    // Header fields the fuzzer chooses, whatever the body.
    attributes &= !0b11_1000;
    attributes |=
        i16::from(spec.log_append_time) << 3 | i16::from(spec.transactional) << 4 | i16::from(spec.control) << 5;
    out[start + ATTRIBUTES_AT..start + ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    out[start + PRODUCER_ID_AT..start + PRODUCER_ID_AT + 8].copy_from_slice(&producer_id.to_be_bytes());
    if let Some(delta) = spec.last_offset_delta {
        out[start + LAST_OFFSET_DELTA_AT..start + LAST_OFFSET_DELTA_AT + 4]
            .copy_from_slice(&i32::from(delta).to_be_bytes());
    }
    // Only the first batch the encoder wrote is re-signed; the CRC covers attributes to the end.
    let length = i32::from_be_bytes([out[start + 8], out[start + 9], out[start + 10], out[start + 11]]);
    let end = (start + 12 + length.max(0) as usize).min(out.len());
    let crc = crc32c::crc32c(&out[start + ATTRIBUTES_AT..end]);
    out[start + CRC_AT..start + CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    offset + count
}

impl BatchSpec {
    fn body_corruption(&self) -> Option<(u16, u8)> {
        match &self.body {
            Body::Records { corrupt, .. } => *corrupt,
            Body::Raw { .. } => None,
        }
    }
}

fuzz_target!(|input: Input| {
    let base = i64::from(input.base);
    let mut records = BytesMut::new();
    let mut offset = base;
    for spec in input.batches.iter().take(16) {
        offset = write_batch(&mut records, offset + i64::from(spec.gap % 4), spec);
    }
    let cut = usize::from(input.cut).min(records.len());
    records.truncate(records.len() - cut);
    let aborted = input.aborted.as_ref().map(|list| {
        list.iter()
            .map(|&(p, first)| {
                AbortedTransaction::default()
                    .with_producer_id(ProducerId(producer(p)))
                    .with_first_offset(base + i64::from(first % 64))
            })
            .collect::<Vec<_>>()
    });
    let data = PartitionData::default()
        .with_partition_index(0)
        .with_high_watermark(offset + i64::from(input.high_watermark % 8))
        .with_last_stable_offset(if input.last_stable_offset < 0 {
            -1
        } else {
            base + i64::from(input.last_stable_offset)
        })
        .with_log_start_offset(base)
        .with_aborted_transactions(aborted)
        .with_records(Some(records.freeze()));
    let fetch_offset = base + i64::from(input.fetch_offset % 64);
    fetch::check_partition(&data, fetch_offset);

    // The same partition through the wire format of one Fetch version.
    let versions = fetch::VERSIONS;
    let version = versions.start() + i16::from(input.version % (versions.end() - versions.start() + 1) as u8);
    let mut topic = FetchableTopicResponse::default().with_partitions(vec![data]);
    if version >= 13 {
        topic.topic_id = uuid::Uuid::from_u128(0x5eed);
    } else {
        topic.topic = TopicName(StrBytes::from_static_str("orders.created"));
    }
    let response = FetchResponse::default().with_responses(vec![topic]);
    let mut wire = BytesMut::new();
    if response.encode(&mut wire, version).is_ok() {
        if let Some(dir) = std::env::var_os("KFN_FUZZ_WRITE_SEEDS") {
            let mut seed = vec![(version - versions.start()) as u8];
            seed.extend_from_slice(&wire);
            let name = format!("{:016x}", crc32c::crc32c(&seed));
            let _ = std::fs::write(std::path::Path::new(&dir).join(name), seed);
        }
        fetch::check_response(version, &wire);
    }
});
