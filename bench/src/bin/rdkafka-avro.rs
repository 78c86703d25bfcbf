//! The passthrough a Rust team would write by hand on librdkafka: split the
//! Confluent header, decode the OrderCreated with its writer's schema
//! (serde_avro_fast, typed), encode it with the output topic's registered
//! schema, frame it and produce it with the input's key.

use std::collections::HashMap;
use std::str::FromStr;

use anyhow::Context;
use kfn_bench::baseline::{pipe, ServiceEnv, Transform};
use kfn_bench::schema_registry::SchemaRegistry;
use kfn_functions::events::OrderCreated;
use serde_avro_fast::ser::SerializerConfig;
use serde_avro_fast::Schema;

struct Passthrough {
    registry: SchemaRegistry,
    writers: HashMap<u32, Schema>,
    output_id: u32,
    output_schema: Schema,
}

impl Transform for Passthrough {
    fn apply<'a>(&mut self, input: &'a [u8], buffer: &'a mut Vec<u8>) -> anyhow::Result<&'a [u8]> {
        anyhow::ensure!(input.len() >= 5 && input[0] == 0, "not a Confluent-framed Avro value");
        let id = u32::from_be_bytes([input[1], input[2], input[3], input[4]]);
        if !self.writers.contains_key(&id) {
            let text = self.registry.schema(id)?;
            self.writers.insert(id, Schema::from_str(&text).with_context(|| format!("schema {id}"))?);
        }
        let writer = &self.writers[&id];
        let order: OrderCreated = serde_avro_fast::from_datum_slice(&input[5..], writer)?;
        let mut out = std::mem::take(buffer);
        out.clear();
        out.push(0);
        out.extend_from_slice(&self.output_id.to_be_bytes());
        *buffer = serde_avro_fast::to_datum(&order, out, &mut SerializerConfig::new(&self.output_schema))?;
        Ok(buffer.as_slice())
    }
}

fn main() -> anyhow::Result<()> {
    let env = ServiceEnv::from_env()?;
    let url = env.registry.as_deref().context("BENCH_REGISTRY is not set")?;
    let schema_file = std::env::var("BENCH_SCHEMA").context("BENCH_SCHEMA (the .avsc file) is not set")?;
    let text = std::fs::read_to_string(&schema_file).with_context(|| format!("reading {schema_file}"))?;
    let registry = SchemaRegistry::new(url)?;
    let output_id = registry.register(&format!("{}-value", env.output), &text)?;
    let output_schema = Schema::from_str(&text)?;
    pipe(&env, Passthrough { registry, writers: HashMap::new(), output_id, output_schema })
}
