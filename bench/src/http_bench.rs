//! The HTTP trigger against the HTTP limit: a closed loop of keep-alive
//! connections POSTing orders to kfn's order API (answered once the broker
//! acknowledged the OrderCreated) and to a bare hyper server answering 202.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use crate::http_load::{closed_loop, get_status, LoadResult};
use crate::orders::order_request_json;
use crate::services::Processes;
use crate::stack::Stack;

/// Concurrent connections of the load generator.
pub const CONNECTIONS: usize = 32;

/// One repeat against one server.
#[derive(Debug, Clone)]
pub struct HttpRun {
    /// What the load generator saw.
    pub load: LoadResult,
    /// CPU seconds of the server per million requests.
    pub cpu_s_per_million: f64,
    /// CPU seconds of the broker per million requests.
    pub broker_cpu_s_per_million: f64,
}

/// Starts the bare hyper server; returns it and its base URL.
pub async fn start_sink(stack: &Stack) -> anyhow::Result<(Processes, String)> {
    let port = kfn::dev::ports::free_port()?;
    let child = Command::new(stack.bin_dir.join("http-sink"))
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("starting http-sink")?;
    let mut processes = Processes::adopt(child, None);
    let url = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while get_status(&url).await.is_none() {
        processes.check_alive()?;
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "http-sink did not listen within 10 s");
        // The server gives no readiness signal but its port.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((processes, url))
}

/// Warms `url` up, then measures `repeats` runs of `duration` each.
pub async fn measure(
    stack: &Stack,
    processes: &mut Processes,
    url: &str,
    warm_up: Duration,
    duration: Duration,
    repeats: usize,
) -> anyhow::Result<Vec<HttpRun>> {
    let orders = format!("{url}/orders");
    closed_loop(&orders, CONNECTIONS, warm_up, order_request_json).await?;
    let mut runs = Vec::new();
    for _ in 0..repeats {
        processes.check_alive()?;
        let (before, broker_before) = (processes.cpu_time(), stack.broker_cpu());
        let load = closed_loop(&orders, CONNECTIONS, duration, order_request_json).await?;
        let cpu = processes.cpu_time().saturating_sub(before).as_secs_f64();
        let broker_cpu = stack.broker_cpu().saturating_sub(broker_before).as_secs_f64();
        if let Some(e) = &load.first_error {
            eprintln!("kfn-bench: {url}: {} errors, first: {e}", load.errors);
        }
        let per_million = |used: f64| if load.ok > 0 { used / load.ok as f64 * 1e6 } else { f64::NAN };
        let (cpu_s_per_million, broker_cpu_s_per_million) = (per_million(cpu), per_million(broker_cpu));
        runs.push(HttpRun { load, cpu_s_per_million, broker_cpu_s_per_million });
    }
    Ok(runs)
}
