//! The configuration: functions.toml plus `KFN_*` environment overrides,
//! parsed once into validated types.
//!
//! ```no_run
//! # fn my_app_registry() -> kfn_sdk::Registry { kfn_sdk::Registry::default() }
//! let registry = my_app_registry(); // the handlers of your crate
//! let config = kfn::config::Config::load("functions.toml".as_ref(), &registry)?;
//! for (name, function) in &config.functions {
//!     println!("{name}: {:?}", function.kind);
//! }
//! # Ok::<(), kfn::config::ConfigErrors>(())
//! ```
//!
//! Environment overrides use `KFN_` and `__` between levels:
//! `KFN_RUNTIME__BROKERS='["kafka-1:9092"]'`, `KFN_RUNTIME__SESSION_TIMEOUT=10s`.
//! Secrets never appear in the file: `security.sasl.password_env` and
//! `runtime.schema_registry_auth.password_env` name the variable that holds
//! the password.

mod error;
mod principal;
mod raw;
mod repartition;
#[cfg(test)]
mod repartition_tests;
#[cfg(test)]
mod tests;
mod units;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;

pub use error::{ConfigError, ConfigErrors};
pub use principal::{function_password_env, function_user, FunctionPasswords, PrincipalError};
pub use repartition::{repartition_topic, GroupBy, Repartition, REPARTITION_OUTPUT, REPARTITION_SUFFIX};
pub use units::{parse_duration, parse_size};

/// The validated configuration of one kfn deployment.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// Connection and timing settings.
    pub runtime: RuntimeSettings,
    /// How kfn authenticates and encrypts its connections.
    pub security: SecuritySettings,
    /// Overrides for a single-node local broker (`kfn dev`).
    pub local: LocalOverrides,
    /// Every topic the system uses, by name, in file order.
    pub topics: IndexMap<String, TopicSpec>,
    /// Every function, by name, in file order.
    pub functions: IndexMap<String, FunctionSpec>,
}

impl Config {
    /// Reads `path` and the `KFN_*` environment, and validates them against the handlers of `registry`.
    pub fn load(path: &Path, registry: &kfn_sdk::Registry) -> Result<Self, ConfigErrors> {
        // Only nested keys (KFN_RUNTIME__BROKERS) are config; KFN_LOG, KFN_CONFIG and the like are not.
        let env = figment::providers::Env::prefixed("KFN_").filter(|key| key.as_str().contains("__")).split("__");
        validate::load(path, registry, env)
    }

    /// Like [`Config::load`], without environment overrides (for tests and tools).
    pub fn load_file_only(path: &Path, registry: &kfn_sdk::Registry) -> Result<Self, ConfigErrors> {
        validate::load_without_env(path, registry)
    }

    /// Validates `text` as the contents of the file `path` (which need not
    /// exist; relative paths in `text` are resolved from its directory), without
    /// environment overrides. The entry point of the `config` fuzz target.
    #[doc(hidden)]
    pub fn load_str(path: &Path, text: &str, registry: &kfn_sdk::Registry) -> Result<Self, ConfigErrors> {
        validate::load_str(path, text, registry)
    }

    /// The directory paths in the file are relative to.
    pub fn base_dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }

    /// Applies the `[local]` overrides for a single-node broker, returning what changed.
    pub fn apply_local_overrides(&mut self) -> Vec<String> {
        let mut changed = Vec::new();
        if let Some(replication) = self.local.replication {
            for topic in self.topics.values_mut() {
                if topic.replication != replication {
                    changed.push(format!("{}: replication {} -> {}", topic.name, topic.replication, replication));
                    topic.replication = replication;
                }
            }
        }
        changed
    }
}

