//! What an HTTP-triggered handler sees and returns.

use std::collections::HashMap;

use bytes::Bytes;

use crate::Emit;

/// An HTTP request routed to a handler.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    /// The method, upper case.
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// Values of `{name}` segments of the route.
    pub params: HashMap<String, String>,
    /// Headers, names in lower case.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Bytes,
}

impl HttpRequest {
    /// The value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// A handler's answer: a status, a JSON body, and events to produce first.
///
/// The runtime produces `emit` and waits for the broker's acknowledgement
/// before it answers with `status`; when producing fails it answers 503.
#[derive(Debug)]
pub struct HttpReply {
    /// The HTTP status code.
    pub status: u16,
    /// The JSON body.
    pub body: String,
    /// Events to produce before answering.
    pub emit: Emit,
}

impl HttpReply {
    /// A reply with a JSON body and nothing to produce.
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Self { status, body: body.into(), emit: Emit::none() }
    }

    /// An error reply `{"error": message, "field": field}`.
    pub fn error(status: u16, field: Option<&str>, message: &str) -> Self {
        let body = match field {
            Some(field) => serde_json::json!({ "error": message, "field": field }),
            None => serde_json::json!({ "error": message }),
        };
        Self::json(status, body.to_string())
    }
}
