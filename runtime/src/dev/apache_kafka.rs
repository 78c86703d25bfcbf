//! Apache Kafka 4.4 as the local broker: one KRaft node in combined mode, or
//! a three-node cluster, each node a child process that never outlives kfn.
//!
//! The jars come from Maven Central: kfn writes its pinned pom (`pom.xml`
//! beside this file) into the cache and runs `mvn dependency:copy-dependencies`
//! once, with Maven's progress shown; later starts reuse the folder. Each
//! node gets a fresh data directory (removed when the cluster stops), is
//! formatted with the cluster's id and a static controller quorum, and runs
//! with small, fast settings (one partition per internal topic, no initial
//! rebalance delay, a small heap).
//!
//! ```no_run
//! # async fn demo() -> Result<(), kfn::dev::apache_kafka::LocalKafkaError> {
//! use kfn::dev::apache_kafka::{KafkaOptions, LocalKafka};
//! let kafka = LocalKafka::start(KafkaOptions { nodes: 3, ..KafkaOptions::default() }).await?;
//! println!("bootstrap: {}", kafka.bootstrap());
//! kafka.stop();
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;

use super::broker::{LocalBroker, LocalBrokerError};
use super::maven::{self, Install, Jars, MavenError};
use super::ports::free_port;
use super::tansu::{cache_dir, InstallError as CacheError};

/// The Apache Kafka version kfn runs locally.
pub const VERSION: &str = "4.4.0";

/// The pom whose dependencies are the broker's classpath.
const POM: &str = include_str!("apache_kafka/pom.xml");
/// The nodes' log configuration.
const LOG4J: &str = include_str!("apache_kafka/log4j2.yaml");

/// Why the local Apache Kafka could not be installed or started.
#[derive(Debug, thiserror::Error)]
pub enum LocalKafkaError {
    /// Its jars could not be installed, or java is missing.
    #[error("Apache Kafka {VERSION}: {0} (or use --broker tansu)")]
    Install(#[from] MavenError),
    /// No cache directory.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A step of installing or formatting failed.
    #[error("Apache Kafka {VERSION}: `{step}` failed: {detail}")]
    Step {
        /// What was being done.
        step: String,
        /// Its error, exit status or output.
        detail: String,
    },
    /// A file of the cluster could not be written.
    #[error("Apache Kafka {VERSION}: cannot write {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A node did not start.
    #[error("Apache Kafka node {node}: {source}")]
    Node {
        /// The node id.
        node: u32,
        /// The cause.
        #[source]
        source: LocalBrokerError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LocalKafkaError + '_ {
    move |source| LocalKafkaError::Io { path: path.to_path_buf(), source }
}

/// The folder of Apache Kafka's jars (the classpath), installing them first if needed.
///
/// `KFN_KAFKA_LIBS` overrides the folder. The install runs `mvn` on kfn's
/// pinned pom; a changed pom installs again.
pub fn ensure_installed() -> Result<PathBuf, LocalKafkaError> {
    if let Some(dir) = std::env::var_os("KFN_KAFKA_LIBS") {
        return Ok(PathBuf::from(dir));
    }
    let dir = cache_dir()?.join(format!("apache-kafka-{VERSION}"));
    let libs = dir.join("libs");
    Install {
        what: &format!("Apache Kafka {VERSION}"),
        dir: &dir,
        jars: &[Jars { name: "broker", pom: POM, folder: &libs }],
        java_for: JAVA_FOR,
        mvn_for: "to fetch Apache Kafka's jars from Maven Central once",
    }
    .ensure()?;
    Ok(libs)
}

/// What java is for, in the error when it is missing.
const JAVA_FOR: &str = "a Java 17 or newer runtime runs the broker";

/// How to run the local cluster.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// Nodes, each broker and controller (1, or 3 for replication 3).
    pub nodes: u32,
    /// Client port of the first node; node `n` listens on `port + n - 1`. None: free ports.
    pub port: Option<u16>,
    /// Client ports to advertise instead of the listening ones (e.g. a fault-injecting proxy in tests).
    pub advertised_ports: Option<Vec<u16>>,
    /// Broker settings beyond kfn's defaults (`name`, `value`).
    pub overrides: Vec<(String, String)>,
    /// SCRAM users (name, password), created at format time for SCRAM-SHA-256 and
    /// SCRAM-SHA-512. When there are any, the client listener requires SASL/SCRAM
    /// (SASL_PLAINTEXT, or SASL_SSL with `tls`); broker to broker stays on its own
    /// plaintext listener.
    pub scram_users: Vec<(String, String)>,
    /// TLS on the client listener (SSL, or SASL_SSL with SCRAM users).
    pub tls: Option<ServerTls>,
    /// A second client listener, `MTLS`, speaking TLS and requiring a client
    /// certificate signed by `client_ca`; the principal is the certificate's
    /// CN (`User:<CN>`, `ssl.principal.mapping.rules`), so a certificate for
    /// `kfn-validation` gets the ACLs of the SCRAM user `kfn-validation`.
    pub mtls: Option<ServerTls>,
    /// Enforce ACLs: `allow.everyone.if.no.acl.found=false`, so a client
    /// principal may do only what an ACL grants it (else everyone may do
    /// everything when no ACL names the resource).
    pub enforce_acls: bool,
    /// Users (names, without `User:`) that bypass ACLs (`super.users`), e.g.
    /// the admin that creates topics and ACLs. The nodes' own principal on
    /// their plaintext loopback listeners (`User:ANONYMOUS`) is always one.
    pub super_users: Vec<String>,
    /// Discard the nodes' output (else it goes to stderr).
    pub quiet: bool,
}

impl Default for KafkaOptions {
    fn default() -> Self {
        Self {
            nodes: 1,
            port: None,
            advertised_ports: None,
            overrides: Vec::new(),
            scram_users: Vec::new(),
            tls: None,
            mtls: None,
            enforce_acls: false,
            super_users: Vec::new(),
            quiet: true,
        }
    }
}

/// TLS of the client listener, from PEM files (KIP-651).
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The broker's private key (PKCS#8, unencrypted) and certificate chain, in one PEM file.
    pub keystore: PathBuf,
    /// The CAs whose client certificates are accepted; with it, a client certificate is required.
    pub client_ca: Option<PathBuf>,
}

