//! SASL/SCRAM and TLS against Apache Kafka (a SASL_PLAINTEXT client listener
//! with users created at format time; an SSL one, with and without client
//! certificates), and ACL admin.

use kfn::kafka_settings::ClusterFromConfig;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kfn::acls::{plan, Principals};
use kfn::kafka::acl::{AclBinding, AclFilter, Acls, Applied, Operation, PatternType, ResourceType};
use kfn::kafka::consumer::{LogEnd, PartitionReader};
use kfn::kafka::fetch::Isolation;
use kfn::kafka::group::protocol::TopicPartition;
use kfn::kafka::producer::{Producer, ProducerConfig, ProducerRecord};
use kfn::kafka::security::{self as sec, Mechanism, SaslCredentials, SecurityError, TlsSettings};
use kfn::kafka::{Admin, Cluster, ConnectOptions, Connection, KafkaError, NewTopic};
use kfn_tests::security::{SaslBroker, SaslProxy, TlsBroker, PASSWORD, USER};

/// Asks `cluster` to create a fresh one-partition topic.
async fn create_one_topic(cluster: &Cluster, prefix: &str) -> Result<String, KafkaError> {
    let name = kfn_tests::unique(prefix);
    let topic = NewTopic { name: name.clone(), partitions: 1, replication: 1, configs: Default::default() };
    Admin::new(cluster.clone()).create_topics(&[topic]).await.map(|_| name)
}

/// Creates a topic through `cluster`, produces one record and fetches it back.
async fn round_trip(cluster: &Cluster, what: &str) {
    let topic = create_one_topic(cluster, what).await.unwrap_or_else(|e| panic!("{what}: create topic: {e}"));
    let producer = Producer::new(cluster.clone(), ProducerConfig::default())
        .await
        .unwrap_or_else(|e| panic!("{what}: producer: {e}"));
    let tp = TopicPartition::new(topic.clone(), 0);
    let value = format!("hello over {what}");
    let record = ProducerRecord::new(Some(Bytes::from("k")), Some(Bytes::from(value.clone())), 1_700_000_000_000);
    let offset = producer.send(&tp, vec![record]).await.unwrap_or_else(|e| panic!("{what}: produce: {e}"));
    assert_eq!(offset, 0, "{what}: the first record of a new topic");

    let mut reader = PartitionReader::new(cluster.clone(), tp, 0, Isolation::ReadCommitted, LogEnd::Earliest);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let batch = reader.next().await.unwrap_or_else(|e| panic!("{what}: fetch: {e}"));
        if let Some(record) = batch.records.first() {
            assert_eq!(record.value.as_deref(), Some(value.as_bytes()), "{what}");
            return;
        }
        // An empty batch means the broker's max wait passed; fetch again.
        assert!(Instant::now() < deadline, "{what}: the record was not fetched within 20 s");
    }
}

fn sasl_options(mechanism: Mechanism, password: &str) -> ConnectOptions {
    ConnectOptions { sasl: Some(SaslCredentials::new(mechanism, USER, password)), ..ConnectOptions::default() }
}

const SCRAM: [Mechanism; 2] = [Mechanism::ScramSha256, Mechanism::ScramSha512];

#[tokio::test]
async fn scram_with_the_right_password_creates_a_topic_and_produces() {
    let broker = SaslBroker::start().await.expect("SASL broker");
    // Without credentials the broker refuses work: the test really needs SASL.
    let anonymous = Cluster::new(vec![broker.addr().to_string()], ConnectOptions::default());
    let refused = create_one_topic(&anonymous, "anon").await;
    assert!(refused.is_err(), "the SASL listener let an unauthenticated client create a topic");

    for mechanism in SCRAM {
        let cluster = Cluster::new(vec![broker.addr().to_string()], sasl_options(mechanism, PASSWORD));
        round_trip(&cluster, &format!("sasl-{}", mechanism.as_str().to_lowercase())).await;
    }
}

