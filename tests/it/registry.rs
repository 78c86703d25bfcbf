//! kfn's schema registry server against the real broker: the Confluent REST
//! API over HTTP, its error codes, restarts and two instances on one topic,
//! and confluent-kafka's Python client and Avro serde used unchanged.

use std::net::SocketAddr;
use std::time::Duration;

use kfn::registry::{RegistryConfig, RegistryServer};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A registry on a free port, storing into `topic`.
async fn start(topic: &str) -> RegistryServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let config = RegistryConfig { topic: topic.to_string(), ..RegistryConfig::default() };
    RegistryServer::start(kfn_tests::cluster(), listener, config).await.expect("registry starts")
}

/// A status and body of one HTTP exchange.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Asserts a Confluent error answer.
    fn assert_error(&self, status: u16, code: u64) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.json()["error_code"], code, "{}", self.body);
        assert!(self.json()["message"].is_string(), "{}", self.body);
    }
}

/// One HTTP/1.1 request on its own connection (no client library: the
/// server must work for the simplest client too).
async fn raw(addr: SocketAddr, method: &str, path: &str, body: Option<&str>, content_type: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/vnd.schemaregistry.v1+json\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8(response).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
    assert!(
        head.to_ascii_lowercase().contains("content-type: application/vnd.schemaregistry.v1+json"),
        "content type: {head}"
    );
    Reply { status, body: body.to_string() }
}

async fn call(server: &RegistryServer, method: &str, path: &str, body: Option<Value>) -> Reply {
    let body = body.map(|b| b.to_string());
    raw(server.local_addr(), method, path, body.as_deref(), "application/vnd.schemaregistry.v1+json").await
}

fn record(name: &str, fields: Value) -> String {
    json!({"type": "record", "name": name, "namespace": "kfn.test", "fields": fields}).to_string()
}

fn order_v1() -> String {
    record("Order", json!([{"name": "id", "type": "string"}, {"name": "qty", "type": "int"}]))
}

fn order_v2() -> String {
    record(
        "Order",
        json!([
            {"name": "id", "type": "string"},
            {"name": "qty", "type": "int"},
            {"name": "note", "type": ["null", "string"], "default": null}
        ]),
    )
}

async fn register(server: &RegistryServer, subject: &str, schema: &str) -> Reply {
    call(server, "POST", &format!("/subjects/{subject}/versions"), Some(json!({ "schema": schema }))).await
}

async fn register_id(server: &RegistryServer, subject: &str, schema: &str) -> i64 {
    let reply = register(server, subject, schema).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["id"].as_i64().expect("an id")
}

fn same_schema(text: &str, expected: &str) -> bool {
    serde_json::from_str::<Value>(text).ok() == serde_json::from_str::<Value>(expected).ok()
}

