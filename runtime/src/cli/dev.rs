//! `kfn dev`: the whole system on a local broker, in one process.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::dev::{ensure_free, ensure_installed, LocalBroker, Storage};
use crate::kafka::{Admin, Cluster, CreateOutcome};
use crate::registry::{RegistryConfig, RegistryServer};

/// Options of `kfn dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// The configuration file.
    #[arg(long, short, default_value = "functions.toml", env = "KFN_CONFIG")]
    config: PathBuf,
    /// Port of the local Kafka broker on 127.0.0.1.
    #[arg(long, default_value_t = 9092)]
    broker_port: u16,
    /// Port of the Schema Registry API on 127.0.0.1.
    #[arg(long, default_value_t = 8081)]
    registry_port: u16,
    /// Port of the HTTP trigger on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
    /// Port of /metrics, /healthz and /readyz on 127.0.0.1.
    #[arg(long, default_value_t = 9464)]
    admin_port: u16,
    /// Show the broker's own log output.
    #[arg(long)]
    broker_logs: bool,
}

pub async fn run(args: DevArgs, registry: kfn_sdk::Registry) -> anyhow::Result<ExitCode> {
    let mut config = super::load(&args.config, &registry)?;
    for change in config.apply_local_overrides() {
        eprintln!("kfn: local override ([local] in {}): {change}", args.config.display());
    }
    ensure_free(&[
        (args.broker_port, "broker", "--broker-port"),
        (args.registry_port, "schema registry", "--registry-port"),
        (args.http_port, "HTTP trigger", "--http-port"),
        (args.admin_port, "metrics and health endpoints", "--admin-port"),
    ])?;
    let binary = tokio::task::spawn_blocking(ensure_installed).await?.context("installing the local broker")?;
    eprintln!("kfn: starting the local broker on 127.0.0.1:{}", args.broker_port);
    let broker = LocalBroker::start(binary, args.broker_port, Storage::Memory, !args.broker_logs)
        .await
        .context("starting the local broker")?;
    config.runtime.brokers = vec![broker.addr().to_string()];
    config.runtime.http_addr = format!("127.0.0.1:{}", args.http_port);
    config.runtime.admin_addr = format!("127.0.0.1:{}", args.admin_port);
    config.runtime.schema_registry = Some(format!("http://127.0.0.1:{}", args.registry_port));

    let cluster = Cluster::from_config(&config)?;
    let admin = Admin::new(cluster.clone());
    let outcomes = admin.ensure_topics(config.topics.values()).await.context("creating topics")?;
    let created = outcomes.iter().filter(|(_, o)| *o == CreateOutcome::Created).count();
    eprintln!("kfn: {created} topics created ({} declared)", config.topics.len());

    let registry_listener =
        tokio::net::TcpListener::bind(("127.0.0.1", args.registry_port)).await.with_context(|| {
            format!("binding the schema registry to 127.0.0.1:{} (change it with --registry-port)", args.registry_port)
        })?;
    let registry_config =
        RegistryConfig { replication: config.local.replication.unwrap_or(1), ..RegistryConfig::default() };
    let schema_registry = RegistryServer::start(cluster, registry_listener, registry_config)
        .await
        .context("starting the schema registry")?;

    println!("kfn dev is running:");
    println!("  broker           {}", broker.addr());
    println!("  schema registry  http://{}", schema_registry.local_addr());
    let result = super::run::run_app(config, registry, &[]).await;
    eprintln!("kfn: stopping the schema registry and the broker");
    schema_registry.stop().await;
    broker.stop();
    eprintln!("kfn: stopped");
    result
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
