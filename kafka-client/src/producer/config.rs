//! What a producer is asked to do: acknowledgements, batching, compression,
//! timeouts, idempotence and transactions.
//!
//! ```
//! use kfn_kafka::producer::{Acks, Compression, ProducerConfig};
//!
//! let config = ProducerConfig::default();
//! assert!(config.idempotent);
//! assert_eq!(config.acks, Acks::All);
//! assert_eq!(config.compression, Compression::Lz4);
//! config.validate()?;
//! # Ok::<(), kfn_kafka::producer::ProducerError>(())
//! ```

use std::time::Duration;

use super::ProducerError;

/// How many replicas must have a batch before the leader answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Acks {
    /// Nobody answers (acks 0): the producer never learns whether a batch landed.
    None,
    /// The leader answers once it wrote the batch (acks 1).
    Leader,
    /// The leader answers once every in-sync replica has the batch (acks -1);
    /// idempotence and transactions require it.
    All,
}

impl Acks {
    /// The value of the `acks` field of a ProduceRequest.
    pub fn wire_value(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// How a batch's records are compressed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// No compression.
    None,
    /// gzip: small output, the most CPU.
    Gzip,
    /// Snappy: fast, weaker ratio than lz4 and zstd.
    Snappy,
    /// LZ4 (frame format): the least CPU per byte of the compressing codecs.
    Lz4,
    /// Zstandard: the best ratio, more CPU than lz4.
    Zstd,
}

impl Compression {
    /// The codec in kafka-protocol's terms.
    pub fn to_protocol(self) -> kafka_protocol::records::Compression {
        use kafka_protocol::records::Compression as Wire;
        match self {
            Compression::None => Wire::None,
            Compression::Gzip => Wire::Gzip,
            Compression::Snappy => Wire::Snappy,
            Compression::Lz4 => Wire::Lz4,
            Compression::Zstd => Wire::Zstd,
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = ProducerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "snappy" => Ok(Compression::Snappy),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd),
            other => Err(ProducerError::InvalidConfig {
                field: "compression",
                reason: format!("expected none, gzip, snappy, lz4 or zstd, got {other:?}"),
            }),
        }
    }
}

/// A producer's settings.
///
/// The defaults are the ones kfn runs with:
/// - `idempotent: true`, `acks: All`: a retried batch is de-duplicated by the
///   broker, so retries never write a record twice;
/// - `linger: 5 ms`: Kafka 4's default; a handler's outputs in one poll share
///   a batch without adding latency anyone notices;
/// - `max_batch_bytes: 1_000_000`: just under the broker's default
///   `max.message.bytes` (1 MiB + 12 bytes). The limit is checked against the
///   uncompressed size, and compressing incompressible bytes adds some framing,
///   so a full 1 MiB would risk MESSAGE_TOO_LARGE;
/// - `compression: Lz4`: the order events are small Avro records whose field
///   names are not on the wire, so ratios differ little between codecs while
///   lz4 costs the least CPU of them, and CPU is what the runtime spends per
///   record (see DESIGN.md);
/// - `request_timeout: 30 s`, `delivery_timeout: 120 s`: the Java producer's;
/// - `transaction_timeout: 60 s`: the Java producer's too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    /// Ask the broker for a producer id and number each partition's batches,
    /// so retries cannot duplicate records.
    pub idempotent: bool,
    /// Acknowledgements asked of the leader.
    pub acks: Acks,
    /// Set for exactly-once functions: the id that fences older instances of
    /// the same member (KIP-447).
    pub transactional_id: Option<String>,
    /// How long the transaction coordinator lets a transaction of this
    /// producer stay open before it aborts it and fences the producer: the
    /// longest a crashed producer's open transaction holds read_committed
    /// readers (and, for offsets, the next owner of its partitions).
    pub transaction_timeout: Duration,
    /// How long records sent to an idle partition (no batch in flight, none
    /// queued) may wait for more before their batch is sent.
    ///
    /// The wait ends early once the queued records reach `max_batch_bytes`.
    /// It happens once per busy period: records that arrive while a batch is in
    /// flight queue anyway and all leave as soon as it is acknowledged, without
    /// lingering again. Zero sends at once. Transactional sends do not linger
    /// (they go out at commit, all at once).
    pub linger: Duration,
    /// A batch is closed once its estimated uncompressed size would pass this;
    /// a single larger record still goes out alone.
    pub max_batch_bytes: usize,
    /// The codec for every batch.
    pub compression: Compression,
    /// How long the broker (and the client) wait for one Produce answer.
    pub request_timeout: Duration,
    /// How long a record may take from being handed to the producer until it is
    /// acknowledged, retries included; then it fails.
    pub delivery_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            idempotent: true,
            acks: Acks::All,
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
            linger: Duration::from_millis(5),
            max_batch_bytes: 1_000_000,
            compression: Compression::Lz4,
            request_timeout: Duration::from_secs(30),
            delivery_timeout: Duration::from_secs(120),
        }
    }
}

impl ProducerConfig {
    /// Check that the settings agree with each other and fit the wire format.
    pub fn validate(&self) -> Result<(), ProducerError> {
        let invalid = |field, reason: &str| Err(ProducerError::InvalidConfig { field, reason: reason.to_owned() });
        if self.idempotent && self.acks != Acks::All {
            return invalid("acks", "an idempotent producer needs acks = all");
        }
        if let Some(id) = &self.transactional_id {
            if id.is_empty() {
                return invalid("transactional_id", "must not be empty");
            }
            if !self.idempotent {
                return invalid("idempotent", "a transactional producer must be idempotent");
            }
        }
        if self.transaction_timeout.is_zero() || self.transaction_timeout.as_millis() > i32::MAX as u128 {
            return invalid("transaction_timeout", "must be more than 0 ms and fit in 2147483647 ms");
        }
        if self.max_batch_bytes == 0 || self.max_batch_bytes > i32::MAX as usize {
            return invalid("max_batch_bytes", "must be between 1 and 2147483647");
        }
        if self.request_timeout.is_zero() || self.request_timeout.as_millis() > i32::MAX as u128 {
            return invalid("request_timeout", "must be more than 0 ms and fit in 2147483647 ms");
        }
        // The Java producer enforces the same, so a record always gets at
        // least one full attempt before its delivery time runs out.
        if self.delivery_timeout < self.linger + self.request_timeout {
            return invalid("delivery_timeout", "must be at least linger + request_timeout");
        }
        Ok(())
    }
}
