//! A handler invocation as a stack of layers: decode and call (with panics
//! caught), observe (metrics, slow-call log), retry by policy.
//!
//! Each layer wraps an [`Invoke`]; [`stack`] composes them in the order a
//! function's policy says. Adding a policy means adding a layer here, not
//! editing the partition worker. The same layers run a topic handler
//! ([`HandlerCall`], called with a [`Ctx`]) and an aggregate's fold
//! ([`FoldCall`], called with a [`FoldInput`]): a registry outage, a panic or
//! a retryable error ends the same way for both.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use futures::future::BoxFuture;
use futures::FutureExt;
use kfn_sdk::{
    AggCtx, AggregateHandler, Ctx, Emit, ErasedHttp, FnErrorKind, HttpReply, HttpRequest, InvokeError, Row, Tables,
    TopicHandler,
};

use crate::avro::{SchemaCache, WriterDatum};
use crate::config::{RetryPolicy, TopicFormat};
use crate::metrics::FunctionMetrics;
use crate::trace::{TraceParent, TRACEPARENT};

/// Why a record was given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The handler said no retry can help.
    Permanent,
    /// The handler kept failing with retryable errors.
    RetriesExhausted,
    /// The bytes are not a value of the expected schema (or not Confluent-framed).
    Undecodable,
    /// The handler panicked.
    Panic,
    /// The handler's output could not be routed or encoded.
    Output,
    /// Not given up on: a retryable failure of a function with a retry topic,
    /// which sends the record there to wait out its backoff.
    Deferred,
}

impl FailureKind {
    /// The name used in dead-letter headers and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Permanent => "permanent",
            FailureKind::RetriesExhausted => "retries_exhausted",
            FailureKind::Undecodable => "undecodable",
            FailureKind::Panic => "panic",
            FailureKind::Output => "output",
            FailureKind::Deferred => "deferred",
        }
    }
}

/// A record given up on: it goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Why.
    pub kind: FailureKind,
    /// The error message.
    pub message: String,
    /// How many attempts were made.
    pub attempts: u32,
}

/// An error from one attempt, before the retry layer decides.
#[derive(Debug, Clone)]
pub enum AttemptError {
    /// Try again later.
    Retryable(String),
    /// Give up now.
    Final(FailureKind, String),
}

/// What the layers need to know of a call: its attempt and where its record is, for logs.
pub trait Call: Clone + Send + Sync {
    /// Which attempt this is, from 1.
    fn attempt(&self) -> u32;
    /// Sets the attempt before the next try.
    fn set_attempt(&mut self, attempt: u32);
    /// The function, topic, partition and offset of the record.
    fn site(&self) -> (&Arc<str>, &str, i32, i64);
    /// The call's `traceparent` header, kept as it is: it is parsed only for a
    /// log line, never on the per-record path.
    fn traceparent(&self) -> Option<bytes::Bytes> {
        None
    }
}

impl Call for Ctx {
    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn set_attempt(&mut self, attempt: u32) {
        self.attempt = attempt;
    }

    fn site(&self) -> (&Arc<str>, &str, i32, i64) {
        (&self.function, &self.topic, self.partition, self.offset)
    }

    fn traceparent(&self) -> Option<bytes::Bytes> {
        self.headers.iter().find(|h| h.name == TRACEPARENT)?.value.clone()
    }
}

/// One layer of the invocation stack, for calls of type `C`.
pub trait Invoke<C: Call>: Send + Sync {
    /// What a successful call gives.
    type Output: Send;

    /// Invokes the handler for one record's value.
    fn call<'a>(&'a self, call: C, value: &'a [u8]) -> BoxFuture<'a, Result<Self::Output, AttemptError>>
    where
        C: 'a;
}

