//! The secured Apache Kafka that the tests with ACLs enforced share: one per
//! test binary, started by the first test that asks for it (the plain shared
//! broker of [`crate::broker`] is not affected) and stopped when the binary exits.
//!
//! It is `kfn::dev::secure::SecureKafka`, as `kfn dev --secure` runs it:
//! SASL_SSL with SCRAM-SHA-512, the local CA from the cache, ACLs enforced,
//! the super user `kfn-admin`. Its users are made at format time: the admin,
//! the registry, `kfn-<function>` for every function of the shipped
//! functions.toml, and [`TEST_USER`]. Its mTLS listener takes client
//! certificates of the local CA, the CN as the user.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use kfn::config::{SaslSettings, SecurityProtocol, SecuritySettings, TlsSettings};
use kfn::dev::secure::{SecureKafka, SecureOptions, ADMIN_USER, MECHANISM};
use kfn::kafka::{Cluster, ConnectOptions};

/// A user of no function, for the tests' own principals.
pub const TEST_USER: &str = "kfn-secured-test";

/// What the tests know of the shared secured cluster.
pub struct Secured {
    /// The bootstrap list.
    pub brokers: Vec<String>,
    /// The CA the broker's certificate is signed by.
    pub ca: PathBuf,
    /// The bootstrap list of the mTLS listener (client certificates of the local CA).
    pub mtls_brokers: Vec<String>,
    /// Where the local CA and its key are (to issue client certificates).
    pub cert_dir: PathBuf,
    passwords: BTreeMap<String, String>,
}

static SECURED: OnceLock<Secured> = OnceLock::new();

/// The secured cluster of this test binary, started on first use.
pub fn secured() -> &'static Secured {
    crate::init_logs();
    SECURED.get_or_init(|| {
        let registry = kfn_functions::registry();
        let config = kfn::config::Config::load_file_only(&crate::workspace_root().join("functions.toml"), &registry)
            .expect("the shipped functions.toml");
        let mut users: Vec<String> = config.functions.keys().map(|f| kfn::config::function_user(f)).collect();
        users.push(TEST_USER.to_string());
        let quiet = std::env::var_os("KFN_TEST_BROKER_LOGS").is_none();
        let (tx, rx) = std::sync::mpsc::channel();
        // As the plain shared broker: started on a thread that lives as long as the binary.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
            let options = SecureOptions { users, quiet, ..SecureOptions::default() };
            match rt.block_on(SecureKafka::start(options)) {
                Ok(kafka) => {
                    let _ = tx.send(Ok(Secured {
                        brokers: kafka.brokers(),
                        ca: kafka.ca().to_path_buf(),
                        mtls_brokers: kafka.mtls_bootstrap().split(',').map(str::to_string).collect(),
                        cert_dir: kafka.cert_dir().to_path_buf(),
                        passwords: kafka.passwords().clone(),
                    }));
                    let _keep = kafka;
                    loop {
                        std::thread::park();
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                }
            }
        });
        match rx.recv() {
            Ok(Ok(secured)) => secured,
            Ok(Err(e)) => panic!("cannot start the secured test broker: {e}"),
            Err(_) => panic!("the secured test broker thread ended before starting it"),
        }
    })
}

impl Secured {
    /// The password of `user` (one the cluster was started with).
    pub fn password(&self, user: &str) -> &str {
        self.passwords.get(user).map(String::as_str).unwrap_or_else(|| panic!("no user {user} on the secured broker"))
    }

    /// Every user and its password.
    pub fn passwords(&self) -> &BTreeMap<String, String> {
        &self.passwords
    }

    /// `[security]` for `user` with `password`, trusting the cluster's CA.
    pub fn security_with(&self, user: &str, password: &str) -> SecuritySettings {
        SecuritySettings {
            protocol: SecurityProtocol::SaslSsl,
            sasl: Some(SaslSettings {
                mechanism: MECHANISM.to_string(),
                username: user.to_string(),
                password_env: String::new(),
                password: password.to_string(),
            }),
            tls: Some(TlsSettings { ca_file: Some(self.ca.clone()), ..TlsSettings::default() }),
            ..SecuritySettings::default()
        }
    }

    /// `[security]` for `user`, with its password.
    pub fn security(&self, user: &str) -> SecuritySettings {
        self.security_with(user, self.password(user))
    }

    /// A cluster handle on `brokers` (the cluster's, or a proxy's) with `security`.
    pub fn cluster_with(&self, brokers: Vec<String>, security: &SecuritySettings) -> Cluster {
        let tls = security.tls.as_ref().map(|t| kfn::kafka::security::connector(t).expect("TLS connector"));
        let sasl = security.sasl.as_ref().map(|s| {
            let mechanism = s.mechanism.parse().expect("mechanism");
            kfn::kafka::security::SaslCredentials::new(mechanism, s.username.clone(), s.password.clone())
        });
        Cluster::new(brokers, ConnectOptions { tls, sasl, ..ConnectOptions::default() })
    }

    /// A cluster handle authenticating as `user`.
    pub fn cluster(&self, user: &str) -> Cluster {
        self.cluster_with(self.brokers.clone(), &self.security(user))
    }

    /// A cluster handle as the super user.
    pub fn admin(&self) -> Cluster {
        self.cluster(ADMIN_USER)
    }
}

/// A TCP proxy that forwards bytes untouched (TLS included) and counts the
/// connections it accepts: how the tests see that a refused client did not
/// come back again and again.
pub struct CountingProxy {
    /// 127.0.0.1 port clients connect to.
    pub port: u16,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingProxy {
    /// Forwards every connection to `upstream`.
    pub async fn start(upstream: String) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Ok(Self { port, connections })
    }

    /// The proxy's address.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}
