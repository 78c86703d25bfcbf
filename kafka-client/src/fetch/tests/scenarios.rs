//! One test per read_committed situation the Java consumer handles.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use kafka_protocol::ResponseError;

use super::support::*;
use crate::fetch::{FetchError, Isolation};

/// Plain 0-1, P1 txn 2-4, P2 txn 5-6, P1 txn 7, P2 txn 8-9, P1 aborts (10),
/// P2 commits (11), plain 12.
fn interleaved() -> Log {
    let mut log = Log::new(0);
    log.plain(2);
    log.txn(P1, 3);
    log.txn(P2, 2);
    log.txn(P1, 1);
    log.txn(P2, 2);
    assert_eq!(log.abort(P1), 10);
    assert_eq!(log.commit(P2), 11);
    log.plain(1);
    log
}

#[test]
fn two_producers_interleaved_one_aborts_one_commits() {
    let log = interleaved();
    let data = partition(log.bytes(), aborted(&[(P1, 2)]));
    let decoded = decode(&data, 0, Isolation::ReadCommitted).unwrap();
    assert_eq!(offsets(&decoded), vec![0, 1, 5, 6, 8, 9, 12]);
    assert_eq!(decoded.next_fetch_offset, 13);
    assert_eq!(decoded.aborted_batches, 2);
    assert_eq!(decoded.high_watermark, 1_000);
    assert_eq!(decoded.last_stable_offset, 900);

    let record = &decoded.records[2];
    assert_eq!(record.offset, 5);
    assert_eq!(record.key, Some(key_of(5)));
    assert_eq!(record.value, Some(value_of(5)));
    assert_eq!(record.timestamp_ms, timestamp_of(5));
    assert_eq!(record.headers.len(), 1);
    assert_eq!(record.headers[0].name, "offset");
    assert_eq!(record.headers[0].value, Some(Bytes::from("5")));
}

#[test]
fn aborted_transaction_that_began_before_the_fetched_range() {
    // P1's aborted transaction began at 95; the fetch starts at 100.
    let mut log = Log::new(100);
    log.txn(P1, 3);
    log.txn(P2, 1);
    assert_eq!(log.abort(P1), 104);
    log.commit(P2);
    // P1's next transaction commits and must be delivered.
    log.txn(P1, 2);
    log.commit(P1);
    let data = partition(log.bytes(), aborted(&[(P1, 95)]));
    let decoded = decode(&data, 100, Isolation::ReadCommitted).unwrap();
    assert_eq!(offsets(&decoded), vec![103, 106, 107]);
    assert_eq!(decoded.next_fetch_offset, 109);
}

#[test]
fn several_aborted_transactions_of_one_producer() {
    let mut log = Log::new(0);
    log.txn(P1, 2);
    log.abort(P1); // 2
    log.txn(P1, 2); // 3-4
    log.commit(P1); // 5
    log.txn(P1, 1); // 6
    log.abort(P1); // 7
    log.idempotent(IDEMPOTENT, 1); // 8
    log.txn(P1, 2); // 9-10
    log.abort(P1); // 11
    log.txn(P1, 1); // 12
    log.commit(P1); // 13
                    // The broker's list need not be sorted.
    let data = partition(log.bytes(), aborted(&[(P1, 9), (P1, 0), (P1, 6)]));
    let decoded = decode(&data, 0, Isolation::ReadCommitted).unwrap();
    assert_eq!(offsets(&decoded), vec![3, 4, 8, 12]);
    assert_eq!(decoded.next_fetch_offset, 14);
    assert_eq!(decoded.aborted_batches, 3);
}

#[test]
fn control_batches_alone_deliver_nothing_and_advance() {
    let mut log = Log::new(50);
    log.commit(P1);
    log.abort(P2);
    log.commit(P1);
    for isolation in [Isolation::ReadCommitted, Isolation::ReadUncommitted] {
        let data = partition(log.bytes(), aborted(&[(P2, 40)]));
        let decoded = decode(&data, 50, isolation).unwrap();
        assert!(decoded.records.is_empty(), "{isolation:?}");
        assert_eq!(decoded.next_fetch_offset, 53, "{isolation:?}");
    }
}

