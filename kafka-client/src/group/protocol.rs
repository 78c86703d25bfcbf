//! The standard consumer protocol's metadata: what a member sends in
//! JoinGroup (its subscription) and what the leader hands back through
//! SyncGroup (each member's assignment).
//!
//! Both are opaque bytes to the broker. Every Kafka client encodes them the
//! way the Java client's `ConsumerProtocol` does: a 2-byte big-endian version,
//! then the body of `ConsumerProtocolSubscription` or
//! `ConsumerProtocolAssignment` with no request header. Following that format
//! lets kfn share a group with librdkafka or Java consumers, and lets tools
//! such as `kafka-consumer-groups` describe kfn's groups.
//!
//! ```
//! use kfn_kafka::group::protocol::{decode_subscription, encode_subscription, TopicPartition};
//!
//! let owned = [TopicPartition::new("orders", 3)];
//! let bytes = encode_subscription(&["orders".to_string()], &owned, None).unwrap();
//! let sub = decode_subscription(&bytes).unwrap();
//! assert_eq!(sub.topics, ["orders"]);
//! assert_eq!(sub.owned, owned);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// The subscription version kfn writes: version 1 is the first to carry
/// owned partitions, which the sticky assignor needs.
pub const SUBSCRIPTION_VERSION: i16 = 1;

/// The assignment version kfn writes. Versions 0 to 3 share one layout;
/// 0 is the one every client can read.
pub const ASSIGNMENT_VERSION: i16 = 0;

/// The highest version of either message this build understands. Newer
/// versions only append fields, so they are read as this one (as the Java
/// client does) and the trailing fields are ignored.
const MAX_KNOWN_VERSION: i16 = 3;

/// Why consumer protocol metadata could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Fewer than the 2 bytes of the version prefix.
    #[error("consumer protocol {what} is {len} byte(s), too short for its 2-byte version")]
    MissingVersion {
        /// `"subscription"` or `"assignment"`.
        what: &'static str,
        /// The length received.
        len: usize,
    },
    /// A negative version, which no client writes.
    #[error("consumer protocol {what} has invalid version {version}")]
    InvalidVersion {
        /// `"subscription"` or `"assignment"`.
        what: &'static str,
        /// The version received.
        version: i16,
    },
    /// The body does not parse at the version it announces.
    #[error("consumer protocol {what} (version {version}) is malformed")]
    Malformed {
        /// `"subscription"` or `"assignment"`.
        what: &'static str,
        /// The version the body was read as.
        version: i16,
        /// What the decoder tripped over.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A field does not fit its wire type (a topic name over 32767 bytes,
    /// more than `i32::MAX` entries).
    #[error("cannot encode consumer protocol {what}")]
    Encode {
        /// `"subscription"` or `"assignment"`.
        what: &'static str,
        /// What the encoder refused.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// The topic name.
    pub topic: String,
    /// The partition index within the topic.
    pub partition: i32,
}

impl TopicPartition {
    /// A partition of `topic`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self { topic: topic.into(), partition }
    }
}

impl fmt::Display for TopicPartition {
    /// Kafka's usual `topic-partition` spelling, as in broker logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// What a member tells the group leader when it joins.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    /// The topics the member wants to consume, as sent.
    pub topics: Vec<String>,
    /// The partitions the member owned in its last generation (sorted, no
    /// duplicates after decoding).
    pub owned: Vec<TopicPartition>,
    /// Opaque data for the assignor.
    pub user_data: Option<Bytes>,
    /// The generation in which the member owned `owned`, when the sender
    /// said (version 2 and later; librdkafka and Java send it).
    pub generation_id: Option<i32>,
    /// The member's rack (version 3 and later).
    pub rack_id: Option<String>,
}

/// The partitions the leader gives one member.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    /// Partitions by topic; each list sorted, without duplicates and, after
    /// decoding, not empty.
    pub partitions: BTreeMap<String, Vec<i32>>,
    /// Opaque data from the assignor.
    pub user_data: Option<Bytes>,
}

