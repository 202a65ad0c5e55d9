//! `ward agent …`: enrol, renew and report.

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
    /// Enrol with a one-time token: pin the CA, make a key, get a certificate.
    Enroll {
        /// CA API URL, e.g. `https://127.0.0.1:9443`.
        #[arg(long)]
        ca: String,
        /// SHA-256 fingerprint of the CA root, `sha256:<hex>`.
        #[arg(long)]
        fingerprint: String,
        /// File holding the one-time token (never passed on the command line).
        #[arg(long)]
        token_file: PathBuf,
        /// Directory for cert.pem, key.pem and bundle.pem.
        #[arg(long)]
        out: PathBuf,
    },
    /// Renew every configured identity before it expires, forever.
    Run {
        /// Agent config file.
        #[arg(long, default_value = "agent.toml")]
        config: PathBuf,
    },
    /// Print each identity's expiry; non-zero when one is expired or nearly so.
    Status {
        /// Agent config file.
        #[arg(long, default_value = "agent.toml")]
        config: PathBuf,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let what = match args.command {
        Command::Enroll { .. } => "agent enroll",
        Command::Run { .. } => "agent run",
        Command::Status { .. } => "agent status",
    };
    Err(super::not_built(what, 7))
}
