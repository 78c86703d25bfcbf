//! Reading dead letters back and replaying them into their input topic.
//!
//! A dead letter (see [`super::dead_letter`]) keeps the original key, value
//! and headers and names where it came from in `kfn.*` headers. Replaying
//! writes the record back to that topic and partition, without the `kfn.*`
//! headers and with `kfn.replayed.from = <dlq topic>/<partition>/<offset>`.
//!
//! A replay is done at most once per dead letter. Each replayed record and a
//! marker keyed by its dead-letter coordinates, in the compacted topic
//! `<dlq topic>.replayed` ([`marker_topic`], created here when missing), are
//! written in one Kafka transaction by a producer whose transactional id is
//! the same for every replay of that topic. Starting that producer fences an
//! older replay still running and settles any transaction it left open, so
//! the markers read afterwards (read_committed) say exactly what was
//! replayed: a record and its marker become visible together or not at all.
//! Deleting a marker (a tombstone for its key) allows that dead letter to be
//! replayed again.
//!
//! ```no_run
//! # async fn demo(cluster: kfn::kafka::Cluster, config: kfn::config::Config) -> Result<(), kfn::invoker::replay::ReplayError> {
//! use kfn::invoker::replay::{replay, Selection};
//! let report = replay(&cluster, &config, "validation", &Selection::All).await?;
//! println!("{} replayed, {} skipped", report.replayed.len(), report.skipped.len());
//! # Ok(()) }
//! ```

mod letters;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::dead_letter::Origin;
pub use letters::{read_dead_letters, read_topic, DeadLetter, DlqOffset};

use super::dead_letter::headers;
use crate::config::Config;
use crate::kafka::group::protocol::TopicPartition;
use crate::kafka::producer::partitioner::partition_for_key;
use crate::kafka::producer::{Producer, ProducerConfig, ProducerRecord, SendError};
use crate::kafka::{Admin, Cluster, KafkaError, NewTopic};

/// Dead letters replayed per transaction: bounds the memory a replay holds
/// and keeps each transaction well inside the broker's transaction timeout.
const CHUNK: usize = 500;

/// Why dead letters could not be read or replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The function is not in functions.toml.
    #[error("no function {function:?} in {file} (declared: {known})")]
    UnknownFunction {
        /// The name asked for.
        function: String,
        /// The configuration file.
        file: String,
        /// The functions declared.
        known: String,
    },
    /// The function has no dead-letter topic (an HTTP function).
    #[error("function {function:?} has no dead_letter topic: only topic functions dead-letter records")]
    NoDeadLetterTopic {
        /// The function.
        function: String,
    },
    /// A broker request failed.
    #[error("{context}: {source}")]
    Kafka {
        /// What was being done, naming the topic or partition.
        context: String,
        /// The cause.
        #[source]
        source: Box<KafkaError>,
    },
    /// Reading a partition to its end made no progress.
    #[error("reading {partition} stalled at offset {position} (end {end}) for {seconds} s")]
    Stalled {
        /// The partition.
        partition: String,
        /// Where reading stopped.
        position: i64,
        /// The end it was reading to.
        end: i64,
        /// How long it waited.
        seconds: u64,
    },
    /// Writing replayed records failed; dead letters replayed before stay replayed.
    #[error("replaying into {target} failed after {replayed} dead letters were replayed: {source}")]
    Produce {
        /// The partitions of the failed transaction.
        target: String,
        /// How many dead letters earlier transactions replayed.
        replayed: usize,
        /// The cause.
        #[source]
        source: Box<SendError>,
    },
}

/// The compacted topic recording which dead letters of `dlq_topic` were replayed.
pub fn marker_topic(dlq_topic: &str) -> String {
    format!("{dlq_topic}.replayed")
}

/// The dead-letter topic of `function` in `config`.
pub fn dead_letter_topic<'a>(config: &'a Config, function: &str) -> Result<&'a str, ReplayError> {
    let spec = config.functions.get(function).ok_or_else(|| ReplayError::UnknownFunction {
        function: function.to_string(),
        file: config.file.display().to_string(),
        known: config.functions.keys().cloned().collect::<Vec<_>>().join(", "),
    })?;
    spec.dead_letter.as_deref().ok_or_else(|| ReplayError::NoDeadLetterTopic { function: function.to_string() })
}

pub(super) fn kafka(context: impl Into<String>) -> impl FnOnce(KafkaError) -> ReplayError {
    let context = context.into();
    move |source| ReplayError::Kafka { context, source: Box::new(source) }
}

