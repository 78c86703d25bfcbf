//! Starting one topic function: its group member, workers and layers, from
//! the explicit dependencies in [`FunctionDeps`] (the application depends on
//! the invoker, never the other way).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use indexmap::IndexMap;
use kfn_sdk::{AggregateHandler, TableLookup, Tables, TopicHandler};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::aggregate::repartition::rekey_handlers;
use super::aggregate::Aggregate;
use super::assignments::PartitionWorkers;
use super::committer::Committer;
use super::dead_letter::DeadLetters;
use super::deliver::MemberTransaction;
use super::egress::Egress;
use super::ingress::Inputs;
use super::invoke::{pipeline, HandlerCall};
use super::outputs::{Output, Outputs};
use super::retry_topic::RetryTopic;
use super::shared::FunctionShared;
use crate::avro::{OutputEncoder, SchemaCache};
use crate::config::{FunctionSpec, Guarantee, OffsetReset, RuntimeSettings, TopicSpec, TransactionalProducer};
use crate::kafka::consumer::LogEnd;
use crate::kafka::fetch::FetchLimits;
use crate::kafka::group::coordinator::GroupClient;
use crate::kafka::group::member::{GroupMember, MemberConfig};
use crate::kafka::producer::{Producer, ProducerConfig, SendError};
use crate::kafka::{Cluster, KafkaError};
use crate::metrics::Metrics;

/// Why a function could not start.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    /// The function names no input topic.
    #[error("function {function} has no input topic")]
    NoInput {
        /// The function.
        function: String,
    },
    /// The function names no dead-letter topic.
    #[error("function {function} has no dead_letter topic")]
    NoDeadLetter {
        /// The function.
        function: String,
    },
    /// An output topic has no schema to encode with.
    #[error("function {function}: output topic {topic} has no schema")]
    NoSchema {
        /// The function.
        function: String,
        /// The output topic.
        topic: String,
    },
    /// The registered code does not fit the function's kind (a fold for a
    /// handler function, or a handler for an aggregate).
    #[error("function {function}: {expected} expected")]
    Code {
        /// The function.
        function: String,
        /// What the function's kind needs.
        expected: &'static str,
    },
    /// A table the function declares was not started.
    #[error("function {function}: table {table} (topic {topic}) was not started")]
    NoTable {
        /// The function.
        function: String,
        /// The table's name.
        table: String,
        /// Its topic.
        topic: String,
    },
    /// A topic's metadata could not be read.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The transactional producer of an exactly_once function could not start.
    #[error("function {function}: cannot start its transactional producer: {source}")]
    Transactions {
        /// The function.
        function: String,
        /// Why (boxed: it is large, and start errors are rare).
        source: Box<SendError>,
    },
}

/// The registered code a topic function runs.
#[derive(Clone)]
pub enum FunctionCode {
    /// Topic handlers, one per input topic (the handler registered for the
    /// topic's event type): one invocation per record.
    Handler(Vec<(String, TopicHandler)>),
    /// An aggregate's fold into its table.
    Fold(AggregateHandler),
}

/// What a topic function needs from the running application.
#[derive(Clone, Copy)]
pub struct FunctionDeps<'a> {
    /// The cluster.
    pub cluster: &'a Cluster,
    /// Writer schemas by id.
    pub schemas: &'a Arc<SchemaCache>,
    /// The encoder of each topic with a schema.
    pub encoders: &'a HashMap<String, OutputEncoder>,
    /// The application's metrics.
    pub metrics: &'a Metrics,
    /// The shared idempotent producer.
    pub producer: &'a Producer,
    /// Producer settings, for per-partition transactional producers.
    pub producer_config: &'a ProducerConfig,
    /// Runtime settings: group timeouts, isolation, fetch wait, slow-handler threshold.
    pub runtime: &'a RuntimeSettings,
    /// The declared topics (an input's format: Avro or JSON).
    pub topics: &'a IndexMap<String, TopicSpec>,
    /// The tables started in this process, by topic (crate::table::GlobalTable),
    /// for the functions that declare `tables`.
    pub tables: &'a BTreeMap<String, Arc<dyn TableLookup>>,
}

/// No tables: for applications whose functions declare none.
pub static NO_TABLES: BTreeMap<String, Arc<dyn TableLookup>> = BTreeMap::new();

