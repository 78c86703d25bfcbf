//! Offset commits for the partition workers of one group member.
//!
//! Workers commit one at a time through the member's group client; those
//! that ask while a commit is under way go together in the next one (a group
//! commit): a member with many busy partitions sends a few OffsetCommit
//! requests carrying many partitions instead of one per partition and chunk.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::oneshot;

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
    /// Offsets asked for and not sent yet, with who waits for them.
    waiting: Mutex<Waiting>,
}

/// The next commit: the highest offset asked for each partition, and the
/// workers to tell how it went.
#[derive(Default)]
struct Waiting {
    offsets: BTreeMap<TopicPartition, i64>,
    waiters: Vec<(TopicPartition, oneshot::Sender<Result<(), KafkaError>>)>,
}

impl Committer {
    /// A committer for the member whose state is `state`.
    pub fn new(client: GroupClient, state: Arc<RwLock<MemberState>>) -> Self {
        let group = client.group().to_string();
        Self { client: tokio::sync::Mutex::new(client), state, group, waiting: Mutex::default() }
    }

    /// The group id.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The member's generation while it holds an assignment.
    pub fn generation(&self) -> Option<Generation> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).generation.clone()
    }

    /// Commits `offset` (the next offset to read) for `tp`, with whatever
    /// other partitions of the member ask meanwhile.
    pub async fn commit(&self, tp: &TopicPartition, offset: i64) -> Result<(), KafkaError> {
        let (waiter, outcome) = oneshot::channel();
        {
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            let asked = waiting.offsets.entry(tp.clone()).or_insert(offset);
            *asked = (*asked).max(offset);
            waiting.waiters.push((tp.clone(), waiter));
        }
        let mut client = self.client.lock().await;
        // The commit before this one may have carried this offset already.
        let Waiting { offsets, waiters } = std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|p| p.into_inner()));
        if !waiters.is_empty() {
            let outcomes = self.send(&mut client, &offsets).await;
            for (tp, waiter) in waiters {
                // A partition's own error goes to its workers only.
                let outcome = match &outcomes {
                    Ok(each) => match each.get(&tp) {
                        Some(Ok(())) => Ok(()),
                        Some(Err(e)) => Err(e.copy_for("OffsetCommit")),
                        None => Err(KafkaError::Codec {
                            api: "OffsetCommit",
                            message: format!("no answer for {tp} in group {}", self.group),
                        }),
                    },
                    Err(e) => Err(e.copy_for("OffsetCommit")),
                };
                let _ = waiter.send(outcome);
            }
        }
        drop(client);
        outcome.await.unwrap_or_else(|_| {
            Err(KafkaError::Disconnected { broker: self.group.clone(), reason: "the offset commit was dropped".into() })
        })
    }

    /// One OffsetCommit of `offsets` with the member's current generation:
    /// its failure, or each partition's outcome.
    async fn send(
        &self,
        client: &mut GroupClient,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<BTreeMap<TopicPartition, Result<(), KafkaError>>, KafkaError> {
        let generation = self.generation().ok_or_else(|| KafkaError::Broker {
            api: "OffsetCommit",
            // The member holds no assignment now.
            code: ResponseError::RebalanceInProgress.code(),
            context: format!("{} partitions in group {}", offsets.len(), self.group),
        })?;
        let mut result = client.commit_each(&generation, offsets).await;
        if any_error(&result, |e| e.response_error() == Some(ResponseError::StaleMemberEpoch)) {
            // The consumer protocol bumped the member epoch between reading it and
            // committing (a partition came or went elsewhere): again with the new one.
            if let Some(current) = self.generation().filter(|g| g.id != generation.id) {
                result = client.commit_each(&current, offsets).await;
            }
        }
        if any_error(&result, KafkaError::is_retriable) {
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

/// Whether the OffsetCommit failed as a whole, or for any partition, with an error `matches` accepts.
fn any_error(
    result: &Result<BTreeMap<TopicPartition, Result<(), KafkaError>>, KafkaError>,
    matches: impl Fn(&KafkaError) -> bool,
) -> bool {
    match result {
        Ok(each) => each.values().any(|o| o.as_ref().is_err_and(&matches)),
        Err(e) => matches(e),
    }
}
