//! Egress: where the outcome of each invocation goes, as records to write.
//!
//! An emitted event becomes a record of its output topic; a retryable failure
//! of a function with a retry topic becomes a copy in the retry topic; any
//! other failure (and an event that cannot be routed or encoded) becomes a
//! dead letter. Nothing here does I/O: [`super::deliver`] writes the result.

use std::collections::BTreeMap;
use std::sync::Arc;

use kfn_sdk::Emit;

use super::dead_letter::{DeadLetters, Origin};
use super::invoke::{Failure, FailureKind};
use super::outputs::{EncodeBuffers, OutputError, Outputs, Target};
use super::retry_topic::RetryTopic;
use crate::kafka::fetch::ConsumedRecord;
use crate::kafka::group::protocol::TopicPartition;
use crate::kafka::producer::ProducerRecord;
use crate::metrics::FunctionMetrics;
use crate::trace::{TraceParent, TRACEPARENT};

/// The trace of an input record, from its `traceparent` header.
fn trace_of(record: &ConsumedRecord) -> Option<TraceParent> {
    let header = record.headers.iter().find(|h| h.name == TRACEPARENT)?;
    TraceParent::parse(std::str::from_utf8(header.value.as_deref()?).ok()?)
}

/// The records to write for a chunk of invocations, by topic-partition.
pub type Outgoing = BTreeMap<Target, Vec<ProducerRecord>>;

/// One processed record: the record, where it entered the function, and its outcome.
pub type Processed<'r> = (&'r ConsumedRecord, &'r Origin, &'r Result<Emit, Failure>);

/// Where a function's outcomes go: its outputs, retry topic and dead-letter topic.
pub struct Egress {
    /// The function's name.
    pub function: Arc<str>,
    /// Output routing and encoding.
    pub outputs: Outputs,
    /// The dead-letter topic.
    pub dead_letters: DeadLetters,
    /// The retry topic, for functions that opted in.
    pub retry_topic: Option<RetryTopic>,
    /// Counts of records done, failed and dead-lettered by kind.
    pub metrics: FunctionMetrics,
}

