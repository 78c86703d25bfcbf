//! Random logs of committed, aborted and open transactions, read as a consumer does.
//!
//! Each log is served as one of three brokers would: Apache Kafka (aborted
//! list, answers stop at the last stable offset), tansu (no aborted list,
//! answers stop at the last stable offset), and a broker that also sends
//! open transactions with a last stable offset equal to the high watermark.

use std::collections::HashMap;

use kafka_protocol::records::Compression;
use proptest::prelude::*;

use super::support::*;
use crate::fetch::{FetchError, HeldBack, Isolation};

const PRODUCERS: [i64; 3] = [P1, P2, 1003];
const CODECS: [Compression; 5] =
    [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

#[derive(Debug, Clone)]
enum Step {
    Plain(i64),
    Idempotent(i64),
    /// A data batch of producer `PRODUCERS[p]`, opening a transaction if none is open.
    Txn(usize, i64),
    /// Ends producer `p`'s open transaction, if any.
    End(usize, bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (1i64..4).prop_map(Step::Plain),
        1 => (1i64..3).prop_map(Step::Idempotent),
        3 => (0usize..3, 1i64..4).prop_map(|(p, n)| Step::Txn(p, n)),
        2 => (0usize..3, any::<bool>()).prop_map(|(p, c)| Step::End(p, c)),
    ]
}

/// A transaction that ended in the log.
struct Txn {
    producer_id: i64,
    first: i64,
    marker: i64,
    committed: bool,
}

/// Which kind of broker serves the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broker {
    /// Aborted list; answers stop at the last stable offset.
    Apache,
    /// Empty aborted list; answers stop at the last stable offset.
    Tansu,
    /// Empty aborted list; open transactions sent, LSO = high watermark.
    Unbounded,
}

fn broker() -> impl Strategy<Value = Broker> {
    prop_oneof![Just(Broker::Apache), Just(Broker::Tansu), Just(Broker::Unbounded)]
}

/// The log, what read_committed must deliver, and the aborted transactions.
struct Written {
    log: Log,
    /// Committed and non-transactional records once every transaction is decided.
    committed: Vec<i64>,
    all_data: Vec<i64>,
    txns: Vec<Txn>,
    /// How many batches and offsets the log had while some transactions were open.
    open_batches: usize,
    open_end: i64,
    /// The earliest transaction open at that point: first offset, producer.
    first_open: Option<(i64, i64)>,
}

/// Per producer: the open transaction's first offset and its records.
type Open = HashMap<usize, (i64, Vec<i64>)>;

/// Writes `steps`, ends each producer's transaction as `finals` says (`None`:
/// left open), remembers that point, then decides the open ones by `later`.
fn write(steps: &[Step], finals: [Option<bool>; 3], later: [bool; 3], codec: usize) -> Written {
    let mut w = Written {
        log: Log::compressed(0, CODECS[codec]),
        committed: Vec::new(),
        all_data: Vec::new(),
        txns: Vec::new(),
        open_batches: 0,
        open_end: 0,
        first_open: None,
    };
    let mut open = Open::new();
    for step in steps {
        match *step {
            Step::Plain(n) => {
                let written = w.log.plain(n);
                w.all_data.extend(written.clone());
                w.committed.extend(written);
            }
            Step::Idempotent(n) => {
                let written = w.log.idempotent(IDEMPOTENT, n);
                w.all_data.extend(written.clone());
                w.committed.extend(written);
            }
            Step::Txn(p, n) => {
                let written = w.log.txn(PRODUCERS[p], n);
                w.all_data.extend(written.clone());
                let entry = open.entry(p).or_insert((written.start, Vec::new()));
                entry.1.extend(written);
            }
            Step::End(p, commit) => w.end(p, commit, &mut open),
        }
    }
    for (p, commit) in finals.into_iter().enumerate() {
        if let Some(commit) = commit {
            w.end(p, commit, &mut open);
        }
    }
    w.open_batches = w.log.batches().len();
    w.open_end = w.log.end_offset();
    w.first_open = open.iter().map(|(&p, (first, _))| (*first, PRODUCERS[p])).min();
    for (p, commit) in later.into_iter().enumerate() {
        w.end(p, commit, &mut open);
    }
    w.committed.sort_unstable();
    w
}

impl Written {
    /// Writes producer `p`'s marker if it has a transaction open.
    fn end(&mut self, p: usize, commit: bool, open: &mut Open) {
        let Some((first, records)) = open.remove(&p) else {
            return;
        };
        let marker = if commit {
            self.committed.extend(records);
            self.log.commit(PRODUCERS[p])
        } else {
            self.log.abort(PRODUCERS[p])
        };
        self.txns.push(Txn { producer_id: PRODUCERS[p], first, marker, committed: commit });
    }

