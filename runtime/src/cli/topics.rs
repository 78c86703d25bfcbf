//! `kfn topics`: create and describe the declared topics.

use crate::kafka_settings::{ClusterFromConfig, EnsureTopics};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::kafka::{Admin, Cluster, CreateOutcome};

/// Topic administration.
#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create every topic of functions.toml that does not exist yet.
    Create {
        /// The configuration file.
        #[arg(long, short, default_value = "functions.toml", env = "KFN_CONFIG")]
        config: PathBuf,
        /// Apply the [local] overrides (single-node broker).
        #[arg(long)]
        local: bool,
    },
    /// Show partitions, replication and configs of a topic as the broker has it.
    Describe {
        /// The configuration file (for the brokers and security).
        #[arg(long, short, default_value = "functions.toml", env = "KFN_CONFIG")]
        config: PathBuf,
        /// The topic.
        topic: String,
    },
}

pub async fn run(command: TopicsCommand, registry: &kfn_sdk::Registry) -> anyhow::Result<ExitCode> {
    match command {
        TopicsCommand::Create { config, local } => {
            let mut config = super::load(&config, registry)?;
            if local {
                config.apply_local_overrides();
            }
            let admin = Admin::new(Cluster::from_config(&config)?);
            let outcomes = admin.ensure_topics(config.topics.values()).await.context("creating topics")?;
            for (name, outcome) in outcomes {
                let what = match outcome {
                    CreateOutcome::Created => "created",
                    CreateOutcome::AlreadyExists => "exists",
                };
                println!("{what:>8}  {name}");
            }
            Ok(ExitCode::SUCCESS)
        }
        TopicsCommand::Describe { config, topic } => {
            let config = super::load(&config, registry)?;
            let admin = Admin::new(Cluster::from_config(&config)?);
            let d = admin.describe_topic(&topic).await.with_context(|| format!("describing topic {topic}"))?;
            println!("{}: {} partitions, replication {}", d.name, d.partitions, d.replication);
            for (k, v) in d.configs {
                println!("  {k} = {v}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
