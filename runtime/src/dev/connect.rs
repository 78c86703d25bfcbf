//! Kafka Connect 4.4 as a local worker for `kfn dev --connect` and the tests:
//! one distributed worker on the local broker, a child process that never
//! outlives kfn, with Debezium's PostgreSQL source and JDBC sink as plugins.
//!
//! The jars come from Maven Central like the broker's (see
//! [`super::apache_kafka`]): kfn writes its pinned poms (`connect/*.pom.xml`
//! beside this file) into the cache and runs `mvn dependency:copy-dependencies`
//! once per pom: the worker's classpath, and one folder per plugin under the
//! worker's `plugin.path` (Connect loads each in isolation). The worker keeps
//! its configs, offsets and statuses in three topics of the broker, named
//! after its group, and its REST API listens on 127.0.0.1.
//!
//! Connector configs name hosts and secrets as `${env:NAME}`: the worker's
//! `env` config provider reads them from its environment, which
//! [`ConnectOptions::env`] sets (e.g. [`postgres_env`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use kfn::dev::connect::{ConnectOptions, LocalConnect};
//! let connect = LocalConnect::start(ConnectOptions::new("127.0.0.1:9092")).await?;
//! println!("REST API: {}", connect.url());
//! connect.stop();
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::broker::{remove_abandoned_dirs, LocalBroker, Signals};
use super::maven::{self, Install, Jars, MavenError};
use super::ports::free_port;
use super::postgres::LocalPostgres;
use super::tansu::{cache_dir, InstallError as CacheError};
use crate::connect::ConnectClient;

/// The Kafka Connect version kfn runs locally.
pub const VERSION: &str = "4.4.0";

/// The worker's classpath.
const WORKER_POM: &str = include_str!("connect/worker.pom.xml");
/// The plugins: (folder under plugin.path, pom).
const PLUGINS: &[(&str, &str)] = &[
    ("debezium-postgres", include_str!("connect/debezium-postgres.pom.xml")),
    ("debezium-jdbc", include_str!("connect/debezium-jdbc.pom.xml")),
];
/// The worker's log configuration (properties: the YAML parser is not on Connect's classpath).
const LOG4J: &str = include_str!("connect/log4j2.properties");

