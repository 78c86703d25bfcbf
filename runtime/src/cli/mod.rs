//! The `kfn` command line: check, run, dev and the admin commands.
//!
//! Errors are reported here, at the edge, with their whole chain of causes.

mod acls;
mod dev;
mod dlq;
mod registry;
mod run;
mod topics;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// kfn: small functions on Kafka topics, declared in functions.toml.
#[derive(Debug, Parser)]
#[command(name = "kfn", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate functions.toml and every schema it names; print every error found.
    ///
    /// Exits 0 when the configuration is valid, 1 otherwise. Each error names
    /// the file, the field path (e.g. functions.validation.retry.max_attempts)
    /// and what was expected.
    Check {
        /// The configuration file.
        #[arg(long, short, default_value = "functions.toml", env = "KFN_CONFIG")]
        config: PathBuf,
    },
    /// Run the declared functions against the brokers in [runtime].
    ///
    /// Joins one consumer group per function (`kfn.<function>`); run as many
    /// replicas as you like: partitions are shared among them. SIGTERM or
    /// Ctrl-C finishes in-flight work, commits, and leaves the groups.
    Run(run::RunArgs),
    /// Run everything on a local broker: no cluster needed.
    ///
    /// Installs the pinned local broker (tansu) the first time, starts it on
    /// 127.0.0.1, creates every topic of functions.toml (with the [local]
    /// overrides, e.g. replication 1), runs every function and the HTTP
    /// trigger in this process, and prints where everything listens. Ctrl-C
    /// stops all of it, the broker included.
    Dev(dev::DevArgs),
    /// Serve the Confluent Schema Registry API, storing schemas in a Kafka topic.
    ///
    /// For local use where no Confluent Schema Registry is installed; uses the
    /// brokers and security of functions.toml. See docs/registry.md.
    Registry(registry::RegistryArgs),
    /// Create or describe the topics of functions.toml on the brokers of [runtime].
    Topics {
        #[command(subcommand)]
        command: topics::TopicsCommand,
    },
    /// Print, apply or list the ACLs the functions of functions.toml need (see docs/security.md).
    Acls {
        #[command(subcommand)]
        command: acls::AclsCommand,
    },
    /// List, inspect and replay the dead letters of a function (see docs/dlq.md).
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
}

/// Parses the command line and runs it with the handlers of `registry`.
pub fn main(registry: kfn_sdk::Registry) -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kfn: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Check { config } => check(&config, &registry),
            Command::Dev(args) => dev::run(args, registry).await,
            Command::Run(args) => run::run(args, registry).await,
            Command::Registry(args) => registry::run(args, &registry).await,
            Command::Topics { command } => topics::run(command, &registry).await,
            Command::Acls { command } => acls::run(command, &registry).await,
            Command::Dlq { command } => dlq::run(command, &registry).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kfn: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KFN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn check(path: &std::path::Path, registry: &kfn_sdk::Registry) -> anyhow::Result<ExitCode> {
    match Config::load(path, registry) {
        Ok(config) => {
            println!(
                "{}: ok ({} topics, {} functions)",
                path.display(),
                config.topics.len(),
                config.functions.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Loads the config or fails with every error listed.
pub(crate) fn load(path: &std::path::Path, registry: &kfn_sdk::Registry) -> anyhow::Result<Config> {
    Config::load(path, registry).map_err(|e| anyhow::anyhow!("{e}"))
}
