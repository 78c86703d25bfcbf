//! From raw TOML to validated types, collecting every error on the way.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::value::Value;
use figment::Figment;
use indexmap::IndexMap;
use serde::Deserialize;

use super::error::{Collector, ConfigErrors};
use super::raw::*;
use super::*;

mod aggregate;
mod inputs;
mod registry;
mod topic;

use aggregate::AggregateFields;
use topic::TopicDefaults;

/// The top level of the file; each section is validated on its own so one
/// bad section does not hide the errors of the others.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTop {
    runtime: Option<Value>,
    security: Option<Value>,
    local: Option<Value>,
    topic_defaults: Option<Value>,
    #[serde(default)]
    topics: BTreeMap<String, Value>,
    #[serde(default)]
    functions: BTreeMap<String, Value>,
}

pub(super) fn load(path: &Path, registry: &kfn_sdk::Registry, env: Env) -> Result<Config, ConfigErrors> {
    load_with(path, registry, Some(env))
}

pub(super) fn load_without_env(path: &Path, registry: &kfn_sdk::Registry) -> Result<Config, ConfigErrors> {
    load_with(path, registry, None)
}

fn load_with(path: &Path, registry: &kfn_sdk::Registry, env: Option<Env>) -> Result<Config, ConfigErrors> {
    if let Err(source) = std::fs::metadata(path) {
        return Err(ConfigErrors::Unreadable { path: path.to_path_buf(), source });
    }
    let mut figment = Figment::from(Toml::file_exact(path));
    if let Some(env) = env {
        figment = figment.merge(env);
    }
    validate(figment, path, registry)
}

/// Validates `text` as if it were the contents of `path` (no environment).
pub(super) fn load_str(path: &Path, text: &str, registry: &kfn_sdk::Registry) -> Result<Config, ConfigErrors> {
    validate(Figment::from(Toml::string(text)), path, registry)
}

/// Extracts and validates the merged sources; `path` names the file and is the base of relative paths.
fn validate(figment: Figment, path: &Path, registry: &kfn_sdk::Registry) -> Result<Config, ConfigErrors> {
    let mut c = Collector::new(path.display().to_string());
    let top: RawTop = match figment.extract() {
        Ok(top) => top,
        Err(e) => {
            c.figment("", e);
            return Err(ConfigErrors::Invalid(c.errors));
        }
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut v = Validator { c, base, registry, topic_defaults: TopicDefaults::default() };
    let runtime = v.runtime(top.runtime);
    let security = v.security(top.security);
    let local = v.local(top.local);
    v.topic_defaults = v.topic_defaults(top.topic_defaults);
    let mut topics = v.topics(top.topics);
    let (functions, derived) = v.functions(top.functions, &topics);
    // Materialized here, so whatever lists topics (creation, ACLs, `kfn dlq`) sees them as declared.
    topics.extend(derived);
    v.c.finish()?;
    Ok(Config { file: path.to_path_buf(), runtime, security, local, topics, functions })
}

struct Validator<'a> {
    c: Collector,
    base: PathBuf,
    registry: &'a kfn_sdk::Registry,
    /// `[topic_defaults]`, validated before the topics that inherit from it.
    topic_defaults: TopicDefaults,
}