impl FunctionDeps<'_> {
    /// The partition count of a topic.
    pub async fn partitions(&self, topic: &str) -> Result<i32, KafkaError> {
        Ok(self.cluster.topic(topic).await?.partitions.len() as i32)
    }

    /// The outputs of `spec` (a topic or HTTP function): each one's topic, partition count and encoder.
    pub async fn outputs(&self, spec: &FunctionSpec) -> Result<Outputs, FunctionError> {
        let mut outputs = HashMap::new();
        for (name, topic) in &spec.outputs {
            let encoder = self
                .encoders
                .get(topic)
                .cloned()
                .ok_or_else(|| FunctionError::NoSchema { function: spec.name.clone(), topic: topic.clone() })?;
            let partitions = self.partitions(topic).await?;
            let follows_input = spec.aggregate.is_some() && name == super::aggregate::TABLE_OUTPUT;
            let output = Output { topic: Arc::from(topic.as_str()), partitions, encoder, follows_input };
            outputs.insert(name.clone(), Arc::new(output));
        }
        Ok(Outputs::new(&spec.name, outputs))
    }
}

/// A running function.
pub struct FunctionHandle {
    /// The function's name.
    pub name: String,
    /// The member's task; ends after shutdown (or on an error no retry cures).
    pub task: JoinHandle<Result<(), KafkaError>>,
    /// Changes each time the member receives an assignment.
    pub assignments: watch::Receiver<u64>,
}

/// Starts `spec` (a topic function) running `code`; it stops when `shutdown` turns true.
///
/// An aggregate that regroups its input (`group_by`, a key function) runs as
/// two topic functions behind one handle: its rekey stage, then its fold
/// reading the internal topic (see [`super::aggregate::repartition`]).
pub async fn start_function(
    deps: FunctionDeps<'_>,
    spec: &FunctionSpec,
    code: FunctionCode,
    shutdown: watch::Receiver<bool>,
) -> Result<FunctionHandle, FunctionError> {
    let (FunctionCode::Fold(fold), Some(stage), Some(repartition)) = (&code, spec.rekey_stage(), spec.repartition())
    else {
        return start_stage(deps, spec, code, shutdown).await;
    };
    let rekey = FunctionCode::Handler(rekey_handlers(&stage, fold, &repartition.group_by));
    let rekey = start_stage(deps, &stage, rekey, shutdown.clone()).await?;
    let folding = start_stage(deps, &spec.fold_stage(), code, shutdown).await?;
    let (fold_task, rekey_task) = (folding.task, rekey.task);
    let task = tokio::spawn(async move {
        let (fold, rekey) = tokio::join!(fold_task, rekey_task);
        for ended in [fold, rekey] {
            match ended {
                Ok(result) => result?,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => {}
            }
        }
        Ok(())
    });
    // Ready when the fold is: the rekey stage has no state to restore.
    Ok(FunctionHandle { name: spec.name.clone(), task, assignments: folding.assignments })
}

