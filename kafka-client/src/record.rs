//! Record parts shared by the fetch and produce paths.

use bytes::Bytes;

/// One record header, as Kafka stores it: a name and an optional value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header's name.
    pub name: String,
    /// The header's value (Kafka allows null).
    pub value: Option<Bytes>,
}
