//! The registry side of the codec: writer schemas fetched by id and parsed
//! once ([`SchemaCache`]), and output schemas registered per topic
//! ([`register_topic_schema`]).
//!
//! After the first record with an id, [`SchemaCache::resolve`] takes one read
//! lock and clones one `Arc`: no network, no parse, no allocation.
//!
//! ```no_run
//! # async fn demo(value: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! use kfn::avro::{register_topic_schema, OutputEncoder, RegistryClient, SchemaCache};
//! let client = RegistryClient::new("http://127.0.0.1:8081", None)?;
//! let schema_text = std::fs::read_to_string("schemas/order_validated.avsc")?;
//! let (id, schema) = register_topic_schema(&client, "orders.validated", &schema_text).await?;
//! let encoder = OutputEncoder::new("orders.validated", id, schema);
//! let cache = SchemaCache::new(client);
//! let writer = cache.resolve(value).await?; // then: handler(ctx, writer.datum, &writer.schema)
//! # let _ = (encoder, writer); Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use serde_avro_fast::Schema;

use super::api::{RegisteredSchema, Version};
use super::client::{value_subject, RegistryClient};
use super::codec::WriterDatum;
use super::error::{ApiErrorKind, CodecError, RegistryError};
use super::framing;

/// How deep schema references may nest before the chain is taken for a cycle.
const MAX_REFERENCE_DEPTH: usize = 32;

/// Parsed writer schemas by id, filled from the registry on first sight.
pub struct SchemaCache {
    client: RegistryClient,
    parsed: RwLock<HashMap<u32, Arc<Schema>>>,
    /// Counts lookups the registry failed transiently, when set.
    errors: Option<prometheus_client::metrics::counter::Counter>,
}

impl SchemaCache {
    /// An empty cache that fetches through `client`.
    pub fn new(client: RegistryClient) -> Self {
        Self { client, parsed: RwLock::default(), errors: None }
    }

    /// The same cache, counting in `errors` each lookup the registry failed
    /// transiently (unreachable, timed out, 5xx): what an alert on a registry
    /// outage watches.
    pub fn counting_errors(self, errors: prometheus_client::metrics::counter::Counter) -> Self {
        Self { errors: Some(errors), ..self }
    }

    /// The registry client behind the cache.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// The parsed schema with this id, if it was seen before; never goes to the network.
    pub fn get(&self, id: u32) -> Option<Arc<Schema>> {
        self.parsed.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&id).cloned()
    }

    /// Adds a schema the runtime already holds (a topic schema it registered at startup).
    pub fn insert(&self, id: u32, schema: Arc<Schema>) {
        self.parsed.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, schema);
    }

    /// The parsed schema with this id, fetched and parsed on first sight.
    pub async fn schema(&self, id: u32) -> Result<Arc<Schema>, CodecError> {
        if let Some(schema) = self.get(id) {
            return Ok(schema);
        }
        let registered = self.client.schema_by_id(id).await.map_err(|source| fetch_error(id, source))?;
        let schema = Arc::new(self.parse(&registered).await?);
        // Two tasks may parse the same id at once; both results are equal, keep the first.
        let mut parsed = self.parsed.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(Arc::clone(parsed.entry(id).or_insert(schema)))
    }

    /// Splits a Confluent-framed value and finds its writer's schema.
    pub async fn resolve<'a>(&self, value: &'a [u8]) -> Result<WriterDatum<'a>, CodecError> {
        let (schema_id, datum) = framing::split(value)?;
        let schema = self.schema(schema_id).await.inspect_err(|e| {
            if let (Some(errors), true) = (&self.errors, e.is_transient()) {
                errors.inc();
            }
        })?;
        Ok(WriterDatum { schema_id, schema, datum })
    }

    /// Like [`resolve`](Self::resolve) for a schema already cached: `Ok(None)`
    /// means the caller must take the async path once.
    pub fn try_resolve<'a>(&self, value: &'a [u8]) -> Result<Option<WriterDatum<'a>>, CodecError> {
        let (schema_id, datum) = framing::split(value)?;
        Ok(self.get(schema_id).map(|schema| WriterDatum { schema_id, schema, datum }))
    }

    /// Parses a registered schema, fetching the schemas it references first.
    async fn parse(&self, registered: &RegisteredSchema) -> Result<Schema, CodecError> {
        let id = registered.id;
        if !registered.schema_type.eq_ignore_ascii_case("AVRO") {
            return Err(CodecError::NotAvro { id, schema_type: registered.schema_type.clone() });
        }
        let what = || format!("schema id {id}");
        if registered.references.is_empty() {
            return Schema::from_str(&registered.schema)
                .map_err(|e| CodecError::InvalidSchema { what: what(), message: e.to_string() });
        }
        let deps = self.referenced_schemas(registered).await?;
        Schema::from_schemata(&registered.schema, &deps)
            .map_err(|e| CodecError::InvalidSchema { what: what(), message: e.to_string() })
    }

    /// The texts of every schema `registered` references, transitively, each once.
    async fn referenced_schemas(&self, registered: &RegisteredSchema) -> Result<Vec<String>, CodecError> {
        let id = registered.id;
        let mut pending: Vec<(_, usize)> = registered.references.iter().map(|r| (r.clone(), 1)).collect();
        let mut seen = HashSet::new();
        let mut texts = Vec::new();
        while let Some((reference, depth)) = pending.pop() {
            if depth > MAX_REFERENCE_DEPTH {
                let message = format!("schema references nest deeper than {MAX_REFERENCE_DEPTH}");
                return Err(CodecError::InvalidSchema { what: format!("schema id {id}"), message });
            }
            if !seen.insert((reference.subject.clone(), reference.version)) {
                continue;
            }
            let found = self
                .client
                .subject_version(&reference.subject, Version::Number(reference.version))
                .await
                .map_err(|source| fetch_error(id, source))?;
            pending.extend(found.references.into_iter().map(|r| (r, depth + 1)));
            texts.push(found.schema);
        }
        Ok(texts)
    }
}

