//! The runtime's Prometheus metrics; docs/metrics.md lists each with its meaning.
//!
//! Handles to the metric families are created once per function or route and
//! kept by the code that updates them, so the per-record path does no lookup
//! by name.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of per-function metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabels {
    /// The function.
    pub function: String,
}

/// Labels of invocation outcomes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The function.
    pub function: String,
    /// ok, retry, dead_letter, panic.
    pub outcome: String,
}

/// Labels of dead letters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The function.
    pub function: String,
    /// permanent, retries_exhausted, undecodable, panic, output.
    pub reason: String,
}

/// Labels of per-partition metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// The function.
    pub function: String,
    /// The input topic.
    pub topic: String,
    /// The partition.
    pub partition: String,
}

/// Labels of HTTP requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route, e.g. `POST /orders`.
    pub route: String,
    /// The status code.
    pub status: String,
}

/// Labels of per-route HTTP metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route, e.g. `POST /orders`.
    pub route: String,
}

/// Labels of table values.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    /// The table topic.
    pub table: String,
    /// The row's key.
    pub key: String,
    /// The numeric field.
    pub field: String,
}

/// A gauge holding a float.
pub type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Every metric of one kfn process.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// kfn_invocations_total{function,outcome}.
    pub invocations: Family<OutcomeLabels, Counter>,
    /// kfn_handler_duration_seconds{function}.
    pub handler_duration: Family<FunctionLabels, Histogram>,
    /// kfn_retries_total{function}.
    pub retries: Family<FunctionLabels, Counter>,
    /// kfn_dead_letters_total{function,reason}.
    pub dead_letters: Family<ReasonLabels, Counter>,
    /// kfn_consumer_lag{function,topic,partition}.
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    /// kfn_committed_lag{function,topic,partition}: log end minus the group's committed offset, every partition.
    pub committed_lag: Family<PartitionLabels, Gauge>,
    /// kfn_rebalances_total{function}.
    pub rebalances: Family<FunctionLabels, Counter>,
    /// kfn_partition_workers_started_total{function}.
    pub workers_started: Family<FunctionLabels, Counter>,
    /// kfn_partition_workers_stopped_total{function}: revoked, lost or shut down.
    pub workers_stopped: Family<FunctionLabels, Counter>,
    /// kfn_produce_duration_seconds{function}.
    pub produce_duration: Family<FunctionLabels, Histogram>,
    /// kfn_inflight_records{function}.
    pub inflight: Family<FunctionLabels, Gauge>,
    /// kfn_slow_handlers_total{function}.
    pub slow_handlers: Family<FunctionLabels, Counter>,
    /// kfn_handler_panics_total{function}.
    pub panics: Family<FunctionLabels, Counter>,
    /// kfn_http_requests_total{route,status}.
    pub http_requests: Family<HttpLabels, Counter>,
    /// kfn_late_events_total{function}.
    pub late_events: Family<FunctionLabels, Counter>,
    /// kfn_table_value{table,key,field}: numeric fields of queryable tables (analytics).
    pub table_values: Family<TableLabels, FloatGauge>,
    /// kfn_http_request_duration_seconds{route}: from the request's arrival to the answer (events stored).
    pub http_duration: Family<RouteLabels, Histogram>,
    /// kfn_function_ready{function}: 1 once the function's group member received an assignment.
    pub function_ready: Family<FunctionLabels, Gauge>,
    /// kfn_transactions_total{function,outcome}: exactly_once transactions committed or aborted.
    pub transactions: Family<OutcomeLabels, Counter>,
    /// kfn_schema_registry_errors_total: writer-schema lookups the registry failed (unreachable, 5xx).
    pub schema_registry_errors: Counter,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of metrics in a registry of its own.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let invocations = Family::<OutcomeLabels, Counter>::default();
        let handler_duration =
            Family::<FunctionLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let retries = Family::<FunctionLabels, Counter>::default();
        let dead_letters = Family::<ReasonLabels, Counter>::default();
        let consumer_lag = Family::<PartitionLabels, Gauge>::default();
        let committed_lag = Family::<PartitionLabels, Gauge>::default();
        let rebalances = Family::<FunctionLabels, Counter>::default();
        let workers_started = Family::<FunctionLabels, Counter>::default();
        let workers_stopped = Family::<FunctionLabels, Counter>::default();
        let produce_duration =
            Family::<FunctionLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let inflight = Family::<FunctionLabels, Gauge>::default();
        let slow_handlers = Family::<FunctionLabels, Counter>::default();
        let panics = Family::<FunctionLabels, Counter>::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let table_values = Family::<TableLabels, FloatGauge>::default();
        let late_events = Family::<FunctionLabels, Counter>::default();
        let function_ready = Family::<FunctionLabels, Gauge>::default();
        let http_duration =
            Family::<RouteLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let transactions = Family::<OutcomeLabels, Counter>::default();
        let schema_registry_errors = Counter::default();
        registry.register("kfn_invocations", "Handler invocations by outcome", invocations.clone());
        registry.register("kfn_handler_duration_seconds", "Time spent in handlers", handler_duration.clone());
        registry.register("kfn_retries", "Handler attempts that were retried", retries.clone());
        registry.register("kfn_dead_letters", "Records written to dead-letter topics", dead_letters.clone());
        registry.register("kfn_consumer_lag", "Records between the position and the log end", consumer_lag.clone());
        registry.register(
            "kfn_committed_lag",
            "Records between the group's committed offset and the log end, for every partition of the function",
            committed_lag.clone(),
        );
        registry.register("kfn_rebalances", "Partition assignments received", rebalances.clone());
        registry.register(
            "kfn_partition_workers_started",
            "Partition workers started (a partition assigned to this process)",
            workers_started.clone(),
        );
        registry.register(
            "kfn_partition_workers_stopped",
            "Partition workers stopped (a partition revoked, lost or shut down)",
            workers_stopped.clone(),
        );
        registry.register(
            "kfn_produce_duration_seconds",
            "Time to produce a batch's outputs",
            produce_duration.clone(),
        );
        registry.register("kfn_inflight_records", "Records being processed", inflight.clone());
        registry.register("kfn_slow_handlers", "Handler calls slower than runtime.slow_handler", slow_handlers.clone());
        registry.register("kfn_handler_panics", "Handler calls that panicked", panics.clone());
        registry.register("kfn_http_requests", "HTTP trigger requests by route and status", http_requests.clone());
        registry.register("kfn_table_value", "Numeric fields of the rows of queryable tables", table_values.clone());
        registry.register(
            "kfn_late_events",
            "Records an aggregate dropped: their window closed (past grace)",
            late_events.clone(),
        );
        registry.register(
            "kfn_function_ready",
            "1 once the function's group member received an assignment (what /readyz waits for)",
            function_ready.clone(),
        );
        registry.register("kfn_transactions", "exactly_once transactions by outcome", transactions.clone());
        registry.register(
            "kfn_http_request_duration_seconds",
            "HTTP trigger requests, from arrival to the answer (the handler's events stored)",
            http_duration.clone(),
        );
        registry.register(
            "kfn_schema_registry_errors",
            "Writer-schema lookups the schema registry failed (unreachable or 5xx)",
            schema_registry_errors.clone(),
        );
        Self {
            registry: Arc::new(registry),
            invocations,
            handler_duration,
            retries,
            dead_letters,
            consumer_lag,
            committed_lag,
            rebalances,
            workers_started,
            workers_stopped,
            produce_duration,
            inflight,
            slow_handlers,
            panics,
            http_requests,
            late_events,
            table_values,
            function_ready,
            http_duration,
            transactions,
            schema_registry_errors,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The handles of one function's metrics, resolved once.
    ///
    /// Every dead-letter reason's series is created at 0 here: Prometheus's
    /// `increase()` cannot see a counter's first step when the series appears
    /// already at 1, so an alert on the first dead letter would never fire.
    pub fn function(&self, function: &str) -> FunctionMetrics {
        let f = FunctionLabels { function: function.to_string() };
        for reason in DEAD_LETTER_REASONS {
            drop(
                self.dead_letters.get_or_create(&ReasonLabels { function: function.into(), reason: (*reason).into() }),
            );
        }
        let outcome = |o: &str| {
            self.invocations.get_or_create(&OutcomeLabels { function: function.into(), outcome: o.into() }).clone()
        };
        let transactions = |o: &str| {
            self.transactions.get_or_create(&OutcomeLabels { function: function.into(), outcome: o.into() }).clone()
        };
        FunctionMetrics {
            committed: transactions("committed"),
            aborted: transactions("aborted"),
            ok: outcome("ok"),
            failed: outcome("failed"),
            handler_duration: self.handler_duration.get_or_create(&f).clone(),
            retries: self.retries.get_or_create(&f).clone(),
            rebalances: self.rebalances.get_or_create(&f).clone(),
            workers_started: self.workers_started.get_or_create(&f).clone(),
            workers_stopped: self.workers_stopped.get_or_create(&f).clone(),
            produce_duration: self.produce_duration.get_or_create(&f).clone(),
            inflight: self.inflight.get_or_create(&f).clone(),
            slow: self.slow_handlers.get_or_create(&f).clone(),
            panics: self.panics.get_or_create(&f).clone(),
            late: self.late_events.get_or_create(&f).clone(),
            function: function.to_string(),
            metrics: self.clone(),
        }
    }
}

