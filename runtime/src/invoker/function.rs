//! Starting one topic function: its group member, workers and layers.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::aggregate::Aggregate;
use super::assignments::PartitionWorkers;
use super::committer::Committer;
use super::dead_letter::DeadLetters;
use super::invoke::{pipeline, HandlerCall};
use super::outputs::{Output, Outputs};
use super::retry_topic::RetryTopic;
use super::worker::FunctionShared;
use crate::app::{App, StartError};
use crate::config::{FunctionSpec, OffsetReset};
use crate::kafka::consumer::LogEnd;
use crate::kafka::fetch::{FetchLimits, Isolation};
use crate::kafka::group::coordinator::GroupClient;
use crate::kafka::group::member::{GroupMember, MemberConfig};
use crate::kafka::KafkaError;

/// A running function.
pub struct FunctionHandle {
    /// The function's name.
    pub name: String,
    /// The member's task; ends after shutdown (or on an error no retry cures).
    pub task: JoinHandle<Result<(), KafkaError>>,
    /// Changes each time the member receives an assignment.
    pub assignments: watch::Receiver<u64>,
}

/// Starts `spec` (a topic function) in `app`; it stops when `shutdown` turns true.
pub async fn start_function(
    app: &App,
    spec: &FunctionSpec,
    shutdown: watch::Receiver<bool>,
) -> Result<FunctionHandle, StartError> {
    if spec.inputs().is_empty() {
        return Err(StartError::Other(format!("function {} has no input topic", spec.name)));
    }
    let aggregate = match &spec.aggregate {
        Some(agg) => {
            let fold = app
                .registry
                .aggregate_handler(&spec.handler)
                .ok_or_else(|| StartError::Other(format!("fold {} is not registered", spec.handler)))?
                .clone();
            Some(Arc::new(Aggregate::new(fold, agg, app.schemas.clone(), spec.retry.clone())))
        }
        None => None,
    };
    // An aggregate's records go through its fold; the pipeline then holds a handler that is never called.
    let handler = match &aggregate {
        Some(_) => never_called(),
        None => handler_by_topic(app, spec)?,
    };
    let mut outputs = HashMap::new();
    for (name, topic) in &spec.outputs {
        let encoder = app
            .encoders
            .get(topic)
            .cloned()
            .ok_or_else(|| StartError::Other(format!("topic {topic} has no schema")))?;
        let partitions = app.partitions(topic).await?;
        outputs.insert(name.clone(), Arc::new(Output { topic: Arc::from(topic.as_str()), partitions, encoder }));
    }
    let dlq_topic = spec
        .dead_letter
        .clone()
        .ok_or_else(|| StartError::Other(format!("function {} has no dead_letter topic", spec.name)))?;
    let dead_letters =
        DeadLetters { partitions: app.partitions(&dlq_topic).await?, topic: dlq_topic, function: spec.name.clone() };
    let retry_topic = match &spec.retry.topic {
        Some(topic) => Some(RetryTopic {
            partitions: app.partitions(topic).await?,
            topic: topic.clone(),
            function: spec.name.clone(),
            policy: spec.retry.clone(),
        }),
        None => None,
    };
    let mut topics = spec.inputs().to_vec();
    topics.extend(spec.retry.topic.clone());
    let runtime = &app.config.runtime;
    let metrics = app.metrics.function(&spec.name);
    let member = GroupMember::new(
        app.cluster.clone(),
        MemberConfig {
            group: spec.group_id(),
            topics,
            session_timeout: runtime.session_timeout,
            rebalance_timeout: runtime.rebalance_timeout,
            heartbeat_interval: runtime.heartbeat_interval,
        },
    );
    let reset = match spec.start_from.unwrap_or(runtime.auto_offset_reset) {
        OffsetReset::Earliest => LogEnd::Earliest,
        OffsetReset::Latest => LogEnd::Latest,
    };
    let shared = Arc::new(FunctionShared {
        function: Arc::from(spec.name.as_str()),
        pipeline: pipeline(
            HandlerCall::new(handler, app.schemas.clone()),
            spec.retry.clone(),
            metrics.clone(),
            runtime.slow_handler,
        ),
        outputs: Outputs::new(&spec.name, outputs),
        dead_letters,
        retry_topic,
        metrics,
        cluster: app.cluster.clone(),
        producer: app.producer.clone(),
        producer_config: app.producer_config.clone(),
        committer: Committer::new(GroupClient::new(app.cluster.clone(), spec.group_id()), member.state()),
        guarantee: spec.guarantee,
        ordering: spec.ordering,
        max_in_flight: spec.max_in_flight,
        isolation: match runtime.isolation {
            crate::config::Isolation::ReadCommitted => Isolation::ReadCommitted,
            crate::config::Isolation::ReadUncommitted => Isolation::ReadUncommitted,
        },
        reset,
        fetch_limits: FetchLimits { max_wait: runtime.fetch_max_wait, ..FetchLimits::default() },
        aggregate,
    });
    let workers = Arc::new(PartitionWorkers::new(shared, runtime.shutdown_timeout));
    let assignments = member.assignments();
    let task = tokio::spawn(member.run(workers, shutdown));
    Ok(FunctionHandle { name: spec.name.clone(), task, assignments })
}

/// The handler of `spec`: for each record, the function registered under
/// its handler name for the event type of the record's input topic (a record
/// from the retry topic carries its input topic in `ctx.topic`).
fn handler_by_topic(app: &App, spec: &FunctionSpec) -> Result<kfn_sdk::TopicHandler, StartError> {
    let mut by_topic = HashMap::new();
    for input in spec.inputs() {
        let event = app.config.topics.get(input).and_then(|t| t.event.as_deref()).unwrap_or_default();
        let handler = app.registry.topic_handler_for(&spec.handler, event).ok_or_else(|| {
            StartError::Other(format!("handler {} is not registered for {event} (topic {input})", spec.handler))
        })?;
        by_topic.insert(input.clone(), handler.clone());
    }
    let mut handlers = by_topic.values();
    let first = match (handlers.next(), handlers.next()) {
        (Some(only), None) => return Ok(only.clone()),
        (first, _) => first.map_or("", |h| h.input),
    };
    Ok(kfn_sdk::TopicHandler {
        // Not read by the invoker: the event type is chosen per record below.
        input: first,
        call: Arc::new(move |ctx, datum, schema| match by_topic.get(&*ctx.topic) {
            Some(handler) => (handler.call)(ctx, datum, schema),
            None => Box::pin(std::future::ready(Err(kfn_sdk::InvokeError::Handler(kfn_sdk::FnError::permanent(
                format!("no handler for records of topic {}", ctx.topic),
            ))))),
        }),
    })
}

/// The pipeline's handler for an aggregate, whose records go through the fold instead.
fn never_called() -> kfn_sdk::TopicHandler {
    kfn_sdk::TopicHandler {
        input: "",
        call: Arc::new(|_, _, _| {
            Box::pin(std::future::ready(Err(kfn_sdk::InvokeError::Handler(kfn_sdk::FnError::permanent(
                "an aggregate's records go through its fold",
            )))))
        }),
    }
}
