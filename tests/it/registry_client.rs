//! kfn's Schema Registry client and schema cache (`kfn::avro`) against kfn's
//! own registry server on the real broker: caching, retries while the
//! registry is down, error codes, and the codec end to end.
//!
//! "Answered from the cache" is proven by stopping the server first: a call
//! that still succeeds made no request.

use std::sync::Arc;
use std::time::Duration;

use backon::ExponentialBuilder;
use kfn::avro::{
    decode, framing, register_topic_schema, value_subject, ApiErrorKind, CodecError, CompatibilityLevel, FramingError,
    OutputEncoder, RegistryClient, RegistryError, SchemaCache, Version,
};
use kfn::registry::{RegistryConfig, RegistryServer};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PING: &str = r#"{"type":"record","name":"Ping","namespace":"kfn.test","fields":[{"name":"n","type":"int"}]}"#;
/// PING with a field that has no default: not BACKWARD compatible with it.
const PING_M: &str = r#"{"type":"record","name":"Ping","namespace":"kfn.test","fields":[{"name":"n","type":"int"},{"name":"m","type":"int"}]}"#;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ping {
    n: i32,
}

impl kfn_sdk::Event for Ping {
    const NAME: &'static str = "kfn.test.Ping";
}

/// A registry on a free port, storing into a topic of its own.
async fn start_registry() -> RegistryServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    serve(listener).await
}

async fn serve(listener: TcpListener) -> RegistryServer {
    let config = RegistryConfig { topic: kfn_tests::unique("_schemas-client"), ..RegistryConfig::default() };
    RegistryServer::start(kfn_tests::cluster(), listener, config).await.expect("registry starts")
}

fn url(server: &RegistryServer) -> String {
    format!("http://{}", server.local_addr())
}

/// Retries fast enough for tests: 10 ms doubling to 50 ms.
fn fast(times: usize) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(10))
        .with_max_delay(Duration::from_millis(50))
        .with_max_times(times)
}

fn client(server: &RegistryServer, retries: usize) -> RegistryClient {
    RegistryClient::new(&url(server), None).expect("client").with_retry(fast(retries))
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("JSON")
}

/// One `PUT` with a JSON body (the client has no call that sets levels).
async fn put(server: &RegistryServer, path: &str, body: &str) {
    let addr = server.local_addr();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
async fn schema_by_id_is_fetched_once() {
    let server = start_registry().await;
    let id = client(&server, 0).register(&kfn_tests::unique("pings-value"), PING).await.unwrap();
    let client = client(&server, 0);
    assert!(client.cached_schema(id).is_none());
    let first = client.schema_by_id(id).await.unwrap();
    assert_eq!((first.id, json(&first.schema), first.schema_type.as_str()), (id, json(PING), "AVRO"));
    assert!(client.cached_schema(id).is_some());
    server.stop().await;
    let second = client.schema_by_id(id).await.expect("the second lookup must come from the cache");
    assert!(Arc::ptr_eq(&first, &second));
}

#[tokio::test]
async fn concurrent_misses_of_one_id_fetch_it_once() {
    let server = start_registry().await;
    let id = client(&server, 0).register(&kfn_tests::unique("pings-value"), PING).await.unwrap();
    let client = client(&server, 0);
    let lookups: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.schema_by_id(id).await })
        })
        .collect();
    let mut found = Vec::new();
    for lookup in lookups {
        found.push(lookup.await.unwrap().unwrap());
    }
    // Each fetch makes a new Arc: one Arc for all eight means one fetch.
    assert!(found.iter().all(|s| Arc::ptr_eq(s, &found[0])), "one fetch shared by every lookup");
    server.stop().await;
}

