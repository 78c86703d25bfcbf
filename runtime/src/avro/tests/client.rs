//! The registry client against a canned Confluent-style HTTP server.

use std::sync::Arc;
use std::time::Duration;

use backon::ExponentialBuilder;
use tokio::net::TcpListener;

use super::fake_registry::{error_json, schema_json, FakeRegistry};
use crate::avro::{value_subject, ApiErrorKind, BasicAuth, CompatibilityLevel, RegistryClient, RegistryError, Version};

const PING: &str = r#"{"type":"record","name":"Ping","namespace":"kfn.test","fields":[{"name":"n","type":"int"}]}"#;

/// Retries fast enough for tests: 10 ms doubling to 50 ms.
fn fast(times: usize) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(10))
        .with_max_delay(Duration::from_millis(50))
        .with_max_times(times)
}

fn client(server: &FakeRegistry, retries: usize) -> RegistryClient {
    RegistryClient::new(&server.url(), None).unwrap().with_retry(fast(retries))
}

#[test]
fn topic_name_strategy() {
    assert_eq!(value_subject("orders.created"), "orders.created-value");
}

#[test]
fn rejects_unusable_urls() {
    for url in ["", "localhost:8081", "https://registry:8081", "ftp://registry", "http://"] {
        let err = RegistryClient::new(url, None).unwrap_err();
        assert!(matches!(err, RegistryError::InvalidUrl { .. }), "{url}: {err}");
    }
}

#[tokio::test]
async fn schema_by_id_is_fetched_once() {
    let server = FakeRegistry::start(|_, seen| {
        assert_eq!(seen.target, "/schemas/ids/7");
        (200, schema_json(PING))
    })
    .await;
    let client = client(&server, 0);
    assert!(client.cached_schema(7).is_none());
    let first = client.schema_by_id(7).await.unwrap();
    let second = client.schema_by_id(7).await.unwrap();
    assert_eq!(server.requests(), 1, "the second lookup must come from the cache");
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!((first.id, first.schema.as_str(), first.schema_type.as_str()), (7, PING, "AVRO"));
    assert!(client.cached_schema(7).is_some());
}

#[tokio::test]
async fn concurrent_misses_of_one_id_fetch_it_once() {
    let server = FakeRegistry::start(|_, _| (200, schema_json(PING))).await;
    let client = client(&server, 0);
    let lookups = (0..8).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.schema_by_id(3).await.map(|s| s.id) })
    });
    for lookup in lookups {
        assert_eq!(lookup.await.unwrap().unwrap(), 3);
    }
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn register_posts_the_schema_and_caches_the_id() {
    let server = FakeRegistry::start(|_, _| (200, r#"{"id":21}"#.to_owned())).await;
    let client = client(&server, 0);
    assert_eq!(client.register("pings-value", PING).await.unwrap(), 21);
    // The same schema with other whitespace is the same schema.
    let spaced = PING.replace(',', ", ");
    assert_eq!(client.register("pings-value", &spaced).await.unwrap(), 21);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].method.as_str(), seen[0].target.as_str()), ("POST", "/subjects/pings-value/versions"));
    assert_eq!(seen[0].content_type.as_deref(), Some("application/vnd.schemaregistry.v1+json"));
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body, serde_json::json!({ "schema": PING }));
    // Another subject is another registration.
    client.register("other-value", PING).await.unwrap();
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn subject_versions_lookup_and_latest() {
    let server = FakeRegistry::start(|_, seen| {
        let version = serde_json::json!({ "subject": "a/b", "id": 4, "version": 2, "schema": PING });
        match (seen.method.as_str(), seen.target.as_str()) {
            ("GET", "/subjects/a%2Fb/versions/latest" | "/subjects/a%2Fb/versions/2") => (200, version.to_string()),
            ("POST", "/subjects/a%2Fb") => (200, version.to_string()),
            _ => (404, error_json(40401, "Subject not found")),
        }
    })
    .await;
    let client = client(&server, 0);
    let latest = client.latest("a/b").await.unwrap();
    assert_eq!((latest.id, latest.version, latest.schema_type.as_str()), (4, 2, "AVRO"));
    assert_eq!(client.subject_version("a/b", Version::Number(2)).await.unwrap(), latest);
    assert_eq!(client.lookup("a/b", PING).await.unwrap().id, 4);
    // Reading a version fills the id cache: no request for id 4.
    let before = server.requests();
    assert_eq!(client.schema_by_id(4).await.unwrap().schema, PING);
    assert_eq!(server.requests(), before);
    // Registering what lookup found is answered from the cache.
    assert_eq!(client.register("a/b", PING).await.unwrap(), 4);
    assert_eq!(server.requests(), before);
}

