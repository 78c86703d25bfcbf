//! BatchBuilder and EncodedBatch: encode, decode back with kafka-protocol.

use bytes::Bytes;
use kafka_protocol::protocol::StrBytes;
use proptest::prelude::*;

use super::{decode, ALL_COMPRESSIONS};
use crate::producer::batch::RECORD_BATCH_OVERHEAD;
use crate::producer::{BatchBuilder, Compression, ProducerError, ProducerIdentity, ProducerRecord, Pushed};

const IDENTITY: ProducerIdentity = ProducerIdentity { id: 4242, epoch: 7 };

fn sample_records() -> Vec<ProducerRecord> {
    vec![
        ProducerRecord::new(Some(Bytes::from_static(b"order-1")), Some(Bytes::from(vec![7u8; 300])), 1_700_000_000_000)
            .with_header("kfn.function", Some(Bytes::from_static(b"validation")))
            .with_header("trace", None),
        // A tombstone with a null key, written a second later.
        ProducerRecord::new(None, None, 1_700_000_001_000),
        // An earlier timestamp than the first record: deltas go negative.
        ProducerRecord::new(Some(Bytes::new()), Some(Bytes::from_static(b"{\"total\":\"12.50\"}")), 1_699_999_999_000)
            .with_header("", Some(Bytes::new())),
    ]
}

fn build(records: &[ProducerRecord], max_batch_bytes: usize) -> BatchBuilder {
    let mut builder = BatchBuilder::new(max_batch_bytes);
    for record in records {
        assert!(matches!(builder.push(record.clone()).unwrap(), Pushed::Added));
    }
    builder
}

/// The decoded record's fields equal the record that went in.
fn assert_same_record(decoded: &kafka_protocol::records::Record, original: &ProducerRecord) {
    assert_eq!(decoded.key, original.key);
    assert_eq!(decoded.value, original.value);
    assert_eq!(decoded.timestamp, original.timestamp_ms);
    let headers: Vec<(String, Option<Bytes>)> =
        decoded.headers.iter().map(|(name, value)| (name.to_string(), value.clone())).collect();
    let expected: Vec<(String, Option<Bytes>)> =
        original.headers.iter().map(|h| (h.name.clone(), h.value.clone())).collect();
    assert_eq!(headers, expected);
}

#[test]
fn transactional_batch_round_trips_with_every_compression() {
    let records = sample_records();
    for compression in ALL_COMPRESSIONS {
        let batch = build(&records, 1_000_000).encode(IDENTITY, 100, true, compression).unwrap();
        assert_eq!(batch.record_count(), 3);
        assert_eq!(batch.base_sequence(), 100);
        assert_eq!(batch.producer(), IDENTITY);
        assert!(batch.transactional());

        let (info, decoded) = decode(&batch);
        assert_eq!(info.producer_id, 4242, "{compression:?}");
        assert_eq!(info.producer_epoch, 7);
        assert_eq!(info.base_sequence, 100);
        assert!(info.transactional);
        assert!(!info.control);
        assert_eq!(info.record_count, 3);
        assert_eq!(info.min_offset, 0);
        assert_eq!(info.compression, compression.to_protocol());
        assert_eq!(info.min_timestamp, 1_699_999_999_000);
        assert_eq!(decoded.len(), 3);
        for (index, (decoded, original)) in decoded.iter().zip(&records).enumerate() {
            assert_eq!(decoded.offset, index as i64, "offset delta of record {index}");
            assert_eq!(decoded.sequence, 100 + index as i32);
            assert_same_record(decoded, original);
        }
    }
}

#[test]
fn batch_without_idempotence_writes_no_producer() {
    let batch =
        build(&sample_records(), 1_000_000).encode(ProducerIdentity::NONE, -1, false, Compression::Lz4).unwrap();
    let (info, _) = decode(&batch);
    assert_eq!(info.producer_id, -1);
    assert_eq!(info.producer_epoch, -1);
    assert_eq!(info.base_sequence, -1);
    assert!(!info.transactional);
}

