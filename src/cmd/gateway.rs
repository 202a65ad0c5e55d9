//! `ward gateway …`: run or check the gateway.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve mTLS on the configured listeners until SIGTERM (SIGHUP reloads
    /// policies, certificates, trust bundle and CRLs).
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
    match args.command {
        Command::Run { config } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(ward_gateway::run(&config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => {
            let summary = ward_gateway::check(&config)?;
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
