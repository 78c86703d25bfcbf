//! PostgreSQL as a local database for `kfn dev --connect` and the tests: a
//! throw-away cluster from Debian's `postgresql` package, a child process that
//! never outlives kfn.
//!
//! The cluster is made by `initdb` in a fresh directory (removed when it
//! stops), listens on 127.0.0.1 only, and has `wal_level=logical` so that
//! Debezium can read its changes with `pgoutput`. Its superuser is `kfn`
//! (trust authentication: only local clients reach it) and its database is
//! `kfn`. PostgreSQL refuses to run as root: when kfn runs as root, the server
//! runs as the OS user `postgres` that Debian's package creates, and its
//! directory lives under the temporary directory, which that user can reach
//! (root's home, where kfn's cache is, is usually closed to it).
//!
//! ```no_run
//! # async fn demo() -> Result<(), kfn::dev::postgres::LocalPostgresError> {
//! use kfn::dev::postgres::{LocalPostgres, PostgresOptions};
//! let db = LocalPostgres::start(PostgresOptions::default()).await?;
//! db.psql("CREATE TABLE t (id int primary key)").await?;
//! println!("{}", db.url());
//! db.stop();
//! # Ok(()) }
//! ```

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::broker::{remove_abandoned_dirs, LocalBroker, Signals};
use super::ports::free_port;

/// The superuser of the local cluster (also the name of its database).
pub const USER: &str = "kfn";
/// The database the SQL files run in.
pub const DATABASE: &str = "kfn";
/// The OS user that runs the server when kfn runs as root.
const OS_USER: &str = "postgres";

/// Why the local PostgreSQL could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum LocalPostgresError {
    /// PostgreSQL's server programs are not installed.
    #[error(
        "PostgreSQL's server programs (initdb, postgres) were not found under /usr/lib/postgresql/<version>/bin \
         nor through KFN_POSTGRES_BIN; install them with `apt-get install postgresql`"
    )]
    NotInstalled,
    /// Running as root, but there is no unprivileged OS user to run the server as.
    #[error("kfn runs as root and PostgreSQL refuses to: the OS user `{OS_USER}` (made by Debian's postgresql package) does not exist")]
    NoOsUser,
    /// A file or directory of the cluster could not be made.
    #[error("PostgreSQL: cannot prepare {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A step (initdb, a SQL file, psql) failed.
    #[error("PostgreSQL: `{step}` failed: {detail}")]
    Step {
        /// What was being done.
        step: String,
        /// Its error, exit status or output.
        detail: String,
    },
    /// The server exited or did not accept connections in time.
    #[error("PostgreSQL on 127.0.0.1:{port} {what}; {output}")]
    NotReady {
        /// Its port.
        port: u16,
        /// What happened.
        what: String,
        /// Where its log is.
        output: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LocalPostgresError + '_ {
    move |source| LocalPostgresError::Io { path: path.to_path_buf(), source }
}

/// How to start the local PostgreSQL.
#[derive(Debug, Clone, Default)]
pub struct PostgresOptions {
    /// Its port on 127.0.0.1; None: a free port.
    pub port: Option<u16>,
    /// SQL files run in order once the server is up (schema, seed data).
    pub init_sql: Vec<PathBuf>,
}

/// A running local PostgreSQL; stopped (fast shutdown) on [`LocalPostgres::stop`] or drop.
pub struct LocalPostgres {
    server: Option<LocalBroker>,
    bin: PathBuf,
    port: u16,
    root: Option<PathBuf>,
}

/// The directory of PostgreSQL's server programs: `KFN_POSTGRES_BIN`, else the
/// newest `/usr/lib/postgresql/<version>/bin` (Debian's layout).
pub fn server_bin() -> Result<PathBuf, LocalPostgresError> {
    if let Some(dir) = std::env::var_os("KFN_POSTGRES_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let entries = std::fs::read_dir("/usr/lib/postgresql").map_err(|_| LocalPostgresError::NotInstalled)?;
    entries
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").is_file() && bin.join("postgres").is_file())
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
        .ok_or(LocalPostgresError::NotInstalled)
}

/// The uid and gid to run the server as: None when kfn is not root.
fn os_user() -> Result<Option<(u32, u32)>, LocalPostgresError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = std::ffi::CString::new(OS_USER).map_err(|_| LocalPostgresError::NoOsUser)?;
    // SAFETY: getpwnam returns a pointer to static storage or null; it is read at once.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        return Err(LocalPostgresError::NoOsUser);
    }
    // SAFETY: non-null, so it points to a valid passwd record.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Ok(Some((uid, gid)))
}

/// A command that runs as `user` when given (kfn is root), else as kfn's user.
fn command_as(program: PathBuf, user: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(program);
    if let Some((uid, gid)) = user {
        // std drops root's supplementary groups when it sets the uid.
        cmd.uid(uid).gid(gid);
    }
    cmd
}

