//! Integration tests of kfn against a real broker (see kfn_tests::broker).

mod acl_enforced;
mod aggregate;
mod check;
mod connect;
mod evolution;
mod exactly_once;
mod group;
mod lag;
mod observability;
mod openapi;
mod order_system;
mod otlp;
mod producer;
mod registry;
mod registry_client;
mod registry_tls;
mod restart;
mod runtime;
mod scaffold;
mod security;
mod terraform;
mod topics;
mod trace;
mod tracking;
mod transactions;
