//! The one local stack every scenario runs against: a fresh local broker
//! (Apache Kafka 4.4, one KRaft node, or tansu in memory; free ports) and
//! kfn's schema registry, plus the topic helpers the scenarios need.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use kfn::dev::{BrokerKind, LocalCluster, LocalOptions};

use kfn::kafka::consumer::{list_offset, LogEnd, PartitionReader};
use kfn::kafka::fetch::{FetchLimits, Isolation};
use kfn::kafka::group::protocol::TopicPartition;
use kfn::kafka::{Admin, Cluster, ConnectOptions, NewTopic};
use kfn::registry::{RegistryConfig, RegistryServer};

/// The broker, the registry, and where the run's files go.
pub struct Stack {
    broker: LocalCluster,
    registry: RegistryServer,
    /// A cluster handle on the broker.
    pub cluster: Cluster,
    /// `http://host:port` of the registry.
    pub registry_url: String,
    /// The workspace root (functions.toml, schemas/).
    pub root: PathBuf,
    /// Where configs and service logs of this run go.
    pub run_dir: PathBuf,
    /// Where the benchmark binaries are (target/release).
    pub bin_dir: PathBuf,
    /// The broker's processes, to read their CPU time.
    pub broker_pids: Vec<u32>,
}

impl Stack {
    /// Starts the broker (of `kind`) and the registry.
    pub async fn start(kind: BrokerKind, root: &Path, run_dir: &Path, bin_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
        let options = LocalOptions { kind, nodes: 1, port: None, advertised_ports: None, quiet: true };
        let broker = LocalCluster::start(options).await.context("starting the local broker")?;
        let cluster = Cluster::new(broker.brokers(), ConnectOptions::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let registry = RegistryServer::start(cluster.clone(), listener, RegistryConfig::default())
            .await
            .context("starting the schema registry")?;
        let registry_url = format!("http://{}", registry.local_addr());
        Ok(Self {
            registry,
            cluster,
            registry_url,
            root: root.to_path_buf(),
            run_dir: run_dir.to_path_buf(),
            bin_dir: bin_dir.to_path_buf(),
            broker_pids: broker.pids(),
            broker,
        })
    }

    /// CPU time the broker has used so far (zero for a process that could not be read).
    pub fn broker_cpu(&self) -> Duration {
        self.broker_pids.iter().filter_map(|pid| crate::procfs::cpu_time(*pid).ok()).sum()
    }

    /// The ports of the broker's bootstrap list (its client listeners).
    pub fn broker_ports(&self) -> Vec<u16> {
        self.brokers().split(',').filter_map(|b| b.trim().rsplit_once(':')?.1.parse().ok()).collect()
    }

    /// The broker's bootstrap list.
    pub fn brokers(&self) -> String {
        self.broker.bootstrap()
    }

    /// Which broker runs.
    pub fn kind(&self) -> BrokerKind {
        self.broker.kind()
    }

    /// The OrderCreated schema file.
    pub fn order_schema(&self) -> PathBuf {
        self.root.join("schemas/order_created.avsc")
    }

    /// Creates a topic (replication 1).
    pub async fn create_topic(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        let topic = NewTopic { name: name.to_string(), partitions, replication: 1, configs: Default::default() };
        Admin::new(self.cluster.clone()).create_topics(&[topic]).await.with_context(|| format!("creating {name}"))?;
        Ok(())
    }

    /// Deletes topics, so a long run does not fill the broker's memory.
    pub async fn delete_topics(&self, names: &[&str]) -> anyhow::Result<()> {
        use kafka_protocol::messages::{DeleteTopicsRequest, TopicName};
        use kafka_protocol::protocol::StrBytes;
        let conn = self.cluster.controller().await?;
        // Up to v5 topics go by name alone; v6 would want `topics` instead.
        let version = conn.version_capped::<DeleteTopicsRequest>(5)?;
        let request = DeleteTopicsRequest::default()
            .with_topic_names(names.iter().map(|n| TopicName(StrBytes::from_string(n.to_string()))).collect())
            .with_timeout_ms(30_000);
        let response = conn.send_version(&request, version, Duration::ZERO).await?;
        for r in response.responses {
            anyhow::ensure!(r.error_code == 0, "deleting {:?}: error code {}", r.name, r.error_code);
        }
        Ok(())
    }

    /// Offsets written to `topic` so far (records, and the transaction markers among them):
    /// the sum of its partitions' log end offsets.
    pub async fn count(&self, topic: &str, partitions: i32) -> anyhow::Result<i64> {
        let ends = (0..partitions).map(|p| self.log_end(TopicPartition::new(topic, p)));
        let ends = futures::future::try_join_all(ends).await.with_context(|| format!("counting {topic}"))?;
        Ok(ends.iter().sum())
    }

    /// The offset after the last record of a partition.
    ///
    /// The local broker answers ListOffsets(latest) with the last batch's *base* offset + 1
    /// (seen with tansu 0.6: 923 where the log ends at 1631), so the last batch is fetched
    /// too and the end read from it: one small fetch per partition.
    async fn log_end(&self, tp: TopicPartition) -> Result<i64, kfn::kafka::KafkaError> {
        let listed = list_offset(&self.cluster, &tp, LogEnd::Latest, Isolation::ReadUncommitted).await?;
        if listed == 0 {
            return Ok(0);
        }
        let limits = FetchLimits { max_wait: Duration::from_millis(10), ..FetchLimits::default() };
        let mut reader =
            PartitionReader::new(self.cluster.clone(), tp, listed - 1, Isolation::ReadUncommitted, LogEnd::Latest)
                .with_limits(limits);
        let last = reader.next().await?;
        Ok(last.next_fetch_offset.max(listed))
    }

    /// Stops the registry, then the broker.
    pub async fn stop(self) {
        self.registry.stop().await;
        self.broker.stop();
    }
}

/// The path of a binary built beside the running one.
pub fn sibling_binary(bin_dir: &Path, name: &str) -> PathBuf {
    bin_dir.join(name)
}
