//! ward-gateway: terminates mTLS, decides every connection and request with
//! ward-policy, and proxies with a signed identity assertion.
//!
//! Not built yet (issues 5 and 6): the crate exists so that the workspace,
//! the CLI and the dependency direction (`gateway` → {policy, ca}) are fixed.

mod error;

pub use error::Error;
