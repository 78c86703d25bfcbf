//! The benchmark: one local broker, every scenario, one table.
//!
//! `kfn-bench [--broker kafka|tansu] [--records N] [--repeats R] [--only passthrough,memory,e2e,http]
//!            [--services pipe,rust,python,streams-eos,streams-eos-2,kfn-alo-1,kfn-alo-2,kfn-eos-1,kfn-eos-2,
//!                        kfn-alo-4,kfn-eos-4,kfn-eospp-1,kfn-eospp-2]
//!            [--partitions P1,P2,…]
//!            [--http-seconds S] [--e2e-rate R1,R2] [--e2e-seconds S] [--out FILE|-]`
//!
//! `kfn-eospp-*` is exactly_once with one transactional producer per input
//! partition, beside `kfn-eos-*` (one per member where the broker allows).
//! `streams-eos` and `streams-eos-2` are the passthrough on Kafka Streams with
//! exactly_once_v2 in 1 and 2 JVMs (`bench/streams`, built with mvn on first
//! use); they run only with `--broker kafka` (on tansu the default list leaves them out).
//!
//! `--partitions` takes one count or several: the first gets every chosen service and
//! the ratio tables, each further count the scaling subset (the librdkafka pipe and Rust
//! service, one Kafka Streams process, kfn at_least_once and exactly_once with 1, 2 and 4
//! replicas) on an input topic of its own, for the curves against partitions and replicas.
//! The default is 6 on tansu and 6,60,600 on Apache Kafka; the end-to-end rates default to
//! 200 and 1,000 orders/s on Apache Kafka, 50 and 200 on tansu.
//!
//! `KFN_BENCH_BEFORE=<a kfn-bench-replica built before a runtime change>`
//! adds each kfn passthrough with that build, for a before/after table.
//!
//! Run it through `scripts/bench`, which builds the binaries in release mode
//! and prepares the Python service's virtualenv.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use kfn::dev::BrokerKind;
use kfn_bench::report::{Machine, Report};
use kfn_bench::services::{Guarantee, Service};
use kfn_bench::stack::Stack;
use kfn_bench::{e2e, http_bench, memory, order_system, orders, throughput};

struct Options {
    broker: BrokerKind,
    records: i64,
    repeats: usize,
    only: Vec<String>,
    services: Vec<String>,
    http_seconds: u64,
    e2e_rates: Vec<f64>,
    e2e_seconds: u64,
    out: Option<PathBuf>,
    /// Partition counts of the passthrough; empty until parsed means the broker's default.
    partitions: Vec<i32>,
}

fn options(root: &Path) -> anyhow::Result<Options> {
    let mut o = Options {
        broker: BrokerKind::Kafka,
        records: 300_000,
        repeats: 3,
        only: Vec::new(),
        services: Vec::new(),
        http_seconds: 10,
        e2e_rates: Vec::new(),
        e2e_seconds: 20,
        out: Some(root.join("docs/benchmarks.md")),
        partitions: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--broker" => {
                let name = value()?;
                o.broker =
                    BrokerKind::parse(&name).with_context(|| format!("--broker {name}: expected kafka or tansu"))?
            }
            "--records" => o.records = value()?.parse()?,
            "--repeats" => o.repeats = value()?.parse()?,
            "--only" => o.only = value()?.split(',').map(str::to_string).collect(),
            "--services" => o.services = value()?.split(',').map(str::to_string).collect(),
            "--http-seconds" => o.http_seconds = value()?.parse()?,
            "--e2e-rate" => o.e2e_rates = value()?.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--e2e-seconds" => o.e2e_seconds = value()?.parse()?,
            "--partitions" => o.partitions = value()?.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--out" => o.out = Some(value()?).filter(|v| v != "-").map(PathBuf::from),
            other => anyhow::bail!("unknown argument {other}; see the doc comment of bench/src/bin/kfn-bench.rs"),
        }
    }
    anyhow::ensure!(o.records >= 1000 && o.repeats >= 1, "--records must be at least 1000 and --repeats at least 1");
    anyhow::ensure!(o.partitions.iter().all(|p| *p >= 1), "--partitions: each count must be at least 1");
    if o.e2e_rates.is_empty() {
        // The rates on Apache Kafka; tansu holds each fetch >= 250 ms, so lower rates there.
        o.e2e_rates = match o.broker {
            BrokerKind::Kafka => vec![200.0, 1000.0],
            BrokerKind::Tansu => vec![50.0, 200.0],
        };
    }
    if o.partitions.is_empty() {
        o.partitions = match o.broker {
            BrokerKind::Kafka => vec![6, 60, 600],
            BrokerKind::Tansu => vec![6],
        };
    }
    Ok(o)
}

