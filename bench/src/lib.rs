//! Benchmarks of kfn against the pipe's limit (librdkafka), a hand-written
//! Rust service on librdkafka, a Python service on confluent-kafka, and an
//! exactly-once Kafka Streams service.
//!
//! `scripts/bench` builds the binaries in release mode and runs
//! `kfn-bench`, which starts one local broker and kfn's schema registry,
//! runs every scenario as child processes, prints a table and writes
//! docs/benchmarks.md. The other binaries are the services measured:
//! `kfn-bench-replica` (kfn with a passthrough handler), `rdkafka-pipe`
//! (raw bytes, the limit), `rdkafka-avro` (the hand-written Rust service)
//! and `http-sink` (a bare hyper server, the HTTP limit). The Kafka Streams
//! service is a Maven project, `bench/streams`, built and run by [`streams`].

pub mod baseline;
pub mod e2e;
pub mod http_bench;
pub mod http_load;
pub mod memory;
pub mod order_system;
pub mod orders;
pub mod procfs;
pub mod report;
pub mod schema_registry;
pub mod services;
pub mod stack;
pub mod stats;
pub mod streams;
pub mod throughput;
