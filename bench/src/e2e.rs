//! End-to-end latency: orders POSTed to the order system at a fixed rate,
//! each timed from the request to its record on shipments.dispatched
//! (validation, payment, inventory and warehouse in between, each an
//! exactly_once function), matched by order id (the record key).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kfn::kafka::consumer::{list_offset, LogEnd, PartitionReader};
use kfn::kafka::fetch::{FetchLimits, Isolation};
use kfn::kafka::group::protocol::TopicPartition;
use tokio::sync::mpsc;

use crate::http_load::fixed_rate;
use crate::orders::order_request_json;
use crate::services::Processes;
use crate::stack::Stack;
use crate::stats::percentile;

const DISPATCHED: &str = "shipments.dispatched";
/// How long an order may take to reach shipments.dispatched before it counts as missing.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// The latencies of one phase at the offered rate.
#[derive(Debug, Clone)]
pub struct Phase {
    /// Orders accepted (202).
    pub accepted: usize,
    /// Orders not accepted.
    pub refused: usize,
    /// Accepted orders never seen on shipments.dispatched within the drain limit.
    pub missing: usize,
    /// POST-to-dispatched latencies in milliseconds, sorted.
    pub latencies_ms: Vec<f64>,
    /// CPU milliseconds of the order system's process per accepted order.
    pub kfn_cpu_ms_per_order: f64,
    /// CPU milliseconds of the broker per accepted order.
    pub broker_cpu_ms_per_order: f64,
}

impl Phase {
    /// A latency percentile in milliseconds.
    pub fn latency(&self, p: f64) -> f64 {
        percentile(&self.latencies_ms, p).unwrap_or(f64::NAN)
    }
}

/// Reads shipments.dispatched from its end, sending each key with the instant it was read.
async fn watch_dispatched(stack: &Stack, tx: mpsc::UnboundedSender<(String, Instant)>) -> anyhow::Result<()> {
    let partitions = stack.cluster.topic(DISPATCHED).await?.partitions.len() as i32;
    // A short broker wait: the reader's own polling delay is part of what it measures.
    let limits = FetchLimits { max_wait: Duration::from_millis(20), ..FetchLimits::default() };
    for p in 0..partitions {
        let tp = TopicPartition::new(DISPATCHED, p);
        let start = list_offset(&stack.cluster, &tp, LogEnd::Latest, Isolation::ReadCommitted).await?;
        let mut reader =
            PartitionReader::new(stack.cluster.clone(), tp, start, Isolation::ReadCommitted, LogEnd::Latest)
                .with_limits(limits);
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                let batch = match reader.next().await {
                    Ok(batch) => batch,
                    Err(e) => {
                        // Said once per run of failures: a reader that fails silently measures nothing.
                        if !std::mem::replace(&mut failing, true) {
                            eprintln!("kfn-bench: reading {DISPATCHED}[{p}] failed (retrying): {e}");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                failing = false;
                let now = Instant::now();
                for record in batch.records {
                    let key = record.key.as_deref().map(String::from_utf8_lossy).unwrap_or_default().into_owned();
                    if tx.send((key, now)).is_err() {
                        return;
                    }
                }
            }
        });
    }
    Ok(())
}

/// Offers `rate` orders/s to `http` (the order system's trigger) for `warm_up`, then `repeats` phases of `duration`.
pub async fn run(
    stack: &Stack,
    system: &Processes,
    http: &str,
    rate: f64,
    warm_up: Duration,
    duration: Duration,
    repeats: usize,
) -> anyhow::Result<Vec<Phase>> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    watch_dispatched(stack, tx).await?;
    let url = format!("{http}/orders");
    let mut seen: HashMap<String, Instant> = HashMap::new();
    let mut phases = Vec::new();
    let mut first = 0;
    for (i, length) in std::iter::once(warm_up).chain(std::iter::repeat_n(duration, repeats)).enumerate() {
        let (kfn_cpu, broker_cpu) = (system.cpu_time(), stack.broker_cpu());
        let sent = fixed_rate(&url, rate, length, first, order_request_json).await?;
        first += sent.len();
        let mut accepted = Vec::new();
        let mut refused = 0;
        for s in sent {
            let id = serde_json::from_slice::<serde_json::Value>(&s.body)
                .ok()
                .and_then(|v| v["order_id"].as_str().map(str::to_string));
            match id {
                Some(id) if s.status == 202 => accepted.push((id, s.at)),
                _ => refused += 1,
            }
        }
        let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
        while accepted.iter().any(|(id, _)| !seen.contains_key(id)) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((key, at))) => {
                    seen.insert(key, at);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let mut latencies: Vec<f64> = accepted
            .iter()
            .filter_map(|(id, at)| seen.get(id).map(|done| done.saturating_duration_since(*at).as_secs_f64() * 1e3))
            .collect();
        latencies.sort_by(f64::total_cmp);
        let missing = accepted.len() - latencies.len();
        let per_order = |used: Duration| used.as_secs_f64() * 1e3 / accepted.len().max(1) as f64;
        let phase = Phase {
            accepted: accepted.len(),
            refused,
            missing,
            latencies_ms: latencies,
            kfn_cpu_ms_per_order: per_order(system.cpu_time().saturating_sub(kfn_cpu)),
            broker_cpu_ms_per_order: per_order(stack.broker_cpu().saturating_sub(broker_cpu)),
        };
        eprintln!(
            "kfn-bench: e2e {rate}/s {}: {} accepted, {} refused, {} missing, p50 {:.1} ms, p99 {:.1} ms, CPU per order: kfn {:.2} ms, broker {:.2} ms",
            if i == 0 { "warm-up".to_string() } else { format!("repeat {i}") },
            phase.accepted,
            phase.refused,
            phase.missing,
            phase.latency(50.0),
            phase.latency(99.0),
            phase.kfn_cpu_ms_per_order,
            phase.broker_cpu_ms_per_order
        );
        if i > 0 {
            phases.push(phase);
        }
    }
    Ok(phases)
}