impl Egress {
    /// The records that the outcomes of `processed` (read from `tp`) write, at time `now` (ms since the epoch).
    pub fn route<'r>(&self, tp: &TopicPartition, processed: impl Iterator<Item = Processed<'r>>, now: i64) -> Outgoing {
        let mut by_tp = Outgoing::new();
        let mut buffers = EncodeBuffers::default();
        // One record's outputs, kept until all of them could be encoded.
        let mut routed: Vec<(Target, ProducerRecord)> = Vec::new();
        for (record, origin, result) in processed {
            // Outputs carry the input's timestamp (event time, as Kafka Streams does),
            // so windows downstream see when things happened, not when kfn ran.
            let timestamp = if record.timestamp_ms >= 0 { record.timestamp_ms } else { now };
            let failure = match result {
                Ok(emit) => {
                    routed.clear();
                    let all = emit.events.iter().try_for_each(|e| {
                        routed.push(self.outputs.route(e, Some(tp.partition), timestamp, &mut buffers)?);
                        Ok::<_, OutputError>(())
                    });
                    match all {
                        Ok(()) => {
                            // The invocation's span (crate::otel) is the parent of what it emits.
                            let hop = trace_of(record)
                                .map(|t| t.invocation(&self.function, &origin.topic, origin.partition, origin.offset));
                            for (target, mut out) in routed.drain(..) {
                                if let Some(hop) = &hop {
                                    if !out.headers.iter().any(|h| h.name == TRACEPARENT) {
                                        out = out.with_header(TRACEPARENT, Some(hop.to_header().into()));
                                    }
                                }
                                by_tp.entry(target).or_default().push(out);
                            }
                            self.metrics.ok.inc();
                            continue;
                        }
                        Err(e) => Failure { kind: FailureKind::Output, message: e.to_string(), attempts: 1 },
                    }
                }
                Err(failure) => failure.clone(),
            };
            let (target, out) = self.failed(tp, origin, record, &failure, now);
            by_tp.entry((Arc::from(target.topic), target.partition)).or_default().push(out);
        }
        by_tp
    }

    /// Where a failed record goes: the retry topic while it may wait there, else the dead-letter topic.
    fn failed(
        &self,
        tp: &TopicPartition,
        origin: &Origin,
        record: &ConsumedRecord,
        failure: &Failure,
        now: i64,
    ) -> (TopicPartition, ProducerRecord) {
        if let (FailureKind::Deferred, Some(retry)) = (failure.kind, &self.retry_topic) {
            let due = now + retry.delay(failure.attempts).as_millis() as i64;
            tracing::debug!(
                function = %self.function, partition = %tp, offset = record.offset, attempts = failure.attempts,
                due, error = %failure.message, "record sent to the retry topic"
            );
            return retry.record(origin, record, failure, due);
        }
        self.metrics.failed.inc();
        self.metrics.dead_letter(failure.kind.as_str());
        let trace_id = trace_of(record).map(|t| format!("{:032x}", t.trace_id)).unwrap_or_default();
        tracing::warn!(
            function = %self.function, partition = %tp, offset = record.offset, %trace_id,
            kind = failure.kind.as_str(), attempts = failure.attempts, error = %failure.message,
            "record dead-lettered"
        );
        self.dead_letters.record(origin, record, failure)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::config::RetryPolicy;
    use crate::invoker::dead_letter::headers;
    use crate::invoker::retry_topic::DUE;
    use crate::metrics::Metrics;

    fn egress(retry_topic: bool) -> Egress {
        let policy = RetryPolicy {
            max_attempts: 3,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(100),
            multiplier: 2.0,
            jitter: false,
            topic: Some("in.retry".into()),
        };
        Egress {
            function: Arc::from("f"),
            outputs: Outputs::new("f", HashMap::new()),
            dead_letters: DeadLetters { topic: "in.dlq".into(), partitions: 1, function: "f".into() },
            retry_topic: retry_topic.then(|| RetryTopic {
                topic: "in.retry".into(),
                partitions: 1,
                function: "f".into(),
                policy,
            }),
            metrics: Metrics::new().function("f"),
        }
    }

    fn record(offset: i64) -> ConsumedRecord {
        ConsumedRecord { offset, timestamp_ms: 5, key: None, value: Some(Bytes::from_static(b"v")), headers: vec![] }
    }

    fn header<'a>(record: &'a ProducerRecord, name: &str) -> Option<&'a str> {
        record.headers.iter().find(|h| h.name == name).and_then(|h| std::str::from_utf8(h.value.as_deref()?).ok())
    }

    #[test]
    fn failures_go_to_the_retry_topic_while_deferred_and_else_to_the_dead_letters() {
        let tp = TopicPartition::new("in".to_string(), 0);
        let records = [record(0), record(1), record(2)];
        let origins: Vec<Origin> = records.iter().map(|r| Origin::input(&tp, r)).collect();
        let fail = |kind, attempts| Err(Failure { kind, message: "no".into(), attempts });
        let results = [Ok(Emit::none()), fail(FailureKind::Deferred, 1), fail(FailureKind::Permanent, 1)];
        let processed = || records.iter().zip(&origins).zip(&results).map(|((r, o), x)| (r, o, x));

        let out = egress(true).route(&tp, processed(), 1_000);
        let retried = &out[&(Arc::from("in.retry"), 0)];
        assert_eq!(retried.len(), 1);
        assert_eq!((header(&retried[0], DUE), header(&retried[0], headers::OFFSET)), (Some("1100"), Some("1")));
        let dead = &out[&(Arc::from("in.dlq"), 0)];
        assert_eq!((dead.len(), header(&dead[0], headers::KIND)), (1, Some("permanent")));
        assert_eq!(out.len(), 2, "an empty emit writes nothing");

        // Without a retry topic a deferred failure is never expected; it is dead-lettered, not lost.
        let out = egress(false).route(&tp, processed(), 1_000);
        assert_eq!(out[&(Arc::from("in.dlq"), 0)].len(), 2);
    }

    #[test]
    fn retry_copies_and_dead_letters_keep_the_inputs_trace() {
        let tp = TopicPartition::new("in".to_string(), 0);
        let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let traced = |offset| ConsumedRecord {
            headers: vec![crate::kafka::Header { name: TRACEPARENT.into(), value: Some(Bytes::from(trace)) }],
            ..record(offset)
        };
        let records = [traced(0), traced(1)];
        let origins: Vec<Origin> = records.iter().map(|r| Origin::input(&tp, r)).collect();
        let fail = |kind| Err(Failure { kind, message: "no".into(), attempts: 1 });
        let results = [fail(FailureKind::Deferred), fail(FailureKind::Permanent)];
        let processed = records.iter().zip(&origins).zip(&results).map(|((r, o), x)| (r, o, x));
        let out = egress(true).route(&tp, processed, 1_000);
        assert_eq!(header(&out[&(Arc::from("in.retry"), 0)][0], TRACEPARENT), Some(trace));
        assert_eq!(header(&out[&(Arc::from("in.dlq"), 0)][0], TRACEPARENT), Some(trace));
    }

    /// An event for an output the function does not declare.
    fn nowhere() -> kfn_sdk::Emitted {
        struct Nothing;
        impl kfn_sdk::ErasedEvent for Nothing {
            fn name(&self) -> &'static str {
                "Nothing"
            }
            fn encode(&self, _: &serde_avro_fast::Schema, _: &mut Vec<u8>) -> Result<(), kfn_sdk::EncodeError> {
                Ok(())
            }
            fn debug(&self) -> String {
                "Nothing".into()
            }
        }
        kfn_sdk::Emitted { output: "nowhere".into(), key: None, value: Box::new(Nothing), headers: vec![] }
    }

    #[test]
    fn an_event_to_an_undeclared_output_is_dead_lettered_as_output() {
        let tp = TopicPartition::new("in".to_string(), 0);
        let record = record(7);
        let origin = Origin::input(&tp, &record);
        let result = Ok(Emit { events: vec![nowhere()] });
        let e = egress(false);
        let out = e.route(&tp, std::iter::once((&record, &origin, &result)), 0);
        let dead = &out[&(Arc::from("in.dlq"), 0)];
        assert_eq!(header(&dead[0], headers::KIND), Some("output"));
        assert_eq!(e.metrics.failed.get(), 1);
    }
}
