//! ward-ca: the internal certificate authority.
//!
//! It also holds what the crates above it (gateway, agent) share with it:
//! the TOML config loader and, as they land, the identity types and the API
//! client. Dependency direction is `ward` → {gateway, agent} → ca → policy.

pub mod config;
mod error;

pub use error::Error;
