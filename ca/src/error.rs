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

    // ---- issue 3: the CA proper. Each variant says whose fault it is; the
    // API maps them with `Error::status` / `Error::code`.
    /// Client fault (400): the request is malformed or asks for something
    /// the CA will not issue (bad CSR, weak key, identity outside grant).
    #[error("{message}")]
    BadRequest {
        /// Stable machine-readable reason, e.g. `csr_bad_signature`.
        code: &'static str,
        /// What was wrong and what to do.
        message: String,
    },
    /// Client fault (401): the caller did not prove who it is (unknown or
    /// expired token, no/expired/foreign client certificate).
    #[error("{message}")]
    Unauthenticated {
        /// Stable machine-readable reason.
        code: &'static str,
        /// What was wrong.
        message: String,
    },
    /// Client fault (403): authenticated but not allowed (e.g. revoking
    /// someone else's certificate without `ca:Revoke`, revoked certificate).
    #[error("{message}")]
    Forbidden {
        /// Stable machine-readable reason.
        code: &'static str,
        /// What was wrong.
        message: String,
    },
    /// Client fault (404): the named token or certificate does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, e.g. `certificate 0a1b…`.
        what: String,
    },
    /// Client fault (409): the request conflicts with the state (a token
    /// that was already used, a certificate already revoked, a CA that
    /// already exists).
    #[error("{message}")]
    Conflict {
        /// Stable machine-readable reason.
        code: &'static str,
        /// What was wrong.
        message: String,
    },
    /// Client fault (413): the request body is larger than the limit.
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// Operator fault: a key reference or other CA setting is wrong
    /// (malformed PKCS#11 URI, PIN given inline, missing PIN source).
    #[error("{0}")]
    Setup(String),
    /// HSM unavailable (503): the PKCS#11 module, token or session cannot be
    /// used right now (module missing, token not found, wrong PIN, device
    /// error). The message names the token and the PKCS#11 return value.
    #[error("HSM unavailable: {0}")]
    Hsm(String),
    /// Internal fault (500): the database failed.
    #[error("certificate store: {0}")]
    Store(String),
    /// Internal fault (500): building or signing a certificate or CRL failed.
    #[error("certificate building failed: {0}")]
    Cert(String),
    /// Internal fault (500): reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Client-side (API client) fault: the CA answered with an error.
    #[error("CA answered {status} ({code}): {message}")]
    Remote {
        /// HTTP status.
        status: u16,
        /// The `code` field of the JSON error.
        code: String,
        /// The `error` field of the JSON error.
        message: String,
    },
    /// Client-side (API client) fault: network, TLS or pinning failure.
    #[error("talking to the CA: {0}")]
    Transport(String),
    /// Transparency log: bytes are not a canonical log entry (unknown
    /// version or kind, truncated field, trailing bytes, bad certificate).
    #[error("transparency log entry: {0}")]
    LogEntry(String),
    /// Transparency log: a proof, root hash or signed tree head does not
    /// verify, or is malformed (wrong length, index out of range).
    #[error("transparency log verification failed: {0}")]
    LogVerify(String),
    /// Transparency log: the log key cannot be used (unparsable public key,
    /// signing failed, or not the key this log was created with).
    #[error("transparency log key: {0}")]
    LogKey(String),
    /// Transparency log: the writer thread has stopped, so nothing can be
    /// appended; restart the CA (the log on disk is intact).
    #[error("the transparency log writer has stopped; restart the CA")]
    LogClosed,
}

impl Error {
    /// HTTP status for this error when it reaches the API.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest { .. } => 400,
            Self::Unauthenticated { .. } => 401,
            Self::Forbidden { .. } => 403,
            Self::NotFound { .. } => 404,
            Self::Conflict { .. } => 409,
            Self::TooLarge { .. } => 413,
            Self::Hsm(_) => 503,
            Self::Remote { status, .. } => *status,
            _ => 500,
        }
    }

    /// Stable machine-readable code for the JSON error body and metrics.
    pub fn code(&self) -> &str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Unauthenticated { code, .. }
            | Self::Forbidden { code, .. }
            | Self::Conflict { code, .. } => code,
            Self::NotFound { .. } => "not_found",
            Self::TooLarge { .. } => "request_too_large",
            Self::Hsm(_) => "hsm_unavailable",
            Self::Remote { code, .. } => code,
            Self::Transport(_) => "transport",
            _ => "internal",
        }
    }

    pub(crate) fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn unauth(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unauthenticated {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::Forbidden {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(e.to_string())
    }
}

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Self::Cert(e.to_string())
    }
}
