//! A real OTLP receiver for the tests: Jaeger v2 (`cmd/jaeger`, built by
//! scripts/jaeger), one per test binary, started on first use, with in-memory
//! storage and every listener on 127.0.0.1 at a free port.
//!
//! The binary is `KFN_JAEGER` (.ci/run exports it), else the one
//! scripts/jaeger built into the cache, else scripts/jaeger is run now to
//! build it (minutes, once per machine).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tokio::sync::OnceCell;

use crate::order_system::request;

/// The Jaeger version scripts/jaeger builds (the file name it builds to).
const VERSION: &str = "v1.75.0";

/// A running Jaeger: where it takes OTLP/HTTP and where its query API answers.
#[derive(Debug)]
pub struct Jaeger {
    /// OTLP over HTTP: `OTEL_EXPORTER_OTLP_ENDPOINT=http://<otlp>`.
    pub otlp: SocketAddr,
    /// The query API (`GET /api/traces/{trace_id}`).
    pub query: SocketAddr,
    /// Its config and log.
    pub dir: PathBuf,
}

static SHARED: OnceCell<Jaeger> = OnceCell::const_new();

impl Jaeger {
    /// The test binary's Jaeger, started on the first call.
    pub async fn shared() -> anyhow::Result<&'static Jaeger> {
        SHARED.get_or_try_init(Self::start).await
    }

    /// `OTEL_EXPORTER_OTLP_ENDPOINT` for a process that sends here.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.otlp)
    }

    /// The trace's JSON (`data[0]` of the query API), or None while Jaeger has no span of it.
    pub async fn trace(&self, trace_id: u128) -> anyhow::Result<Option<serde_json::Value>> {
        let (status, body) = request(self.query, "GET", &format!("/api/traces/{trace_id:032x}"), &[], b"").await?;
        match status {
            404 => Ok(None),
            200 => {
                let mut answer: serde_json::Value = serde_json::from_str(&body).context("the query API's JSON")?;
                Ok(answer["data"].get_mut(0).map(serde_json::Value::take))
            }
            other => bail!("GET /api/traces: {other} {body}"),
        }
    }

    async fn start() -> anyhow::Result<Jaeger> {
        let binary = binary()?;
        let dir = std::env::temp_dir().join(crate::unique("kfn-jaeger"));
        std::fs::create_dir_all(&dir)?;
        let free =
            || -> anyhow::Result<SocketAddr> { Ok(SocketAddr::from(([127, 0, 0, 1], kfn::dev::ports::free_port()?))) };
        let (otlp, query, query_grpc) = (free()?, free()?, free()?);
        let config = dir.join("config.yaml");
        std::fs::write(&config, config_yaml(otlp, query, query_grpc))?;
        let log = std::fs::File::create(dir.join("jaeger.log"))?;
        let mut command = Command::new(&binary);
        command.arg("--config").arg(&config).stdout(Stdio::null()).stderr(log);
        spawn_tied_to_this_process(command)?;
        let jaeger = Jaeger { otlp, query, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = matches!(request(query, "GET", "/api/services", &[], b"").await, Ok((200, _)))
                && tokio::net::TcpStream::connect(otlp).await.is_ok();
            if ready {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "jaeger ({}) not up within 60 s: see {}",
                    binary.display(),
                    jaeger.dir.join("jaeger.log").display()
                );
            }
            // Jaeger has no readiness notification but its ports: poll them.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("jaeger: OTLP on {otlp}, query API on {query}, log in {}", jaeger.dir.display());
        Ok(jaeger)
    }
}

/// Only what the tests use: the OTLP/HTTP receiver into memory, and the query
/// API; no telemetry server, health check, sampling or UI port of its own.
fn config_yaml(otlp: SocketAddr, query: SocketAddr, query_grpc: SocketAddr) -> String {
    format!(
        r#"service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: []
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memory_store:
        memory:
          max_traces: 100000
  jaeger_query:
    enable_tracing: false
    storage:
      traces: memory_store
    http:
      endpoint: "{query}"
    grpc:
      endpoint: "{query_grpc}"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "{otlp}"
exporters:
  jaeger_storage_exporter:
    trace_storage: memory_store
"#
    )
}

/// `KFN_JAEGER`, else the cache's build, else built now by scripts/jaeger.
fn binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("KFN_JAEGER") {
        return Ok(PathBuf::from(path));
    }
    let cached = kfn::dev::tansu::cache_dir()?.join("go/bin").join(format!("jaeger-{VERSION}"));
    if cached.is_file() {
        return Ok(cached);
    }
    let script = crate::workspace_root().join("scripts/jaeger");
    eprintln!("jaeger: not built yet: running {} (minutes, once)", script.display());
    let out = Command::new(&script).stderr(Stdio::inherit()).output().context("running scripts/jaeger")?;
    if !out.status.success() {
        bail!("scripts/jaeger failed ({})", out.status);
    }
    let path = String::from_utf8(out.stdout)?
        .lines()
        .last()
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("scripts/jaeger printed no path"))?;
    Ok(path)
}

/// Starts `cmd` from a thread that lives as long as this process, with
/// `PR_SET_PDEATHSIG` (which fires when the spawning *thread* ends): the
/// receiver is shared by every test of the binary and stops with it.
fn spawn_tied_to_this_process(mut cmd: Command) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let (spawned_tx, spawned_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("jaeger".into()).spawn(move || match cmd.spawn() {
        Ok(mut child) => {
            let _ = spawned_tx.send(Ok(()));
            // Holds the thread (and so the child) until the process exits.
            let _ = child.wait();
        }
        Err(e) => {
            let _ = spawned_tx.send(Err(e));
        }
    })?;
    spawned_rx.recv().context("the jaeger thread")?.context("starting jaeger")
}
