//! KIP-227 fetch sessions: what one broker's fetcher sends each round.
//!
//! The first request of a session lists every partition wanted (a full
//! fetch, epoch 0, asking the broker to open a session). Once the broker
//! answers with a session id, later requests (incremental fetches, epoch 1,
//! 2, …) list only the partitions added or changed since the last request
//! (a new fetch offset or size) and the partitions to forget; the broker
//! fetches the rest of the session's partitions from what it remembers. A
//! broker that opens no session (it answers session id 0, or its Fetch
//! version predates sessions) keeps getting full fetches.
//!
//! Back-pressure rests on forgetting: a partition whose worker has not taken
//! its last records is not wanted, so it leaves the session (the broker would
//! otherwise send its records again) and comes back with its next offset.
//!
//! This is pure bookkeeping; [`super::broker`] sends the requests.
//!
//! ```
//! use std::collections::BTreeMap;
//! use kfn_kafka::fetch::{FetchLimits, FetchSession, Isolation, Wanted};
//! use kfn_kafka::group::protocol::TopicPartition;
//!
//! let mut session = FetchSession::default();
//! let tp = TopicPartition::new("orders", 0);
//! let wanted = BTreeMap::from([(tp, Wanted { topic_id: uuid::Uuid::nil(), fetch_offset: 7, partition_max_bytes: 1024 })]);
//! let request = session.request(&wanted, &FetchLimits::default(), Isolation::ReadCommitted);
//! assert_eq!((request.session_id, request.session_epoch), (0, 0), "a full fetch opening a session");
//! session.answered(0, 42);
//! let request = session.request(&wanted, &FetchLimits::default(), Isolation::ReadCommitted);
//! assert_eq!((request.session_id, request.session_epoch), (42, 1));
//! assert!(request.topics.is_empty(), "nothing changed: nothing listed");
//! ```

use std::collections::BTreeMap;

use kafka_protocol::messages::fetch_request::ForgottenTopic;
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::request::{fetch_request, FetchLimits, PartitionFetch};
use super::Isolation;
use crate::group::protocol::TopicPartition;

/// What is wanted of one partition in the next fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// The topic's id from metadata (nil when unknown).
    pub topic_id: Uuid,
    /// The first offset wanted.
    pub fetch_offset: i64,
    /// The most bytes of this partition.
    pub partition_max_bytes: i32,
}

/// The client side of one broker's fetch session.
#[derive(Debug, Default)]
pub struct FetchSession {
    /// The broker's session id; 0 while there is none.
    id: i32,
    /// The epoch of the next incremental request.
    epoch: i32,
    /// What the broker's session holds, as of the last answered request.
    held: BTreeMap<TopicPartition, Wanted>,
    /// What the request in flight asks for; becomes `held` once answered.
    asked: Option<BTreeMap<TopicPartition, Wanted>>,
}

impl FetchSession {
    /// The session id, 0 when no session is open.
    pub fn id(&self) -> i32 {
        self.id
    }

