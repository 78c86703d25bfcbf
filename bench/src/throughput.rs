//! Passthrough throughput: a service drains a pre-filled input topic into a
//! fresh output topic while the benchmark samples the output's record count
//! and the service's CPU time; the rate and the CPU per record are taken
//! over the middle of the run (10 % to 90 % of the records), so startup,
//! group join and the tail do not count.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::services::{self, Service, Wiring};
use crate::stack::Stack;

/// How often the output is counted.
const SAMPLE_EVERY: Duration = Duration::from_millis(25);
/// The longest one run may take.
const RUN_LIMIT: Duration = Duration::from_secs(600);

/// What one run measured.
#[derive(Debug, Clone, Copy)]
pub struct RunResult {
    /// Output records per second over the window.
    pub rate: f64,
    /// CPU seconds (user + system) of the service's processes per million records.
    pub cpu_s_per_million: f64,
    /// CPU seconds of the broker per million records, while this service ran.
    pub broker_cpu_s_per_million: f64,
    /// The largest peak RSS of the service's processes, in bytes.
    pub peak_rss: u64,
    /// The most connections the service's processes held to the broker at once.
    pub broker_connections: usize,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    count: i64,
    cpu: Duration,
    broker_cpu: Duration,
}

/// Runs `service` once over the `records` records of `input`.
pub async fn run_once(
    stack: &Stack,
    service: Service,
    input: &str,
    partitions: i32,
    records: i64,
    name: &str,
) -> anyhow::Result<RunResult> {
    let wiring = Wiring {
        input: input.to_string(),
        output: format!("{name}.out"),
        dead_letter: format!("{name}.dlq"),
        partitions,
        name: name.to_string(),
    };
    stack.create_topic(&wiring.output, partitions).await?;
    stack.create_topic(&wiring.dead_letter, 1).await?;
    let mut processes = services::start(stack, service, &wiring)?;
    let started = Instant::now();
    let mut samples = Vec::new();
    // Replicas may get their assignments a moment apart: the window opens once all of them hold one.
    let mut ready_at = None;
    let ports = stack.broker_ports();
    let mut broker_connections = 0;
    loop {
        processes.check_alive()?;
        if ready_at.is_none() && processes.all_ready().await {
            ready_at = Some(Instant::now());
        }
        let (cpu, broker_cpu) = (processes.cpu_time(), stack.broker_cpu());
        broker_connections = broker_connections.max(processes.broker_connections(&ports));
        let count = stack.count(&wiring.output, partitions).await?;
        samples.push(Sample { at: Instant::now(), count, cpu, broker_cpu });
        if count >= records {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < RUN_LIMIT,
            "{}: only {count} of {records} records after {RUN_LIMIT:?}",
            service.label()
        );
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    let peak_rss = processes.peak_rss();
    drop(processes);
    stack.delete_topics(&[&wiring.output, &wiring.dead_letter]).await?;
    let ready_at = ready_at.unwrap_or(started);
    let measured: Vec<Sample> = samples.into_iter().filter(|s| s.at >= ready_at).collect();
    window(&measured, records).map(|(rate, cpu_s_per_million, broker_cpu_s_per_million)| RunResult {
        rate,
        cpu_s_per_million,
        broker_cpu_s_per_million,
        peak_rss,
        broker_connections,
    })
}

/// Rate, and service and broker CPU per million records, between the first samples at or past 10 % and 90 % of `records`.
fn window(samples: &[Sample], records: i64) -> anyhow::Result<(f64, f64, f64)> {
    let first = samples.iter().find(|s| s.count * 10 >= records).context("no sample at 10 %")?;
    let last = samples.iter().find(|s| s.count * 10 >= records * 9).context("no sample at 90 %")?;
    let done = (last.count - first.count) as f64;
    let seconds = last.at.duration_since(first.at).as_secs_f64();
    anyhow::ensure!(done > 0.0 && seconds > 0.0, "the run was too short to measure: use more records");
    let cpu = last.cpu.saturating_sub(first.cpu).as_secs_f64();
    let broker_cpu = last.broker_cpu.saturating_sub(first.broker_cpu).as_secs_f64();
    Ok((done / seconds, cpu / done * 1e6, broker_cpu / done * 1e6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_runs_from_ten_to_ninety_percent() {
        let t0 = Instant::now();
        let s = |ms: u64, count: i64, cpu_ms: u64| Sample {
            at: t0 + Duration::from_millis(ms),
            count,
            cpu: Duration::from_millis(cpu_ms),
            broker_cpu: Duration::from_millis(cpu_ms / 2),
        };
        // Startup (no output, CPU spent), then 1000 records/s at 2 ms of CPU per record.
        let samples = [s(0, 0, 300), s(500, 50, 400), s(1000, 150, 600), s(1800, 950, 2200), s(2000, 1000, 2300)];
        let (rate, cpu, broker) = window(&samples, 1000).expect("window");
        assert!((rate - 1000.0).abs() < 1e-6, "{rate}");
        assert!((cpu - 2.0e3).abs() < 1e-6, "{cpu}");
        assert!((broker - 1.0e3).abs() < 1e-6, "{broker}");
        assert!(window(&samples[..2], 1000).is_err());
    }
}
