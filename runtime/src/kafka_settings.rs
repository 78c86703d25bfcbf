//! The adapter between functions.toml and the Kafka layer: the one place
//! that turns validated configuration (and the SDK's headers) into the
//! Kafka layer's own settings and types.
//!
//! [`crate::kafka`] knows nothing of [`crate::config`] or `kfn_sdk`; every
//! conversion lives here, so neither side changes when the other does.

use std::time::Duration;

use crate::config::{Config, RuntimeSettings, SecuritySettings, TopicSpec};
use crate::kafka::security::{self, SaslCredentials};
use crate::kafka::{Admin, Cluster, ConnectOptions, CreateOutcome, Header, KafkaError, NewTopic};

impl ConnectOptions {
    /// Options from the validated [runtime] and [security] settings.
    pub fn from_settings(runtime: &RuntimeSettings, security: &SecuritySettings) -> Result<Self, KafkaError> {
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

impl Cluster {
    /// A cluster configured by functions.toml's [runtime] and [security].
    pub fn from_config(config: &Config) -> Result<Self, KafkaError> {
        let options = ConnectOptions::from_settings(&config.runtime, &config.security)?;
        Ok(Self::new(config.runtime.brokers.clone(), options))
    }
}

impl From<&TopicSpec> for NewTopic {
    fn from(spec: &TopicSpec) -> Self {
        NewTopic {
            name: spec.name.clone(),
            partitions: spec.partitions,
            replication: spec.replication,
            configs: spec.broker_configs(),
        }
    }
}

impl Admin {
    /// Creates the declared topics that do not exist yet.
    pub async fn ensure_topics<'a>(
        &self,
        topics: impl IntoIterator<Item = &'a TopicSpec>,
    ) -> Result<Vec<(String, CreateOutcome)>, KafkaError> {
        let topics: Vec<NewTopic> = topics.into_iter().map(NewTopic::from).collect();
        self.create_topics(&topics).await
    }
}

impl From<kfn_sdk::Header> for Header {
    fn from(h: kfn_sdk::Header) -> Self {
        Header { name: h.name, value: h.value }
    }
}

impl From<Header> for kfn_sdk::Header {
    fn from(h: Header) -> Self {
        kfn_sdk::Header { name: h.name, value: h.value }
    }
}
