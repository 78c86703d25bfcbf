//! ACLs enforced by Apache Kafka (StandardAuthorizer,
//! `allow.everyone.if.no.acl.found=false`) on the secured broker that
//! `kfn dev --secure` runs (SASL_SSL, SCRAM-SHA-512): the plan of
//! `kfn acls plan` is what each function gets, a function is denied what it
//! does not declare and says so in one error, and bad credentials fail once.
//! On the mTLS listener a client certificate is the principal (its CN).

use kfn::kafka_settings::EnsureTopics;
use std::time::Duration;

use bytes::Bytes;
use kfn::acls::{check_function, deployment_plan, AccessError, Denial, Principals};
use kfn::config::{Config, FunctionKind, SecuritySettings};
use kfn::kafka::acl::{Acls, Applied, Operation};
use kfn::kafka::consumer::{LogEnd, PartitionReader};
use kfn::kafka::fetch::Isolation;
use kfn::kafka::group::protocol::TopicPartition;
use kfn::kafka::producer::{Producer, ProducerConfig, ProducerRecord};
use kfn::kafka::{Admin, KafkaError, NewTopic};
use kfn_tests::secured::{secured, CountingProxy, Secured, TEST_USER};

/// The shipped functions.toml, its topics created and its plan applied on the secured broker.
async fn shipped_and_applied(secured: &Secured) -> Config {
    let mut config =
        Config::load_file_only(&kfn_tests::workspace_root().join("functions.toml"), &kfn_functions::registry())
            .expect("the shipped functions.toml");
    // One node: the declared replication 3 cannot be met ([local] says 1).
    config.apply_local_overrides();
    let admin = secured.admin();
    Admin::new(admin.clone()).ensure_topics(config.topics.values()).await.expect("the admin creates the topics");
    let bindings = deployment_plan(&config, &Principals::PerFunction);
    let acls = Acls::new(admin);
    let applied = acls.create(&bindings).await.expect("the admin applies the plan");
    assert_eq!(applied, Applied::Confirmed(bindings.len()), "Apache Kafka confirms every binding");
    // The broker's authorizer applies them from the metadata log a moment later.
    assert!(acls.wait_listed(&bindings, Duration::from_secs(30)).await.expect("DescribeAcls"), "ACLs not listed");
    config
}

#[tokio::test]
async fn validation_is_denied_what_it_does_not_declare_in_one_error() {
    let secured = secured();
    let config = shipped_and_applied(secured).await;
    let validation = config.functions.get("validation").expect("validation").clone();
    let principal = "User:kfn-validation";
    let cluster = secured.cluster("kfn-validation");
    // What functions.toml declares, the plan grants.
    check_function(&cluster, &validation, principal).await.expect("validation may do what it declares");

    // The same function declaring one input and one output more than the plan granted.
    let mut wider = validation.clone();
    let FunctionKind::Topic { inputs } = &mut wider.kind else { panic!("validation is a topic function") };
    inputs.push("payments.processed".into());
    wider.outputs.insert("shipped".into(), "shipments.created".into());
    let err = check_function(&cluster, &wider, principal).await.expect_err("payments.processed and shipments.created");
    let text = err.to_string();
    match &err {
        AccessError::Denied { function, principal: p, denied } => {
            assert_eq!((function.as_str(), p.as_str()), ("validation", principal));
            let want = [
                Denial { operation: Operation::Read, topic: "payments.processed".into() },
                Denial { operation: Operation::Write, topic: "shipments.created".into() },
            ];
            assert_eq!(denied.as_slice(), want.as_slice(), "{text}");
        }
        other => panic!("expected a denial, got {other:?}"),
    }
    for part in ["validation", principal, "READ topic payments.processed", "WRITE topic shipments.created"] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }

    // The broker enforces it, not only reports it: a fetch and a produce are refused.
    let mut reader = PartitionReader::new(
        cluster.clone(),
        TopicPartition::new("payments.processed", 0),
        0,
        Isolation::ReadCommitted,
        LogEnd::Earliest,
    );
    let fetch = reader.next().await.map(|_| ()).expect_err("validation must not read payments.processed");
    assert!(fetch.to_string().contains("TopicAuthorizationFailed"), "{fetch}");
    let producer =
        Producer::new(cluster.clone(), ProducerConfig::default()).await.expect("IDEMPOTENT_WRITE is granted");
    let record = || vec![ProducerRecord::new(Some(Bytes::from("k")), Some(Bytes::from("v")), 1_700_000_000_000)];
    let produce = producer
        .send(&TopicPartition::new("shipments.created", 0), record())
        .await
        .expect_err("validation must not write shipments.created");
    assert!(produce.to_string().contains("TopicAuthorizationFailed"), "{produce}");
    // Refused at once, not retried until the delivery timeout (2 minutes by default).
    assert!(!matches!(produce, kfn::kafka::producer::SendError::Timeout { .. }), "{produce}");
    // Control: what it declares it may write.
    producer
        .send(&TopicPartition::new("orders.rejected", 0), record())
        .await
        .expect("validation writes orders.rejected");
}

/// Runs one bad-credentials case through a counting proxy and returns the error.
async fn refused(secured: &Secured, security: &SecuritySettings, case: &str) -> (KafkaError, usize) {
    let proxy = CountingProxy::start(secured.brokers[0].clone()).await.expect("proxy");
    let cluster = secured.cluster_with(vec![proxy.addr()], security);
    let topic = NewTopic { name: kfn_tests::unique(case), partitions: 1, replication: 1, configs: Default::default() };
    let err = Admin::new(cluster).create_topics(&[topic]).await.expect_err(case);
    (err, proxy.connections())
}