/// Where the brokers are and how long things may take.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// The Schema Registry URL (`http://` or `https://`).
    pub schema_registry: Option<String>,
    /// Credentials and CA for the registry (`runtime.schema_registry_auth`,
    /// `runtime.schema_registry_tls`); pass it to [`crate::avro::RegistryClient::with_access`].
    pub schema_registry_access: RegistryAccess,
    /// Address of /metrics, /healthz, /readyz.
    pub admin_addr: String,
    /// Address of the HTTP trigger.
    pub http_addr: String,
    /// The Kafka client id.
    pub client_id: String,
    /// Group session timeout: a member silent this long is thrown out.
    pub session_timeout: Duration,
    /// Interval between heartbeats.
    pub heartbeat_interval: Duration,
    /// How long the group waits for members to rejoin.
    pub rebalance_timeout: Duration,
    /// Where a group with no committed offset starts.
    pub auto_offset_reset: OffsetReset,
    /// Whether to read only committed transactional records.
    pub isolation: Isolation,
    /// How exactly_once functions hold their transactions.
    pub transactional_producer: TransactionalProducer,
    /// Which consumer group protocol the functions' members speak.
    pub group_protocol: GroupProtocol,
    /// A handler slower than this is logged and counted.
    pub slow_handler: Duration,
    /// How long a fetch may wait at the broker for new records.
    pub fetch_max_wait: Duration,
    /// How long shutdown waits for in-flight work.
    pub shutdown_timeout: Duration,
    /// The largest HTTP request body accepted.
    pub max_http_body: u64,
    /// The HTTP trigger's OpenAPI document (JSON), served at `GET /openapi.json`.
    pub openapi: Option<OpenApi>,
    /// Producer settings.
    pub producer: ProducerSettings,
}

/// An OpenAPI document, read and checked to be JSON when the config is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenApi {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its text (JSON).
    pub text: String,
}

/// Producer settings shared by every function.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    /// How long a batch waits for more records.
    pub linger: Duration,
    /// The largest batch in bytes.
    pub max_batch_bytes: u64,
    /// Batch compression.
    pub compression: Compression,
    /// Idempotent produce (on by default).
    pub idempotent: bool,
    /// How long one produce request may take.
    pub request_timeout: Duration,
}

/// How kfn reaches the registry: the Avro client's own type.
pub use crate::avro::RegistryAccess;

/// Record batch compression: the Kafka layer's own type (functions.toml accepts none, lz4 and zstd).
pub use crate::kafka::producer::Compression;

/// Where a new consumer group starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// From the first record still kept.
    Earliest,
    /// From records written after the group starts.
    Latest,
}

/// How an exactly_once function holds its transactions, and so how a member
/// that lost its partitions (a zombie) is kept from committing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionalProducer {
    /// [`PerMember`](Self::PerMember) where the brokers check group
    /// generations in TxnOffsetCommit and wait out open transactions in
    /// OffsetFetch (Apache Kafka 2.5 and later), else
    /// [`PerPartition`](Self::PerPartition).
    Auto,
    /// One transactional producer per running function (KIP-447, Kafka
    /// Streams' exactly_once_v2): one transaction at a time carries the chunks
    /// of all its partitions, and the group generation fences a zombie.
    PerMember,
    /// One transactional producer per input partition
    /// (`kfn.<function>.<topic>.<partition>`): the next owner's InitProducerId
    /// fences a zombie; works on every broker with transactions.
    PerPartition,
}

/// Transaction isolation of reads: the Kafka layer's own type.
pub use crate::kafka::fetch::Isolation;
/// The consumer group protocol: the Kafka layer's own type.
pub use crate::kafka::group::member::GroupProtocol;

/// How kfn connects to the brokers.
#[derive(Debug, Clone, Default)]
pub struct SecuritySettings {
    /// PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    pub protocol: SecurityProtocol,
    /// SASL credentials, when the protocol uses SASL.
    pub sasl: Option<SaslSettings>,
    /// TLS settings, when the protocol uses TLS.
    pub tls: Option<TlsSettings>,
    /// Each function authenticates as its own user `kfn-<function>` (see
    /// [`SecuritySettings::for_function`]); `sasl` stays the identity of
    /// everything else (the tools, the lag exporter, the HTTP trigger's reads).
    pub per_function: bool,
    /// Passwords of the functions' users given by the program rather than the
    /// environment (`kfn dev --secure` makes them).
    pub function_passwords: FunctionPasswords,
}

