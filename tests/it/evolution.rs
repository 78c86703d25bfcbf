//! Schema evolution for real, against the real broker and kfn's registry
//! server on a free port: OrderCreated v2 (schemas/evolution/) is accepted
//! after v1 under BACKWARD, and running functions read both versions with
//! either type; incompatible changes are refused with 409 and reported by
//! `kfn check --registry`.
//!
//! Records with an unknown schema id or a wrong magic byte are dead-lettered
//! without a crash: tests/it/runtime.rs proves it
//! (`failures_are_dead_lettered_with_every_header_and_replay_once_fixed`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::str::FromStr;

use bytes::Bytes;
use kfn::avro::{
    register_topic_schema, value_subject, ApiErrorKind, CompatibilityLevel, OutputEncoder, RegistryClient,
};
use kfn::config::Config;
use kfn::kafka::producer::ProducerRecord;
use kfn::registry::{RegistryConfig, RegistryServer};
use kfn::schema_check::{check_registry, Verdict};
use kfn_functions::events::{OrderCreated, OrderItem};
use kfn_sdk::{Ctx, Emit, Event, Registry};
use kfn_tests::app::{now_ms, Recorder, TestApp};
use rust_decimal::Decimal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A schema file of the repository, e.g. `evolution/order_created_v2.avsc`.
fn schema_path(name: &str) -> PathBuf {
    kfn_tests::workspace_root().join("schemas").join(name)
}

fn schema_text(name: &str) -> String {
    std::fs::read_to_string(schema_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

const V1: &str = "order_created.avsc";
const V2: &str = "evolution/order_created_v2.avsc";
const NEW_FIELD_NO_DEFAULT: &str = "evolution/order_created_required_field.avsc";
const REMOVED_FIELD: &str = "evolution/order_created_removed_field.avsc";

/// OrderCreated as a v2 reader sees it: v1 plus the optional coupon code.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct OrderCreatedV2 {
    order_id: String,
    customer_id: String,
    items: Vec<OrderItem>,
    total_amount: Decimal,
    shipping_address: String,
    created_at: i64,
    #[serde(default)]
    coupon_code: Option<String>,
}

impl Event for OrderCreatedV2 {
    const NAME: &'static str = "com.tutorial.orders.OrderCreated";
}

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).expect("a decimal")
}

fn order(id: &str) -> OrderCreated {
    OrderCreated {
        order_id: id.to_string(),
        customer_id: format!("customer-of-{id}"),
        items: vec![
            OrderItem { product_id: "PROD-001".into(), quantity: 2, unit_price: dec("19.99") },
            OrderItem { product_id: "PROD-002".into(), quantity: 1, unit_price: dec("5.00") },
        ],
        total_amount: dec("44.98"),
        shipping_address: "1 Main Street".into(),
        created_at: 1_700_000_000_000,
    }
}

fn as_v2(order: &OrderCreated, coupon_code: Option<&str>) -> OrderCreatedV2 {
    OrderCreatedV2 {
        order_id: order.order_id.clone(),
        customer_id: order.customer_id.clone(),
        items: order.items.clone(),
        total_amount: order.total_amount,
        shipping_address: order.shipping_address.clone(),
        created_at: order.created_at,
        coupon_code: coupon_code.map(str::to_string),
    }
}

/// Two functions on one topic of OrderCreated: one reads with the v1 type of
/// the functions crate, one with the v2 test type.
const READERS: &str = r#"[topics."orders-{s}"]
partitions = 1
replication = 1
schema = "schemas/order_created.avsc"

[topics."dlq-v1-{s}"]
partitions = 1
replication = 1

[topics."dlq-v2-{s}"]
partitions = 1
replication = 1

[functions.v1-reader-{s}]
handler = "read_v1"
input = "orders-{s}"
dead_letter = "dlq-v1-{s}"

