//! PostgreSQL and a Kafka Connect worker for the Connect tests, started once
//! per test binary (lazily: only when a test asks) on the shared broker, with
//! the repository's own files: the SQL of connect/sql and the connectors of
//! connect/connectors.
//!
//! The connectors' topics (shop.products, orders.view, inventory.reservations) are created here with
//! functions.toml's settings before Connect writes to them; their names are
//! the repository's, so one binary's tests share them.

use std::sync::{Mutex, OnceLock};

use anyhow::Context;
use kfn::connect::{apply, ConnectClient, ConnectorFile};
use kfn::dev::connect::{postgres_env, ConnectOptions, LocalConnect};
use kfn::dev::postgres::{LocalPostgres, PostgresOptions};
use kfn::kafka::{Admin, NewTopic};

/// The database and the worker, running as long as the test binary.
pub struct ConnectStack {
    /// PostgreSQL with the shop's tables.
    pub postgres: LocalPostgres,
    /// The worker, with every connector RUNNING (None only while it restarts).
    connect: Mutex<Option<LocalConnect>>,
    /// How it was started, to start it again.
    options: ConnectOptions,
}

impl ConnectStack {
    /// A client of the worker's REST API.
    pub fn client(&self) -> ConnectClient {
        let connect = self.connect.lock().unwrap_or_else(|p| p.into_inner());
        connect.as_ref().expect("the Connect worker is running").client()
    }

    /// Stops the worker (SIGTERM: it flushes offsets and leaves its group) and
    /// starts a new one in the same group, which takes the connectors over from
    /// the group's config and offset topics; returns once every connector runs
    /// again. Blocking: call it from `spawn_blocking`.
    pub fn restart_connect(&self) -> anyhow::Result<()> {
        let mut connect = self.connect.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = connect.take() {
            old.stop();
        }
        let options = self.options.clone();
        let started = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let worker = LocalConnect::start(options).await.context("Kafka Connect, restarted")?;
                await_running(&worker.client()).await?;
                anyhow::Ok(worker)
            })
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread restarting Kafka Connect panicked"))??;
        *connect = Some(started);
        Ok(())
    }
}

/// Waits until every connector of the repository and its tasks are RUNNING.
async fn await_running(client: &ConnectClient) -> anyhow::Result<()> {
    let root = crate::workspace_root().join("connect");
    let connectors = ConnectorFile::load_dir(&root.join("connectors"))?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(180);
    for connector in &connectors {
        loop {
            match client.status(&connector.name).await {
                Ok(status) if status.running() => break,
                other if tokio::time::Instant::now() > deadline => {
                    anyhow::bail!("connector {} not running after a restart: {other:?}", connector.name)
                }
                // Connect's REST API offers no notification: poll it.
                _ => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
            }
        }
    }
    Ok(())
}

static STACK: OnceLock<Result<ConnectStack, String>> = OnceLock::new();

/// The stack of this test binary, started on first use.
pub fn stack() -> &'static ConnectStack {
    let started = STACK.get_or_init(|| {
        let broker = crate::broker().to_string();
        // A runtime of its own: the stack outlives the test that started it.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            rt.block_on(start(&broker)).map_err(|e| format!("{e:#}"))
        })
        .join()
        .unwrap_or_else(|_| Err("the thread starting PostgreSQL and Kafka Connect panicked".into()))
    });
    match started {
        Ok(stack) => stack,
        Err(e) => panic!("cannot start PostgreSQL and Kafka Connect: {e}"),
    }
}

async fn start(broker: &str) -> anyhow::Result<ConnectStack> {
    let root = crate::workspace_root().join("connect");
    let topics = [
        NewTopic {
            name: "shop.products".into(),
            partitions: 1,
            replication: 1,
            configs: [("cleanup.policy".to_string(), "compact".to_string())].into(),
        },
        NewTopic { name: "orders.view".into(), partitions: 1, replication: 1, configs: Default::default() },
        NewTopic { name: "inventory.reservations".into(), partitions: 1, replication: 1, configs: Default::default() },
    ];
    Admin::new(crate::cluster()).create_topics(&topics).await.context("creating the connectors' topics")?;
    let mut init_sql: Vec<_> =
        std::fs::read_dir(root.join("sql"))?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    init_sql.sort();
    let postgres = LocalPostgres::start(PostgresOptions { port: None, init_sql }).await.context("PostgreSQL")?;
    let mut options = ConnectOptions::new(broker);
    options.group = crate::unique("kfn-connect");
    options.env = postgres_env(&postgres);
    options.quiet = std::env::var_os("KFN_TEST_BROKER_LOGS").is_none();
    let connect = LocalConnect::start(options.clone()).await.context("Kafka Connect")?;
    let connectors = ConnectorFile::load_dir(&root.join("connectors"))?;
    apply(&connect.client(), &connectors, std::time::Duration::from_secs(180), |line| eprintln!("connect: {line}"))
        .await
        .context("applying the connectors")?;
    Ok(ConnectStack { postgres, connect: Mutex::new(Some(connect)), options })
}
