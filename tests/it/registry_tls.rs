//! kfn's schema registry over https with basic auth, on the real broker:
//! kfn's client with the right CA and password, with a wrong password, without
//! the CA and under a name the certificate does not hold; and confluent-kafka's
//! `SchemaRegistryClient` (Python) registering over https what kfn then reads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use backon::ExponentialBuilder;
use kfn::avro::{value_subject, BasicAuth, RegistryAccess, RegistryClient, RegistryError};
use kfn::registry::{RegistryConfig, RegistryServer, ServerTls, Users};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::{json, Value};
use tokio::net::TcpListener;

const USER: &str = "orders";
const PASSWORD: &str = "registry-test-secret";

/// PEM files of a CA and of a server certificate it signed for `localhost` only.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    tls: ServerTls,
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("key");
    (params.self_signed(&key).expect("self-signed"), key)
}

fn write(dir: &Path, name: &str, pem: String) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write PEM");
    path
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca_cert, ca_key) = ca("kfn registry test CA");
        let (other, _) = ca("kfn registry test CA that signed nothing");
        // `localhost` only: a client dialing 127.0.0.1 must fail the name check.
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, "kfn registry");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &ca_cert, &ca_key).expect("signed");
        let tls = ServerTls {
            cert_file: write(dir.path(), "registry.crt", cert.pem()),
            key_file: write(dir.path(), "registry.key", key.serialize_pem()),
        };
        let ca = write(dir.path(), "ca.pem", ca_cert.pem());
        let other_ca = write(dir.path(), "other-ca.pem", other.pem());
        Pki { _dir: dir, ca, other_ca, tls }
    }
}

/// A registry serving https with basic auth for [`USER`], on a free port.
async fn start(pki: &Pki) -> RegistryServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut users = Users::default();
    users.insert(USER, PASSWORD);
    let config = RegistryConfig {
        topic: kfn_tests::unique("_schemas-tls"),
        tls: Some(pki.tls.clone()),
        users: Some(users),
        ..RegistryConfig::default()
    };
    RegistryServer::start(kfn_tests::cluster(), listener, config).await.expect("registry starts")
}

fn url(server: &RegistryServer) -> String {
    format!("https://localhost:{}", server.local_addr().port())
}

/// A client that would retry a transient error: the errors below must not be.
fn client(url: &str, password: Option<&str>, ca_file: Option<&Path>) -> RegistryClient {
    let auth = password.map(|p| BasicAuth { username: USER.into(), password: p.into() });
    let access = RegistryAccess { auth, ca_file: ca_file.map(Path::to_path_buf) };
    let retry = ExponentialBuilder::new().with_min_delay(Duration::from_millis(10)).with_max_times(3);
    RegistryClient::with_access(url, access).expect("client").with_retry(retry)
}

fn schema(name: &str) -> String {
    json!({"type": "record", "name": name, "namespace": "kfn.test", "fields": [{"name": "n", "type": "int"}]})
        .to_string()
}

