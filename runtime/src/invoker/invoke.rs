//! A handler invocation as a stack of layers: decode and call (with panics
//! caught), observe (metrics, slow-call log), retry by policy.
//!
//! Each layer wraps an [`Invoke`]; [`pipeline`] composes them in the order a
//! function's policy says. Adding a policy means adding a layer here, not
//! editing the partition worker.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use futures::future::BoxFuture;
use futures::FutureExt;
use kfn_sdk::{Ctx, Emit, FnErrorKind, InvokeError, TopicHandler};

use crate::avro::SchemaCache;
use crate::config::RetryPolicy;
use crate::metrics::FunctionMetrics;

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

/// One layer of the invocation stack.
pub trait Invoke: Send + Sync {
    /// Invokes the handler for one record's value with `ctx`.
    fn call<'a>(&'a self, ctx: Ctx, value: &'a [u8]) -> BoxFuture<'a, Result<Emit, AttemptError>>;
}

/// The innermost layer: resolve the writer's schema, decode, run the handler, catch panics.
pub struct HandlerCall {
    handler: TopicHandler,
    schemas: Arc<SchemaCache>,
}

impl HandlerCall {
    /// Calls `handler` with values decoded through `schemas`.
    pub fn new(handler: TopicHandler, schemas: Arc<SchemaCache>) -> Self {
        Self { handler, schemas }
    }
}

impl Invoke for HandlerCall {
    fn call<'a>(&'a self, ctx: Ctx, value: &'a [u8]) -> BoxFuture<'a, Result<Emit, AttemptError>> {
        Box::pin(async move {
            let writer = match self.schemas.try_resolve(value) {
                Ok(Some(w)) => w,
                Ok(None) => match self.schemas.resolve(value).await {
                    Ok(w) => w,
                    Err(e) if e.is_transient() => return Err(AttemptError::Retryable(e.to_string())),
                    Err(e) => return Err(AttemptError::Final(FailureKind::Undecodable, e.to_string())),
                },
                Err(e) => return Err(AttemptError::Final(FailureKind::Undecodable, e.to_string())),
            };
            let call = (self.handler.call)(ctx, writer.datum, &writer.schema);
            match AssertUnwindSafe(call).catch_unwind().await {
                Ok(Ok(emit)) => Ok(emit),
                Ok(Err(InvokeError::Decode { event, message })) => Err(AttemptError::Final(
                    FailureKind::Undecodable,
                    format!("cannot decode as {event} (writer schema id {}): {message}", writer.schema_id),
                )),
                Ok(Err(InvokeError::Handler(e))) => match e.kind {
                    FnErrorKind::Retryable => Err(AttemptError::Retryable(e.message)),
                    FnErrorKind::Permanent => Err(AttemptError::Final(FailureKind::Permanent, e.message)),
                },
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

impl<I: Invoke> Invoke for Observe<I> {
    fn call<'a>(&'a self, ctx: Ctx, value: &'a [u8]) -> BoxFuture<'a, Result<Emit, AttemptError>> {
        Box::pin(async move {
            let (function, topic, partition, offset) =
                (ctx.function.clone(), ctx.topic.clone(), ctx.partition, ctx.offset);
            self.metrics.inflight.inc();
            let start = Instant::now();
            let result = self.inner.call(ctx, value).await;
            let elapsed = start.elapsed();
            self.metrics.inflight.dec();
            self.metrics.handler_duration.observe(elapsed.as_secs_f64());
            if elapsed > self.slow {
                self.metrics.slow.inc();
                tracing::warn!(%function, %topic, partition, offset, elapsed_ms = elapsed.as_millis() as u64, "slow handler");
            }
            if let Err(AttemptError::Final(FailureKind::Panic, message)) = &result {
                self.metrics.panics.inc();
                tracing::error!(%function, %topic, partition, offset, %message, "handler panicked");
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

impl<I: Invoke> Retry<I> {
    /// Runs attempts from `ctx.attempt` on until success, a final error, or the policy's last attempt.
    ///
    /// With a retry topic, a retryable failure before the last attempt ends in
    /// [`FailureKind::Deferred`] instead of a wait here: the record waits in the topic.
    pub async fn run(&self, mut ctx: Ctx, value: &[u8]) -> Result<Emit, Failure> {
        let mut attempt = ctx.attempt.max(1);
        let mut delays = backoff(&self.policy).build().skip(attempt as usize - 1);
        loop {
            ctx.attempt = attempt;
            match self.inner.call(ctx.clone(), value).await {
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
                        tracing::debug!(function = %ctx.function, offset = ctx.offset, attempt, ?delay, %message, "retrying");
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                    _ => return Err(Failure { kind: FailureKind::RetriesExhausted, message, attempts: attempt }),
                },
            }
        }
    }
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

/// The whole stack for one function: Retry(Observe(HandlerCall)).
pub type Pipeline = Arc<Retry<Observe<HandlerCall>>>;

/// Composes the layers for a function.
pub fn pipeline(call: HandlerCall, policy: RetryPolicy, metrics: FunctionMetrics, slow: Duration) -> Pipeline {
    Arc::new(Retry { inner: Observe { inner: call, metrics: metrics.clone(), slow }, policy, metrics })
}
