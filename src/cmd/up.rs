//! `ward up`: the whole system in one process, for a first look.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// State directory; a second `ward up` with the same one resumes.
    #[arg(long, default_value = "./ward-data")]
    dir: PathBuf,
}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    Err(super::not_built("up", 8))
}