impl KafkaOptions {
    /// The client listener's security protocol.
    fn client_protocol(&self) -> &'static str {
        match (self.scram_users.is_empty(), self.tls.is_some()) {
            (true, false) => "PLAINTEXT",
            (false, false) => "SASL_PLAINTEXT",
            (true, true) => "SSL",
            (false, true) => "SASL_SSL",
        }
    }

    /// Settings of the mTLS listener (its port is in `listeners`).
    fn mtls_security(&self) -> Vec<(&'static str, String)> {
        let Some(tls) = &self.mtls else { return Vec::new() };
        let mut settings = vec![
            ("listener.name.mtls.ssl.keystore.type", "PEM".to_string()),
            ("listener.name.mtls.ssl.keystore.location", tls.keystore.display().to_string()),
            ("listener.name.mtls.ssl.client.auth", "required".into()),
            // The subject's CN is the user: RFC 2253 "CN=kfn-validation" -> User:kfn-validation.
            ("listener.name.mtls.ssl.principal.mapping.rules", "RULE:^CN=([^,]+)$/$1/,DEFAULT".into()),
        ];
        if let Some(ca) = &tls.client_ca {
            settings.extend([
                ("listener.name.mtls.ssl.truststore.type", "PEM".to_string()),
                ("listener.name.mtls.ssl.truststore.location", ca.display().to_string()),
            ]);
        }
        settings
    }

    /// Settings of the authorizer: who bypasses ACLs, and what happens without one.
    fn authorizer(&self) -> Vec<(&'static str, String)> {
        // The nodes reach each other and the controller on plaintext listeners bound to
        // 127.0.0.1, as User:ANONYMOUS; the controller checks CLUSTER_ACTION on their
        // requests, so that principal must be a super user or the cluster never forms.
        let supers: Vec<String> = std::iter::once("User:ANONYMOUS".to_string())
            .chain(self.super_users.iter().map(|u| format!("User:{u}")))
            .collect();
        vec![("super.users", supers.join(";")), ("allow.everyone.if.no.acl.found", (!self.enforce_acls).to_string())]
    }

    /// Settings of the client listener's SASL and TLS.
    fn client_security(&self) -> Vec<(&'static str, String)> {
        const SCRAM_SERVER: &str = "org.apache.kafka.common.security.scram.ScramLoginModule required;";
        let mut settings = Vec::new();
        if !self.scram_users.is_empty() {
            settings.extend([
                ("sasl.enabled.mechanisms", "SCRAM-SHA-256,SCRAM-SHA-512".to_string()),
                ("listener.name.client.scram-sha-256.sasl.jaas.config", SCRAM_SERVER.into()),
                ("listener.name.client.scram-sha-512.sasl.jaas.config", SCRAM_SERVER.into()),
            ]);
        }
        if let Some(tls) = &self.tls {
            settings.extend([
                ("listener.name.client.ssl.keystore.type", "PEM".to_string()),
                ("listener.name.client.ssl.keystore.location", tls.keystore.display().to_string()),
            ]);
            if let Some(ca) = &tls.client_ca {
                settings.extend([
                    ("listener.name.client.ssl.truststore.type", "PEM".to_string()),
                    ("listener.name.client.ssl.truststore.location", ca.display().to_string()),
                    ("listener.name.client.ssl.client.auth", "required".into()),
                ]);
            }
        }
        settings
    }
}

