//! The one error type of ward-gateway.
//!
//! Every variant says which side is at fault (as Pingora's error types do),
//! because the first question an operator asks about a failed request is
//! "is it them, us, the policy or the service behind us?".

use std::path::PathBuf;

/// Which party caused an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The client sent something we refuse (bad certificate, bad request).
    Client,
    /// The policy (or its files) is wrong or denies the request.
    Policy,
    /// The upstream service failed or timed out.
    Upstream,
    /// The gateway itself or its configuration is wrong.
    Internal,
}

/// Everything that can go wrong in the gateway.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config file could not be read or understood; the message names the
    /// file, line and key. Fault: internal (operator config).
    #[error(transparent)]
    Config(#[from] ward_ca::Error),
    /// The config parsed but a value is not acceptable (duplicate route
    /// names, a bad upstream URL, …). Fault: internal (operator config).
    #[error("{path}: {message}")]
    ConfigInvalid {
        /// The config file.
        path: PathBuf,
        /// What is wrong and what to do about it.
        message: String,
    },
    /// The policy directory could not be loaded or compiled. Fault: policy.
    #[error(transparent)]
    Policy(#[from] ward_policy::Error),
    /// A file the gateway needs (certificate, key, bundle, CRL, policy,
    /// decision log) could not be read or written. Fault: internal.
    #[error("{what} {path}")]
    File {
        /// What the file is for, e.g. "trust bundle".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A certificate, key, bundle or CRL file was read but is not usable
    /// (no PEM blocks, unparsable DER, key type not supported). Fault:
    /// internal (operator files).
    #[error("{what} {path}: {message}")]
    Pem {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused to build a TLS configuration from our files (e.g. the
    /// key does not match the certificate). Fault: internal.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// A client certificate does not carry an acceptable identity (no or
    /// several SPIFFE URI SANs, wrong trust domain, unparsable). Fault:
    /// client.
    #[error("client identity: {0}")]
    Identity(String),
    /// The upstream could not be reached or failed mid-response. Fault:
    /// upstream.
    #[error("upstream {upstream}: {message}")]
    Upstream {
        /// The upstream address or URL.
        upstream: String,
        /// What went wrong.
        message: String,
    },
    /// Signing an identity assertion or drawing randomness failed. Fault:
    /// internal.
    #[error("crypto: {0}")]
    Crypto(&'static str),
    /// A listener could not be bound or a socket operation failed. Fault:
    /// internal.
    #[error("{what} {addr}")]
    Listen {
        /// Which listener.
        what: &'static str,
        /// The address we tried.
        addr: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
}

impl Error {
    /// The message with every underlying cause, for log lines (Display
    /// alone leaves the causes to `source()`, as anyhow expects).
    pub fn report(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            let text = c.to_string();
            if !out.ends_with(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            cause = c.source();
        }
        out
    }

    /// Which side is at fault, for logs and metrics.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Identity(_) => Fault::Client,
            Error::Policy(_) => Fault::Policy,
            Error::Upstream { .. } => Fault::Upstream,
            Error::Config(_)
            | Error::ConfigInvalid { .. }
            | Error::File { .. }
            | Error::Pem { .. }
            | Error::Tls(_)
            | Error::Crypto(_)
            | Error::Listen { .. } => Fault::Internal,
        }
    }
}
