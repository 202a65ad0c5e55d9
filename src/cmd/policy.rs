//! `ward policy …`: check, evaluate, test and simulate policies.

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
    /// Validate every policy document in a directory.
    Check {
        /// Policy directory.
        dir: PathBuf,
    },
    /// Evaluate one request and explain the decision.
    Eval {
        /// Policy directory.
        dir: PathBuf,
    },
    /// Run table-driven expectations against a policy directory.
    Test {
        /// Policy directory.
        dir: PathBuf,
        /// JSON file of requests and expected decisions.
        tests: PathBuf,
    },
    /// Replay recorded decisions against a proposed policy.
    Simulate {
        /// Policy directory in force.
        #[arg(long)]
        from: PathBuf,
        /// Proposed policy directory.
        #[arg(long)]
        to: PathBuf,
        /// Gateway decision log (JSON lines).
        #[arg(long)]
        log: PathBuf,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let what = match args.command {
        Command::Check { .. } => "policy check",
        Command::Eval { .. } => "policy eval",
        Command::Test { .. } => "policy test",
        Command::Simulate { .. } => "policy simulate",
    };
    Err(super::not_built(what, 4))
}
