//! A whole kfn application in a test: kfn's own schema registry on a free
//! port, functions.toml written to a temporary directory, topics created,
//! the [`App`] started with the test's handlers, and helpers to write input
//! records and to await what the application does, always with a deadline.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use kfn_tests::app::{Item, TestApp, ITEM_TOPIC};
//! let mut handlers = kfn_sdk::Registry::default();
//! handlers.handler("echo", |_ctx, item: Item| async move { Ok(kfn_sdk::Emit::one("out", item.id.clone(), item)) });
//! let toml = format!(
//!     "{ITEM_TOPIC}\n{}",
//!     r#"[topics."out-{s}"]
//! partitions = 1
//! replication = 1
//! schema = "schemas/test_item.avsc"
//! [topics."dlq-{s}"]
//! partitions = 1
//! replication = 1
//! [functions.echo-{s}]
//! handler = "echo"
//! input = "in-{s}"
//! outputs = { out = "out-{s}" }
//! dead_letter = "dlq-{s}"
//! "#
//! );
//! let app = TestApp::start(&toml, handlers).await?;
//! app.produce(&app.name("in-{s}"), "k", &Item::new("k", 1, "ok")).await?;
//! let out = app.watch(&app.name("out-{s}")).await?.wait_for_count(1).await?;
//! app.stop().await;
//! # Ok(()) }
//! ```

use kfn::kafka_settings::{ClusterFromConfig, EnsureTopics};
use std::fmt::Debug;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use kfn::app::{self, App, Running};
use kfn::config::Config;
use kfn::kafka::consumer::{LogEnd, PartitionReader};
use kfn::kafka::fetch::{ConsumedRecord, FetchLimits, Isolation};
use kfn::kafka::group::protocol::TopicPartition;
use kfn::kafka::producer::partitioner::partition_for_key;
use kfn::kafka::producer::ProducerRecord;
use kfn::kafka::{Admin, Cluster};
use kfn::registry::{RegistryConfig, RegistryServer};
use kfn_sdk::Event;
use tokio::sync::{watch, Notify};

/// How long a test waits for something the application should do.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The Avro schema of [`Item`], written to `schemas/test_item.avsc`.
pub const ITEM_SCHEMA: &str = r#"{"type": "record", "name": "Item", "namespace": "kfn.test", "fields": [
  {"name": "id", "type": "string"},
  {"name": "seq", "type": "int"},
  {"name": "mode", "type": "string"}
]}"#;

/// An input topic `in-{s}` of [`Item`] events with one partition.
pub const ITEM_TOPIC: &str = r#"[topics."in-{s}"]
partitions = 1
replication = 1
schema = "schemas/test_item.avsc"
"#;

/// The event of the runtime tests: `mode` tells the test's handler what to do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Item {
    /// The record's identity (also used as its key).
    pub id: String,
    /// Its position in the test's sequence.
    pub seq: i32,
    /// What the handler should do with it (test-defined).
    pub mode: String,
}

impl Item {
    /// An item.
    pub fn new(id: &str, seq: i32, mode: &str) -> Self {
        Item { id: id.to_string(), seq, mode: mode.to_string() }
    }
}

impl Event for Item {
    const NAME: &'static str = "kfn.test.Item";
}

/// A running application of one test.
pub struct TestApp {
    /// The application (config, cluster, metrics, producer, encoders).
    pub app: Arc<App>,
    /// The suffix `{s}` stands for in the test's TOML.
    pub suffix: String,
    /// Holds functions.toml and schemas/ for as long as the test runs.
    pub dir: tempfile::TempDir,
    registry: Option<RegistryServer>,
    shutdown: watch::Sender<bool>,
    running: Option<Running>,
}

impl TestApp {
    /// Starts the application declared by `toml` (topics and functions;
    /// `{s}` becomes a suffix unique to this test) with `handlers`, and
    /// waits until every function holds its partitions.
    pub async fn start(toml: &str, handlers: kfn_sdk::Registry) -> anyhow::Result<TestApp> {
        Self::start_with_schemas(toml, handlers, &[]).await
    }