impl Assignment {
    /// An assignment of exactly `partitions`, normalised (grouped by
    /// topic, sorted, duplicates dropped).
    pub fn from_partitions(partitions: impl IntoIterator<Item = TopicPartition>) -> Self {
        let mut by_topic: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
        for tp in partitions {
            by_topic.entry(tp.topic).or_default().insert(tp.partition);
        }
        Self {
            partitions: by_topic.into_iter().map(|(topic, set)| (topic, set.into_iter().collect())).collect(),
            user_data: None,
        }
    }

    /// Every assigned partition, in (topic, partition) order.
    pub fn topic_partitions(&self) -> impl Iterator<Item = TopicPartition> + '_ {
        self.partitions.iter().flat_map(|(topic, ps)| ps.iter().map(move |p| TopicPartition::new(topic.clone(), *p)))
    }

    /// The number of assigned partitions.
    pub fn len(&self) -> usize {
        self.partitions.values().map(Vec::len).sum()
    }

    /// Whether no partition is assigned.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `tp` is assigned.
    pub fn contains(&self, tp: &TopicPartition) -> bool {
        self.partitions.get(&tp.topic).is_some_and(|ps| ps.binary_search(&tp.partition).is_ok())
    }
}

/// Encodes a subscription at [`SUBSCRIPTION_VERSION`], the JoinGroup
/// protocol metadata of a kfn member.
///
/// `owned` should be the member's assignment of its last generation, so
/// the sticky assignor can leave those partitions in place.
pub fn encode_subscription(
    topics: &[String],
    owned: &[TopicPartition],
    user_data: Option<Bytes>,
) -> Result<Bytes, ProtocolError> {
    let owned = Assignment::from_partitions(owned.iter().cloned());
    let message = ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|t| StrBytes::from_string(t.clone())).collect())
        .with_user_data(user_data)
        .with_owned_partitions(
            owned
                .partitions
                .into_iter()
                .map(|(topic, partitions)| {
                    OwnedTopic::default().with_topic(topic_name(topic)).with_partitions(partitions)
                })
                .collect(),
        );
    encode_versioned(&message, SUBSCRIPTION_VERSION, "subscription")
}

/// Decodes a member's JoinGroup protocol metadata, whatever client wrote it
/// (versions 0 to 3, newer versions read as 3, trailing bytes ignored).
pub fn decode_subscription(bytes: &[u8]) -> Result<Subscription, ProtocolError> {
    const WHAT: &str = "subscription";
    let Some((version, mut body)) = split_version(bytes, WHAT)? else {
        return Err(ProtocolError::MissingVersion { what: WHAT, len: bytes.len() });
    };
    check_lengths(body, version, WHAT, walk_subscription)?;
    let message = ConsumerProtocolSubscription::decode(&mut body, version).map_err(|e| ProtocolError::Malformed {
        what: WHAT,
        version,
        source: e.into(),
    })?;
    let owned = message.owned_partitions.into_iter().flat_map(|t| {
        let topic = t.topic.0.as_str().to_owned();
        t.partitions.into_iter().map(move |p| TopicPartition::new(topic.clone(), p))
    });
    Ok(Subscription {
        topics: message.topics.iter().map(|t| t.as_str().to_owned()).collect(),
        owned: Assignment::from_partitions(owned).topic_partitions().collect(),
        user_data: message.user_data,
        // The message defaults an absent generation to -1, which is also
        // what a member that never had one sends.
        generation_id: (message.generation_id >= 0).then_some(message.generation_id),
        rack_id: message.rack_id.map(|r| r.as_str().to_owned()),
    })
}

/// Encodes an assignment at [`ASSIGNMENT_VERSION`], the SyncGroup payload
/// the leader sends for one member.
pub fn encode_assignment(assignment: &Assignment) -> Result<Bytes, ProtocolError> {
    let message = ConsumerProtocolAssignment::default()
        .with_assigned_partitions(
            assignment
                .partitions
                .iter()
                .map(|(topic, partitions)| {
                    AssignedTopic::default().with_topic(topic_name(topic.clone())).with_partitions(partitions.clone())
                })
                .collect(),
        )
        .with_user_data(assignment.user_data.clone());
    encode_versioned(&message, ASSIGNMENT_VERSION, "assignment")
}