    /// What the broker lists for a fetch of offsets `from..upper` once the
    /// log reached `decided`: Apache Kafka every aborted transaction
    /// overlapping that range; the others nothing.
    fn listed(&self, broker: Broker, from: i64, upper: i64, decided: i64) -> Vec<(i64, i64)> {
        if broker != Broker::Apache {
            return Vec::new();
        }
        self.txns
            .iter()
            .filter(|t| !t.committed && t.first < upper && t.marker >= from && t.marker < decided)
            .map(|t| (t.producer_id, t.first))
            .collect()
    }

    /// Where read_committed must stop in an answer that ends at `stable`
    /// while some transactions were open: the earliest transaction sent
    /// without its marker, unless the broker's list says it was aborted.
    fn hold(&self, broker: Broker, stable: i64) -> Option<(i64, i64)> {
        if broker == Broker::Unbounded {
            return self.first_open;
        }
        self.txns
            .iter()
            .filter(|t| t.marker < self.open_end && t.first < stable && t.marker >= stable)
            .filter(|t| t.committed || broker != Broker::Apache)
            .map(|t| (t.first, t.producer_id))
            .min()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn read_committed_delivers_exactly_the_committed_records(
        steps in prop::collection::vec(step(), 1..30),
        finals in prop::array::uniform3(prop::option::of(any::<bool>())),
        later in any::<[bool; 3]>(),
        codec in 0usize..CODECS.len(),
        broker in broker(),
        first_limit in 1usize..2048,
    ) {
        let w = write(&steps, finals, later, codec);
        let log = &w.log;
        let end = log.end_offset();

        // The whole decided log at once.
        let data = partition_at(log.bytes(), aborted(&w.listed(broker, 0, end, end)), end, end);
        let whole = decode(&data, 0, Isolation::ReadCommitted).unwrap();
        prop_assert_eq!(offsets(&whole), w.committed.clone());
        prop_assert_eq!(whole.next_fetch_offset, end);
        prop_assert_eq!(whole.held_back, None);

        // read_uncommitted: every data record, no markers.
        let data = partition(log.bytes(), None);
        let everything = decode(&data, 0, Isolation::ReadUncommitted).unwrap();
        prop_assert_eq!(offsets(&everything), w.all_data.clone());

        // While transactions were open.
        let stable = w.first_open.map_or(w.open_end, |(first, _)| first);
        let (sent, lso) = match broker {
            Broker::Apache | Broker::Tansu => (log.batches().iter().filter(|b| b.0.start < stable).count(), stable),
            Broker::Unbounded => (w.open_batches, w.open_end),
        };
        let listed = w.listed(broker, 0, lso, w.open_end);
        let data = partition_at(log.slice(0, sent, 0), aborted(&listed), w.open_end, lso);
        let before = decode(&data, 0, Isolation::ReadCommitted).unwrap();
        let hold = w.hold(broker, stable);
        let upto = hold.map_or(stable, |(first, _)| first);
        let expected: Vec<i64> = w.committed.iter().copied().filter(|&o| o < upto).collect();
        prop_assert_eq!(offsets(&before), expected);
        prop_assert_eq!(before.next_fetch_offset, upto);
        let held = hold.map(|(first_offset, producer_id)| HeldBack { first_offset, producer_id, cut_short: false });
        prop_assert_eq!(before.held_back, held);

        // Once they are decided, the next fetch delivers the rest.
        let from = before.next_fetch_offset;
        let (rest, _) = log.read(from, usize::MAX);
        let data = partition_at(rest, aborted(&w.listed(broker, from, end, end)), end, end);
        let after = decode(&data, from, Isolation::ReadCommitted).unwrap();
        let mut delivered = offsets(&before);
        delivered.extend(offsets(&after));
        prop_assert_eq!(delivered, w.committed.clone());
        prop_assert_eq!(after.next_fetch_offset, end);

        // A consumer reading the decided log with a small size limit, doubled
        // whenever a fetch brings no progress, as `PartitionReader` does.
        let (mut from, mut limit, mut delivered) = (0i64, first_limit, Vec::new());
        for _ in 0..400 {
            if from == end {
                break;
            }
            let (bytes, upper) = log.read(from, limit);
            let data = partition_at(bytes, aborted(&w.listed(broker, from, upper, end)), end, end);
            let decoded = match decode(&data, from, Isolation::ReadCommitted) {
                Err(FetchError::BatchTooLarge { .. }) => {
                    limit *= 2;
                    continue;
                }
                other => other.unwrap(),
            };
            if let Some(held) = decoded.held_back {
                // Every transaction is decided: only the cut can hide a marker.
                prop_assert!(held.cut_short);
                prop_assert_eq!(held.first_offset, decoded.next_fetch_offset);
            }
            prop_assert!(decoded.next_fetch_offset >= from);
            if decoded.next_fetch_offset == from {
                prop_assert!(decoded.held_back.is_some());
                limit *= 2;
            }
            delivered.extend(offsets(&decoded));
            from = decoded.next_fetch_offset;
        }
        prop_assert_eq!(from, end);
        prop_assert_eq!(delivered, w.committed.clone());
    }
}
