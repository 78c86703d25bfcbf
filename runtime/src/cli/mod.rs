//! The `kfn` command line: check, run, dev and the admin commands.
//!
//! Errors are reported here, at the edge, with their whole chain of causes.

mod acls;
mod connect;
mod dev;
mod dlq;
mod lag;
mod offsets;
mod registry;
mod run;
mod signal;
mod terraform;
mod topics;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::Config;
use crate::{scaffold, schema_check};

/// kfn: small functions on Kafka topics, declared in functions.toml.
#[derive(Debug, Parser)]
#[command(name = "kfn", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate functions.toml, every schema it names and the function graph; print every error found.
    ///
    /// Offline by default (no broker, no registry): the file, each schema
    /// file, and that every function can read its input topic's schema with
    /// its event type (the file under schemas/ declaring it). With --registry
    /// or --online it also asks the Schema Registry whether each topic's
    /// schema could be registered, without registering it (docs/schemas.md).
    /// Exits 0 when everything passes, 1 otherwise. Each error names the
    /// file, the field path (e.g. functions.validation.retry.max_attempts)
    /// and what was expected.
    Check {
        /// The configuration file.
        #[arg(long, short, default_value = "functions.toml", env = "KFN_CONFIG")]
        config: PathBuf,
        /// Also check each topic's schema against the Schema Registry at this URL.
        #[arg(long, value_name = "URL")]
        registry: Option<String>,
        /// Also check each topic's schema against runtime.schema_registry of the file.
        #[arg(long)]
        online: bool,
    },
    /// Run the declared functions against the brokers in [runtime].
    ///
    /// Joins one consumer group per function (`kfn.<function>`); run as many
    /// replicas as you like: partitions are shared among them. SIGTERM or
    /// Ctrl-C finishes in-flight work, commits, and leaves the groups.
    Run(run::RunArgs),
    /// Run everything on a local broker: no cluster needed.
    ///
    /// Installs the local broker the first time (Apache Kafka 4.4 from Maven
    /// Central by default, or tansu), starts it on 127.0.0.1, creates every topic of functions.toml (with the [local]
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
    /// Write terraform/ from functions.toml and schemas/: topics, the ACL plan, schema subjects (see docs/deploy.md).
    ///
    /// Nothing is sent anywhere; `tofu apply` (or `terraform apply`) does
    /// that. With --check, writes nothing and exits 1 if terraform/ is stale.
    Terraform(terraform::TerraformArgs),
    /// Apply the repository's Kafka Connect connectors, or show their state (see docs/connect.md).
    Connect {
        #[command(subcommand)]
        command: connect::ConnectCommand,
    },
    /// List, inspect and replay the dead letters of a function (see docs/dlq.md).
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// Show each topic function's lag from its group's committed offsets and the log ends.
    ///
    /// Asks the brokers, not the replicas: the answer is the same when every
    /// replica is down. A partition with nothing committed counts from its
    /// earliest offset, where auto_offset_reset = earliest would start.
    Lag(lag::LagArgs),
    /// Move a stopped function's committed offsets (see docs/runbook.md).
    Offsets {
        #[command(subcommand)]
        command: offsets::OffsetsCommand,
    },
    /// Create a new project on kfn: a crate with two functions, functions.toml, schemas and a test.
    ///
    /// The project builds its own binary with every subcommand of this one;
    /// `cd NAME && cargo run -- dev` runs it on a local Apache Kafka.
    New {
        /// The project's name: its package, binary and directory.
        name: String,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The kfn checkout to depend on by path (default: the one this kfn was built from).
        #[arg(long, value_name = "DIR")]
        kfn_path: Option<PathBuf>,
    },
}

/// Parses the command line and runs it with the handlers of `registry`.
pub fn main(registry: kfn_sdk::Registry) -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print as clap writes them, to stdout.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprintln!("kfn: error: {}", missing_command_line());
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("kfn: error: {}", usage_error_line(&e));
            return ExitCode::from(2);
        }
    };
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
            Command::Check { config, registry: url, online } => check(&config, &registry, url, online).await,
            Command::Dev(args) => dev::run(args, registry).await,
            Command::Run(args) => run::run(args, registry).await,
            Command::Registry(args) => registry::run(args, &registry).await,
            Command::Topics { command } => topics::run(command, &registry).await,
            Command::Acls { command } => acls::run(command, &registry).await,
            Command::Terraform(args) => terraform::run(args, &registry),
            Command::Connect { command } => connect::run(command).await,
            Command::Dlq { command } => dlq::run(command, &registry).await,
            Command::Lag(args) => lag::run(args, &registry).await,
            Command::Offsets { command } => offsets::run(command, &registry).await,
            Command::New { name, dir, kfn_path } => new_project(&name, dir, kfn_path),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            // Each cause once: many of kfn's errors name their cause in their own text too.
            let causes: &(dyn std::error::Error + 'static) = e.as_ref();
            eprintln!("kfn: error: {}", crate::error_text::one_line(causes));
            ExitCode::FAILURE
        }
    }
}

/// A command-line mistake as one line: clap's own sentence (which names the
/// argument and, for a malformed value, why) with its tip, pointing at --help
/// instead of repeating the usage block.
fn usage_error_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    // The first paragraph is the error (a missing argument's names and a bad
    // value's possible values are indented lines of it); "tip:" lines follow
    // after a blank line, the usage block after another.
    let mut paragraphs = rendered.split("\n\n").map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "));
    let first = paragraphs.next().unwrap_or_default();
    let mut line = first.strip_prefix("error: ").unwrap_or(&first).to_string();
    if line.is_empty() {
        line.push_str("invalid arguments");
    }
    for tip in paragraphs.filter_map(|p| p.strip_prefix("tip: ").map(str::to_string)) {
        line.push_str(" (");
        line.push_str(&tip);
        line.push(')');
    }
    line.push_str("; see --help");
    line
}

