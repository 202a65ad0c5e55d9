//! `ward gateway …`: run or check the gateway.

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
    /// Serve mTLS on the configured listeners.
    Run {
        /// Gateway config file.
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Validate the config, certificates and policies, then exit.
    Check {
        /// Gateway config file.
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let what = match args.command {
        Command::Run { .. } => "gateway run",
        Command::Check { .. } => "gateway check",
    };
    Err(super::not_built(what, 5))
}
