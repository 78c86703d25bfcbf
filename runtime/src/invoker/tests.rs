//! The invocation stack Retry(Observe(HandlerCall)) with a scripted handler:
//! attempt numbering, the backoff the policy asks for (in paused, virtual
//! time, so exact and not wall-clock), giving up, and panics.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::BackoffBuilder;
use kfn_sdk::{BoxFuture, Ctx, Emit, FnError, InvokeError, TopicHandler};
use tokio::time::Instant;

use super::invoke::{backoff, pipeline, FailureKind, HandlerCall, Pipeline};
use crate::avro::{framing, RegistryClient, SchemaCache};
use crate::config::RetryPolicy;
use crate::metrics::{FunctionMetrics, Metrics};

const SCHEMA_ID: u32 = 7;

/// What the scripted handler does on each call; after the script, it succeeds.
#[derive(Debug, Clone, Copy)]
enum Step {
    Retryable,
    Permanent,
    Panic,
}

/// Each call's `ctx.attempt` and the (virtual) time it started.
type Calls = Arc<Mutex<Vec<(u32, Instant)>>>;

struct Stack {
    pipeline: Pipeline,
    calls: Calls,
    metrics: FunctionMetrics,
}

fn stack(policy: RetryPolicy, script: Vec<Step>) -> Stack {
    let calls: Calls = Arc::default();
    let recorded = calls.clone();
    let handler = TopicHandler {
        input: "kfn.test.Item",
        call: Arc::new(
            move |ctx: Ctx, _datum: &[u8], _schema: &serde_avro_fast::Schema| -> BoxFuture<Result<Emit, InvokeError>> {
                let step = {
                    let mut calls = recorded.lock().unwrap();
                    calls.push((ctx.attempt, Instant::now()));
                    script.get(calls.len() - 1).copied()
                };
                Box::pin(async move {
                    match step {
                        None => Ok(Emit::none()),
                        Some(Step::Retryable) => {
                            Err(InvokeError::Handler(FnError::retryable(format!("busy on attempt {}", ctx.attempt))))
                        }
                        Some(Step::Permanent) => Err(InvokeError::Handler(FnError::permanent("bad record"))),
                        Some(Step::Panic) => panic!("handler bug on attempt {}", ctx.attempt),
                    }
                })
            },
        ),
        json: Arc::new(|_, _| Box::pin(std::future::ready(Ok(Emit::none())))),
    };
    // The writer's schema is cached up front: the registry address is never contacted.
    let schemas = Arc::new(SchemaCache::new(RegistryClient::new("http://127.0.0.1:9", None).unwrap()));
    let schema = r#"{"type":"record","name":"Item","namespace":"kfn.test","fields":[{"name":"id","type":"string"}]}"#;
    schemas.insert(SCHEMA_ID, Arc::new(serde_avro_fast::Schema::from_str(schema).unwrap()));
    let metrics = Metrics::new().function("f");
    let pipeline = pipeline(HandlerCall::new(handler, schemas), policy, metrics.clone(), Duration::from_secs(3600));
    Stack { pipeline, calls, metrics }
}

fn value() -> Vec<u8> {
    let mut v = Vec::new();
    framing::write_header(SCHEMA_ID, &mut v);
    v.extend_from_slice(&[2, b'a']); // {"id": "a"}
    v
}

fn ctx() -> Ctx {
    Ctx { function: Arc::from("f"), topic: Arc::from("in"), attempt: 0, ..Ctx::default() }
}

fn policy(max_attempts: u32, backoff_ms: u64, max_ms: u64, multiplier: f64, jitter: bool) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        backoff: Duration::from_millis(backoff_ms),
        max_backoff: Duration::from_millis(max_ms),
        multiplier,
        jitter,
        topic: None,
    }
}

fn attempts(calls: &Calls) -> Vec<u32> {
    calls.lock().unwrap().iter().map(|(a, _)| *a).collect()
}

/// The waits between consecutive calls.
fn gaps(calls: &Calls) -> Vec<Duration> {
    calls.lock().unwrap().windows(2).map(|w| w[1].1 - w[0].1).collect()
}

fn ms(list: &[u64]) -> Vec<Duration> {
    list.iter().map(|m| Duration::from_millis(*m)).collect()
}

