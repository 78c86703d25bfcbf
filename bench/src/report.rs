//! The results as a Markdown report: printed, and written between markers
//! into docs/benchmarks.md so the hand-written parts of that file stay.

use std::fmt::Write as _;
use std::path::Path;

use crate::e2e::Phase;
use crate::http_bench::HttpRun;
use crate::memory::MemoryResult;
use crate::services::{Guarantee, Service};
use crate::stats::Summary;
use crate::throughput::RunResult;

/// The lines around the generated block of a run on `broker` (`kafka` or `tansu`) in
/// docs/benchmarks.md: each broker has a block of its own, so a run on one keeps the other's.
pub fn markers(broker: &str) -> (String, String) {
    (
        format!("<!-- scripts/bench --broker {broker} writes the results below; edits there are overwritten -->"),
        format!("<!-- end of the results of scripts/bench --broker {broker} -->"),
    )
}

/// The machine the figures come from.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    /// UTC date and time of the run.
    pub date: String,
    /// `uname -a`.
    pub uname: String,
    /// Online CPUs.
    pub nproc: usize,
    /// The CPU model from /proc/cpuinfo.
    pub cpu: String,
}

impl Machine {
    /// Describes this machine.
    pub fn here() -> Self {
        let run = |cmd: &str, args: &[&str]| {
            std::process::Command::new(cmd)
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        };
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines().find_map(|l| {
                    l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
                })
            })
            .unwrap_or_default();
        Self {
            date: run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            uname: run("uname", &["-a"]),
            nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            cpu,
        }
    }
}

/// Everything one run of the benchmark measured.
#[derive(Debug, Default)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// The local broker, as the report names it.
    pub broker: String,
    /// Records per passthrough run.
    pub records: i64,
    /// Size of one framed OrderCreated value in bytes.
    pub record_bytes: usize,
    /// Partitions of the main passthrough table's input topic (the first count of `passthrough`).
    pub partitions: i32,
    /// Measured repeats per scenario (after one warm-up).
    pub repeats: usize,
    /// Passthrough runs per partition count, each with its runs per service: the first count
    /// is the main table and its ratios, all of them the scaling curves.
    pub passthrough: Vec<(i32, Throughput)>,
    /// Memory of one replica.
    pub memory: Option<MemoryResult>,
    /// HTTP runs per server.
    pub http: Vec<(String, Vec<HttpRun>)>,
    /// CPU of the idle order system and of the broker meanwhile, in % of one core.
    pub e2e_idle: Option<(f64, f64)>,
    /// End-to-end per offered rate: the rate, its phases, and the order system's peak RSS so far.
    pub e2e: Vec<(f64, Vec<Phase>, u64)>,
}

/// Passthrough runs per service at one partition count.
pub type Throughput = Vec<(Service, Vec<RunResult>)>;

/// The median of `f` over `service`'s runs in `runs`.
fn median_in(runs: &Throughput, service: Service, f: fn(&RunResult) -> f64) -> Option<f64> {
    let runs = runs.iter().find(|(s, _)| *s == service).map(|(_, r)| r)?;
    Summary::of(&runs.iter().map(f).collect::<Vec<_>>()).map(|s| s.median)
}

fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let digits = format!("{:.0}", v.round());
    let (sign, digits) = digits.strip_prefix('-').map(|d| ("-", d)).unwrap_or(("", digits.as_str()));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