/// The writer's schema and datum of `value`: from the cache, else from the registry.
///
/// A registry that cannot be reached (or answers 5xx) is retryable: the
/// record is fine, the registry will be back. Anything else is undecodable.
async fn writer<'v>(schemas: &SchemaCache, value: &'v [u8]) -> Result<WriterDatum<'v>, AttemptError> {
    match schemas.try_resolve(value) {
        Ok(Some(w)) => Ok(w),
        Ok(None) => match schemas.resolve(value).await {
            Ok(w) => Ok(w),
            Err(e) if e.is_transient() => Err(AttemptError::Retryable(e.to_string())),
            Err(e) => Err(AttemptError::Final(FailureKind::Undecodable, e.to_string())),
        },
        Err(e) => Err(AttemptError::Final(FailureKind::Undecodable, e.to_string())),
    }
}

/// What the handler's error means for the record.
fn attempt_error(error: InvokeError, schema_id: u32) -> AttemptError {
    match error {
        InvokeError::Decode { event, message } => AttemptError::Final(
            FailureKind::Undecodable,
            format!("cannot decode as {event} (writer schema id {schema_id}): {message}"),
        ),
        InvokeError::Handler(e) => match e.kind {
            FnErrorKind::Retryable => AttemptError::Retryable(e.message),
            FnErrorKind::Permanent => AttemptError::Final(FailureKind::Permanent, e.message),
        },
    }
}

/// The innermost layer: resolve the writer's schema, decode, run the handler, catch panics.
pub struct HandlerCall {
    handler: TopicHandler,
    schemas: Arc<SchemaCache>,
    format: TopicFormat,
    tables: Tables,
}

impl HandlerCall {
    /// Calls `handler` with values decoded through `schemas`.
    pub fn new(handler: TopicHandler, schemas: Arc<SchemaCache>) -> Self {
        Self { handler, schemas, format: TopicFormat::Avro, tables: Tables::default() }
    }

    /// The same, with `tables` in every call's context (`ctx.table(name)`).
    pub fn with_tables(self, tables: Tables) -> Self {
        Self { tables, ..self }
    }

    /// The same, for records of a topic of `format` (JSON topics bypass the registry).
    pub fn with_format(self, format: TopicFormat) -> Self {
        Self { format, ..self }
    }
}

impl Invoke<Ctx> for HandlerCall {
    type Output = Emit;

    fn call<'a>(&'a self, mut ctx: Ctx, value: &'a [u8]) -> BoxFuture<'a, Result<Emit, AttemptError>>
    where
        Ctx: 'a,
    {
        Box::pin(async move {
            ctx.tables = self.tables.clone();
            if self.format == TopicFormat::Json {
                return self.call_json(ctx, value).await;
            }
            let writer = writer(&self.schemas, value).await?;
            let call = (self.handler.call)(ctx, writer.datum, &writer.schema);
            match AssertUnwindSafe(call).catch_unwind().await {
                Ok(result) => result.map_err(|e| attempt_error(e, writer.schema_id)),
                Err(panic) => Err(AttemptError::Final(FailureKind::Panic, panic_message(&panic))),
            }
        })
    }
}

impl HandlerCall {
    /// A JSON record: Connect's wrapper removed, decoded into the handler's
    /// event type by serde. A tombstone calls no handler.
    async fn call_json(&self, ctx: Ctx, value: &[u8]) -> Result<Emit, AttemptError> {
        let undecodable = |message: String| AttemptError::Final(FailureKind::Undecodable, message);
        let value = match super::json::payload(value).map_err(undecodable)? {
            super::json::JsonValue::Value(value) => value,
            super::json::JsonValue::Tombstone => return Ok(Emit::none()),
        };
        let call = (self.handler.json)(ctx, value);
        match AssertUnwindSafe(call).catch_unwind().await {
            Ok(Ok(emit)) => Ok(emit),
            Ok(Err(InvokeError::Decode { event, message })) => {
                Err(undecodable(format!("cannot decode the JSON value as {event}: {message}")))
            }
            Ok(Err(e)) => Err(attempt_error(e, 0)),
            Err(panic) => Err(AttemptError::Final(FailureKind::Panic, panic_message(&panic))),
        }
    }
}