impl std::fmt::Debug for SchemaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<u32> =
            self.parsed.read().unwrap_or_else(std::sync::PoisonError::into_inner).keys().copied().collect();
        f.debug_struct("SchemaCache").field("client", &self.client).field("ids", &ids).finish()
    }
}

fn fetch_error(id: u32, source: RegistryError) -> CodecError {
    match source.kind() {
        Some(ApiErrorKind::SchemaNotFound) => CodecError::UnknownSchema { id, source: Box::new(source) },
        _ => CodecError::Registry { id, source: Box::new(source) },
    }
}

/// Registers `schema_text` under `<topic>-value` and returns its id with the
/// parsed schema, for an [`OutputEncoder`](super::OutputEncoder) or to pre-fill a [`SchemaCache`].
///
/// The schema is parsed before the registry is called, so a broken `.avsc`
/// fails fast. When the registry refuses registration (401/403: a production
/// registry where only CI registers schemas), the schema is looked up instead
/// and must already be registered.
pub async fn register_topic_schema(
    client: &RegistryClient,
    topic: &str,
    schema_text: &str,
) -> Result<(u32, Arc<Schema>), CodecError> {
    let schema = Schema::from_str(schema_text).map_err(|e| CodecError::InvalidSchema {
        what: format!("the schema of topic {topic:?}"),
        message: e.to_string(),
    })?;
    let subject = value_subject(topic);
    let registered = match client.register(&subject, schema_text).await {
        Err(e) if e.kind() == Some(ApiErrorKind::Unauthorized) => {
            tracing::info!(topic, subject, "not allowed to register; looking the schema up");
            client.lookup(&subject, schema_text).await.map(|found| found.id)
        }
        other => other,
    };
    let id = registered.map_err(|source| CodecError::Register {
        topic: topic.to_owned(),
        subject,
        source: Box::new(source),
    })?;
    Ok((id, Arc::new(schema)))
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    /// Schemas kfn's registry refuses to store (it takes only self-contained
    /// Avro), which other registries may hold and serve.
    #[tokio::test]
    async fn non_avro_and_unparsable_schemas_are_typed_errors() {
        let cache = SchemaCache::new(RegistryClient::new("http://127.0.0.1:9", None).unwrap());
        let registered = |id, schema: &str, schema_type: &str| RegisteredSchema {
            id,
            schema: schema.to_owned(),
            schema_type: schema_type.to_owned(),
            references: Vec::new(),
        };
        let err = cache.parse(&registered(1, "syntax = \"proto3\";", "PROTOBUF")).await.unwrap_err();
        assert!(matches!(&err, CodecError::NotAvro { id: 1, schema_type } if schema_type == "PROTOBUF"), "{err}");
        let broken = r#"{"type":"record","name":"Broken","fields":[{"name":"x","type":"nope"}]}"#;
        let err = cache.parse(&registered(2, broken, "AVRO")).await.unwrap_err();
        assert!(matches!(&err, CodecError::InvalidSchema { what, .. } if what == "schema id 2"), "{err}");
    }

    // Paused time: the client's retries of the unreachable registry take no wall-clock time.
    #[tokio::test(start_paused = true)]
    async fn lookups_the_registry_fails_are_counted_and_bad_records_are_not() {
        let errors = Counter::default();
        // Nothing listens on port 9 (discard): the registry cannot be reached.
        let client = RegistryClient::new("http://127.0.0.1:9", None).unwrap();
        let cache = SchemaCache::new(client).counting_errors(errors.clone());
        let framed = [0u8, 0, 0, 0, 7, 2, b'a'];
        assert!(cache.resolve(&framed).await.is_err());
        assert_eq!(errors.get(), 1);
        assert!(cache.resolve(b"not framed").await.is_err());
        assert_eq!(errors.get(), 1, "a record without Confluent framing is not the registry's failure");
    }
}