/// The Kafka security protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// No authentication, no encryption.
    #[default]
    Plaintext,
    /// TLS only.
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

/// SASL credentials; the password came from the environment.
#[derive(Clone)]
pub struct SaslSettings {
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    pub mechanism: String,
    /// The user name.
    pub username: String,
    /// The environment variable the password was read from.
    pub password_env: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for SaslSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslSettings")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password_env", &self.password_env)
            .finish_non_exhaustive()
    }
}

/// TLS files, resolved relative to the config file: the Kafka layer's own
/// settings type, filled by validation (one type, one name).
pub use crate::kafka::security::TlsSettings;

/// Overrides `kfn dev` applies for a single-node broker.
#[derive(Debug, Clone, Default)]
pub struct LocalOverrides {
    /// Replication factor of every topic on the local broker.
    pub replication: Option<i16>,
    /// Topics `kfn dev` fills, when run without `--connect`, from the rows an
    /// SQL file inserts into the table of the topic's name (Debezium snapshot
    /// events, see `dev::seed`); paths relative to functions.toml.
    pub seed: IndexMap<String, PathBuf>,
}

/// A topic as declared.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    /// The topic's name.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Replication factor.
    pub replication: i16,
    /// How long records are kept (None: the broker's default).
    pub retention: Option<Duration>,
    /// Delete or compact.
    pub cleanup_policy: CleanupPolicy,
    /// What the record key is (documentation; e.g. `order_id`).
    pub key: Option<String>,
    /// The value schema file, resolved against the config's directory.
    pub schema: Option<PathBuf>,
    /// The Avro full name of the record `schema` declares: the topic's event type.
    pub event: Option<String>,
    /// How record values are encoded: Avro (Confluent-framed) or JSON.
    pub format: TopicFormat,
    /// Further broker configs, passed through.
    pub configs: BTreeMap<String, String>,
    /// What the topic carries, for the event catalog.
    pub doc: Option<String>,
}

impl TopicSpec {
    /// The broker-side configs of the topic (retention.ms, cleanup.policy, and the rest).
    pub fn broker_configs(&self) -> BTreeMap<String, String> {
        let mut configs = self.configs.clone();
        if let Some(retention) = self.retention {
            configs.insert("retention.ms".into(), retention.as_millis().to_string());
        }
        configs.insert("cleanup.policy".into(), self.cleanup_policy.as_str().into());
        configs
    }
}

/// How a topic's record values are encoded (`format` in functions.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TopicFormat {
    /// Avro with the Confluent framing (magic byte, schema id): what kfn writes.
    #[default]
    Avro,
    /// JSON as Kafka Connect's JsonConverter writes it, with or without its
    /// `{"schema", "payload"}` wrapper (e.g. Debezium's change events). kfn
    /// reads such topics; it does not write them. The topic's `schema`, if
    /// any, only names its event type: the registry is not asked.
    Json,
}

impl TopicFormat {
    /// Its name in functions.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            TopicFormat::Avro => "avro",
            TopicFormat::Json => "json",
        }
    }
}

/// The cleanup policy of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    /// Delete old segments by retention.
    Delete,
    /// Keep the last value of each key.
    Compact,
    /// Keep the last value of each key, and delete it once older than the
    /// retention (`compact,delete`): what kfn derives for an HTTP function's
    /// Idempotency-Key topic, whose keys expire.
    CompactDelete,
}

impl CleanupPolicy {
    /// The broker's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }
}

