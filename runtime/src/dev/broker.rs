//! A local broker (tansu, or one Apache Kafka node) as a child process that
//! never outlives kfn.
//!
//! The child is spawned by a guard thread of its own and asked (Linux
//! `PR_SET_PDEATHSIG`) to be terminated when that thread ends, so a crashed or
//! killed kfn (or test binary) leaves no broker behind.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::kafka::{ConnectOptions, Connection};

/// Where the local broker keeps its data.
#[derive(Debug, Clone)]
pub enum Storage {
    /// In memory: gone when the broker stops (dev and most tests).
    Memory,
    /// An S3 bucket (e.g. on moto_server): survives broker restarts.
    S3 {
        /// The bucket, which must exist.
        bucket: String,
        /// The S3 endpoint URL.
        endpoint: String,
    },
}

/// Why the local broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalBrokerError {
    /// The process could not be spawned.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// The program (tansu, or java).
        binary: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The process exited before it accepted connections.
    #[error("the local broker on {addr} exited during startup ({status}); {output}")]
    Exited {
        /// host:port.
        addr: String,
        /// The exit status.
        status: String,
        /// Where its output went.
        output: String,
    },
    /// The broker did not answer in time.
    #[error("the local broker on {addr} did not accept Kafka connections within {seconds} s: {last}")]
    NotReady {
        /// host:port.
        addr: String,
        /// The time waited.
        seconds: u64,
        /// The last connection error.
        last: String,
    },
}

/// The signals that end a child.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Signals {
    /// Sent on stop (SIGKILL follows after 5 s).
    pub stop: libc::c_int,
    /// Sent when kfn dies without stopping it (Linux `PR_SET_PDEATHSIG`).
    pub parent_death: libc::c_int,
}

enum Control {
    Stop(mpsc::Sender<()>),
    Kill(mpsc::Sender<()>),
}

/// A running local broker; stopped on [`LocalBroker::stop`] or drop.
pub struct LocalBroker {
    addr: String,
    output: String,
    pid: u32,
    control: Option<mpsc::Sender<Control>>,
    /// In a mutex so that a broker can be shared (a test binary's, in a static).
    exited: std::sync::Mutex<mpsc::Receiver<String>>,
}

impl LocalBroker {
    /// Starts tansu listening on 127.0.0.1:`port` and waits until it answers Kafka requests.
    pub async fn start(binary: PathBuf, port: u16, storage: Storage, quiet: bool) -> Result<Self, LocalBrokerError> {
        Self::start_advertising(binary, port, port, storage, quiet).await
    }

