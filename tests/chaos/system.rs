//! The system under chaos, as processes the runner can kill, stop and restart:
//! a three-node Apache Kafka cluster (`kfn::dev::apache_kafka`, as `kfn dev
//! --nodes 3` runs it), kfn's schema registry as its own `orders registry`
//! process, and two `orders run` replicas of every function of the shipped
//! functions.toml, the second in its own network namespace when the machine
//! allows ([`crate::netns`]).
//!
//! The replicas run on functions.toml as shipped: only `[runtime]`'s
//! addresses are set, through `KFN_RUNTIME__*` environment overrides. Every
//! process dies with the runner: killed on drop, and PR_SET_PDEATHSIG in case
//! the runner itself is killed.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use kfn::config::{Config, FunctionSpec};
use kfn::dev::apache_kafka::{KafkaOptions, LocalKafka};
use kfn::dev::ports::free_port;
use kfn::kafka::{Admin, Cluster, ConnectOptions};
use kfn::kafka_settings::EnsureTopics;
use kfn_tests::order_system::request;

use crate::netns::Isolated;

/// Makes `cmd`'s process receive SIGKILL when the runner's thread that spawned it dies.
pub fn die_with_runner(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Sends `signal` to process `pid` (one of the runner's children).
pub fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: signalling a child of this process.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// One `orders run` process (or none, between a kill and its restart).
pub struct Replica {
    /// Its HTTP trigger, as the host reaches it.
    pub http: SocketAddr,
    /// Its /readyz and /metrics, as the host reaches it.
    pub admin: SocketAddr,
    /// Its stderr and stdout, appended across restarts.
    pub log: PathBuf,
    /// Whether it runs in the namespace.
    pub isolated: bool,
    child: Option<Child>,
}

impl Replica {
    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Everything the runner started; stopped (SIGKILL) on drop, replicas first.
pub struct System {
    /// The replicas.
    pub replicas: Vec<Replica>,
    /// The functions of functions.toml, as shipped.
    pub config: Config,
    /// A client of the cluster.
    pub cluster: Cluster,
    /// The registry's URL.
    pub registry_url: String,
    /// Configs, logs.
    pub dir: PathBuf,
    registry: Option<Child>,
    registry_port: u16,
    orders_bin: PathBuf,
    root: PathBuf,
    // Dropped after the processes that use them: the namespace, then the brokers.
    net: Option<Isolated>,
    kafka: LocalKafka,
}

impl System {
    /// Starts the cluster, creates and seeds the topics, starts the registry
    /// and the two replicas, and waits until both are ready.
    pub async fn start(orders_bin: &Path, isolate: bool) -> anyhow::Result<System> {
        let root = kfn_tests::workspace_root();
        let dir = std::env::temp_dir().join(kfn_tests::unique("kfn-chaos"));
        std::fs::create_dir_all(&dir)?;
        let quiet = std::env::var_os("KFN_TEST_BROKER_LOGS").is_none();
        eprintln!("chaos: starting three Apache Kafka nodes");
        let kafka = LocalKafka::start(KafkaOptions { nodes: 3, quiet, ..KafkaOptions::default() })
            .await
            .context("starting the three nodes")?;
        let cluster = Cluster::new(kafka.addrs(), ConnectOptions::default());
        let config = Config::load_file_only(&root.join("functions.toml"), &kfn_functions::registry())
            .map_err(|e| anyhow!("functions.toml: {e}"))?;
        // Replication 3 as declared: no [local] override on three nodes.
        Admin::new(cluster.clone()).ensure_topics(config.topics.values()).await.context("creating the topics")?;
        kfn::dev::seed::seed_topics(&cluster, &config, &root).await.context("seeding shop.products")?;

        let registry_port = free_port()?;
        let mut ports: Vec<u16> = kafka.addrs().iter().filter_map(|a| a.rsplit(':').next()?.parse().ok()).collect();
        ports.push(registry_port);
        let net = if isolate {
            let exe = std::env::current_exe()?;
            Some(Isolated::create(&ports, &exe).await.context("creating the network namespace")?)
        } else {
            None
        };
        let mut replicas = Vec::new();
        for n in 0..2 {
            let isolated = n == 1 && net.is_some();
            let host = match (&net, isolated) {
                (Some(net), true) => net.inner_ip,
                _ => std::net::Ipv4Addr::LOCALHOST,
            };
            replicas.push(Replica {
                http: SocketAddr::from((host, free_port()?)),
                admin: SocketAddr::from((host, free_port()?)),
                log: dir.join(format!("replica-{n}.log")),
                isolated,
                child: None,
            });
        }
        let mut system = System {
            replicas,
            config,
            cluster,
            registry_url: format!("http://127.0.0.1:{registry_port}"),
            dir,
            registry: None,
            registry_port,
            orders_bin: orders_bin.to_path_buf(),
            root,
            net,
            kafka,
        };
        system.start_registry().await?;
        for n in 0..system.replicas.len() {
            system.start_replica(n)?;
        }
        for n in 0..system.replicas.len() {
            system.await_ready(n, Duration::from_secs(300)).await?;
        }
        eprintln!("chaos: system ready; configs and logs in {}", system.dir.display());
        Ok(system)
    }

    fn brokers_json(&self) -> String {
        let quoted: Vec<String> = self.kafka.addrs().iter().map(|a| format!("{a:?}")).collect();
        format!("[{}]", quoted.join(","))
    }

    /// Starts `orders registry` on its port and waits until it answers.
    pub async fn start_registry(&mut self) -> anyhow::Result<()> {
        let log = File::options().create(true).append(true).open(self.dir.join("registry.log"))?;
        let mut cmd = Command::new(&self.orders_bin);
        cmd.args(["registry", "--config"])
            .arg(self.root.join("functions.toml"))
            .args(["--port", &self.registry_port.to_string(), "--replication", "3"])
            .env("KFN_RUNTIME__BROKERS", self.brokers_json())
            .env("KFN_LOG", "info")
            .env_remove("KFN_CONFIG")
            .stdout(log.try_clone()?)
            .stderr(log);
        die_with_runner(&mut cmd);
        self.registry = Some(cmd.spawn().context("starting orders registry")?);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.registry_port));
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok((200, _)) = request(addr, "GET", "/subjects", &[], b"").await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the registry did not answer within 120 s; log in {}", self.dir.display());
            }
            // The registry has no readiness notification: poll.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Kills the registry (SIGKILL).
    pub fn kill_registry(&mut self) {
        if let Some(mut child) = self.registry.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts replica `n` (again) on its addresses.
    pub fn start_replica(&mut self, n: usize) -> anyhow::Result<()> {
        let replica = &self.replicas[n];
        let listen = |addr: SocketAddr| {
            // Inside the namespace it listens on every address, so the host reaches it at the veth's.
            if replica.isolated {
                SocketAddr::from(([0, 0, 0, 0], addr.port()))
            } else {
                addr
            }
        };
        let log = File::options().create(true).append(true).open(&replica.log)?;
        let mut cmd = match (&self.net, replica.isolated) {
            (Some(net), true) => net.command(&self.orders_bin),
            _ => {
                let mut cmd = Command::new(&self.orders_bin);
                die_with_runner(&mut cmd);
                cmd
            }
        };
        cmd.args(["run", "--config"])
            .arg(self.root.join("functions.toml"))
            .env("KFN_RUNTIME__BROKERS", self.brokers_json())
            .env("KFN_RUNTIME__SCHEMA_REGISTRY", &self.registry_url)
            .env("KFN_RUNTIME__HTTP_ADDR", listen(replica.http).to_string())
            .env("KFN_RUNTIME__ADMIN_ADDR", listen(replica.admin).to_string())
            .env("KFN_LOG", std::env::var("KFN_CHAOS_REPLICA_LOG").unwrap_or_else(|_| "info".into()))
            // Plain text: the runner reads the log for fencing lines.
            .env("NO_COLOR", "1")
            .env_remove("KFN_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn().with_context(|| format!("starting replica {n}"))?;
        self.replicas[n].child = Some(child);
        Ok(())
    }

    /// Kills replica `n` with SIGKILL and reaps it.
    pub fn kill_replica(&mut self, n: usize) {
        self.replicas[n].kill();
    }

    /// Waits until replica `n` answers 200 on /readyz (each function holds an assignment).
    pub async fn await_ready(&self, n: usize, limit: Duration) -> anyhow::Result<()> {
        let addr = self.replicas[n].admin;
        let deadline = Instant::now() + limit;
        loop {
            let answer = tokio::time::timeout(Duration::from_secs(5), request(addr, "GET", "/readyz", &[], b"")).await;
            if let Ok(Ok((200, _))) = answer {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "replica {n} ({addr}) not ready within {limit:?}: {answer:?}; log {}",
                    self.replicas[n].log.display()
                );
            }
            // /readyz has no change notification: poll it.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Whether replica `n`'s process is running (not exited).
    pub fn alive(&mut self, n: usize) -> bool {
        self.replicas[n].child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The namespace, when one replica runs in it.
    pub fn net(&self) -> Option<&Isolated> {
        self.net.as_ref()
    }

    /// The node id leading the most partitions of the declared topics.
    pub async fn busiest_broker(&self) -> anyhow::Result<i32> {
        let mut leads: std::collections::BTreeMap<i32, usize> = Default::default();
        for topic in self.config.topics.keys() {
            self.cluster.invalidate(topic);
            for p in self.cluster.topic(topic).await?.partitions {
                *leads.entry(p.leader).or_default() += 1;
            }
        }
        leads.into_iter().max_by_key(|(id, n)| (*n, -id)).map(|(id, _)| id).context("no partition has a leader")
    }

    /// Kills node `id` (SIGKILL).
    pub fn kill_broker(&mut self, id: i32) {
        self.kafka.kill(id as u32);
    }

    /// Starts node `id` again on its data and waits until it accepts connections.
    pub async fn restart_broker(&mut self, id: i32) -> anyhow::Result<()> {
        self.kafka.restart(id as u32).await.with_context(|| format!("restarting broker {id}"))
    }

    /// The topic functions (those with a consumer group).
    pub fn topic_functions(&self) -> Vec<FunctionSpec> {
        // An aggregate that groups by a key runs as two stages, each with its own group.
        self.config.functions.values().flat_map(FunctionSpec::stages).filter(|f| !f.inputs().is_empty()).collect()
    }
}

impl Drop for System {
    fn drop(&mut self) {
        for replica in &mut self.replicas {
            if let Some(pid) = replica.pid() {
                // A stopped process dies of SIGKILL too; SIGCONT first so nothing waits on it.
                signal(pid, libc::SIGCONT);
            }
            replica.kill();
        }
        self.kill_registry();
        // Then `net` (namespace, forwarders) and `kafka` (every node) by their own drops.
    }
}
