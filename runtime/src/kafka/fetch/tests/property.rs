//! Random logs of committed and aborted transactions, fetched in two pieces.

use std::collections::HashMap;

use kafka_protocol::records::Compression;
use proptest::prelude::*;

use super::support::*;
use crate::kafka::fetch::Isolation;

const PRODUCERS: [i64; 3] = [P1, P2, 1003];
const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

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

/// An aborted transaction: producer, first offset, marker offset.
struct Aborted {
    producer_id: i64,
    first: i64,
    marker: i64,
}

/// The log, what read_committed must deliver, and the aborted transactions.
struct Written {
    log: Log,
    committed: Vec<i64>,
    all_data: Vec<i64>,
    aborted: Vec<Aborted>,
}

fn write(steps: &[Step], finals: [bool; 3], codec: usize) -> Written {
    let mut w = Written {
        log: Log::compressed(0, CODECS[codec]),
        committed: Vec::new(),
        all_data: Vec::new(),
        aborted: Vec::new(),
    };
    // Per producer: the open transaction's first offset and its records.
    let mut open: HashMap<usize, (i64, Vec<i64>)> = HashMap::new();
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
    // read_committed reads only decided transactions: decide every open one.
    for (p, commit) in finals.into_iter().enumerate() {
        w.end(p, commit, &mut open);
    }
    w.committed.sort_unstable();
    w
}

impl Written {
    /// Writes producer `p`'s marker if it has a transaction open.
    fn end(&mut self, p: usize, commit: bool, open: &mut HashMap<usize, (i64, Vec<i64>)>) {
        let Some((first, records)) = open.remove(&p) else {
            return;
        };
        if commit {
            self.log.commit(PRODUCERS[p]);
            self.committed.extend(records);
        } else {
            let marker = self.log.abort(PRODUCERS[p]);
            self.aborted.push(Aborted {
                producer_id: PRODUCERS[p],
                first,
                marker,
            });
        }
    }
}

/// What the broker lists for a fetch of offsets `from..upper`: every aborted
/// transaction overlapping that range.
fn listed(aborted: &[Aborted], from: i64, upper: i64) -> Vec<(i64, i64)> {
    aborted
        .iter()
        .filter(|t| t.first < upper && t.marker >= from)
        .map(|t| (t.producer_id, t.first))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn read_committed_delivers_exactly_the_committed_records(
        steps in prop::collection::vec(step(), 1..30),
        finals in any::<[bool; 3]>(),
        codec in 0usize..CODECS.len(),
        cut in any::<prop::sample::Index>(),
        chop in any::<prop::sample::Index>(),
    ) {
        let written = write(&steps, finals, codec);
        let log = &written.log;
        let batches = log.batches();
        let end = log.end_offset();

        // One fetch of the whole log.
        let data = partition(log.bytes(), aborted(&listed(&written.aborted, 0, end)));
        let whole = decode(&data, 0, Isolation::ReadCommitted).unwrap();
        prop_assert_eq!(offsets(&whole), written.committed.clone());
        prop_assert_eq!(whole.next_fetch_offset, end);

        // read_uncommitted: every data record, no markers.
        let data = partition(log.bytes(), None);
        let everything = decode(&data, 0, Isolation::ReadUncommitted).unwrap();
        prop_assert_eq!(offsets(&everything), written.all_data.clone());

        // Two fetches: the first cut off at a random byte of a random batch.
        if batches.is_empty() {
            return Ok(());
        }
        let cut = 1 + cut.index(batches.len());
        let (first_bytes, upper) = match batches.get(cut) {
            Some((offsets, bytes)) => (log.slice(0, cut, chop.index(bytes.len())), offsets.end),
            None => (log.bytes(), end),
        };
        let first = partition(first_bytes, aborted(&listed(&written.aborted, 0, upper)));
        let first = decode(&first, 0, Isolation::ReadCommitted).unwrap();
        let from = first.next_fetch_offset;
        prop_assert_eq!(from, batches[cut - 1].0.end);
        let rest = batches.iter().position(|b| b.0.end > from).unwrap_or(batches.len());
        let second = partition(
            log.slice(rest, batches.len(), 0),
            aborted(&listed(&written.aborted, from, end)),
        );
        let second = decode(&second, from, Isolation::ReadCommitted).unwrap();
        let mut delivered = offsets(&first);
        delivered.extend(offsets(&second));
        prop_assert_eq!(delivered, written.committed.clone());
        prop_assert_eq!(second.next_fetch_offset, end);
    }
}