#[tokio::test]
async fn compatibility_check_reports_messages() {
    let server = FakeRegistry::start(|_, seen| {
        assert_eq!(seen.target, "/compatibility/subjects/pings-value/versions/latest?verbose=true");
        (200, r#"{"is_compatible":false,"messages":["reader field 'm' has no default"]}"#.to_owned())
    })
    .await;
    let check = client(&server, 0).check_compatibility("pings-value", PING).await.unwrap();
    assert!(!check.is_compatible);
    assert_eq!(check.messages, ["reader field 'm' has no default"]);
}

#[tokio::test]
async fn subject_config_falls_back_to_the_global_level() {
    let server = FakeRegistry::start(|_, seen| match seen.target.as_str() {
        "/config/pings-value?defaultToGlobal=true" => (404, error_json(40408, "Subject does not have compatibility")),
        "/config" => (200, r#"{"compatibilityLevel":"FULL_TRANSITIVE"}"#.to_owned()),
        other => panic!("unexpected {other}"),
    })
    .await;
    assert_eq!(client(&server, 0).subject_config("pings-value").await.unwrap(), CompatibilityLevel::FullTransitive);
    assert_eq!(server.requests(), 2);

    let server = FakeRegistry::start(|_, _| (200, r#"{"compatibility":"BACKWARD"}"#.to_owned())).await;
    assert_eq!(client(&server, 0).subject_config("x").await.unwrap(), CompatibilityLevel::Backward);
}

#[tokio::test]
async fn sends_basic_auth_when_given() {
    let server = FakeRegistry::start(|_, _| (200, schema_json(PING))).await;
    let auth = BasicAuth { username: "user".into(), password: "pass".into() };
    let client = RegistryClient::new(&server.url(), Some(auth)).unwrap();
    client.schema_by_id(1).await.unwrap();
    assert_eq!(server.seen()[0].authorization.as_deref(), Some("Basic dXNlcjpwYXNz"));
    assert!(!format!("{:?}", BasicAuth { username: "u".into(), password: "secret".into() }).contains("secret"));
}

#[tokio::test]
async fn base_url_path_prefix_is_kept() {
    // Apicurio serves the Confluent API under a path.
    let server = FakeRegistry::start(|_, seen| {
        assert_eq!(seen.target, "/apis/ccompat/v7/schemas/ids/1");
        (200, schema_json(PING))
    })
    .await;
    let client = RegistryClient::new(&format!("{}/apis/ccompat/v7/", server.url()), None).unwrap();
    client.schema_by_id(1).await.unwrap();
}

#[tokio::test]
async fn retries_while_the_registry_answers_5xx() {
    let server = FakeRegistry::start(|n, _| {
        if n < 2 {
            (503, error_json(50003, "Error while forwarding the request to the leader"))
        } else {
            (200, schema_json(PING))
        }
    })
    .await;
    let client = client(&server, 5);
    assert_eq!(client.schema_by_id(9).await.unwrap().schema, PING);
    assert_eq!(server.requests(), 3);
    assert_eq!(client.retries(), 2);
}

#[tokio::test]
async fn gives_up_after_the_last_retry_with_the_server_error() {
    let server = FakeRegistry::start(|_, _| (500, error_json(50001, "Error in the backend data store"))).await;
    let client = client(&server, 2);
    let err = client.schema_by_id(9).await.unwrap_err();
    assert_eq!(server.requests(), 3, "one call and two retries");
    assert!(err.is_transient());
    let api = err.api().unwrap();
    assert_eq!((api.status, api.error_code, api.kind()), (500, 50001, ApiErrorKind::ServerError));
    assert!(err.to_string().contains("Error in the backend data store"), "{err}");
}

#[tokio::test]
async fn retries_until_a_late_registry_starts() {
    // Reserve a port, then free it: connections are refused until the server starts there.
    let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let client = RegistryClient::new(&format!("http://{addr}"), None).unwrap().with_retry(fast(200));
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.schema_by_id(5).await }
    });
    // Start the registry only once the client has seen it down twice.
    tokio::time::timeout(Duration::from_secs(10), async {
        while client.retries() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the client should retry while the registry is down");
    let server = FakeRegistry::serve(TcpListener::bind(addr).await.unwrap(), Arc::new(|_, _| (200, schema_json(PING))));
    let found = call.await.unwrap().unwrap();
    assert_eq!(found.schema, PING);
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn a_registry_that_stays_down_is_a_transient_error() {
    let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let client = RegistryClient::new(&format!("http://{addr}"), None).unwrap().with_retry(fast(1));
    let err = client.schema_by_id(5).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err}");
    assert!(err.is_transient());
    assert_eq!(client.retries(), 1);
}

#[tokio::test]
async fn times_out_a_registry_that_does_not_answer() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let client = RegistryClient::new(&format!("http://{addr}"), None)
        .unwrap()
        .with_retry(fast(0))
        .with_timeout(Duration::from_millis(100));
    let err = client.schema_by_id(5).await.unwrap_err();
    assert!(matches!(err, RegistryError::Timeout { .. }), "{err}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    for (status, code) in [(404, 40403), (422, 42201), (409, 409), (401, 401), (400, 400)] {
        let server = FakeRegistry::start(move |_, _| (status, error_json(code, "no"))).await;
        let err = client(&server, 5).schema_by_id(1).await.unwrap_err();
        assert_eq!(server.requests(), 1, "HTTP {status} must not be retried");
        assert!(!err.is_transient());
    }
}

#[tokio::test]
async fn error_codes_are_mapped() {
    let cases = [
        (404, Some(40401), ApiErrorKind::SubjectNotFound),
        (404, Some(40402), ApiErrorKind::VersionNotFound),
        (404, Some(40403), ApiErrorKind::SchemaNotFound),
        (404, Some(40408), ApiErrorKind::SubjectCompatibilityNotConfigured),
        (409, Some(409), ApiErrorKind::Incompatible),
        (422, Some(42201), ApiErrorKind::InvalidSchema),
        (422, Some(42202), ApiErrorKind::InvalidVersion),
        (401, None, ApiErrorKind::Unauthorized),
        (403, Some(40301), ApiErrorKind::Unauthorized),
        (404, Some(40499), ApiErrorKind::Other),
    ];
    for (status, code, kind) in cases {
        let body = match code {
            Some(code) => error_json(code, "the registry's words"),
            None => "<html>Unauthorized</html>".to_owned(),
        };
        let server = FakeRegistry::start(move |_, _| (status, body.clone())).await;
        let err = client(&server, 0).latest("s").await.unwrap_err();
        let api = err.api().unwrap_or_else(|| panic!("{err}"));
        assert_eq!(api.kind(), kind, "{status} {code:?}");
        assert_eq!(api.status, status);
        assert_eq!(api.error_code, code.unwrap_or(i32::from(status)));
        let expected_message = if code.is_some() { "the registry's words" } else { "<html>Unauthorized</html>" };
        assert_eq!(api.message, expected_message);
    }
}

#[tokio::test]
async fn a_success_answer_that_is_not_json_is_an_error() {
    let server = FakeRegistry::start(|_, _| (200, "OK".to_owned())).await;
    let err = client(&server, 3).schema_by_id(1).await.unwrap_err();
    assert!(matches!(err, RegistryError::Json { .. }), "{err}");
    assert_eq!(server.requests(), 1);
}