fn range(s: &Summary, digits: usize, thousands_sep: bool) -> String {
    let f = |v: f64| if thousands_sep { thousands(v) } else { format!("{v:.digits$}") };
    format!("{} ({}–{})", f(s.median), f(s.min), f(s.max))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

const MIB: f64 = 1024.0 * 1024.0;

impl Report {
    /// The main passthrough table's runs (the first partition count).
    fn throughput(&self) -> &Throughput {
        static NONE: Throughput = Vec::new();
        self.passthrough.first().map(|(_, runs)| runs).unwrap_or(&NONE)
    }

    fn median(&self, service: Service, f: fn(&RunResult) -> f64) -> Option<f64> {
        median_in(self.throughput(), service, f)
    }

    /// The report in Markdown.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(md, "Run of {} on `{}`, {} CPUs ({}).\n", m.date, m.uname, m.nproc, m.cpu);
        let _ = writeln!(
            md,
            "A fresh local broker ({}) and kfn's schema registry for the latency scenarios \
             (end to end, HTTP), another for memory and passthrough; every service a child process. \
             Medians of {} repeats after one warm-up, (min–max) beside them. Records: OrderCreated with 3 items, \
             {} bytes framed; {} records per passthrough run over {} partitions.\n",
            self.broker,
            self.repeats,
            self.record_bytes,
            thousands(self.records as f64),
            self.partitions
        );
        self.passthrough(&mut md);
        self.scaling(&mut md);
        self.http_section(&mut md);
        self.e2e_section(&mut md);
        self.memory_section(&mut md);
        md
    }

    fn passthrough(&self, md: &mut String) {
        if self.throughput().is_empty() {
            return;
        }
        let _ = writeln!(md, "### Passthrough: input topic to output topic\n");
        let _ = writeln!(
            md,
            "| service | records/s | CPU s per million records | broker CPU s per million | peak RSS MiB |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|");
        for (service, runs) in self.throughput() {
            let rate = Summary::of(&runs.iter().map(|r| r.rate).collect::<Vec<_>>());
            let cpu = Summary::of(&runs.iter().map(|r| r.cpu_s_per_million).collect::<Vec<_>>());
            let broker = Summary::of(&runs.iter().map(|r| r.broker_cpu_s_per_million).collect::<Vec<_>>());
            let rss = runs.iter().map(|r| r.peak_rss).max().unwrap_or(0) as f64 / MIB;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {rss:.0} |",
                service.label(),
                rate.map(|s| range(&s, 0, true)).unwrap_or_default(),
                cpu.map(|s| range(&s, 2, false)).unwrap_or_default(),
                broker.map(|s| range(&s, 2, false)).unwrap_or_default(),
            );
        }
        let _ = writeln!(
            md,
            "\nRatios of medians (throughput: higher is better for kfn; CPU per record: lower is better for kfn):\n"
        );
        let _ = writeln!(
            md,
            "| kfn | throughput / limit | / Rust | / Python | CPU per record / limit | / Rust | / Python |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
        let rate = |r: &RunResult| r.rate;
        let cpu = |r: &RunResult| r.cpu_s_per_million;
        for (service, _) in self.throughput().iter().filter(|(s, _)| matches!(s, Service::Kfn { before: false, .. })) {
            let (kr, kc) = (self.median(*service, rate), self.median(*service, cpu));
            let mut row = format!("| {} ", service.label());
            for base in [Service::Pipe, Service::RustAvro, Service::Python] {
                row += &format!("| {} ", ratio(kr, self.median(base, rate)));
            }
            for base in [Service::Pipe, Service::RustAvro, Service::Python] {
                row += &format!("| {} ", ratio(kc, self.median(base, cpu)));
            }
            let _ = writeln!(md, "{row}|");
        }
        let _ = writeln!(md);
        self.against_streams(md);
        self.transactional_models(md);
        self.before_after(md);
    }

    /// kfn exactly_once against Kafka Streams exactly_once_v2, as many replicas as processes, same rounds.
    fn against_streams(&self, md: &mut String) {
        let pairs = self.pairs(|s| match s {
            Service::Streams { processes } => Some((
                processes,
                Service::Kfn { guarantee: Guarantee::ExactlyOnce, replicas: processes, before: false },
                s,
            )),
            _ => None,
        });
        self.ratio_table(
            md,
            "kfn exactly_once / Kafka Streams exactly_once_v2, as many kfn replicas as Streams processes, \
             same rounds (throughput above 1 and CPU below 1 favour kfn):",
            "| processes | records/s | CPU per record | broker CPU per record |",
            &pairs,
        );
    }

    /// exactly_once with one producer per member against one per partition, same rounds.
    fn transactional_models(&self, md: &mut String) {
        let pairs = self.pairs(|s| match s {
            Service::Kfn { guarantee: Guarantee::ExactlyOncePerPartition, replicas, before: false } => {
                Some((replicas, Service::Kfn { guarantee: Guarantee::ExactlyOnce, replicas, before: false }, s))
            }
            _ => None,
        });
        self.ratio_table(
            md,
            "exactly_once, one transactional producer per member / one per partition, same rounds \
             (throughput above 1 and CPU below 1 favour per member):",
            "| replicas | records/s | kfn CPU per record | broker CPU per record |",
            &pairs,
        );
    }

    /// The (label, numerator, denominator) services `pick` names, both of which ran.
    fn pairs(&self, pick: impl Fn(Service) -> Option<(usize, Service, Service)>) -> Vec<(usize, Service, Service)> {
        let ran = |s: &Service| self.throughput().iter().any(|(r, _)| r == s);
        self.throughput().iter().filter_map(|(s, _)| pick(*s)).filter(|(_, a, b)| ran(a) && ran(b)).collect()
    }

    /// A table of ratios of medians (records/s, CPU and broker CPU per record), one row per pair.
    fn ratio_table(&self, md: &mut String, intro: &str, header: &str, pairs: &[(usize, Service, Service)]) {
        if pairs.is_empty() {
            return;
        }
        let _ = writeln!(md, "{intro}\n");
        let _ = writeln!(md, "{header}");
        let _ = writeln!(md, "|---:|---:|---:|---:|");
        let rate = |r: &RunResult| r.rate;
        let cpu = |r: &RunResult| r.cpu_s_per_million;
        let broker = |r: &RunResult| r.broker_cpu_s_per_million;
        for &(label, a, b) in pairs {
            let _ = writeln!(
                md,
                "| {label} | {} | {} | {} |",
                ratio(self.median(a, rate), self.median(b, rate)),
                ratio(self.median(a, cpu), self.median(b, cpu)),
                ratio(self.median(a, broker), self.median(b, broker))
            );
        }
        let _ = writeln!(md);
    }

    /// After / before for each kfn service that also ran with the replica built before a change.
    fn before_after(&self, md: &mut String) {
        let pairs: Vec<(Service, Service)> = self
            .throughput()
            .iter()
            .filter_map(|(s, _)| match *s {
                Service::Kfn { guarantee, replicas, before: true } => {
                    Some((*s, Service::Kfn { guarantee, replicas, before: false }))
                }
                _ => None,
            })
            .collect();
        if pairs.is_empty() {
            return;
        }
        let _ = writeln!(
            md,
            "Runtime change, same rounds (after / before; throughput above 1 and CPU below 1 are better):\n"
        );
        let _ = writeln!(md, "| kfn | records/s after / before | CPU per record after / before |");
        let _ = writeln!(md, "|---|---:|---:|");
        let rate = |r: &RunResult| r.rate;
        let cpu = |r: &RunResult| r.cpu_s_per_million;
        for (before, after) in pairs {
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                after.label(),
                ratio(self.median(after, rate), self.median(before, rate)),
                ratio(self.median(after, cpu), self.median(before, cpu))
            );
        }
        let _ = writeln!(md);
    }

    /// Curves against partitions and replicas: a row per service and partition count, then the
    /// issue's targets at each count.
    fn scaling(&self, md: &mut String) {
        if self.passthrough.len() < 2 {
            return;
        }
        let counts: Vec<String> = self.passthrough.iter().map(|(p, _)| p.to_string()).collect();
        let _ = writeln!(md, "### Scaling: partitions ({}) and replicas\n", counts.join(", "));
        let _ = writeln!(
            md,
            "Each partition count on an input topic of its own, filled with the same {} records; the services \
             that scale (below) in rounds as above. Connections are each process's to the broker, the most \
             seen during the run.\n",
            thousands(self.records as f64)
        );
        let _ = writeln!(
            md,
            "| service | partitions | records/s | CPU s per million records | broker CPU s per million | \
             connections per process | peak RSS MiB |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
        let mut services: Vec<Service> = Vec::new();
        for (_, runs) in &self.passthrough {
            for (s, _) in runs.iter().filter(|(s, _)| s.scales()) {
                if !services.contains(s) {
                    services.push(*s);
                }
            }
        }
        for service in &services {
            for (partitions, runs) in &self.passthrough {
                let Some((_, runs)) = runs.iter().find(|(s, _)| s == service) else { continue };
                let of = |f: fn(&RunResult) -> f64| Summary::of(&runs.iter().map(f).collect::<Vec<_>>());
                let connections =
                    runs.iter().map(|r| r.broker_connections).max().unwrap_or(0) as f64 / service.processes() as f64;
                let rss = runs.iter().map(|r| r.peak_rss).max().unwrap_or(0) as f64 / MIB;
                let _ = writeln!(
                    md,
                    "| {} | {partitions} | {} | {} | {} | {connections:.0} | {rss:.0} |",
                    service.label(),
                    of(|r| r.rate).map(|s| range(&s, 0, true)).unwrap_or_default(),
                    of(|r| r.cpu_s_per_million).map(|s| range(&s, 2, false)).unwrap_or_default(),
                    of(|r| r.broker_cpu_s_per_million).map(|s| range(&s, 2, false)).unwrap_or_default(),
                );
            }
        }
        let _ = writeln!(
            md,
            "\nThe targets at each partition count (ratios of medians, one replica or process each; \
             throughput above 1 and CPU below 1 favour kfn):\n"
        );
        let _ = writeln!(
            md,
            "| partitions | at_least_once / Rust: records/s | CPU per record | exactly_once / Kafka Streams: \
             records/s | broker CPU per record, at_least_once / librdkafka pipe | exactly_once / pipe |"
        );
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|");
        let kfn = |guarantee| Service::Kfn { guarantee, replicas: 1, before: false };
        let (alo, eos) = (kfn(Guarantee::AtLeastOnce), kfn(Guarantee::ExactlyOnce));
        let rate = |r: &RunResult| r.rate;
        let cpu = |r: &RunResult| r.cpu_s_per_million;
        let broker = |r: &RunResult| r.broker_cpu_s_per_million;
        for (partitions, runs) in &self.passthrough {
            let m = |s, f| median_in(runs, s, f);
            let _ = writeln!(
                md,
                "| {partitions} | {} | {} | {} | {} | {} |",
                ratio(m(alo, rate), m(Service::RustAvro, rate)),
                ratio(m(alo, cpu), m(Service::RustAvro, cpu)),
                ratio(m(eos, rate), m(Service::Streams { processes: 1 }, rate)),
                ratio(m(alo, broker), m(Service::Pipe, broker)),
                ratio(m(eos, broker), m(Service::Pipe, broker)),
            );
        }
        let _ = writeln!(md);
    }

    fn http_section(&self, md: &mut String) {
        if self.http.is_empty() {
            return;
        }
        let _ = writeln!(
            md,
            "### HTTP: POST /orders, {} keep-alive connections, closed loop\n",
            crate::http_bench::CONNECTIONS
        );
        let _ = writeln!(md, "| server | requests/s | p50 ms | p99 ms | CPU s per million requests | broker CPU s per million | errors |");
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
        for (label, runs) in &self.http {
            let s = |f: fn(&HttpRun) -> f64| Summary::of(&runs.iter().map(f).collect::<Vec<_>>());
            let errors: u64 = runs.iter().map(|r| r.load.errors).sum();
            let _ = writeln!(
                md,
                "| {label} | {} | {} | {} | {} | {} | {errors} |",
                s(|r| r.load.rate()).map(|s| range(&s, 0, true)).unwrap_or_default(),
                s(|r| r.load.latency(50.0)).map(|s| range(&s, 2, false)).unwrap_or_default(),
                s(|r| r.load.latency(99.0)).map(|s| range(&s, 2, false)).unwrap_or_default(),
                s(|r| r.cpu_s_per_million).map(|s| range(&s, 1, false)).unwrap_or_default(),
                s(|r| r.broker_cpu_s_per_million).map(|s| range(&s, 1, false)).unwrap_or_default(),
            );
        }
        let _ = writeln!(md);
    }

    fn e2e_section(&self, md: &mut String) {
        if let Some((kfn, broker)) = self.e2e_idle {
            let _ = writeln!(
                md,
                "The order system idle (assigned, no orders) for 5 s: kfn {kfn:.0} % of a core, the broker {broker:.0} %.\n"
            );
        }
        for (rate, phases, rss) in &self.e2e {
            let _ = writeln!(md, "### End to end: POST /orders to shipments.dispatched at {rate:.0} orders/s\n");
            let _ = writeln!(md, "| repeat | accepted | missing | p50 ms | p99 ms | max ms | kfn CPU ms per order | broker CPU ms per order |");
            let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
            for (i, p) in phases.iter().enumerate() {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
                    i + 1,
                    p.accepted,
                    p.missing,
                    p.latency(50.0),
                    p.latency(99.0),
                    p.latency(100.0),
                    p.kfn_cpu_ms_per_order,
                    p.broker_cpu_ms_per_order
                );
            }
            let s = |f: fn(&Phase) -> f64| Summary::of(&phases.iter().map(f).collect::<Vec<_>>());
            let _ = writeln!(
                md,
                "\nMedian of the repeats: p50 {}, p99 {} ms. Peak RSS of the order system's process \
                 (9 functions and the HTTP trigger) so far: {:.0} MiB.\n",
                s(|p| p.latency(50.0)).map(|s| range(&s, 1, false)).unwrap_or_default(),
                s(|p| p.latency(99.0)).map(|s| range(&s, 1, false)).unwrap_or_default(),
                *rss as f64 / MIB
            );
        }
    }

    fn memory_section(&self, md: &mut String) {
        let Some(m) = &self.memory else { return };
        let _ =
            writeln!(md, "### Memory of one kfn replica (at_least_once passthrough, {} partitions)\n", self.partitions);
        let _ = writeln!(md, "| moment | peak RSS MiB |");
        let _ = writeln!(md, "|---|---:|");
        let _ = writeln!(md, "| assigned, idle | {:.1} |", m.idle as f64 / MIB);
        let _ = writeln!(md, "| after {} records | {:.1} |\n", thousands(m.records as f64), m.loaded as f64 / MIB);
    }
}