/// The `reason` label values of `kfn_dead_letters_total` (the invoker's failure kinds that dead-letter).
pub const DEAD_LETTER_REASONS: &[&str] = &["permanent", "retries_exhausted", "undecodable", "panic", "output"];

/// One function's metric handles.
#[derive(Clone)]
pub struct FunctionMetrics {
    /// Successful invocations.
    pub ok: Counter,
    /// Invocations that ended in a dead letter.
    pub failed: Counter,
    /// Handler latency.
    pub handler_duration: Histogram,
    /// Retried attempts.
    pub retries: Counter,
    /// Assignments received.
    pub rebalances: Counter,
    /// Partition workers started.
    pub workers_started: Counter,
    /// Partition workers stopped.
    pub workers_stopped: Counter,
    /// Produce latency.
    pub produce_duration: Histogram,
    /// Records in flight.
    pub inflight: Gauge,
    /// Slow handler calls.
    pub slow: Counter,
    /// Panics.
    pub panics: Counter,
    /// Records an aggregate dropped as late.
    pub late: Counter,
    /// exactly_once transactions committed.
    pub committed: Counter,
    /// exactly_once transactions aborted (a failed produce or commit; not a fenced zombie's).
    pub aborted: Counter,
    function: String,
    metrics: Metrics,
}

impl FunctionMetrics {
    /// Counts a dead letter for `reason`.
    pub fn dead_letter(&self, reason: &str) {
        self.metrics
            .dead_letters
            .get_or_create(&ReasonLabels { function: self.function.clone(), reason: reason.into() })
            .inc();
    }

    /// The lag gauge of one input partition.
    pub fn lag(&self, topic: &str, partition: i32) -> Gauge {
        self.metrics
            .consumer_lag
            .get_or_create(&PartitionLabels {
                function: self.function.clone(),
                topic: topic.into(),
                partition: partition.to_string(),
            })
            .clone()
    }
}
