//! The registry's two kinds of failure: [`RegistryServerError`] when the server
//! cannot start or keep its log, and [`ApiErrorReply`], the Confluent error body
//! `{"error_code": N, "message": "..."}` a request is answered with.
//!
//! The codes and statuses are Confluent Schema Registry's, so clients that
//! branch on them (confluent-kafka's `SchemaRegistryError.error_code`) behave
//! against kfn as they do against Confluent.

use hyper::StatusCode;

use crate::kafka::producer::SendError;
use crate::kafka::KafkaError;

/// Why the registry server could not start, or lost its `_schemas` log.
#[derive(Debug, thiserror::Error)]
pub enum RegistryServerError {
    /// A request to the brokers failed.
    #[error("schema registry: {context}: {source}")]
    Kafka {
        /// What the registry was doing.
        context: String,
        /// The Kafka layer's error.
        #[source]
        source: KafkaError,
    },
    /// Writing to the `_schemas` topic failed.
    #[error("schema registry: writing to topic {topic}: {source}")]
    Produce {
        /// The topic.
        topic: String,
        /// The producer's error.
        #[source]
        source: SendError,
    },
    /// The topic exists with a layout the registry cannot use.
    #[error(
        "schema registry: topic {topic} has {partitions} partitions; the registry's log must have exactly 1 \
         (delete it or name another topic)"
    )]
    TopicLayout {
        /// The topic.
        topic: String,
        /// Its partition count.
        partitions: usize,
    },
    /// The log could not be read to its end in time.
    #[error("schema registry: reading topic {topic} to offset {target} took longer than {seconds} s")]
    CatchUpTimeout {
        /// The topic.
        topic: String,
        /// The offset that was to be reached.
        target: i64,
        /// The time allowed.
        seconds: u64,
    },
    /// The follower task that reads the log has stopped.
    #[error("schema registry: the reader of topic {topic} has stopped")]
    ReaderStopped {
        /// The topic.
        topic: String,
    },
    /// The TLS files or the basic-auth users cannot be used.
    #[error("schema registry: {0}")]
    Access(#[from] AccessError),
    /// The HTTP listener failed.
    #[error("schema registry: HTTP listener: {0}")]
    Io(#[from] std::io::Error),
}

/// Why the registry's TLS or basic-auth users cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A TLS file of the server cannot be read or holds nothing usable.
    #[error("TLS: {0}")]
    TlsFiles(#[source] Box<crate::kafka::security::SecurityError>),
    /// The certificate and key do not make a usable TLS server.
    #[error("TLS certificate {} with key {} is unusable: {source}", cert_file.display(), key_file.display())]
    Certificate {
        /// The certificate chain file.
        cert_file: std::path::PathBuf,
        /// The private key file.
        key_file: std::path::PathBuf,
        /// Why rustls refused them.
        #[source]
        source: Box<tokio_rustls::rustls::Error>,
    },
    /// A user of basic auth could not be added.
    #[error("basic-auth users ({origin}): {reason}")]
    Users {
        /// Where the user came from: `--registry-user NAME=ENV`, or a file and line.
        origin: String,
        /// What is wrong.
        reason: String,
    },
}

/// A Confluent error answer: HTTP status, `error_code` and `message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiErrorReply {
    /// The HTTP status.
    pub status: StatusCode,
    /// Confluent's `error_code` (e.g. 40401).
    pub code: u32,
    /// The human-readable `message`.
    pub message: String,
}

