//! Offset commits for the partition workers of one group member.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::kafka::ResponseError;

use crate::kafka::group::coordinator::{Generation, GroupClient};
use crate::kafka::group::member::MemberState;
use crate::kafka::group::protocol::TopicPartition;
use crate::kafka::KafkaError;

/// Commits offsets with the member's current generation.
pub struct Committer {
    client: tokio::sync::Mutex<GroupClient>,
    state: Arc<RwLock<MemberState>>,
    group: String,
}

impl Committer {
    /// A committer for the member whose state is `state`.
    pub fn new(client: GroupClient, state: Arc<RwLock<MemberState>>) -> Self {
        let group = client.group().to_string();
        Self { client: tokio::sync::Mutex::new(client), state, group }
    }

    /// The group id.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The member's generation while it holds an assignment.
    pub fn generation(&self) -> Option<Generation> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).generation.clone()
    }

    /// Commits `offset` (the next offset to read) for `tp`.
    pub async fn commit(&self, tp: &TopicPartition, offset: i64) -> Result<(), KafkaError> {
        let generation = self.generation().ok_or_else(|| KafkaError::Broker {
            api: "OffsetCommit",
            code: 27, // REBALANCE_IN_PROGRESS: the member holds no assignment now
            context: format!("{tp} in group {}", self.group),
        })?;
        let offsets = BTreeMap::from([(tp.clone(), offset)]);
        let mut client = self.client.lock().await;
        let mut result = client.commit(&generation, &offsets).await;
        if matches!(&result, Err(e) if e.response_error() == Some(ResponseError::StaleMemberEpoch)) {
            // The consumer protocol bumped the member epoch between reading it and
            // committing (a partition came or went elsewhere): again with the new one.
            if let Some(current) = self.generation().filter(|g| g.id != generation.id) {
                result = client.commit(&current, &offsets).await;
            }
        }
        if matches!(&result, Err(e) if e.is_retriable()) {
            client.reset_coordinator();
        }
        result
    }

    /// The committed offset of `tp`, if any.
    pub async fn committed(&self, tp: &TopicPartition) -> Result<Option<i64>, KafkaError> {
        let mut client = self.client.lock().await;
        let result = client.committed(std::slice::from_ref(tp)).await;
        if matches!(&result, Err(e) if e.is_retriable()) {
            client.reset_coordinator();
        }
        Ok(result?.get(tp).copied())
    }
}