    /// Like [`TestApp::start`], with extra `schemas/<name>` files (name, text).
    pub async fn start_with_schemas(
        toml: &str,
        handlers: kfn_sdk::Registry,
        schemas: &[(&str, &str)],
    ) -> anyhow::Result<TestApp> {
        let suffix = crate::unique("rt");
        let dir = tempfile::tempdir()?;
        write_schemas(dir.path(), schemas)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let registry_config = RegistryConfig { topic: format!("_schemas-{suffix}"), ..RegistryConfig::default() };
        let registry = RegistryServer::start(crate::cluster(), listener, registry_config)
            .await
            .context("starting the schema registry")?;
        let brokers: Vec<String> = crate::bootstrap().iter().map(|b| format!("{b:?}")).collect();
        let text = format!(
            "[runtime]\nbrokers = [{}]\nschema_registry = \"http://{}\"\nadmin_addr = \"127.0.0.1:0\"\nhttp_addr = \"127.0.0.1:0\"\n\
             session_timeout = \"6s\"\nauto_offset_reset = \"earliest\"\nshutdown_timeout = \"5s\"\n\n\
             [runtime.producer]\nlinger = \"1ms\"\n\n[local]\nreplication = 1\n\n{}",
            brokers.join(", "),
            registry.local_addr(),
            toml.replace("{s}", &suffix)
        );
        let path = dir.path().join("functions.toml");
        std::fs::write(&path, &text)?;
        let mut config =
            Config::load_file_only(&path, &handlers).map_err(|e| anyhow!("{e}\n--- functions.toml ---\n{text}"))?;
        config.apply_local_overrides();
        Admin::new(Cluster::from_config(&config)?)
            .ensure_topics(config.topics.values())
            .await
            .context("creating topics")?;
        let app = Arc::new(App::new(config, handlers).await.context("App::new")?);
        let (shutdown, stop) = watch::channel(false);
        let running = app::start(app.clone(), &[], stop).await.context("app::start")?;
        let test = TestApp { app, suffix, dir, registry: Some(registry), shutdown, running: Some(running) };
        test.await_assignments().await?;
        Ok(test)
    }

    /// `template` with `{s}` replaced by this test's suffix.
    pub fn name(&self, template: &str) -> String {
        template.replace("{s}", &self.suffix)
    }

    /// Where the HTTP trigger listens, when the application serves routes.
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.running.as_ref().and_then(|r| r.listening.http)
    }

    /// The cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.app.cluster
    }

    /// Waits until every function received its first assignment.
    async fn await_assignments(&self) -> anyhow::Result<()> {
        let Some(running) = &self.running else { return Ok(()) };
        let deadline = Instant::now() + DEADLINE;
        loop {
            let waiting = running.readiness.waiting();
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("functions without an assignment after {DEADLINE:?}: {waiting:?}");
            }
            // Readiness offers no change notification to await; poll it briefly.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Writes `item` to `topic`, Confluent-framed with the topic's registered
    /// schema, on the key's partition; returns (partition, offset).
    pub async fn produce<E: Event + Debug>(&self, topic: &str, key: &str, event: &E) -> anyhow::Result<(i32, i64)> {
        let record =
            ProducerRecord::new(Some(Bytes::from(key.to_string())), Some(self.encode(topic, event)?), now_ms());
        let partition = self.partition_of(topic, key.as_bytes()).await?;
        let offset = self.produce_records(topic, partition, vec![record]).await?;
        Ok((partition, offset))
    }

    /// The Confluent-framed value of `event` for `topic`.
    pub fn encode<E: Event + Debug>(&self, topic: &str, event: &E) -> anyhow::Result<Bytes> {
        let encoder = self.app.encoders.get(topic).ok_or_else(|| anyhow!("topic {topic} has no schema"))?;
        let mut value = Vec::new();
        encoder.encode(event, &mut value)?;
        Ok(Bytes::from(value))
    }

    /// The partition kfn's partitioner puts `key` on.
    pub async fn partition_of(&self, topic: &str, key: &[u8]) -> anyhow::Result<i32> {
        Ok(partition_for_key(key, self.app.partitions(topic).await?))
    }

    /// Writes records to one partition in one produce call (one batch when
    /// small); returns the offset of the first.
    pub async fn produce_records(
        &self,
        topic: &str,
        partition: i32,
        records: Vec<ProducerRecord>,
    ) -> anyhow::Result<i64> {
        Ok(self.app.producer.send(&TopicPartition::new(topic, partition), records).await?)
    }

    /// A reader of every partition of `topic` from its first offset.
    pub async fn watch(&self, topic: &str) -> anyhow::Result<TopicWatcher> {
        TopicWatcher::new(self.app.cluster.clone(), topic).await
    }

    /// The value of one sample of the Prometheus text, e.g.
    /// `kfn_handler_panics_total{function="f"}`; 0 when absent.
    pub fn metric(&self, sample: &str) -> f64 {
        let text = self.app.metrics.render();
        text.lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.trim().parse::<f64>().ok()))
            .unwrap_or(0.0)
    }

    /// Stops the functions (finishing in-flight work) and starts a new [`App`]
    /// on the same functions.toml, topics and registry, with `handlers`: the
    /// new one keeps nothing of the old one's memory.
    pub async fn restart(mut self, handlers: kfn_sdk::Registry) -> anyhow::Result<TestApp> {
        let _ = self.shutdown.send(true);
        if let Some(running) = self.running.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), running.wait()).await;
        }
        let path = self.dir.path().join("functions.toml");
        let mut config = Config::load_file_only(&path, &handlers).map_err(|e| anyhow!("{e}"))?;
        config.apply_local_overrides();
        let app = Arc::new(App::new(config, handlers).await.context("App::new")?);
        let (shutdown, stop) = watch::channel(false);
        let running = app::start(app.clone(), &[], stop).await.context("app::start")?;
        let test = TestApp {
            app,
            suffix: self.suffix,
            dir: self.dir,
            registry: self.registry,
            shutdown,
            running: Some(running),
        };
        test.await_assignments().await?;
        Ok(test)
    }

    /// Stops the functions (finishing in-flight work), then the registry.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(running) = self.running.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), running.wait()).await;
        }
        if let Some(registry) = self.registry.take() {
            registry.stop().await;
        }
    }
}

