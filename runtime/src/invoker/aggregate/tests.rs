//! An aggregate's fold meets the same failures as a handler and ends the same way.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kfn_sdk::{FnError, InvokeError};

use super::*;
use crate::avro::{framing, RegistryClient};
use crate::config::RetryPolicy;
use crate::invoker::invoke::FailureKind;
use crate::metrics::Metrics;

/// A fold over (unused) values whose writer schema must come from an unreachable registry.
fn aggregate(policy: RetryPolicy, metrics: FunctionMetrics) -> Aggregate {
    let handler = AggregateHandler {
        input: "kfn.test.Item",
        state: "kfn.test.Total",
        fold: Arc::new(|_, _, _, _| Err(InvokeError::Handler(FnError::permanent("never reached")))),
        decode_row: Arc::new(|_, _| Err(InvokeError::Handler(FnError::permanent("never reached")))),
        rekey: Arc::new(|_, _, _, _| Err(InvokeError::Handler(FnError::permanent("never reached")))),
        key_function: false,
    };
    // Nothing listens on port 9: each lookup fails as unreachable, after no retry of the client's own.
    let client = RegistryClient::new("http://127.0.0.1:9", None)
        .expect("client")
        .with_retry(backon::ExponentialBuilder::default().with_max_times(0));
    let spec = AggregateSpec {
        table: "totals".into(),
        window: None,
        grace: Duration::ZERO,
        query_path: None,
        repartition: None,
    };
    Aggregate::new(handler, &spec, Arc::new(SchemaCache::new(client)), policy, metrics, Duration::from_secs(60))
}

#[tokio::test]
async fn a_registry_outage_is_retried_like_a_handlers_then_dead_lettered_as_retries_exhausted() {
    let policy = RetryPolicy {
        max_attempts: 3,
        backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
        multiplier: 2.0,
        jitter: false,
        topic: None,
    };
    let metrics = Metrics::new().function("agg");
    let aggregate = aggregate(policy, metrics.clone());
    let mut value = Vec::new();
    framing::write_header(99, &mut value);
    value.extend_from_slice(&[2, b'a']);
    let record = ConsumedRecord {
        offset: 5,
        timestamp_ms: 1,
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::from(value)),
        headers: vec![],
    };
    let tp = TopicPartition::new("items", 0);
    let state = PartitionState::new();
    let (results, _) = aggregate.fold_all(&Arc::from("agg"), &metrics, &tp, &state, &[record]).await;
    let failure = results.into_iter().next().expect("one result").map(|_| ()).expect_err("the registry is down");
    assert_eq!(
        (failure.kind, failure.attempts),
        (FailureKind::RetriesExhausted, 3),
        "a transient registry error is retried by policy, as for a handler: {failure:?}"
    );
    assert_eq!(metrics.retries.get(), 2);
}
