//! Triggers other than topics: the HTTP trigger, and the small HTTP server it
//! shares with the health and metrics endpoints.

pub mod http;
pub mod server;
