//! Admin operations: topics with their configs.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{CreateTopicsRequest, DescribeConfigsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::cluster::Cluster;
use super::error::KafkaError;
use crate::backoff::Pauses;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// The name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// Replication factor.
    pub replication: i16,
    /// Broker configs (retention.ms, cleanup.policy, ...).
    pub configs: BTreeMap<String, String>,
}

/// What happened to one topic of a create request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The topic was created.
    Created,
    /// It existed already (its settings were left as they are).
    AlreadyExists,
}

/// A topic as the broker describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// The name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// Replication factor of partition 0.
    pub replication: i16,
    /// The configs the topic sets itself (not broker-wide values or defaults).
    pub configs: BTreeMap<String, String>,
}

/// Topic administration.
#[derive(Clone)]
pub struct Admin {
    cluster: Cluster,
}

impl Admin {
    /// Admin operations on `cluster`.
    pub fn new(cluster: Cluster) -> Self {
        Self { cluster }
    }

    /// Creates the topics that do not exist yet; existing ones are reported, not changed.
    pub async fn create_topics(&self, topics: &[NewTopic]) -> Result<Vec<(String, CreateOutcome)>, KafkaError> {
        if topics.is_empty() {
            return Ok(Vec::new());
        }
        let request = CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(
            topics
                .iter()
                .map(|t| {
                    CreatableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.name.clone())))
                        .with_num_partitions(t.partitions)
                        .with_replication_factor(t.replication)
                        .with_configs(
                            t.configs
                                .iter()
                                .map(|(k, v)| {
                                    CreatableTopicConfig::default()
                                        .with_name(StrBytes::from_string(k.clone()))
                                        .with_value(Some(StrBytes::from_string(v.clone())))
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
        let conn = self.cluster.controller().await?;
        let version = conn.version::<CreateTopicsRequest>()?;
        let response = conn.send_version(&request, version, Duration::from_secs(30)).await?;
        let mut outcomes = Vec::new();
        for result in response.topics {
            let name = result.name.0.to_string();
            let outcome = match result.error_code {
                0 => CreateOutcome::Created,
                36 => CreateOutcome::AlreadyExists, // TOPIC_ALREADY_EXISTS
                code => {
                    let detail = result.error_message.map(|m| format!(" ({m})")).unwrap_or_default();
                    return Err(KafkaError::Broker {
                        api: "CreateTopics",
                        code,
                        context: format!("topic {name}{detail}"),
                    });
                }
            };
            self.cluster.invalidate(&name);
            outcomes.push((name, outcome));
        }
        let created: Vec<&str> =
            outcomes.iter().filter(|(_, o)| *o == CreateOutcome::Created).map(|(n, _)| n.as_str()).collect();
        self.await_leaders(&created).await?;
        Ok(outcomes)
    }

    /// Waits until every partition of `topics` has a leader in the metadata.
    ///
    /// Apache Kafka answers CreateTopics once the controller has decided, before
    /// the brokers know the topic: without this, a produce or describe right after
    /// creating fails with UNKNOWN_TOPIC_OR_PARTITION.
    async fn await_leaders(&self, topics: &[&str]) -> Result<(), KafkaError> {
        if topics.is_empty() {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + self.cluster.options().request_timeout;
        let mut pauses = Pauses::new(Duration::from_millis(10), Duration::from_millis(200)).until(deadline);
        loop {
            let ready = match self.cluster.refresh(topics).await {
                Ok(found) => {
                    found.len() == topics.len()
                        && found.iter().all(|t| !t.partitions.is_empty() && t.partitions.iter().all(|p| p.leader >= 0))
                }
                Err(e) if e.is_retriable() => false,
                Err(e) => return Err(e),
            };
            if ready {
                return Ok(());
            }
            if pauses.would_pass_deadline() {
                return Err(KafkaError::Broker {
                    api: "Metadata",
                    code: ResponseError::LeaderNotAvailable.code(),
                    context: format!("created topics without leaders yet: {}", topics.join(", ")),
                });
            }
            pauses.pause().await;
        }
    }

    /// Describes a topic: partition count, replication and configs.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription, KafkaError> {
        self.cluster.invalidate(name);
        let info = self.cluster.topic(name).await?;
        let conn = self.cluster.any_connection().await?;
        let request = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2) // TOPIC
            .with_resource_name(StrBytes::from_string(name.to_string()))
            .with_configuration_keys(None)]);
        let response = conn.send(&request).await?;
        let mut configs = BTreeMap::new();
        for result in response.results {
            KafkaError::check("DescribeConfigs", result.error_code, || format!("topic {name}"))?;
            for c in result.configs {
                // The topic's own settings only: Apache Kafka also lists broker-wide values and
                // defaults (sources 2 to 5), which the topic does not set.
                if (2..=5).contains(&c.config_source) {
                    continue;
                }
                if let Some(value) = c.value {
                    configs.insert(c.name.to_string(), value.to_string());
                }
            }
        }
        Ok(TopicDescription {
            name: name.to_string(),
            partitions: info.partitions.len() as i32,
            replication: info.partitions.first().map(|p| p.replicas.len() as i16).unwrap_or(0),
            configs,
        })
    }
}
