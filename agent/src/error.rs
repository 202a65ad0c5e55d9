//! The one error type of ward-agent.

/// Everything that can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config file could not be read or understood; the message names the
    /// file, line and key.
    #[error(transparent)]
    Config(#[from] ward_ca::Error),
}
