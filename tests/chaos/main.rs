//! The chaos runner (issue 19, docs/chaos.md): the whole order system on a
//! three-node Apache Kafka cluster, two replicas of every function, orders
//! over HTTP at a steady rate while faults hit it one at a time, then the
//! invariants read back from the topics.
//!
//! Not part of `cargo test`: this target has `test = false`. Run it with
//! `scripts/chaos` (which also writes docs/chaos.md), or directly:
//!
//! ```text
//! cargo test -p kfn-tests --test chaos -- --quick
//! ```
//!
//! Options: `--orders N` (10000), `--rate R` orders a second (20; `--quick`: 1.5),
//! `--quick` (500 orders, 3 kills, faults of 10 s), `--kills K`,
//! `--report FILE` (the Markdown section), `--orders-bin PATH` (the `orders`
//! binary; default: the one beside this test in the target directory),
//! `--no-netns` (no namespace: the cut-off is skipped).
//!
//! Module map: [`system`] the processes, [`netns`] and [`forward`] the
//! namespace of the isolated replica, [`load`] the clients, [`faults`] the
//! faults and the lag they are measured by, [`invariants`] the checks,
//! [`report`] the results.

mod faults;
mod forward;
mod invariants;
mod load;
mod netns;
mod report;
mod system;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};

use crate::faults::{Lag, Plan};
use crate::load::Load;
use crate::system::System;

/// The runner's parameters.
#[derive(Debug, Clone)]
pub struct Params {
    /// Orders of the steady load.
    pub orders: usize,
    /// Orders a second.
    pub rate: f64,
    /// The short run.
    pub quick: bool,
    /// The faults' sizes.
    pub plan: Plan,
    /// Where to write the Markdown section.
    pub report: Option<PathBuf>,
    /// The `orders` binary.
    pub orders_bin: PathBuf,
    /// Whether to run one replica in a network namespace.
    pub netns: bool,
}

impl Params {
    fn parse(args: &[String]) -> anyhow::Result<Params> {
        let quick = args.iter().any(|a| a == "--quick");
        let full = Plan {
            kills: 10,
            stop_for: Duration::from_secs(15),
            cut_for: Duration::from_secs(30),
            registry_down_for: Duration::from_secs(30),
            burst: 40,
            recovery_limit: Duration::from_secs(300),
        };
        let plan = if quick {
            Plan {
                kills: 3,
                cut_for: Duration::from_secs(10),
                registry_down_for: Duration::from_secs(10),
                burst: 20,
                ..full
            }
        } else {
            full
        };
        let beside = || -> Option<PathBuf> {
            // target/<profile>/deps/chaos-<hash> -> target/<profile>/orders
            Some(std::env::current_exe().ok()?.parent()?.parent()?.join("orders"))
        };
        let mut params = Params {
            orders: if quick { 500 } else { 10_000 },
            rate: if quick { 1.5 } else { 20.0 },
            quick,
            plan,
            report: None,
            orders_bin: std::env::var_os("KFN_CHAOS_ORDERS_BIN").map(PathBuf::from).or_else(beside).unwrap_or_default(),
            netns: true,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--quick" => {}
                "--no-netns" => params.netns = false,
                "--orders" => params.orders = value("--orders")?.parse().context("--orders: a count")?,
                "--rate" => params.rate = value("--rate")?.parse().context("--rate: orders a second")?,
                "--kills" => params.plan.kills = value("--kills")?.parse().context("--kills: a count")?,
                "--report" => params.report = Some(PathBuf::from(value("--report")?)),
                "--orders-bin" => params.orders_bin = PathBuf::from(value("--orders-bin")?),
                other => bail!("unknown argument {other:?}; see tests/chaos/main.rs for the options"),
            }
        }
        if params.orders == 0 || params.rate.is_nan() || params.rate <= 0.0 {
            bail!("--orders and --rate must be above 0");
        }
        if !params.orders_bin.is_file() {
            bail!(
                "the orders binary {} does not exist: build it (cargo build -p kfn-functions --bin orders) or pass --orders-bin",
                params.orders_bin.display()
            );
        }
        Ok(params)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(forward::SUBCOMMAND) {
        return forward::main(&args[1..]);
    }
    let params = match Params::parse(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("chaos: {e:#}");
            return ExitCode::from(2);
        }
    };
    kfn_tests::init_logs();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chaos: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        // On Ctrl-C or SIGTERM the run's future is dropped: the system's drop kills every
        // process and removes the namespace.
        tokio::select! {
            result = run(&params) => result,
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            _ = term.recv() => bail!("terminated"),
        }
    });
    // The clients' tasks may still hold connections: do not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chaos: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The run; Ok(passed).
async fn run(params: &Params) -> anyhow::Result<bool> {
    let started = SystemTime::now();
    let isolate = params.netns && netns::available();
    eprintln!("chaos: {params:?}; namespace: {isolate}");
    let mut system = System::start(&params.orders_bin, isolate).await?;
    let targets: Vec<_> = system.replicas.iter().map(|r| r.http).collect();
    let lag = Lag::new(system.cluster.clone(), system.topic_functions());

    let t0 = Instant::now();
    let mut load = Load::start(targets.clone(), params.orders, params.rate, 64);
    // Warm-up: every stage has seen orders before the first fault.
    tokio::time::sleep(Duration::from_secs(if params.quick { 10 } else { 20 })).await;
    eprintln!("chaos: lag per function after the warm-up: {:?}", lag.totals().await.ok());
    let faults = faults::run_all(&mut system, &lag, &load.ledger, &targets, &params.plan, t0).await;
    if !load.finished() {
        eprintln!("chaos: faults done; waiting for the rest of the load ({} sent)", load.ledger.sent());
    }
    load.wait().await;
    let load_took = t0.elapsed();
    let last_order_at = load.ledger.last_sent().map(|at| at.duration_since(t0)).unwrap_or_default();
    let drain_start = Instant::now();
    let drained = lag.await_zero(drain_start, Duration::from_secs(300)).await;
    eprintln!("chaos: load done in {:.0} s; drained: {drained:?}; checking the invariants", load_took.as_secs_f64());

    let reader = invariants::Reader::new(system.cluster.clone(), &system.registry_url)?;
    let dead_letter_topics: Vec<String> =
        system.config.topics.keys().filter(|t| t.ends_with(".dlq")).cloned().collect();
    let outcomes = load.ledger.outcomes();
    let (mut checks, totals) = invariants::check_all(&reader, &outcomes, &targets, &dead_letter_topics).await?;
    let alive: Vec<bool> = (0..system.replicas.len()).map(|n| system.alive(n)).collect();
    checks.push(invariants::Check {
        name: "every replica still running".into(),
        ok: alive.iter().all(|a| *a),
        detail: format!("{alive:?}"),
    });

    let report = report::Report {
        params,
        isolated: isolate,
        faults,
        checks,
        totals,
        load_took,
        last_order_at,
        drained,
        started,
    };
    let markdown = report.markdown();
    println!("{markdown}");
    // Printed, not written to the report: a path of this machine.
    eprintln!("chaos: the replicas' and the registry's logs are in {}", system.dir.display());
    if let Some(path) = &params.report {
        std::fs::write(path, &markdown).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report.passed())
}
