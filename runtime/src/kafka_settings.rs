//! The adapter between functions.toml and the Kafka layer: the one place
//! that turns validated configuration (and the SDK's headers) into the
//! Kafka layer's own settings and types.
//!
//! [`crate::kafka`] (the `kfn-kafka` crate) knows nothing of [`crate::config`]
//! or `kfn_sdk`; every conversion lives here, so neither side changes when the
//! other does. The constructors read as the Kafka types' own
//! (`Cluster::from_config`) through extension traits: import the trait.

use std::time::Duration;

use crate::config::{Config, RuntimeSettings, SecuritySettings, TopicSpec};
use crate::kafka::security::{self, SaslCredentials};
use crate::kafka::{Admin, Cluster, ConnectOptions, CreateOutcome, Header, KafkaError, NewTopic};

/// [`ConnectOptions`] from functions.toml.
pub trait ConnectOptionsFromSettings: Sized {
    /// Options from the validated [runtime] and [security] settings.
    fn from_settings(runtime: &RuntimeSettings, security: &SecuritySettings) -> Result<Self, KafkaError>;
}

impl ConnectOptionsFromSettings for ConnectOptions {
    fn from_settings(runtime: &RuntimeSettings, security: &SecuritySettings) -> Result<Self, KafkaError> {
        let tls = match &security.tls {
            Some(t) => Some(security::connector(t)?),
            None => None,
        };
        let sasl = match &security.sasl {
            Some(s) => {
                let mechanism = s.mechanism.parse::<security::Mechanism>()?;
                Some(SaslCredentials::new(mechanism, s.username.clone(), s.password.clone()))
            }
            None => None,
        };
        Ok(Self {
            client_id: runtime.client_id.clone(),
            tls,
            tls_server_name: security.tls.as_ref().and_then(|t| t.server_name.clone()),
            sasl,
            connect_timeout: Duration::from_secs(10),
            request_timeout: runtime.producer.request_timeout,
        })
    }
}

/// A [`Cluster`] from functions.toml.
pub trait ClusterFromConfig: Sized {
    /// A cluster configured by functions.toml's [runtime] and [security].
    fn from_config(config: &Config) -> Result<Self, KafkaError>;
}

impl ClusterFromConfig for Cluster {
    fn from_config(config: &Config) -> Result<Self, KafkaError> {
        let options = ConnectOptions::from_settings(&config.runtime, &config.security)?;
        Ok(Self::new(config.runtime.brokers.clone(), options))
    }
}

/// The topic functions.toml declares, as the Kafka layer creates it.
pub fn new_topic(spec: &TopicSpec) -> NewTopic {
    NewTopic {
        name: spec.name.clone(),
        partitions: spec.partitions,
        replication: spec.replication,
        configs: spec.broker_configs(),
    }
}

/// Creating functions.toml's topics.
pub trait EnsureTopics {
    /// Creates the declared topics that do not exist yet.
    fn ensure_topics<'a>(
        &self,
        topics: impl IntoIterator<Item = &'a TopicSpec>,
    ) -> impl std::future::Future<Output = Result<Vec<(String, CreateOutcome)>, KafkaError>> + Send;
}

impl EnsureTopics for Admin {
    fn ensure_topics<'a>(
        &self,
        topics: impl IntoIterator<Item = &'a TopicSpec>,
    ) -> impl std::future::Future<Output = Result<Vec<(String, CreateOutcome)>, KafkaError>> + Send {
        let topics: Vec<NewTopic> = topics.into_iter().map(new_topic).collect();
        async move { self.create_topics(&topics).await }
    }
}

/// A record's header as a handler reads it.
pub fn sdk_header(h: Header) -> kfn_sdk::Header {
    kfn_sdk::Header { name: h.name, value: h.value }
}
