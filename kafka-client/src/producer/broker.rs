//! One Produce per broker: the batches that partitions led by one broker
//! have ready leave together, in one request.
//!
//! Each partition still has at most one batch in flight (its flusher, or the
//! transaction's partition lock, waits for the answer before the next), so
//! sequences, retries and de-duplication are per partition exactly as before;
//! only the envelope is shared. A batch handed over while the broker's
//! requests are in flight waits for the next one, which carries everything
//! ready by then: under load one request carries many partitions, and an idle
//! producer's single batch leaves at once.
//!
//! ```text
//! partition flushers --batch--> BrokerQueue (per leader) --one ProduceRequest--> broker
//!          ^                                                                      |
//!          +------------------ each partition's answer ---------------------------+
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::ProduceRequest;
use tokio::sync::oneshot;

use super::{produce_request, Acks, EncodedBatch, PartitionBatch};
use crate::cluster::Cluster;
use crate::error::KafkaError;
use crate::group::protocol::TopicPartition;

/// Produce v12+ implies KIP-890 transactions (no AddPartitionsToTxn); kfn speaks the KIP-98 flow.
pub(super) const PRODUCE_CAP: i16 = 11;

/// Requests one producer may have in flight to one broker. Two: one being
/// answered while the next gathers batches (more would split the batches of
/// a busy producer into smaller requests).
const MAX_IN_FLIGHT: usize = 2;

/// The most record bytes one request carries; further batches wait for the next.
const MAX_REQUEST_BYTES: usize = 16 << 20;

/// What every request of a producer says besides its batches.
#[derive(Debug, Clone)]
pub(super) struct Envelope {
    /// The producer's acks.
    pub acks: Acks,
    /// How long the leader waits for the in-sync replicas.
    pub timeout: Duration,
    /// The transactional id, if any.
    pub transactional_id: Option<String>,
}

type Answer = Result<PartitionProduceResponse, KafkaError>;