/// A running local Apache Kafka cluster; stopped on [`LocalKafka::stop`] or drop.
pub struct LocalKafka {
    nodes: Vec<Option<LocalBroker>>,
    specs: Vec<NodeSpec>,
    libs: PathBuf,
    quiet: bool,
    bootstrap: String,
    /// The mTLS listeners' bootstrap list, when there are some.
    mtls_bootstrap: Option<String>,
    /// The nodes' data, removed when the cluster stops.
    root: Option<PathBuf>,
}

/// What a node is started with.
#[derive(Debug, Clone)]
struct NodeSpec {
    id: u32,
    port: u16,
    /// The plaintext broker-to-broker port: readiness is checked there, whatever the clients' security.
    internal: u16,
    dir: PathBuf,
}

impl LocalKafka {
    /// Installs Apache Kafka if needed, formats and starts the nodes, and
    /// waits until every node accepts Kafka connections.
    pub async fn start(options: KafkaOptions) -> Result<Self, LocalKafkaError> {
        let libs = tokio::task::spawn_blocking(ensure_installed)
            .await
            .map_err(|e| LocalKafkaError::Step { step: "install".into(), detail: e.to_string() })??;
        let java = maven::java(JAVA_FOR)?;
        let n = options.nodes.max(1);
        let free =
            |_| free_port().map_err(|e| LocalKafkaError::Step { step: "choose a port".into(), detail: e.to_string() });
        let ports: Vec<u16> = match options.port {
            Some(first) => (0..n as u16).map(|i| first + i).collect(),
            None => (0..n).map(free).collect::<Result<_, _>>()?,
        };
        let controller_ports: Vec<u16> = (0..n).map(free).collect::<Result<_, _>>()?;
        // Brokers talk to each other on a listener of their own, so clients' advertised ports
        // (a proxy in tests) never carry replication or transaction markers.
        let internal_ports: Vec<u16> = (0..n).map(free).collect::<Result<_, _>>()?;
        let mtls_ports: Vec<u16> = match options.mtls {
            Some(_) => (0..n).map(free).collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        remove_abandoned_data();
        let root = std::env::temp_dir().join(format!("kfn-kafka-{}-{}", std::process::id(), ports[0]));
        let _ = std::fs::remove_dir_all(&root);
        let voters: Vec<String> =
            controller_ports.iter().enumerate().map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1)).collect();
        let replication = if n >= 3 { 3 } else { 1 };
        let cluster_id = random_id();
        let mut specs = Vec::new();
        for i in 0..n as usize {
            let id = i as u32 + 1;
            let dir = root.join(format!("node-{id}"));
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            let advertised = options.advertised_ports.as_ref().and_then(|a| a.get(i).copied()).unwrap_or(ports[i]);
            let listening = Listening {
                client: ports[i],
                advertised,
                internal: internal_ports[i],
                controller: controller_ports[i],
            };
            let mut settings = node_settings(id, &voters, listening, replication, &dir);
            settings.retain(|(k, _)| *k != "listener.security.protocol.map");
            settings.push((
                "listener.security.protocol.map",
                format!("CLIENT:{},INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT", options.client_protocol()),
            ));
            settings.extend(options.client_security());
            if let Some(port) = mtls_ports.get(i) {
                for (k, v) in settings.iter_mut() {
                    match *k {
                        "listeners" | "advertised.listeners" => v.push_str(&format!(",MTLS://127.0.0.1:{port}")),
                        "listener.security.protocol.map" => v.push_str(",MTLS:SSL"),
                        _ => {}
                    }
                }
                settings.extend(options.mtls_security());
            }
            for (k, v) in options.authorizer() {
                settings.retain(|(name, _)| *name != k);
                settings.push((k, v));
            }
            for (k, v) in &options.overrides {
                settings.retain(|(name, _)| name != k);
                settings.push((k.as_str(), v.clone()));
            }
            let mut text = String::from("# Written by kfn for a local Apache Kafka node.\n");
            for (k, v) in &settings {
                text.push_str(&format!("{k}={v}\n"));
            }
            let props = dir.join("server.properties");
            std::fs::write(&props, text).map_err(io(&props))?;
            let log4j = dir.join("log4j2.yaml");
            std::fs::write(&log4j, LOG4J).map_err(io(&log4j))?;
            specs.push(NodeSpec { id, port: ports[i], internal: internal_ports[i], dir });
        }
        // Format the nodes side by side: each format is a JVM start of a few seconds.
        let scram: Vec<String> = options
            .scram_users
            .iter()
            .flat_map(|(name, password)| {
                ["SCRAM-SHA-256", "SCRAM-SHA-512"].map(|m| format!("{m}=[name={name},password={password}]"))
            })
            .collect();
        let formats = specs.iter().map(|spec| {
            let (java, libs, cluster_id, dir) = (java.clone(), libs.clone(), cluster_id.clone(), spec.dir.clone());
            let scram = scram.clone();
            tokio::task::spawn_blocking(move || format_node(&java, &libs, &dir, &cluster_id, &scram))
        });
        for result in futures::future::join_all(formats).await {
            result.map_err(|e| LocalKafkaError::Step { step: "format".into(), detail: e.to_string() })??;
        }
        let bootstrap = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
        let mtls_bootstrap = (!mtls_ports.is_empty())
            .then(|| mtls_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(","));
        let mut kafka = LocalKafka {
            nodes: Vec::new(),
            specs,
            libs,
            quiet: options.quiet,
            bootstrap,
            mtls_bootstrap,
            root: Some(root),
        };
        // Start every node before waiting for any: a node serves clients only once the quorum has formed.
        for i in 0..kafka.specs.len() {
            let node = kafka.spawn(i)?;
            kafka.nodes.push(Some(node));
        }
        for i in 0..kafka.specs.len() {
            kafka.wait(i).await?;
        }
        Ok(kafka)
    }

    fn spawn(&self, index: usize) -> Result<LocalBroker, LocalKafkaError> {
        let spec = &self.specs[index];
        let java = maven::java(JAVA_FOR)?;
        let mut cmd = Command::new(java);
        cmd.args(["-Xms128m", "-Xmx768m", "-XX:+UseSerialGC", "-Djava.awt.headless=true"])
            .arg(format!("-Dlog4j2.configurationFile={}", spec.dir.join("log4j2.yaml").display()))
            .arg(format!("-Dkafka.logs.dir={}", spec.dir.join("logs").display()))
            .arg("-cp")
            .arg(classpath(&self.libs))
            .arg("kafka.Kafka")
            .arg(spec.dir.join("server.properties"));
        let output = if self.quiet {
            let log = spec.dir.join("node.log");
            let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).map_err(io(&log))?;
            let err = file.try_clone().map_err(io(&log))?;
            cmd.stdout(file).stderr(err);
            format!("its log is {}", log.display())
        } else {
            "its output is above".to_string()
        };
        LocalBroker::spawn(cmd, format!("127.0.0.1:{}", spec.internal), output)
            .map_err(|source| LocalKafkaError::Node { node: spec.id, source })
    }

    async fn wait(&self, index: usize) -> Result<(), LocalKafkaError> {
        let Some(node) = &self.nodes[index] else { return Ok(()) };
        node.wait_ready(Duration::from_secs(120))
            .await
            .map_err(|source| LocalKafkaError::Node { node: self.specs[index].id, source })
    }

    /// The bootstrap list, `host:port` comma-separated.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The bootstrap list of the mTLS listeners ([`KafkaOptions::mtls`]).
    pub fn mtls_bootstrap(&self) -> Option<&str> {
        self.mtls_bootstrap.as_deref()
    }

    /// `host:port` of every node, in node-id order (node `n` at index `n - 1`).
    pub fn addrs(&self) -> Vec<String> {
        self.specs.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect()
    }

    /// The process ids of the running nodes.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().flatten().map(LocalBroker::pid).collect()
    }

    /// Kills node `id` with SIGKILL (a crash, for tests); returns once it has exited.
    pub fn kill(&mut self, id: u32) {
        if let Some(node) = self.nodes.get_mut(id as usize - 1).and_then(Option::take) {
            node.kill();
        }
    }

    /// Starts node `id` again (after [`LocalKafka::kill`]) on its data and
    /// waits until it accepts connections.
    pub async fn restart(&mut self, id: u32) -> Result<(), LocalKafkaError> {
        let index = id as usize - 1;
        if self.nodes.get(index).is_some_and(Option::is_some) {
            return Ok(());
        }
        let node = self.spawn(index)?;
        self.nodes[index] = Some(node);
        self.wait(index).await
    }

    /// Stops every node (SIGTERM, then SIGKILL after 5 s) and removes the data kfn made.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        // Stop the nodes together: a node shutting down alone waits for the others' quorum.
        let stopping: Vec<_> =
            self.nodes.iter_mut().filter_map(Option::take).map(|n| std::thread::spawn(|| n.stop())).collect();
        for s in stopping {
            let _ = s.join();
        }
        if let Some(dir) = self.root.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Drop for LocalKafka {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// The ports a node listens on.
#[derive(Debug, Clone, Copy)]
struct Listening {
    /// Clients (the CLIENT listener: PLAINTEXT, or SASL and TLS as the options say).
    client: u16,
    /// What clients are told to connect to (a proxy in tests, else `client`).
    advertised: u16,
    /// Broker to broker: replication and transaction markers.
    internal: u16,
    /// The KRaft quorum.
    controller: u16,
}

/// The server.properties of node `id`: combined mode, three listeners, small and fast.
fn node_settings<'a>(
    id: u32,
    voters: &[String],
    at: Listening,
    replication: u32,
    dir: &Path,
) -> Vec<(&'a str, String)> {
    vec![
        ("process.roles", "broker,controller".to_string()),
        ("node.id", id.to_string()),
        ("controller.quorum.voters", voters.join(",")),
        (
            "listeners",
            format!(
                "CLIENT://127.0.0.1:{},INTERNAL://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
                at.client, at.internal, at.controller
            ),
        ),
        ("advertised.listeners", format!("CLIENT://127.0.0.1:{},INTERNAL://127.0.0.1:{}", at.advertised, at.internal)),
        ("controller.listener.names", "CONTROLLER".into()),
        ("listener.security.protocol.map", "CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT".into()),
        ("inter.broker.listener.name", "INTERNAL".into()),
        ("log.dirs", dir.join("data").display().to_string()),
        // Internal topics: replicated like the user's topics, one partition each (fast to create and load).
        ("offsets.topic.replication.factor", replication.to_string()),
        ("offsets.topic.num.partitions", "1".into()),
        ("transaction.state.log.replication.factor", replication.to_string()),
        ("transaction.state.log.min.isr", replication.min(2).to_string()),
        ("transaction.state.log.num.partitions", "1".into()),
        ("share.coordinator.state.topic.replication.factor", replication.to_string()),
        ("share.coordinator.state.topic.min.isr", replication.min(2).to_string()),
        ("share.coordinator.state.topic.num.partitions", "1".into()),
        // As in production: with three nodes an acknowledged write (acks=all) is on two of them.
        ("min.insync.replicas", replication.min(2).to_string()),
        // A group's first member need not wait 3 s for others.
        ("group.initial.rebalance.delay.ms", "0".into()),
        // The consumer group protocol (KIP-848) takes session and heartbeat from the broker:
        // a killed replica's partitions move after 10 s instead of 45, and members learn of a
        // new assignment within a second instead of five (as the classic protocol's kfn
        // defaults; a production broker keeps its own, see docs/guarantees.md).
        ("group.consumer.min.session.timeout.ms", "6000".into()),
        ("group.consumer.session.timeout.ms", "10000".into()),
        ("group.consumer.min.heartbeat.interval.ms", "1000".into()),
        ("group.consumer.heartbeat.interval.ms", "1000".into()),
        // Small and quick on a laptop: 2 MiB instead of 128 MiB for compaction, few threads.
        ("log.cleaner.dedupe.buffer.size", "2097152".into()),
        ("num.network.threads", "2".into()),
        ("num.io.threads", "4".into()),
        ("background.threads", "2".into()),
        ("log.initial.task.delay.ms", "100".into()),
        // Topics exist because functions.toml declares them, never because a client asked.
        ("auto.create.topics.enable", "false".into()),
        // ACLs can be created and listed (`kfn acls apply`); who may do what without
        // one is `KafkaOptions::authorizer` (everyone, unless ACLs are enforced).
        ("authorizer.class.name", "org.apache.kafka.metadata.authorizer.StandardAuthorizer".into()),
    ]
}

