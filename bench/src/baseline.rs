//! What the librdkafka baselines share: their settings from the environment,
//! and one consume-transform-produce loop.
//!
//! The orchestrator starts each baseline as a child process with
//! `BENCH_BROKERS`, `BENCH_INPUT`, `BENCH_OUTPUT`, `BENCH_GROUP` (and
//! `BENCH_REGISTRY` for the Avro service) and kills it once the output topic
//! holds every record. Offsets are auto-committed, as a hand-written service
//! typically does; that is weaker than kfn's commit-after-acknowledgement.

use std::time::Duration;

use anyhow::Context;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, ProducerContext};

/// Where a baseline reads and writes.
#[derive(Debug, Clone)]
pub struct ServiceEnv {
    /// Bootstrap brokers, `host:port`.
    pub brokers: String,
    /// The input topic.
    pub input: String,
    /// The output topic.
    pub output: String,
    /// The consumer group.
    pub group: String,
    /// The schema registry URL (Avro services only).
    pub registry: Option<String>,
}

impl ServiceEnv {
    /// Reads `BENCH_*` from the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
        Ok(Self {
            brokers: var("BENCH_BROKERS")?,
            input: var("BENCH_INPUT")?,
            output: var("BENCH_OUTPUT")?,
            group: var("BENCH_GROUP")?,
            registry: std::env::var("BENCH_REGISTRY").ok(),
        })
    }

    /// A consumer subscribed to the input, reading from the earliest offset.
    pub fn consumer(&self) -> anyhow::Result<BaseConsumer<StderrLog>> {
        let consumer: BaseConsumer<StderrLog> = client_config()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            .set("auto.offset.reset", "earliest")
            // The local broker completes a new group's first join after half the session timeout.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "2000")
            .create_with_context(StderrLog)
            .context("creating the consumer")?;
        consumer.subscribe(&[&self.input]).context("subscribing")?;
        Ok(consumer)
    }

    /// A producer with the same compression as kfn's default (lz4).
    pub fn producer(&self) -> anyhow::Result<BaseProducer<StderrLog>> {
        client_config()
            .set("bootstrap.servers", &self.brokers)
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .create_with_context(StderrLog)
            .context("creating the producer")
    }
}

/// librdkafka's log and errors on stderr (the service's log file), not through the `log` crate.
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrLog;

impl ClientContext for StderrLog {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        eprintln!("librdkafka {level:?} {fac}: {message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        eprintln!("librdkafka error: {error}: {reason}");
    }
}

impl ConsumerContext for StderrLog {}

impl ProducerContext for StderrLog {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            eprintln!("delivery failed: {e}");
        }
    }
}

/// A librdkafka configuration; `BENCH_RDKAFKA_DEBUG` (e.g. `broker,protocol`) turns on its debug log.
///
/// The rdkafka crate routes librdkafka's log through the main queue: the producer's lines reach
/// [`StderrLog`], while a `BaseConsumer` drops the log events it meets while polling.
fn client_config() -> ClientConfig {
    let mut config = ClientConfig::new();
    if let Ok(debug) = std::env::var("BENCH_RDKAFKA_DEBUG") {
        config.set("debug", debug);
    }
    config
}

/// What a baseline does to each value between consuming and producing it.
pub trait Transform {
    /// The output value for `input`: `input` itself, or written into `buffer`.
    fn apply<'a>(&mut self, input: &'a [u8], buffer: &'a mut Vec<u8>) -> anyhow::Result<&'a [u8]>;
}

/// Consumes the input until killed, producing each transformed value with the input's key.
/// A value the transform refuses is logged and skipped.
pub fn pipe(env: &ServiceEnv, mut transform: impl Transform) -> anyhow::Result<()> {
    let consumer = env.consumer()?;
    let producer = env.producer()?;
    let mut value = Vec::with_capacity(256);
    loop {
        let message = match consumer.poll(Duration::from_millis(100)) {
            None => {
                producer.poll(Duration::ZERO);
                continue;
            }
            Some(Err(e)) => {
                eprintln!("consume failed: {e}");
                continue;
            }
            Some(Ok(m)) => m,
        };
        let output = match transform.apply(message.payload().unwrap_or_default(), &mut value) {
            Ok(output) => output,
            Err(e) => {
                eprintln!("record at offset {} skipped: {e:#}", message.offset());
                continue;
            }
        };
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&env.output).payload(output);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    producer.poll(Duration::from_millis(10));
                    record = back;
                }
                Err((e, _)) => {
                    eprintln!("produce failed: {e}");
                    break;
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
}
