//! The shared harness of kfn's integration tests.
//!
//! [`broker`] gives the address of a real Kafka-protocol broker: the one named
//! by `KFN_TEST_BROKERS`, or else a local one started once per test binary on
//! free ports and stopped when the binary exits: Apache Kafka 4.4 (one KRaft
//! node) by default, tansu with `KFN_TEST_BROKER=tansu` ([`broker_kind`]).
//! [`unique`] makes topic and group names no other test uses, so tests run in
//! parallel against one broker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use kfn::dev::{BrokerKind, LocalCluster, LocalOptions};
use kfn::kafka::{Admin, Cluster, ConnectOptions, NewTopic};

static BROKER: OnceLock<String> = OnceLock::new();

/// The kind of local broker the tests start: `KFN_TEST_BROKER` (`kafka`, the
/// default, or `tansu`).
pub fn broker_kind() -> BrokerKind {
    match std::env::var("KFN_TEST_BROKER") {
        Ok(name) => {
            BrokerKind::parse(&name).unwrap_or_else(|| panic!("KFN_TEST_BROKER={name:?}: expected `kafka` or `tansu`"))
        }
        Err(_) => BrokerKind::Kafka,
    }
}

/// Whether the broker under test is tansu, for the tests that work around one of its quirks.
pub fn on_tansu() -> bool {
    std::env::var_os("KFN_TEST_BROKERS").is_none() && broker_kind() == BrokerKind::Tansu
}

/// Starts a local broker of [`broker_kind`] on free ports (its own, not the shared one).
pub async fn start_local_broker(advertised_ports: Option<Vec<u16>>) -> anyhow::Result<LocalCluster> {
    let quiet = std::env::var_os("KFN_TEST_BROKER_LOGS").is_none();
    let options = LocalOptions { kind: broker_kind(), nodes: 1, port: None, advertised_ports, quiet };
    Ok(LocalCluster::start(options).await?)
}

/// host:port of the broker all tests of this binary share.
pub fn broker() -> &'static str {
    init_logs();
    BROKER.get_or_init(|| {
        if let Ok(brokers) = std::env::var("KFN_TEST_BROKERS") {
            return brokers;
        }
        // The broker is started on a thread that lives as long as the test
        // binary: the child dies with it (see kfn::dev::broker).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
            let started = rt.block_on(async { start_local_broker(None).await.map_err(|e| format!("{e:#}")) });
            match started {
                Ok(local) => {
                    let _ = tx.send(Ok(local.bootstrap()));
                    // Keep the broker (and this thread) alive until the process exits.
                    let _keep = local;
                    loop {
                        std::thread::park();
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
        match rx.recv() {
            Ok(Ok(addr)) => addr,
            Ok(Err(e)) => panic!("cannot start the test broker: {e}"),
            Err(_) => panic!("the test broker thread ended before starting the broker"),
        }
    })
}

/// Logs of kfn for a test run: `KFN_TEST_LOG=debug` (an env filter).
pub fn init_logs() {
    if let Ok(filter) = std::env::var("KFN_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// The bootstrap list for [`broker`].
pub fn bootstrap() -> Vec<String> {
    broker().split(',').map(str::to_string).collect()
}

/// A cluster handle on the test broker.
pub fn cluster() -> Cluster {
    Cluster::new(bootstrap(), ConnectOptions::default())
}

/// A name no other test of any run uses: `prefix-<pid>-<n>-<nanos>`.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

/// Creates a topic with `partitions` partitions and replication 1.
pub async fn create_topic(name: &str, partitions: i32) -> anyhow::Result<()> {
    let admin = Admin::new(cluster());
    admin
        .create_topics(&[NewTopic { name: name.to_string(), partitions, replication: 1, configs: Default::default() }])
        .await?;
    Ok(())
}

/// The workspace root (where functions.toml lives).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(|p| p.to_path_buf()).unwrap_or_default()
}

pub mod app;
pub mod connect;
pub mod group;
pub mod jaeger;
pub mod java;
pub mod moto;
pub mod order_system;
pub mod peer;
pub mod proxy;
pub mod python;
pub mod secured;
pub mod security;

/// A copy of the shipped project in a temporary directory: functions.toml,
/// the system's schemas (schemas/*.avsc; not schemas/evolution/'s example
/// versions) and docs/openapi.json, which functions.toml names.
pub fn shipped_project() -> tempfile::TempDir {
    let root = workspace_root();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(root.join("functions.toml"), dir.path().join("functions.toml")).expect("copy functions.toml");
    let schemas = dir.path().join("schemas");
    std::fs::create_dir(&schemas).expect("mkdir schemas");
    for entry in std::fs::read_dir(root.join("schemas")).expect("schemas/") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            std::fs::copy(&path, schemas.join(path.file_name().expect("name"))).expect("copy schema");
        }
    }
    std::fs::create_dir(dir.path().join("docs")).expect("mkdir docs");
    std::fs::copy(root.join("docs/openapi.json"), dir.path().join("docs/openapi.json")).expect("copy openapi.json");
    dir
}

/// Starts a broker of its own (not the shared one) whose clients all go
/// through a [`proxy::FaultProxy`]: it advertises the proxy's port.
/// Returns the proxy and the broker (dropped = stopped).
pub async fn broker_behind_proxy() -> anyhow::Result<(proxy::FaultProxy, LocalCluster)> {
    let proxy_listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    let proxy_port = proxy_listener.local_addr()?.port();
    let broker = start_local_broker(Some(vec![proxy_port])).await?;
    let proxy = proxy::FaultProxy::start(proxy_listener, broker.bootstrap());
    Ok((proxy, broker))
}