#[test]
fn sequences_and_transactions_need_a_producer_id() {
    for (sequence, transactional) in [(0, false), (-1, true)] {
        let result = build(&sample_records(), 1_000_000).encode(
            ProducerIdentity::NONE,
            sequence,
            transactional,
            Compression::None,
        );
        assert!(matches!(result, Err(ProducerError::SequenceWithoutProducerId { .. })), "{result:?}");
    }
}

#[test]
fn batch_crossing_the_sequence_wrap_stays_one_batch() {
    let batch = build(&sample_records(), 1_000_000).encode(IDENTITY, i32::MAX - 1, false, Compression::None).unwrap();
    // decode() asserts a single batch: the encoder splits wherever the
    // offset/sequence step breaks, so this proves it does not.
    let (info, decoded) = decode(&batch);
    assert_eq!(info.base_sequence, i32::MAX - 1);
    assert_eq!(decoded.len(), 3);
}

#[test]
fn empty_batch_is_refused() {
    let result = BatchBuilder::new(100).encode(IDENTITY, 0, false, Compression::None);
    assert!(matches!(result, Err(ProducerError::EmptyBatch)), "{result:?}");
}

#[test]
fn duplicate_header_names_are_refused_and_leave_the_batch_alone() {
    let mut builder = BatchBuilder::new(1_000_000);
    let record = ProducerRecord::new(None, Some(Bytes::from_static(b"v")), 0)
        .with_header("attempt", Some(Bytes::from_static(b"1")))
        .with_header("attempt", Some(Bytes::from_static(b"2")));
    match builder.push(record) {
        Err(ProducerError::DuplicateHeader { name }) => assert_eq!(name, "attempt"),
        other => panic!("expected a duplicate header error, got {other:?}"),
    }
    assert!(builder.is_empty());
    assert_eq!(builder.estimated_size(), RECORD_BATCH_OVERHEAD);
}

#[test]
fn estimated_size_is_the_uncompressed_encoded_size() {
    let records = sample_records();
    let mut builder = BatchBuilder::new(1_000_000);
    for (count, record) in records.iter().enumerate() {
        assert!(matches!(builder.push(record.clone()).unwrap(), Pushed::Added));
        // Encode a copy at every step: the third record moves the base
        // timestamp back, which resizes the records before it.
        let batch = build(&records[..=count], 1_000_000).encode(IDENTITY, 0, false, Compression::None).unwrap();
        assert_eq!(builder.estimated_size(), batch.encoded_len(), "after {} records", count + 1);
    }
}

#[test]
fn full_batch_hands_the_record_back() {
    let record = |n: u8| ProducerRecord::new(None, Some(Bytes::from(vec![n; 100])), 1_000);
    let mut builder = BatchBuilder::new(400);
    let mut pushed = 0u8;
    let rejected = loop {
        match builder.push(record(pushed)).unwrap() {
            Pushed::Added => pushed += 1,
            Pushed::Full(back) => break back,
        }
    };
    assert_eq!(rejected, record(pushed));
    assert!(pushed >= 2, "room for more than one record");
    assert!(builder.estimated_size() <= 400);
    let batch = builder.encode(IDENTITY, 0, false, Compression::None).unwrap();
    assert!(batch.encoded_len() <= 400);
    assert_eq!(batch.record_count(), i32::from(pushed));
}

#[test]
fn oversized_record_travels_alone() {
    let big = ProducerRecord::new(None, Some(Bytes::from(vec![1u8; 1_000])), 0);
    let mut builder = BatchBuilder::new(100);
    assert!(matches!(builder.push(big.clone()).unwrap(), Pushed::Added));
    assert!(matches!(builder.push(big).unwrap(), Pushed::Full(_)));
    assert_eq!(builder.record_count(), 1);
}