/// A function as declared.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// The function's name (the key under `[functions]`).
    pub name: String,
    /// The registered handler it runs.
    pub handler: String,
    /// What triggers it.
    pub kind: FunctionKind,
    /// Output name -> topic.
    pub outputs: IndexMap<String, String>,
    /// At-least-once or exactly-once.
    pub guarantee: Guarantee,
    /// Partition order or key order.
    pub ordering: Ordering,
    /// Most handler calls at once per partition (ordering = "key"; one per key).
    pub max_in_flight: usize,
    /// How failures are retried.
    pub retry: RetryPolicy,
    /// Where records that keep failing go: `dead_letter`, or `<function>.dlq`
    /// for a topic function that names none (then a topic of [`Config::topics`] too).
    pub dead_letter: Option<String>,
    /// Where a new group starts; overrides `runtime.auto_offset_reset`.
    pub start_from: Option<OffsetReset>,
    /// What the function does, for the event catalog.
    pub doc: Option<String>,
    /// Set when the function is an aggregate (`handler` is then its fold).
    pub aggregate: Option<AggregateSpec>,
    /// Tables the handler looks up (`ctx.table(name)`): name -> compacted topic.
    pub tables: IndexMap<String, String>,
}

/// What makes a topic function an aggregate: a fold into a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateSpec {
    /// The table topic (the output named `table`): compacted, partitioned like the input.
    pub table: String,
    /// The tumbling window length, when windowed.
    pub window: Option<Duration>,
    /// How long after a window's end its late records are still merged.
    pub grace: Duration,
    /// The path of the pull query (`GET path`, `GET path/{key}`), when served.
    pub query_path: Option<String>,
    /// Set when kfn regroups the input by a key it is not keyed by (`group_by`
    /// or a key function): the fold then reads the internal topic.
    pub repartition: Option<Repartition>,
}

impl FunctionSpec {
    /// The consumer group of the function.
    pub fn group_id(&self) -> String {
        format!("kfn.{}", self.name)
    }

    /// The Idempotency-Key topic of an HTTP function, `<function>.idempotency`
    /// (a topic of [`Config::topics`] too, derived unless declared): the
    /// answers the HTTP trigger remembers by key, shared by every replica
    /// (see `kfn::trigger::idempotency`). None for topic functions.
    pub fn idempotency_topic(&self) -> Option<String> {
        matches!(self.kind, FunctionKind::Http { .. }).then(|| format!("{}.idempotency", self.name))
    }

    /// The input topics (empty for HTTP functions); an aggregate has one.
    pub fn inputs(&self) -> &[String] {
        match &self.kind {
            FunctionKind::Topic { inputs } => inputs,
            FunctionKind::Http { .. } => &[],
        }
    }

    /// The field path of input `i` in messages: `functions.<name>.input` for
    /// a function of one input, `functions.<name>.inputs[i]` for several.
    pub fn input_field(&self, i: usize) -> String {
        match self.inputs().len() {
            1 => format!("functions.{}.input", self.name),
            _ => format!("functions.{}.inputs[{i}]", self.name),
        }
    }
}

/// What triggers a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FunctionKind {
    /// Records of one or more input topics.
    Topic {
        /// The input topics, at least one (`input = "t"` or `inputs = [...]`).
        inputs: Vec<String>,
    },
    /// An HTTP route.
    Http {
        /// The method, upper case.
        method: String,
        /// The path, with `{name}` segments.
        path: String,
    },
}

/// The delivery guarantee of a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarantee {
    /// Produce, then commit: nothing lost, duplicates possible after a crash.
    AtLeastOnce,
    /// Outputs and offsets in one transaction.
    ExactlyOnce,
}

/// Processing order within a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordering {
    /// One record at a time, in offset order.
    Partition,
    /// Different keys in parallel, each key in order.
    Key,
}

/// How a failing record is retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts, the first included.
    pub max_attempts: u32,
    /// Wait before the second attempt.
    pub backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Growth of the wait per attempt.
    pub multiplier: f64,
    /// Randomise waits to spread retries.
    pub jitter: bool,
    /// The delay topic a failing record waits in, so later records go on (None: retry in place).
    pub topic: Option<String>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: true,
            topic: None,
        }
    }
}