[functions.v2-reader-{s}]
handler = "read_v2"
input = "orders-{s}"
dead_letter = "dlq-v2-{s}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_is_accepted_after_v1_and_each_reader_reads_both_versions() {
    let (seen_v1, seen_v2) = (Recorder::<OrderCreated>::new(), Recorder::<OrderCreatedV2>::new());
    let mut handlers = Registry::default();
    let seen = seen_v1.clone();
    handlers.handler("read_v1", move |_ctx: Ctx, order: OrderCreated| {
        seen.push(order);
        async { Ok(Emit::none()) }
    });
    let seen = seen_v2.clone();
    handlers.handler("read_v2", move |_ctx: Ctx, order: OrderCreatedV2| {
        seen.push(order);
        async { Ok(Emit::none()) }
    });
    // The app registers v1 (the topic's schema file) under orders-<s>-value at start.
    let app = TestApp::start(READERS, handlers).await.expect("app starts");
    let topic = app.name("orders-{s}");
    let subject = value_subject(&topic);
    let client = app.app.schemas.client().clone();
    let v1_id = app.app.encoders[&topic].schema_id();
    assert_eq!(client.subject_config(&subject).await.expect("config"), CompatibilityLevel::Backward);

    // v2 adds an optional field with a default: BACKWARD accepts it as version 2.
    let (v2_id, v2_schema) = register_topic_schema(&client, &topic, &schema_text(V2)).await.expect("v2 is accepted");
    assert_ne!(v2_id, v1_id);
    let latest = client.latest(&subject).await.expect("latest");
    assert_eq!((latest.version, latest.id), (2, v2_id));

    // One record written with v1 (by the app's encoder), one with v2, framed with v2's id.
    let (old, new) = (order("written-by-v1"), order("written-by-v2"));
    let mut v2_value = Vec::new();
    OutputEncoder::new(topic.as_str(), v2_id, v2_schema)
        .encode(&as_v2(&new, Some("SPRING10")), &mut v2_value)
        .expect("encode v2");
    assert_eq!(&v2_value[1..5], &v2_id.to_be_bytes(), "framed with v2's id");
    let record =
        |key: &str, value: Bytes| ProducerRecord::new(Some(Bytes::from(key.to_string())), Some(value), now_ms());
    let records = vec![
        record(&old.order_id, app.encode(&topic, &old).expect("encode v1")),
        record(&new.order_id, Bytes::from(v2_value)),
    ];
    app.produce_records(&topic, 0, records).await.expect("produce");

    // Each handler decodes through the runtime's SchemaCache: the writer's schema, by the record's id.
    let v1_read = seen_v1.wait_until("both records read as v1", |e| e.len() >= 2).await.expect("v1 reader");
    assert_eq!(v1_read, [old.clone(), new.clone()], "the v1 reader skips coupon_code");
    let v2_read = seen_v2.wait_until("both records read as v2", |e| e.len() >= 2).await.expect("v2 reader");
    assert_eq!(v2_read, [as_v2(&old, None), as_v2(&new, Some("SPRING10"))], "v1 records read with the default");
    for function in ["v1-reader-{s}", "v2-reader-{s}"] {
        let dead = format!("kfn_dead_letters_total{{function=\"{}\",reason=\"undecodable\"}}", app.name(function));
        assert_eq!(app.metric(&dead), 0.0, "{dead}");
    }
    app.stop().await;
}

/// kfn's registry on a free port, storing into a topic of its own.
async fn start_registry() -> RegistryServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let config = RegistryConfig { topic: kfn_tests::unique("_schemas-evolution"), ..RegistryConfig::default() };
    RegistryServer::start(kfn_tests::cluster(), listener, config).await.expect("registry starts")
}

/// One HTTP/1.1 exchange; returns the status and the body.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8(response).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
    (status, body.to_string())
}

/// Registering `schema` under `subject` is refused with HTTP 409 and error code 409.
async fn assert_refused(client: &RegistryClient, subject: &str, schema: &str) {
    let err = client.register(subject, schema).await.expect_err("an incompatible schema was registered");
    let api = err.api().unwrap_or_else(|| panic!("not an answer of the registry: {err}"));
    assert_eq!((api.status, api.error_code, err.kind()), (409, 409, Some(ApiErrorKind::Incompatible)), "{err}");
}

/// Runs the kfn CLI (the test replica wraps kfn::cli::main).
async fn kfn(args: &[&str]) -> (Output, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kfn-test-replica"))
        .args(args)
        .env("KFN_LOG", "warn")
        .output()
        .await
        .expect("run kfn");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned());
    (output, stdout, stderr)
}