/// Decodes the SyncGroup assignment of this member. An empty byte string
/// is an empty assignment: brokers and leaders send one to a member that
/// gets nothing.
pub fn decode_assignment(bytes: &[u8]) -> Result<Assignment, ProtocolError> {
    const WHAT: &str = "assignment";
    let Some((version, mut body)) = split_version(bytes, WHAT)? else {
        return Ok(Assignment::default());
    };
    check_lengths(body, version, WHAT, walk_assignment)?;
    let message = ConsumerProtocolAssignment::decode(&mut body, version).map_err(|e| ProtocolError::Malformed {
        what: WHAT,
        version,
        source: e.into(),
    })?;
    let partitions = message.assigned_partitions.into_iter().flat_map(|t| {
        let topic = t.topic.0.as_str().to_owned();
        t.partitions.into_iter().map(move |p| TopicPartition::new(topic.clone(), p))
    });
    Ok(Assignment { user_data: message.user_data, ..Assignment::from_partitions(partitions) })
}

fn topic_name(topic: String) -> TopicName {
    TopicName(StrBytes::from_string(topic))
}

/// Splits off the version prefix: `None` for an empty input, the version
/// to decode the body at otherwise.
fn split_version<'a>(bytes: &'a [u8], what: &'static str) -> Result<Option<(i16, &'a [u8])>, ProtocolError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    if bytes.len() < 2 {
        return Err(ProtocolError::MissingVersion { what, len: bytes.len() });
    }
    let mut body = bytes;
    let version = body.get_i16();
    if version < 0 {
        return Err(ProtocolError::InvalidVersion { what, version });
    }
    Ok(Some((version.min(MAX_KNOWN_VERSION), body)))
}

fn encode_versioned<M: Encodable>(message: &M, version: i16, what: &'static str) -> Result<Bytes, ProtocolError> {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&version.to_be_bytes());
    message.encode(&mut buf, version).map_err(|e| ProtocolError::Encode { what, source: e.into() })?;
    Ok(buf.freeze())
}

/// Walks the body and rejects any array whose element count exceeds the
/// bytes left. kafka-protocol reserves an array's declared capacity before
/// reading its elements, so one corrupt or hostile member's count of 2^31
/// would abort the leader on allocation instead of failing its decode.
fn check_lengths(
    body: &[u8],
    version: i16,
    what: &'static str,
    walk: fn(&mut &[u8], i16) -> Walk,
) -> Result<(), ProtocolError> {
    let mut buf = body;
    walk(&mut buf, version).map_err(|reason| ProtocolError::Malformed { what, version, source: reason.into() })
}

type Walk = Result<(), &'static str>;

fn walk_subscription(buf: &mut &[u8], version: i16) -> Walk {
    walk_array(buf, walk_string)?;
    walk_bytes(buf)?;
    if version >= 1 {
        walk_array(buf, walk_topic_partitions)?;
    }
    Ok(())
}

/// Every assignment version shares version 0's layout.
fn walk_assignment(buf: &mut &[u8], _version: i16) -> Walk {
    walk_array(buf, walk_topic_partitions)?;
    walk_bytes(buf)
}

fn walk_topic_partitions(buf: &mut &[u8]) -> Walk {
    walk_string(buf)?;
    walk_array(buf, |b| skip(b, 4))
}

fn walk_array(buf: &mut &[u8], mut element: impl FnMut(&mut &[u8]) -> Walk) -> Walk {
    let count = read_i32(buf)?;
    // Every element takes at least one byte.
    if usize::try_from(count).is_ok_and(|n| n > buf.len()) {
        return Err("array count exceeds the bytes that follow");
    }
    for _ in 0..count.max(0) {
        element(buf)?;
    }
    Ok(())
}

fn walk_string(buf: &mut &[u8]) -> Walk {
    if buf.len() < 2 {
        return Err("truncated string length");
    }
    let len = buf.get_i16();
    skip(buf, usize::try_from(len).unwrap_or(0))
}

fn walk_bytes(buf: &mut &[u8]) -> Walk {
    let len = read_i32(buf)?;
    skip(buf, usize::try_from(len).unwrap_or(0))
}

fn read_i32(buf: &mut &[u8]) -> Result<i32, &'static str> {
    if buf.len() < 4 {
        return Err("truncated length");
    }
    Ok(buf.get_i32())
}

fn skip(buf: &mut &[u8], n: usize) -> Walk {
    if buf.len() < n {
        return Err("field runs past the end");
    }
    buf.advance(n);
    Ok(())
}