/// Asserts the waits equal `expected`, give or take tokio's 1 ms timer tick
/// (a sleep ends on the first tick at or after its deadline).
fn assert_waits(calls: &Calls, expected: &[u64]) {
    let got = gaps(calls);
    let want = ms(expected);
    assert_eq!(got.len(), want.len(), "waits {got:?}, expected {want:?}");
    for (g, w) in got.iter().zip(&want) {
        assert!(*g >= *w && *g <= *w + Duration::from_millis(1), "waits {got:?}, expected {want:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_record_failing_n_times_succeeds_on_attempt_n_plus_one_after_the_policy_backoff() {
    let s = stack(policy(5, 100, 1_000, 2.0, false), vec![Step::Retryable; 3]);
    let result = s.pipeline.run(ctx(), &value()).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(attempts(&s.calls), [1, 2, 3, 4]);
    assert_waits(&s.calls, &[100, 200, 400]);
    assert_eq!(s.metrics.retries.get(), 3);
}

#[tokio::test(start_paused = true)]
async fn retries_stop_at_max_attempts_with_the_backoff_capped() {
    let s = stack(policy(4, 100, 500, 3.0, false), vec![Step::Retryable; 10]);
    let failure = s.pipeline.run(ctx(), &value()).await.unwrap_err();
    assert_eq!(failure.kind, FailureKind::RetriesExhausted);
    assert_eq!(failure.attempts, 4);
    assert_eq!(failure.message, "busy on attempt 4", "the last attempt's error is kept");
    assert_eq!(attempts(&s.calls), [1, 2, 3, 4]);
    assert_waits(&s.calls, &[100, 300, 500]);
    assert_eq!(s.metrics.retries.get(), 3);
}

#[tokio::test(start_paused = true)]
async fn one_attempt_allowed_means_no_retry() {
    let s = stack(policy(1, 100, 100, 2.0, false), vec![Step::Retryable]);
    let failure = s.pipeline.run(ctx(), &value()).await.unwrap_err();
    assert_eq!((failure.kind, failure.attempts), (FailureKind::RetriesExhausted, 1));
    assert_eq!(attempts(&s.calls), [1]);
    assert_eq!(s.metrics.retries.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_is_not_retried_even_after_retryable_ones() {
    let s = stack(policy(5, 100, 1_000, 2.0, false), vec![Step::Retryable, Step::Permanent]);
    let started = Instant::now();
    let failure = s.pipeline.run(ctx(), &value()).await.unwrap_err();
    assert_eq!((failure.kind, failure.attempts), (FailureKind::Permanent, 2));
    assert_eq!(failure.message, "bad record");
    assert_eq!(attempts(&s.calls), [1, 2]);
    assert_waits(&s.calls, &[100]);
    assert!(
        started.elapsed() <= Duration::from_millis(101),
        "no wait after a permanent error: {:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn jitter_keeps_each_wait_between_the_delay_and_twice_it_never_past_max_backoff() {
    let s = stack(policy(5, 100, 400, 2.0, true), vec![Step::Retryable; 10]);
    let failure = s.pipeline.run(ctx(), &value()).await.unwrap_err();
    assert_eq!(failure.attempts, 5);
    let base = ms(&[100, 200, 400, 400]);
    let got = gaps(&s.calls);
    assert_eq!(got.len(), base.len());
    for (g, b) in got.iter().zip(&base) {
        let upper = (*b * 2).min(Duration::from_millis(400)) + Duration::from_millis(1);
        assert!(*g >= *b && *g <= upper, "wait {g:?} outside [{b:?}, min(2x, max_backoff)] in {got:?}");
    }
}

#[tokio::test]
async fn a_panic_is_caught_counted_and_final() {
    let s = stack(policy(5, 100, 1_000, 2.0, false), vec![Step::Panic]);
    let failure = s.pipeline.run(ctx(), &value()).await.unwrap_err();
    assert_eq!((failure.kind, failure.attempts), (FailureKind::Panic, 1));
    assert!(failure.message.contains("handler bug on attempt 1"), "{}", failure.message);
    assert_eq!(s.metrics.panics.get(), 1);
    assert_eq!(attempts(&s.calls), [1]);
}

#[tokio::test]
async fn bytes_that_are_not_confluent_framed_never_reach_the_handler() {
    let s = stack(policy(5, 100, 1_000, 2.0, false), vec![]);
    let failure = s.pipeline.run(ctx(), b"{\"id\":\"a\"}").await.unwrap_err();
    assert_eq!((failure.kind, failure.attempts), (FailureKind::Undecodable, 1));
    assert!(failure.message.contains("magic byte"), "{}", failure.message);
    assert!(attempts(&s.calls).is_empty());
}

#[test]
fn the_backoff_sequence_follows_the_policy() {
    let delays: Vec<Duration> = backoff(&policy(6, 50, 300, 2.5, false)).build().collect();
    // max_attempts - 1 waits: 50, 125, 312.5 -> capped at 300, then 300.
    assert_eq!(delays, ms(&[50, 125, 300, 300, 300]));
    assert_eq!(backoff(&policy(1, 50, 300, 2.0, false)).build().count(), 0);
}

#[tokio::test(start_paused = true)]
async fn with_a_retry_topic_a_retryable_failure_is_deferred_at_once_until_the_last_attempt() {
    let with_topic = RetryPolicy { topic: Some("in.retry".into()), ..policy(3, 100, 1_000, 2.0, false) };
    let s = stack(with_topic, vec![Step::Retryable; 10]);
    let started = Instant::now();
    let failure = s.pipeline.run(ctx(), &value()).await.unwrap_err();
    assert_eq!((failure.kind, failure.attempts), (FailureKind::Deferred, 1));
    assert_eq!(Instant::now(), started, "no wait in place: the record waits in the retry topic");
    assert_eq!(s.metrics.retries.get(), 1);

    // Read back from the retry topic: attempt 2, then the last one gives up.
    let again = Ctx { attempt: 2, ..ctx() };
    let failure = s.pipeline.run(again, &value()).await.unwrap_err();
    assert_eq!((failure.kind, failure.attempts), (FailureKind::Deferred, 2));
    let last = Ctx { attempt: 3, ..ctx() };
    let failure = s.pipeline.run(last, &value()).await.unwrap_err();
    assert_eq!((failure.kind, failure.attempts), (FailureKind::RetriesExhausted, 3));
    assert_eq!(attempts(&s.calls), [1, 2, 3]);
    assert_eq!(s.metrics.retries.get(), 2);
}

#[tokio::test(start_paused = true)]
async fn in_place_retries_resume_from_the_attempt_the_context_carries() {
    let s = stack(policy(4, 100, 1_000, 2.0, false), vec![Step::Retryable; 10]);
    let failure = s.pipeline.run(Ctx { attempt: 3, ..ctx() }, &value()).await.unwrap_err();
    assert_eq!((failure.kind, failure.attempts), (FailureKind::RetriesExhausted, 4));
    assert_eq!(attempts(&s.calls), [3, 4]);
    assert_waits(&s.calls, &[400]);
}

/// A handler stack whose handler is never expected to run (it fails permanently).
pub(super) fn never_called_pipeline() -> Pipeline {
    stack(RetryPolicy::default(), vec![Step::Permanent]).pipeline
}

/// A row of a Debezium change event, as the JSON tests decode it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Product {
    product_id: String,
    price: String,
    stock: i32,
}

/// Debezium's envelope, the event of a JSON test topic.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct ProductChange {
    before: Option<Product>,
    after: Option<Product>,
    op: String,
}

impl kfn_sdk::Event for ProductChange {
    const NAME: &'static str = "kfn.test.ProductChange";
}

#[tokio::test]
async fn a_json_topic_decodes_debezium_events_with_or_without_schemas_and_rejects_others() {
    use super::invoke::{AttemptError, Invoke};
    use crate::config::TopicFormat;
    let seen: Arc<Mutex<Vec<ProductChange>>> = Arc::default();
    let recorded = seen.clone();
    let mut registry = kfn_sdk::Registry::default();
    registry.handler("prices", move |_ctx: Ctx, change: ProductChange| {
        recorded.lock().unwrap().push(change);
        async { Ok(Emit::none()) }
    });
    let handler = registry.topic_handlers("prices")[0].clone();
    // JSON records never reach the registry: its address is never contacted.
    let schemas = Arc::new(SchemaCache::new(RegistryClient::new("http://127.0.0.1:9", None).unwrap()));
    let call = HandlerCall::new(handler, schemas).with_format(TopicFormat::Json);
    let after = r#"{"product_id":"SKU-001","price":"21.50","stock":7}"#;
    let bare = format!(r#"{{"before":null,"after":{after},"op":"u","ts_ms":1}}"#);
    let wrapped = format!(r#"{{"schema":{{"type":"struct"}},"payload":{bare}}}"#);
    for value in [bare.as_bytes(), wrapped.as_bytes(), b"".as_slice()] {
        call.call(ctx(), value).await.unwrap_or_else(|e| panic!("{e:?}"));
    }
    let expected = ProductChange {
        before: None,
        after: Some(Product { product_id: "SKU-001".into(), price: "21.50".into(), stock: 7 }),
        op: "u".into(),
    };
    assert_eq!(*seen.lock().unwrap(), vec![expected.clone(), expected], "a tombstone calls no handler");
    // Not JSON (an Avro record on the wrong topic), and JSON of another shape: dead-lettered as undecodable.
    for (value, cause) in
        [(value(), "not JSON"), (br#"{"op": 5}"#.to_vec(), "cannot decode the JSON value as kfn.test.ProductChange")]
    {
        match call.call(ctx(), &value).await {
            Err(AttemptError::Final(FailureKind::Undecodable, message)) => {
                assert!(message.contains(cause), "{message}")
            }
            other => panic!("expected undecodable, got {other:?}"),
        }
    }
    assert_eq!(seen.lock().unwrap().len(), 2);
}
