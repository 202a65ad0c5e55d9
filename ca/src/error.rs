//! The one error type of ward-ca.

use std::path::PathBuf;

/// Everything that can go wrong in the CA, its store, its keys and its client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config file could not be read (missing, unreadable).
    #[error("cannot read config file {path}: {source}")]
    ConfigRead {
        /// The file that was asked for.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A config file is not valid TOML, or has an unknown, missing or
    /// mistyped key. The message names the file, line, column and key.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}
