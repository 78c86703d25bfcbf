//! `kfn acls`: print, apply and list the ACLs the functions of functions.toml need.

use crate::kafka_settings::ClusterFromConfig;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::acls::{deployment_plan, Principals};
use crate::kafka::acl::{AclBinding, AclFilter, Acls, Applied};
use crate::kafka::Cluster;

/// ACL administration.
#[derive(Debug, Subcommand)]
pub enum AclsCommand {
    /// Print the ACLs every function needs (nothing is sent to a broker).
    Plan(PlanArgs),
    /// Create the planned ACLs on the brokers of [runtime] (CreateAcls).
    Apply(PlanArgs),
    /// List the ACLs the brokers have (DescribeAcls).
    List {
        /// The configuration file (for the brokers and security).
        #[arg(long, short, default_value = "functions.toml", env = "KFN_CONFIG")]
        config: PathBuf,
        /// Only the ACLs of this principal, e.g. User:kfn-validation.
        #[arg(long)]
        principal: Option<String>,
    },
}

/// Which file, and which principals.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The configuration file.
    #[arg(long, short, default_value = "functions.toml", env = "KFN_CONFIG")]
    config: PathBuf,
    /// One user per function (`User:kfn-<function>`) and one for the schema
    /// registry (`User:kfn-registry` on `_schemas`), even when [security]
    /// names a SASL user without `per_function = true`; without either, the
    /// [security] user gets every function's ACLs.
    #[arg(long)]
    per_function: bool,
}

impl PlanArgs {
    fn principals(&self, config: &crate::config::Config) -> Principals {
        if self.per_function {
            Principals::PerFunction
        } else {
            Principals::from_config(config)
        }
    }
}

/// Runs an `acls` subcommand.
pub async fn run(command: AclsCommand, registry: &kfn_sdk::Registry) -> anyhow::Result<ExitCode> {
    match command {
        AclsCommand::Plan(args) => {
            let config = super::load(&args.config, registry)?;
            print(&deployment_plan(&config, &args.principals(&config)));
            Ok(ExitCode::SUCCESS)
        }
        AclsCommand::Apply(args) => {
            let config = super::load(&args.config, registry)?;
            let bindings = deployment_plan(&config, &args.principals(&config));
            let acls = Acls::new(Cluster::from_config(&config)?);
            let applied = acls.create(&bindings).await.context("creating ACLs")?;
            print(&bindings);
            match applied {
                Applied::Confirmed(n) => println!("{n} ACLs applied"),
                // Not an error: a local broker (tansu) keeps no ACLs and says nothing more.
                Applied::Unconfirmed => eprintln!(
                    "kfn: warning: the broker accepted CreateAcls but confirmed none of the {} ACLs \
                     (tansu does this: it neither stores nor enforces ACLs)",
                    bindings.len()
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        AclsCommand::List { config, principal } => {
            let config = super::load(&config, registry)?;
            let acls = Acls::new(Cluster::from_config(&config)?);
            let filter = AclFilter { principal, ..AclFilter::default() };
            let mut bindings = acls.describe(&filter).await.context("listing ACLs")?;
            bindings.sort();
            print(&bindings);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print(bindings: &[AclBinding]) {
    for binding in bindings {
        println!("{binding}");
    }
}
