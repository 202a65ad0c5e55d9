//! One module per subcommand: argument structs and a `run` that calls into
//! the crates. Nothing here should be more than glue.

pub mod agent;
pub mod audit;
pub mod ca;
pub mod connect;
pub mod gateway;
pub mod policy;
pub mod up;

/// The error every not-yet-built subcommand returns, so that scripts see a
/// failure rather than a silent success.
pub fn not_built(what: &str, issue: u32) -> anyhow::Error {
    anyhow::anyhow!("`ward {what}` is not built yet (tracked in issue {issue})")
}