    /// The request for `wanted`: a full fetch opening a session, or an
    /// incremental one listing only what changed and what to forget.
    pub fn request(
        &mut self,
        wanted: &BTreeMap<TopicPartition, Wanted>,
        limits: &FetchLimits,
        isolation: Isolation,
    ) -> FetchRequest {
        let listed = |tp: &TopicPartition| self.id == 0 || self.held.get(tp) != wanted.get(tp);
        let partitions: Vec<PartitionFetch<'_>> = wanted
            .iter()
            .filter(|(tp, _)| listed(tp))
            .map(|(tp, w)| PartitionFetch {
                topic: &tp.topic,
                topic_id: w.topic_id,
                partition: tp.partition,
                fetch_offset: w.fetch_offset,
            })
            .collect();
        let mut request = fetch_request(&partitions, limits, isolation);
        // Each partition's own size: a reader grows it to reach a transaction's marker.
        for topic in &mut request.topics {
            for p in &mut topic.partitions {
                let tp = TopicPartition::new(topic.topic.0.as_str(), p.partition);
                if let Some(w) = wanted.get(&tp) {
                    p.partition_max_bytes = w.partition_max_bytes;
                }
            }
        }
        if self.id == 0 {
            // Epoch 0 with no id asks for a new session.
            request = request.with_session_id(0).with_session_epoch(0);
        } else {
            let mut forgotten: BTreeMap<(&str, Uuid), Vec<i32>> = BTreeMap::new();
            for (tp, held) in &self.held {
                if !wanted.contains_key(tp) {
                    forgotten.entry((&tp.topic, held.topic_id)).or_default().push(tp.partition);
                }
            }
            request = request.with_session_id(self.id).with_session_epoch(self.epoch).with_forgotten_topics_data(
                forgotten
                    .into_iter()
                    .map(|((topic, topic_id), partitions)| {
                        ForgottenTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                            .with_topic_id(topic_id)
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        }
        self.asked = Some(wanted.clone());
        request
    }

    /// Records the broker's answer to the last request: its top-level error
    /// code and the session id it gave. A session error (the broker evicted
    /// the session, or lost count of its epochs) starts over with a full fetch.
    pub fn answered(&mut self, error_code: i16, session_id: i32) {
        let asked = self.asked.take().unwrap_or_default();
        if error_code != 0 {
            if matches!(
                ResponseError::try_from_code(error_code),
                Some(ResponseError::FetchSessionIdNotFound | ResponseError::InvalidFetchSessionEpoch)
            ) {
                tracing::debug!(session_id = self.id, error_code, "fetch session lost; starting a new one");
            }
            self.reset();
            return;
        }
        if self.id == 0 {
            if session_id == 0 {
                // The broker keeps no session (sessions off, cache full, or
                // unsupported): every request stays a full fetch.
                return;
            }
            self.id = session_id;
            self.epoch = 1;
        } else {
            self.epoch = if self.epoch == i32::MAX { 1 } else { self.epoch + 1 };
        }
        self.held = asked;
    }

    /// Forgets the session (a failed request leaves its state unknown): the
    /// next request is a full fetch.
    pub fn reset(&mut self) {
        self.id = 0;
        self.epoch = 0;
        self.held.clear();
        self.asked = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(offset: i64) -> Wanted {
        Wanted { topic_id: Uuid::nil(), fetch_offset: offset, partition_max_bytes: 1 << 20 }
    }

    fn listed(request: &FetchRequest) -> Vec<(String, i32, i64)> {
        request
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.0.to_string(), p.partition, p.fetch_offset)))
            .collect()
    }

    fn forgotten(request: &FetchRequest) -> Vec<(String, i32)> {
        request
            .forgotten_topics_data
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.0.to_string(), *p)))
            .collect()
    }

    #[test]
    fn incremental_requests_list_changes_and_forget_partitions_not_wanted() {
        let mut s = FetchSession::default();
        let (a0, a1, b0) = (TopicPartition::new("a", 0), TopicPartition::new("a", 1), TopicPartition::new("b", 0));
        let all = BTreeMap::from([(a0.clone(), want(1)), (a1.clone(), want(5)), (b0.clone(), want(9))]);
        let full = s.request(&all, &FetchLimits::default(), Isolation::ReadCommitted);
        assert_eq!(listed(&full).len(), 3);
        s.answered(0, 77);

        // a0 moved on, a1 is busy (not wanted), b0 unchanged.
        let next = BTreeMap::from([(a0.clone(), want(4)), (b0.clone(), want(9))]);
        let r = s.request(&next, &FetchLimits::default(), Isolation::ReadCommitted);
        assert_eq!((r.session_id, r.session_epoch), (77, 1));
        assert_eq!(listed(&r), [("a".to_string(), 0, 4)]);
        assert_eq!(forgotten(&r), [("a".to_string(), 1)]);
        s.answered(0, 77);

        // a1 is back: listed again with its offset; nothing forgotten twice.
        let back = BTreeMap::from([(a0, want(4)), (a1, want(6)), (b0, want(9))]);
        let r = s.request(&back, &FetchLimits::default(), Isolation::ReadCommitted);
        assert_eq!(r.session_epoch, 2);
        assert_eq!(listed(&r), [("a".to_string(), 1, 6)]);
        assert!(forgotten(&r).is_empty());
    }

    #[test]
    fn a_session_error_or_a_failed_request_starts_over_with_a_full_fetch() {
        let mut s = FetchSession::default();
        let wanted = BTreeMap::from([(TopicPartition::new("a", 0), want(1))]);
        s.request(&wanted, &FetchLimits::default(), Isolation::ReadCommitted);
        s.answered(0, 5);
        s.request(&wanted, &FetchLimits::default(), Isolation::ReadCommitted);
        s.answered(ResponseError::InvalidFetchSessionEpoch.code(), 0);
        let r = s.request(&wanted, &FetchLimits::default(), Isolation::ReadCommitted);
        assert_eq!((r.session_id, r.session_epoch, listed(&r).len()), (0, 0, 1));
        s.answered(0, 6);
        s.request(&wanted, &FetchLimits::default(), Isolation::ReadCommitted);
        s.reset();
        let r = s.request(&wanted, &FetchLimits::default(), Isolation::ReadCommitted);
        assert_eq!((r.session_id, listed(&r).len()), (0, 1));
    }

    #[test]
    fn a_broker_without_sessions_gets_full_fetches() {
        let mut s = FetchSession::default();
        let wanted = BTreeMap::from([(TopicPartition::new("a", 0), want(1)), (TopicPartition::new("a", 1), want(2))]);
        for _ in 0..3 {
            let r = s.request(&wanted, &FetchLimits::default(), Isolation::ReadCommitted);
            assert_eq!((r.session_id, listed(&r).len()), (0, 2));
            s.answered(0, 0);
        }
    }

    #[test]
    fn each_partition_keeps_its_own_size() {
        let mut s = FetchSession::default();
        let mut big = want(1);
        big.partition_max_bytes = 8 << 20;
        let wanted = BTreeMap::from([(TopicPartition::new("a", 0), want(1)), (TopicPartition::new("a", 1), big)]);
        let r = s.request(&wanted, &FetchLimits::default(), Isolation::ReadCommitted);
        let sizes: Vec<i32> = r.topics[0].partitions.iter().map(|p| p.partition_max_bytes).collect();
        assert_eq!(sizes, [1 << 20, 8 << 20]);
    }
}
