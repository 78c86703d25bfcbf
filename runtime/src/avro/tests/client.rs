//! The registry client without a registry: URLs, error mapping, and a
//! registry that is down or never answers. The calls to a registry are tested
//! against kfn's own registry server on a real broker
//! (`tests/it/registry_client.rs`).

use std::time::Duration;

use backon::ExponentialBuilder;

use crate::avro::client::api_error;
use crate::avro::{value_subject, ApiErrorKind, BasicAuth, RegistryAccess, RegistryClient, RegistryError};

/// Nothing listens on port 9 (discard): connections are refused.
const NOBODY: &str = "http://127.0.0.1:9";

/// Retries fast enough for tests: 10 ms doubling to 50 ms.
fn fast(times: usize) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(10))
        .with_max_delay(Duration::from_millis(50))
        .with_max_times(times)
}

#[test]
fn topic_name_strategy() {
    assert_eq!(value_subject("orders.created"), "orders.created-value");
}

#[test]
fn rejects_unusable_urls() {
    for url in ["", "localhost:8081", "ftp://registry", "http://"] {
        let err = RegistryClient::new(url, None).unwrap_err();
        assert!(matches!(err, RegistryError::InvalidUrl { .. }), "{url}: {err}");
    }
    assert!(RegistryClient::new("https://registry:8081", None).is_ok(), "https trusts Mozilla's roots");
}

#[test]
fn an_unusable_ca_file_is_named() {
    let access = RegistryAccess { auth: None, ca_file: Some("/nonexistent/registry-ca.pem".into()) };
    let err = RegistryClient::with_access("https://registry:8081", access).unwrap_err();
    assert!(matches!(err, RegistryError::TlsSetup { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/registry-ca.pem"), "{err}");
}

#[test]
fn a_401_names_the_user_and_is_not_retried() {
    let refused = |username: Option<&str>| RegistryError::Unauthorized {
        method: "GET",
        url: "https://registry:8081/schemas/ids/1".into(),
        username: username.map(str::to_owned),
        error: api_error(401, br#"{"error_code":401,"message":"Unauthorized: wrong password for user \"orders\""}"#),
    };
    let err = refused(Some("orders"));
    assert!(err.to_string().contains("refused the password of user \"orders\""), "{err}");
    assert_eq!(err.kind(), Some(ApiErrorKind::Unauthorized));
    assert!(!err.is_transient());
    assert!(refused(None).to_string().contains("none are configured"), "{}", refused(None));
}

#[test]
fn basic_auth_is_not_printed() {
    assert!(!format!("{:?}", BasicAuth { username: "u".into(), password: "secret".into() }).contains("secret"));
    let auth = BasicAuth { username: "user".into(), password: "pass".into() };
    assert!(RegistryClient::new(NOBODY, Some(auth)).is_ok());
}

#[tokio::test]
async fn a_registry_that_stays_down_is_a_transient_error_after_the_last_retry() {
    let client = RegistryClient::new(NOBODY, None).unwrap().with_retry(fast(2));
    let err = client.schema_by_id(5).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err}");
    assert!(err.is_transient());
    assert_eq!(client.retries(), 2, "one call and two retries");
}

#[tokio::test]
async fn times_out_a_registry_that_does_not_answer() {
    // A bound socket nobody accepts on: the kernel completes the connection
    // and nothing ever answers (a registry stuck in a long pause).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = RegistryClient::new(&format!("http://{addr}"), None)
        .unwrap()
        .with_retry(fast(0))
        .with_timeout(Duration::from_millis(100));
    let err = client.schema_by_id(5).await.unwrap_err();
    assert!(matches!(err, RegistryError::Timeout { .. }), "{err}");
    assert!(err.is_transient());
    drop(listener);
}

#[tokio::test]
async fn a_success_answer_that_is_not_json_is_a_transient_error() {
    // A server on loopback that answers every request 200 with a body that is not the API's JSON.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut stream in listener.incoming().flatten() {
            let _ = stream.read(&mut [0u8; 4096]);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\n<html>hi</html>");
        }
    });
    let client = RegistryClient::new(&format!("http://{addr}"), None).unwrap().with_retry(fast(0));
    let err = client.schema_by_id(5).await.unwrap_err();
    assert!(matches!(err, RegistryError::Json { .. }), "{err}");
    assert!(err.is_transient(), "the record is not at fault: retry it, do not dead-letter it");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[test]
fn error_codes_are_mapped() {
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
        (500, Some(50001), ApiErrorKind::ServerError),
        (503, Some(50003), ApiErrorKind::ServerError),
    ];
    for (status, code, kind) in cases {
        let body = match code {
            Some(code) => serde_json::json!({ "error_code": code, "message": "the registry's words" }).to_string(),
            None => "<html>Unauthorized</html>".to_owned(),
        };
        let api = api_error(status, body.as_bytes());
        assert_eq!(api.kind(), kind, "{status} {code:?}");
        assert_eq!(api.status, status);
        assert_eq!(api.error_code, code.unwrap_or(i32::from(status)));
        let expected_message = if code.is_some() { "the registry's words" } else { "<html>Unauthorized</html>" };
        assert_eq!(api.message, expected_message);
        // Only the registry's own failures are worth a retry.
        let err = RegistryError::Api { method: "GET", url: "http://r/x".into(), error: api };
        assert_eq!(err.is_transient(), status >= 500, "{status}");
        if status >= 500 {
            assert!(err.to_string().contains("the registry's words"), "{err}");
        }
    }
}