#[tokio::test]
async fn register_lookup_versions_and_ids() {
    let server = start(&kfn_tests::unique("_schemas")).await;
    let (s, t) = (kfn_tests::unique("orders-value"), kfn_tests::unique("audit-value"));
    let id1 = register_id(&server, &s, &order_v1()).await;
    assert_eq!(register_id(&server, &s, &order_v1()).await, id1, "an identical schema keeps its id");
    assert_eq!(register_id(&server, &t, &order_v1()).await, id1, "one schema under two subjects shares one id");
    let id2 = register_id(&server, &s, &order_v2()).await;
    assert_ne!(id1, id2);

    let subjects = call(&server, "GET", "/subjects", None).await.json();
    let subjects: Vec<&str> = subjects.as_array().expect("a list").iter().filter_map(Value::as_str).collect();
    assert!(subjects.contains(&s.as_str()) && subjects.contains(&t.as_str()), "{subjects:?}");
    assert_eq!(call(&server, "GET", &format!("/subjects/{s}/versions"), None).await.json(), json!([1, 2]));

    let latest = call(&server, "GET", &format!("/subjects/{s}/versions/latest"), None).await.json();
    assert_eq!(
        (latest["subject"].as_str(), latest["version"].as_i64(), latest["id"].as_i64()),
        (Some(s.as_str()), Some(2), Some(id2))
    );
    assert!(same_schema(latest["schema"].as_str().expect("schema"), &order_v2()));
    let first = call(&server, "GET", &format!("/subjects/{s}/versions/1/schema"), None).await;
    assert!(same_schema(&first.body, &order_v1()), "{}", first.body);

    let found = call(&server, "POST", &format!("/subjects/{s}"), Some(json!({"schema": order_v1()}))).await.json();
    assert_eq!((found["version"].as_i64(), found["id"].as_i64()), (Some(1), Some(id1)));
    let other = record("Other", json!([{"name": "x", "type": "int"}]));
    call(&server, "POST", &format!("/subjects/{s}"), Some(json!({"schema": other}))).await.assert_error(404, 40403);

    let by_id = call(&server, "GET", &format!("/schemas/ids/{id1}"), None).await.json();
    assert!(same_schema(by_id["schema"].as_str().expect("schema"), &order_v1()));
    let uses = call(&server, "GET", &format!("/schemas/ids/{id1}/versions"), None).await.json();
    let mut uses: Vec<(String, i64)> = uses
        .as_array()
        .expect("a list")
        .iter()
        .map(|u| (u["subject"].as_str().unwrap_or_default().to_string(), u["version"].as_i64().unwrap_or_default()))
        .collect();
    uses.sort();
    let mut expected = vec![(s.clone(), 1), (t.clone(), 1)];
    expected.sort();
    assert_eq!(uses, expected);
    assert_eq!(call(&server, "GET", "/schemas/types", None).await.json(), json!(["AVRO"]));
    server.stop().await;
}

#[tokio::test]
async fn soft_and_permanent_deletes() {
    let server = start(&kfn_tests::unique("_schemas")).await;
    let s = kfn_tests::unique("deletes-value");
    let id1 = register_id(&server, &s, &order_v1()).await;
    let id2 = register_id(&server, &s, &order_v2()).await;
    let path = |rest: &str| format!("/subjects/{s}{rest}");

    call(&server, "DELETE", &path("/versions/1?permanent=true"), None).await.assert_error(404, 40407);
    assert_eq!(call(&server, "DELETE", &path("/versions/1"), None).await.json(), json!(1));
    assert_eq!(call(&server, "GET", &path("/versions"), None).await.json(), json!([2]));
    assert_eq!(call(&server, "GET", &path("/versions?deleted=true"), None).await.json(), json!([1, 2]));
    call(&server, "GET", &path("/versions/1"), None).await.assert_error(404, 40402);
    assert_eq!(
        call(&server, "GET", &format!("/schemas/ids/{id1}"), None).await.status,
        200,
        "soft-deleted ids stay readable"
    );
    call(&server, "DELETE", &path("/versions/1"), None).await.assert_error(404, 40406);
    assert_eq!(call(&server, "DELETE", &path("/versions/1?permanent=true"), None).await.json(), json!(1));
    call(&server, "GET", &format!("/schemas/ids/{id1}"), None).await.assert_error(404, 40403);

    call(&server, "DELETE", &path("?permanent=true"), None).await.assert_error(404, 40405);
    assert_eq!(call(&server, "DELETE", &path(""), None).await.json(), json!([2]));
    call(&server, "GET", &path("/versions"), None).await.assert_error(404, 40401);
    call(&server, "DELETE", &path(""), None).await.assert_error(404, 40404);
    assert_eq!(call(&server, "DELETE", &path("?permanent=true"), None).await.json(), json!([2]));
    call(&server, "GET", &format!("/schemas/ids/{id2}"), None).await.assert_error(404, 40403);
    call(&server, "DELETE", &path(""), None).await.assert_error(404, 40401);
    server.stop().await;
}

async fn is_compatible(server: &RegistryServer, subject: &str, version: &str, schema: &str, verbose: bool) -> Value {
    let path = format!("/compatibility/subjects/{subject}/versions/{version}?verbose={verbose}");
    call(server, "POST", &path, Some(json!({ "schema": schema }))).await.json()
}