/// One HTTP request as a call of the layer stack. Its body stays in the
/// request (shared `Bytes`): the value the stack passes down is not used.
#[derive(Clone)]
pub struct HttpInput {
    /// The HTTP function.
    pub function: Arc<str>,
    /// The request, body included.
    pub request: HttpRequest,
    attempt: u32,
}

impl HttpInput {
    /// The call of `function` for `request`.
    pub fn new(function: Arc<str>, request: HttpRequest) -> Self {
        Self { function, request, attempt: 1 }
    }
}

impl Call for HttpInput {
    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn set_attempt(&mut self, attempt: u32) {
        self.attempt = attempt;
    }

    fn site(&self) -> (&Arc<str>, &str, i32, i64) {
        // No partition or offset: the log names the path instead of a topic.
        (&self.function, &self.request.path, -1, -1)
    }
}

/// The innermost layer for HTTP handlers: run the handler, catch panics.
///
/// HTTP handlers are never retried by kfn (their stack has one attempt):
/// the client retries, with the same `Idempotency-Key`.
pub struct HttpCall {
    handler: ErasedHttp,
}

impl HttpCall {
    /// Calls `handler`.
    pub fn new(handler: ErasedHttp) -> Self {
        Self { handler }
    }
}

impl Invoke<HttpInput> for HttpCall {
    type Output = HttpReply;

    fn call<'a>(&'a self, input: HttpInput, _: &'a [u8]) -> BoxFuture<'a, Result<HttpReply, AttemptError>>
    where
        HttpInput: 'a,
    {
        Box::pin(async move {
            match AssertUnwindSafe((self.handler)(input.request)).catch_unwind().await {
                Ok(reply) => Ok(reply),
                Err(panic) => Err(AttemptError::Final(FailureKind::Panic, panic_message(&panic))),
            }
        })
    }
}

/// The stack of an HTTP function: Observe(HttpCall) in a Retry of one attempt.
pub fn http_stack(handler: ErasedHttp, metrics: FunctionMetrics, slow: Duration) -> Arc<Stack<HttpCall>> {
    let once = RetryPolicy { max_attempts: 1, ..RetryPolicy::default() };
    Arc::new(stack(HttpCall::new(handler), once, metrics, slow))
}

/// One record's fold: its context and the key's state before it.
#[derive(Clone)]
pub struct FoldInput<'s> {
    /// The fold's context.
    pub ctx: &'s AggCtx,
    /// The key's state before this record, if any.
    pub previous: Option<&'s Row>,
    /// The input topic, for logs.
    pub topic: &'s str,
    /// Which attempt this is, from 1.
    pub attempt: u32,
}

impl Call for FoldInput<'_> {
    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn set_attempt(&mut self, attempt: u32) {
        self.attempt = attempt;
    }

    fn site(&self) -> (&Arc<str>, &str, i32, i64) {
        (&self.ctx.function, self.topic, self.ctx.partition, self.ctx.offset)
    }
}

/// The innermost layer of an aggregate: resolve the writer's schema, decode, fold, catch panics.
pub struct FoldCall {
    handler: AggregateHandler,
    schemas: Arc<SchemaCache>,
}

impl FoldCall {
    /// Folds with `handler` over values decoded through `schemas`.
    pub fn new(handler: AggregateHandler, schemas: Arc<SchemaCache>) -> Self {
        Self { handler, schemas }
    }
}

impl<'s> Invoke<FoldInput<'s>> for FoldCall {
    type Output = Row;

    fn call<'a>(&'a self, input: FoldInput<'s>, value: &'a [u8]) -> BoxFuture<'a, Result<Row, AttemptError>>
    where
        FoldInput<'s>: 'a,
    {
        Box::pin(async move {
            let writer = writer(&self.schemas, value).await?;
            let fold = || (self.handler.fold)(input.ctx, input.previous, writer.datum, &writer.schema);
            match std::panic::catch_unwind(AssertUnwindSafe(fold)) {
                Ok(result) => result.map_err(|e| attempt_error(e, writer.schema_id)),
                Err(panic) => Err(AttemptError::Final(FailureKind::Panic, panic_message(&panic))),
            }
        })
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        format!("handler panicked: {s}")
    } else if let Some(s) = panic.downcast_ref::<String>() {
        format!("handler panicked: {s}")
    } else {
        "handler panicked".to_string()
    }
}

