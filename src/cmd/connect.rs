//! `ward connect`: forward a local port through the gateway.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Route to reach, as named in the gateway config (TCP routes by SNI).
    route: String,
    /// Local address to listen on (loopback only by default).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Gateway address, `host:port`.
    #[arg(long)]
    gateway: String,
    /// Agent config whose identity is presented to the gateway.
    #[arg(long, default_value = "agent.toml")]
    config: PathBuf,
}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    Err(super::not_built("connect", 7))
}