fn write_schemas(dir: &Path, extra: &[(&str, &str)]) -> anyhow::Result<()> {
    let schemas = dir.join("schemas");
    std::fs::create_dir_all(&schemas)?;
    // The system's own schemas, so a test may use its topics' event types.
    for entry in std::fs::read_dir(crate::workspace_root().join("schemas"))? {
        let entry = entry?;
        // Only the files: schemas/evolution/ holds example versions, not the system's schemas.
        if !entry.file_type()?.is_file() {
            continue;
        }
        std::fs::copy(entry.path(), schemas.join(entry.file_name()))?;
    }
    std::fs::write(schemas.join("test_item.avsc"), ITEM_SCHEMA)?;
    for (name, text) in extra {
        std::fs::write(schemas.join(name), text)?;
    }
    Ok(())
}

pub use kfn_sdk::now_ms;

/// Reads every partition of a topic as records arrive, keeping all it saw.
pub struct TopicWatcher {
    topic: String,
    readers: Vec<PartitionReader>,
    /// Every record read so far, with its partition, in the order read.
    pub records: Vec<(i32, ConsumedRecord)>,
}

impl TopicWatcher {
    /// A watcher of `topic` from the first offset of each partition.
    pub async fn new(cluster: Cluster, topic: &str) -> anyhow::Result<TopicWatcher> {
        cluster.invalidate(topic);
        let info = cluster.topic(topic).await?;
        let limits = FetchLimits { max_wait: Duration::from_millis(200), ..FetchLimits::default() };
        let readers = info
            .partitions
            .iter()
            .map(|p| {
                PartitionReader::new(
                    cluster.clone(),
                    TopicPartition::new(topic, p.partition),
                    0,
                    Isolation::ReadCommitted,
                    LogEnd::Earliest,
                )
                .with_limits(limits)
            })
            .collect();
        Ok(TopicWatcher { topic: topic.to_string(), readers, records: Vec::new() })
    }

    /// Reads until `done(records)` holds, or fails after [`DEADLINE`].
    pub async fn wait_until(
        &mut self,
        what: &str,
        done: impl Fn(&[(i32, ConsumedRecord)]) -> bool,
    ) -> anyhow::Result<&[(i32, ConsumedRecord)]> {
        let deadline = Instant::now() + DEADLINE;
        while !done(&self.records) {
            if Instant::now() > deadline {
                bail!("{}: {what} not seen within {DEADLINE:?}; read {} records", self.topic, self.records.len());
            }
            let fetches = self.readers.iter_mut().map(|r| async move {
                let partition = r.partition().partition;
                r.next().await.map(|d| (partition, d.records))
            });
            for result in futures::future::join_all(fetches).await {
                let (partition, records) = result?;
                self.records.extend(records.into_iter().map(|r| (partition, r)));
            }
        }
        Ok(&self.records)
    }

    /// Reads until at least `n` records were seen.
    pub async fn wait_for_count(&mut self, n: usize) -> anyhow::Result<&[(i32, ConsumedRecord)]> {
        self.wait_until(&format!("{n} records"), |r| r.len() >= n).await
    }
}

/// Events a test's handlers record, with a way to await a condition on them.
pub struct Recorder<T> {
    events: Mutex<Vec<T>>,
    changed: Notify,
}

impl<T: Clone + Debug> Default for Recorder<T> {
    fn default() -> Self {
        Recorder { events: Mutex::new(Vec::new()), changed: Notify::new() }
    }
}

impl<T: Clone + Debug> Recorder<T> {
    /// A new recorder, shared between handlers and the test.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records one event.
    pub fn push(&self, event: T) {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).push(event);
        self.changed.notify_waiters();
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<T> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until `done(events)` holds, or fails after [`DEADLINE`].
    pub async fn wait_until(&self, what: &str, done: impl Fn(&[T]) -> bool) -> anyhow::Result<Vec<T>> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            // Registered before the check, so a push between the check and the wait is not missed.
            let changed = self.changed.notified();
            let events = self.events();
            if done(&events) {
                return Ok(events);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                bail!("{what} not seen within {DEADLINE:?}; events: {events:?}");
            }
        }
    }
}

/// The value of header `name` of a record as text.
pub fn header<'a>(record: &'a ConsumedRecord, name: &str) -> Option<&'a str> {
    record
        .headers
        .iter()
        .find(|h| h.name == name)
        .and_then(|h| h.value.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
}
