//! Spans over OTLP, read back from a real receiver (Jaeger v2): one order's
//! trace holds the span of POST /orders and of every function on the order's
//! path, each the parent of the next, as the `traceparent` headers say.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use kfn::trace::{TraceParent, TRACEPARENT};
use kfn_tests::jaeger::Jaeger;
use kfn_tests::order_system::{request, OrderSystem};

use crate::order_system::ONE_AT_A_TIME;

/// The spans of a paid, dispatched order, each the child of the one before:
/// (span name, the input topic of the invocation; None for the HTTP request).
const CHAIN: &[(&str, Option<&str>)] = &[
    ("POST /orders", None),
    ("validation", Some("orders.created")),
    ("payment", Some("orders.validated")),
    ("inventory", Some("payments.processed")),
    ("warehouse", Some("shipments.created")),
    ("notify", Some("shipments.dispatched")),
];

/// One span as Jaeger's query API gives it.
#[derive(Debug, Clone)]
struct Found {
    name: String,
    span_id: String,
    /// The CHILD_OF reference (Jaeger keeps a parent outside the trace as a reference too).
    parent: Option<String>,
    tags: HashMap<String, serde_json::Value>,
}

fn spans(trace: &serde_json::Value) -> Vec<Found> {
    let list = trace["spans"].as_array().cloned().unwrap_or_default();
    list.iter()
        .map(|s| Found {
            name: s["operationName"].as_str().unwrap_or_default().to_string(),
            span_id: s["spanID"].as_str().unwrap_or_default().to_string(),
            parent: s["references"].as_array().and_then(|refs| {
                refs.iter().find(|r| r["refType"] == "CHILD_OF").and_then(|r| r["spanID"].as_str()).map(str::to_string)
            }),
            tags: s["tags"]
                .as_array()
                .map(|tags| {
                    tags.iter().filter_map(|t| Some((t["key"].as_str()?.to_string(), t["value"].clone()))).collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

/// The span of `name` (on `topic`) whose parent is `parent` (any parent: None), if the trace has it.
///
/// Matched by parent too: a function may have failed spans on the same input
/// before the one that succeeded (payment's gateway is flaky: deferred attempts).
fn find<'s>(spans: &'s [Found], name: &str, topic: Option<&str>, parent: Option<&str>) -> Option<&'s Found> {
    spans.iter().find(|s| {
        s.name == name
            && topic.is_none_or(|t| s.tags.get("messaging.destination.name").and_then(|v| v.as_str()) == Some(t))
            && parent.is_none_or(|p| s.parent.as_deref() == Some(p))
    })
}

/// The spans of [`CHAIN`], each found as the child of the one before; None while one is missing.
fn chain(spans: &[Found]) -> Option<Vec<&Found>> {
    let mut found: Vec<&Found> = Vec::new();
    for (name, topic) in CHAIN {
        let parent = found.last().map(|p| p.span_id.as_str());
        found.push(find(spans, name, *topic, parent)?);
    }
    Some(found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_orders_spans_reach_jaeger_as_a_chain() {
    let jaeger = Jaeger::shared().await.expect("jaeger starts");
    let _turn = ONE_AT_A_TIME.lock().await;
    let binary = Path::new(env!("CARGO_BIN_EXE_kfn-test-replica"));
    let endpoint = jaeger.endpoint();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_SERVICE_NAME", "kfn-otlp-test"),
        // An hour between batches: the spans leave only by the flush of the SIGTERM path.
        ("OTEL_BSP_SCHEDULE_DELAY", "3600000"),
    ];
    let system = OrderSystem::start_with_env(binary, 1, &env).await.expect("the order system starts");
    let http = system.http[0];

    let incoming = TraceParent::root();
    let customer = kfn_tests::unique("otlp");
    let body = format!(
        r#"{{"customer_id":"{customer}","items":[{{"product_id":"SKU-001","quantity":1,"unit_price":"19.99"}}],"shipping_address":"1 Main St"}}"#
    );
    let header = incoming.to_header();
    let headers = [("Content-Type", "application/json"), (TRACEPARENT, header.as_str())];
    let (status, answer) = request(http, "POST", "/orders", &headers, body.as_bytes()).await.expect("POST /orders");
    assert_eq!(status, 202, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let order_id = answer["order_id"].as_str().expect("order_id").to_string();

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, status) = request(http, "GET", &format!("/orders/{order_id}"), &[], b"").await.expect("GET");
        if status.contains("\"status\":\"dispatched\"") {
            break;
        }
        assert!(!status.contains("\"status\":\"rejected\""), "order {order_id} was rejected: {status}");
        assert!(Instant::now() < deadline, "order {order_id} not dispatched within 120 s: {status}");
        // The status table has no change notification over HTTP: poll it.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Wait for notify's invocation on the dispatch (the last of the chain) to be written, known by
    // the parent id its output carries: that invocation's span id, derived from where it read.
    let ours = |r: &kfn::kafka::fetch::ConsumedRecord| {
        let value = r.headers.iter().find(|h| h.name == TRACEPARENT)?.value.clone()?;
        TraceParent::parse(std::str::from_utf8(&value).ok()?).filter(|t| t.trace_id == incoming.trace_id)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let notify_span = loop {
        let dispatched =
            kfn::invoker::replay::read_topic(system.cluster(), "shipments.dispatched").await.expect("read");
        let found = dispatched.iter().find_map(|(p, r)| Some((ours(r)?, *p, r.offset)));
        if let Some((hop, partition, offset)) = found {
            break hop.invocation("notify", "shipments.dispatched", partition, offset);
        }
        assert!(Instant::now() < deadline, "no shipments.dispatched record of order {order_id} within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    while !system.read("notifications.outbound").await.expect("read").iter().any(|r| ours(r) == Some(notify_span)) {
        assert!(Instant::now() < deadline, "notify did not write the dispatch of order {order_id} within 60 s");
        // Topics have no change notification here: poll.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let created = system.read("orders.created").await.expect("read orders.created");
    let request_hop = created
        .iter()
        .filter_map(|r| r.headers.iter().find(|h| h.name == TRACEPARENT)?.value.clone())
        .filter_map(|v| TraceParent::parse(std::str::from_utf8(&v).ok()?))
        .find(|t| t.trace_id == incoming.trace_id)
        .expect("the order's record carries the trace");

    // SIGTERM: the replica flushes its queued spans before it exits.
    system.stop().await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let spans = loop {
        let trace = jaeger.trace(incoming.trace_id).await.expect("the query API answers");
        let spans = trace.as_ref().map(spans).unwrap_or_default();
        if chain(&spans).is_some() {
            break spans;
        }
        let names: Vec<String> = spans
            .iter()
            .map(|s| {
                let tag = |k: &str| s.tags.get(k).map(|v| v.to_string()).unwrap_or_default();
                let (topic, outcome) = (tag("messaging.destination.name"), tag("kfn.outcome"));
                format!("{} {topic} {}<-{} {outcome}", s.name, s.span_id, s.parent.as_deref().unwrap_or("-"))
            })
            .collect();
        assert!(
            Instant::now() < deadline,
            "trace {:032x} in jaeger after 60 s has no chain {CHAIN:?}: (name topic span<-parent outcome) {names:#?}",
            incoming.trace_id
        );
        // Jaeger's store has no change notification: poll its query API.
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let chain = chain(&spans).unwrap();

    // POST /orders continues the caller's span, and is the span its event names as parent.
    let post = chain[0];
    assert_eq!(post.parent.as_deref(), Some(format!("{:016x}", incoming.parent_id).as_str()), "{post:?}");
    assert_eq!(post.span_id, format!("{:016x}", request_hop.parent_id), "{post:?}");
    assert_eq!(post.tags.get("http.response.status_code"), Some(&serde_json::json!(202)), "{post:?}");
    // Each function's span (found as the child of the span that produced its input) succeeded.
    for (span, (function, _)) in chain.iter().zip(CHAIN).skip(1) {
        assert_eq!(span.tags.get("kfn.outcome").and_then(|v| v.as_str()), Some("ok"), "{span:?}");
        assert_eq!(span.tags.get("kfn.function").and_then(|v| v.as_str()), Some(*function), "{span:?}");
        assert!(span.tags.contains_key("messaging.kafka.offset"), "{span:?}");
    }
}
