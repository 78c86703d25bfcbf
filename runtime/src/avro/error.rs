//! Errors of the Avro path: framing, the registry client, and the codec.
//!
//! Three enums for three boundaries: [`FramingError`] says why bytes are not a
//! Confluent-framed value, [`RegistryError`] why a registry call failed (with
//! Confluent's `error_code` and `message` when the registry answered), and
//! [`CodecError`] why one record could not be decoded or encoded — the error
//! the runtime dead-letters a record with, or retries when it is transient.

use std::time::Duration;

/// A record value is not in the Confluent wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The value has no bytes at all (a null or empty value).
    #[error("the record value is empty; expected magic byte 0x00, a 4-byte schema id and an Avro datum")]
    Empty,
    /// The first byte is not the magic byte 0: not written by a registry-aware serializer.
    #[error(
        "the record value starts with byte {byte:#04x}, not the Confluent magic byte 0x00: \
         it was not written by a schema-registry serializer"
    )]
    WrongMagicByte {
        /// The byte found where the magic byte should be.
        byte: u8,
    },
    /// The value starts with the magic byte but ends before the 4-byte schema id does.
    #[error("the record value is {len} bytes long, shorter than the 5-byte Confluent header")]
    TooShort {
        /// The value's length in bytes.
        len: usize,
    },
}

/// What a Confluent `error_code` means; codes are the same on Confluent,
/// Karapace, Apicurio (ccompat), Redpanda and kfn's own registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// 40401: the subject does not exist.
    SubjectNotFound,
    /// 40402: the subject has no such version.
    VersionNotFound,
    /// 40403: no schema has this id (or the schema is not under this subject).
    SchemaNotFound,
    /// 40408: the subject has no compatibility level of its own.
    SubjectCompatibilityNotConfigured,
    /// 409: the schema is not compatible with the subject's earlier versions.
    Incompatible,
    /// 42201: the schema does not parse.
    InvalidSchema,
    /// 42202: the version is not a positive number or `latest`.
    InvalidVersion,
    /// HTTP 401 or 403: the credentials are missing, wrong or not allowed this call.
    Unauthorized,
    /// HTTP 5xx (Confluent 500xx codes): the registry failed; worth a retry.
    ServerError,
    /// Any other code.
    Other,
}

/// The registry answered with an error status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// Confluent's `error_code`, or the HTTP status when the body had none.
    pub error_code: i32,
    /// Confluent's `message`, or the start of the body when it was not JSON.
    pub message: String,
}

impl ApiError {
    /// What the error code means.
    pub fn kind(&self) -> ApiErrorKind {
        match (self.error_code, self.status) {
            (40401, _) => ApiErrorKind::SubjectNotFound,
            (40402, _) => ApiErrorKind::VersionNotFound,
            (40403, _) => ApiErrorKind::SchemaNotFound,
            (40408, _) => ApiErrorKind::SubjectCompatibilityNotConfigured,
            (409, _) | (_, 409) => ApiErrorKind::Incompatible,
            (42201, _) => ApiErrorKind::InvalidSchema,
            (42202, _) => ApiErrorKind::InvalidVersion,
            (_, 401 | 403) => ApiErrorKind::Unauthorized,
            (_, 500..=599) => ApiErrorKind::ServerError,
            _ => ApiErrorKind::Other,
        }
    }
}

/// A call to the schema registry failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The configured registry URL cannot be used.
    #[error("schema registry URL {url:?} is not usable: {reason}")]
    InvalidUrl {
        /// The URL as configured.
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// No HTTP answer: connection refused or reset, DNS failure.
    #[error("cannot reach the schema registry for {method} {url}: {source}")]
    Unreachable {
        /// The request method.
        method: &'static str,
        /// The request URL.
        url: String,
        /// What the HTTP client said.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The CA file of `runtime.schema_registry_tls` could not be used.
    #[error("cannot set up TLS for the schema registry at {url}: {source}")]
    TlsSetup {
        /// The registry URL.
        url: String,
        /// Which file is wrong and how.
        #[source]
        source: Box<crate::kafka::security::SecurityError>,
    },
    /// The TLS handshake failed: most often a certificate that does not chain
    /// to the trusted CA, or that was not issued for the URL's host.
    #[error(
        "TLS handshake with the schema registry at {url} failed: {source} (the certificate of host {host:?} \
         was checked against {trust}; set runtime.schema_registry_tls.ca to the CA that signed it)"
    )]
    Tls {
        /// The request URL.
        url: String,
        /// The host the certificate must name.
        host: String,
        /// The trust store: `the CA in <file>`, or Mozilla's roots.
        trust: String,
        /// What rustls said.
        #[source]
        source: Box<tokio_rustls::rustls::Error>,
    },
    /// HTTP 401: the registry refused the credentials (or wanted some).
    #[error("{}", unauthorized(method, url, username.as_deref(), error))]
    Unauthorized {
        /// The request method.
        method: &'static str,
        /// The request URL.
        url: String,
        /// The user the client authenticated as; `None` when it sent no credentials.
        username: Option<String>,
        /// Status, error code and the registry's reason.
        error: ApiError,
    },
    /// No answer within the request timeout.
    #[error("the schema registry did not answer {method} {url} within {timeout:?}")]
    Timeout {
        /// The request method.
        method: &'static str,
        /// The request URL.
        url: String,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The answer's body could not be read.
    #[error("reading the schema registry's answer to {method} {url} failed: {message}")]
    Body {
        /// The request method.
        method: &'static str,
        /// The request URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The registry answered with an error status.
    #[error(
        "the schema registry answered {method} {url} with HTTP {status}, error code {code}: {message}",
        status = .error.status, code = .error.error_code, message = .error.message
    )]
    Api {
        /// The request method.
        method: &'static str,
        /// The request URL.
        url: String,
        /// Status, Confluent error code and message.
        error: ApiError,
    },
    /// A success answer that is not the JSON the Confluent API promises.
    #[error("the schema registry's answer to {method} {url} is not the expected JSON: {source}")]
    Json {
        /// The request method.
        method: &'static str,
        /// The request URL.
        url: String,
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },
}