impl Validator<'_> {
    fn section<T: for<'de> Deserialize<'de> + Default>(&mut self, prefix: &str, value: Option<Value>) -> T {
        match value.map(|v| v.deserialize::<T>().map_err(Box::new)) {
            None => T::default(),
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                self.c.figment(prefix, *e);
                T::default()
            }
        }
    }

    fn duration(&mut self, field: &str, text: Option<&str>, default: Duration) -> Duration {
        match text.map(parse_duration) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(expected)) => {
                self.c.push(field, format!("expected {expected}"));
                default
            }
        }
    }

    fn choice<T: Copy>(&mut self, field: &str, text: Option<&str>, default: T, options: &[(&str, T)]) -> T {
        let Some(text) = text else { return default };
        match options.iter().find(|(name, _)| name.eq_ignore_ascii_case(text)) {
            Some((_, value)) => *value,
            None => {
                let names: Vec<_> = options.iter().map(|(n, _)| format!("\"{n}\"")).collect();
                self.c.push(field, format!("expected one of {}, found {text:?}", names.join(", ")));
                default
            }
        }
    }

    fn runtime(&mut self, value: Option<Value>) -> RuntimeSettings {
        let raw: RawRuntime = self.section("runtime", value);
        let brokers = raw.brokers.unwrap_or_else(|| vec!["127.0.0.1:9092".into()]);
        if brokers.is_empty() {
            self.c.push("runtime.brokers", "expected at least one broker address \"host:port\"");
        }
        for (i, b) in brokers.iter().enumerate() {
            let ok = b.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                self.c.push(format!("runtime.brokers[{i}]"), format!("expected \"host:port\", found {b:?}"));
            }
        }
        let session_timeout =
            self.duration("runtime.session_timeout", raw.session_timeout.as_deref(), Duration::from_secs(10));
        let heartbeat_interval =
            self.duration("runtime.heartbeat_interval", raw.heartbeat_interval.as_deref(), session_timeout / 5);
        if heartbeat_interval >= session_timeout {
            self.c.push(
                "runtime.heartbeat_interval",
                format!(
                    "expected less than runtime.session_timeout ({session_timeout:?}), found {heartbeat_interval:?}"
                ),
            );
        }
        if session_timeout < Duration::from_secs(1) {
            self.c.push("runtime.session_timeout", format!("expected at least 1s, found {session_timeout:?}"));
        }
        let rebalance_timeout =
            self.duration("runtime.rebalance_timeout", raw.rebalance_timeout.as_deref(), Duration::from_secs(30));
        let auto_offset_reset = self.choice(
            "runtime.auto_offset_reset",
            raw.auto_offset_reset.as_deref(),
            OffsetReset::Earliest,
            &[("earliest", OffsetReset::Earliest), ("latest", OffsetReset::Latest)],
        );
        let isolation = self.choice(
            "runtime.isolation",
            raw.isolation.as_deref(),
            Isolation::ReadCommitted,
            &[("read_committed", Isolation::ReadCommitted), ("read_uncommitted", Isolation::ReadUncommitted)],
        );
        let transactional_producer = self.choice(
            "runtime.transactional_producer",
            raw.transactional_producer.as_deref(),
            TransactionalProducer::Auto,
            &[
                ("auto", TransactionalProducer::Auto),
                ("per_member", TransactionalProducer::PerMember),
                ("per_partition", TransactionalProducer::PerPartition),
            ],
        );
        let group_protocol = self.choice(
            "runtime.group_protocol",
            raw.group_protocol.as_deref(),
            GroupProtocol::Auto,
            &[
                ("auto", GroupProtocol::Auto),
                ("consumer", GroupProtocol::Consumer),
                ("classic", GroupProtocol::Classic),
            ],
        );
        let slow_handler = self.duration("runtime.slow_handler", raw.slow_handler.as_deref(), Duration::from_secs(5));
        let fetch_max_wait =
            self.duration("runtime.fetch_max_wait", raw.fetch_max_wait.as_deref(), Duration::from_millis(500));
        if !(Duration::from_millis(10)..=Duration::from_secs(30)).contains(&fetch_max_wait) {
            self.c.push("runtime.fetch_max_wait", format!("expected from 10ms to 30s, found {fetch_max_wait:?}"));
        }
        let shutdown_timeout =
            self.duration("runtime.shutdown_timeout", raw.shutdown_timeout.as_deref(), Duration::from_secs(10));
        let max_http_body = match raw.max_http_body.as_deref().map(parse_size) {
            None => 64 * 1024,
            Some(Ok(n)) => n,
            Some(Err(e)) => {
                self.c.push("runtime.max_http_body", format!("expected {e}"));
                64 * 1024
            }
        };
        let openapi = raw.openapi.and_then(|name| self.openapi(&name));
        let producer = self.producer(raw.producer.unwrap_or_default());
        let schema_registry_access =
            self.registry_access(raw.schema_registry.as_deref(), raw.schema_registry_auth, raw.schema_registry_tls);
        RuntimeSettings {
            brokers,
            schema_registry: raw.schema_registry,
            schema_registry_access,
            admin_addr: raw.admin_addr.unwrap_or_else(|| "127.0.0.1:9464".into()),
            http_addr: raw.http_addr.unwrap_or_else(|| "127.0.0.1:8080".into()),
            client_id: raw.client_id.unwrap_or_else(|| "kfn".into()),
            session_timeout,
            heartbeat_interval,
            rebalance_timeout,
            auto_offset_reset,
            isolation,
            transactional_producer,
            group_protocol,
            slow_handler,
            fetch_max_wait,
            shutdown_timeout,
            max_http_body,
            openapi,
            producer,
        }
    }

    /// `runtime.openapi`: a JSON file, relative to the config's directory.
    fn openapi(&mut self, name: &str) -> Option<OpenApi> {
        let path = self.base.join(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                self.c.push("runtime.openapi", format!("expected a readable JSON file, {}: {e}", path.display()));
                return None;
            }
        };
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
            self.c.push("runtime.openapi", format!("expected an OpenAPI document in JSON, {}: {e}", path.display()));
            return None;
        }
        Some(OpenApi { path, text })
    }

    fn producer(&mut self, raw: RawProducer) -> ProducerSettings {
        let linger = self.duration("runtime.producer.linger", raw.linger.as_deref(), Duration::from_millis(2));
        let request_timeout =
            self.duration("runtime.producer.request_timeout", raw.request_timeout.as_deref(), Duration::from_secs(30));
        let max_batch_bytes = match raw.max_batch_bytes.as_deref().map(parse_size) {
            None => 1 << 20,
            Some(Ok(n)) if n >= 1024 => n,
            Some(Ok(n)) => {
                self.c.push("runtime.producer.max_batch_bytes", format!("expected at least 1KiB, found {n} bytes"));
                1 << 20
            }
            Some(Err(e)) => {
                self.c.push("runtime.producer.max_batch_bytes", format!("expected {e}"));
                1 << 20
            }
        };
        let compression = self.choice(
            "runtime.producer.compression",
            raw.compression.as_deref(),
            Compression::Lz4,
            &[("none", Compression::None), ("lz4", Compression::Lz4), ("zstd", Compression::Zstd)],
        );
        ProducerSettings {
            linger,
            max_batch_bytes,
            compression,
            idempotent: raw.idempotent.unwrap_or(true),
            request_timeout,
        }
    }

    fn security(&mut self, value: Option<Value>) -> SecuritySettings {
        let raw: RawSecurity = self.section("security", value);
        let protocol = self.choice(
            "security.protocol",
            raw.protocol.as_deref(),
            SecurityProtocol::Plaintext,
            &[
                ("PLAINTEXT", SecurityProtocol::Plaintext),
                ("SSL", SecurityProtocol::Ssl),
                ("SASL_PLAINTEXT", SecurityProtocol::SaslPlaintext),
                ("SASL_SSL", SecurityProtocol::SaslSsl),
            ],
        );
        let wants_sasl = matches!(protocol, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl);
        let wants_tls = matches!(protocol, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl);
        let sasl = match (raw.sasl, wants_sasl) {
            (None, true) => {
                self.c.push(
                    "security.sasl",
                    "expected a table { mechanism, username, password_env } for a SASL protocol",
                );
                None
            }
            (Some(_), false) => {
                self.c.push(
                    "security.sasl",
                    "set, but security.protocol does not use SASL (use SASL_PLAINTEXT or SASL_SSL)",
                );
                None
            }
            (Some(s), true) => self.sasl(s),
            (None, false) => None,
        };
        let tls = match (raw.tls, wants_tls) {
            (Some(_), false) => {
                self.c.push("security.tls", "set, but security.protocol does not use TLS (use SSL or SASL_SSL)");
                None
            }
            (tls, true) => Some(self.tls(tls.unwrap_or_default())),
            (None, false) => None,
        };
        let per_function = raw.per_function.unwrap_or(false);
        if per_function && !wants_sasl {
            self.c.push(
                "security.per_function",
                "set, but security.protocol does not use SASL: each function's user is a SASL user (use SASL_SSL)",
            );
        }
        SecuritySettings { protocol, sasl, tls, per_function, function_passwords: Default::default() }
    }

    fn sasl(&mut self, raw: RawSasl) -> Option<SaslSettings> {
        const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
        let mechanism = raw.mechanism.to_ascii_uppercase();
        if !MECHANISMS.contains(&mechanism.as_str()) {
            self.c.push(
                "security.sasl.mechanism",
                format!("expected one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, found {:?}", raw.mechanism),
            );
        }
        if raw.username.is_empty() {
            self.c.push("security.sasl.username", "expected a user name, found an empty string");
        }
        let password = match std::env::var(&raw.password_env) {
            Ok(p) => p,
            Err(_) => {
                self.c.push(
                    "security.sasl.password_env",
                    format!("expected environment variable {} to hold the password; it is not set", raw.password_env),
                );
                return None;
            }
        };
        Some(SaslSettings { mechanism, username: raw.username, password_env: raw.password_env, password })
    }

    fn tls(&mut self, raw: RawTls) -> TlsSettings {
        let mut file = |field: &str, name: Option<String>| -> Option<PathBuf> {
            let path = self.base.join(name?);
            if !path.is_file() {
                self.c.push(
                    format!("security.tls.{field}"),
                    format!("expected a PEM file, {} does not exist", path.display()),
                );
            }
            Some(path)
        };
        let ca = file("ca", raw.ca);
        let cert = file("cert", raw.cert);
        let key = file("key", raw.key);
        if cert.is_some() != key.is_some() {
            self.c.push("security.tls", "expected both cert and key for a client certificate, or neither");
        }
        TlsSettings { ca_file: ca, cert_file: cert, key_file: key, server_name: raw.server_name }
    }

    fn local(&mut self, value: Option<Value>) -> LocalOverrides {
        let raw: RawLocal = self.section("local", value);
        let replication = raw.replication.and_then(|r| match i16::try_from(r) {
            Ok(r) if r >= 1 => Some(r),
            _ => {
                self.c.push("local.replication", format!("expected an integer from 1 to {}, found {r}", i16::MAX));
                None
            }
        });
        let seed = raw.seed.into_iter().map(|(topic, path)| (topic, PathBuf::from(path))).collect();
        LocalOverrides { replication, seed }
    }

    /// Checks that a schema file exists and is a valid Avro record schema.
    fn schema_file(&mut self, field: &str, path: &Path) -> Option<String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                self.c.push(field, format!("expected a readable Avro schema file, {}: {e}", path.display()));
                return None;
            }
        };
        match apache_avro::Schema::parse_str(&text) {
            Ok(apache_avro::Schema::Record(record)) => Some(record.name.fullname(None)),
            Ok(_) => {
                self.c.push(field, format!("expected an Avro record schema in {}", path.display()));
                None
            }
            Err(e) => {
                self.c.push(field, format!("expected a valid Avro schema in {}: {e}", path.display()));
                None
            }
        }
    }

    /// The functions, and the topics derived for them unless declared: dead-letter
    /// topics (`<function>.dlq`) and Idempotency-Key topics (`<function>.idempotency`).
    fn functions(
        &mut self,
        raw: BTreeMap<String, Value>,
        topics: &IndexMap<String, TopicSpec>,
    ) -> (IndexMap<String, FunctionSpec>, IndexMap<String, TopicSpec>) {
        let mut functions = IndexMap::new();
        let mut derived = IndexMap::new();
        let mut routes: HashMap<(String, String), String> = HashMap::new();
        for (name, value) in raw {
            let prefix = format!("functions.{name}");
            let raw: RawFunction = match value.deserialize() {
                Ok(f) => f,
                Err(e) => {
                    self.c.figment(&prefix, e);
                    continue;
                }
            };
            if let Some(spec) = self.function(&prefix, name.clone(), raw, topics) {
                let mut own = Vec::new();
                if let FunctionKind::Http { method, path } = &spec.kind {
                    own.push((format!("{prefix}.trigger.http"), method.clone(), path.clone()));
                }
                if let Some(path) = spec.aggregate.as_ref().and_then(|a| a.query_path.as_ref()) {
                    let field = format!("{prefix}.query.http.path");
                    own.push((field.clone(), "GET".to_string(), path.clone()));
                    own.push((field, "GET".to_string(), format!("{}/{{key}}", path.trim_end_matches('/'))));
                }
                for (field, method, path) in own {
                    let route = (method.clone(), normalise_route(&path));
                    if let Some(other) = routes.insert(route, name.clone()) {
                        self.c.push(
                            field,
                            format!("expected a route of its own, but {method} {path} is also the route of function {other}"),
                        );
                    }
                }
                if let Some(dlq) = spec.dead_letter.as_ref().filter(|d| !topics.contains_key(*d)) {
                    let input = spec.inputs().first().and_then(|i| topics.get(i));
                    derived.insert(dlq.clone(), self.dead_letter_topic(dlq.clone(), &name, input));
                }
                if let Some(topic) = spec.repartition().map(|r| &r.topic).filter(|t| !topics.contains_key(*t)) {
                    if let Some(derived_topic) = self.repartition_topic(topic.clone(), &spec, topics) {
                        derived.insert(topic.clone(), derived_topic);
                    }
                }
                if let Some(keys) = spec.idempotency_topic().filter(|t| !topics.contains_key(t)) {
                    let output = spec.outputs.values().next().and_then(|o| topics.get(o));
                    derived.insert(keys.clone(), self.idempotency_topic(keys, &name, output));
                }
                functions.insert(name, spec);
            }
        }
        self.shared_retry_topics(&functions);
        (functions, derived)
    }

    /// A retry topic read by anything but its own function would hand records to the wrong consumer.
    fn shared_retry_topics(&mut self, functions: &IndexMap<String, FunctionSpec>) {
        for (name, spec) in functions {
            let Some(delay) = &spec.retry.topic else { continue };
            let other = functions.iter().find(|(other, o)| {
                *other != name && (o.inputs().contains(delay) || o.retry.topic.as_deref() == Some(delay))
            });
            if let Some((other, _)) = other {
                self.c.push(
                    format!("functions.{name}.retry.topic"),
                    format!("expected a topic of its own, but function {other} also reads {delay:?}"),
                );
            }
        }
    }

    /// A table of a handler: a declared, compacted topic, looked up by a topic handler.
    fn table_ref(&mut self, field: &str, topic: &str, not_a_handler: bool, topics: &IndexMap<String, TopicSpec>) {
        if not_a_handler {
            self.c.push(field, "expected no tables: only topic handlers look tables up (ctx.table)");
        }
        match topics.get(topic) {
            None => self.topic_ref(field, topic, topics),
            Some(spec) if spec.cleanup_policy != CleanupPolicy::Compact => self.c.push(
                field,
                format!("expected a compacted topic (cleanup_policy = \"compact\"): a table holds each key's latest row, but {topic:?} deletes by retention"),
            ),
            Some(_) => {}
        }
    }

    fn topic_ref(&mut self, field: &str, topic: &str, topics: &IndexMap<String, TopicSpec>) {
        if !topics.contains_key(topic) {
            self.c.push(field, format!("expected a topic declared under [topics], found undeclared topic {topic:?}"));
        }
    }

    fn function(
        &mut self,
        prefix: &str,
        name: String,
        raw: RawFunction,
        topics: &IndexMap<String, TopicSpec>,
    ) -> Option<FunctionSpec> {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            self.c.push(prefix, "expected a function name of letters, digits, '_' and '-'");
        }
        let handler = match (&raw.handler, &raw.aggregate) {
            (Some(handler), None) => handler.clone(),
            (None, Some(fold)) => fold.clone(),
            (Some(_), Some(_)) => {
                self.c.push(prefix, "expected either `handler` or `aggregate` (a fold), not both");
                return None;
            }
            (None, None) => {
                self.c.push(
                    format!("{prefix}.handler"),
                    "missing: expected `handler` (a function) or `aggregate` (a fold)",
                );
                return None;
            }
        };
        let inputs = self.inputs(prefix, raw.input, raw.inputs).ok()?;
        let kind = match (inputs, raw.trigger) {
            (Some(inputs), None) if raw.aggregate.is_some() => {
                // Several inputs only through the repartition topic, which merges them.
                let regroups =
                    raw.group_by.is_some() || self.registry.aggregate_handler(&handler).is_some_and(|h| h.key_function);
                if inputs.len() != 1 && !regroups {
                    self.c.push(
                        format!("{prefix}.inputs"),
                        "expected one input: an aggregate's table partition p holds the state of input partition p \
                         (several inputs need `group_by` or a key function, which repartition them)",
                    );
                    return None;
                }
                for (i, (field, input)) in inputs.iter().enumerate() {
                    self.topic_ref(field, input, topics);
                    match self.registry.aggregate_handler(&handler) {
                        Some(fold) if i > 0 => self.check_input_event(field, input, &handler, &[fold.input], topics),
                        _ if i > 0 => {}
                        _ => self.check_fold(prefix, field, input, &handler, topics),
                    }
                }
                FunctionKind::Topic { inputs: inputs.into_iter().map(|(_, input)| input).collect() }
            }
            (Some(inputs), None) => {
                for (field, input) in &inputs {
                    self.topic_ref(field, input, topics);
                }
                let events: Vec<&str> = self.registry.topic_handlers(&handler).iter().map(|h| h.input).collect();
                if !events.is_empty() {
                    for (field, input) in &inputs {
                        self.check_input_event(field, input, &handler, &events, topics);
                    }
                } else if self.registry.http_handler(&handler).is_some() {
                    self.c.push(
                        format!("{prefix}.handler"),
                        format!("expected a topic handler, but {handler:?} is an HTTP handler (use trigger.http)"),
                    );
                } else {
                    self.unknown_handler(prefix, &handler);
                }
                FunctionKind::Topic { inputs: inputs.into_iter().map(|(_, input)| input).collect() }
            }
            (None, Some(_)) if raw.aggregate.is_some() => {
                self.c
                    .push(format!("{prefix}.trigger"), "expected `input` (a topic): an aggregate folds an input topic");
                return None;
            }
            (None, Some(trigger)) => {
                if self.registry.http_handler(&handler).is_none() {
                    if self.registry.topic_handler(&handler).is_some() {
                        self.c.push(
                            format!("{prefix}.handler"),
                            format!("expected an HTTP handler, but {handler:?} is a topic handler (use input)"),
                        );
                    } else {
                        self.unknown_handler(prefix, &handler);
                    }
                }
                let method = trigger.http.method.to_ascii_uppercase();
                if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                    self.c.push(
                        format!("{prefix}.trigger.http.method"),
                        format!("expected GET, POST, PUT, PATCH or DELETE, found {:?}", trigger.http.method),
                    );
                }
                if !trigger.http.path.starts_with('/') {
                    self.c.push(
                        format!("{prefix}.trigger.http.path"),
                        format!("expected a path starting with '/', found {:?}", trigger.http.path),
                    );
                }
                FunctionKind::Http { method, path: trigger.http.path }
            }
            (Some(_), Some(_)) => {
                self.c.push(prefix, "expected either `input`/`inputs` (topics) or `trigger.http`, not both");
                return None;
            }
            (None, None) => {
                self.c.push(
                    format!("{prefix}.input"),
                    "missing: expected `input` (a topic), `inputs` (several) or `trigger.http`",
                );
                return None;
            }
        };
        for (output, topic) in &raw.outputs {
            let field = format!("{prefix}.outputs.{output}");
            self.topic_ref(&field, topic, topics);
            if topics.get(topic).is_some_and(|t| t.schema.is_none()) {
                self.c.push(
                    &field,
                    format!("expected topic {topic:?} to declare a schema: function {name} writes events to it"),
                );
            }
        }
        for (table, topic) in &raw.tables {
            let field = format!("{prefix}.tables.{table}");
            self.table_ref(&field, topic, raw.aggregate.is_some() || inputs_empty(&kind), topics);
        }
        let guarantee = self.choice(
            &format!("{prefix}.guarantee"),
            raw.guarantee.as_deref(),
            Guarantee::AtLeastOnce,
            &[("at_least_once", Guarantee::AtLeastOnce), ("exactly_once", Guarantee::ExactlyOnce)],
        );
        let ordering = self.choice(
            &format!("{prefix}.ordering"),
            raw.ordering.as_deref(),
            Ordering::Partition,
            &[("partition", Ordering::Partition), ("key", Ordering::Key)],
        );
        let max_in_flight = match raw.max_in_flight {
            None => 256,
            Some(n) if (1..=100_000).contains(&n) => n as usize,
            Some(n) => {
                self.c.push(
                    format!("{prefix}.max_in_flight"),
                    format!("expected an integer from 1 to 100000, found {n}"),
                );
                256
            }
        };
        let retry = raw.retry.map(|r| self.retry(&format!("{prefix}.retry"), r)).unwrap_or_default();
        let inputs = match &kind {
            FunctionKind::Topic { inputs } => inputs.clone(),
            FunctionKind::Http { .. } => Vec::new(),
        };
        // A topic function that names no dead-letter topic gets `<function>.dlq`.
        let dead_letter = raw.dead_letter.clone().or_else(|| (!inputs.is_empty()).then(|| format!("{name}.dlq")));
        if let Some(dlq) = &dead_letter {
            let field = format!("{prefix}.dead_letter");
            if raw.dead_letter.is_some() {
                self.topic_ref(&field, dlq, topics);
            }
            if inputs.contains(dlq) || raw.outputs.values().any(|o| o == dlq) {
                self.c.push(
                    &field,
                    format!("expected a topic of its own, but {dlq:?} is also this function's input or output"),
                );
            }
        }
        if let Some(delay) = &retry.topic {
            let taken: Vec<&str> =
                inputs.iter().chain(raw.outputs.values()).chain(dead_letter.as_ref()).map(String::as_str).collect();
            let field = format!("{prefix}.retry.topic");
            if inputs.is_empty() {
                self.c.push(&field, "expected none: an HTTP function reports errors to its caller instead");
            } else if raw.aggregate.is_some() {
                self.c.push(&field, "expected none: an aggregate folds records in order, so it retries in place");
            } else {
                self.retry_topic(&field, delay, &retry, &taken, topics);
            }
        }
        if inputs.is_empty() {
            if guarantee == Guarantee::ExactlyOnce {
                self.c.push(format!("{prefix}.guarantee"), "expected at_least_once: exactly_once needs an input topic");
            }
            if raw.dead_letter.is_some() {
                self.c.push(
                    format!("{prefix}.dead_letter"),
                    "expected none: an HTTP function reports errors to its caller instead",
                );
            }
        }
        let start_from = raw.start_from.as_deref().map(|s| {
            self.choice(
                &format!("{prefix}.start_from"),
                Some(s),
                OffsetReset::Earliest,
                &[("earliest", OffsetReset::Earliest), ("latest", OffsetReset::Latest)],
            )
        });
        let aggregate = self.aggregate_spec(
            prefix,
            &name,
            &raw.aggregate,
            &inputs,
            &raw.outputs,
            AggregateFields { window: &raw.window, grace: &raw.grace, query: &raw.query, group_by: &raw.group_by },
            topics,
        );
        Some(FunctionSpec {
            name,
            handler,
            kind,
            outputs: raw.outputs,
            guarantee,
            ordering,
            max_in_flight,
            retry,
            dead_letter,
            start_from,
            doc: raw.doc,
            aggregate,
            tables: raw.tables,
        })
    }

    fn unknown_handler(&mut self, prefix: &str, handler: &str) {
        let known: Vec<_> = self
            .registry
            .topic_names()
            .chain(self.registry.http_names())
            .chain(self.registry.aggregate_names())
            .collect();
        self.c.push(
            format!("{prefix}.handler"),
            format!(
                "expected a handler registered in functions/, found {handler:?} (registered: {})",
                known.join(", ")
            ),
        );
    }

    /// A retry topic is the function's own delay line: no other role, and only where waiting out of order is allowed.
    fn retry_topic(
        &mut self,
        field: &str,
        delay: &str,
        retry: &RetryPolicy,
        taken: &[&str],
        topics: &IndexMap<String, TopicSpec>,
    ) {
        if taken.contains(&delay) {
            // Said alone: a derived dead-letter topic is not under [topics] yet, and "undeclared" would mislead.
            self.c.push(
                field,
                format!(
                    "expected a topic of its own, but {delay:?} is also this function's input, output or dead_letter"
                ),
            );
        } else {
            self.topic_ref(field, delay, topics);
        }
        if retry.max_attempts < 2 {
            self.c.push(field, "expected max_attempts of at least 2: with one attempt nothing is ever retried");
        }
        if let Some(topic) = topics.get(delay) {
            if topic.cleanup_policy != CleanupPolicy::Delete {
                self.c.push(
                    field,
                    format!("expected a delete topic: compaction of {delay:?} would drop a key's waiting records"),
                );
            }
            if topic.retention.is_some_and(|r| r < retry.max_backoff * 2) {
                self.c.push(
                    field,
                    format!("expected {delay:?} to keep records at least twice max_backoff ({:?}), so none expires while it waits", retry.max_backoff),
                );
            }
        }
    }

    fn retry(&mut self, prefix: &str, raw: RawRetry) -> RetryPolicy {
        let d = RetryPolicy::default();
        let max_attempts = match u32::try_from(raw.max_attempts) {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                self.c.push(
                    format!("{prefix}.max_attempts"),
                    format!("expected an integer from 1 to 1000, found {}", raw.max_attempts),
                );
                1
            }
        };
        let backoff = self.duration(&format!("{prefix}.backoff"), raw.backoff.as_deref(), d.backoff);
        let max_backoff =
            self.duration(&format!("{prefix}.max_backoff"), raw.max_backoff.as_deref(), d.max_backoff.max(backoff));
        if max_backoff < backoff {
            self.c.push(
                format!("{prefix}.max_backoff"),
                format!("expected at least the initial backoff ({backoff:?}), found {max_backoff:?}"),
            );
        }
        if max_attempts > 1 && backoff.is_zero() {
            self.c.push(format!("{prefix}.backoff"), "expected a positive duration when retries are allowed, found 0");
        }
        let multiplier = raw.multiplier.unwrap_or(d.multiplier);
        if !(1.0..=100.0).contains(&multiplier) {
            self.c.push(
                format!("{prefix}.multiplier"),
                format!("expected a number from 1.0 to 100.0, found {multiplier}"),
            );
        }
        RetryPolicy {
            max_attempts,
            backoff,
            max_backoff,
            multiplier,
            jitter: raw.jitter.unwrap_or(d.jitter),
            topic: raw.topic,
        }
    }
}

/// `/orders/{id}` and `/orders/{order_id}` are the same route.
fn normalise_route(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') && seg.ends_with('}') { "{}" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

fn inputs_empty(kind: &FunctionKind) -> bool {
    matches!(kind, FunctionKind::Http { .. })
}
