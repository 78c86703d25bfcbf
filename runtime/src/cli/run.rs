//! `kfn run`: the declared functions against the configured brokers.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use tokio::sync::watch;

use crate::app::{self, App};

/// Options of `kfn run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file.
    #[arg(long, short, default_value = "functions.toml", env = "KFN_CONFIG")]
    config: PathBuf,
    /// Run only these functions (repeat the flag for several); all when absent.
    #[arg(long)]
    only: Vec<String>,
}

pub async fn run(args: RunArgs, registry: kfn_sdk::Registry) -> anyhow::Result<ExitCode> {
    let config = super::load(&args.config, &registry)?;
    run_app(config, registry, &args.only).await
}

/// Runs the application until Ctrl-C or SIGTERM, then stops it within the shutdown timeout.
pub(crate) async fn run_app(
    config: crate::config::Config,
    registry: kfn_sdk::Registry,
    only: &[String],
) -> anyhow::Result<ExitCode> {
    let shutdown_timeout = config.runtime.shutdown_timeout;
    // Spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set (docs/operations.md).
    let otlp = crate::otel::init().context("starting the OTLP span exporter")?;
    let app = Arc::new(App::new(config, registry).await.context("starting kfn")?);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let running = app::start(app, only, shutdown_rx).await.context("starting the functions")?;
    print_listening(&running.listening);
    print_otlp(&otlp);
    println!("Press Ctrl-C to stop.");
    // One line when every function holds its partitions (the per-partition lines are at debug).
    let (readiness, started, functions) =
        (running.readiness.clone(), std::time::Instant::now(), running.listening.functions.len());
    tokio::spawn(async move {
        readiness.all_ready().await;
        println!(
            "  ready            all {functions} functions hold their partitions ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
    });
    super::signal::shutdown_signal().await;
    eprintln!("kfn: stopping: finishing in-flight work (at most {shutdown_timeout:?}), committing, leaving the groups");
    let _ = shutdown_tx.send(true);
    // Revocation waits for each worker up to the shutdown timeout; leave a margin for commits and LeaveGroup.
    if tokio::time::timeout(shutdown_timeout * 2 + std::time::Duration::from_secs(5), running.wait()).await.is_err() {
        eprintln!("kfn: some work did not stop in time");
    }
    // The spans of the last invocations, exported before the process exits.
    crate::otel::shutdown(std::time::Duration::from_secs(5)).await;
    Ok(ExitCode::SUCCESS)
}

fn print_listening(l: &app::Listening) {
    if let Some(http) = l.http {
        println!("  HTTP trigger     http://{http}");
    }
    println!("  metrics/health   http://{}/metrics  /healthz  /readyz", l.admin);
    println!("  functions        {}", l.functions.join(", "));
}

fn print_otlp(endpoint: &Option<String>) {
    if let Some(endpoint) = endpoint {
        println!("  spans (OTLP)     {endpoint}");
    }
}
