//! `ward audit …`: search and verify the certificate transparency log.

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
    /// List certificates issued for an identity in a time window.
    Search {
        /// SPIFFE ID to search for.
        #[arg(long)]
        identity: Option<String>,
        /// Start of the window (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// End of the window (RFC 3339).
        #[arg(long)]
        until: Option<String>,
    },
    /// Rebuild the Merkle tree from every entry and check every signature.
    Verify {
        /// A signed tree head saved earlier; the log must be consistent with it.
        #[arg(long)]
        from_sth: Option<PathBuf>,
    },
    /// Print and check the inclusion proof of one certificate.
    Prove {
        /// Serial number (hex).
        #[arg(long)]
        serial: String,
    },
    /// Verify an inclusion or consistency proof from a JSON file, offline.
    CheckProof {
        /// The proof, as the API returns it.
        file: PathBuf,
    },
    /// Follow new log entries (for a SIEM).
    Watch {
        /// Resume after this entry index.
        #[arg(long)]
        since_index: Option<u64>,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let what = match args.command {
        Command::Search { .. } => "audit search",
        Command::Verify { .. } => "audit verify",
        Command::Prove { .. } => "audit prove",
        Command::CheckProof { .. } => "audit check-proof",
        Command::Watch { .. } => "audit watch",
    };
    Err(super::not_built(what, 11))
}
