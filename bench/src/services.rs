//! The services measured, each started as child processes of the benchmark
//! so their CPU time and memory can be read from /proc.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use crate::procfs;
use crate::stack::Stack;

/// kfn's delivery guarantee for a passthrough run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarantee {
    /// Outputs produced, then the offset committed.
    AtLeastOnce,
    /// Outputs and offset committed in one transaction; `transactional_producer
    /// = "auto"`: one producer per member where the broker fences by generation.
    ExactlyOnce,
    /// The same with one transactional producer per input partition (what kfn
    /// did before it held one per member).
    ExactlyOncePerPartition,
}

impl Guarantee {
    /// The functions.toml spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Guarantee::AtLeastOnce => "at_least_once",
            Guarantee::ExactlyOnce | Guarantee::ExactlyOncePerPartition => "exactly_once",
        }
    }

    /// The `runtime.transactional_producer` setting.
    pub fn transactional_producer(self) -> &'static str {
        match self {
            Guarantee::ExactlyOncePerPartition => "per_partition",
            _ => "auto",
        }
    }

    /// The short name in service keys.
    fn key(self) -> &'static str {
        match self {
            Guarantee::AtLeastOnce => "alo",
            Guarantee::ExactlyOnce => "eos",
            Guarantee::ExactlyOncePerPartition => "eospp",
        }
    }

    /// How tables name it.
    fn label(self) -> &'static str {
        match self {
            Guarantee::AtLeastOnce => "at_least_once",
            Guarantee::ExactlyOnce => "exactly_once",
            Guarantee::ExactlyOncePerPartition => "exactly_once (producer per partition)",
        }
    }
}

/// One service that passes OrderCreated records from an input topic to an output topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// librdkafka copying raw bytes: the pipe's limit.
    Pipe,
    /// A hand-written Rust service on librdkafka with serde_avro_fast.
    RustAvro,
    /// A Python service on confluent-kafka with AvroDeserializer/AvroSerializer.
    Python,
    /// The same passthrough on Kafka Streams with `processing.guarantee=exactly_once_v2`
    /// (`bench/streams`), one stream thread in each of `processes` JVMs sharing the application id.
    Streams {
        /// How many processes share the application id (the group).
        processes: usize,
    },
    /// kfn with a passthrough handler, in `replicas` processes.
    Kfn {
        /// The guarantee.
        guarantee: Guarantee,
        /// How many replicas (processes) share the group.
        replicas: usize,
        /// Run the replica build given by `KFN_BENCH_BEFORE` (the runtime before a change).
        before: bool,
    },
}

impl Service {
    /// The name `kfn-bench --services` takes.
    pub fn key(&self) -> String {
        match self {
            Service::Pipe => "pipe".into(),
            Service::RustAvro => "rust".into(),
            Service::Python => "python".into(),
            Service::Streams { processes: 1 } => "streams-eos".into(),
            Service::Streams { processes } => format!("streams-eos-{processes}"),
            Service::Kfn { guarantee, replicas, before } => {
                format!("kfn-{}-{replicas}{}", guarantee.key(), if *before { "-before" } else { "" })
            }
        }
    }

    /// Whether the scaling runs (partition counts after the first) include it: the librdkafka
    /// pipe and Rust service, one Kafka Streams process, kfn at_least_once and exactly_once.
    pub fn scales(&self) -> bool {
        match self {
            Service::Pipe | Service::RustAvro | Service::Streams { processes: 1 } => true,
            Service::Kfn { guarantee, before, .. } => !before && *guarantee != Guarantee::ExactlyOncePerPartition,
            Service::Python | Service::Streams { .. } => false,
        }
    }

    /// How many processes it runs.
    pub fn processes(&self) -> usize {
        match self {
            Service::Pipe | Service::RustAvro | Service::Python => 1,
            Service::Streams { processes } => *processes,
            Service::Kfn { replicas, .. } => *replicas,
        }
    }

    /// A short name for tables.
    pub fn label(&self) -> String {
        match self {
            Service::Pipe => "limit: librdkafka raw pipe".into(),
            Service::RustAvro => "Rust on rdkafka + serde_avro_fast".into(),
            Service::Python => "Python on confluent-kafka + Avro".into(),
            Service::Streams { processes } => {
                let s = if *processes == 1 { "" } else { "es" };
                format!("Kafka Streams exactly_once_v2, {processes} process{s}")
            }
            Service::Kfn { guarantee, replicas, before } => {
                let s = if *replicas == 1 { "" } else { "s" };
                let when = if *before { " (before)" } else { "" };
                format!("kfn {}, {replicas} replica{s}{when}", guarantee.label())
            }
        }
    }
}