/// functions.toml in a temporary folder, with topics only: (topic, schema file).
fn topics_config(registry: &str, topics: &[(&str, &Path)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = format!("[runtime]\nschema_registry = \"{registry}\"\n");
    for (topic, schema) in topics {
        text.push_str(&format!(
            "\n[topics.\"{topic}\"]\npartitions = 1\nreplication = 1\nschema = \"{}\"\n",
            schema.display()
        ));
    }
    let path = dir.path().join("functions.toml");
    std::fs::write(&path, text).expect("write functions.toml");
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incompatible_changes_are_refused_with_409_and_reported_by_kfn_check() {
    let server = start_registry().await;
    let url = format!("http://{}", server.local_addr());
    let client = RegistryClient::new(&url, None).expect("client");
    let [backward, forward, evolved, fresh] =
        ["ev-backward", "ev-forward", "ev-evolved", "ev-fresh"].map(kfn_tests::unique);
    for topic in [&backward, &forward, &evolved] {
        client.register(&value_subject(topic), &schema_text(V1)).await.expect("v1 registers");
    }
    let (status, body) = http(
        server.local_addr(),
        "PUT",
        &format!("/config/{}", value_subject(&forward)),
        r#"{"compatibility":"FORWARD"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // (a) BACKWARD: a new field without a default cannot be read from v1 records.
    assert_refused(&client, &value_subject(&backward), &schema_text(NEW_FIELD_NO_DEFAULT)).await;
    // ...while removing a field is fine in that direction.
    let removal = client.check_compatibility(&value_subject(&backward), &schema_text(REMOVED_FIELD)).await;
    assert!(removal.expect("check").is_compatible);
    // (b) FORWARD: v1 readers need the removed field; an optional new one they skip.
    assert_refused(&client, &value_subject(&forward), &schema_text(REMOVED_FIELD)).await;
    let optional = client.check_compatibility(&value_subject(&forward), &schema_text(V2)).await;
    assert!(optional.expect("check").is_compatible);

    let (_dir, config_path) = topics_config(
        &url,
        &[
            (&backward, &schema_path(NEW_FIELD_NO_DEFAULT)),
            (&forward, &schema_path(REMOVED_FIELD)),
            (&evolved, &schema_path(V2)),
            (&fresh, &schema_path(V1)),
        ],
    );

    // The library check: one verdict per topic, nothing registered.
    let config = Config::load_file_only(&config_path, &kfn_functions::registry()).expect("config");
    let report = check_registry(&config, &client).await;
    let verdict = |topic: &str| report.topics.iter().find(|t| t.topic == topic).expect("a verdict").verdict.clone();
    assert_eq!(verdict(&evolved), Verdict::Compatible);
    assert_eq!(verdict(&fresh), Verdict::NewSubject);
    for (topic, level, field) in [(&backward, "BACKWARD", "sales_channel"), (&forward, "FORWARD", "shipping_address")] {
        let Verdict::Incompatible { level: found, messages } = verdict(topic) else {
            panic!("{topic}: {:?}", verdict(topic));
        };
        assert_eq!(found.as_deref(), Some(level));
        assert!(messages.iter().any(|m| m.contains(field)), "{topic}: {messages:?}");
    }
    assert_eq!(client.latest(&value_subject(&evolved)).await.expect("latest").version, 1, "a check registers nothing");
    let unknown = client.latest(&value_subject(&fresh)).await.expect_err("still no subject");
    assert_eq!(unknown.kind(), Some(ApiErrorKind::SubjectNotFound));

    // The CLI: exit 1, every incompatible topic named with its subject, file, level and reasons.
    let config_arg = config_path.display().to_string();
    let (out, stdout, stderr) = kfn(&["check", "--config", &config_arg, "--registry", &url]).await;
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("2 error(s) against the schema registry"), "{stderr}");
    for (topic, file, level, field) in [
        (&backward, NEW_FIELD_NO_DEFAULT, "BACKWARD", "sales_channel"),
        (&forward, REMOVED_FIELD, "FORWARD", "shipping_address"),
    ] {
        let line =
            stderr.lines().find(|l| l.contains(&format!("topic {topic:?}"))).unwrap_or_else(|| panic!("{stderr}"));
        for part in [config_arg.as_str(), &value_subject(topic), file, &format!("under {level}"), field] {
            assert!(line.contains(part), "{line:?} lacks {part:?}");
        }
    }
    assert!(stdout.contains(&format!("topic {evolved:?} (subject {}-value", evolved)), "{stdout}");
    assert!(stdout.contains("new subject, nothing registered yet"), "{stdout}");

    // --online takes the registry of the file: the same verdict.
    let (out, _, stderr) = kfn(&["check", "--config", &config_arg, "--online"]).await;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("2 error(s) against the schema registry"), "{stderr}");
    server.stop().await;
}

#[tokio::test]
async fn kfn_check_is_offline_unless_asked() {
    // Nothing listens on port 9 (discard): an online check would fail.
    let dead = "http://127.0.0.1:9";
    let (first, second) = (kfn_tests::unique("ev-offline"), kfn_tests::unique("ev-offline"));
    let (_dir, config_path) = topics_config(dead, &[(&first, &schema_path(V1)), (&second, &schema_path(V2))]);
    let config_arg = config_path.display().to_string();
    let (out, stdout, stderr) = kfn(&["check", "--config", &config_arg]).await;
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(": ok (2 topics, 0 functions"), "{stdout}");
    assert!(!stdout.contains("schema registry"), "{stdout}");

    // Asked, it fails on the first topic and does not wait for the registry again for the second.
    let (out, stdout, stderr) = kfn(&["check", "--config", &config_arg, "--online"]).await;
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("topic {first:?}")) && stderr.contains("cannot ask the schema registry"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("not asked, as the registry cannot be reached: {second}")), "{stderr}");
}