#[tokio::test]
async fn a_wrong_password_fails_once_with_an_error_naming_mechanism_and_user() {
    let broker = SaslBroker::start().await.expect("SASL broker");
    for mechanism in SCRAM {
        // Through a counting proxy: one connection, one exchange, no retry storm.
        let proxy = SaslProxy::start(broker.addr().to_string(), false).await.expect("proxy");
        let cluster =
            Cluster::new(vec![format!("127.0.0.1:{}", proxy.port)], sasl_options(mechanism, "not-the-password"));
        let started = Instant::now();
        let result = create_one_topic(&cluster, "denied").await;
        let elapsed = started.elapsed();
        let err = result.expect_err("a wrong password must not connect");
        let message = err.to_string();
        // Refused either by the broker's error code (Apache Kafka: SASL_AUTHENTICATION_FAILED) or,
        // as some brokers do, by an "e=invalid-proof" server-final that kfn turns into the same kind of error.
        match &err {
            KafkaError::AuthenticationFailed { mechanism: m, username, .. } => {
                assert_eq!((m.as_str(), username.as_str()), (mechanism.as_str(), USER))
            }
            KafkaError::Security(SecurityError::AuthenticationFailed { mechanism: m, username, .. }) => {
                assert_eq!((*m, username.as_str()), (mechanism, USER))
            }
            other => panic!("{mechanism}: expected an authentication failure, got {other:?}"),
        }
        assert!(message.contains(mechanism.as_str()) && message.contains(USER), "{message}");
        assert!(!message.contains("not-the-password"), "the password leaked into the error: {message}");
        assert!(!err.is_retriable(), "an authentication failure is not retriable");
        assert_eq!(proxy.connections(), 1, "{mechanism}: kfn opened more than one connection: {message}");
        // client-first, then client-final carrying the wrong proof: refused there.
        assert!(proxy.authenticates() <= 2, "{mechanism}: {} SaslAuthenticate requests", proxy.authenticates());
        assert!(elapsed < Duration::from_secs(5), "{mechanism}: took {elapsed:?} to fail");
    }
}

#[tokio::test]
async fn a_forged_server_signature_is_refused() {
    let broker = SaslBroker::start().await.expect("SASL broker");
    for mechanism in SCRAM {
        // Control: the same proxy without forgery lets the right password in.
        let honest = SaslProxy::start(broker.addr().to_string(), false).await.expect("proxy");
        Connection::connect(&format!("127.0.0.1:{}", honest.port), &sasl_options(mechanism, PASSWORD))
            .await
            .unwrap_or_else(|e| panic!("{mechanism} through the honest proxy: {e}"));

        // The broker accepts the client after its proof; only the signature check in
        // kfn stands between it and a broker that never proved it knows the password.
        let forging = SaslProxy::start(broker.addr().to_string(), true).await.expect("proxy");
        let err = Connection::connect(&format!("127.0.0.1:{}", forging.port), &sasl_options(mechanism, PASSWORD))
            .await
            .expect_err("a forged server-final must be refused");
        assert_eq!(forging.tampered(), 1, "{mechanism}: the proxy rewrote the server-final");
        match &err {
            KafkaError::Security(SecurityError::AuthenticationFailed { mechanism: m, username, reason }) => {
                assert_eq!((*m, username.as_str()), (mechanism, USER));
                assert!(reason.contains("server signature does not match"), "{reason}");
            }
            other => panic!("{mechanism}: expected a refused server signature, got {other:?}"),
        }
    }
}

/// Options for a TLS connection trusting `ca`, optionally with a client certificate.
fn tls_options(ca: &std::path::Path, client: Option<&kfn_tests::security::Issued>) -> ConnectOptions {
    let settings = TlsSettings {
        ca_file: Some(ca.to_path_buf()),
        cert_file: client.map(|c| c.cert.clone()),
        key_file: client.map(|c| c.key.clone()),
        server_name: None,
    };
    ConnectOptions { tls: Some(sec::connector(&settings).expect("connector")), ..ConnectOptions::default() }
}