#[test]
fn aborted_transaction_open_across_two_fetches() {
    // P1 txn 0-2, plain 3 | P1 txn 4-5, P1 aborts (6), plain 7.
    let mut log = Log::new(0);
    log.txn(P1, 3);
    log.plain(1);
    log.txn(P1, 2);
    assert_eq!(log.abort(P1), 6);
    log.plain(1);

    // The first answer stops before the marker; the broker lists the txn.
    let first = partition(log.slice(0, 2, 0), aborted(&[(P1, 0)]));
    let first = decode(&first, 0, Isolation::ReadCommitted).unwrap();
    assert_eq!(offsets(&first), vec![3]);
    assert_eq!(first.next_fetch_offset, 4);

    // The second starts after the txn's first offset and still lists it.
    let second = partition(log.slice(2, 5, 0), aborted(&[(P1, 0)]));
    let second = decode(&second, first.next_fetch_offset, Isolation::ReadCommitted).unwrap();
    assert_eq!(offsets(&second), vec![7]);
    assert_eq!(second.next_fetch_offset, 8);
}

#[test]
fn committed_transaction_cut_before_its_marker_waits_for_a_larger_fetch() {
    let mut log = Log::new(0);
    log.txn(P1, 3);
    log.plain(1);
    log.txn(P1, 2);
    assert_eq!(log.commit(P1), 6);
    log.plain(1);

    // The answer stops before the marker, below the broker's LSO, which
    // equals its high watermark (as tansu's does): the transaction may be
    // committed or aborted, so nothing from 0 on is delivered and the caller
    // is told that a larger fetch may help.
    let first = partition_at(log.slice(0, 2, 0), aborted(&[]), 8, 8);
    let held = decode(&first, 0, Isolation::ReadCommitted).unwrap();
    assert!(held.records.is_empty());
    assert_eq!(held.next_fetch_offset, 0);
    let back = held.held_back.expect("held back");
    assert_eq!((back.first_offset, back.producer_id, back.cut_short), (0, P1, true));

    // The larger answer holds the COMMIT: everything, in order.
    let whole = partition_at(log.bytes(), aborted(&[]), 8, 8);
    let whole = decode(&whole, 0, Isolation::ReadCommitted).unwrap();
    assert_eq!(offsets(&whole), vec![0, 1, 2, 3, 4, 5, 7]);
    assert_eq!(whole.next_fetch_offset, 8);
    assert_eq!(whole.held_back, None);

    // Trusting the broker (Apache Kafka sends only decided records below its
    // LSO), the consumer's last resort, reads the cut answer as the Java
    // consumer does.
    let trusted = decode_trusting(&first, 0).unwrap();
    assert_eq!(offsets(&trusted), vec![0, 1, 2, 3]);
    assert_eq!(trusted.next_fetch_offset, 4);
    assert_eq!(trusted.held_back, None);
    let second = partition(log.slice(2, 5, 0), aborted(&[]));
    let second = decode(&second, 4, Isolation::ReadCommitted).unwrap();
    assert_eq!(offsets(&second), vec![4, 5, 7]);
    assert_eq!(second.next_fetch_offset, 8);
}

#[test]
fn compressed_batches_decode_with_every_codec() {
    for codec in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let mut log = Log::compressed(0, codec);
        log.txn(P1, 4); // 0-3
        log.txn(P2, 3); // 4-6
        log.abort(P1); // 7
        log.commit(P2); // 8
        log.plain(3); // 9-11
        let bytes = log.bytes();
        let infos = RecordBatchDecoder::decode_batch_info(&mut bytes.clone()).unwrap();
        let data_codecs: Vec<_> = infos.iter().filter(|i| !i.control).map(|i| i.compression).collect();
        assert_eq!(data_codecs, vec![codec; 3], "the log really is {codec:?}");

        let data = partition(bytes, aborted(&[(P1, 0)]));
        let decoded = decode(&data, 0, Isolation::ReadCommitted).unwrap();
        assert_eq!(offsets(&decoded), vec![4, 5, 6, 9, 10, 11], "{codec:?}");
        assert_eq!(decoded.next_fetch_offset, 12, "{codec:?}");
        for record in &decoded.records {
            assert_eq!(record.key, Some(key_of(record.offset)), "{codec:?}");
            assert_eq!(record.value, Some(value_of(record.offset)), "{codec:?}");
            assert_eq!(record.timestamp_ms, timestamp_of(record.offset), "{codec:?}");
            let header = Bytes::from(record.offset.to_string());
            assert_eq!(record.headers[0].value, Some(header), "{codec:?}");
        }
    }
}

