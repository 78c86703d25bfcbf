//! Triggers other than topics: the HTTP trigger, its Idempotency-Keys kept in
//! Kafka, and the small HTTP server it shares with the health and metrics endpoints.

pub mod http;
pub mod idempotency;
pub mod server;
pub mod stall;
