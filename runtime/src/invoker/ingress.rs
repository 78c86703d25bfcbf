//! Ingress: a fetched record becomes an invocation.
//!
//! [`Inputs`] is the one place that says which topics a function subscribes
//! to and which handler stack runs a record of a given topic. [`Invocation`]
//! is a record on its way through the function: where it entered (its
//! [`Origin`], read once from the retry-topic headers when it comes from the
//! retry topic) and the handler's context.

use std::sync::Arc;

use kfn_sdk::{Ctx, Emit};

use super::dead_letter::{headers, Origin};
use super::invoke::{Failure, FailureKind, Pipeline};
use super::retry_topic::Waiting;
use crate::kafka::fetch::ConsumedRecord;
use crate::kafka::group::protocol::TopicPartition;

/// The topics a function reads and the handler stack of each.
pub struct Inputs {
    /// The input topics, each with the handler stack of its records (and of their retry copies).
    inputs: Vec<(Arc<str>, Pipeline)>,
    /// The retry topic, for functions that opted in: read by the same group.
    retry_topic: Option<Arc<str>>,
}

impl Inputs {
    /// A function reading `inputs` (each topic with its handler stack) and
    /// `retry_topic`, when set.
    pub fn new(inputs: Vec<(String, Pipeline)>, retry_topic: Option<&str>) -> Self {
        let inputs = inputs.into_iter().map(|(topic, pipeline)| (Arc::from(topic), pipeline)).collect();
        Self { inputs, retry_topic: retry_topic.map(Arc::from) }
    }

    /// The topics the function's group subscribes to.
    pub fn topics(&self) -> Vec<String> {
        self.inputs.iter().map(|(t, _)| t).chain(&self.retry_topic).map(|t| t.to_string()).collect()
    }

    /// Whether `topic` is the function's retry topic (its records wait for their due time).
    pub fn is_retry_topic(&self, topic: &str) -> bool {
        self.retry_topic.as_deref() == Some(topic)
    }

    /// The handler stack for a record that entered the function from `origin_topic`.
    ///
    /// A retry copy runs the stack of the topic it first came from.
    pub fn pipeline(&self, origin_topic: &str) -> Option<&Pipeline> {
        self.inputs.iter().find(|(t, _)| &**t == origin_topic).map(|(_, p)| p)
    }

    /// Runs `invocation` of a record whose value is `value` through its handler stack.
    pub async fn run(&self, invocation: &Invocation, value: &[u8]) -> Result<Emit, Failure> {
        let ctx = invocation.ctx.as_ref().map_err(Clone::clone)?;
        match self.pipeline(&invocation.origin.topic) {
            Some(pipeline) => pipeline.run(ctx.clone(), value).await,
            // A retry copy whose input was removed from the function since it was written.
            None => Err(Failure {
                kind: FailureKind::Permanent,
                message: format!("{} is no longer an input of this function", invocation.origin.topic),
                attempts: 0,
            }),
        }
    }

    /// The invocation of `record`, fetched from `tp`.
    ///
    /// A record from the retry topic runs as the input record it started as,
    /// at its next attempt; one whose retry headers cannot be read fails as
    /// undecodable under its place in the retry topic.
    pub fn invocation(&self, function: &Arc<str>, tp: &TopicPartition, record: &ConsumedRecord) -> Invocation {
        let mut ctx = Ctx {
            function: function.clone(),
            topic: Arc::from(tp.topic.as_str()),
            partition: tp.partition,
            offset: record.offset,
            key: record.key.clone(),
            timestamp_ms: record.timestamp_ms,
            attempt: 1,
            headers: record.headers.iter().cloned().map(crate::kafka_settings::sdk_header).collect(),
            // Set by the handler call, which holds the function's tables.
            tables: Default::default(),
        };
        if !self.is_retry_topic(&tp.topic) {
            return Invocation { origin: Origin::input(tp, record), ctx: Ok(ctx) };
        }
        match Waiting::parse(record) {
            Ok(waiting) => {
                ctx.topic = Arc::from(waiting.origin.topic.as_str());
                ctx.partition = waiting.origin.partition;
                ctx.offset = waiting.origin.offset;
                ctx.timestamp_ms = waiting.origin.timestamp_ms;
                ctx.attempt = waiting.attempts + 1;
                ctx.headers.retain(|h| !h.name.starts_with("kfn.") || h.name == headers::REPLAYED_FROM);
                Invocation { origin: waiting.origin, ctx: Ok(ctx) }
            }
            Err(e) => Invocation {
                origin: Origin::input(tp, record),
                ctx: Err(Failure { kind: FailureKind::Undecodable, message: e.to_string(), attempts: 0 }),
            },
        }
    }
}

/// A record on its way through a function.
pub struct Invocation {
    /// Where the record entered the function.
    pub origin: Origin,
    /// The handler's context, or why the record cannot run.
    pub ctx: Result<Ctx, Failure>,
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::invoker::retry_topic::DUE;

    fn inputs() -> Inputs {
        let pipeline = crate::invoker::tests::never_called_pipeline();
        Inputs::new(vec![("orders".into(), pipeline.clone()), ("refunds".into(), pipeline)], Some("orders.retry"))
    }

    #[test]
    fn a_function_subscribes_to_its_input_and_retry_topic() {
        assert_eq!(inputs().topics(), ["orders", "refunds", "orders.retry"]);
        assert!(inputs().pipeline("refunds").is_some() && inputs().pipeline("orders.retry").is_none());
        assert!(inputs().is_retry_topic("orders.retry") && !inputs().is_retry_topic("orders"));
    }

    #[test]
    fn a_retry_copy_runs_as_its_origin_at_its_next_attempt() {
        let text = |s: &str| Some(Bytes::from(s.to_string()));
        let header = |name: &str, value: &str| crate::kafka::Header { name: name.into(), value: text(value) };
        let record = ConsumedRecord {
            offset: 3,
            timestamp_ms: 50,
            key: None,
            value: None,
            headers: vec![
                header("trace", "t"),
                header(headers::TOPIC, "orders"),
                header(headers::PARTITION, "2"),
                header(headers::OFFSET, "41"),
                header(headers::TIMESTAMP, "7"),
                header(headers::ATTEMPTS, "2"),
                header(DUE, "9"),
            ],
        };
        let f: Arc<str> = Arc::from("f");
        let invocation = inputs().invocation(&f, &TopicPartition::new("orders.retry".to_string(), 0), &record);
        assert_eq!(invocation.origin, Origin { topic: "orders".into(), partition: 2, offset: 41, timestamp_ms: 7 });
        let ctx = invocation.ctx.expect("ctx");
        assert_eq!((&*ctx.topic, ctx.partition, ctx.offset, ctx.attempt), ("orders", 2, 41, 3));
        assert_eq!(ctx.headers.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), ["trace"]);

        let stray = ConsumedRecord { headers: vec![], ..record };
        let invocation = inputs().invocation(&f, &TopicPartition::new("orders.retry".to_string(), 1), &stray);
        assert_eq!((invocation.origin.topic.as_str(), invocation.origin.offset), ("orders.retry", 3));
        assert_eq!(invocation.ctx.map(|_| ()).unwrap_err().kind, FailureKind::Undecodable);
    }
}
