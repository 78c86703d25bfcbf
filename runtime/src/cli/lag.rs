//! `kfn lag`: each topic function's lag from its group's committed offsets.
//!
//! Asks the brokers, not the replicas ([`crate::lag`]): it answers the same
//! whether replicas run or not.

use crate::kafka_settings::ClusterFromConfig;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::FunctionKind;
use crate::kafka::Cluster;
use crate::lag::{function_lag, FunctionLag};

/// `kfn lag` arguments.
#[derive(Debug, Args)]
pub struct LagArgs {
    /// The configuration file.
    #[arg(long, short, default_value = "functions.toml", env = "KFN_CONFIG")]
    config: PathBuf,
    /// Only this function (repeatable); default: every topic function.
    #[arg(long, short)]
    function: Vec<String>,
    /// One JSON array of functions with their partitions, for scripts.
    #[arg(long)]
    json: bool,
}

/// Runs `kfn lag`.
pub async fn run(args: LagArgs, registry: &kfn_sdk::Registry) -> anyhow::Result<ExitCode> {
    let config = super::load(&args.config, registry)?;
    for name in &args.function {
        match config.functions.get(name).map(|f| &f.kind) {
            Some(FunctionKind::Topic { .. }) => {}
            Some(FunctionKind::Http { .. }) => {
                anyhow::bail!("--function {name}: an HTTP function has no group and no lag")
            }
            None => {
                let known: Vec<_> = config.functions.keys().cloned().collect();
                anyhow::bail!("--function {name}: no such function (declared: {})", known.join(", "))
            }
        }
    }
    let cluster = Cluster::from_config(&config).context("connecting to the brokers")?;
    let mut lags = Vec::new();
    // An aggregate that repartitions has two groups: its rekey stage's and its fold's.
    for (name, spec) in config.functions.iter().flat_map(|(name, f)| f.stages().into_iter().map(move |s| (name, s))) {
        let wanted = args.function.is_empty() || args.function.contains(name);
        if !wanted || spec.inputs().is_empty() {
            continue;
        }
        let lag = function_lag(&cluster, &spec, config.runtime.isolation)
            .await
            .with_context(|| format!("the lag of function {} (group {})", spec.name, spec.group_id()))?;
        lags.push(lag);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&lags)?);
    } else {
        print!("{}", table(&lags));
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per partition, a total per function.
fn table(lags: &[FunctionLag]) -> String {
    let mut out = format!(
        "{:<24} {:<32} {:>9} {:>12} {:>12} {:>10}\n",
        "FUNCTION", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"
    );
    for f in lags {
        for p in &f.partitions {
            let committed = p.committed.map_or_else(|| "-".to_string(), |c| c.to_string());
            let note = if p.committed.is_none() {
                format!("  (nothing committed: from earliest {})", p.from)
            } else {
                String::new()
            };
            out.push_str(&format!(
                "{:<24} {:<32} {:>9} {:>12} {:>12} {:>10}{note}\n",
                f.function, p.topic, p.partition, committed, p.end, p.lag
            ));
        }
        out.push_str(&format!(
            "{:<24} {:<32} {:>9} {:>12} {:>12} {:>10}\n",
            f.function,
            "(total)",
            "",
            "",
            "",
            f.total()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::kafka::lag::PartitionLag;

    use super::*;

    #[test]
    fn the_table_says_when_nothing_is_committed_and_totals_each_function() {
        let lags = vec![FunctionLag {
            function: "payment".into(),
            group: "kfn.payment".into(),
            partitions: vec![
                PartitionLag { topic: "orders".into(), partition: 0, committed: Some(4), from: 4, end: 10, lag: 6 },
                PartitionLag { topic: "orders".into(), partition: 1, committed: None, from: 2, end: 5, lag: 3 },
            ],
        }];
        let text = table(&lags);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[1].split_whitespace().eq(["payment", "orders", "0", "4", "10", "6"]), "{text}");
        assert!(lines[2].contains("nothing committed: from earliest 2"), "{text}");
        assert!(lines[3].split_whitespace().eq(["payment", "(total)", "9"]), "{text}");
    }
}