/// Removes the data of clusters whose kfn process is gone.
///
/// A cluster that lives as long as its process (the tests' shared broker) is
/// never dropped, so its directory, `kfn-kafka-<pid>-<port>`, outlives it.
fn remove_abandoned_data() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix("kfn-kafka-")).and_then(|rest| rest.split('-').next());
        if let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn classpath(libs: &Path) -> String {
    format!("{}/*", libs.display())
}

/// Formats a node's directory for `cluster_id` with the static quorum of its
/// properties, adding the SCRAM credentials `scram` (`MECHANISM=[name=..,password=..]`).
fn format_node(
    java: &Path,
    libs: &Path,
    dir: &Path,
    cluster_id: &str,
    scram: &[String],
) -> Result<(), LocalKafkaError> {
    let out = Command::new(java)
        // A short-lived JVM: the quick compiler only, shared classes.
        .args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"])
        .arg(format!("-Dlog4j2.configurationFile={}", dir.join("log4j2.yaml").display()))
        .arg("-cp")
        .arg(classpath(libs))
        .args(["kafka.tools.StorageTool", "format", "--cluster-id", cluster_id, "--config"])
        .arg(dir.join("server.properties"))
        .args(scram.iter().flat_map(|s| ["--add-scram", s.as_str()]))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LocalKafkaError::Step { step: "kafka.tools.StorageTool format".into(), detail: e.to_string() })?;
    if !out.status.success() {
        let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if detail.is_empty() {
            detail = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        return Err(LocalKafkaError::Step {
            step: format!("kafka.tools.StorageTool format {}", dir.display()),
            detail: format!("{}: {detail}", out.status),
        });
    }
    Ok(())
}

