//! Retry topics: a record whose handler failed with a retryable error waits
//! out its backoff in the function's delay topic instead of in the partition
//! worker, so the records behind it go on.
//!
//! The function's group reads its input and its retry topic. A record is
//! copied to the retry topic with the headers below and handled again once
//! `kfn.retry.due` has passed; a retry topic is read in order, so a record may
//! wait longer than its own backoff, but at most `max_backoff` after it was
//! written there. After the last attempt it is dead-lettered under its
//! original topic, partition and offset. A key's later records do not wait
//! for a record in the retry topic: opting in trades key order for progress.
//!
//! | header | value |
//! |---|---|
//! | kfn.original.topic, .partition, .offset, .timestamp | where the record entered the function |
//! | kfn.function | the function |
//! | kfn.attempts | attempts made so far (decimal) |
//! | kfn.error.message | the last attempt's error |
//! | kfn.retry.due | when to try again, ms since the epoch (decimal) |

use std::time::Duration;

use bytes::Bytes;

use super::dead_letter::{headers, partition_of, traced_copy, Origin};
use super::invoke::{delay_after, Failure};
use crate::config::RetryPolicy;
use crate::kafka::fetch::ConsumedRecord;
use crate::kafka::group::protocol::TopicPartition;
use crate::kafka::producer::ProducerRecord;

/// When a record in a retry topic is due, ms since the epoch.
pub const DUE: &str = "kfn.retry.due";

/// The retry topic of one function.
pub struct RetryTopic {
    /// The topic.
    pub topic: String,
    /// Its partition count.
    pub partitions: i32,
    /// The function.
    pub function: String,
    /// The function's retry policy (attempts and backoff).
    pub policy: RetryPolicy,
}

/// What a record read from a retry topic says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// Where it entered the function.
    pub origin: Origin,
    /// Attempts made so far.
    pub attempts: u32,
    /// When it is due, ms since the epoch.
    pub due_ms: i64,
}

/// A record in a retry topic that kfn did not write (a header missing or garbled).
#[derive(Debug, thiserror::Error)]
#[error("not a retry record: header {header} is {problem}")]
pub struct NotWaiting {
    header: &'static str,
    problem: &'static str,
}

impl RetryTopic {
    /// How long a record waits after `attempts` failed attempts.
    pub fn delay(&self, attempts: u32) -> Duration {
        delay_after(&self.policy, attempts)
    }

    /// The copy of `record` (which entered at `origin`) that waits for attempt `failure.attempts + 1` until `due_ms`.
    pub fn record(
        &self,
        origin: &Origin,
        record: &ConsumedRecord,
        failure: &Failure,
        due_ms: i64,
    ) -> (TopicPartition, ProducerRecord) {
        let partition = partition_of(record, origin, self.partitions);
        let out = traced_copy(record, origin, &self.function, failure)
            .with_header(DUE, Some(Bytes::from(due_ms.to_string())));
        (TopicPartition::new(self.topic.clone(), partition), out)
    }
}

impl Waiting {
    /// Reads the headers kfn wrote on `record` in a retry topic.
    pub fn parse(record: &ConsumedRecord) -> Result<Waiting, NotWaiting> {
        Ok(Waiting {
            origin: Origin {
                topic: header(record, headers::TOPIC)?.to_string(),
                partition: number(record, headers::PARTITION)?,
                offset: number(record, headers::OFFSET)?,
                timestamp_ms: number(record, headers::TIMESTAMP)?,
            },
            attempts: number(record, headers::ATTEMPTS)?,
            due_ms: number(record, DUE)?,
        })
    }

    /// When `record` is due; a record without a readable due time is due now (it will be dead-lettered).
    pub fn due_ms(record: &ConsumedRecord) -> i64 {
        number(record, DUE).unwrap_or(i64::MIN)
    }
}

fn header<'a>(record: &'a ConsumedRecord, name: &'static str) -> Result<&'a str, NotWaiting> {
    let value = record
        .headers
        .iter()
        .rev()
        .find(|h| h.name == name)
        .and_then(|h| h.value.as_deref())
        .ok_or(NotWaiting { header: name, problem: "missing" })?;
    std::str::from_utf8(value).map_err(|_| NotWaiting { header: name, problem: "not UTF-8" })
}

fn number<T: std::str::FromStr>(record: &ConsumedRecord, name: &'static str) -> Result<T, NotWaiting> {
    header(record, name)?.parse().map_err(|_| NotWaiting { header: name, problem: "not a number" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invoker::invoke::FailureKind;
    use crate::kafka::Header;

    fn topic(jitter: bool) -> RetryTopic {
        RetryTopic {
            topic: "orders.retry".into(),
            partitions: 3,
            function: "payment".into(),
            policy: RetryPolicy {
                max_attempts: 5,
                backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(350),
                multiplier: 2.0,
                jitter,
                topic: Some("orders.retry".into()),
            },
        }
    }

    fn consumed(record: ProducerRecord, offset: i64) -> ConsumedRecord {
        ConsumedRecord { offset, timestamp_ms: 99, key: record.key, value: record.value, headers: record.headers }
    }

    #[test]
    fn delays_grow_by_the_multiplier_up_to_max_backoff() {
        let t = topic(false);
        let delays: Vec<u64> = (1..=4).map(|n| t.delay(n).as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        let jittered = topic(true);
        assert!((1..=4).all(|n| jittered.delay(n) <= Duration::from_millis(350)));
    }

    #[test]
    fn a_record_survives_two_trips_through_the_retry_topic_with_its_origin_and_own_headers() {
        let t = topic(false);
        let input = ConsumedRecord {
            offset: 41,
            timestamp_ms: 1_000,
            key: Some(Bytes::from_static(b"order-7")),
            value: Some(Bytes::from_static(b"\0\0\0\0\x01abc")),
            headers: vec![Header { name: "trace".into(), value: Some(Bytes::from_static(b"t1")) }],
        };
        let origin = Origin::input(&TopicPartition::new("orders".to_string(), 2), &input);
        let failure = Failure { kind: FailureKind::Deferred, message: "busy".into(), attempts: 1 };
        let (tp, first) = t.record(&origin, &input, &failure, 5_000);
        assert_eq!(tp.topic, "orders.retry");
        let first = consumed(first, 0);
        let waiting = Waiting::parse(&first).expect("parse");
        assert_eq!(waiting, Waiting { origin: origin.clone(), attempts: 1, due_ms: 5_000 });

        let failure = Failure { attempts: 2, ..failure };
        let (tp2, second) = t.record(&waiting.origin, &first, &failure, 6_000);
        assert_eq!(tp2, tp, "a key keeps its retry partition");
        let second = consumed(second, 1);
        assert_eq!(Waiting::parse(&second).expect("parse"), Waiting { origin, attempts: 2, due_ms: 6_000 });
        let names: Vec<&str> = second.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names.iter().filter(|n| **n == DUE).count(), 1, "old kfn headers replaced: {names:?}");
        assert_eq!(names[0], "trace");
        assert_eq!((second.key, second.value), (input.key, input.value));
    }

    #[test]
    fn a_record_kfn_did_not_write_names_the_missing_header_and_is_due_at_once() {
        let stray = ConsumedRecord { offset: 0, timestamp_ms: 0, key: None, value: None, headers: vec![] };
        let err = Waiting::parse(&stray).unwrap_err();
        assert_eq!(err.to_string(), "not a retry record: header kfn.original.topic is missing");
        assert_eq!(Waiting::due_ms(&stray), i64::MIN);
    }
}