    /// Like [`LocalBroker::start`], telling clients (in metadata) to connect to `advertised_port`
    /// instead, e.g. a fault-injecting proxy in tests.
    pub async fn start_advertising(
        binary: PathBuf,
        port: u16,
        advertised_port: u16,
        storage: Storage,
        quiet: bool,
    ) -> Result<Self, LocalBrokerError> {
        let addr = format!("127.0.0.1:{port}");
        let url = format!("tcp://{addr}");
        let advertised = format!("tcp://127.0.0.1:{advertised_port}");
        let mut cmd = Command::new(&binary);
        cmd.arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &advertised])
            .args(["--cluster-id", "kfn-local"]);
        match &storage {
            Storage::Memory => {
                cmd.args(["--storage-engine", "memory://tansu/"]);
            }
            Storage::S3 { bucket, endpoint } => {
                cmd.args(["--storage-engine", &format!("s3://{bucket}/")])
                    .env("AWS_ENDPOINT", endpoint)
                    .env("AWS_ALLOW_HTTP", "true")
                    .env("AWS_ACCESS_KEY_ID", "kfn-local")
                    .env("AWS_SECRET_ACCESS_KEY", "kfn-local")
                    .env("AWS_DEFAULT_REGION", "us-east-1");
            }
        }
        if quiet {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let broker = Self::spawn(cmd, addr, "its output is above".into())?;
        broker.wait_ready(Duration::from_secs(60)).await?;
        Ok(broker)
    }

    /// Spawns `cmd` (a broker that will listen on `addr`) under a guard thread
    /// that stops it with kfn; `output` says where its output goes, for errors.
    /// Does not wait for it: see [`LocalBroker::wait_ready`].
    pub(crate) fn spawn(cmd: Command, addr: String, output: String) -> Result<Self, LocalBrokerError> {
        Self::spawn_stopped_by(cmd, addr, output, Signals { stop: libc::SIGTERM, parent_death: libc::SIGTERM })
    }

    /// Like [`LocalBroker::spawn`], with other signals than SIGTERM (PostgreSQL
    /// shuts down fast on SIGINT, but waits for every client on SIGTERM).
    pub(crate) fn spawn_stopped_by(
        mut cmd: Command,
        addr: String,
        output: String,
        signals: Signals,
    ) -> Result<Self, LocalBrokerError> {
        let binary = PathBuf::from(cmd.get_program());
        cmd.stdin(Stdio::null());
        let (control_tx, control_rx) = mpsc::channel::<Control>();
        let (spawned_tx, spawned_rx) = mpsc::channel::<std::io::Result<u32>>();
        let (exited_tx, exited_rx) = mpsc::channel::<String>();
        std::thread::Builder::new()
            .name(format!("broker-{addr}"))
            .spawn(move || guard(cmd, signals, control_rx, spawned_tx, exited_tx))
            .map_err(|source| LocalBrokerError::Spawn { binary: binary.clone(), source })?;
        let pid = match spawned_rx.recv() {
            Ok(Ok(pid)) => pid,
            Ok(Err(source)) => return Err(LocalBrokerError::Spawn { binary, source }),
            Err(_) => {
                return Err(LocalBrokerError::Spawn { binary, source: std::io::Error::other("guard thread ended") })
            }
        };
        Ok(LocalBroker { addr, output, pid, control: Some(control_tx), exited: std::sync::Mutex::new(exited_rx) })
    }

    /// host:port of the broker.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The broker's process id (to read its CPU time).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The child's exit status, if it has exited (reported once).
    pub(crate) fn exited(&self) -> Option<String> {
        self.exited.lock().unwrap_or_else(|p| p.into_inner()).try_recv().ok()
    }

    /// Where the child's output goes, for error messages.
    pub(crate) fn output(&self) -> &str {
        &self.output
    }

    /// Waits until the broker accepts Kafka connections (it gives no other readiness signal).
    pub(crate) async fn wait_ready(&self, limit: Duration) -> Result<(), LocalBrokerError> {
        let start = Instant::now();
        let options = ConnectOptions { connect_timeout: Duration::from_secs(2), ..ConnectOptions::default() };
        // Polling a port that is not open yet: the process gives no readiness
        // signal. Doubling from 50 ms (it was a fixed 50 ms) to 200 ms: a
        // broker ready in 5 s is seen at most 200 ms late, with a quarter of the polls.
        let mut pauses = crate::backoff::Pauses::new(Duration::from_millis(50), Duration::from_millis(200));
        loop {
            if let Some(status) = self.exited() {
                return Err(LocalBrokerError::Exited { addr: self.addr.clone(), status, output: self.output.clone() });
            }
            match Connection::connect(&self.addr, &options).await {
                Ok(_) => return Ok(()),
                Err(e) if start.elapsed() > limit => {
                    return Err(LocalBrokerError::NotReady {
                        addr: self.addr.clone(),
                        seconds: limit.as_secs(),
                        last: e.to_string(),
                    })
                }
                Err(_) => {
                    pauses.pause().await;
                }
            }
        }
    }

    /// Stops the broker: SIGTERM (or its stop signal), then SIGKILL after 5 s; returns when it has exited.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    /// Kills the broker with SIGKILL (a crash, for tests); returns when it has exited.
    pub fn kill(mut self) {
        if let Some(control) = self.control.take() {
            let (done_tx, done_rx) = mpsc::channel();
            if control.send(Control::Kill(done_tx)).is_ok() {
                let _ = done_rx.recv_timeout(Duration::from_secs(10));
            }
        }
    }

    fn stop_inner(&mut self) {
        if let Some(control) = self.control.take() {
            let (done_tx, done_rx) = mpsc::channel();
            if control.send(Control::Stop(done_tx)).is_ok() {
                let _ = done_rx.recv_timeout(Duration::from_secs(10));
            }
        }
    }
}

impl Drop for LocalBroker {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Removes the directories `<temp>/<prefix><pid>-...` of kfn processes that
/// are gone: a child that lives as long as its process (the tests' shared
/// ones) is never dropped, so its directory outlives it.
pub(crate) fn remove_abandoned_dirs(prefix: &str) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix(prefix)).and_then(|rest| rest.split('-').next());
        if let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn guard(
    mut cmd: Command,
    signals: Signals,
    control: mpsc::Receiver<Control>,
    spawned: mpsc::Sender<std::io::Result<u32>>,
    exited: mpsc::Sender<String>,
) {
    use std::os::unix::process::CommandExt;
    // A process group of its own: Ctrl-C in the terminal reaches kfn, which
    // stops the broker last, after the functions have committed and left.
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, signals.parent_death);
            Ok(())
        });
    }
    let mut child: Child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = spawned.send(Err(e));
            return;
        }
    };
    let _ = spawned.send(Ok(child.id()));
    loop {
        match control.recv_timeout(Duration::from_millis(200)) {
            Ok(Control::Stop(done)) => {
                terminate(&mut child, signals.stop);
                let _ = done.send(());
                return;
            }
            Ok(Control::Kill(done)) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = done.send(());
                return;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(status)) = child.try_wait() {
                    let _ = exited.send(status.to_string());
                    // Keep the thread (and its death signal) until asked to stop.
                    if let Ok(Control::Stop(done) | Control::Kill(done)) = control.recv() {
                        let _ = done.send(());
                    }
                    return;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                terminate(&mut child, signals.stop);
                return;
            }
        }
    }
}

fn terminate(child: &mut Child, signal: libc::c_int) {
    // SAFETY: sending a signal to our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