/// A cluster id as Kafka writes them: 16 random bytes, URL-safe base64, not starting with '-'.
fn random_id() -> String {
    loop {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
        if !id.starts_with('-') {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_look_like_kafkas() {
        for _ in 0..200 {
            let id = random_id();
            assert_eq!(id.len(), 22, "{id}");
            assert!(!id.starts_with('-'), "{id}");
            assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{id}");
        }
    }

    #[test]
    fn acls_are_enforced_only_when_asked_and_the_nodes_stay_super_users() {
        let open = KafkaOptions::default().authorizer();
        assert!(open.contains(&("allow.everyone.if.no.acl.found", "true".to_string())), "{open:?}");
        assert!(open.contains(&("super.users", "User:ANONYMOUS".to_string())), "{open:?}");
        let enforced =
            KafkaOptions { enforce_acls: true, super_users: vec!["kfn-admin".into()], ..KafkaOptions::default() }
                .authorizer();
        assert!(enforced.contains(&("allow.everyone.if.no.acl.found", "false".to_string())), "{enforced:?}");
        // Without ANONYMOUS the controller refuses the brokers' own requests (CLUSTER_ACTION).
        assert!(enforced.contains(&("super.users", "User:ANONYMOUS;User:kfn-admin".to_string())), "{enforced:?}");
    }

    #[test]
    fn the_mtls_listener_requires_a_certificate_and_maps_its_cn_to_the_user() {
        assert!(KafkaOptions::default().mtls_security().is_empty());
        let tls = ServerTls { keystore: "broker.pem".into(), client_ca: Some("ca.pem".into()) };
        let settings = KafkaOptions { mtls: Some(tls), ..KafkaOptions::default() }.mtls_security();
        for want in [
            ("listener.name.mtls.ssl.client.auth", "required"),
            ("listener.name.mtls.ssl.principal.mapping.rules", "RULE:^CN=([^,]+)$/$1/,DEFAULT"),
            ("listener.name.mtls.ssl.truststore.location", "ca.pem"),
        ] {
            assert!(settings.contains(&(want.0, want.1.to_string())), "{want:?} not in {settings:?}");
        }
    }

    #[test]
    fn the_pom_pins_the_broker_version() {
        assert!(POM.contains(&format!("<kafka.version>{VERSION}</kafka.version>")));
        assert!(POM.contains("log4j-slf4j-impl"), "without the SLF4J binding the broker logs nothing");
    }
}