#[tokio::test]
async fn register_posts_the_schema_and_caches_the_id() {
    let server = start_registry().await;
    let subject = kfn_tests::unique("pings-value");
    let client = client(&server, 0);
    // The server refuses other content types and bodies: success proves both.
    let id = client.register(&subject, PING).await.unwrap();
    let latest = client.latest(&subject).await.unwrap();
    assert_eq!((latest.id, latest.version, json(&latest.schema)), (id, 1, json(PING)));
    // Another subject is another registration.
    let other = kfn_tests::unique("other-value");
    client.register(&other, PING).await.unwrap();
    assert_eq!(client.latest(&other).await.unwrap().version, 1);
    server.stop().await;
    // The same schema with other whitespace is the same schema, answered from the cache.
    let spaced = PING.replace(',', ", ");
    assert_eq!(client.register(&subject, &spaced).await.expect("cached"), id);
    assert_eq!(client.register(&subject, PING).await.expect("cached"), id);
}

#[tokio::test]
async fn subject_versions_lookup_and_latest() {
    let server = start_registry().await;
    // A subject with a slash: the client must percent-encode it as one path segment.
    let subject = format!("{}/b", kfn_tests::unique("a"));
    let id = client(&server, 0).register(&subject, PING).await.unwrap();
    let client = client(&server, 0);
    let latest = client.latest(&subject).await.unwrap();
    assert_eq!((latest.id, latest.version, latest.schema_type.as_str()), (id, 1, "AVRO"));
    assert_eq!(client.subject_version(&subject, Version::Number(1)).await.unwrap(), latest);
    assert_eq!(client.lookup(&subject, PING).await.unwrap().id, id);
    server.stop().await;
    // Reading a version filled the id cache; registering what lookup found is answered from the cache.
    assert_eq!(json(&client.schema_by_id(id).await.expect("cached").schema), json(PING));
    assert_eq!(client.register(&subject, PING).await.expect("cached"), id);
}

#[tokio::test]
async fn compatibility_check_reports_messages() {
    let server = start_registry().await;
    let subject = kfn_tests::unique("pings-value");
    let client = client(&server, 0);
    client.register(&subject, PING).await.unwrap();
    let check = client.check_compatibility(&subject, PING_M).await.unwrap();
    assert!(!check.is_compatible);
    assert!(check.messages.iter().any(|m| m.contains("'m'") || m.contains("\"m\"")), "{:?}", check.messages);
    assert!(client.check_compatibility(&subject, PING).await.unwrap().is_compatible);
    server.stop().await;
}

