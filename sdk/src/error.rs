//! How a handler says it failed.

/// Whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FnErrorKind {
    /// A transient failure (a timeout, a service briefly down): retry by policy.
    Retryable,
    /// The record itself is wrong: dead-letter it at once.
    Permanent,
}

impl FnErrorKind {
    /// The lowercase name used in headers and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FnErrorKind::Retryable => "retryable",
            FnErrorKind::Permanent => "permanent",
        }
    }
}

/// A handler's failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct FnError {
    /// Retryable or permanent.
    pub kind: FnErrorKind,
    /// What went wrong, for the dead-letter headers and logs.
    pub message: String,
}

impl FnError {
    /// A failure that a retry may cure.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self { kind: FnErrorKind::Retryable, message: message.into() }
    }

    /// A failure no retry can cure.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self { kind: FnErrorKind::Permanent, message: message.into() }
    }
}
