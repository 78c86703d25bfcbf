//! One exactly_once transaction: stage the records, add the input offsets
//! with the member's generation, commit. Both transactional models run it.

use std::collections::BTreeMap;

use super::error::DeliverError;
use crate::invoker::committer::Committer;
use crate::invoker::egress::Outgoing;
use crate::kafka::group::protocol::TopicPartition;
use crate::kafka::producer::{Producer, SendError};

/// Stages every record of `outgoing`, sends `offsets` (the next offsets to
/// read) with the member's generation and commits. Without an assignment the
/// transaction is aborted ([`DeliverError::Unassigned`]); a failure to send or
/// commit is returned as is, for the caller to abort or to drop the producer.
pub(super) async fn run(
    producer: &Producer,
    committer: &Committer,
    outgoing: impl IntoIterator<Item = Outgoing>,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> Result<Result<(), SendError>, DeliverError> {
    for ((topic, partition), records) in outgoing.into_iter().flatten() {
        producer.stage(&TopicPartition::new(topic.to_string(), partition), records);
    }
    let Some(generation) = committer.generation() else {
        let _ = producer.abort().await;
        return Err(DeliverError::Unassigned);
    };
    if !offsets.is_empty() {
        if let Err(e) = producer.send_offsets(committer.group(), &generation, offsets).await {
            return Ok(Err(e));
        }
    }
    Ok(producer.commit().await)
}