/// The dead letters of `dlq_topic` already replayed, with where each went;
/// empty when no replay ever ran (the marker topic does not exist).
pub async fn replayed(cluster: &Cluster, dlq_topic: &str) -> Result<BTreeMap<DlqOffset, String>, ReplayError> {
    let markers = marker_topic(dlq_topic);
    // A metadata request naming the topic could make a broker auto-create it with the wrong settings.
    let all = cluster.refresh(&[]).await.map_err(kafka("listing topics"))?;
    if !all.iter().any(|t| t.name == markers) {
        return Ok(BTreeMap::new());
    }
    let mut done = BTreeMap::new();
    for (_, r) in read_topic(cluster, &markers).await? {
        let Some(at) =
            r.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()).and_then(|k| k.parse::<DlqOffset>().ok())
        else {
            continue;
        };
        match r.value {
            Some(v) => done.insert(at, String::from_utf8_lossy(&v).into_owned()),
            // A tombstone: an operator allowed this dead letter to be replayed again.
            None => done.remove(&at),
        };
    }
    Ok(done)
}

/// Which dead letters to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every dead letter not replayed yet.
    All,
    /// These ones.
    Only(Vec<DlqOffset>),
}

/// A dead letter written back to its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// The dead letter.
    pub from: DlqOffset,
    /// The input partition it was written to.
    pub to: TopicPartition,
}

/// A dead letter not replayed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The dead letter.
    pub from: DlqOffset,
    /// Why it was skipped.
    pub reason: String,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplayReport {
    /// The dead-letter topic.
    pub dlq_topic: String,
    /// Dead letters written back, in the order written.
    pub replayed: Vec<Replayed>,
    /// Dead letters left alone.
    pub skipped: Vec<Skipped>,
}

/// Replays the selected dead letters of `function` into their input topics.
///
/// Dead letters replayed before (by any earlier run) are skipped, as are
/// records without the dead-letter headers. See the module docs for why a
/// replay never writes a dead letter twice.
pub async fn replay(
    cluster: &Cluster,
    config: &Config,
    function: &str,
    selection: &Selection,
) -> Result<ReplayReport, ReplayError> {
    let dlq_topic = dead_letter_topic(config, function)?.to_string();
    let markers = marker_topic(&dlq_topic);
    let replication = config.topics.get(&dlq_topic).map_or(1, |t| t.replication);
    ensure_marker_topic(cluster, &markers, replication).await?;
    // Starting the producer settles what an earlier replay left open, so the markers read next are final.
    let producer =
        Producer::new(cluster.clone(), replay_producer_config(config, &dlq_topic)).await.map_err(|source| {
            ReplayError::Produce { target: "InitProducerId".into(), replayed: 0, source: Box::new(source) }
        })?;
    let done = replayed(cluster, &dlq_topic).await?;
    let letters = read_dead_letters(cluster, &dlq_topic).await?;
    let mut report = ReplayReport { dlq_topic: dlq_topic.clone(), ..ReplayReport::default() };
    let mut chosen: Vec<(Origin, DeadLetter)> = Vec::new();
    let wanted: Option<BTreeSet<DlqOffset>> = match selection {
        Selection::All => None,
        Selection::Only(list) => Some(list.iter().copied().collect()),
    };
    let mut found = BTreeSet::new();
    for letter in letters {
        if wanted.as_ref().is_some_and(|w| !w.contains(&letter.at)) {
            continue;
        }
        found.insert(letter.at);
        if let Some(to) = done.get(&letter.at) {
            report.skipped.push(Skipped { from: letter.at, reason: format!("already replayed (to {to})") });
            continue;
        }
        match letter.origin() {
            Ok(origin) => chosen.push((origin, letter)),
            Err(reason) => report.skipped.push(Skipped { from: letter.at, reason }),
        }
    }
    for missing in wanted.iter().flatten().filter(|w| !found.contains(w)) {
        report.skipped.push(Skipped { from: *missing, reason: format!("no such record in {dlq_topic}") });
    }
    // The input sees the replayed records in their original order.
    chosen.sort_by(|(a, _), (b, _)| (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset)));
    let marker_tp = TopicPartition::new(markers, 0);
    for chunk in chosen.chunks(CHUNK) {
        let mut written = Vec::with_capacity(chunk.len());
        let mut targets = BTreeSet::new();
        for (origin, letter) in chunk {
            let Some(to) = target_partition(cluster, origin, letter).await? else {
                let reason = format!(
                    "partition {} of {} no longer exists and the record has no key",
                    origin.partition, origin.topic
                );
                report.skipped.push(Skipped { from: letter.at, reason });
                continue;
            };
            let from = format!("{dlq_topic}/{}", letter.at);
            producer.stage(&to, vec![replayed_record(letter, &from)]);
            let marker = ProducerRecord::new(
                Some(Bytes::from(letter.at.to_string())),
                Some(Bytes::from(format!("{}/{}", to.topic, to.partition))),
                kfn_sdk::now_ms(),
            );
            producer.stage(&marker_tp, vec![marker]);
            targets.insert(to.to_string());
            written.push(Replayed { from: letter.at, to });
        }
        if written.is_empty() {
            continue;
        }
        if let Err(source) = producer.commit().await {
            let _ = producer.abort().await;
            let target = targets.into_iter().collect::<Vec<_>>().join(", ");
            return Err(ReplayError::Produce { target, replayed: report.replayed.len(), source: Box::new(source) });
        }
        for r in &written {
            tracing::info!(dlq = %dlq_topic, from = %r.from, to = %r.to, "dead letter replayed");
        }
        report.replayed.extend(written);
    }
    Ok(report)
}

