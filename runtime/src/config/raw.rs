//! functions.toml as written: serde types that reject unknown fields.
//!
//! These types are only the input of validation ([`super::validate`]); the
//! rest of kfn sees the validated types of [`super`].

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::Deserialize;

/// The `[runtime]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuntime {
    pub brokers: Option<Vec<String>>,
    pub schema_registry: Option<String>,
    pub schema_registry_auth: Option<RawRegistryAuth>,
    pub schema_registry_tls: Option<RawRegistryTls>,
    pub admin_addr: Option<String>,
    pub http_addr: Option<String>,
    pub client_id: Option<String>,
    pub session_timeout: Option<String>,
    pub heartbeat_interval: Option<String>,
    pub rebalance_timeout: Option<String>,
    pub auto_offset_reset: Option<String>,
    pub isolation: Option<String>,
    pub transactional_producer: Option<String>,
    pub group_protocol: Option<String>,
    pub slow_handler: Option<String>,
    pub fetch_max_wait: Option<String>,
    pub shutdown_timeout: Option<String>,
    pub max_http_body: Option<String>,
    pub openapi: Option<String>,
    pub producer: Option<RawProducer>,
}

/// `[runtime.schema_registry_auth]`: HTTP basic auth to the registry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistryAuth {
    pub username: String,
    pub password_env: String,
}

/// `[runtime.schema_registry_tls]`: trust for an `https://` registry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistryTls {
    pub ca: Option<String>,
}

/// `[runtime.producer]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProducer {
    pub linger: Option<String>,
    pub max_batch_bytes: Option<String>,
    pub compression: Option<String>,
    pub idempotent: Option<bool>,
    pub request_timeout: Option<String>,
}

/// The `[security]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecurity {
    pub protocol: Option<String>,
    pub sasl: Option<RawSasl>,
    pub tls: Option<RawTls>,
    pub per_function: Option<bool>,
}

/// `security.sasl`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSasl {
    pub mechanism: String,
    pub username: String,
    pub password_env: String,
}

/// `security.tls`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub server_name: Option<String>,
}

/// The `[local]` table: overrides `kfn dev` applies to a single-node broker.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocal {
    pub replication: Option<i64>,
    #[serde(default)]
    pub seed: IndexMap<String, String>,
}

/// The `[topic_defaults]` table: what a topic gets for a field it does not set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTopicDefaults {
    pub partitions: Option<i64>,
    pub replication: Option<i64>,
    pub retention: Option<String>,
    pub cleanup_policy: Option<String>,
    pub configs: Option<BTreeMap<String, String>>,
}

/// One `[topics."name"]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTopic {
    pub partitions: Option<i64>,
    pub replication: Option<i64>,
    pub retention: Option<String>,
    pub key: Option<String>,
    pub schema: Option<String>,
    pub format: Option<String>,
    pub cleanup_policy: Option<String>,
    pub configs: Option<BTreeMap<String, String>>,
    pub doc: Option<String>,
}

/// One `[functions.name]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFunction {
    pub handler: Option<String>,
    pub aggregate: Option<String>,
    pub window: Option<String>,
    pub grace: Option<String>,
    pub query: Option<RawQuery>,
    pub group_by: Option<String>,
    pub input: Option<String>,
    pub inputs: Option<Vec<String>>,
    pub trigger: Option<RawTrigger>,
    #[serde(default)]
    pub outputs: IndexMap<String, String>,
    pub guarantee: Option<String>,
    pub ordering: Option<String>,
    pub max_in_flight: Option<i64>,
    pub retry: Option<RawRetry>,
    pub dead_letter: Option<String>,
    pub start_from: Option<String>,
    #[serde(default)]
    pub tables: IndexMap<String, String>,
    pub doc: Option<String>,
}

/// `functions.NAME.trigger`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrigger {
    pub http: RawHttpTrigger,
}

/// `functions.NAME.trigger.http`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpTrigger {
    pub method: String,
    pub path: String,
}

/// `functions.NAME.retry`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub max_attempts: i64,
    pub backoff: Option<String>,
    pub max_backoff: Option<String>,
    pub multiplier: Option<f64>,
    pub jitter: Option<bool>,
    pub topic: Option<String>,
}

/// `functions.NAME.query` (aggregates only).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuery {
    pub http: RawQueryHttp,
}

/// `functions.NAME.query.http`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueryHttp {
    pub path: String,
}
