//! The two Schema Registry calls a hand-written Avro service makes: register
//! its output schema, and fetch a writer's schema by the id in a record's header.
//!
//! Blocking on purpose: the baseline services are plain loops, and these
//! calls happen once per schema, not per record.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A blocking client of one registry.
pub struct SchemaRegistry {
    url: String,
    runtime: tokio::runtime::Runtime,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl SchemaRegistry {
    /// A client of the registry at `url` (`http://host:port`).
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Self { url: url.trim_end_matches('/').to_string(), runtime, client })
    }

    /// Registers `schema` under `subject`; returns its id.
    pub fn register(&self, subject: &str, schema: &str) -> anyhow::Result<u32> {
        let body = serde_json::json!({ "schema": schema }).to_string();
        let answer = self.call("POST", &format!("/subjects/{subject}/versions"), Some(body))?;
        answer["id"].as_u64().map(|id| id as u32).with_context(|| format!("no id in the registry's answer {answer}"))
    }

    /// The schema text registered with `id`.
    pub fn schema(&self, id: u32) -> anyhow::Result<String> {
        let answer = self.call("GET", &format!("/schemas/ids/{id}"), None)?;
        answer["schema"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("no schema in the registry's answer {answer}"))
    }

    fn call(&self, method: &str, path: &str, body: Option<String>) -> anyhow::Result<serde_json::Value> {
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url))
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        self.runtime.block_on(async {
            let response = self.client.request(request).await.with_context(|| format!("{method} {path}"))?;
            let status = response.status();
            let bytes = response.into_body().collect().await?.to_bytes();
            anyhow::ensure!(status.is_success(), "{method} {path}: {status} {}", String::from_utf8_lossy(&bytes));
            Ok(serde_json::from_slice(&bytes)?)
        })
    }
}
