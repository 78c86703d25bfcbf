//! Memory of one kfn replica (at_least_once passthrough): peak RSS once it
//! holds its assignment and idles, then after it processed a burst of records.

use std::time::{Duration, Instant};

use crate::orders::fill_topic;
use crate::services::{self, Guarantee, Service, Wiring};
use crate::stack::Stack;

/// Peak RSS of the replica at the two moments, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct MemoryResult {
    /// Assigned, nothing to do.
    pub idle: u64,
    /// After processing the burst.
    pub loaded: u64,
    /// Records in the burst.
    pub records: usize,
}

/// Starts a replica on an empty input, measures it idle, then after `records` records.
pub async fn measure(stack: &Stack, partitions: i32, records: usize) -> anyhow::Result<MemoryResult> {
    let wiring = Wiring {
        input: "memory.in".into(),
        output: "memory.out".into(),
        dead_letter: "memory.dlq".into(),
        partitions,
        name: "memory".into(),
    };
    for topic in [&wiring.input, &wiring.output] {
        stack.create_topic(topic, partitions).await?;
    }
    stack.create_topic(&wiring.dead_letter, 1).await?;
    let service = Service::Kfn { guarantee: Guarantee::AtLeastOnce, replicas: 1, before: false };
    let mut processes = services::start(stack, service, &wiring)?;
    processes.await_ready(Duration::from_secs(60)).await?;
    // Idle means a while with nothing to do: give the fetch loops a few seconds of empty polls.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = processes.peak_rss();
    fill_topic(stack, &wiring.input, partitions, records).await?;
    let started = Instant::now();
    while stack.count(&wiring.output, partitions).await? < records as i64 {
        processes.check_alive()?;
        anyhow::ensure!(started.elapsed() < Duration::from_secs(300), "the memory run did not finish in 300 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(MemoryResult { idle, loaded: processes.peak_rss(), records })
}
