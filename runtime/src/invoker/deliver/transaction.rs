//! One exactly_once transaction: stage the records, add the input offsets
//! with the member's generation, commit. Both transactional models run it.

use std::collections::BTreeMap;

use crate::invoker::egress::Outgoing;
use crate::kafka::group::coordinator::Generation;
use crate::kafka::group::protocol::TopicPartition;
use crate::kafka::producer::{Producer, SendError};

/// Stages every record of `outgoing`, sends `offsets` (the next offsets to
/// read) to `group` with `generation` and commits. The caller reads the
/// generation before deciding which chunks go in, so a member that moved on
/// meanwhile is refused by the coordinator. A failure to send or commit is
/// returned as is, for the caller to abort or to drop the producer.
pub(super) async fn run(
    producer: &Producer,
    group: &str,
    generation: &Generation,
    outgoing: impl IntoIterator<Item = Outgoing>,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> Result<(), SendError> {
    for ((topic, partition), records) in outgoing.into_iter().flatten() {
        producer.stage(&TopicPartition::new(topic.to_string(), partition), records);
    }
    if !offsets.is_empty() {
        producer.send_offsets(group, generation, offsets).await?;
    }
    producer.commit().await
}