impl ApiErrorReply {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        ApiErrorReply { status, code, message: message.into() }
    }

    /// 40401: the subject does not exist (or only has soft-deleted versions).
    pub fn subject_not_found(subject: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, 40401, format!("Subject '{subject}' not found."))
    }

    /// 40402: the version does not exist under the subject.
    pub fn version_not_found(version: i32) -> Self {
        Self::new(StatusCode::NOT_FOUND, 40402, format!("Version {version} not found."))
    }

    /// 40403: no schema with this id.
    pub fn schema_id_not_found(id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, 40403, format!("Schema {id} not found"))
    }

    /// 40403: the schema is not registered under the subject (lookup).
    pub fn schema_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, 40403, "Schema not found")
    }

    /// 40404: a soft-deleted subject was soft-deleted again.
    pub fn subject_soft_deleted(subject: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40404,
            format!("Subject '{subject}' was soft deleted.Set permanent=true to delete permanently"),
        )
    }

    /// 40405: a permanent delete of a subject that was not soft-deleted first.
    pub fn subject_not_soft_deleted(subject: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40405,
            format!("Subject '{subject}' was not deleted first before being permanently deleted"),
        )
    }

    /// 40406: a soft-deleted version was soft-deleted again.
    pub fn version_soft_deleted(subject: &str, version: i32) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40406,
            format!("Subject '{subject}' Version {version} was soft deleted.Set permanent=true to delete permanently"),
        )
    }

    /// 40407: a permanent delete of a version that was not soft-deleted first.
    pub fn version_not_soft_deleted(subject: &str, version: i32) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40407,
            format!("Subject '{subject}' Version {version} was not deleted first before being permanently deleted"),
        )
    }

    /// 40408: the subject has no compatibility level of its own.
    pub fn subject_level_not_configured(subject: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40408,
            format!("Subject '{subject}' does not have subject-level compatibility configured"),
        )
    }

    /// 409: the schema breaks the subject's compatibility rule.
    pub fn incompatible(subject: &str, messages: &[String]) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            409,
            format!(
                "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]",
                messages.join(", ")
            ),
        )
    }

    /// 42201: the schema is not a valid Avro schema (or uses what kfn does not support).
    pub fn invalid_schema(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, 42201, message)
    }

    /// 42202: the version is neither a positive integer nor "latest".
    pub fn invalid_version(version: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42202,
            format!(
                "The specified version '{version}' is not a valid version id. Allowed values are between \
                 [1, 2^31-1] and the string \"latest\""
            ),
        )
    }

    /// 42203: the compatibility level is not one of the seven.
    pub fn invalid_compatibility_level() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42203,
            "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, \
             forward_transitive, and full_transitive",
        )
    }

    /// 400: the body is not JSON, or not JSON of the expected shape (as
    /// Confluent's rest-utils answers Jackson parse and mapping errors).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 400, message)
    }

    /// 401: basic auth is required and the credentials are missing or wrong;
    /// the message says which, never the password.
    pub fn unauthorized(reason: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, 401, format!("Unauthorized: {reason}"))
    }

    /// 404: no such endpoint.
    pub fn no_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, 404, "HTTP 404 Not Found")
    }

    /// 405: the endpoint exists, the method does not.
    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, 405, "HTTP 405 Method Not Allowed")
    }

    /// 413: the body is larger than the server accepts.
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, 413, format!("Request body larger than {limit} bytes"))
    }

    /// 415: the body is not JSON.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            415,
            format!(
                "HTTP 415 Unsupported Media Type: {content_type}; send application/vnd.schemaregistry.v1+json \
                 or application/json"
            ),
        )
    }

    /// 50001: the `_schemas` log could not be written or read.
    pub fn backend(message: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, 50001, format!("Error in the backend data store: {message}"))
    }

    /// 50002: the log did not catch up in time.
    pub fn timeout(message: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, 50002, format!("Operation timed out: {message}"))
    }

    /// The JSON body of the answer.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error_code": self.code, "message": self.message })
    }
}

impl From<RegistryServerError> for ApiErrorReply {
    fn from(e: RegistryServerError) -> Self {
        match e {
            RegistryServerError::CatchUpTimeout { .. } => ApiErrorReply::timeout(e),
            other => ApiErrorReply::backend(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_confluent_codes_and_statuses() {
        let cases = [
            (ApiErrorReply::subject_not_found("s"), 404, 40401),
            (ApiErrorReply::version_not_found(3), 404, 40402),
            (ApiErrorReply::schema_id_not_found("9"), 404, 40403),
            (ApiErrorReply::subject_level_not_configured("s"), 404, 40408),
            (ApiErrorReply::incompatible("s", &["x".into()]), 409, 409),
            (ApiErrorReply::invalid_schema("bad"), 422, 42201),
            (ApiErrorReply::invalid_version("zero"), 422, 42202),
            (ApiErrorReply::invalid_compatibility_level(), 422, 42203),
            (ApiErrorReply::bad_request("not json"), 400, 400),
            (ApiErrorReply::unauthorized("unknown user \"x\""), 401, 401),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.status.as_u16(), status, "{error}");
            let body = error.body();
            assert_eq!(body["error_code"], code, "{error}");
            assert_eq!(body["message"], error.message.as_str());
        }
    }
}