#[tokio::test]
async fn subject_config_falls_back_to_the_global_level() {
    let server = start_registry().await;
    let client = client(&server, 0);
    let subject = kfn_tests::unique("pings-value");
    assert_eq!(client.subject_config(&subject).await.unwrap(), CompatibilityLevel::Backward);
    put(&server, "/config", r#"{"compatibility":"FULL_TRANSITIVE"}"#).await;
    assert_eq!(client.subject_config(&subject).await.unwrap(), CompatibilityLevel::FullTransitive);
    put(&server, &format!("/config/{subject}"), r#"{"compatibility":"NONE"}"#).await;
    assert_eq!(client.subject_config(&subject).await.unwrap(), CompatibilityLevel::None);
    server.stop().await;
}

#[tokio::test]
async fn base_url_path_is_kept() {
    let server = start_registry().await;
    let id = client(&server, 0).register(&kfn_tests::unique("pings-value"), PING).await.unwrap();
    // A trailing slash is not a path.
    let slash = RegistryClient::new(&format!("{}/", url(&server)), None).unwrap();
    assert_eq!(slash.schema_by_id(id).await.unwrap().id, id);
    // Apicurio serves the API under a path: the client sends it (kfn's registry has none, hence 404).
    let prefixed =
        RegistryClient::new(&format!("{}/apis/ccompat/v7/", url(&server)), None).unwrap().with_retry(fast(0));
    let err = prefixed.schema_by_id(id).await.unwrap_err();
    assert_eq!(err.api().map(|a| a.status), Some(404), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn retries_until_a_late_registry_starts() {
    // Reserve a port, then free it: connections are refused until the server starts there.
    let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let client = RegistryClient::new(&format!("http://{addr}"), None).unwrap().with_retry(fast(1200));
    let subject = kfn_tests::unique("pings-value");
    let call = tokio::spawn({
        let (client, subject) = (client.clone(), subject.clone());
        async move { client.register(&subject, PING).await }
    });
    // Start the registry only once the client has seen it down twice.
    tokio::time::timeout(Duration::from_secs(10), async {
        while client.retries() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the client should retry while the registry is down");
    let server = serve(TcpListener::bind(addr).await.unwrap()).await;
    let id = call.await.unwrap().expect("registered once the registry is up");
    assert_eq!(client.latest(&subject).await.unwrap().id, id);
    server.stop().await;
}

#[tokio::test]
async fn client_errors_are_typed_and_not_retried() {
    let server = start_registry().await;
    let subject = kfn_tests::unique("pings-value");
    let setup = client(&server, 0);
    setup.register(&subject, PING).await.unwrap();
    let client = || client(&server, 5);
    let missing = kfn_tests::unique("missing-value");
    let cases: Vec<(RegistryError, RegistryClient, u16, i32, ApiErrorKind)> = vec![
        {
            let c = client();
            (c.latest(&missing).await.unwrap_err(), c, 404, 40401, ApiErrorKind::SubjectNotFound)
        },
        {
            let c = client();
            (
                c.subject_version(&subject, Version::Number(9)).await.unwrap_err(),
                c,
                404,
                40402,
                ApiErrorKind::VersionNotFound,
            )
        },
        {
            let c = client();
            (c.schema_by_id(i32::MAX as u32).await.unwrap_err(), c, 404, 40403, ApiErrorKind::SchemaNotFound)
        },
        {
            let c = client();
            (c.register(&subject, PING_M).await.unwrap_err(), c, 409, 409, ApiErrorKind::Incompatible)
        },
        {
            let c = client();
            (c.register(&subject, r#"{"type":"nope"}"#).await.unwrap_err(), c, 422, 42201, ApiErrorKind::InvalidSchema)
        },
        {
            let c = client();
            (
                c.subject_version(&subject, Version::Number(0)).await.unwrap_err(),
                c,
                422,
                42202,
                ApiErrorKind::InvalidVersion,
            )
        },
    ];
    for (err, c, status, code, kind) in cases {
        let api = err.api().unwrap_or_else(|| panic!("{err}"));
        assert_eq!((api.status, api.error_code, api.kind()), (status, code, kind), "{err}");
        assert!(!api.message.is_empty());
        assert!(!err.is_transient(), "{err}");
        assert_eq!(c.retries(), 0, "HTTP {status} must not be retried");
    }
    server.stop().await;
}

fn encoder(id: u32, schema: Arc<serde_avro_fast::Schema>) -> OutputEncoder {
    OutputEncoder::new("pings", id, schema)
}

fn cache(server: &RegistryServer) -> SchemaCache {
    SchemaCache::new(client(server, 1))
}

#[tokio::test]
async fn second_resolve_of_an_id_makes_no_request() {
    let server = start_registry().await;
    let (id, schema) = register_topic_schema(&client(&server, 0), &kfn_tests::unique("pings"), PING).await.unwrap();
    let cache = cache(&server);
    let mut value = Vec::new();
    encoder(id, schema).encode(&Ping { n: 7 }, &mut value).unwrap();
    assert!(cache.try_resolve(&value).unwrap().is_none(), "nothing cached yet");
    let first = cache.resolve(&value).await.unwrap();
    assert_eq!(first.schema_id, id);
    assert_eq!(first.decode::<Ping>().unwrap(), Ping { n: 7 });
    server.stop().await;
    for _ in 0..100 {
        cache.resolve(&value).await.expect("from the cache");
    }
    let cached = cache.try_resolve(&value).unwrap().expect("cached after the first resolve");
    assert!(Arc::ptr_eq(&first.schema, &cached.schema), "parsed once, shared");
}

#[tokio::test]
async fn the_erased_handler_decodes_with_the_resolved_writer_schema() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut registry = kfn_sdk::Registry::default();
    registry.handler("take", move |_ctx, ping: Ping| {
        let tx = tx.clone();
        async move {
            tx.send(ping).unwrap();
            Ok(kfn_sdk::Emit::none())
        }
    });
    let server = start_registry().await;
    let (id, schema) = register_topic_schema(&client(&server, 0), &kfn_tests::unique("pings"), PING).await.unwrap();
    let mut value = Vec::new();
    encoder(id, schema).encode(&Ping { n: 3 }, &mut value).unwrap();
    let writer = cache(&server).resolve(&value).await.unwrap();
    let handler = registry.topic_handler("take").unwrap();
    (handler.call)(kfn_sdk::Ctx::default(), writer.datum, &writer.schema).await.unwrap();
    assert_eq!(rx.recv().await.unwrap(), Ping { n: 3 });
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_schema_id_is_a_permanent_typed_error() {
    let server = start_registry().await;
    let cache = cache(&server);
    let mut value = Vec::new();
    let unknown = i32::MAX as u32 - 1;
    framing::write_header(unknown, &mut value);
    value.extend_from_slice(b"\x02");
    let err = cache.resolve(&value).await.unwrap_err();
    let CodecError::UnknownSchema { id, source } = &err else { panic!("{err}") };
    assert_eq!(*id, unknown);
    assert_eq!(source.kind(), Some(ApiErrorKind::SchemaNotFound));
    assert!(!err.is_transient(), "dead-letter it");
    assert_eq!(err.kind(), "unknown_schema");
    assert!(err.to_string().contains(&unknown.to_string()), "{err}");
    assert_eq!(cache.client().retries(), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_magic_byte_fails_without_a_request() {
    let server = start_registry().await;
    let cache = cache(&server);
    server.stop().await;
    // A request to the stopped server would be a registry error, not a framing one.
    let err = cache.resolve(b"\x01\x00\x00\x00\x0c\x02").await.unwrap_err();
    assert!(matches!(err, CodecError::Framing(FramingError::WrongMagicByte { byte: 1 })), "{err}");
    assert_eq!(err.kind(), "framing");
    assert_eq!(cache.client().retries(), 0);
}

#[tokio::test]
async fn register_topic_schema_uses_the_value_subject() {
    let server = start_registry().await;
    let topic = kfn_tests::unique("pings");
    let client = client(&server, 0);
    let (id, schema) = register_topic_schema(&client, &topic, PING).await.unwrap();
    assert_eq!(client.latest(&value_subject(&topic)).await.unwrap().id, id);
    let mut out = Vec::new();
    encoder(id, Arc::clone(&schema)).encode(&Ping { n: 5 }, &mut out).unwrap();
    assert_eq!(decode::<Ping>(id, &schema, &out[framing::HEADER_LEN..]).unwrap(), Ping { n: 5 });
    server.stop().await;
}

#[tokio::test]
async fn register_topic_schema_errors_name_the_topic() {
    let server = start_registry().await;
    let topic = kfn_tests::unique("pings");
    let client = client(&server, 0);
    register_topic_schema(&client, &topic, PING).await.unwrap();
    let err = register_topic_schema(&client, &topic, PING_M).await.unwrap_err();
    let CodecError::Register { topic: named, subject, source } = &err else { panic!("{err}") };
    assert_eq!((named.as_str(), subject.as_str()), (topic.as_str(), value_subject(&topic).as_str()));
    assert_eq!(source.kind(), Some(ApiErrorKind::Incompatible));
    assert!(err.to_string().contains(&topic) && err.to_string().contains("incompatible"), "{err}");
    server.stop().await;

    // A broken schema file fails before the registry is asked (it is stopped: asking would be a registry error).
    let err = register_topic_schema(&client, &topic, "{\"type\":\"record\"").await.unwrap_err();
    assert!(matches!(err, CodecError::InvalidSchema { .. }), "{err}");
}