/// Starts one topic function (or one stage of an aggregate) running `code`.
async fn start_stage(
    deps: FunctionDeps<'_>,
    spec: &FunctionSpec,
    code: FunctionCode,
    shutdown: watch::Receiver<bool>,
) -> Result<FunctionHandle, FunctionError> {
    if spec.inputs().is_empty() {
        return Err(FunctionError::NoInput { function: spec.name.clone() });
    }
    let (handlers, aggregate) = match (code, &spec.aggregate) {
        (FunctionCode::Fold(fold), Some(agg)) => {
            let metrics = deps.metrics.function(&spec.name);
            let slow = deps.runtime.slow_handler;
            let aggregate = Aggregate::new(fold, agg, deps.schemas.clone(), spec.retry.clone(), metrics, slow);
            // An aggregate's records go through its fold; the pipeline then holds a handler that is never called.
            let handlers = spec.inputs().iter().map(|input| (input.clone(), never_called())).collect();
            (handlers, Some(Arc::new(aggregate)))
        }
        (FunctionCode::Handler(handlers), None) => (handlers, None),
        (FunctionCode::Handler(_), Some(_)) => {
            return Err(FunctionError::Code { function: spec.name.clone(), expected: "an aggregate fold" })
        }
        (FunctionCode::Fold(_), None) => {
            return Err(FunctionError::Code { function: spec.name.clone(), expected: "a topic handler" })
        }
    };
    let outputs = deps.outputs(spec).await?;
    let dlq_topic =
        spec.dead_letter.clone().ok_or_else(|| FunctionError::NoDeadLetter { function: spec.name.clone() })?;
    let dead_letters =
        DeadLetters { partitions: deps.partitions(&dlq_topic).await?, topic: dlq_topic, function: spec.name.clone() };
    let retry_topic = match &spec.retry.topic {
        Some(topic) => Some(RetryTopic {
            partitions: deps.partitions(topic).await?,
            topic: topic.clone(),
            function: spec.name.clone(),
            policy: spec.retry.clone(),
        }),
        None => None,
    };
    let runtime = deps.runtime;
    let metrics = deps.metrics.function(&spec.name);
    let function: Arc<str> = Arc::from(spec.name.as_str());
    let mut tables = Tables::default();
    for (name, topic) in &spec.tables {
        let table = deps.tables.get(topic).ok_or_else(|| FunctionError::NoTable {
            function: spec.name.clone(),
            table: name.clone(),
            topic: topic.clone(),
        })?;
        tables.insert(name.clone(), table.clone());
    }
    let stack = |topic: &str, handler| {
        let format = deps.topics.get(topic).map(|t| t.format).unwrap_or_default();
        let call = HandlerCall::new(handler, deps.schemas.clone()).with_format(format).with_tables(tables.clone());
        pipeline(call, spec.retry.clone(), metrics.clone(), runtime.slow_handler)
    };
    let inputs = Inputs::new(
        handlers
            .into_iter()
            .map(|(topic, handler)| {
                let stack = stack(&topic, handler);
                (topic, stack)
            })
            .collect(),
        spec.retry.topic.as_deref(),
    );
    let member = GroupMember::new(
        deps.cluster.clone(),
        MemberConfig {
            group: spec.group_id(),
            topics: inputs.topics(),
            session_timeout: runtime.session_timeout,
            rebalance_timeout: runtime.rebalance_timeout,
            heartbeat_interval: runtime.heartbeat_interval,
        },
    )
    .with_protocol(runtime.group_protocol);
    let reset = match spec.start_from.unwrap_or(runtime.auto_offset_reset) {
        OffsetReset::Earliest => LogEnd::Earliest,
        OffsetReset::Latest => LogEnd::Latest,
    };
    let committer = Arc::new(Committer::new(GroupClient::new(deps.cluster.clone(), spec.group_id()), member.state()));
    let member_transaction = match (spec.guarantee, runtime.transactional_producer) {
        (Guarantee::AtLeastOnce, _) | (_, TransactionalProducer::PerPartition) => None,
        (_, model) => {
            let config = MemberTransaction::producer_config(&spec.name, deps.producer_config);
            let (supported, producer) = match model {
                TransactionalProducer::Auto => {
                    let input = &spec.inputs()[0];
                    MemberTransaction::supported(deps.cluster, &config, &spec.group_id(), input)
                        .await
                        .map_err(|e| FunctionError::Transactions { function: spec.name.clone(), source: Box::new(e) })?
                }
                _ => (true, None),
            };
            supported.then(|| {
                let (cluster, metrics) = (deps.cluster.clone(), metrics.clone());
                MemberTransaction::start(function.clone(), cluster, config, producer, committer.clone(), metrics)
            })
        }
    };
    if spec.guarantee == Guarantee::ExactlyOnce {
        let model = if member_transaction.is_some() { "per member" } else { "per partition" };
        tracing::info!(function = %function, "exactly_once with one transactional producer {model}");
    }
    let shared = Arc::new(FunctionShared {
        egress: Egress { function: function.clone(), outputs, dead_letters, retry_topic, metrics: metrics.clone() },
        function,
        inputs,
        metrics,
        cluster: deps.cluster.clone(),
        producer: deps.producer.clone(),
        producer_config: deps.producer_config.clone(),
        member_transaction,
        committer,
        guarantee: spec.guarantee,
        ordering: spec.ordering,
        max_in_flight: spec.max_in_flight,
        isolation: runtime.isolation,
        reset,
        fetch_limits: FetchLimits { max_wait: runtime.fetch_max_wait, ..FetchLimits::default() },
        aggregate,
    });
    let workers = Arc::new(PartitionWorkers::new(shared, runtime.shutdown_timeout));
    let assignments = member.assignments();
    let task = tokio::spawn(member.run(workers, shutdown));
    Ok(FunctionHandle { name: spec.name.clone(), task, assignments })
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
        json: Arc::new(|_, _| {
            Box::pin(std::future::ready(Err(kfn_sdk::InvokeError::Handler(kfn_sdk::FnError::permanent(
                "an aggregate's records go through its fold",
            )))))
        }),
    }
}