/// Where a service reads and writes in one run.
#[derive(Debug, Clone)]
pub struct Wiring {
    /// The input topic.
    pub input: String,
    /// The output topic.
    pub output: String,
    /// The dead-letter topic (kfn only).
    pub dead_letter: String,
    /// Partitions of input and output.
    pub partitions: i32,
    /// A name unique to the run: the group (baselines) or the function (kfn).
    pub name: String,
}

/// Running service processes; killed when dropped.
pub struct Processes {
    children: Vec<Child>,
    /// The admin address of each kfn replica (`host:port`), for /readyz.
    pub admin_addrs: Vec<String>,
    /// Files a Kafka Streams process creates once it holds its tasks.
    ready_files: Vec<PathBuf>,
}

impl Processes {
    /// The process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// Established connections of all the processes together to the broker's `ports`.
    pub fn broker_connections(&self, ports: &[u16]) -> usize {
        self.pids().into_iter().filter_map(|pid| procfs::connections_to(pid, ports).ok()).sum()
    }

    /// CPU time (user + system) of all the processes together.
    pub fn cpu_time(&self) -> Duration {
        self.pids().into_iter().filter_map(|pid| procfs::cpu_time(pid).ok()).sum()
    }

    /// The largest peak RSS among the processes, in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.pids().into_iter().filter_map(|pid| procfs::peak_rss(pid).ok()).max().unwrap_or(0)
    }

    /// Fails when a process has exited (it should run until killed).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for child in &mut self.children {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("service process {} exited early ({status}); see its log", child.id());
            }
        }
        Ok(())
    }

    /// Whether every kfn replica answers /readyz with 200 and every Kafka Streams process
    /// has created its ready file (true when there are none).
    pub async fn all_ready(&self) -> bool {
        if !self.ready_files.iter().all(|f| f.exists()) {
            return false;
        }
        for addr in &self.admin_addrs {
            if crate::http_load::get_status(&format!("http://{addr}/readyz")).await != Some(200) {
                return false;
            }
        }
        true
    }

    /// Waits until every kfn replica answers /readyz with 200 (it has an assignment).
    pub async fn await_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        let addrs = self.admin_addrs.clone();
        loop {
            self.check_alive()?;
            if self.all_ready().await {
                return Ok(());
            }
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "{addrs:?} not ready within {limit:?}");
            // /readyz has no push form: poll it.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A process started elsewhere, to be measured and killed like the others.
    pub fn adopt(child: Child, admin_addr: Option<String>) -> Self {
        Self { children: vec![child], admin_addrs: admin_addr.into_iter().collect(), ready_files: Vec::new() }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The Python interpreter with confluent-kafka: `KFN_BENCH_PYTHON`, else the venv of scripts/test.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("KFN_BENCH_PYTHON") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("KFN_CACHE_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        home.join(".cache/kfn")
    });
    cache.join("venv/bin/python")
}

fn log_file(stack: &Stack, name: &str) -> anyhow::Result<std::fs::File> {
    let path = stack.run_dir.join(format!("{name}.log"));
    std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))
}

/// Spawns a peer service (every one but kfn) with its settings in `BENCH_*` variables
/// (see baseline.rs) and its output in `<log>.log` and `<log>.err.log` of the run directory.
pub(crate) fn spawn_peer(stack: &Stack, wiring: &Wiring, mut command: Command, log: &str) -> anyhow::Result<Child> {
    let child = command
        .env("BENCH_BROKERS", stack.brokers())
        .env("BENCH_INPUT", &wiring.input)
        .env("BENCH_OUTPUT", &wiring.output)
        .env("BENCH_GROUP", &wiring.name)
        .env("BENCH_REGISTRY", &stack.registry_url)
        .env("BENCH_SCHEMA", stack.order_schema())
        .stdin(Stdio::null())
        .stdout(log_file(stack, log)?)
        .stderr(log_file(stack, &format!("{log}.err"))?)
        .spawn()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    Ok(child)
}

