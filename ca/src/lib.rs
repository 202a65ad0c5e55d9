//! ward-ca: the internal certificate authority.
//!
//! It also holds what the crates above it (gateway, agent) share with it:
//! the TOML config loader, the identity types ([`identity`]) and the API
//! client ([`client`]). Dependency direction is `ward` → {gateway, agent} →
//! ca → policy.

pub mod authority;
pub mod certutil;
pub mod client;
mod client_log;
pub mod config;
pub mod crl;
pub mod csr;
mod error;
pub mod identity;
pub mod init;
pub mod keys;
pub mod metrics;
pub mod profile;
pub mod server;
pub mod settings;
pub mod store;
pub mod tokens;
pub mod translog;

pub use authority::{Ca, Issued, LogSink};
pub use error::Error;