/// A copy of the shipped functions.toml, schemas/ (with evolution/) and docs/openapi.json in a temporary folder.
fn shipped_copy(replace: (&str, &str)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = kfn_tests::workspace_root();
    for sub in ["schemas", "schemas/evolution"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        for entry in std::fs::read_dir(root.join(sub)).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_file() {
                std::fs::copy(&path, dir.path().join(sub).join(path.file_name().expect("name"))).expect("copy");
            }
        }
    }
    std::fs::create_dir_all(dir.path().join("docs")).expect("mkdir");
    std::fs::copy(root.join("docs/openapi.json"), dir.path().join("docs/openapi.json"))
        .expect("copy docs/openapi.json");
    let text = std::fs::read_to_string(root.join("functions.toml")).expect("functions.toml");
    assert!(text.contains(replace.0), "the shipped functions.toml no longer contains {:?}", replace.0);
    let path = dir.path().join("functions.toml");
    std::fs::write(&path, text.replacen(replace.0, replace.1, 1)).expect("write");
    (dir, path)
}

#[tokio::test]
async fn kfn_check_reports_a_consumer_that_cannot_read_its_topic() {
    let from = "schema = \"schemas/order_created.avsc\"";
    // v2 on orders.created: validate_order (v1 type) skips the new field.
    let (_dir, evolved) = shipped_copy((from, "schema = \"schemas/evolution/order_created_v2.avsc\""));
    let (out, stdout, stderr) = kfn(&["check", "--config", &evolved.display().to_string()]).await;
    assert!(out.status.success(), "{stdout}\n{stderr}");

    // A removed field the handler's type needs: the graph check fails, offline.
    let (_dir, broken) = shipped_copy((from, "schema = \"schemas/evolution/order_created_removed_field.avsc\""));
    let (out, stdout, stderr) = kfn(&["check", "--config", &broken.display().to_string()]).await;
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    // One error per function reading orders.created: validation, track (its inputs[0]),
    // order_view (its inputs[0]), and the aggregates order_metrics and top_products.
    assert!(stderr.contains("5 error(s) in the function graph"), "{stderr}");
    let line = format!("{}: functions.validation.input: handler validate_order reads", broken.display());
    assert!(stderr.contains(&line), "{stderr}");
    assert!(stderr.contains("shipping_address") && stderr.contains("function order_api, output created"), "{stderr}");
}
