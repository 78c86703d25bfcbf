//! The order system of functions.toml run by kfn against the benchmark's
//! broker, for the HTTP and end-to-end scenarios: topics created with the
//! `[local]` overrides, then `kfn-bench-replica run` with the broker, the
//! registry and free ports given through `KFN_RUNTIME__*`.

use kfn::kafka_settings::EnsureTopics;
use std::time::Duration;

use anyhow::Context;
use kfn::kafka::Admin;

use crate::services::{start_kfn, Processes};
use crate::stack::Stack;

/// A running order system.
pub struct OrderSystem {
    /// The kfn process.
    pub processes: Processes,
    /// `http://host:port` of the HTTP trigger.
    pub http: String,
}

/// Creates the topics of functions.toml (once; later calls find them) and starts
/// the functions in `only` (every function when empty); returns once they all have an assignment.
pub async fn start(stack: &Stack, only: &[&str], log: &str) -> anyhow::Result<OrderSystem> {
    let file = stack.root.join("functions.toml");
    let mut config = kfn::config::Config::load_file_only(&file, &kfn_functions::registry())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("loading {}", file.display()))?;
    config.apply_local_overrides();
    Admin::new(stack.cluster.clone())
        .ensure_topics(config.topics.values())
        .await
        .context("creating the order topics")?;
    // The catalog validation looks products up in, as `kfn dev` without --connect writes it:
    // without it every order is rejected and none reaches shipments.dispatched.
    kfn::dev::seed::seed_topics(&stack.cluster, &config, &stack.root).await.context("seeding shop.products")?;
    let http = format!("127.0.0.1:{}", kfn::dev::ports::free_port()?);
    let admin = format!("127.0.0.1:{}", kfn::dev::ports::free_port()?);
    let env = [
        ("KFN_RUNTIME__BROKERS", format!("[\"{}\"]", stack.brokers())),
        ("KFN_RUNTIME__SCHEMA_REGISTRY", stack.registry_url.clone()),
        ("KFN_RUNTIME__HTTP_ADDR", http.clone()),
        ("KFN_RUNTIME__ADMIN_ADDR", admin.clone()),
    ];
    let mut extra = Vec::new();
    for name in only {
        extra.extend(["--only", name]);
    }
    let child = start_kfn(stack, &stack.bin_dir.join("kfn-bench-replica"), &file, &extra, log, &env)?;
    let mut processes = Processes::adopt(child, Some(admin));
    processes.await_ready(Duration::from_secs(120)).await?;
    Ok(OrderSystem { processes, http: format!("http://{http}") })
}
