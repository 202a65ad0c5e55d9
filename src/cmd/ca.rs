//! `ward ca …`: initialise, serve and administer the certificate authority.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate the root and issuing keys in the HSM and create the CA.
    Init {
        /// CA config file (key URIs, trust domain, database path).
        #[arg(long, default_value = "ca.toml")]
        config: PathBuf,
    },
    /// Serve the CA's HTTPS API.
    Serve {
        /// CA config file.
        #[arg(long, default_value = "ca.toml")]
        config: PathBuf,
    },
    /// Create, list and revoke one-time enrolment tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Issue a certificate offline from a CSR (bootstrapping a gateway).
    Issue {
        /// CA config file.
        #[arg(long, default_value = "ca.toml")]
        config: PathBuf,
        /// PEM certificate signing request.
        #[arg(long)]
        csr: PathBuf,
        /// SPIFFE ID the certificate is for.
        #[arg(long)]
        identity: String,
    },
    /// Revoke a certificate by serial.
    Revoke {
        /// CA config file.
        #[arg(long, default_value = "ca.toml")]
        config: PathBuf,
        /// Serial number (hex).
        #[arg(long)]
        serial: String,
    },
    /// List issued certificates.
    List {
        /// CA config file.
        #[arg(long, default_value = "ca.toml")]
        config: PathBuf,
        /// Only this SPIFFE ID (or pattern).
        #[arg(long)]
        identity: Option<String>,
        /// Only certificates issued at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
    },
    /// Show key backend, fingerprints, expiry and counts.
    Status {
        /// CA config file.
        #[arg(long, default_value = "ca.toml")]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a new one-time enrolment token bound to an identity.
    Create {
        /// CA config file.
        #[arg(long, default_value = "ca.toml")]
        config: PathBuf,
        /// SPIFFE ID (or pattern) the token may enrol.
        #[arg(long)]
        identity: String,
        /// How long the token stays valid, e.g. `15m`.
        #[arg(long, default_value = "15m")]
        ttl: String,
        /// Certificate profile: `workload` or `user`.
        #[arg(long, default_value = "workload")]
        profile: String,
        /// DNS names the certificate may also carry.
        #[arg(long)]
        dns: Vec<String>,
    },
    /// List tokens (never their secrets).
    List {
        /// CA config file.
        #[arg(long, default_value = "ca.toml")]
        config: PathBuf,
    },
    /// Revoke an unused token.
    Revoke {
        /// CA config file.
        #[arg(long, default_value = "ca.toml")]
        config: PathBuf,
        /// Token id as printed by `token list`.
        id: String,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let what = match args.command {
        Command::Init { .. } => "ca init",
        Command::Serve { .. } => "ca serve",
        Command::Token { .. } => "ca token",
        Command::Issue { .. } => "ca issue",
        Command::Revoke { .. } => "ca revoke",
        Command::List { .. } => "ca list",
        Command::Status { .. } => "ca status",
    };
    Err(super::not_built(what, 3))
}