struct Pending {
    tp: TopicPartition,
    batch: EncodedBatch,
    reply: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct BrokerQueue {
    pending: Vec<Pending>,
    in_flight: usize,
}

/// The per-broker queues of one producer.
#[derive(Default)]
pub(super) struct BrokerQueues {
    brokers: Mutex<HashMap<String, Arc<Mutex<BrokerQueue>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BrokerQueues {
    /// Sends `batch` to `tp`'s leader in the next request to that broker and
    /// returns the partition's answer.
    pub(super) async fn send(
        &self,
        cluster: &Cluster,
        envelope: &Envelope,
        tp: &TopicPartition,
        batch: &EncodedBatch,
    ) -> Result<PartitionProduceResponse, KafkaError> {
        let addr = cluster.leader_addr(&tp.topic, tp.partition).await?;
        let queue = lock(&self.brokers).entry(addr.clone()).or_default().clone();
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut q = lock(&queue);
            q.pending.push(Pending { tp: tp.clone(), batch: batch.clone(), reply });
            let start = q.in_flight < MAX_IN_FLIGHT;
            if start {
                q.in_flight += 1;
            }
            start
        };
        if start {
            // A task of its own: other partitions' batches must not depend on this caller's future.
            tokio::spawn(send_requests(cluster.clone(), addr.clone(), envelope.clone(), queue));
        }
        answer.await.unwrap_or_else(|_| {
            Err(KafkaError::Disconnected { broker: addr, reason: "the produce request was dropped".into() })
        })
    }
}

/// Sends the broker's pending batches, request after request, until none is left.
async fn send_requests(cluster: Cluster, addr: String, envelope: Envelope, queue: Arc<Mutex<BrokerQueue>>) {
    loop {
        let batches = {
            let mut q = lock(&queue);
            let batches = take_request(&mut q.pending);
            if batches.is_empty() {
                q.in_flight -= 1;
                return;
            }
            batches
        };
        match send_one(&cluster, &addr, &envelope, &batches).await {
            Ok(mut answers) => {
                for p in batches {
                    let answer = answers.remove(&(p.tp.topic.clone(), p.tp.partition)).ok_or_else(|| {
                        KafkaError::Codec { api: "Produce", message: format!("no answer for {}", p.tp) }
                    });
                    let _ = p.reply.send(answer);
                }
            }
            Err(e) => {
                for p in batches {
                    let _ = p.reply.send(Err(copy(&e, &addr)));
                }
            }
        }
    }
}

/// The batches of the next request: one per partition, within the size cap;
/// batches whose caller went away (a transaction that ended) are dropped.
fn take_request(pending: &mut Vec<Pending>) -> Vec<Pending> {
    let mut taken: Vec<Pending> = Vec::new();
    let mut bytes = 0usize;
    let mut rest = Vec::new();
    for p in pending.drain(..) {
        if p.reply.is_closed() {
            continue;
        }
        let size = p.batch.bytes().len();
        let duplicate = taken.iter().any(|t| t.tp == p.tp);
        if duplicate || (!taken.is_empty() && bytes.saturating_add(size) > MAX_REQUEST_BYTES) {
            rest.push(p);
            continue;
        }
        bytes = bytes.saturating_add(size);
        taken.push(p);
    }
    *pending = rest;
    taken
}

async fn send_one(
    cluster: &Cluster,
    addr: &str,
    envelope: &Envelope,
    batches: &[Pending],
) -> Result<HashMap<(String, i32), PartitionProduceResponse>, KafkaError> {
    let request = produce_request(
        batches.iter().map(|p| PartitionBatch { topic: &p.tp.topic, partition: p.tp.partition, batch: &p.batch }),
        envelope.acks,
        envelope.timeout,
        envelope.transactional_id.as_deref(),
    )
    .map_err(|e| KafkaError::Codec { api: "Produce", message: e.to_string() })?;
    let conn = cluster.connection(addr).await?;
    let version = conn.version_capped::<ProduceRequest>(PRODUCE_CAP)?;
    let response = conn.send_version(&request, version, Duration::ZERO).await?;
    let mut answers = HashMap::new();
    for topic in response.responses {
        let name = topic.name.0.to_string();
        for p in topic.partition_responses {
            answers.insert((name.clone(), p.index), p);
        }
    }
    Ok(answers)
}

/// The same failure for each partition of the request, as retriable as the original.
fn copy(error: &KafkaError, addr: &str) -> KafkaError {
    match error {
        KafkaError::Broker { api, code, context } => KafkaError::Broker { api, code: *code, context: context.clone() },
        KafkaError::Timeout { broker, api, timeout_ms } => {
            KafkaError::Timeout { broker: broker.clone(), api, timeout_ms: *timeout_ms }
        }
        KafkaError::Connect { .. } | KafkaError::Disconnected { .. } => {
            KafkaError::Disconnected { broker: addr.to_string(), reason: error.to_string() }
        }
        KafkaError::UnsupportedApi { broker, api } => KafkaError::UnsupportedApi { broker: broker.clone(), api },
        other => KafkaError::Codec { api: "Produce", message: other.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producer::{BatchBuilder, Compression, ProducerIdentity, ProducerRecord};

    fn pending(topic: &str, partition: i32, value_len: usize) -> (Pending, oneshot::Receiver<Answer>) {
        let mut builder = BatchBuilder::new(64 << 20);
        let value = bytes::Bytes::from(vec![b'x'; value_len]);
        let _ = builder.push(ProducerRecord::new(None, Some(value), 0)).expect("push");
        let batch = builder.encode(ProducerIdentity::NONE, -1, false, Compression::None).expect("encode");
        let (reply, rx) = oneshot::channel();
        (Pending { tp: TopicPartition::new(topic, partition), batch, reply }, rx)
    }

    #[test]
    fn a_request_takes_one_batch_per_partition_within_the_size_cap_and_skips_callers_gone() {
        let (a0, _ra0) = pending("a", 0, 10);
        let (a1, _ra1) = pending("a", 1, 10);
        let (a0_again, _ra0_again) = pending("a", 0, 10);
        let (gone, rgone) = pending("b", 0, 10);
        drop(rgone);
        let (big, _rbig) = pending("b", 1, MAX_REQUEST_BYTES);
        let mut queue = vec![a0, a1, a0_again, gone, big];
        let taken: Vec<_> = take_request(&mut queue).into_iter().map(|p| p.tp.to_string()).collect();
        assert_eq!(taken, ["a-0", "a-1"], "a-0's second batch and the oversized one wait");
        let next: Vec<_> = take_request(&mut queue).into_iter().map(|p| p.tp.to_string()).collect();
        assert_eq!(next, ["a-0"], "the oversized batch does not join a request past the cap");
        let last: Vec<_> = take_request(&mut queue).into_iter().map(|p| p.tp.to_string()).collect();
        assert_eq!(last, ["b-1"], "alone, a batch past the cap still goes");
        assert!(queue.is_empty());
    }
}
