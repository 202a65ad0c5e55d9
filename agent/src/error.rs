//! The one error type of ward-agent.

use std::path::PathBuf;

/// Everything that can go wrong in the agent and in `ward connect`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config file could not be read or understood; the message names the
    /// file, line and key. Also wraps every error the CA client reports
    /// (connection refused, TLS failure, an HTTP refusal with its code).
    #[error(transparent)]
    Ca(#[from] ward_ca::Error),

    /// A value in `agent.toml` is wrong in a way serde cannot see (unknown
    /// identity name, non-loopback metrics address, empty hook command).
    #[error("{path}: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// The CA presented a root whose fingerprint is not the pinned one:
    /// either the fingerprint was mistyped or something is in the middle.
    #[error(
        "the CA at {url} presents root {actual}, but the pinned fingerprint is {expected}; \
         check the fingerprint printed by `ward ca init` (nothing was sent to this server)"
    )]
    FingerprintMismatch {
        /// The CA URL.
        url: String,
        /// The fingerprint the operator gave (`--fingerprint` or config).
        expected: String,
        /// The fingerprint of the root the server actually sent.
        actual: String,
    },

    /// A file could not be read, written, renamed or synced.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. `writing`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// A private key file is readable by group or others; the agent refuses
    /// to use it. Fix with `chmod 600`.
    #[error(
        "{path} has mode {mode:o}: a private key must not be readable by group or others (chmod 600 it)"
    )]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// A certificate, key or CRL file does not parse, or a certificate and
    /// key on disk do not belong together.
    #[error("{path}: {message}")]
    BadFile {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it and what to do.
        message: String,
    },

    /// The identity directory has no certificate yet: enrol first.
    #[error("{dir} holds no certificate; run `ward agent enroll --out {dir}` first")]
    NotEnrolled {
        /// The identity directory.
        dir: PathBuf,
    },

    /// The CA answered, but with something the agent cannot use (a chain
    /// whose leaf is not for the key just generated, an unexpected root).
    #[error("the CA's answer is unusable: {0}")]
    BadAnswer(String),

    /// Generating a key or CSR failed (should not happen with P-256).
    #[error("key or CSR generation failed: {0}")]
    Key(String),

    /// The reload hook failed to start, timed out, or exited non-zero.
    #[error("reload hook {hook}: {message}")]
    Hook {
        /// The command or signal that was run.
        hook: String,
        /// What happened.
        message: String,
    },

    /// A TLS setting could not be built, or the gateway handshake failed.
    #[error("TLS: {0}")]
    Tls(String),

    /// A network operation failed (listening, connecting to the gateway).
    #[error("{action} {addr}: {source}")]
    Net {
        /// What was being done, e.g. `connecting to`.
        action: &'static str,
        /// The address.
        addr: String,
        /// The underlying error.
        source: std::io::Error,
    },

    /// The metrics registry could not be set up (a programming error: a
    /// metric registered twice).
    #[error("metrics: {0}")]
    Metrics(String),

    /// A CA call did not finish in time (the CA is down or unreachable).
    #[error("the CA did not answer within {0} s; it will be retried")]
    Timeout(u64),
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn bad_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::BadFile {
            path: path.into(),
            message: message.into(),
        }
    }
}
