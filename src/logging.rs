//! The process-wide tracing subscriber.
//!
//! Logs go to stderr so that commands whose stdout is data (`ward policy eval
//! --json`, `ward audit search --json`) stay pipeable.

use std::io::IsTerminal;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Pretty on a terminal (with colours), pretty without colours elsewhere.
    Auto,
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber; `filter` uses `EnvFilter` syntax.
pub fn init(format: Format, filter: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter)
        .with_context(|| format!("invalid --log-level / WARD_LOG filter {filter:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        Format::Json => builder.json().with_current_span(false).try_init(),
        Format::Pretty => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        Format::Auto => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}
