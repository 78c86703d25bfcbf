//! `kfn connect`: apply the repository's Kafka Connect connectors and show
//! their state; and the local PostgreSQL and Connect worker of `kfn dev --connect`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;

use crate::connect::{apply, ConnectClient, ConnectorFile};
use crate::dev::connect::{postgres_env, ConnectOptions, LocalConnect};
use crate::dev::postgres::{LocalPostgres, PostgresOptions};

/// How long `apply` waits for a connector to run: a Debezium snapshot of a
/// small table, on a loaded laptop.
const WAIT_RUNNING: Duration = Duration::from_secs(180);

/// Kafka Connect administration.
#[derive(Debug, Subcommand)]
pub enum ConnectCommand {
    /// Create or update every connector of a folder (`*.json`, `{"name", "config"}`) and wait until each runs.
    ///
    /// A config Connect refuses is shown with Connect's own errors; a task
    /// that fails is shown with its exception. Exits 1 then.
    Apply {
        /// The Kafka Connect REST API.
        #[arg(long, default_value = "http://127.0.0.1:8083", env = "KFN_CONNECT_URL")]
        url: String,
        /// The folder of connector files.
        #[arg(default_value = "connect/connectors")]
        dir: PathBuf,
    },
    /// Show the state of every connector and its tasks.
    Status {
        /// The Kafka Connect REST API.
        #[arg(long, default_value = "http://127.0.0.1:8083", env = "KFN_CONNECT_URL")]
        url: String,
    },
}

pub async fn run(command: ConnectCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConnectCommand::Apply { url, dir } => {
            let client = ConnectClient::new(&url)?;
            let connectors = ConnectorFile::load_dir(&dir)?;
            match apply(&client, &connectors, WAIT_RUNNING, |line| eprintln!("kfn: {line}")).await {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) => {
                    eprintln!("kfn: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        ConnectCommand::Status { url } => {
            let client = ConnectClient::new(&url)?;
            let mut healthy = true;
            for name in client.connectors().await? {
                let status = client.status(&name).await?;
                println!("{name}: {}", status.summary());
                if let Some(failure) = status.failure() {
                    println!("  {failure}");
                    healthy = false;
                }
            }
            Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

/// The database and the Connect worker of `kfn dev --connect`.
pub struct LocalConnectStack {
    /// PostgreSQL, with the folder's SQL run.
    pub postgres: LocalPostgres,
    /// The worker, with the folder's connectors running.
    pub connect: LocalConnect,
}

impl LocalConnectStack {
    /// Starts PostgreSQL on `postgres_port` (running `dir/sql/*.sql` in name
    /// order), a Connect worker on `connect_port` on the broker `bootstrap`,
    /// and applies `dir/connectors/*.json`, with progress on stderr.
    pub async fn start(dir: &Path, bootstrap: &str, postgres_port: u16, connect_port: u16) -> anyhow::Result<Self> {
        let init_sql = sql_files(&dir.join("sql"))?;
        let connectors = ConnectorFile::load_dir(&dir.join("connectors"))?;
        eprintln!("kfn: starting PostgreSQL on 127.0.0.1:{postgres_port} ({} SQL files)", init_sql.len());
        let postgres = LocalPostgres::start(PostgresOptions { port: Some(postgres_port), init_sql })
            .await
            .context("starting PostgreSQL")?;
        eprintln!("kfn: starting Kafka Connect on 127.0.0.1:{connect_port}");
        let mut options = ConnectOptions::new(bootstrap);
        options.port = Some(connect_port);
        options.env = postgres_env(&postgres);
        let connect = LocalConnect::start(options).await.context("starting Kafka Connect")?;
        apply(&connect.client(), &connectors, WAIT_RUNNING, |line| eprintln!("kfn: {line}"))
            .await
            .context("applying the connectors")?;
        Ok(Self { postgres, connect })
    }

    /// Stops the worker, then the database.
    pub fn stop(self) {
        self.connect.stop();
        self.postgres.stop();
    }
}

/// The `*.sql` files of `dir` in name order (none when it does not exist).
fn sql_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    Ok(files)
}
