//! `kfn terraform`: write (or check) the Terraform module of functions.toml (see docs/deploy.md).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::acls::{deployment_plan, Principals};
use crate::avro::CompatibilityLevel;
use crate::terraform::{relative_dir, Module, Settings};

/// Where the module goes and what it grants.
#[derive(Debug, Args)]
pub struct TerraformArgs {
    /// The configuration file.
    #[arg(long, short, default_value = "functions.toml", env = "KFN_CONFIG")]
    config: PathBuf,
    /// The module's directory (default: terraform/ beside the configuration file).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Apply the [local] overrides (single-node cluster: replication 1).
    #[arg(long)]
    local: bool,
    /// One user per function and one for the registry, as `kfn acls plan --per-function`.
    #[arg(long)]
    per_function: bool,
    /// The compatibility level of every schema subject.
    #[arg(long, default_value = "BACKWARD", value_parser = parse_level)]
    compatibility: CompatibilityLevel,
    /// Write nothing; exit 1 and name the files that differ from what would be written.
    #[arg(long)]
    check: bool,
}

fn parse_level(text: &str) -> Result<CompatibilityLevel, String> {
    text.parse().map_err(|e| format!("{e}"))
}

/// Runs `kfn terraform`.
pub fn run(args: TerraformArgs, registry: &kfn_sdk::Registry) -> anyhow::Result<ExitCode> {
    let mut config = super::load(&args.config, registry)?;
    if args.local {
        config.apply_local_overrides();
    }
    let principals = if args.per_function { Principals::PerFunction } else { Principals::from_config(&config) };
    let plan = deployment_plan(&config, &principals);
    let out = args.out.clone().unwrap_or_else(|| config.base_dir().join("terraform"));
    let settings = Settings {
        project_dir: relative_dir(&absolute(&out)?, &absolute(config.base_dir())?),
        compatibility: args.compatibility,
    };
    let module = Module::render(&config, &plan, &settings)?;
    if args.check {
        let drift = module.drift(&out)?;
        if drift.is_empty() {
            println!("{}: up to date with {}", out.display(), args.config.display());
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("{}: out of date with {} (run `kfn terraform`):", out.display(), args.config.display());
        for path in drift {
            eprintln!("  {}", path.display());
        }
        return Ok(ExitCode::FAILURE);
    }
    module.write(&out)?;
    println!(
        "wrote {} ({} topics, {} ACLs, {} files)",
        out.display(),
        config.topics.len(),
        plan.len(),
        module.files.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `path` made absolute, with symbolic links resolved when it exists (so that
/// the relative path between two directories is the one the file system walks).
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    let path = if path.as_os_str().is_empty() { Path::new(".") } else { path };
    match path.canonicalize() {
        Ok(path) => Ok(path),
        Err(_) => std::path::absolute(path).with_context(|| format!("resolving {}", path.display())),
    }
}
