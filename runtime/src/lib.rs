//! kfn: a serverless-style function runtime for Apache Kafka.
//!
//! `functions.toml` declares topics and functions; handlers live in the
//! `kfn-functions` crate; this crate validates the declaration
//! ([`config`]), talks to the brokers ([`kafka`]), and runs everything
//! ([`app`], [`invoker`], [`trigger`]).
//!
//! A complete function, its registration and its functions.toml entry:
//!
//! ```
//! use kfn_sdk::{Ctx, Emit, Event, FnError, Registry};
//!
//! #[derive(Debug, serde::Serialize, serde::Deserialize)]
//! struct Order { order_id: String, total_cents: i64 }
//! impl Event for Order { const NAME: &'static str = "shop.Order"; }
//!
//! async fn big_orders(_ctx: Ctx, order: Order) -> Result<Emit, FnError> {
//!     if order.total_cents < 0 { return Err(FnError::permanent("negative total")); }
//!     if order.total_cents < 100_000 { return Ok(Emit::none()); }
//!     let key = order.order_id.clone();
//!     Ok(Emit::one("big", key, order))
//! }
//!
//! let mut registry = Registry::default();
//! registry.handler("big_orders", big_orders);
//! // functions.toml:
//! // [functions.big_orders]
//! // handler = "big_orders"
//! // input = "orders"
//! // outputs = { big = "orders.big" }
//! // (records it gives up on go to big_orders.dlq, created by convention)
//! ```

#![warn(missing_docs)]

pub mod acls;
pub mod app;
pub mod avro;
pub use kfn_kafka::backoff;
pub mod cli;
pub mod config;
pub mod connect;
pub mod dev;
pub mod endpoints;
pub mod error_text;
pub mod invoker;
pub mod json;
pub use kfn_kafka as kafka;
pub mod kafka_settings;
pub mod lag;
pub mod metrics;
pub mod otel;
pub mod registry;
pub mod scaffold;
pub mod schema_check;
pub mod table;
pub mod terraform;
pub mod trace;
pub mod trigger;
