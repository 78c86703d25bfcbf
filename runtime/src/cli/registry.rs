//! `kfn registry`: serve the Confluent Schema Registry API from a Kafka topic.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::kafka::Cluster;
use crate::registry::{RegistryConfig, RegistryServer};

/// Options of `kfn registry`.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// The configuration file (for [runtime].brokers and [security]).
    #[arg(long, short, default_value = "functions.toml", env = "KFN_CONFIG")]
    config: PathBuf,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// The port to listen on (Confluent's default: 8081).
    #[arg(long, default_value_t = 8081)]
    port: u16,
    /// The compacted topic holding the schemas (created when missing).
    #[arg(long, default_value = "_schemas")]
    topic: String,
    /// The replication factor of the topic when it is created.
    #[arg(long, default_value_t = 1)]
    replication: i16,
}

/// Serves until Ctrl-C or SIGTERM.
pub async fn run(args: RegistryArgs, registry: &kfn_sdk::Registry) -> anyhow::Result<ExitCode> {
    let config = super::load(&args.config, registry)?;
    let cluster = Cluster::from_config(&config)?;
    let listener = tokio::net::TcpListener::bind((args.host, args.port))
        .await
        .with_context(|| format!("listening on {}:{}", args.host, args.port))?;
    let settings = RegistryConfig { topic: args.topic, replication: args.replication, ..RegistryConfig::default() };
    let server = RegistryServer::start(cluster, listener, settings).await.context("starting the schema registry")?;
    println!("kfn schema registry on http://{}", server.local_addr());
    super::signal::shutdown_signal().await;
    eprintln!("kfn: stopping the schema registry");
    server.stop().await;
    Ok(ExitCode::SUCCESS)
}
