//! `ward agent …`: enrol, renew and report.

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
    /// Enrol with a one-time token: pin the CA, make a key, get a certificate.
    Enroll {
        /// CA API URL, e.g. `https://127.0.0.1:9443`.
        #[arg(long)]
        ca: String,
        /// SHA-256 fingerprint of the CA root, `sha256:<hex>` (printed by
        /// `ward ca init`); the agent refuses any other root.
        #[arg(long)]
        fingerprint: String,
        /// File holding the one-time token (never passed on the command line).
        #[arg(long)]
        token_file: PathBuf,
        /// Directory for cert.pem, key.pem and bundle.pem (created 0700).
        #[arg(long)]
        out: PathBuf,
        /// SPIFFE ID to ask for; only needed when the token grants a
        /// pattern. The certificate profile (workload or user) is the
        /// token's.
        #[arg(long)]
        identity: Option<String>,
    },
    /// Renew every configured identity before it expires, until SIGTERM.
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Enroll {
            ca,
            fingerprint,
            token_file,
            out,
            identity,
        } => {
            let e = ward_agent::enroll::Enrollment {
                ca,
                fingerprint,
                token: ward_agent::enroll::Token::from_file(&token_file)?,
                out,
                identity,
            };
            let info = runtime()?.block_on(ward_agent::enroll::enroll(&e))?;
            println!("enrolled {}", info.identity);
            println!("serial   {}", info.serial);
            println!("expires  {}", ward_agent::run::fmt_time(info.not_after));
            println!("files    {}", e.out.display());
            let dir = std::path::absolute(&e.out).unwrap_or_else(|_| e.out.clone());
            println!();
            println!("# to keep it fresh, add to agent.toml and run `ward agent run`:");
            println!("[identity.NAME]");
            println!("ca = {:?}", e.ca);
            println!("dir = {:?}", dir.display().to_string());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config } => {
            runtime()?.block_on(ward_agent::run::run(&config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { config } => {
            let r = ward_agent::status::status(&config, std::time::SystemTime::now())?;
            print!("{}", r.text);
            Ok(if r.healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