#[tokio::test]
async fn bad_credentials_fail_once_each_with_a_clear_error() {
    let secured = secured();
    let cases = [
        ("wrong-password", secured.security_with(TEST_USER, "not-the-password"), TEST_USER),
        ("unknown-user", secured.security_with("kfn-nobody", "whatever"), "kfn-nobody"),
    ];
    for (case, security, user) in cases {
        let (err, connections) = refused(secured, &security, case).await;
        let text = err.to_string();
        assert!(text.contains("SCRAM-SHA-512") && text.contains(user), "{case}: {text}");
        assert!(text.contains("authentication"), "{case}: {text}");
        assert!(!text.contains("not-the-password") && !text.contains("whatever"), "{case}: password in {text}");
        assert!(!err.is_retriable(), "{case}: {text}");
        assert_eq!(connections, 1, "{case}: one connection, no retry storm: {text}");
    }
    // Without the CA kfn trusts only public roots: the local CA's certificate is refused.
    let mut no_ca = secured.security(TEST_USER);
    if let Some(tls) = &mut no_ca.tls {
        tls.ca_file = None;
    }
    let (err, connections) = refused(secured, &no_ca, "no-ca").await;
    let text = err.to_string();
    assert!(text.contains("UnknownIssuer") || text.contains("unknown issuer"), "{text}");
    assert!(!err.is_retriable(), "a certificate kfn does not trust stays untrusted: {text}");
    assert_eq!(connections, 1, "no CA: one connection, no retry storm: {text}");

    // Control: the right password through the same kind of proxy works.
    let proxy = CountingProxy::start(secured.brokers[0].clone()).await.expect("proxy");
    let cluster = secured.cluster_with(vec![proxy.addr()], &secured.security(TEST_USER));
    cluster.any_connection().await.expect("the right password");
    assert_eq!(proxy.connections(), 1);
}

/// A cluster handle on the mTLS listener presenting `client` (None: no certificate), trusting `ca`.
fn mtls(
    secured: &Secured,
    brokers: Vec<String>,
    client: Option<&kfn::dev::secure::ClientCertificate>,
) -> kfn::kafka::Cluster {
    let security = SecuritySettings {
        protocol: kfn::config::SecurityProtocol::Ssl,
        tls: Some(kfn::config::TlsSettings {
            ca_file: Some(secured.ca.clone()),
            cert_file: client.map(|c| c.cert.clone()),
            key_file: client.map(|c| c.key.clone()),
            server_name: None,
        }),
        ..SecuritySettings::default()
    };
    secured.cluster_with(brokers, &security)
}

#[tokio::test]
async fn a_client_certificate_is_the_principal_its_cn_names() {
    let secured = secured();
    let config = shipped_and_applied(secured).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let certificate =
        kfn::dev::secure::issue_client_certificate(&secured.cert_dir, "kfn-validation", dir.path()).expect("issue");
    let cluster = mtls(secured, secured.mtls_brokers.clone(), Some(&certificate));
    // CN=kfn-validation is User:kfn-validation: the ACLs planned for the SCRAM user apply.
    let validation = config.functions.get("validation").expect("validation").clone();
    check_function(&cluster, &validation, "User:kfn-validation").await.expect("validation's own ACLs");
    let mut wider = validation.clone();
    wider.outputs.insert("shipped".into(), "shipments.created".into());
    let err = check_function(&cluster, &wider, "User:kfn-validation").await.expect_err("shipments.created");
    assert!(err.to_string().contains("WRITE topic shipments.created"), "{err}");

    // A certificate of another CA, an expired one, and none at all: refused on one connection, not a timeout.
    let foreign_dir = tempfile::tempdir().expect("tempdir");
    let foreign_ca = foreign_dir.path().join("ca");
    std::fs::create_dir_all(&foreign_ca).expect("dir");
    kfn::dev::secure::certificates(&foreign_ca).expect("another CA");
    let foreign = kfn::dev::secure::issue_client_certificate(&foreign_ca, "kfn-validation", foreign_dir.path())
        .expect("a certificate of another CA");
    // One of the right CA that expired years ago.
    let expired_dir = tempfile::tempdir().expect("tempdir");
    let expired = kfn::dev::secure::issue_client_certificate_valid(
        &secured.cert_dir,
        "kfn-validation",
        expired_dir.path(),
        Some((2020, 2021)),
    )
    .expect("an expired certificate");
    let cases =
        [("foreign certificate", Some(&foreign)), ("expired certificate", Some(&expired)), ("no certificate", None)];
    for (case, client) in cases {
        let proxy = CountingProxy::start(secured.mtls_brokers[0].clone()).await.expect("proxy");
        let topic =
            NewTopic { name: kfn_tests::unique("mtls"), partitions: 1, replication: 1, configs: Default::default() };
        let err = Admin::new(mtls(secured, vec![proxy.addr()], client)).create_topics(&[topic]).await.expect_err(case);
        assert!(!matches!(err, KafkaError::Timeout { .. }), "{case}: a refusal, not a timeout: {err}");
        assert_eq!(proxy.connections(), 1, "{case}: one connection, no retry storm: {err}");
    }
}
