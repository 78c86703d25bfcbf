//! The running application: schemas registered, every function started, the
//! HTTP trigger and the admin endpoints served, all stopped together.

use crate::kafka_settings::{ClusterFromConfig, ConnectOptionsFromSettings, EnsureTopics};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kfn_sdk::{TableLookup, TopicHandler};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::acls::{check_function, AccessError};
use crate::avro::{register_topic_schema, CodecError, OutputEncoder, RegistryClient, RegistryError, SchemaCache};
use crate::config::{Config, FunctionKind, FunctionSpec, PrincipalError};
use crate::endpoints::Readiness;
use crate::invoker::function::{FunctionCode, FunctionDeps, FunctionError};
use crate::invoker::{start_function, FunctionHandle};
use crate::kafka::producer::{Producer, ProducerConfig, SendError};
use crate::kafka::{Cluster, ConnectOptions, KafkaError};
use crate::metrics::Metrics;
use crate::table::{query_routes, GlobalTable, TableView};
use crate::trigger::http::{HttpTrigger, Route};
use crate::trigger::idempotency::{IdempotencyError, IdempotencyLog};

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A broker request failed.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// A function has no identity of its own to connect with.
    #[error(transparent)]
    Principal(#[from] PrincipalError),
    /// A function's principal may not do what the function needs.
    #[error(transparent)]
    Access(#[from] Box<AccessError>),
    /// The producer could not start.
    #[error(transparent)]
    Producer(#[from] SendError),
    /// A schema could not be registered or parsed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The schema registry could not be used.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// functions.toml names no schema registry.
    #[error("runtime.schema_registry is not set: kfn needs a schema registry")]
    NoSchemaRegistry,
    /// A topic's schema file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadSchema {
        /// The schema file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `--only` named a function functions.toml does not declare.
    #[error("--only {name}: no such function (declared: {declared})")]
    UnknownFunction {
        /// The name given.
        name: String,
        /// The declared functions, comma-separated.
        declared: String,
    },
    /// A function's code is not registered with the binary.
    #[error("{what} {name} is not registered")]
    NotRegistered {
        /// What kind of code: fold, handler, HTTP handler.
        what: &'static str,
        /// The name functions.toml gives.
        name: String,
    },
    /// A function could not start.
    #[error(transparent)]
    Function(#[from] FunctionError),
    /// An HTTP function's Idempotency-Keys could not be followed.
    #[error(transparent)]
    Idempotency(#[from] Box<IdempotencyError>),
}

/// What every part of the running application shares.
pub struct App {
    /// The validated configuration.
    pub config: Config,
    /// The handlers.
    pub registry: kfn_sdk::Registry,
    /// The cluster.
    pub cluster: Cluster,
    /// The metrics.
    pub metrics: Metrics,
    /// Writer schemas by id.
    pub schemas: Arc<SchemaCache>,
    /// The encoder of each topic with a schema.
    pub encoders: HashMap<String, OutputEncoder>,
    /// The shared idempotent producer.
    pub producer: Producer,
    /// Producer settings, for per-partition transactional producers.
    pub producer_config: ProducerConfig,
}

impl App {
    /// Connects, registers every topic's schema, and starts the shared producer.
    pub async fn new(config: Config, registry: kfn_sdk::Registry) -> Result<Self, StartError> {
        let cluster = Cluster::from_config(&config)?;
        let url = config.runtime.schema_registry.clone().ok_or(StartError::NoSchemaRegistry)?;
        let client = RegistryClient::with_access(&url, config.runtime.schema_registry_access.clone())?;
        let mut encoders = HashMap::new();
        let metrics = Metrics::new();
        let schemas = Arc::new(SchemaCache::new(client).counting_errors(metrics.schema_registry_errors.clone()));
        for topic in config.topics.values() {
            let Some(path) = &topic.schema else { continue };
            let text = std::fs::read_to_string(path)
                .map_err(|source| StartError::ReadSchema { path: path.clone(), source })?;
            // A JSON topic's records carry no schema id: its schema names its event type,
            // and, for a topic a function writes, gives the rows their Connect schema.
            if topic.format == crate::config::TopicFormat::Json {
                let written = config.functions.values().any(|f| f.outputs.values().any(|t| *t == topic.name));
                if !written {
                    continue;
                }
                let schema = text.parse().map_err(|e: serde_avro_fast::schema::SchemaError| CodecError::JsonRow {
                    topic: topic.name.clone(),
                    message: e.to_string(),
                })?;
                encoders.insert(topic.name.clone(), OutputEncoder::json(topic.name.as_str(), Arc::new(schema))?);
                continue;
            }
            let (id, schema) = register_topic_schema(schemas.client(), &topic.name, &text).await?;
            schemas.insert(id, schema.clone());
            encoders.insert(topic.name.clone(), OutputEncoder::new(topic.name.as_str(), id, schema));
        }
        let p = &config.runtime.producer;
        let producer_config = ProducerConfig {
            idempotent: p.idempotent,
            linger: p.linger,
            max_batch_bytes: p.max_batch_bytes as usize,
            compression: p.compression,
            request_timeout: p.request_timeout,
            ..ProducerConfig::default()
        };
        let producer = Producer::new(cluster.clone(), producer_config.clone()).await?;
        Ok(Self { config, registry, cluster, metrics, schemas, encoders, producer, producer_config })
    }

    /// The partition count of a topic.
    pub async fn partitions(&self, topic: &str) -> Result<i32, StartError> {
        Ok(self.function_deps().partitions(topic).await?)
    }

    /// The cluster and producer `spec` connects with: its own user's with
    /// `[security] per_function = true`, else the application's. When the
    /// identity is a SASL user, the function's topic ACLs are checked first
    /// (see [`crate::acls::check_function`]): a denial fails the start.
    pub async fn connections(&self, spec: &FunctionSpec) -> Result<(Cluster, Producer), StartError> {
        let security = &self.config.security;
        let (cluster, own) = if security.per_function {
            let settings = security.for_function(&spec.name)?;
            let options = ConnectOptions::from_settings(&self.config.runtime, &settings)?;
            (Cluster::new(self.config.runtime.brokers.clone(), options), true)
        } else {
            (self.cluster.clone(), false)
        };
        if let Some(user) = cluster.options().sasl.as_ref().map(|s| s.username.clone()) {
            check_function(&cluster, spec, &format!("User:{user}")).await.map_err(Box::new)?;
        }
        let producer = if own {
            Producer::new(cluster.clone(), self.producer_config.clone()).await?
        } else {
            self.producer.clone()
        };
        Ok((cluster, producer))
    }

    /// What a function started in this application depends on.
    pub fn function_deps(&self) -> FunctionDeps<'_> {
        FunctionDeps {
            cluster: &self.cluster,
            schemas: &self.schemas,
            encoders: &self.encoders,
            metrics: &self.metrics,
            producer: &self.producer,
            producer_config: &self.producer_config,
            runtime: &self.config.runtime,
            topics: &self.config.topics,
            tables: &crate::invoker::function::NO_TABLES,
        }
    }
}

/// For each input topic of `spec`, the handler registered under its handler
/// name for the topic's event type.
fn handlers_by_input(app: &App, spec: &FunctionSpec) -> Result<Vec<(String, TopicHandler)>, StartError> {
    spec.inputs()
        .iter()
        .map(|input| {
            let event = app.config.topics.get(input).and_then(|t| t.event.as_deref()).unwrap_or_default();
            let handler = app.registry.topic_handler_for(&spec.handler, event).cloned().ok_or_else(|| {
                not_registered("handler", &format!("{} for {event} (the events of {input})", spec.handler))
            })?;
            Ok((input.clone(), handler))
        })
        .collect()
}

fn not_registered(what: &'static str, name: &str) -> StartError {
    StartError::NotRegistered { what, name: name.to_string() }
}

/// One [`GlobalTable`] per topic that a selected function declares in `tables`,
/// all restoring at once.
async fn start_tables(
    app: &App,
    selected: &dyn Fn(&str) -> bool,
    shutdown: &watch::Receiver<bool>,
) -> Result<BTreeMap<String, Arc<GlobalTable>>, StartError> {
    let mut tables = BTreeMap::new();
    for spec in app.config.functions.values().filter(|f| selected(&f.name)) {
        for topic in spec.tables.values() {
            if tables.contains_key(topic) {
                continue;
            }
            let format = app.config.topics.get(topic).map(|t| t.format).unwrap_or_default();
            let table = GlobalTable::start(&app.cluster, app.schemas.clone(), topic, format, shutdown.clone()).await?;
            tables.insert(topic.clone(), table);
        }
    }
    Ok(tables)
}

/// The Idempotency-Keys of an HTTP function, followed on `cluster` (its
/// identity's); the topic is created first when missing (a function started
/// before `kfn topics create` learned of it).
async fn idempotency_log(
    app: &App,
    spec: &FunctionSpec,
    cluster: &Cluster,
    shutdown: &watch::Receiver<bool>,
) -> Result<Option<Arc<IdempotencyLog>>, StartError> {
    let Some(topic) = spec.idempotency_topic() else { return Ok(None) };
    let Some(declared) = app.config.topics.get(&topic) else { return Ok(None) };
    if cluster.topic(&topic).await.is_err() {
        crate::kafka::Admin::new(cluster.clone()).ensure_topics([declared]).await?;
    }
    // Kept forever (retention = "forever"): remembered as long as the replica runs.
    let retention = declared.retention.unwrap_or(std::time::Duration::MAX);
    let log = IdempotencyLog::start(cluster, &spec.name, &topic, retention, &app.producer_config, shutdown.clone());
    Ok(Some(log.await.map_err(Box::new)?))
}

/// Where the running application listens.
#[derive(Debug, Clone)]
pub struct Listening {
    /// The HTTP trigger, when there are HTTP functions.
    pub http: Option<std::net::SocketAddr>,
    /// /metrics, /healthz, /readyz.
    pub admin: std::net::SocketAddr,
    /// The functions started.
    pub functions: Vec<String>,
}

/// The running application.
pub struct Running {
    /// Where it listens.
    pub listening: Listening,
    functions: Vec<FunctionHandle>,
    servers: Vec<tokio::task::JoinHandle<()>>,
    /// Readiness of every function.
    pub readiness: Readiness,
}

impl Running {
    /// Waits until every function stopped (after `shutdown` turned true).
    pub async fn wait(self) {
        for f in self.functions {
            match f.task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(function = %f.name, error = %e, "function stopped with an error"),
                Err(e) => tracing::error!(function = %f.name, error = %e, "function task failed"),
            }
        }
        for s in self.servers {
            let _ = s.await;
        }
    }
}

/// Starts the functions of `only` (all when empty), the HTTP trigger and the admin endpoints.
pub async fn start(app: Arc<App>, only: &[String], shutdown: watch::Receiver<bool>) -> Result<Running, StartError> {
    let selected = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    for name in only {
        if !app.config.functions.contains_key(name) {
            let known: Vec<_> = app.config.functions.keys().cloned().collect();
            return Err(StartError::UnknownFunction { name: name.clone(), declared: known.join(", ") });
        }
    }
    let mut functions = Vec::new();
    let mut readiness = Readiness::default();
    let mut routes = Vec::new();
    let mut idempotency = HashMap::new();
    let tables = start_tables(&app, &selected, &shutdown).await?;
    let lookups: BTreeMap<String, Arc<dyn TableLookup>> =
        tables.iter().map(|(topic, t)| (topic.clone(), t.clone() as Arc<dyn TableLookup>)).collect();
    for spec in app.config.functions.values().filter(|f| selected(&f.name)) {
        // The function's identity: its own user's connections, or the application's.
        let (cluster, producer) = app.connections(spec).await?;
        // An aggregate's pull query: a view of its whole table, served on the HTTP trigger.
        if let Some((aggregate, path)) = spec.aggregate.as_ref().and_then(|a| Some((a, a.query_path.as_ref()?))) {
            let fold =
                app.registry.aggregate_handler(&spec.handler).ok_or_else(|| not_registered("fold", &spec.handler))?;
            let view = TableView::start_exporting(
                &cluster,
                app.schemas.clone(),
                fold.decode_row.clone(),
                &aggregate.table,
                Some(app.metrics.table_values.clone()),
                shutdown.clone(),
            )
            .await?;
            routes.extend(query_routes(&spec.name, path, view));
        }
        match &spec.kind {
            FunctionKind::Topic { .. } => {
                let code = match &spec.aggregate {
                    Some(_) => app
                        .registry
                        .aggregate_handler(&spec.handler)
                        .cloned()
                        .map(FunctionCode::Fold)
                        .ok_or_else(|| not_registered("fold", &spec.handler))?,
                    None => FunctionCode::Handler(handlers_by_input(&app, spec)?),
                };
                // Not before its tables are whole: a lookup of a key not yet read would
                // answer "no such row" for a row that exists. Unready until then.
                for topic in spec.tables.values() {
                    if let Some(table) = tables.get(topic).filter(|t| !t.is_restored()) {
                        tracing::info!(function = %spec.name, table = %topic, "waiting for the table to be restored");
                        table.restored().await;
                    }
                }
                let deps =
                    FunctionDeps { cluster: &cluster, producer: &producer, tables: &lookups, ..app.function_deps() };
                let handle = start_function(deps, spec, code, shutdown.clone()).await?;
                readiness.watch(&spec.name, handle.assignments.clone());
                functions.push(handle);
            }
            FunctionKind::Http { method, path } => {
                let handler = app
                    .registry
                    .http_handler(&spec.handler)
                    .ok_or_else(|| not_registered("HTTP handler", &spec.handler))?
                    .clone();
                let outputs = FunctionDeps { cluster: &cluster, ..app.function_deps() }.outputs(spec).await?;
                if let Some(log) = idempotency_log(&app, spec, &cluster, &shutdown).await? {
                    idempotency.insert(spec.name.clone(), log);
                }
                routes.push(Route {
                    producer: app.config.security.per_function.then_some(producer),
                    method: method.clone(),
                    path: path.clone(),
                    function: spec.name.clone(),
                    handler,
                    outputs,
                    observed: true,
                });
            }
        }
    }
    let mut servers = Vec::new();
    let http = if routes.is_empty() {
        None
    } else {
        let addr = &app.config.runtime.http_addr;
        let listener =
            TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr: addr.clone(), source })?;
        let local = listener.local_addr().map_err(|source| StartError::Listen { addr: addr.clone(), source })?;
        let trigger = HttpTrigger::new(
            routes,
            app.producer.clone(),
            app.metrics.clone(),
            app.config.runtime.max_http_body,
            app.config.runtime.slow_handler,
        );
        let trigger = trigger.with_idempotency(idempotency);
        let trigger = Arc::new(match &app.config.runtime.openapi {
            Some(openapi) => trigger.with_openapi(&openapi.text),
            None => trigger,
        });
        servers.push(tokio::spawn(trigger.serve(listener, shutdown.clone())));
        Some(local)
    };
    let addr = &app.config.runtime.admin_addr;
    let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr: addr.clone(), source })?;
    let admin = listener.local_addr().map_err(|source| StartError::Listen { addr: addr.clone(), source })?;
    servers.push(tokio::spawn(crate::endpoints::serve(
        listener,
        app.metrics.clone(),
        readiness.clone(),
        shutdown.clone(),
    )));
    // The committed lag of every partition of the topic functions run here, held or not.
    let topic_functions: Vec<_> = app
        .config
        .functions
        .values()
        .filter(|f| selected(&f.name) && !f.inputs().is_empty())
        .flat_map(FunctionSpec::stages)
        .collect();
    if !topic_functions.is_empty() {
        servers.push(tokio::spawn(crate::lag::export_every(
            app.cluster.clone(),
            topic_functions,
            app.config.runtime.isolation,
            app.metrics.clone(),
            crate::lag::EXPORT_INTERVAL,
            shutdown.clone(),
        )));
    }
    let names = app.config.functions.values().filter(|f| selected(&f.name)).map(|f| f.name.clone()).collect();
    Ok(Running { listening: Listening { http, admin, functions: names }, functions, servers, readiness })
}