impl RegistryError {
    /// Whether trying again later can help: no answer, a 5xx answer, or a
    /// success answer that is not the API's JSON (a proxy's error page, a
    /// registry half started: the record is not at fault, and dead-lettering
    /// every record while the registry is broken would empty the stream into
    /// the dead-letter topic). A 4xx answer will be the same next time, so it
    /// is never retried.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Timeout { .. } | Self::Body { .. } | Self::Json { .. } => true,
            Self::Api { error, .. } => error.status >= 500,
            Self::InvalidUrl { .. } | Self::TlsSetup { .. } | Self::Tls { .. } | Self::Unauthorized { .. } => false,
        }
    }

    /// The registry's error, when it answered with an error status.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Self::Api { error, .. } | Self::Unauthorized { error, .. } => Some(error),
            _ => None,
        }
    }

    /// What the registry's error code means, when it answered with one.
    pub fn kind(&self) -> Option<ApiErrorKind> {
        self.api().map(ApiError::kind)
    }
}

fn unauthorized(method: &str, url: &str, username: Option<&str>, error: &ApiError) -> String {
    match username {
        Some(user) => format!(
            "the schema registry refused the password of user {user:?} for {method} {url} (HTTP {}: {})",
            error.status, error.message
        ),
        None => format!(
            "the schema registry wants credentials for {method} {url} and none are configured \
             (set runtime.schema_registry_auth; HTTP {}: {})",
            error.status, error.message
        ),
    }
}

/// One record could not be decoded or encoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The value is not Confluent-framed.
    #[error(transparent)]
    Framing(#[from] FramingError),
    /// The registry has no schema with the id in the record's header (40403).
    #[error("schema id {id} of the record is not in the schema registry: {source}")]
    UnknownSchema {
        /// The id from the record's header.
        id: u32,
        /// The registry's answer.
        #[source]
        source: Box<RegistryError>,
    },
    /// The schema could not be fetched for another reason (registry down, auth).
    #[error("cannot fetch schema id {id} from the schema registry: {source}")]
    Registry {
        /// The id from the record's header.
        id: u32,
        /// Why the fetch failed.
        #[source]
        source: Box<RegistryError>,
    },
    /// The schema with this id is Protobuf or JSON Schema, not Avro.
    #[error("schema id {id} is a {schema_type} schema; kfn reads Avro only")]
    NotAvro {
        /// The schema id.
        id: u32,
        /// The registry's `schemaType`.
        schema_type: String,
    },
    /// The schema text does not parse as Avro.
    #[error("{what} is not a usable Avro schema: {message}")]
    InvalidSchema {
        /// Which schema: `schema id 7`, `schemas/order_created.avsc`...
        what: String,
        /// What the parser said.
        message: String,
    },
    /// The datum does not match the writer's schema, or not the event type.
    #[error("the record does not decode with schema id {id}: {message}")]
    Decode {
        /// The writer's schema id.
        id: u32,
        /// What the decoder said.
        message: String,
    },
    /// Registering (or looking up) a topic's schema at startup failed.
    #[error("cannot register the schema of topic {topic:?} under subject {subject:?}: {source}")]
    Register {
        /// The topic.
        topic: String,
        /// The subject (`<topic>-value`).
        subject: String,
        /// The registry's answer.
        #[source]
        source: Box<RegistryError>,
    },
    /// The schema of a JSON topic kfn writes is not a flat row.
    #[error("output topic {topic:?} (format = \"json\"): {message}")]
    JsonRow {
        /// The output topic.
        topic: String,
        /// Which field is not a column.
        message: String,
    },
    /// A handler emitted an event of another type than the output topic's schema.
    #[error("output topic {topic:?} takes {expected} events, but the handler emitted {actual}")]
    WrongEvent {
        /// The output topic.
        topic: String,
        /// The full name of the topic schema's record.
        expected: String,
        /// The full name of the emitted event.
        actual: &'static str,
    },
    /// The event does not fit the output topic's schema.
    #[error("cannot encode for output topic {topic:?}: {source}")]
    Encode {
        /// The output topic.
        topic: String,
        /// What the encoder said.
        #[source]
        source: kfn_sdk::EncodeError,
    },
}

impl CodecError {
    /// Whether the same record may succeed later (the registry was down):
    /// retry it instead of dead-lettering it.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Registry { source, .. } | Self::Register { source, .. } => source.is_transient(),
            _ => false,
        }
    }

    /// A short stable name of the cause, for the dead-letter `error kind` header and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Framing(_) => "framing",
            Self::UnknownSchema { .. } => "unknown_schema",
            Self::Registry { .. } => "registry",
            Self::NotAvro { .. } => "not_avro",
            Self::InvalidSchema { .. } => "invalid_schema",
            Self::Decode { .. } => "decode",
            Self::Register { .. } => "register",
            Self::WrongEvent { .. } => "wrong_event",
            Self::Encode { .. } => "encode",
            Self::JsonRow { .. } => "json_row",
        }
    }
}
