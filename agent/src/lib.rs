//! ward-agent: keeps a host's certificates fresh and forwards desktop ports.
//!
//! - [`enroll`]: first contact, pinned by the root's fingerprint.
//! - [`run`]: the renewal loop (timing in [`schedule`], files in [`sink`],
//!   reload hooks in [`hook`], metrics in [`metrics`]).
//! - [`status`]: the health check.
//! - [`connect`]: the local forwarder behind `ward connect`.
//!
//! The on-disk layout and why it is safe against crashes is described in
//! [`sink`]; the config format in [`config`].

pub mod cert;
pub mod config;
pub mod connect;
pub mod enroll;
mod error;
pub mod hook;
pub mod metrics;
pub mod run;
pub mod schedule;
pub mod sink;
pub mod state;
pub mod status;
pub mod tls;

pub use error::Error;