/// Metrics and the slow-handler log around each attempt.
pub struct Observe<I> {
    inner: I,
    metrics: FunctionMetrics,
    slow: Duration,
}

impl<C: Call, I: Invoke<C>> Invoke<C> for Observe<I> {
    type Output = I::Output;

    fn call<'a>(&'a self, call: C, value: &'a [u8]) -> BoxFuture<'a, Result<I::Output, AttemptError>>
    where
        C: 'a,
    {
        Box::pin(async move {
            let (function, topic, partition, offset) = {
                let (function, topic, partition, offset) = call.site();
                (function.clone(), topic.to_string(), partition, offset)
            };
            let traceparent = call.traceparent();
            let trace_id = || {
                let text = traceparent.as_deref().and_then(|t| std::str::from_utf8(t).ok());
                text.and_then(TraceParent::parse).map(|t| format!("{:032x}", t.trace_id)).unwrap_or_default()
            };
            self.metrics.inflight.inc();
            let start = Instant::now();
            let result = self.inner.call(call, value).await;
            let elapsed = start.elapsed();
            self.metrics.inflight.dec();
            self.metrics.handler_duration.observe(elapsed.as_secs_f64());
            if elapsed > self.slow {
                self.metrics.slow.inc();
                tracing::warn!(%function, %topic, partition, offset, trace_id = %trace_id(), elapsed_ms = elapsed.as_millis() as u64, "slow handler");
            }
            if let Err(AttemptError::Final(FailureKind::Panic, message)) = &result {
                self.metrics.panics.inc();
                tracing::error!(%function, %topic, partition, offset, trace_id = %trace_id(), %message, "handler panicked");
            }
            result
        })
    }
}

/// Retries retryable failures with exponential backoff (backon), then gives up.
pub struct Retry<I> {
    inner: I,
    policy: RetryPolicy,
    metrics: FunctionMetrics,
}

impl<I> Retry<I> {
    /// Runs attempts from `call.attempt()` on until success, a final error, or the policy's last attempt.
    ///
    /// With a retry topic, a retryable failure before the last attempt ends in
    /// [`FailureKind::Deferred`] instead of a wait here: the record waits in the topic.
    ///
    /// With span export on ([`crate::otel`]) and a `traceparent` on the input,
    /// the invocation (all its attempts here) is one span.
    pub async fn run<C: Call>(&self, mut call: C, value: &[u8]) -> Result<I::Output, Failure>
    where
        I: Invoke<C>,
    {
        // Parsed only when spans are exported: the per-record path stays as it was otherwise.
        let input = crate::otel::enabled()
            .then(|| call.traceparent())
            .flatten()
            .and_then(|t| std::str::from_utf8(&t).ok().and_then(TraceParent::parse));
        let Some(input) = input else { return self.attempts(&mut call, value).await };
        let start = std::time::SystemTime::now();
        let result = self.attempts(&mut call, value).await;
        crate::otel::record(|| invocation_span(&call, input, start, result.as_ref().err()));
        result
    }

