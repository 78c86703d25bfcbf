//! Spans exported over OTLP/HTTP, when configured: one per invocation of a
//! topic function and one per request of the HTTP trigger.
//!
//! Off by default. On when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as it
//! is) or `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` appended) is set, as
//! OpenTelemetry specifies; the service name is `OTEL_SERVICE_NAME`, else
//! `kfn`. Needs the `otlp` cargo feature (`cargo build --features otlp`; the production image builds with it).
//!
//! kfn's spans are finished records, not live objects: a span's ids are the
//! ones [`crate::trace`] writes into record headers, so the span of an
//! invocation is the parent of every span its outputs cause downstream, and
//! the receiver shows POST /orders → validation → payment → … as one tree.
//! A span is made only where the input carries a sampled `traceparent`.
//!
//! ```
//! use kfn::otel::{Kind, Span};
//! use kfn::trace::TraceParent;
//! // Without an exporter, recording costs a branch: nothing is built.
//! assert!(!kfn::otel::enabled());
//! let hop = TraceParent::root();
//! kfn::otel::record(|| Span::new("validation", Kind::Consumer, hop, None));
//! ```

use std::time::SystemTime;

use crate::trace::TraceParent;

/// What kind of work a span stands for (OpenTelemetry's span kinds kfn uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request the HTTP trigger served.
    Server,
    /// A record a function processed.
    Consumer,
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text.
    Str(String),
    /// A number.
    Int(i64),
}

/// One finished span.
#[derive(Debug, Clone)]
pub struct Span {
    /// The span's name: the function, or `METHOD /route` for a request.
    pub name: String,
    /// Its kind.
    pub kind: Kind,
    /// Its trace id, its own span id (`parent_id`, as the hop's `traceparent`
    /// names it for the next hop) and its flags.
    pub context: TraceParent,
    /// The span it continues (the incoming `traceparent`'s parent id); None for a root.
    pub parent: Option<u64>,
    /// When it started.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
    /// Its attributes (`kfn.function`, `messaging.destination.name`, ...).
    pub attributes: Vec<(&'static str, Value)>,
    /// The error, when it failed (the span's status is then Error).
    pub error: Option<String>,
}

impl Span {
    /// A span `name` of `context`, continuing `parent`, that starts and ends now.
    pub fn new(name: impl Into<String>, kind: Kind, context: TraceParent, parent: Option<u64>) -> Self {
        let now = SystemTime::now();
        Self { name: name.into(), kind, context, parent, start: now, end: now, attributes: Vec::new(), error: None }
    }

    /// The same, with an attribute.
    pub fn attr(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        self.attributes.push((key, value.into()));
        self
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::Str(value.to_string())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::Str(value)
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Int(value)
    }
}

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    /// The OTLP exporter refused its configuration (a malformed endpoint, for one).
    #[cfg(feature = "otlp")]
    #[error("the OTLP span exporter (OTEL_EXPORTER_OTLP_ENDPOINT={endpoint:?}) cannot start")]
    Exporter {
        /// The configured endpoint.
        endpoint: String,
        /// The exporter's error.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// The environment variables that turn export on, most specific first.
pub const ENDPOINT_VARS: [&str; 2] = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"];

/// The configured endpoint, if any (an empty value counts as unset).
pub fn configured_endpoint() -> Option<String> {
    ENDPOINT_VARS.iter().find_map(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty()))
}

/// Whether spans are exported: checked before a span is built, so the
/// per-record path parses no header when export is off.
pub fn enabled() -> bool {
    #[cfg(feature = "otlp")]
    {
        export::PROCESSOR.get().is_some()
    }
    #[cfg(not(feature = "otlp"))]
    {
        false
    }
}

/// Exports the span `make` builds, if export is on (else `make` is not called).
pub fn record(make: impl FnOnce() -> Span) {
    #[cfg(feature = "otlp")]
    if let Some(processor) = export::PROCESSOR.get() {
        export::end(processor, make());
    }
    #[cfg(not(feature = "otlp"))]
    let _ = make;
}

/// Starts the exporter when an endpoint is configured; returns the endpoint.
///
/// Call inside the tokio runtime (the batch processor is a task on it), once;
/// a second call keeps the first exporter. Call [`shutdown`] before exiting.
pub fn init() -> Result<Option<String>, OtelError> {
    let Some(endpoint) = configured_endpoint() else { return Ok(None) };
    #[cfg(feature = "otlp")]
    {
        export::init(&endpoint)?;
        Ok(Some(endpoint))
    }
    #[cfg(not(feature = "otlp"))]
    {
        tracing::warn!(%endpoint, "OTEL_EXPORTER_OTLP_ENDPOINT is set, but this binary was built without the `otlp` feature: no spans are exported");
        Ok(None)
    }
}

/// Exports the spans still queued and stops the exporter (at most `limit`).
pub async fn shutdown(limit: std::time::Duration) {
    #[cfg(feature = "otlp")]
    export::shutdown(limit).await;
    #[cfg(not(feature = "otlp"))]
    let _ = limit;
}

#[cfg(feature = "otlp")]
mod export {
    //! The OpenTelemetry SDK side: a batch span processor on the tokio runtime
    //! feeding the OTLP/HTTP (protobuf) exporter over hyper.

