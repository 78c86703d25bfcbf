//! Dead letters as read back: where each is, where it came from, and
//! reading a whole topic to the end it had when reading began.

use std::time::{Duration, Instant};

use crate::kafka::Header;
use bytes::Bytes;

use super::{kafka, ReplayError};
use crate::invoker::dead_letter::{headers, Origin};
use crate::kafka::consumer::ReadToEnd;
use crate::kafka::fetch::ConsumedRecord;
use crate::kafka::group::protocol::TopicPartition;
use crate::kafka::Cluster;

/// How long reading a topic to its end may go without progress.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a dead letter is in its dead-letter topic: `<partition>/<offset>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DlqOffset {
    /// The dead-letter topic's partition.
    pub partition: i32,
    /// The dead letter's offset there.
    pub offset: i64,
}

impl std::fmt::Display for DlqOffset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.partition, self.offset)
    }
}

impl std::str::FromStr for DlqOffset {
    type Err = String;

    /// Parses `<partition>/<offset>`, as `kfn dlq list` prints it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = || format!("expected <partition>/<offset> (e.g. 0/42), found {s:?}");
        let (p, o) = s.split_once('/').ok_or_else(expected)?;
        let partition = p.trim().parse::<i32>().map_err(|_| expected())?;
        let offset = o.trim().parse::<i64>().map_err(|_| expected())?;
        if partition < 0 || offset < 0 {
            return Err(expected());
        }
        Ok(DlqOffset { partition, offset })
    }
}

/// One record of a dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Where it is in the dead-letter topic.
    pub at: DlqOffset,
    /// The record's timestamp (the original record's).
    pub timestamp_ms: i64,
    /// The original key.
    pub key: Option<Bytes>,
    /// The original value.
    pub value: Option<Bytes>,
    /// The original headers followed by the `kfn.*` ones.
    pub headers: Vec<Header>,
}

impl DeadLetter {
    fn from_record(partition: i32, r: ConsumedRecord) -> Self {
        DeadLetter {
            at: DlqOffset { partition, offset: r.offset },
            timestamp_ms: r.timestamp_ms,
            key: r.key,
            value: r.value,
            headers: r.headers,
        }
    }

    /// The value of a header as text, if present and UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| h.value.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The failure kind (`permanent`, `retries_exhausted`, `undecodable`, `panic`, `output`).
    pub fn kind(&self) -> Option<&str> {
        self.header(headers::KIND)
    }

    /// The error message.
    pub fn message(&self) -> Option<&str> {
        self.header(headers::MESSAGE)
    }

    /// The attempts made.
    pub fn attempts(&self) -> Option<u32> {
        self.header(headers::ATTEMPTS).and_then(|a| a.parse().ok())
    }

    /// Where the record came from (its timestamp is the letter's, kept from
    /// the original); `Err` names the header that is missing or malformed.
    pub fn origin(&self) -> Result<Origin, String> {
        let get =
            |name: &str| self.header(name).ok_or_else(|| format!("header {name} is missing: not a kfn dead letter"));
        let number = |name: &str| {
            get(name).and_then(|v| v.parse::<i64>().map_err(|_| format!("header {name} = {v:?} is not a number")))
        };
        let partition = number(headers::PARTITION)?;
        Ok(Origin {
            topic: get(headers::TOPIC)?.to_string(),
            partition: i32::try_from(partition)
                .map_err(|_| format!("header {} = {partition} is out of range", headers::PARTITION))?,
            offset: number(headers::OFFSET)?,
            timestamp_ms: self.timestamp_ms,
        })
    }

    /// The headers the original record carried (every header but `kfn.*`).
    pub fn original_headers(&self) -> impl Iterator<Item = &Header> {
        self.headers.iter().filter(|h| !h.name.starts_with("kfn."))
    }
}

/// Every committed record of `topic`, partition by partition, from the first
/// kept offset to the end of the log as it was when reading began.
///
/// That end is the high watermark, not the last stable offset: a transaction
/// whose commit was just acknowledged may not have its marker on every
/// partition yet (the coordinator writes them after answering), and a reader
/// stopping at the last stable offset would miss its records. Reading waits
/// for each transaction below the end to be decided (up to `STALL_TIMEOUT`).
pub async fn read_topic(cluster: &Cluster, topic: &str) -> Result<Vec<(i32, ConsumedRecord)>, ReplayError> {
    cluster.invalidate(topic);
    let info = cluster.topic(topic).await.map_err(kafka(format!("reading the metadata of topic {topic}")))?;
    let mut out = Vec::new();
    for p in &info.partitions {
        let tp = TopicPartition::new(topic, p.partition);
        for r in read_partition(cluster, &tp).await? {
            out.push((p.partition, r));
        }
    }
    Ok(out)
}

async fn read_partition(cluster: &Cluster, tp: &TopicPartition) -> Result<Vec<ConsumedRecord>, ReplayError> {
    let mut reader = ReadToEnd::open_decided(cluster, tp).await.map_err(kafka(format!("finding the ends of {tp}")))?;
    let mut records = Vec::new();
    let mut progress = Instant::now();
    loop {
        let before = reader.position();
        let Some(batch) = reader.next().await.map_err(kafka(format!("reading {tp}")))? else { break };
        records.extend(batch);
        if reader.position() > before {
            progress = Instant::now();
        } else if progress.elapsed() > STALL_TIMEOUT {
            return Err(ReplayError::Stalled {
                partition: tp.to_string(),
                position: reader.position(),
                end: reader.end(),
                seconds: STALL_TIMEOUT.as_secs(),
            });
        }
    }
    Ok(records)
}

/// Every dead letter of `dlq_topic`, in partition and offset order.
pub async fn read_dead_letters(cluster: &Cluster, dlq_topic: &str) -> Result<Vec<DeadLetter>, ReplayError> {
    Ok(read_topic(cluster, dlq_topic).await?.into_iter().map(|(p, r)| DeadLetter::from_record(p, r)).collect())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A dead letter at 0/7 with key "k", value "v" and `headers`.
    pub(in crate::invoker::replay) fn letter(headers: &[(&str, &str)]) -> DeadLetter {
        DeadLetter {
            at: DlqOffset { partition: 0, offset: 7 },
            timestamp_ms: 1,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: headers
                .iter()
                .map(|(n, v)| Header { name: n.to_string(), value: Some(Bytes::from(v.to_string())) })
                .collect(),
        }
    }

    #[test]
    fn dlq_offsets_parse_as_printed() {
        let at: DlqOffset = "3/1045".parse().unwrap();
        assert_eq!(at, DlqOffset { partition: 3, offset: 1045 });
        assert_eq!(at.to_string(), "3/1045");
        for bad in ["3", "a/1", "1/b", "-1/2", "1/-2", ""] {
            assert!(bad.parse::<DlqOffset>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn origin_comes_from_the_headers() {
        let l = letter(&[(headers::TOPIC, "orders"), (headers::PARTITION, "2"), (headers::OFFSET, "41")]);
        assert_eq!(l.origin(), Ok(Origin { topic: "orders".into(), partition: 2, offset: 41, timestamp_ms: 1 }));
        let missing = letter(&[(headers::TOPIC, "orders"), (headers::OFFSET, "41")]).origin().unwrap_err();
        assert!(missing.contains(headers::PARTITION), "{missing}");
        let bad = letter(&[(headers::TOPIC, "orders"), (headers::PARTITION, "x"), (headers::OFFSET, "41")])
            .origin()
            .unwrap_err();
        assert!(bad.contains("not a number"), "{bad}");
    }
}