/// Replaces the generated block of `path` with `block` (adding it at the end when absent).
pub fn write_into(path: &Path, broker: &str, block: &str) -> std::io::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let (begin, end) = markers(broker);
    let generated = format!("{begin}\n\n{}\n{end}", block.trim_end());
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(b), Some(e)) if b < e => format!("{}{generated}{}", &old[..b], &old[e + end.len()..]),
        _ => format!("{}\n\n{generated}\n", old.trim_end()),
    };
    std::fs::write(path, new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_with_thousands_separators() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(-1000.0), "-1,000");
        assert_eq!(ratio(Some(1.0), Some(4.0)), "0.25");
        assert_eq!(ratio(Some(1.0), None), "–");
    }

    #[test]
    fn kfn_exactly_once_is_set_against_kafka_streams_with_as_many_processes() {
        let run = |rate: f64, cpu: f64, broker: f64| RunResult {
            rate,
            cpu_s_per_million: cpu,
            broker_cpu_s_per_million: broker,
            peak_rss: 0,
            broker_connections: 0,
        };
        let eos = |replicas| Service::Kfn { guarantee: Guarantee::ExactlyOnce, replicas, before: false };
        let report = Report {
            passthrough: vec![(
                6,
                vec![
                    (Service::Streams { processes: 1 }, vec![run(50_000.0, 8.0, 4.0)]),
                    (Service::Streams { processes: 2 }, vec![run(60_000.0, 8.0, 4.0)]),
                    (eos(1), vec![run(100_000.0, 4.0, 6.0)]),
                ],
            )],
            ..Report::default()
        };
        let md = report.markdown();
        assert!(md.contains("| 1 | 2.00 | 0.50 | 1.50 |"), "{md}");
        // No kfn exactly_once with 2 replicas ran: no row for 2 processes.
        assert!(!md.contains("| 2 |"), "{md}");
        assert!(md.contains("| Kafka Streams exactly_once_v2, 2 processes |"), "{md}");
    }

    #[test]
    fn the_scaling_table_has_a_row_per_service_and_count_and_the_targets_per_count() {
        let run = |rate: f64, cpu: f64, broker: f64, connections| RunResult {
            rate,
            cpu_s_per_million: cpu,
            broker_cpu_s_per_million: broker,
            peak_rss: 0,
            broker_connections: connections,
        };
        let kfn = |guarantee, replicas| Service::Kfn { guarantee, replicas, before: false };
        let at = |partitions, kfn_rate| {
            (
                partitions,
                vec![
                    (Service::Pipe, vec![run(200_000.0, 1.0, 2.0, 3)]),
                    (Service::RustAvro, vec![run(100_000.0, 3.0, 2.0, 3)]),
                    (Service::Python, vec![run(10_000.0, 30.0, 2.0, 3)]),
                    (Service::Streams { processes: 1 }, vec![run(50_000.0, 8.0, 4.0, 5)]),
                    (kfn(Guarantee::AtLeastOnce, 1), vec![run(kfn_rate, 6.0, 1.0, 4)]),
                    (kfn(Guarantee::ExactlyOnce, 1), vec![run(kfn_rate / 2.0, 4.0, 3.0, 4)]),
                    (kfn(Guarantee::AtLeastOnce, 2), vec![run(kfn_rate, 6.0, 1.0, 8)]),
                ],
            )
        };
        let report = Report { passthrough: vec![at(6, 100_000.0), at(600, 50_000.0)], ..Report::default() };
        let md = report.markdown();
        assert!(md.contains("### Scaling: partitions (6, 600) and replicas"), "{md}");
        // Connections per process: 8 held by two replicas are 4 each.
        assert!(md.contains("| kfn at_least_once, 2 replicas | 600 | 50,000 (50,000–50,000) | 6.00 (6.00–6.00) | 1.00 (1.00–1.00) | 4 | 0 |"), "{md}");
        assert!(md.contains("| 600 | 0.50 | 2.00 | 0.50 | 0.50 | 1.50 |"), "{md}");
        assert!(md.contains("| 6 | 1.00 | 2.00 | 1.00 | 0.50 | 1.50 |"), "{md}");
        // Python is in the main table but not among the services that scale.
        assert!(!md.contains("| Python on confluent-kafka + Avro | 6 |"), "{md}");
    }

    #[test]
    fn the_generated_block_is_replaced_and_the_rest_kept() {
        let dir = std::env::temp_dir().join(format!("kfn-bench-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("b.md");
        std::fs::write(&path, "# Title\nhand-written\n").expect("write");
        write_into(&path, "kafka", "first").expect("first");
        write_into(&path, "tansu", "other broker").expect("other");
        write_into(&path, "kafka", "second").expect("second");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("# Title\nhand-written\n"));
        assert!(text.contains("second") && !text.contains("first"));
        assert!(text.contains("other broker"), "a run on one broker keeps the other's block: {text}");
        assert_eq!(text.matches(&markers("kafka").0).count(), 1);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