#[test]
fn batch_starting_before_the_fetch_offset_is_trimmed() {
    let mut log = Log::new(10);
    log.plain(5); // 10-14
    log.plain(2); // 15-16
    let data = partition(log.bytes(), None);
    let decoded = decode(&data, 12, Isolation::ReadCommitted).unwrap();
    assert_eq!(offsets(&decoded), vec![12, 13, 14, 15, 16]);
    assert_eq!(decoded.next_fetch_offset, 17);

    // Inside a committed transaction's batch, too.
    let mut log = Log::new(10);
    log.txn(P1, 4); // 10-13
    log.commit(P1); // 14
    let data = partition(log.bytes(), aborted(&[]));
    let decoded = decode(&data, 13, Isolation::ReadCommitted).unwrap();
    assert_eq!(offsets(&decoded), vec![13]);
    assert_eq!(decoded.next_fetch_offset, 15);
}

#[test]
fn truncated_last_batch_is_left_for_the_next_fetch() {
    let mut log = Log::new(0);
    log.plain(3); // 0-2
    log.txn(P1, 2); // 3-4
    log.commit(P1); // 5
    log.plain(4); // 6-9
    let last = log.batches()[3].1.len();
    // Cut inside the batch body, and inside its 12-byte length prefix.
    for extra in [last - 7, 20, 5] {
        let data = partition(log.slice(0, 3, extra), aborted(&[]));
        let decoded = decode(&data, 0, Isolation::ReadCommitted).unwrap();
        assert_eq!(offsets(&decoded), vec![0, 1, 2, 3, 4], "cut at {extra}");
        assert_eq!(decoded.next_fetch_offset, 6, "cut at {extra}");
    }
    let data = partition(log.slice(3, 4, 0), aborted(&[]));
    let decoded = decode(&data, 6, Isolation::ReadCommitted).unwrap();
    assert_eq!(offsets(&decoded), vec![6, 7, 8, 9]);
    assert_eq!(decoded.next_fetch_offset, 10);
}

#[test]
fn first_batch_that_does_not_fit_asks_for_more_bytes() {
    let mut log = Log::new(40);
    log.plain(3);
    let size = log.batches()[0].1.len();
    let data = partition(log.slice(0, 0, size - 1), None);
    match decode(&data, 40, Isolation::ReadCommitted) {
        Err(FetchError::BatchTooLarge { offset, needed, received, .. }) => {
            assert_eq!(offset, 40);
            assert_eq!(needed, size);
            assert_eq!(received, size - 1);
        }
        other => panic!("expected BatchTooLarge, got {other:?}"),
    }
    let data = partition(log.slice(0, 0, 7), None);
    match decode(&data, 40, Isolation::ReadCommitted) {
        Err(FetchError::BatchTooLarge { offset, needed, received, .. }) => {
            assert_eq!((offset, needed, received), (40, 12, 7));
        }
        other => panic!("expected BatchTooLarge, got {other:?}"),
    }
}

#[test]
fn read_uncommitted_delivers_everything_but_control_records() {
    let log = interleaved();
    for list in [None, aborted(&[(P1, 2)])] {
        let data = partition(log.bytes(), list);
        let decoded = decode(&data, 0, Isolation::ReadUncommitted).unwrap();
        assert_eq!(offsets(&decoded), ranges(&[0..10, 12..13]));
        assert_eq!(decoded.next_fetch_offset, 13);
        assert_eq!(decoded.aborted_batches, 0);
    }
}

#[test]
fn read_committed_without_a_list_still_reads_the_markers() {
    let log = interleaved();
    for list in [None, aborted(&[])] {
        let data = partition(log.bytes(), list.clone());
        let decoded = decode(&data, 0, Isolation::ReadCommitted).unwrap();
        assert_eq!(offsets(&decoded), vec![0, 1, 5, 6, 8, 9, 12], "{list:?}");
        assert_eq!(decoded.next_fetch_offset, 13);
        assert_eq!(decoded.aborted_batches, 2);
    }
}

#[test]
fn empty_partition_keeps_the_fetch_offset() {
    let data = partition(Bytes::new(), aborted(&[]));
    let decoded = decode(&data, 77, Isolation::ReadCommitted).unwrap();
    assert!(decoded.records.is_empty());
    assert_eq!(decoded.next_fetch_offset, 77);
}

#[test]
fn older_wire_versions_carry_the_same_records() {
    let log = interleaved();
    for version in [4, 11, 12, 13, 17] {
        let data = partition_via(version, log.bytes(), aborted(&[(P1, 2)]));
        let decoded = decode(&data, 0, Isolation::ReadCommitted).unwrap();
        assert_eq!(offsets(&decoded), vec![0, 1, 5, 6, 8, 9, 12], "v{version}");
    }
}

