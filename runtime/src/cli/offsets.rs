//! `kfn offsets`: move a stopped function's committed offsets.
//!
//! The plan and the commit live in [`crate::kafka::group::reset`]; this
//! module picks the partitions of the function and prints.

use crate::kafka_settings::ClusterFromConfig;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::config::FunctionKind;
use crate::kafka::group::reset::{self, Move, ResetTo};
use crate::kafka::Cluster;
use crate::lag::group_partitions;

/// The `kfn offsets` subcommands.
#[derive(Debug, Subcommand)]
pub enum OffsetsCommand {
    /// Move a function's committed offsets on every partition it reads (a dry run unless --execute).
    ///
    /// Every replica of the function must be stopped: a group with active
    /// members is refused. Records before the new offsets are skipped,
    /// records after them read again.
    Reset {
        /// The function whose group (`kfn.<function>`) to move.
        #[arg(long, short)]
        function: String,
        /// earliest, latest, an offset (every partition), or an RFC 3339 time (the first record at or after it).
        #[arg(long)]
        to: ResetTo,
        /// Commit the new offsets; without it, only print them.
        #[arg(long)]
        execute: bool,
        /// The configuration file.
        #[arg(long, short, default_value = "functions.toml", env = "KFN_CONFIG")]
        config: PathBuf,
    },
}

/// Runs a `kfn offsets` subcommand.
pub async fn run(command: OffsetsCommand, registry: &kfn_sdk::Registry) -> anyhow::Result<ExitCode> {
    match command {
        OffsetsCommand::Reset { function, to, execute, config } => {
            let config = super::load(&config, registry)?;
            let spec = config.functions.get(&function).with_context(|| {
                let known: Vec<_> = config.functions.keys().cloned().collect();
                format!("--function {function}: no such function (declared: {})", known.join(", "))
            })?;
            if let FunctionKind::Http { .. } = spec.kind {
                anyhow::bail!("--function {function}: an HTTP function has no group and no offsets");
            }
            let cluster = Cluster::from_config(&config).context("connecting to the brokers")?;
            let group = spec.group_id();
            let partitions =
                group_partitions(&cluster, spec).await.with_context(|| format!("the partitions of {function}"))?;
            let moves = reset::plan(&cluster, &group, &partitions, to, config.runtime.isolation).await?;
            print!("{}", moves_text(&group, to, &moves));
            if execute {
                reset::apply(&cluster, &group, &moves).await?;
                println!("committed: group {group} moved to {to}");
            } else {
                println!("dry run: nothing committed; add --execute to apply");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn moves_text(group: &str, to: ResetTo, moves: &[Move]) -> String {
    let mut out = format!("group {group}, to {to}:\n");
    for m in moves {
        let from = m.from.map_or_else(|| "(nothing committed)".to_string(), |f| f.to_string());
        out.push_str(&format!("  {}/{}  {} -> {}\n", m.topic, m.partition, from, m.to));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_move_is_a_line_from_to() {
        let moves = [
            Move { topic: "t".into(), partition: 0, from: Some(4), to: 0 },
            Move { topic: "t".into(), partition: 1, from: None, to: 0 },
        ];
        let text = moves_text("kfn.f", ResetTo::Earliest, &moves);
        assert_eq!(text, "group kfn.f, to earliest:\n  t/0  4 -> 0\n  t/1  (nothing committed) -> 0\n");
    }
}