const SERVICES: [Service; 13] = [
    Service::Pipe,
    Service::RustAvro,
    Service::Python,
    Service::Streams { processes: 1 },
    Service::Streams { processes: 2 },
    Service::Kfn { guarantee: Guarantee::AtLeastOnce, replicas: 1, before: false },
    Service::Kfn { guarantee: Guarantee::AtLeastOnce, replicas: 2, before: false },
    Service::Kfn { guarantee: Guarantee::AtLeastOnce, replicas: 4, before: false },
    Service::Kfn { guarantee: Guarantee::ExactlyOnce, replicas: 1, before: false },
    Service::Kfn { guarantee: Guarantee::ExactlyOnce, replicas: 2, before: false },
    Service::Kfn { guarantee: Guarantee::ExactlyOnce, replicas: 4, before: false },
    Service::Kfn { guarantee: Guarantee::ExactlyOncePerPartition, replicas: 1, before: false },
    Service::Kfn { guarantee: Guarantee::ExactlyOncePerPartition, replicas: 2, before: false },
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("workspace root")?.to_path_buf();
    let o = options(&root)?;
    let wants = |s: &str| o.only.is_empty() || o.only.iter().any(|x| x == s);
    let mut chosen: Vec<Service> =
        SERVICES.iter().copied().filter(|s| o.services.is_empty() || o.services.contains(&s.key())).collect();
    if o.broker == BrokerKind::Tansu {
        // Tried: tansu 0.6 closes every connection Kafka's Java client 4.4 opens to its advertised
        // node while ApiVersions is in flight (the bootstrap connection answers Metadata), so the
        // Streams app never reaches its group coordinator: 0 of 50,000 records in 10 minutes.
        if let Some(streams) = chosen.iter().find(|s| matches!(s, Service::Streams { .. })) {
            anyhow::ensure!(
                o.services.is_empty(),
                "--services {}: the Kafka Streams peer runs only with --broker kafka; on tansu 0.6 the Java \
                 client's connections to the broker's node are closed during ApiVersions, so Streams never joins \
                 its group",
                streams.key()
            );
            chosen.retain(|s| !matches!(s, Service::Streams { .. }));
        }
    }
    if wants("passthrough") && chosen.iter().any(|s| matches!(s, Service::Streams { .. })) {
        // Built before any broker starts: the first build fetches jars for a minute or more.
        kfn_bench::streams::classpath(&root)?;
    }
    let bin_dir = std::env::current_exe()?.parent().context("binary directory")?.to_path_buf();
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let run_dir = root.join("target/bench").join(stamp.to_string());
    eprintln!("kfn-bench: logs and configs in {}", run_dir.display());
    let start = |name: &'static str| {
        let (root, run_dir, bin_dir) = (root.clone(), run_dir.join(name), bin_dir.clone());
        let broker = o.broker;
        async move {
            let stack = Stack::start(broker, &root, &run_dir, &bin_dir).await?;
            eprintln!("kfn-bench: {name}: broker {}, registry {}", stack.brokers(), stack.registry_url);
            anyhow::Ok(stack)
        }
    };
    let stack = start("latency").await?;
    let mut report = Report {
        machine: Machine::here(),
        broker: match o.broker {
            BrokerKind::Kafka => format!("Apache Kafka {}, one KRaft node", kfn::dev::apache_kafka::VERSION),
            BrokerKind::Tansu => "tansu, memory storage".into(),
        },
        records: o.records,
        partitions: o.partitions[0],
        repeats: o.repeats,
        ..Report::default()
    };

    // Two brokers in turn, each fresh: tansu slows down as a workload leaves groups, producer ids,
    // transactions and backlogs behind (see docs/benchmarks.md), and the order system's would
    // weigh on the passthrough rounds. Within each, every service meets the same broker.
    // End to end before HTTP: the HTTP runs fill orders.created, which the order system would then have to drain.
    if wants("e2e") {
        let mut system = order_system::start(&stack, &[], "order-system").await?;
        // What the idle order system costs: its fetch loops poll the broker with nothing to do.
        let (kfn_cpu, broker_cpu) = (system.processes.cpu_time(), stack.broker_cpu());
        let idle = Duration::from_secs(5);
        tokio::time::sleep(idle).await;
        let share = |used: Duration| used.as_secs_f64() / idle.as_secs_f64() * 100.0;
        report.e2e_idle = Some((
            share(system.processes.cpu_time().saturating_sub(kfn_cpu)),
            share(stack.broker_cpu().saturating_sub(broker_cpu)),
        ));
        let seconds = Duration::from_secs(o.e2e_seconds);
        // Rates in increasing order: a rate the system cannot sustain leaves a backlog behind.
        let mut rates = o.e2e_rates.clone();
        rates.sort_by(f64::total_cmp);
        for rate in rates {
            let phases =
                e2e::run(&stack, &system.processes, &system.http, rate, Duration::from_secs(5), seconds, o.repeats)
                    .await?;
            system.processes.check_alive()?;
            report.e2e.push((rate, phases, system.processes.peak_rss()));
        }
    }
    if wants("http") {
        let (warm_up, seconds) = (Duration::from_secs(3), Duration::from_secs(o.http_seconds));
        let mut kfn = order_system::start(&stack, &["order_api"], "order-api").await?;
        let runs = http_bench::measure(&stack, &mut kfn.processes, &kfn.http, warm_up, seconds, o.repeats).await?;
        report.http.push(("kfn order_api (write acknowledged)".into(), runs));
        drop(kfn);
        let (mut sink, url) = http_bench::start_sink(&stack).await?;
        let runs = http_bench::measure(&stack, &mut sink, &url, warm_up, seconds, o.repeats).await?;
        report.http.push(("limit: bare hyper, 202, no produce".into(), runs));
    }
    stack.stop().await;
    let stack = start("throughput").await?;
    if wants("memory") {
        report.memory = Some(memory::measure(&stack, o.partitions[0], (o.records as usize).min(100_000)).await?);
    }
    if wants("passthrough") {
        // With KFN_BENCH_BEFORE, each kfn service also runs with the replica built before a change, in the same rounds.
        let compare = std::env::var_os("KFN_BENCH_BEFORE").is_some();
        for (n, &partitions) in o.partitions.iter().enumerate() {
            let input = format!("bench.in.{partitions}");
            stack.create_topic(&input, partitions).await?;
            report.record_bytes = orders::fill_topic(&stack, &input, partitions, o.records as usize).await?;
            eprintln!("kfn-bench: {} records in {input} ({partitions} partitions)", o.records);
            let mut results: Vec<(Service, Vec<_>)> = Vec::new();
            for service in chosen.iter().filter(|s| n == 0 || s.scales()) {
                results.push((*service, Vec::new()));
                if let (true, Service::Kfn { guarantee, replicas, .. }) = (compare, service) {
                    results
                        .push((Service::Kfn { guarantee: *guarantee, replicas: *replicas, before: true }, Vec::new()));
                }
            }
            // Rounds run every service once, so a drift of the machine touches all of them alike; round 0 warms up.
            for round in 0..=o.repeats {
                for (i, (service, runs)) in results.iter_mut().enumerate() {
                    let name = format!("p{partitions}-r{round}-s{i}");
                    let run = throughput::run_once(&stack, *service, &input, partitions, o.records, &name).await?;
                    eprintln!(
                        "kfn-bench: {partitions} partitions, round {round} {}: {:.0} records/s, {:.2} CPU s per million \
                         (broker {:.2}), {:.0} MiB, {} broker connections",
                        service.label(),
                        run.rate,
                        run.cpu_s_per_million,
                        run.broker_cpu_s_per_million,
                        run.peak_rss as f64 / 1048576.0,
                        run.broker_connections
                    );
                    if round > 0 {
                        runs.push(run);
                    }
                }
            }
            stack.delete_topics(&[&input]).await?;
            report.passthrough.push((partitions, results));
        }
    }
    stack.stop().await;

    let markdown = report.markdown();
    println!("{markdown}");
    if let Some(out) = &o.out {
        kfn_bench::report::write_into(out, o.broker.as_str(), &markdown)
            .with_context(|| format!("writing {}", out.display()))?;
        eprintln!("kfn-bench: results written to {}", out.display());
    }
    Ok(())
}
