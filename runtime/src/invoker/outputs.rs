//! Where a handler's events go: output name -> topic, key -> partition, event -> Avro bytes.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kfn_sdk::Emitted;

use crate::avro::OutputEncoder;
use crate::kafka::producer::partitioner::partition_for_key;
use crate::kafka::producer::ProducerRecord;

/// An output the handler named that cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The handler emitted to an output functions.toml does not declare.
    #[error("the handler emitted to output {output:?}, which functions.{function}.outputs does not declare")]
    Undeclared {
        /// The function.
        function: String,
        /// The output name.
        output: String,
    },
    /// The event does not fit the output topic's schema.
    #[error("cannot encode the event for output {output:?}: {message}")]
    Encode {
        /// The output name.
        output: String,
        /// Why.
        message: String,
    },
}

/// Where a record goes: its topic (shared, not copied per record) and partition.
pub type Target = (Arc<str>, i32);

/// Buffers reused across the records of a batch or request: the encoder's
/// scratch space, and allocations each shared by many encoded values.
#[derive(Default)]
pub struct EncodeBuffers {
    scratch: Vec<u8>,
    arena: BytesMut,
    /// The size of the next shared allocation; it doubles up to [`ARENA_MAX`].
    next: usize,
}

/// The largest allocation [`EncodeBuffers`] shares among values.
const ARENA_MAX: usize = 64 * 1024;

impl EncodeBuffers {
    /// The scratch contents as a value of its own, carved from a shared allocation.
    fn freeze(&mut self) -> Bytes {
        let len = self.scratch.len();
        if self.arena.capacity() < len {
            self.next = (self.next * 2).clamp(1024, ARENA_MAX);
            self.arena.reserve(len.max(self.next));
        }
        self.arena.extend_from_slice(&self.scratch);
        self.arena.split().freeze()
    }
}

/// One output: its topic, partition count and encoder.
pub struct Output {
    /// The topic.
    pub topic: Arc<str>,
    /// Its partition count.
    pub partitions: i32,
    /// The Avro encoder with the topic's registered schema.
    pub encoder: OutputEncoder,
    /// Records go to the partition of the input record they came from, not by
    /// key: an aggregate's table, whose partition p is what restores input
    /// partition p's state. (A windowed row's key `<window start>:<key>`
    /// hashes elsewhere than its grouping key.)
    pub follows_input: bool,
}

/// The outputs of one function, by name.
pub struct Outputs {
    function: String,
    by_name: HashMap<String, Arc<Output>>,
    round_robin: std::sync::atomic::AtomicU32,
}

impl Outputs {
    /// Outputs of `function`.
    pub fn new(function: &str, by_name: HashMap<String, Arc<Output>>) -> Self {
        Self { function: function.to_string(), by_name, round_robin: Default::default() }
    }

    /// Encodes an emitted event into the record for its topic-partition;
    /// `input_partition` is the partition of the record it came from (none for HTTP requests).
    pub fn route(
        &self,
        emitted: &Emitted,
        input_partition: Option<i32>,
        timestamp_ms: i64,
        buffers: &mut EncodeBuffers,
    ) -> Result<(Target, ProducerRecord), OutputError> {
        let output = self.by_name.get(emitted.output.as_ref()).ok_or_else(|| OutputError::Undeclared {
            function: self.function.clone(),
            output: emitted.output.to_string(),
        })?;
        output
            .encoder
            .encode(emitted.value.as_ref(), &mut buffers.scratch)
            .map_err(|e| OutputError::Encode { output: emitted.output.to_string(), message: e.to_string() })?;
        let value = buffers.freeze();
        let partition = match (&emitted.key, input_partition) {
            (_, Some(p)) if output.follows_input && p < output.partitions => p,
            (Some(key), _) => partition_for_key(key, output.partitions),
            (None, _) => {
                let n = self.round_robin.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                (n % output.partitions.max(1) as u32) as i32
            }
        };
        let mut record = ProducerRecord::new(emitted.key.clone(), Some(value), timestamp_ms);
        for h in &emitted.headers {
            record = record.with_header(h.name.clone(), h.value.clone());
        }
        Ok(((output.topic.clone(), partition), record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_values_keep_their_bytes_and_share_allocations() {
        let mut buffers = EncodeBuffers::default();
        let values: Vec<Bytes> = (0..2_000u32)
            .map(|i| {
                buffers.scratch.clear();
                buffers.scratch.extend(std::iter::repeat_n((i % 251) as u8, 100 + (i % 7) as usize));
                buffers.freeze()
            })
            .collect();
        for (i, v) in values.iter().enumerate() {
            let i = i as u32;
            assert_eq!(v.len(), 100 + (i % 7) as usize);
            assert!(v.iter().all(|b| *b == (i % 251) as u8), "value {i} intact");
        }
        // A value that follows its predecessor in memory shares its allocation.
        let fresh = values.windows(2).filter(|w| w[0].as_ptr().wrapping_add(w[0].len()) != w[1].as_ptr()).count() + 1;
        assert!(fresh <= 10, "{fresh} allocations for {} values", values.len());
    }
}