    /// The attempts of [`run`](Self::run); `call` is left at the last attempt made.
    async fn attempts<C: Call>(&self, call: &mut C, value: &[u8]) -> Result<I::Output, Failure>
    where
        I: Invoke<C>,
    {
        let mut attempt = call.attempt().max(1);
        let mut delays = backoff(&self.policy).build().skip(attempt as usize - 1);
        loop {
            call.set_attempt(attempt);
            match self.inner.call(call.clone(), value).await {
                Ok(emit) => return Ok(emit),
                Err(AttemptError::Final(kind, message)) => return Err(Failure { kind, message, attempts: attempt }),
                Err(AttemptError::Retryable(message)) if self.policy.topic.is_some() => {
                    if attempt >= self.policy.max_attempts {
                        return Err(Failure { kind: FailureKind::RetriesExhausted, message, attempts: attempt });
                    }
                    self.metrics.retries.inc();
                    return Err(Failure { kind: FailureKind::Deferred, message, attempts: attempt });
                }
                Err(AttemptError::Retryable(message)) => match delays.next() {
                    Some(delay) if attempt < self.policy.max_attempts => {
                        // backon's jitter adds up to the delay again; max_backoff stays the longest wait.
                        let delay = delay.min(self.policy.max_backoff);
                        self.metrics.retries.inc();
                        let (function, _, _, offset) = call.site();
                        tracing::debug!(%function, offset, attempt, ?delay, %message, "retrying");
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                    _ => return Err(Failure { kind: FailureKind::RetriesExhausted, message, attempts: attempt }),
                },
            }
        }
    }
}

/// The span of one invocation of `call`'s function for the record traced by `input`.
///
/// A success is the span its outputs name as their parent (the egress derives
/// the same id, [`TraceParent::invocation`]); a failure writes no new hop, so
/// its span takes a fresh id: a record deferred to the retry topic and run
/// again later is two spans.
fn invocation_span<C: Call>(
    call: &C,
    input: TraceParent,
    start: std::time::SystemTime,
    failure: Option<&Failure>,
) -> crate::otel::Span {
    use crate::otel::{Kind, Span};
    let (function, topic, partition, offset) = call.site();
    let hop = input.invocation(function, topic, partition, offset);
    let context = if failure.is_some() { hop.child() } else { hop };
    let mut span = Span::new(function.to_string(), Kind::Consumer, context, Some(input.parent_id));
    span.start = start;
    span = span
        .attr("kfn.function", function.to_string())
        .attr("messaging.system", "kafka")
        .attr("messaging.operation.type", "process")
        .attr("messaging.destination.name", topic)
        .attr("messaging.destination.partition.id", partition.to_string())
        .attr("messaging.kafka.offset", offset)
        .attr("kfn.attempt", i64::from(call.attempt()))
        .attr("kfn.outcome", failure.map_or("ok", |f| f.kind.as_str()));
    if let Some(failure) = failure {
        // Deferred waits in the retry topic; every other failure is a dead letter.
        span = span.attr("kfn.dead_letter", (failure.kind != FailureKind::Deferred).to_string());
        span.error = Some(failure.message.clone());
    }
    span
}

/// The wait before attempt `attempts + 1`, as the in-place retries would wait.
pub fn delay_after(policy: &RetryPolicy, attempts: u32) -> Duration {
    let nth = attempts.saturating_sub(1) as usize;
    backoff(policy).build().nth(nth).unwrap_or(policy.max_backoff).min(policy.max_backoff)
}

/// The backoff of a retry policy, as backon builds it.
pub fn backoff(policy: &RetryPolicy) -> backon::ExponentialBuilder {
    let builder = backon::ExponentialBuilder::default()
        .with_min_delay(policy.backoff)
        .with_max_delay(policy.max_backoff)
        .with_factor(policy.multiplier as f32)
        .with_max_times(policy.max_attempts.saturating_sub(1) as usize);
    if policy.jitter {
        builder.with_jitter()
    } else {
        builder
    }
}

/// The layers around an innermost call: Retry(Observe(call)).
pub type Stack<I> = Retry<Observe<I>>;

/// The whole stack for one topic handler: Retry(Observe(HandlerCall)).
pub type Pipeline = Arc<Stack<HandlerCall>>;

/// Composes the layers around `call` for a function's policy.
pub fn stack<I>(call: I, policy: RetryPolicy, metrics: FunctionMetrics, slow: Duration) -> Stack<I> {
    Retry { inner: Observe { inner: call, metrics: metrics.clone(), slow }, policy, metrics }
}

/// Composes the layers for a topic handler.
pub fn pipeline(call: HandlerCall, policy: RetryPolicy, metrics: FunctionMetrics, slow: Duration) -> Pipeline {
    Arc::new(stack(call, policy, metrics, slow))
}
