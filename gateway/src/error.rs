//! The one error type of ward-gateway.

/// Everything that can go wrong in the gateway.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config file could not be read or understood; the message names the
    /// file, line and key.
    #[error(transparent)]
    Config(#[from] ward_ca::Error),
    /// The policy directory could not be loaded.
    #[error(transparent)]
    Policy(#[from] ward_policy::Error),
}
