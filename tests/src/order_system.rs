//! The shipped order system (functions.toml as it is) run end to end: a
//! private broker, kfn's schema registry, and N replicas of every function as
//! child processes of `kfn-test-replica`, each with its own HTTP and admin port.
//!
//! The broker is private to the test, so the shipped topic names are used as
//! they are; only `[runtime]` addresses are rewritten and schema paths made
//! absolute. [`OrderSystem::start_secured`] runs the same system on the
//! broker of `kfn dev --secure` (SASL_SSL, ACLs enforced), each function as
//! its own user with only the ACLs of `kfn acls plan`.

use kfn::kafka_settings::EnsureTopics;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use kfn::acls::{deployment_plan, Principals, REGISTRY_USER};
use kfn::avro::{RegistryClient, SchemaCache};
use kfn::config::function_password_env;
use kfn::config::Config;
use kfn::dev::secure::{SecureKafka, SecureOptions, ADMIN_USER};
use kfn::dev::LocalCluster;
use kfn::kafka::acl::Acls;
use kfn::kafka::consumer::{list_offset, LogEnd};
use kfn::kafka::fetch::{ConsumedRecord, Isolation};
use kfn::kafka::group::protocol::TopicPartition;
use kfn::kafka::{Admin, Cluster, ConnectOptions};
use kfn::registry::{RegistryConfig, RegistryServer};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One replica process; killed when dropped.
struct Replica(Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The running system: broker, registry and replicas (stopped on drop).
pub struct OrderSystem {
    /// The replicas' HTTP trigger addresses (POST /orders, GET /orders/{id}, analytics).
    pub http: Vec<SocketAddr>,
    /// The replicas' admin addresses (/readyz, /metrics).
    pub admin: Vec<SocketAddr>,
    /// Where the configs and the replicas' logs are (kept after the test).
    pub dir: PathBuf,
    /// Every topic of functions.toml.
    pub topics: Vec<String>,
    cluster: Cluster,
    schemas: SchemaCache,
    /// How to start (and restart) a replica.
    setup: ReplicaSetup,
    // Dropped in field order: replicas first, then the registry, then the broker.
    replicas: Vec<Replica>,
    registry: Option<RegistryServer>,
    _broker: Broker,
}

/// What starting a replica takes: the binary, a config per replica, the
/// environment, and what a new replica's config is made from.
struct ReplicaSetup {
    binary: PathBuf,
    dir: PathBuf,
    /// Per replica: its config and the functions it runs (all when empty).
    replicas: Vec<(PathBuf, Vec<String>)>,
    secrets: Vec<(String, String)>,
    shipped: String,
    root: PathBuf,
    bootstrap: String,
    registry_url: String,
    security_table: String,
}

impl ReplicaSetup {
    /// Starts replica `n` as a child process logging to `replica-<n>.log` (appended).
    fn spawn(&self, n: usize) -> anyhow::Result<Replica> {
        let (config, only) = &self.replicas[n];
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(format!("replica-{n}.log")))?;
        let mut command = Command::new(&self.binary);
        command.args(["run", "--config"]).arg(config);
        for function in only {
            command.args(["--only", function]);
        }
        let child = command
            .env("KFN_LOG", std::env::var("KFN_TEST_REPLICA_LOG").unwrap_or_else(|_| "info".into()))
            .env_remove("KFN_CONFIG")
            .envs(self.secrets.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting a replica")?;
        Ok(Replica(child))
    }
}

/// The private broker: plain, or secured.
enum Broker {
    Plain(#[allow(dead_code)] LocalCluster),
    Secure(#[allow(dead_code)] SecureKafka),
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(SocketAddr::from(([127, 0, 0, 1], kfn::dev::ports::free_port()?)))
}

/// The shipped functions.toml with `[runtime]`'s addresses replaced and
/// schema and OpenAPI paths made absolute (Config resolves them against the file's directory).
fn rewrite_config(
    shipped: &str,
    root: &Path,
    broker: &str,
    registry: &str,
    http: SocketAddr,
    admin: SocketAddr,
) -> anyhow::Result<String> {
    let replacements = [
        ("brokers = ", format!("brokers = [\"{broker}\"]")),
        ("schema_registry = ", format!("schema_registry = \"{registry}\"")),
        ("http_addr = ", format!("http_addr = \"{http}\"")),
        ("admin_addr = ", format!("admin_addr = \"{admin}\"")),
    ];
    let mut replaced = [0usize; 4];
    let schemas = format!("schema = \"{}/schemas/", root.display());
    let mut out = String::with_capacity(shipped.len() + 4096);
    for line in shipped.lines() {
        let mut line = line.replace("schema = \"schemas/", &schemas);
        line = line.replace("openapi = \"docs/", &format!("openapi = \"{}/docs/", root.display()));
        for (i, (prefix, new)) in replacements.iter().enumerate() {
            if line.starts_with(prefix) {
                line = new.clone();
                replaced[i] += 1;
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    if replaced != [1; 4] {
        bail!("functions.toml: expected one line each of brokers, schema_registry, http_addr, admin_addr; found {replaced:?}");
    }
    Ok(out)
}

impl OrderSystem {
    /// Starts a private broker, creates every topic of the shipped
    /// functions.toml (with its `[local]` overrides), starts the registry and
    /// `replicas` processes of `replica_binary` (the integration tests'
    /// `CARGO_BIN_EXE_kfn-test-replica`), and waits until each answers /readyz.
    pub async fn start(replica_binary: &Path, replicas: usize) -> anyhow::Result<OrderSystem> {
        Self::start_with_env(replica_binary, replicas, &[]).await
    }

    /// [`start`](Self::start), with `env` set for each replica process.
    pub async fn start_with_env(
        replica_binary: &Path,
        replicas: usize,
        env: &[(&str, &str)],
    ) -> anyhow::Result<OrderSystem> {
        Self::start_on(replica_binary, replicas, env, false).await
    }

    /// [`start`](Self::start) on a secured Apache Kafka (`kfn::dev::secure`):
    /// every function of every replica authenticates as `kfn-<function>`
    /// (`[security] per_function = true`) and has only the ACLs of `kfn acls
    /// plan --per-function`, applied by the admin; the registry runs as
    /// `kfn-registry`. The replicas' own `[security].sasl` (the lag exporter,
    /// the start-up producer) and the test's reads use the admin.
    pub async fn start_secured(replica_binary: &Path, replicas: usize) -> anyhow::Result<OrderSystem> {
        Self::start_on(replica_binary, replicas, &[], true).await
    }

    async fn start_on(
        replica_binary: &Path,
        replicas: usize,
        env: &[(&str, &str)],
        secure: bool,
    ) -> anyhow::Result<OrderSystem> {
        crate::init_logs();
        let root = crate::workspace_root();
        let shipped = std::fs::read_to_string(root.join("functions.toml")).context("reading functions.toml")?;
        let handlers = kfn_functions::registry();
        // The topics and functions as shipped (the replicas' copies differ in [runtime] and
        // [security] only; this process has no password to resolve theirs).
        let mut config = Config::load_file_only(&root.join("functions.toml"), &handlers).map_err(|e| anyhow!("{e}"))?;
        config.apply_local_overrides();
        let function_names: Vec<String> = config.functions.keys().cloned().collect();
        let (broker, cluster, registry_cluster, mut secrets, security_table) = if secure {
            let users = function_names.iter().map(|f| kfn::config::function_user(f)).collect();
            let quiet = std::env::var_os("KFN_TEST_BROKER_LOGS").is_none();
            let kafka = SecureKafka::start(SecureOptions { users, quiet, ..SecureOptions::default() })
                .await
                .context("starting the secured broker")?;
            let on = |user: &str| -> anyhow::Result<Cluster> {
                let security = kafka.security(user)?;
                let tls = security.tls.as_ref().map(kfn::kafka::security::connector).transpose()?;
                let sasl = security.sasl.as_ref().map(|s| {
                    kfn::kafka::security::SaslCredentials::new(
                        kfn::kafka::security::Mechanism::ScramSha512,
                        s.username.clone(),
                        s.password.clone(),
                    )
                });
                Ok(Cluster::new(kafka.brokers(), ConnectOptions { tls, sasl, ..ConnectOptions::default() }))
            };
            let (admin, registry) = (on(ADMIN_USER)?, on(REGISTRY_USER)?);
            let mut secrets = vec![("KFN_SASL_PASSWORD".to_string(), kafka.password(ADMIN_USER)?.to_string())];
            for f in &function_names {
                secrets.push((function_password_env(f), kafka.password(&kfn::config::function_user(f))?.to_string()));
            }
            let table = format!(
                "\n[security]\nprotocol = \"SASL_SSL\"\nsasl = {{ mechanism = \"SCRAM-SHA-512\", username = \"{ADMIN_USER}\", \
                 password_env = \"KFN_SASL_PASSWORD\" }}\ntls = {{ ca = \"{}\" }}\nper_function = true\n",
                kafka.ca().display()
            );
            (Broker::Secure(kafka), admin, registry, secrets, table)
        } else {
            let broker = crate::start_local_broker(None).await.context("starting the broker")?;
            let cluster = Cluster::new(broker.brokers(), ConnectOptions::default());
            (Broker::Plain(broker), cluster.clone(), cluster, Vec::new(), String::new())
        };
        let bootstrap = match &broker {
            Broker::Plain(b) => b.bootstrap(),
            Broker::Secure(k) => k.bootstrap().to_string(),
        };
        secrets.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));

        let dir = std::env::temp_dir().join(crate::unique("kfn-order-system"));
        std::fs::create_dir_all(&dir)?;
        let mut configs = Vec::new();
        let (mut http, mut admin) = (Vec::new(), Vec::new());
        for n in 0..replicas {
            let (h, a) = (free_addr()?, free_addr()?);
            let mut text = rewrite_config(&shipped, &root, &bootstrap, "http://registry.invalid", h, a)?;
            text.push_str(&security_table);
            let path = dir.join(format!("replica-{n}.toml"));
            std::fs::write(&path, text)?;
            configs.push(path);
            http.push(h);
            admin.push(a);
        }
        Admin::new(cluster.clone()).ensure_topics(config.topics.values()).await.context("creating the topics")?;
        if secure {
            let bindings = deployment_plan(&config, &Principals::PerFunction);
            let acls = Acls::new(cluster.clone());
            acls.create(&bindings).await.context("applying the plan")?;
            if !acls.wait_listed(&bindings, Duration::from_secs(30)).await? {
                bail!("the broker did not list the {} ACLs of the plan", bindings.len());
            }
        }

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let registry = RegistryServer::start(registry_cluster, listener, RegistryConfig::default())
            .await
            .context("starting the schema registry")?;
        let registry_url = format!("http://{}", registry.local_addr());
        // The registry's address is known only now: the configs name it.
        for path in &configs {
            let text = std::fs::read_to_string(path)?.replace("http://registry.invalid", &registry_url);
            std::fs::write(path, text)?;
        }
        // The catalog validation looks up, as `kfn dev` without --connect writes it (docs/connect.md).
        kfn::dev::seed::seed_topics(&cluster, &config, &root).await.context("seeding shop.products")?;
        let topics: Vec<String> = config.topics.keys().cloned().collect();

        let setup = ReplicaSetup {
            binary: replica_binary.to_path_buf(),
            dir: dir.clone(),
            replicas: configs.into_iter().map(|c| (c, Vec::new())).collect(),
            secrets,
            shipped,
            root,
            bootstrap,
            registry_url: registry_url.clone(),
            security_table,
        };
        let running = (0..replicas).map(|n| setup.spawn(n)).collect::<anyhow::Result<Vec<_>>>()?;
        let schemas = SchemaCache::new(RegistryClient::new(&registry_url, None)?);
        let system = OrderSystem {
            http,
            admin,
            dir,
            topics,
            cluster,
            schemas,
            setup,
            replicas: running,
            registry: Some(registry),
            _broker: broker,
        };
        eprintln!("order system: {} replica(s), configs and logs in {}", replicas, system.dir.display());
        system.await_ready(Duration::from_secs(120)).await?;
        Ok(system)
    }

    /// Starts one more replica, running only the functions `only` (all when
    /// empty) with HTTP and admin ports of its own; waits until it is ready.
    /// Returns its number (its index in [`OrderSystem::http`] and [`OrderSystem::admin`]).
    pub async fn add_replica(&mut self, only: &[&str]) -> anyhow::Result<usize> {
        let n = self.replicas.len();
        let (h, a) = (free_addr()?, free_addr()?);
        let s = &self.setup;
        let mut text = rewrite_config(&s.shipped, &s.root, &s.bootstrap, &s.registry_url, h, a)?;
        text.push_str(&s.security_table);
        let path = self.dir.join(format!("replica-{n}.toml"));
        std::fs::write(&path, text)?;
        self.setup.replicas.push((path, only.iter().map(|f| f.to_string()).collect()));
        self.replicas.push(self.setup.spawn(n)?);
        self.http.push(h);
        self.admin.push(a);
        self.await_ready_one(a, Duration::from_secs(120)).await?;
        Ok(n)
    }

    /// Kills replica `n` with SIGKILL (a crash) and waits until it exited.
    pub fn kill_replica(&mut self, n: usize) {
        let _ = self.replicas[n].0.kill();
        let _ = self.replicas[n].0.wait();
    }

    /// Starts replica `n` again (after [`OrderSystem::kill_replica`]) with
    /// its config and ports; waits until it is ready.
    pub async fn restart_replica(&mut self, n: usize) -> anyhow::Result<()> {
        self.kill_replica(n);
        self.replicas[n] = self.setup.spawn(n)?;
        self.await_ready_one(self.admin[n], Duration::from_secs(120)).await
    }

    /// The schema registry the replicas use.
    pub fn schema_registry(&self) -> &RegistryClient {
        self.schemas.client()
    }

    /// Waits until every replica answers 200 on /readyz (each function holds an assignment).
    async fn await_ready(&self, limit: Duration) -> anyhow::Result<()> {
        for addr in &self.admin {
            self.await_ready_one(*addr, limit).await?;
        }
        Ok(())
    }

    /// Waits until the replica of admin address `addr` answers 200 on /readyz.
    async fn await_ready_one(&self, addr: SocketAddr, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok((200, _)) = request(addr, "GET", "/readyz", &[], b"").await {
                return Ok(());
            }
            if Instant::now() > deadline {
                let answer = request(addr, "GET", "/readyz", &[], b"").await;
                bail!("replica {addr} not ready within {limit:?}: {answer:?}; logs in {}", self.dir.display());
            }
            // /readyz has no change notification: poll it.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The broker's cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Every committed record of `topic` (read_committed, to the end of the log).
    pub async fn read(&self, topic: &str) -> anyhow::Result<Vec<ConsumedRecord>> {
        let records = kfn::invoker::replay::read_topic(&self.cluster, topic).await?;
        Ok(records.into_iter().map(|(_, r)| r).collect())
    }

    /// Every committed value of `topic`, decoded as `E` with its writer's schema from the registry.
    pub async fn read_events<E: DeserializeOwned>(&self, topic: &str) -> anyhow::Result<Vec<E>> {
        let mut out = Vec::new();
        for record in self.read(topic).await? {
            let value = record.value.ok_or_else(|| anyhow!("{topic}: a record without a value"))?;
            let datum = self.schemas.resolve(&value).await?;
            out.push(datum.decode::<E>().with_context(|| format!("decoding a record of {topic}"))?);
        }
        Ok(out)
    }

    /// Where each of `orders` got to, for a test that gives up waiting: the
    /// last topic of the pipeline holding its key (read_committed), and each
    /// topic whose last stable offset is below its high watermark on some
    /// partition (a transaction still open there holds readers back).
    pub async fn diagnose(&self, orders: &[&str]) -> String {
        const STAGES: [&str; 7] = [
            "orders.created",
            "orders.validated",
            "payment.retry",
            "payments.processed",
            "inventory.reserved",
            "shipments.created",
            "orders.status",
        ];
        let mut reached: BTreeMap<&str, &str> = orders.iter().map(|o| (*o, "nowhere")).collect();
        let mut open = Vec::new();
        for stage in STAGES {
            match self.read(stage).await {
                Ok(records) => {
                    for r in records {
                        let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
                        if let Some(at) = reached.get_mut(key.as_str()) {
                            // orders.status is the tracker's view, not a stage: keep the stage.
                            if stage != "orders.status" || *at == "nowhere" {
                                *at = stage;
                            }
                        }
                    }
                }
                Err(e) => open.push(format!("{stage}: unreadable ({e:#})")),
            }
            let partitions = self.cluster.topic(stage).await.map(|t| t.partitions.len()).unwrap_or(0);
            for p in 0..partitions as i32 {
                let tp = TopicPartition::new(stage, p);
                let stable = list_offset(&self.cluster, &tp, LogEnd::Latest, Isolation::ReadCommitted).await;
                let high = list_offset(&self.cluster, &tp, LogEnd::Latest, Isolation::ReadUncommitted).await;
                if let (Ok(stable), Ok(high)) = (stable, high) {
                    if stable < high {
                        open.push(format!("{tp}: last stable offset {stable} < high watermark {high}"));
                    }
                }
            }
        }
        let mut by_stage: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (order, stage) in reached {
            by_stage.entry(stage).or_default().push(order);
        }
        let stages: Vec<String> = by_stage
            .iter()
            .map(|(stage, ids)| format!("last seen in {stage}: {} ({})", ids.len(), ids.join(", ")))
            .collect();
        format!(
            "{}; open transactions: {}",
            stages.join("; "),
            if open.is_empty() { "none".into() } else { open.join(", ") }
        )
    }

    /// Whether every replica process is still running.
    pub fn replicas_alive(&mut self) -> bool {
        self.replicas.iter_mut().all(|r| matches!(r.0.try_wait(), Ok(None)))
    }

    /// Sends `signal` (SIGSTOP, SIGCONT...) to replica `n`.
    pub fn signal_replica(&self, n: usize, signal: libc::c_int) {
        // SAFETY: signalling our own child, which has not been waited for.
        unsafe {
            libc::kill(self.replicas[n].0.id() as libc::pid_t, signal);
        }
    }

    /// Kills every replica (SIGKILL) and waits for each to exit; broker and registry go on.
    pub fn kill_replicas(&mut self) {
        self.replicas.clear();
    }

    /// Stops the replicas (SIGTERM, graceful), then the registry and the broker.
    pub async fn stop(mut self) {
        for n in 0..self.replicas.len() {
            self.signal_replica(n, libc::SIGTERM);
        }
        let replicas = std::mem::take(&mut self.replicas);
        let _ = tokio::task::spawn_blocking(move || {
            for mut r in replicas {
                let _ = r.0.wait();
            }
        })
        .await;
        if let Some(registry) = self.registry.take() {
            registry.stop().await;
        }
    }
}

/// One HTTP/1.1 request over a fresh connection: (status, body).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no status line in {response:?}"))?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    // The server may answer chunked: join the chunks.
    let chunked = head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// A product of the seeded catalog (connect/sql/10-shop.sql), for building orders.
#[derive(Debug, Clone)]
pub struct SeededProduct {
    /// Its id.
    pub id: String,
    /// Price of one unit.
    pub price: rust_decimal::Decimal,
    /// Units in stock.
    pub stock: i32,
}

/// The products the SQL seed inserts, in its order.
pub fn seeded_products() -> Vec<SeededProduct> {
    let sql = std::fs::read_to_string(crate::workspace_root().join("connect/sql/10-shop.sql")).expect("the SQL seed");
    kfn::dev::seed::sql_rows(&sql, "shop.products")
        .expect("the seed's rows")
        .into_iter()
        .map(|row| SeededProduct {
            id: row["product_id"].as_str().expect("product_id").to_string(),
            price: row["price"].as_str().and_then(|p| p.parse().ok()).expect("price"),
            stock: row["stock"].as_i64().and_then(|s| i32::try_from(s).ok()).expect("stock"),
        })
        .collect()
}
