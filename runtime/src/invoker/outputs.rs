//! Where a handler's events go: output name -> topic, key -> partition, event -> Avro bytes.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use kfn_sdk::Emitted;

use crate::avro::OutputEncoder;
use crate::kafka::group::protocol::TopicPartition;
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

/// One output: its topic, partition count and encoder.
pub struct Output {
    /// The topic.
    pub topic: String,
    /// Its partition count.
    pub partitions: i32,
    /// The Avro encoder with the topic's registered schema.
    pub encoder: OutputEncoder,
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

    /// Encodes an emitted event into the record for its topic-partition.
    pub fn route(&self, emitted: &Emitted, timestamp_ms: i64) -> Result<(TopicPartition, ProducerRecord), OutputError> {
        let output = self.by_name.get(emitted.output.as_ref()).ok_or_else(|| OutputError::Undeclared {
            function: self.function.clone(),
            output: emitted.output.to_string(),
        })?;
        let mut value = Vec::with_capacity(128);
        output
            .encoder
            .encode(emitted.value.as_ref(), &mut value)
            .map_err(|e| OutputError::Encode { output: emitted.output.to_string(), message: e.to_string() })?;
        let partition = match &emitted.key {
            Some(key) => partition_for_key(key, output.partitions),
            None => {
                let n = self.round_robin.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                (n % output.partitions.max(1) as u32) as i32
            }
        };
        let mut record = ProducerRecord::new(emitted.key.clone(), Some(Bytes::from(value)), timestamp_ms);
        for h in &emitted.headers {
            record = record.with_header(h.name.clone(), h.value.clone());
        }
        Ok((TopicPartition::new(output.topic.clone(), partition), record))
    }
}
