//! W3C trace context across every hop: a `traceparent` record header.
//!
//! The HTTP trigger continues the request's `traceparent` (or starts a trace)
//! on every event it produces; each function carries its input record's trace
//! onto every output, as a child (same trace id, a new parent id), so one
//! order's trace id is found on every topic it crossed. Retry copies and dead
//! letters keep the input's headers, the trace with them.
//!
//! ```
//! use kfn::trace::TraceParent;
//! let incoming = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
//! let next = incoming.child();
//! assert_eq!(next.trace_id, incoming.trace_id);
//! assert_ne!(next.parent_id, incoming.parent_id);
//! assert!(next.to_header().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
//! ```

/// The header's name, in HTTP and in Kafka records.
pub const TRACEPARENT: &str = "traceparent";

/// A `traceparent` value (version 00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace: the same on every hop.
    pub trace_id: u128,
    /// The span that produced this hop.
    pub parent_id: u64,
    /// Trace flags (01: sampled).
    pub flags: u8,
}

impl TraceParent {
    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; `None` for anything else, or all-zero ids (invalid by the spec).
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('-');
        let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex =
            |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if version != "00" || parts.next().is_some() || !hex(trace, 32) || !hex(parent, 16) || !hex(flags, 2) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let parent_id = u64::from_str_radix(parent, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != 0 && parent_id != 0).then_some(Self { trace_id, parent_id, flags })
    }

    /// A new trace (sampled).
    pub fn root() -> Self {
        Self { trace_id: nonzero(rand::random()), parent_id: nonzero(rand::random()), flags: 1 }
    }

    /// The next hop of the same trace.
    pub fn child(&self) -> Self {
        Self { parent_id: nonzero(rand::random()), ..*self }
    }

    /// The hop an invocation writes on its outputs: the same trace, and as
    /// parent id the invocation's own span id, derived from where its input
    /// record entered `function` (topic, partition, offset) and the input's
    /// own parent id. Derived rather than random so that the egress (which
    /// writes the header) and the span exporter ([`crate::otel`]) name the
    /// same span without passing it along the record's path; a retry copy of
    /// the record runs again from the same origin and is the same span.
    pub fn invocation(&self, function: &str, topic: &str, partition: i32, offset: i64) -> Self {
        use std::hash::{Hash, Hasher};
        // SipHash with fixed keys: the same id in every process of one build.
        let mut hasher = std::hash::DefaultHasher::new();
        (self.trace_id, self.parent_id, function, topic, partition, offset).hash(&mut hasher);
        Self { parent_id: nonzero(hasher.finish()), ..*self }
    }

    /// The header value.
    pub fn to_header(&self) -> String {
        format!("00-{:032x}-{:016x}-{:02x}", self.trace_id, self.parent_id, self.flags)
    }
}

fn nonzero<T: PartialEq + From<u8>>(value: T) -> T {
    if value == T::from(0) {
        T::from(1)
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_the_spec_refuses() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(TraceParent::parse(text).unwrap().to_header(), text);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        let root = TraceParent::root();
        assert_eq!(TraceParent::parse(&root.to_header()), Some(root));
    }

    #[test]
    fn an_invocation_names_one_span_per_input_record_and_function() {
        let input = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let span = input.invocation("payment", "orders.validated", 3, 42);
        assert_eq!(span, input.invocation("payment", "orders.validated", 3, 42));
        assert_eq!((span.trace_id, span.flags), (input.trace_id, input.flags));
        assert_ne!(span.parent_id, input.parent_id);
        for other in [
            input.invocation("inventory", "orders.validated", 3, 42),
            input.invocation("payment", "orders.validated", 3, 43),
            input.invocation("payment", "orders.validated", 2, 42),
            input.child().invocation("payment", "orders.validated", 3, 42),
        ] {
            assert_ne!(other.parent_id, span.parent_id);
        }
    }
}