#[test]
fn partition_errors_name_the_kafka_error() {
    let mut data = partition(Bytes::new(), None);
    data.error_code = ResponseError::OffsetOutOfRange.code();
    let err = decode(&data, 5, Isolation::ReadCommitted).unwrap_err();
    assert!(matches!(err, FetchError::Broker { error: ResponseError::OffsetOutOfRange, partition: PARTITION, .. }));
    let message = err.to_string();
    assert!(message.contains("OffsetOutOfRange") && message.contains(TOPIC), "{message}");
    assert!(!err.is_retriable());

    data.error_code = ResponseError::NotLeaderOrFollower.code();
    let err = decode(&data, 5, Isolation::ReadCommitted).unwrap_err();
    assert!(matches!(err, FetchError::Broker { error: ResponseError::NotLeaderOrFollower, .. }));
    assert!(err.is_retriable());
}

#[test]
fn corrupt_batches_are_typed_errors() {
    let mut log = Log::new(0);
    log.plain(2);
    let good = log.bytes();

    // A flipped byte in the records fails the CRC.
    let mut bad = BytesMut::from(&good[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let data = partition(bad.freeze(), None);
    let err = decode(&data, 0, Isolation::ReadCommitted).unwrap_err();
    assert!(matches!(err, FetchError::Decode { offset: 0, .. }), "{err:?}");

    // An old message format is refused by name.
    let mut old = BytesMut::from(&good[..]);
    old[16] = 1;
    let data = partition(old.freeze(), None);
    let err = decode(&data, 0, Isolation::ReadCommitted).unwrap_err();
    assert!(matches!(err, FetchError::UnsupportedFormat { magic: 1, .. }), "{err:?}");

    // A negative length.
    let mut negative = BytesMut::from(&good[..]);
    negative[8..12].copy_from_slice(&(-5i32).to_be_bytes());
    let data = partition(negative.freeze(), None);
    let err = decode(&data, 0, Isolation::ReadCommitted).unwrap_err();
    assert!(matches!(err, FetchError::Corrupt { .. }), "{err:?}");
}

#[test]
fn log_append_time_uses_the_batch_timestamp() {
    let mut log = Log::new(0);
    log.plain(2);
    let mut bytes = BytesMut::from(&log.bytes()[..]);
    // Set the LogAppendTime attribute and the broker's max timestamp, then re-sign.
    let appended: i64 = 1_800_000_000_000;
    bytes[22] |= 1 << 3;
    bytes[35..43].copy_from_slice(&appended.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    let data = partition(bytes.freeze(), None);
    let decoded = decode(&data, 0, Isolation::ReadCommitted).unwrap();
    let stamps: Vec<i64> = decoded.records.iter().map(|r| r.timestamp_ms).collect();
    assert_eq!(stamps, vec![appended, appended]);
}

/// Found by the `record_batches` fuzz target: a batch whose header claims
/// 2^31 - 1 records (CRC recomputed, so it reaches the decoder) made
/// kafka-protocol reserve 32 GB and abort the process. It is a decode error
/// naming the batch, for a data batch and for a marker, under every codec.
#[test]
fn a_record_count_beyond_the_batch_bytes_is_an_error_not_an_abort() {
    for compression in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]
    {
        for marker in [false, true] {
            let mut log = Log::compressed(0, compression);
            if marker {
                log.txn(P1, 2);
                log.commit(P1);
            } else {
                log.plain(3);
            }
            let mut bytes = BytesMut::from(&log.bytes()[..]);
            // The last batch: the data batch, or the marker.
            let start = log.batches().last().unwrap().1.start;
            bytes[start + 57..start + 61].copy_from_slice(&i32::MAX.to_be_bytes());
            let crc = crc32c::crc32c(&bytes[start + 21..]);
            bytes[start + 17..start + 21].copy_from_slice(&crc.to_be_bytes());
            let data = partition(bytes.freeze(), None);
            let err = decode(&data, 0, Isolation::ReadCommitted).expect_err("a corrupt record count is refused");
            assert!(matches!(err, FetchError::Decode { offset, .. } if offset == start_offset(&log)), "{err}");
        }
    }
}

fn start_offset(log: &Log) -> i64 {
    log.batches().last().unwrap().0.start
}