#[tokio::test]
async fn compatibility_levels_and_config() {
    let server = start(&kfn_tests::unique("_schemas")).await;
    let (b, f) = (kfn_tests::unique("backward-value"), kfn_tests::unique("forward-value"));
    assert_eq!(call(&server, "GET", "/config", None).await.json(), json!({"compatibilityLevel": "BACKWARD"}));
    call(&server, "PUT", "/config", Some(json!({"compatibility": "SIDEWAYS"}))).await.assert_error(422, 42203);
    call(&server, "GET", &format!("/config/{f}"), None).await.assert_error(404, 40408);
    let global = call(&server, "GET", &format!("/config/{f}?defaultToGlobal=true"), None).await.json();
    assert_eq!(global, json!({"compatibilityLevel": "BACKWARD"}));
    let set = call(&server, "PUT", &format!("/config/{f}"), Some(json!({"compatibility": "forward"}))).await.json();
    assert_eq!(set, json!({"compatibility": "FORWARD"}));
    assert_eq!(
        call(&server, "GET", &format!("/config/{f}"), None).await.json(),
        json!({"compatibilityLevel": "FORWARD"})
    );

    // BACKWARD (the default): a new field without a default cannot read old data.
    let with_customer = record(
        "Order",
        json!([{"name": "id", "type": "string"}, {"name": "qty", "type": "int"}, {"name": "customer", "type": "string"}]),
    );
    register_id(&server, &b, &order_v1()).await;
    register(&server, &b, &with_customer).await.assert_error(409, 409);
    assert_eq!(is_compatible(&server, &b, "latest", &with_customer, false).await, json!({"is_compatible": false}));
    let verbose = is_compatible(&server, &b, "1", &with_customer, true).await;
    assert_eq!(verbose["is_compatible"], false);
    assert!(verbose["messages"].as_array().is_some_and(|m| !m.is_empty()), "{verbose}");
    assert_eq!(is_compatible(&server, &b, "latest", &order_v2(), false).await, json!({"is_compatible": true}));

    // FORWARD: removing a field without a default breaks old readers; adding one does not.
    let id_only = record("Order", json!([{"name": "id", "type": "string"}]));
    register_id(&server, &f, &order_v1()).await;
    register(&server, &f, &id_only).await.assert_error(409, 409);
    register_id(&server, &f, &with_customer).await;

    // FULL globally: B inherits it, F keeps its own level until it is deleted.
    assert_eq!(
        call(&server, "PUT", "/config", Some(json!({"compatibility": "FULL"}))).await.json(),
        json!({"compatibility": "FULL"})
    );
    let removed = call(&server, "DELETE", &format!("/config/{f}"), None).await.json();
    assert_eq!(removed, json!({"compatibilityLevel": "FORWARD"}));
    call(&server, "GET", &format!("/config/{f}"), None).await.assert_error(404, 40408);
    let qty_long = record("Order", json!([{"name": "id", "type": "string"}, {"name": "qty", "type": "long"}]));
    register(&server, &b, &qty_long).await.assert_error(409, 409);
    server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_confluent_errors_never_a_500() {
    let server = start(&kfn_tests::unique("_schemas")).await;
    let s = kfn_tests::unique("errors-value");
    register_id(&server, &s, &order_v1()).await;
    let addr = server.local_addr();
    let json_type = "application/vnd.schemaregistry.v1+json";
    let versions = format!("/subjects/{s}/versions");

    raw(addr, "POST", &versions, Some("{\"schema\": "), json_type).await.assert_error(400, 400);
    raw(addr, "POST", &versions, Some("[]"), "application/json").await.assert_error(400, 400);
    raw(addr, "POST", &versions, Some("{\"schema\": 5}"), json_type).await.assert_error(400, 400);
    raw(addr, "POST", &versions, Some("{}"), json_type).await.assert_error(422, 42201);
    let invalid = json!({"schema": "{\"type\": \"record\", \"name\": \"x\"}"}).to_string();
    raw(addr, "POST", &versions, Some(&invalid), json_type).await.assert_error(422, 42201);
    let protobuf = json!({"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"}).to_string();
    raw(addr, "POST", &versions, Some(&protobuf), json_type).await.assert_error(422, 42201);
    raw(addr, "POST", &versions, Some(&invalid), "text/plain").await.assert_error(415, 415);
    let huge = json!({ "schema": "x".repeat(2 << 20) }).to_string();
    raw(addr, "POST", &versions, Some(&huge), json_type).await.assert_error(413, 413);

    call(&server, "GET", "/subjects/no-such-subject/versions", None).await.assert_error(404, 40401);
    call(&server, "GET", "/subjects/no-such-subject/versions/latest", None).await.assert_error(404, 40401);
    call(&server, "GET", &format!("{versions}/7"), None).await.assert_error(404, 40402);
    call(&server, "GET", &format!("{versions}/zero"), None).await.assert_error(422, 42202);
    call(&server, "GET", &format!("{versions}/0"), None).await.assert_error(422, 42202);
    call(&server, "GET", "/schemas/ids/987654", None).await.assert_error(404, 40403);
    call(&server, "GET", "/schemas/ids/abc", None).await.assert_error(404, 40403);
    call(
        &server,
        "POST",
        "/compatibility/subjects/no-such-subject/versions/latest",
        Some(json!({"schema": order_v1()})),
    )
    .await
    .assert_error(404, 40401);
    call(&server, "GET", "/no/such/route", None).await.assert_error(404, 404);
    call(&server, "PATCH", "/subjects", None).await.assert_error(405, 405);
    server.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_subjects_versions_ids_and_levels() {
    let topic = kfn_tests::unique("_schemas");
    let s = kfn_tests::unique("restart-value");
    let first = start(&topic).await;
    let id1 = register_id(&first, &s, &order_v1()).await;
    let id2 = register_id(&first, &s, &order_v2()).await;
    call(&first, "PUT", &format!("/config/{s}"), Some(json!({"compatibility": "NONE"}))).await;
    call(&first, "DELETE", &format!("/subjects/{s}/versions/1"), None).await;
    first.stop().await;

    let second = start(&topic).await;
    assert_eq!(call(&second, "GET", &format!("/subjects/{s}/versions"), None).await.json(), json!([2]));
    assert_eq!(call(&second, "GET", &format!("/subjects/{s}/versions?deleted=true"), None).await.json(), json!([1, 2]));
    let latest = call(&second, "GET", &format!("/subjects/{s}/versions/latest"), None).await.json();
    assert_eq!(latest["id"].as_i64(), Some(id2));
    let by_id = call(&second, "GET", &format!("/schemas/ids/{id1}"), None).await.json();
    assert!(same_schema(by_id["schema"].as_str().expect("schema"), &order_v1()));
    assert_eq!(call(&second, "GET", &format!("/config/{s}"), None).await.json(), json!({"compatibilityLevel": "NONE"}));
    assert_eq!(register_id(&second, &s, &order_v2()).await, id2, "still registered after the restart");
    let id3 = register_id(&second, &s, &record("Unrelated", json!([{"name": "z", "type": "long"}]))).await;
    assert!(id3 > id2, "ids continue after the restart: {id3} after {id2}");
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_topic_agree_on_ids() {
    let topic = kfn_tests::unique("_schemas");
    let (a, b) = (start(&topic).await, start(&topic).await);
    let (s, t) = (kfn_tests::unique("shared-value"), kfn_tests::unique("other-value"));

    let id1 = register_id(&a, &s, &order_v1()).await;
    assert_eq!(register_id(&b, &t, &order_v1()).await, id1, "b knows a's schema and reuses its id");
    assert_eq!(register_id(&b, &s, &order_v1()).await, id1, "b sees the version a registered");
    let id2 = register_id(&b, &s, &order_v2()).await;
    assert_ne!(id1, id2);
    for server in [&a, &b] {
        assert_eq!(call(server, "GET", &format!("/subjects/{s}/versions"), None).await.json(), json!([1, 2]));
        let latest = call(server, "GET", &format!("/subjects/{s}/versions/latest"), None).await.json();
        assert_eq!(latest["id"].as_i64(), Some(id2));
    }

    // Both instances register different schemas under one subject at once:
    // each answer must hold on both instances afterwards.
    let contended = kfn_tests::unique("contended-value");
    call(&a, "PUT", &format!("/config/{contended}"), Some(json!({"compatibility": "NONE"}))).await;
    let schemas: Vec<String> =
        (0..20).map(|i| record(&format!("Race{i}"), json!([{"name": "n", "type": "int"}]))).collect();
    let addrs = [a.local_addr(), b.local_addr()];
    let mut tasks = Vec::new();
    for (i, schema) in schemas.iter().enumerate() {
        let (addr, schema, path) = (addrs[i % 2], schema.clone(), format!("/subjects/{contended}/versions"));
        tasks.push(tokio::spawn(async move {
            let body = json!({ "schema": schema }).to_string();
            raw(addr, "POST", &path, Some(&body), "application/json").await
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        let reply = task.await.expect("join");
        assert_eq!(reply.status, 200, "{}", reply.body);
        ids.push(reply.json()["id"].as_i64().expect("id"));
    }
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), schemas.len(), "every schema got its own id: {ids:?}");
    for server in [&a, &b] {
        let versions = call(server, "GET", &format!("/subjects/{contended}/versions"), None).await.json();
        assert_eq!(versions, json!((1..=schemas.len()).collect::<Vec<_>>()));
        for (schema, id) in schemas.iter().zip(&ids) {
            let by_id = call(server, "GET", &format!("/schemas/ids/{id}"), None).await.json();
            assert!(same_schema(by_id["schema"].as_str().expect("schema"), schema), "id {id}: {by_id}");
        }
    }
    for version in 1..=schemas.len() {
        let path = format!("/subjects/{contended}/versions/{version}");
        assert_eq!(call(&a, "GET", &path, None).await.json(), call(&b, "GET", &path, None).await.json());
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn confluent_kafka_python_client_works_unchanged() {
    let server = start(&kfn_tests::unique("_schemas")).await;
    let url = format!("http://{}", server.local_addr());
    let topic = kfn_tests::unique("py-orders");
    let args = [url, topic.clone()];
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::task::spawn_blocking(move || kfn_tests::python::run("registry_roundtrip.py", &[&args[0], &args[1]])),
    )
    .await
    .expect("the python client finishes")
    .expect("join")
    .expect("python client");
    let seen: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let subject = format!("{topic}-value");

    let id = seen["framed_id"].as_i64().expect("id");
    assert_eq!(seen["magic"], 0);
    let decoded = &seen["decoded"];
    assert_eq!(
        (&decoded["order_id"], &decoded["quantity"], &decoded["note"]),
        (&json!("o-1"), &json!(3), &json!("fragile"))
    );
    // timestamp-millis 1_700_000_000_000 read back as a datetime.
    assert!(decoded["created_at"].as_str().is_some_and(|t| t.starts_with("2023-11-14 22:13:20")), "{seen}");
    assert_eq!(seen["schema_by_id"]["name"], "OrderCreated");
    assert_eq!(seen["schema_types"], json!(["AVRO"]));
    assert_eq!(seen["latest"], json!({"id": id, "version": 1, "subject": subject}));
    assert_eq!(seen["lookup"], json!({"id": id, "version": 1}));
    assert_eq!(seen["versions"], json!([1]));
    assert_eq!(seen["subjects_of_id"], json!([subject]));
    assert_eq!(seen["register_again"], id);
    assert_eq!(seen["compatibility"], "BACKWARD");
    assert_eq!(seen["incompatible_is_compatible"], false);
    assert_eq!((&seen["incompatible"]["status"], &seen["incompatible"]["code"]), (&json!(409), &json!(409)));
    assert_eq!((&seen["invalid"]["status"], &seen["invalid"]["code"]), (&json!(422), &json!(42201)));
    assert_eq!((&seen["unknown_id"]["status"], &seen["unknown_id"]["code"]), (&json!(404), &json!(40403)));
    assert_eq!((&seen["unknown_subject"]["status"], &seen["unknown_subject"]["code"]), (&json!(404), &json!(40401)));
    assert_eq!(seen["set_compatibility"], json!({"compatibility": "NONE"}));
    assert_eq!(seen["subject_compatibility"], "NONE");
    let after_none = seen["after_none"].as_i64().expect("an id once the subject's level is NONE");
    assert_ne!(after_none, id);

    // The schema the Python client registered is the one kfn serves by that id.
    let by_id = call(&server, "GET", &format!("/schemas/ids/{id}"), None).await.json();
    assert!(same_schema(by_id["schema"].as_str().expect("schema"), &seen["schema_by_id"].to_string()));
    server.stop().await;
}