#[test]
fn timestamps_too_far_apart_are_refused() {
    let mut builder = BatchBuilder::new(1_000_000);
    let early = ProducerRecord::new(None, None, i64::MIN);
    let late = ProducerRecord::new(None, None, i64::MAX);
    assert!(matches!(builder.push(early).unwrap(), Pushed::Added));
    assert!(matches!(builder.push(late), Err(ProducerError::TimestampSpread { .. })));
    assert_eq!(builder.record_count(), 1);
}

#[test]
fn reencode_changes_only_the_producer_state() {
    let records = sample_records();
    let batch = build(&records, 1_000_000).encode(IDENTITY, 40, true, Compression::Zstd).unwrap();
    let bumped = ProducerIdentity { id: 4242, epoch: 8 };
    let again = batch.reencode(bumped, 0).unwrap();
    assert_eq!(again.producer(), bumped);
    assert_eq!(again.base_sequence(), 0);
    assert_eq!(again.compression(), Compression::Zstd);
    let (info, decoded) = decode(&again);
    assert_eq!((info.producer_id, info.producer_epoch, info.base_sequence), (4242, 8, 0));
    assert!(info.transactional);
    for (decoded, original) in decoded.iter().zip(&records) {
        assert_same_record(decoded, original);
    }
    // The original batch is untouched: a retry of it still carries sequence 40.
    assert_eq!(decode(&batch).0.base_sequence, 40);
}

fn arb_bytes() -> impl Strategy<Value = Option<Bytes>> {
    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from))
}

fn arb_record() -> impl Strategy<Value = ProducerRecord> {
    (
        arb_bytes(),
        arb_bytes(),
        // Unique names: a map's keys.
        proptest::collection::btree_map("[a-z.]{0,12}", arb_bytes(), 0..4),
        // Timestamps as real clocks give them, out of order within a batch.
        1_600_000_000_000i64..1_800_000_000_000,
    )
        .prop_map(|(key, value, headers, timestamp_ms)| {
            headers.into_iter().fold(ProducerRecord::new(key, value, timestamp_ms), |record, (name, value)| {
                record.with_header(name, value)
            })
        })
}

fn arb_compression() -> impl Strategy<Value = Compression> {
    proptest::sample::select(ALL_COMPRESSIONS.to_vec())
}

proptest! {
    #[test]
    fn any_records_round_trip(
        records in proptest::collection::vec(arb_record(), 1..40),
        compression in arb_compression(),
        id in 0i64..i64::MAX,
        epoch in 0i16..i16::MAX,
        base_sequence in 0i32..=i32::MAX,
        transactional in any::<bool>(),
    ) {
        let builder = build(&records, usize::MAX);
        let estimated = builder.estimated_size();
        let identity = ProducerIdentity { id, epoch };
        let batch = builder.encode(identity, base_sequence, transactional, compression).unwrap();
        let (info, decoded) = decode(&batch);
        prop_assert_eq!(info.producer_id, id);
        prop_assert_eq!(info.producer_epoch, epoch);
        prop_assert_eq!(info.base_sequence, base_sequence);
        prop_assert_eq!(info.transactional, transactional);
        prop_assert_eq!(info.record_count as usize, records.len());
        prop_assert_eq!(info.compression, compression.to_protocol());
        if compression == Compression::None {
            prop_assert_eq!(batch.encoded_len(), estimated);
        }
        prop_assert_eq!(decoded.len(), records.len());
        for (index, (decoded, original)) in decoded.iter().zip(&records).enumerate() {
            prop_assert_eq!(decoded.offset, index as i64);
            prop_assert_eq!(decoded.key.clone(), original.key.clone());
            prop_assert_eq!(decoded.value.clone(), original.value.clone());
            prop_assert_eq!(decoded.timestamp, original.timestamp_ms);
            let expected: Vec<(StrBytes, Option<Bytes>)> = original
                .headers
                .iter()
                .map(|h| (StrBytes::from_string(h.name.clone()), h.value.clone()))
                .collect();
            let headers: Vec<(StrBytes, Option<Bytes>)> = decoded
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            prop_assert_eq!(headers, expected);
        }
    }
}