    use std::sync::OnceLock;
    use std::time::Duration;

    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
    use opentelemetry::{InstrumentationScope, KeyValue};
    use opentelemetry_otlp::{SpanExporter, WithExportConfig};
    use opentelemetry_sdk::runtime::Tokio;
    use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
    use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks, SpanProcessor};
    use opentelemetry_sdk::Resource;

    use super::{Kind, OtelError, Span, Value};

    /// The one processor of the process: spans are handed to it as they end.
    pub(super) static PROCESSOR: OnceLock<BatchSpanProcessor<Tokio>> = OnceLock::new();

    pub(super) fn init(endpoint: &str) -> Result<(), OtelError> {
        // No endpoint given here: the exporter reads the OTEL_EXPORTER_OTLP_* variables itself
        // (a signal-specific endpoint as it is, the generic one with /v1/traces appended).
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()
            .map_err(|source| OtelError::Exporter { endpoint: endpoint.to_string(), source })?;
        let service = std::env::var("OTEL_SERVICE_NAME").ok().filter(|s| !s.is_empty());
        let resource = Resource::builder().with_service_name(service.unwrap_or_else(|| "kfn".into())).build();
        let mut processor = BatchSpanProcessor::builder(exporter, Tokio).build();
        processor.set_resource(&resource);
        if PROCESSOR.set(processor).is_ok() {
            tracing::info!(%endpoint, "exporting spans over OTLP");
        }
        Ok(())
    }

    pub(super) fn end(processor: &BatchSpanProcessor<Tokio>, span: Span) {
        let flags = if span.context.flags & 1 == 1 { TraceFlags::SAMPLED } else { TraceFlags::default() };
        let context = SpanContext::new(
            TraceId::from(span.context.trace_id),
            SpanId::from(span.context.parent_id),
            flags,
            false,
            TraceState::default(),
        );
        let attributes = span
            .attributes
            .into_iter()
            .map(|(key, value)| match value {
                Value::Str(s) => KeyValue::new(key, s),
                Value::Int(i) => KeyValue::new(key, i),
            })
            .collect();
        let status = match span.error {
            Some(description) => Status::Error { description: description.into() },
            None => Status::Ok,
        };
        processor.on_end(SpanData {
            span_context: context,
            parent_span_id: span.parent.map_or(SpanId::INVALID, SpanId::from),
            // Every parent is in another process (or another record's invocation).
            parent_span_is_remote: span.parent.is_some(),
            span_kind: match span.kind {
                Kind::Server => SpanKind::Server,
                Kind::Consumer => SpanKind::Consumer,
            },
            name: span.name.into(),
            start_time: span.start,
            end_time: span.end,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: InstrumentationScope::builder("kfn").build(),
        });
    }

    pub(super) async fn shutdown(limit: Duration) {
        let Some(processor) = PROCESSOR.get() else { return };
        // The SDK blocks the calling thread until its task on this runtime has exported: not on a worker.
        let flushed = tokio::task::spawn_blocking(move || processor.shutdown_with_timeout(limit));
        match tokio::time::timeout(limit, flushed).await {
            Ok(Ok(Ok(()))) => tracing::debug!("spans flushed"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the last spans could not be exported"),
            Ok(Err(e)) => tracing::warn!(error = %e, "the span exporter's shutdown failed"),
            Err(_) => tracing::warn!(?limit, "the span exporter did not flush in time"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_built_when_export_is_off() {
        assert!(!enabled());
        record(|| unreachable!("a span is built only when export is on"));
    }
}
