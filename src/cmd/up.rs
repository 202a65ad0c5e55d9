//! `ward up`: the whole system in one process, for a first look.
//!
//! Only arguments here; the orchestration is in `src/up/`.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// State directory; a second `ward up` with the same one resumes (same
    /// CA, keys and certificates).
    #[arg(long, default_value = "./ward-data")]
    dir: PathBuf,
    /// Port of the gateway (mTLS) on 127.0.0.1.
    #[arg(long, default_value_t = 8443)]
    gateway_port: u16,
    /// Port of the CA's HTTPS API on 127.0.0.1.
    #[arg(long, default_value_t = 9443)]
    ca_port: u16,
    /// Port of the gateway's admin listener (/metrics, /healthz) on 127.0.0.1.
    #[arg(long, default_value_t = 9090)]
    admin_port: u16,
    /// Keep the CA keys in PEM files even if SoftHSM2 is installed (demo only).
    #[arg(long)]
    file_keys: bool,
    /// Lifetime of the gateway's and the demo client's certificates; the
    /// in-process agent renews them at two thirds of it (`1m` shows a
    /// renewal within a minute).
    #[arg(long, default_value = "1h")]
    cert_ttl: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::up::run(crate::up::Options {
        dir: args.dir,
        gateway_port: args.gateway_port,
        ca_port: args.ca_port,
        admin_port: args.admin_port,
        file_keys: args.file_keys,
        cert_ttl: args.cert_ttl,
    })
}