impl LocalPostgres {
    /// Makes a fresh cluster, starts it, waits until it accepts connections,
    /// creates the database [`DATABASE`] and runs the options' SQL files in it.
    pub async fn start(options: PostgresOptions) -> Result<Self, LocalPostgresError> {
        let bin = server_bin()?;
        let user = os_user()?;
        let port = match options.port {
            Some(p) => p,
            None => free_port()
                .map_err(|e| LocalPostgresError::Step { step: "choose a port".into(), detail: e.to_string() })?,
        };
        remove_abandoned_dirs("kfn-postgres-");
        let root = std::env::temp_dir().join(format!("kfn-postgres-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&root, Some(uid), Some(gid)).map_err(io(&root))?;
        }
        let data = root.join("data");
        let init = command_as(bin.join("initdb"), user)
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"])
            .current_dir(&root)
            .stdin(Stdio::null())
            .output();
        let init = tokio::task::spawn_blocking(move || init)
            .await
            .map_err(|e| LocalPostgresError::Step { step: "initdb".into(), detail: e.to_string() })?
            .map_err(|e| LocalPostgresError::Step { step: "initdb".into(), detail: e.to_string() })?;
        if !init.status.success() {
            return Err(LocalPostgresError::Step {
                step: "initdb".into(),
                detail: format!("{}: {}", init.status, String::from_utf8_lossy(&init.stderr).trim()),
            });
        }
        let log = root.join("postgres.log");
        let file = std::fs::File::create(&log).map_err(io(&log))?;
        let err = file.try_clone().map_err(io(&log))?;
        let mut cmd = command_as(bin.join("postgres"), user);
        cmd.arg("-D").arg(&data).args(["-p", &port.to_string()]);
        for setting in [
            "listen_addresses=127.0.0.1".to_string(),
            // The socket in the cluster's own directory: /var/run/postgresql may not exist or be writable.
            format!("unix_socket_directories={}", root.display()),
            // Debezium reads changes by logical decoding (pgoutput) over a replication slot.
            "wal_level=logical".into(),
            "max_wal_senders=10".into(),
            "max_replication_slots=10".into(),
            // A throw-away cluster: durability is not worth the disk flushes on a busy laptop.
            "fsync=off".into(),
            "synchronous_commit=off".into(),
            "full_page_writes=off".into(),
        ] {
            cmd.arg("-c").arg(setting);
        }
        cmd.current_dir(&root).stdout(file).stderr(err);
        let output = format!("its log is {}", log.display());
        // SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for every client (Connect's included).
        let signals = Signals { stop: libc::SIGINT, parent_death: libc::SIGINT };
        let server = LocalBroker::spawn_stopped_by(cmd, format!("127.0.0.1:{port}"), output, signals).map_err(|e| {
            LocalPostgresError::NotReady { port, what: format!("did not start: {e}"), output: String::new() }
        })?;
        let db = LocalPostgres { server: Some(server), bin, port, root: Some(root) };
        db.wait_ready(Duration::from_secs(60)).await?;
        db.psql_in("postgres", &format!("CREATE DATABASE {DATABASE}")).await?;
        for file in &options.init_sql {
            db.run_file(file).await?;
        }
        Ok(db)
    }

    /// Polls `pg_isready` until the server accepts connections, failing early if it exited.
    async fn wait_ready(&self, limit: Duration) -> Result<(), LocalPostgresError> {
        let start = Instant::now();
        let mut pauses = crate::backoff::Pauses::new(Duration::from_millis(50), Duration::from_millis(200));
        let server = self.server.as_ref().expect("a started server");
        loop {
            if let Some(status) = server.exited() {
                return Err(LocalPostgresError::NotReady {
                    port: self.port,
                    what: format!("exited during startup ({status})"),
                    output: server.output().to_string(),
                });
            }
            let ready = tokio::process::Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER, "-d", "postgres"])
                .stdin(Stdio::null())
                .status()
                .await
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(LocalPostgresError::NotReady {
                    port: self.port,
                    what: format!("did not accept connections within {} s", limit.as_secs()),
                    output: server.output().to_string(),
                });
            }
            pauses.pause().await;
        }
    }

    /// Runs `sql` in [`DATABASE`] with psql (stopping at the first error) and returns
    /// its output: unaligned, tuples only (`a|b` per row).
    pub async fn psql(&self, sql: &str) -> Result<String, LocalPostgresError> {
        self.psql_in(DATABASE, sql).await
    }

    /// Runs the SQL file `path` in [`DATABASE`].
    pub async fn run_file(&self, path: &Path) -> Result<String, LocalPostgresError> {
        self.psql_args(DATABASE, &["-f".as_ref(), path.as_os_str()], &path.display().to_string()).await
    }

    async fn psql_in(&self, database: &str, sql: &str) -> Result<String, LocalPostgresError> {
        self.psql_args(database, &["-c".as_ref(), sql.as_ref()], sql).await
    }

    async fn psql_args(
        &self,
        database: &str,
        args: &[&std::ffi::OsStr],
        what: &str,
    ) -> Result<String, LocalPostgresError> {
        let step = || format!("psql {what}");
        // psql of the cluster's own version: the client on PATH may be another one.
        let out = tokio::process::Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", USER, "-d", database])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| LocalPostgresError::Step { step: step(), detail: e.to_string() })?;
        if !out.status.success() {
            return Err(LocalPostgresError::Step {
                step: step(),
                detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq URL of [`DATABASE`] as [`USER`].
    pub fn url(&self) -> String {
        format!("postgresql://{USER}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// The JDBC URL of [`DATABASE`] (for Connect's JDBC sink).
    pub fn jdbc_url(&self) -> String {
        format!("jdbc:postgresql://127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(LocalBroker::pid)
    }

    /// Stops the server (fast shutdown) and removes its directory.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
        if let Some(root) = self.root.take() {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