/// The original partition while it exists; otherwise the key's partition.
async fn target_partition(
    cluster: &Cluster,
    origin: &Origin,
    letter: &DeadLetter,
) -> Result<Option<TopicPartition>, ReplayError> {
    let info =
        cluster.topic(&origin.topic).await.map_err(kafka(format!("reading the metadata of topic {}", origin.topic)))?;
    let count = info.partitions.len() as i32;
    if origin.partition < count {
        return Ok(Some(TopicPartition::new(origin.topic.clone(), origin.partition)));
    }
    Ok(letter.key.as_deref().map(|k| TopicPartition::new(origin.topic.clone(), partition_for_key(k, count))))
}

/// The record a dead letter becomes in its input: original key, value and
/// headers, `kfn.replayed.from`, and the replay's time (an old timestamp could
/// put it past the input's retention at once).
fn replayed_record(letter: &DeadLetter, from: &str) -> ProducerRecord {
    let mut record = ProducerRecord::new(letter.key.clone(), letter.value.clone(), kfn_sdk::now_ms());
    for h in letter.original_headers() {
        record = record.with_header(h.name.clone(), h.value.clone());
    }
    record.with_header(headers::REPLAYED_FROM, Some(Bytes::from(from.to_string())))
}

async fn ensure_marker_topic(cluster: &Cluster, name: &str, replication: i16) -> Result<(), ReplayError> {
    let topic = NewTopic {
        name: name.to_string(),
        partitions: 1,
        replication,
        configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
    };
    match Admin::new(cluster.clone()).create_topics(&[topic]).await {
        Ok(_) => Ok(()),
        Err(e) => {
            // A user allowed to replay but not to create topics: fine when the topic was declared and created before.
            let exists = cluster.refresh(&[]).await.is_ok_and(|all| all.iter().any(|t| t.name == name));
            if exists {
                Ok(())
            } else {
                Err(kafka(format!("creating topic {name} (or declare it: see docs/dlq.md)"))(e))
            }
        }
    }
}

/// The runtime's producer settings, transactional under one id per dead-letter topic.
fn replay_producer_config(config: &Config, dlq_topic: &str) -> ProducerConfig {
    let p = &config.runtime.producer;
    ProducerConfig {
        idempotent: true,
        transactional_id: Some(format!("kfn.replay.{dlq_topic}")),
        linger: p.linger,
        max_batch_bytes: p.max_batch_bytes as usize,
        compression: p.compression,
        request_timeout: p.request_timeout,
        ..ProducerConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::letters::tests::letter;
    use super::*;

    #[test]
    fn a_replayed_record_drops_kfn_headers_and_names_its_dead_letter() {
        let l = letter(&[
            ("trace", "t-1"),
            (headers::TOPIC, "orders"),
            (headers::KIND, "permanent"),
            (headers::REPLAYED_FROM, "older/0/1"),
        ]);
        let r = replayed_record(&l, "orders.dlq/0/7");
        let names: Vec<(&str, Option<&[u8]>)> =
            r.headers.iter().map(|h| (h.name.as_str(), h.value.as_deref())).collect();
        assert_eq!(names, [("trace", Some(&b"t-1"[..])), (headers::REPLAYED_FROM, Some(&b"orders.dlq/0/7"[..]))]);
        assert_eq!((r.key, r.value), (l.key, l.value));
    }
}