/// Why the local Kafka Connect could not be installed or started.
#[derive(Debug, thiserror::Error)]
pub enum LocalConnectError {
    /// Its jars could not be installed, or java is missing.
    #[error("Kafka Connect {VERSION}: {0}")]
    Install(#[from] MavenError),
    /// No cache directory.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A step of installing failed.
    #[error("Kafka Connect {VERSION}: `{step}` failed: {detail}")]
    Step {
        /// What was being done.
        step: String,
        /// Its error, exit status or output.
        detail: String,
    },
    /// A file could not be written.
    #[error("Kafka Connect {VERSION}: cannot write {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The worker exited, or its REST API did not answer in time.
    #[error("the Kafka Connect worker on {url} {what}; {output}")]
    NotReady {
        /// Its REST URL.
        url: String,
        /// What happened.
        what: String,
        /// Where its output is.
        output: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LocalConnectError + '_ {
    move |source| LocalConnectError::Io { path: path.to_path_buf(), source }
}

/// Where the installed jars are.
#[derive(Debug, Clone)]
pub struct ConnectJars {
    /// The worker's classpath folder.
    pub libs: PathBuf,
    /// The worker's `plugin.path`: one folder per plugin.
    pub plugins: PathBuf,
}

/// Installs the worker's and the plugins' jars (first time, or after a pom changed).
///
/// `KFN_CONNECT_HOME` overrides the folder (holding `libs/` and `plugins/`).
pub fn ensure_installed() -> Result<ConnectJars, LocalConnectError> {
    if let Some(dir) = std::env::var_os("KFN_CONNECT_HOME") {
        let dir = PathBuf::from(dir);
        return Ok(ConnectJars { libs: dir.join("libs"), plugins: dir.join("plugins") });
    }
    let dir = cache_dir()?.join(format!("kafka-connect-{VERSION}"));
    let jars = ConnectJars { libs: dir.join("libs"), plugins: dir.join("plugins") };
    let plugin_folders: Vec<PathBuf> = PLUGINS.iter().map(|(name, _)| jars.plugins.join(name)).collect();
    let mut sets = vec![Jars { name: "worker", pom: WORKER_POM, folder: &jars.libs }];
    sets.extend(PLUGINS.iter().zip(&plugin_folders).map(|((name, pom), folder)| Jars { name, pom, folder }));
    Install {
        what: &format!("Kafka Connect {VERSION} and its Debezium plugins"),
        dir: &dir,
        jars: &sets,
        java_for: JAVA_FOR,
        mvn_for: "to fetch Kafka Connect's and Debezium's jars from Maven Central once",
    }
    .ensure()?;
    Ok(jars)
}

/// What java is for, in the error when it is missing.
const JAVA_FOR: &str = "a Java 17 or newer runtime runs the worker";

/// The environment connector configs read as `${env:KFN_POSTGRES_*}`: where
/// `db` listens, its user, password and database.
pub fn postgres_env(db: &LocalPostgres) -> Vec<(String, String)> {
    use super::postgres::{DATABASE, USER};
    [
        ("KFN_POSTGRES_HOST", "127.0.0.1".to_string()),
        ("KFN_POSTGRES_PORT", db.port().to_string()),
        ("KFN_POSTGRES_USER", USER.to_string()),
        // Trust authentication: any password is accepted, but the connectors require one.
        ("KFN_POSTGRES_PASSWORD", USER.to_string()),
        ("KFN_POSTGRES_DATABASE", DATABASE.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// How to run the local worker.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The broker's bootstrap list.
    pub bootstrap: String,
    /// The REST API's port on 127.0.0.1; None: a free port.
    pub port: Option<u16>,
    /// The worker group, also the prefix of its three storage topics.
    pub group: String,
    /// Replication of the storage topics (1 on a single local broker).
    pub replication: u16,
    /// Environment of the worker, read by connector configs as `${env:NAME}`.
    pub env: Vec<(String, String)>,
    /// Discard the worker's output (it goes to a log file; else to stderr).
    pub quiet: bool,
}

impl ConnectOptions {
    /// A worker of group `kfn-connect` on `bootstrap`, on a free port, quiet.
    pub fn new(bootstrap: &str) -> Self {
        Self {
            bootstrap: bootstrap.to_string(),
            port: None,
            group: "kfn-connect".into(),
            replication: 1,
            env: Vec::new(),
            quiet: true,
        }
    }
}

/// A running local Kafka Connect worker; stopped on [`LocalConnect::stop`] or drop.
pub struct LocalConnect {
    worker: Option<LocalBroker>,
    url: String,
    root: Option<PathBuf>,
}

impl LocalConnect {
    /// Installs Kafka Connect if needed, starts the worker and waits until its REST API answers.
    pub async fn start(options: ConnectOptions) -> Result<Self, LocalConnectError> {
        let jars = tokio::task::spawn_blocking(ensure_installed)
            .await
            .map_err(|e| LocalConnectError::Step { step: "install".into(), detail: e.to_string() })??;
        let java = maven::java(JAVA_FOR)?;
        let port = match options.port {
            Some(p) => p,
            None => free_port()
                .map_err(|e| LocalConnectError::Step { step: "choose a port".into(), detail: e.to_string() })?,
        };
        let url = format!("http://127.0.0.1:{port}");
        remove_abandoned_dirs("kfn-connect-");
        let root = std::env::temp_dir().join(format!("kfn-connect-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        let props = root.join("worker.properties");
        std::fs::write(&props, worker_properties(&options, port, &jars.plugins)).map_err(io(&props))?;
        let log4j = root.join("log4j2.properties");
        std::fs::write(&log4j, LOG4J).map_err(io(&log4j))?;
        let mut cmd = Command::new(java);
        cmd.args(["-Xms128m", "-Xmx768m", "-XX:+UseSerialGC", "-Djava.awt.headless=true"])
            .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
            .arg("-cp")
            .arg(format!("{}/*", jars.libs.display()))
            .arg("org.apache.kafka.connect.cli.ConnectDistributed")
            .arg(&props)
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&root);
        let output = if options.quiet {
            let log = root.join("worker.log");
            let file = std::fs::File::create(&log).map_err(io(&log))?;
            let err = file.try_clone().map_err(io(&log))?;
            cmd.stdout(file).stderr(err);
            format!("its log is {}", log.display())
        } else {
            "its output is above".to_string()
        };
        // Stopped with SIGTERM (it leaves its group, flushes source offsets); but
        // when kfn dies, SIGKILL: with the broker gone too, its shutdown waits forever.
        let signals = Signals { stop: libc::SIGTERM, parent_death: libc::SIGKILL };
        let worker = LocalBroker::spawn_stopped_by(cmd, format!("127.0.0.1:{port}"), output, signals).map_err(|e| {
            LocalConnectError::NotReady { url: url.clone(), what: format!("did not start: {e}"), output: String::new() }
        })?;
        let connect = LocalConnect { worker: Some(worker), url, root: Some(root) };
        connect.wait_ready(Duration::from_secs(180)).await?;
        Ok(connect)
    }

    /// Waits until the REST API answers, failing early if the worker exited.
    async fn wait_ready(&self, limit: Duration) -> Result<(), LocalConnectError> {
        let start = Instant::now();
        let client = self.client();
        let mut pauses = crate::backoff::Pauses::new(Duration::from_millis(100), Duration::from_millis(500));
        let Some(worker) = self.worker.as_ref() else { return Ok(()) };
        loop {
            if let Some(status) = worker.exited() {
                return Err(LocalConnectError::NotReady {
                    url: self.url.clone(),
                    what: format!("exited during startup ({status})"),
                    output: worker.output().to_string(),
                });
            }
            match client.version().await {
                Ok(_) => return Ok(()),
                Err(e) if start.elapsed() > limit => {
                    return Err(LocalConnectError::NotReady {
                        url: self.url.clone(),
                        what: format!("did not answer within {} s ({e})", limit.as_secs()),
                        output: worker.output().to_string(),
                    })
                }
                Err(_) => {
                    pauses.pause().await;
                }
            }
        }
    }

    /// The REST API's URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client of the REST API.
    pub fn client(&self) -> ConnectClient {
        // The URL is ours and valid: http, a host and a port.
        ConnectClient::new(&self.url).unwrap_or_else(|e| unreachable!("{e}"))
    }

    /// The worker's process id.
    pub fn pid(&self) -> Option<u32> {
        self.worker.as_ref().map(LocalBroker::pid)
    }

    /// Stops the worker (SIGTERM: it leaves its group and commits offsets) and removes its directory.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.stop();
        }
        if let Some(root) = self.root.take() {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

impl Drop for LocalConnect {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// The worker's properties: distributed mode on the local broker, JSON converters, small and quick.
fn worker_properties(options: &ConnectOptions, port: u16, plugins: &Path) -> String {
    let group = &options.group;
    let replication = options.replication;
    let settings: Vec<(&str, String)> = vec![
        ("bootstrap.servers", options.bootstrap.clone()),
        ("group.id", group.clone()),
        ("listeners", format!("http://127.0.0.1:{port}")),
        ("rest.advertised.host.name", "127.0.0.1".into()),
        ("rest.advertised.port", port.to_string()),
        ("config.storage.topic", format!("{group}.configs")),
        ("offset.storage.topic", format!("{group}.offsets")),
        ("status.storage.topic", format!("{group}.status")),
        ("config.storage.replication.factor", replication.to_string()),
        ("offset.storage.replication.factor", replication.to_string()),
        ("status.storage.replication.factor", replication.to_string()),
        // One partition each: a local worker has little to store, and fewer partitions start faster.
        ("offset.storage.partitions", "1".into()),
        ("status.storage.partitions", "1".into()),
        // kfn's JSON topics: JsonConverter, the converter every connector here uses.
        ("key.converter", "org.apache.kafka.connect.json.JsonConverter".into()),
        ("value.converter", "org.apache.kafka.connect.json.JsonConverter".into()),
        ("plugin.path", plugins.display().to_string()),
        // Connector configs say ${env:KFN_POSTGRES_PORT} instead of a port that changes every run.
        ("config.providers", "env".into()),
        ("config.providers.env.class", "org.apache.kafka.common.config.provider.EnvVarConfigProvider".into()),
        // Source offsets (e.g. Debezium's LSN) flushed every second, not every minute:
        // a worker restarted in a test re-sends less.
        ("offset.flush.interval.ms", "1000".into()),
        // A second worker (a restart) joins at once instead of waiting for the first's 5 min lease.
        ("scheduled.rebalance.max.delay.ms", "0".into()),
    ];
    let mut text = String::from("# Written by kfn for a local Kafka Connect worker.\n");
    for (k, v) in settings {
        text.push_str(&format!("{k}={v}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poms_pin_the_versions() {
        assert!(WORKER_POM.contains(&format!("<kafka.version>{VERSION}</kafka.version>")));
        assert!(WORKER_POM.contains("log4j-slf4j-impl"), "without the SLF4J binding the worker logs nothing");
        for (name, pom) in PLUGINS {
            assert!(pom.contains("<debezium.version>3."), "{name}");
            assert!(
                pom.contains("org.apache.kafka,org.slf4j,com.fasterxml.jackson.core"),
                "{name}: the worker's jars serve it"
            );
        }
    }

    #[test]
    fn the_worker_stores_its_state_in_topics_named_after_its_group() {
        let mut options = ConnectOptions::new("127.0.0.1:9092");
        options.group = "g".into();
        let text = worker_properties(&options, 18083, Path::new("/p"));
        for line in [
            "group.id=g",
            "config.storage.topic=g.configs",
            "offset.storage.topic=g.offsets",
            "status.storage.topic=g.status",
            "listeners=http://127.0.0.1:18083",
            "plugin.path=/p",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from:\n{text}");
        }
    }
}