#[tokio::test]
async fn kfn_client_registers_and_fetches_over_https_with_basic_auth() {
    let pki = Pki::new();
    let server = start(&pki).await;
    assert_eq!(server.scheme(), "https");
    let registry = client(&url(&server), Some(PASSWORD), Some(&pki.ca));
    let subject = value_subject(&kfn_tests::unique("tls-pings"));
    let text = schema("Ping");
    let id = registry.register(&subject, &text).await.expect("register over https");
    // A second client has no cache: the schema comes over the wire again.
    let reader = client(&url(&server), Some(PASSWORD), Some(&pki.ca));
    let fetched = reader.schema_by_id(id).await.expect("fetch by id");
    assert_eq!(serde_json::from_str::<Value>(&fetched.schema).unwrap(), serde_json::from_str::<Value>(&text).unwrap());
    let latest = reader.latest(&subject).await.expect("latest");
    assert_eq!((latest.id, latest.version), (id, 1));
    assert_eq!(reader.retries(), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_password_or_none_is_a_401_naming_the_user_and_not_retried() {
    let pki = Pki::new();
    let server = start(&pki).await;

    let wrong = client(&url(&server), Some("not-the-password"), Some(&pki.ca));
    let err = wrong.schema_by_id(1).await.expect_err("a wrong password is refused");
    match &err {
        RegistryError::Unauthorized { username, error, .. } => {
            assert_eq!(username.as_deref(), Some(USER));
            assert_eq!((error.status, error.error_code), (401, 401));
            assert!(error.message.contains("wrong password for user \"orders\""), "{err}");
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("refused the password of user \"orders\""), "{text}");
    assert!(!text.contains("not-the-password"), "the password is never in a message: {text}");
    assert_eq!(wrong.retries(), 0, "a 401 is not retried");

    let anonymous = client(&url(&server), None, Some(&pki.ca));
    let err = anonymous.schema_by_id(1).await.expect_err("no credentials are refused");
    assert!(matches!(&err, RegistryError::Unauthorized { username: None, .. }), "{err:?}");
    assert!(err.to_string().contains("runtime.schema_registry_auth"), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn a_client_without_the_ca_or_dialing_another_name_gets_one_clear_tls_error() {
    let pki = Pki::new();
    let server = start(&pki).await;
    let port = server.local_addr().port();

    // No CA configured: Mozilla's roots do not know the test's CA.
    let public = client(&url(&server), Some(PASSWORD), None);
    let err = public.schema_by_id(1).await.expect_err("an unknown issuer");
    let RegistryError::Tls { host, trust, source, .. } = &err else { panic!("expected Tls, got {err:?}") };
    assert_eq!(host, "localhost");
    assert!(trust.contains("Mozilla"), "{err}");
    assert!(source.to_string().contains("UnknownIssuer"), "{err}");
    assert_eq!(public.retries(), 0, "a certificate that does not verify is not retried");

    // The wrong CA file: the message names it.
    let other = client(&url(&server), Some(PASSWORD), Some(&pki.other_ca));
    let err = other.schema_by_id(1).await.expect_err("an unknown issuer");
    assert!(matches!(err, RegistryError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains(&pki.other_ca.display().to_string()), "{err}");
    assert!(err.to_string().contains("\"localhost\""), "{err}");

    // The right CA, but the certificate is for localhost, not 127.0.0.1: the hostname is checked.
    let by_ip = client(&format!("https://127.0.0.1:{port}"), Some(PASSWORD), Some(&pki.ca));
    let err = by_ip.schema_by_id(1).await.expect_err("a name the certificate does not hold");
    let RegistryError::Tls { host, source, .. } = &err else { panic!("expected Tls, got {err:?}") };
    assert_eq!(host, "127.0.0.1");
    assert!(source.to_string().contains("not valid for name \"127.0.0.1\""), "{err}");

    // Plain http to the TLS port is no answer at all, not a schema.
    let plain = client(&format!("http://localhost:{port}"), Some(PASSWORD), None).with_timeout(Duration::from_secs(2));
    assert!(plain.schema_by_id(1).await.is_err());
    server.stop().await;
}

#[tokio::test]
async fn confluent_kafka_python_client_works_over_https_with_basic_auth() {
    let pki = Pki::new();
    let server = start(&pki).await;
    let topic = kfn_tests::unique("tls-payments");
    let args = [url(&server), topic.clone(), pki.ca.display().to_string(), format!("{USER}:{PASSWORD}")];
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kfn_tests::python::run("registry_tls_roundtrip.py", &args)
        }),
    )
    .await
    .expect("the python client finishes")
    .expect("join")
    .expect("python client");
    let seen: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let subject = value_subject(&topic);

    let id = seen["framed_id"].as_u64().expect("id");
    assert_eq!(seen["magic"], 0);
    assert_eq!(seen["decoded"], json!({"order_id": "o-7", "cents": 1299}));
    assert_eq!(seen["latest"], json!({"id": id, "version": 1, "subject": subject}));
    let wrong = &seen["wrong_password"];
    assert_eq!((&wrong["status"], &wrong["code"]), (&json!(401), &json!(401)), "{seen}");
    assert!(wrong["message"].as_str().is_some_and(|m| m.contains("wrong password")), "{seen}");
    assert_eq!(seen["no_credentials"]["status"], 401, "{seen}");
    let no_ca = seen["no_ca"]["message"].as_str().unwrap_or_default();
    assert!(no_ca.contains("CERTIFICATE_VERIFY_FAILED"), "without the CA the client fails in TLS: {seen}");

    // kfn reads, over https, what the Python client registered.
    let registry = client(&url(&server), Some(PASSWORD), Some(&pki.ca));
    let fetched = registry.schema_by_id(u32::try_from(id).expect("a u32 id")).await.expect("kfn reads it");
    let schema: Value = serde_json::from_str(&fetched.schema).expect("JSON schema");
    assert_eq!(schema["name"], "PaymentAuthorized");
    let latest = registry.latest(&subject).await.expect("latest");
    assert_eq!(u64::from(latest.id), id);
    server.stop().await;
}
