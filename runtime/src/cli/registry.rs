//! `kfn registry`: serve the Confluent Schema Registry API from a Kafka topic,
//! over http, or https with basic auth ([`RegistryAccessArgs`], shared with `kfn dev`).

use crate::kafka_settings::ClusterFromConfig;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::kafka::Cluster;
use crate::registry::{RegistryConfig, RegistryServer, ServerTls, Users};

/// Options of `kfn registry`.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// The configuration file (for [runtime].brokers and [security]).
    #[arg(long, short, default_value = "functions.toml", env = "KFN_CONFIG")]
    config: PathBuf,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// The port to listen on (Confluent's default: 8081).
    #[arg(long, default_value_t = 8081)]
    port: u16,
    /// The compacted topic holding the schemas (created when missing).
    #[arg(long, default_value = "_schemas")]
    topic: String,
    /// The replication factor of the topic when it is created.
    #[arg(long, default_value_t = 1)]
    replication: i16,
    #[command(flatten)]
    access: RegistryAccessArgs,
}

/// TLS and basic auth of the registry server; without them it serves plain
/// http to anyone. Passwords are read from the environment or a file, never
/// from the command line.
#[derive(Debug, Args)]
pub struct RegistryAccessArgs {
    /// Serve https with this certificate chain (PEM, the server's certificate first; needs --registry-tls-key).
    #[arg(long, requires = "registry_tls_key")]
    registry_tls_cert: Option<PathBuf>,
    /// The private key of --registry-tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "registry_tls_cert")]
    registry_tls_key: Option<PathBuf>,
    /// Require HTTP basic auth; accept this user, whose password is in the
    /// environment variable ENV (repeat for more users).
    #[arg(long = "registry-user", value_name = "NAME=ENV")]
    registry_users: Vec<String>,
    /// Require HTTP basic auth; accept the users of this file of `name:password` lines.
    #[arg(long, value_name = "FILE")]
    registry_users_file: Option<PathBuf>,
}

impl RegistryAccessArgs {
    /// Sets the TLS and users of `config` from the flags.
    pub fn apply(&self, config: &mut RegistryConfig) -> anyhow::Result<()> {
        if let (Some(cert_file), Some(key_file)) = (&self.registry_tls_cert, &self.registry_tls_key) {
            config.tls = Some(ServerTls { cert_file: cert_file.clone(), key_file: key_file.clone() });
        }
        if self.registry_users.is_empty() && self.registry_users_file.is_none() {
            return Ok(());
        }
        let mut users = Users::default();
        for pair in &self.registry_users {
            let (name, env) =
                pair.split_once('=').with_context(|| format!("--registry-user {pair}: expected NAME=ENV"))?;
            users.insert_from_env(name, env)?;
        }
        if let Some(file) = &self.registry_users_file {
            users.insert_from_file(file)?;
        }
        config.users = Some(users);
        Ok(())
    }
}

/// Serves until Ctrl-C or SIGTERM.
pub async fn run(args: RegistryArgs, registry: &kfn_sdk::Registry) -> anyhow::Result<ExitCode> {
    let config = super::load(&args.config, registry)?;
    let cluster = Cluster::from_config(&config)?;
    let listener = tokio::net::TcpListener::bind((args.host, args.port))
        .await
        .with_context(|| format!("listening on {}:{}", args.host, args.port))?;
    let mut settings = RegistryConfig { topic: args.topic, replication: args.replication, ..RegistryConfig::default() };
    args.access.apply(&mut settings)?;
    let server = RegistryServer::start(cluster, listener, settings).await.context("starting the schema registry")?;
    println!("kfn schema registry on {}://{}", server.scheme(), server.local_addr());
    super::signal::shutdown_signal().await;
    eprintln!("kfn: stopping the schema registry");
    server.stop().await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        access: RegistryAccessArgs,
    }

    #[test]
    fn the_cli_is_well_formed() {
        // Catches a flag that `kfn dev` and the shared registry flags both define.
        crate::cli::Cli::command().debug_assert();
    }

    #[test]
    fn access_flags_turn_on_tls_and_basic_auth() {
        let flags = Flags::try_parse_from([
            "kfn",
            "--registry-tls-cert",
            "certs/registry.crt",
            "--registry-tls-key",
            "certs/registry.key",
            // PATH is set wherever tests run.
            "--registry-user",
            "orders=PATH",
        ])
        .expect("parses");
        let mut config = RegistryConfig::default();
        flags.access.apply(&mut config).expect("applies");
        let tls = config.tls.expect("tls");
        assert_eq!(
            (tls.cert_file.to_str(), tls.key_file.to_str()),
            (Some("certs/registry.crt"), Some("certs/registry.key"))
        );
        assert!(config.users.is_some_and(|users| !users.is_empty()));

        let mut plain = RegistryConfig::default();
        Flags::try_parse_from(["kfn"]).expect("parses").access.apply(&mut plain).expect("applies");
        assert_eq!((plain.tls, plain.users), (None, None), "no flags: plain http, no auth");

        assert!(Flags::try_parse_from(["kfn", "--registry-tls-cert", "c.pem"]).is_err(), "a cert needs its key");
        let no_env = Flags::try_parse_from(["kfn", "--registry-user", "orders"]).expect("parses");
        let err = no_env.access.apply(&mut RegistryConfig::default()).unwrap_err();
        assert!(err.to_string().contains("NAME=ENV"), "{err}");
    }
}
