//! Unit tests of the producer core. Every batch and every broker answer is
//! encoded and decoded with kafka-protocol, never written out by hand.

mod batch;
mod config;
mod outcome;
mod queue;
mod request;
mod sequence;

use bytes::Bytes;
use kafka_protocol::records::{BatchDecodeInfo, Record, RecordBatchDecoder};

use super::{Compression, EncodedBatch};

/// Every codec kfn can write.
const ALL_COMPRESSIONS: [Compression; 5] =
    [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

/// Decode an encoded batch with kafka-protocol: its one header and its records.
fn decode(batch: &EncodedBatch) -> (BatchDecodeInfo, Vec<Record>) {
    let mut bytes: Bytes = batch.bytes().clone();
    let mut infos = RecordBatchDecoder::decode_batch_info(&mut bytes.clone()).unwrap();
    assert_eq!(infos.len(), 1, "the encoder must write exactly one batch");
    let set =
        RecordBatchDecoder::decode_with_custom_compression(&mut bytes, Some(crate::compression::decompress)).unwrap();
    assert!(bytes.is_empty(), "nothing may follow the batch");
    (infos.remove(0), set.records)
}
