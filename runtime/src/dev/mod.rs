//! The embedded local stack of `kfn dev`: a local broker (tansu), the topics
//! of functions.toml, and every function in one process.

pub mod broker;
pub mod ports;
pub mod tansu;

pub use broker::{BrokerError, LocalBroker, Storage};
pub use ports::{ensure_free, PortTaken};
pub use tansu::{ensure_installed, InstallError};