/// `kfn` or `kfn dlq` alone: which commands it takes, instead of its whole help.
fn missing_command_line() -> String {
    // The command line names the (sub)command that wants one of its own.
    let mut command = Cli::command();
    let mut path = vec!["kfn".to_string()];
    for arg in std::env::args().skip(1) {
        match command.find_subcommand(&arg).cloned() {
            Some(sub) => {
                path.push(arg);
                command = sub;
            }
            None => break,
        }
    }
    let names: Vec<&str> = command.get_subcommands().map(|c| c.get_name()).filter(|n| *n != "help").collect();
    format!("`{}` needs a command: one of {} (see --help)", path.join(" "), names.join(", "))
}

/// Logs to stderr (as JSON lines with `KFN_LOG_FORMAT=json`) at `KFN_LOG`'s levels: `info` (the default), `debug`,
/// `kfn::invoker=debug,info`, ... (targets and levels; `Targets` instead of
/// `EnvFilter` spares every build the regex engine).
fn init_tracing() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let info = || Targets::new().with_default(LevelFilter::INFO);
    let filter = match std::env::var("KFN_LOG") {
        Ok(spec) => spec.parse::<Targets>().unwrap_or_else(|e| {
            eprintln!(
                "kfn: KFN_LOG={spec:?} is not a filter like `info` or `kfn::invoker=debug,info` ({e}); logging at info"
            );
            info()
        }),
        Err(_) => info(),
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = tracing_subscriber::registry().with(filter);
    // KFN_LOG_FORMAT=json: one JSON object per line, the event's fields at the
    // top level, for log shippers; text otherwise.
    let _ = match std::env::var("KFN_LOG_FORMAT").as_deref() {
        Ok("json") => logs.with(fmt.json().flatten_event(true).with_current_span(false)).try_init(),
        Ok("text") | Err(_) => logs.with(fmt).try_init(),
        Ok(other) => {
            eprintln!("kfn: KFN_LOG_FORMAT={other:?}: expected `json` or `text`; logging as text");
            logs.with(fmt).try_init()
        }
    };
}

/// `kfn check`: the config, then the function graph, then (when asked) the registry.
async fn check(
    path: &std::path::Path,
    handlers: &kfn_sdk::Registry,
    registry_url: Option<String>,
    online: bool,
) -> anyhow::Result<ExitCode> {
    let config = match Config::load(path, handlers) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let readers = schema_check::ReaderSchemas::from_dir(&config.base_dir().join("schemas"))?;
    let graph = schema_check::check_graph(&config, handlers, &readers);
    for note in &graph.notes {
        println!("note: {note}");
    }
    let mut passed = graph.is_ok();
    if passed {
        println!(
            "{}: ok ({} topics, {} functions, {} topic reads of the function graph checked)",
            path.display(),
            config.topics.len(),
            config.functions.len(),
            graph.reads.len()
        );
    } else {
        let lines: Vec<String> = graph.problems.iter().map(|p| format!("  - {p}")).collect();
        eprintln!("{} error(s) in the function graph:\n{}", graph.problems.len(), lines.join("\n"));
    }
    // Only on request: CI runs `kfn check` with no registry anywhere.
    let url = if online { registry_url.or_else(|| config.runtime.schema_registry.clone()) } else { registry_url };
    if online && url.is_none() {
        eprintln!("{}: runtime.schema_registry: not set, so --online has no registry to ask", path.display());
        return Ok(ExitCode::FAILURE);
    }
    if let Some(url) = url {
        // --registry replaces the URL only; credentials and CA still come from the file.
        let client = schema_check::registry::check_client_with(&url, config.runtime.schema_registry_access.clone())?;
        let report = schema_check::check_registry(&config, &client).await;
        println!("schema registry {}: {} topic schema(s) checked", report.url, report.topics.len());
        for topic in report.topics.iter().filter(|t| t.verdict.is_ok()) {
            println!("  {topic}");
        }
        let mut errors: Vec<String> = report.errors().map(|t| format!("  - {t}")).collect();
        if !report.not_asked.is_empty() {
            errors.push(format!("  - not asked, as the registry cannot be reached: {}", report.not_asked.join(", ")));
        }
        if !errors.is_empty() {
            eprintln!("{} error(s) against the schema registry {}:\n{}", errors.len(), report.url, errors.join("\n"));
            passed = false;
        }
    }
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `kfn new`: writes the project and says what to do next.
fn new_project(name: &str, dir: Option<PathBuf>, kfn_path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let project = scaffold::Project::new(name)?;
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    let source = kfn_path.map_or_else(scaffold::KfnSource::of_this_build, scaffold::KfnSource::Path);
    let files = project.write(&dir, &source)?;
    println!("created {} ({} files)", dir.display(), files.len());
    println!("next:\n  cd {}\n  cargo test\n  cargo run -- dev", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Loads the config or fails with every error listed.
pub(crate) fn load(path: &std::path::Path, registry: &kfn_sdk::Registry) -> anyhow::Result<Config> {
    Config::load(path, registry).map_err(|e| anyhow::anyhow!("{e}"))
}
