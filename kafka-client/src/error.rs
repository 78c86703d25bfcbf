//! Errors of the Kafka layer.

use kafka_protocol::ResponseError;

/// What went wrong talking to a broker.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// No TCP (or TLS) connection could be opened.
    #[error("cannot connect to broker {broker}: {source}")]
    Connect {
        /// host:port.
        broker: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The connection failed or was closed while a request was under way.
    #[error("connection to broker {broker} lost: {reason}")]
    Disconnected {
        /// host:port.
        broker: String,
        /// Why.
        reason: String,
    },
    /// The broker did not answer in time.
    #[error("broker {broker} did not answer {api} within {timeout_ms} ms")]
    Timeout {
        /// host:port.
        broker: String,
        /// The request's API name.
        api: &'static str,
        /// The time allowed.
        timeout_ms: u128,
    },
    /// The broker does not implement an API kfn needs.
    #[error("broker {broker} does not support the {api} API, which kfn needs for this operation")]
    UnsupportedApi {
        /// host:port.
        broker: String,
        /// The API's name.
        api: &'static str,
    },
    /// No version of an API is understood by both sides.
    #[error(
        "broker {broker} supports {api} versions {broker_min}..={broker_max}, kfn supports {ours_min}..={ours_max}"
    )]
    NoCommonVersion {
        /// host:port.
        broker: String,
        /// The API's name.
        api: &'static str,
        /// Lowest version the broker accepts.
        broker_min: i16,
        /// Highest version the broker accepts.
        broker_max: i16,
        /// Lowest version kfn can speak.
        ours_min: i16,
        /// Highest version kfn can speak.
        ours_max: i16,
    },
    /// A request or response could not be encoded or decoded.
    #[error("{api}: malformed message: {message}")]
    Codec {
        /// The API's name.
        api: &'static str,
        /// What the codec said.
        message: String,
    },
    /// The broker answered with an error code.
    #[error("{api} failed for {context}: {}", describe(*.code))]
    Broker {
        /// The API's name.
        api: &'static str,
        /// The Kafka error code.
        code: i16,
        /// What the request was about (topic, group, ...).
        context: String,
    },
    /// Authentication failed; retrying with the same credentials cannot help.
    #[error(transparent)]
    Security(#[from] super::security::SecurityError),
    /// Authentication was rejected by the broker.
    #[error("SASL {mechanism} authentication as user {username:?} failed: {reason}")]
    AuthenticationFailed {
        /// The mechanism.
        mechanism: String,
        /// The user.
        username: String,
        /// The broker's message.
        reason: String,
    },
}

/// "NOT_COORDINATOR (16)" for a known code.
pub fn describe(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?} ({code})"),
        None => format!("error code {code}"),
    }
}

impl KafkaError {
    /// A copy of this error for another caller answered by the same request
    /// (one fetch for many readers, one offset commit for many workers), as
    /// retriable as the original; `api` names the request where the error
    /// carries no name of its own.
    pub fn copy_for(&self, api: &'static str) -> KafkaError {
        match self {
            KafkaError::Broker { api, code, context } => {
                KafkaError::Broker { api, code: *code, context: context.clone() }
            }
            KafkaError::Timeout { broker, api, timeout_ms } => {
                KafkaError::Timeout { broker: broker.clone(), api, timeout_ms: *timeout_ms }
            }
            KafkaError::Connect { broker, .. } | KafkaError::Disconnected { broker, .. } => {
                KafkaError::Disconnected { broker: broker.clone(), reason: self.to_string() }
            }
            other => KafkaError::Codec { api, message: other.to_string() },
        }
    }

    /// The Kafka error, when the broker answered with one.
    pub fn response_error(&self) -> Option<ResponseError> {
        match self {
            KafkaError::Broker { code, .. } => ResponseError::try_from_code(*code),
            _ => None,
        }
    }

    /// Whether trying again (after reconnecting or refreshing metadata) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            KafkaError::Connect { .. } | KafkaError::Disconnected { .. } | KafkaError::Timeout { .. } => true,
            KafkaError::Broker { code, .. } => ResponseError::try_from_code(*code).is_some_and(|e| e.is_retriable()),
            _ => false,
        }
    }

    /// Whether the broker refused the principal (TOPIC, GROUP, CLUSTER or
    /// TRANSACTIONAL_ID_AUTHORIZATION_FAILED): only a new ACL helps, so
    /// retrying is a storm, not a cure.
    pub fn is_authorization_failure(&self) -> bool {
        matches!(
            self.response_error(),
            Some(
                ResponseError::TopicAuthorizationFailed
                    | ResponseError::GroupAuthorizationFailed
                    | ResponseError::ClusterAuthorizationFailed
                    | ResponseError::TransactionalIdAuthorizationFailed
            )
        )
    }

    /// Builds a [`KafkaError::Broker`] when `code` is an error.
    pub fn check(api: &'static str, code: i16, context: impl FnOnce() -> String) -> Result<(), KafkaError> {
        if code == 0 {
            Ok(())
        } else {
            Err(KafkaError::Broker { api, code, context: context() })
        }
    }
}