#[tokio::test]
async fn tls_with_the_ca_from_functions_toml() {
    let tls = TlsBroker::start(false).await.expect("broker with TLS");
    // The [security] table as a user writes it; paths relative to the file.
    let toml = format!(
        "[runtime]\nbrokers = [\"{}\"]\n\n[security]\nprotocol = \"SSL\"\ntls = {{ ca = \"ca.pem\" }}\n",
        tls.addr
    );
    let file = tls.dir.path().join("functions.toml");
    std::fs::write(&file, toml).expect("write functions.toml");
    let config = kfn::config::Config::load_file_only(&file, &kfn_functions::registry()).expect("config");
    let cluster = Cluster::from_config(&config).expect("cluster from config");
    round_trip(&cluster, "tls").await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let tls = TlsBroker::start(false).await.expect("broker with TLS");
    let started = Instant::now();
    let err = Connection::connect(&tls.addr, &tls_options(&tls.other_ca, None)).await.expect_err("unknown issuer");
    let message = err.to_string();
    assert!(matches!(err, KafkaError::Security(SecurityError::UntrustedCertificate { .. })), "{err:?}");
    assert!(!err.is_retriable(), "{message}");
    assert!(message.contains("UnknownIssuer") || message.contains("unknown issuer"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_client_certificate_is_presented_when_configured() {
    let tls = TlsBroker::start(true).await.expect("broker requiring client certificates");
    // The broker demands a certificate of the client CA (ssl.client.auth=required):
    // the round trip works only if kfn presents its own.
    let cluster = Cluster::new(vec![tls.addr.clone()], tls_options(&tls.ca, Some(&tls.client)));
    round_trip(&cluster, "mtls").await;

    // Without one the broker ends the handshake. Under TLS 1.3 the client learns
    // it only when it reads, so the error is a refused or closed connection, not a timeout.
    let started = Instant::now();
    let err = Connection::connect(&tls.addr, &tls_options(&tls.ca, None)).await.expect_err("no client certificate");
    assert!(!matches!(err, KafkaError::Timeout { .. }), "expected a refusal, not a timeout: {err:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?} to refuse", started.elapsed());
}

#[tokio::test]
async fn scram_over_tls_works_and_a_wrong_password_is_one_clear_error() {
    // SASL_SSL, as production runs: TLS with the broker's CA, then SCRAM inside it.
    let broker = TlsBroker::start_with(false, true).await.expect("broker with SASL_SSL");
    let secured = |mechanism, password: &str| ConnectOptions {
        sasl: Some(SaslCredentials::new(mechanism, USER, password)),
        ..tls_options(&broker.ca, None)
    };
    for mechanism in SCRAM {
        let cluster = Cluster::new(vec![broker.addr.clone()], secured(mechanism, PASSWORD));
        round_trip(&cluster, &format!("sasl-ssl-{}", mechanism.as_str().to_lowercase())).await;

        let err = Connection::connect(&broker.addr, &secured(mechanism, "not-the-password"))
            .await
            .expect_err("a wrong password over TLS");
        let message = err.to_string();
        assert!(message.contains(mechanism.as_str()) && message.contains(USER), "{message}");
        assert!(!message.contains("not-the-password"), "the password leaked into the error: {message}");
        assert!(!err.is_retriable(), "{message}");
    }
    // TLS alone is not enough on that listener.
    let anonymous = Cluster::new(vec![broker.addr.clone()], tls_options(&broker.ca, None));
    let refused = create_one_topic(&anonymous, "anon").await;
    assert!(refused.is_err(), "the SASL_SSL listener let a client without credentials create a topic");
}

#[tokio::test]
async fn acls_are_applied_without_error() {
    let registry = kfn_functions::registry();
    let config = kfn::config::Config::load_file_only(&kfn_tests::workspace_root().join("functions.toml"), &registry)
        .expect("config");
    // A principal of this test only, so runs against a shared broker do not mix.
    let user = kfn_tests::unique("acl-user");
    let bindings = plan(&config, &Principals::Shared(user.clone()));
    assert!(bindings.iter().any(|b| b.operation == Operation::IdempotentWrite));
    let acls = Acls::new(kfn_tests::cluster());
    let applied = acls.create(&bindings).await.expect("CreateAcls");
    // tansu answers with no results (it stores nothing); a broker with an
    // authorizer confirms every binding.
    assert!(
        matches!(applied, Applied::Unconfirmed) || applied == Applied::Confirmed(bindings.len()),
        "{applied:?} for {} bindings",
        bindings.len()
    );

    // tansu keeps no ACLs: listing must work, and whatever it returns must be
    // bindings kfn understands. On a broker with an authorizer (Apache Kafka)
    // the test also checks that the plan came back.
    let listed = acls.describe(&AclFilter { principal: Some(format!("User:{user}")), ..AclFilter::default() }).await;
    match listed {
        Ok(listed) if !listed.is_empty() => {
            let mut want: Vec<AclBinding> = bindings.clone();
            let mut got = listed;
            want.sort();
            got.sort();
            assert_eq!(got, want);
        }
        Ok(_) => {}
        Err(e) => panic!("DescribeAcls: {e}"),
    }
    let prefixed = bindings
        .iter()
        .filter(|b| b.resource_type == ResourceType::TransactionalId && b.pattern == PatternType::Prefixed)
        .count();
    assert_eq!(
        prefixed,
        2 * config
            .functions
            .values()
            // exactly_once functions, and HTTP functions (their Idempotency-Key transactions).
            .filter(|f| f.guarantee == kfn::config::Guarantee::ExactlyOnce || f.idempotency_topic().is_some())
            .count()
    );
}