/// Starts `service` on `wiring`.
pub fn start(stack: &Stack, service: Service, wiring: &Wiring) -> anyhow::Result<Processes> {
    let baseline = |program: PathBuf, args: &[PathBuf]| -> anyhow::Result<Processes> {
        let mut command = Command::new(program);
        command.args(args);
        Ok(Processes::adopt(spawn_peer(stack, wiring, command, &wiring.name)?, None))
    };
    match service {
        Service::Pipe => baseline(stack.bin_dir.join("rdkafka-pipe"), &[]),
        Service::RustAvro => baseline(stack.bin_dir.join("rdkafka-avro"), &[]),
        Service::Python => baseline(python(), &[stack.root.join("bench/python/passthrough.py")]),
        Service::Streams { processes: count } => {
            let mut processes = Processes { children: Vec::new(), admin_addrs: Vec::new(), ready_files: Vec::new() };
            for index in 0..count {
                let name = format!("{}-{index}", wiring.name);
                let (command, ready) = crate::streams::command(stack, &name)?;
                let child = spawn_peer(stack, wiring, command, &name).context("starting the Kafka Streams peer")?;
                processes.children.push(child);
                processes.ready_files.push(ready);
            }
            Ok(processes)
        }
        Service::Kfn { guarantee, replicas, before } => {
            let mut processes = Processes { children: Vec::new(), admin_addrs: Vec::new(), ready_files: Vec::new() };
            for r in 0..replicas {
                let admin = format!("127.0.0.1:{}", kfn::dev::ports::free_port()?);
                let config = stack.run_dir.join(format!("{}-{r}.toml", wiring.name));
                std::fs::write(&config, passthrough_config(stack, wiring, guarantee, &admin))?;
                let binary = if before { before_binary()? } else { stack.bin_dir.join("kfn-bench-replica") };
                processes.children.push(start_kfn(stack, &binary, &config, &[], &format!("{}-{r}", wiring.name), &[])?);
                processes.admin_addrs.push(admin);
            }
            Ok(processes)
        }
    }
}

/// The replica built from the runtime before a change: `KFN_BENCH_BEFORE`.
pub fn before_binary() -> anyhow::Result<PathBuf> {
    std::env::var_os("KFN_BENCH_BEFORE")
        .map(PathBuf::from)
        .context("KFN_BENCH_BEFORE (a kfn-bench-replica built before the change) is not set")
}

/// Starts `<binary> run --config <config> <extra args>` (a kfn-bench-replica) with `env` added.
pub fn start_kfn(
    stack: &Stack,
    binary: &Path,
    config: &Path,
    extra: &[&str],
    log: &str,
    env: &[(&str, String)],
) -> anyhow::Result<Child> {
    let mut command = Command::new(binary);
    // KFN_BENCH_LOG=info shows the replicas' group and partition logs in the run directory.
    let log_filter = std::env::var("KFN_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    command.arg("run").arg("--config").arg(config).args(extra).env("KFN_LOG", log_filter).stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    command
        .stdout(log_file(stack, log)?)
        .stderr(log_file(stack, &format!("{log}.err"))?)
        .spawn()
        .context("starting kfn-bench-replica")
}

/// The functions.toml of a kfn passthrough run.
fn passthrough_config(stack: &Stack, wiring: &Wiring, guarantee: Guarantee, admin: &str) -> String {
    let Wiring { input, output, dead_letter, partitions, name } = wiring;
    let schema = stack.order_schema();
    format!(
        r#"[runtime]
brokers = ["{brokers}"]
schema_registry = "{registry}"
admin_addr = "{admin}"
session_timeout = "6s"
shutdown_timeout = "5s"
transactional_producer = "{producers}"

[topics."{input}"]
partitions = {partitions}
replication = 1
schema = "{schema}"

[topics."{output}"]
partitions = {partitions}
replication = 1
schema = "{schema}"

[topics."{dead_letter}"]
partitions = 1
replication = 1

[functions.{name}]
handler = "passthrough"
input = "{input}"
outputs = {{ out = "{output}" }}
guarantee = "{guarantee}"
dead_letter = "{dead_letter}"
"#,
        brokers = stack.brokers(),
        registry = stack.registry_url,
        schema = schema.display(),
        guarantee = guarantee.as_str(),
        producers = guarantee.transactional_producer(),
    )
}
