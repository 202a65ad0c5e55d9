//! ward-agent: keeps a host's certificates fresh and forwards desktop ports.
//!
//! Not built yet (issue 7): the crate exists so that the workspace, the CLI
//! and the dependency direction (`agent` → `ca`'s client) are fixed now.

mod error;

pub use error::Error;
