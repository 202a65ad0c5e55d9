//! `ward`: one binary for every role (CA, agent, gateway, policy, audit).
//!
//! This file only parses arguments and dispatches; the work lives in the
//! crates (`ward-ca`, `ward-agent`, `ward-gateway`, `ward-policy`), so that it
//! can be tested without a process and reused by `ward up`.

mod cmd;
mod logging;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// ward: a zero-trust access gateway with its own mTLS PKI.
///
/// An HSM-backed CA issues short-lived certificates, an agent renews them on
/// every host, and a gateway checks every connection and request against
/// policy before it reaches a service.
#[derive(Debug, Parser)]
#[command(name = "ward", version, propagate_version = true)]
struct Cli {
    /// Log format: `pretty` for people, `json` for log shippers; `auto`
    /// picks pretty with colours on a terminal and without colours elsewhere.
    #[arg(long, global = true, value_enum, default_value_t = logging::Format::Auto)]
    log_format: logging::Format,

    /// Log filter, e.g. `info` or `ward_gateway=debug,info`.
    #[arg(long, global = true, env = "WARD_LOG", default_value = "info")]
    log_level: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run and administer the certificate authority.
    Ca(cmd::ca::Args),
    /// Enrol this host and keep its certificates fresh.
    Agent(cmd::agent::Args),
    /// Forward a local port through the gateway (for tools without mTLS).
    Connect(cmd::connect::Args),
    /// Run or check the mTLS gateway.
    Gateway(cmd::gateway::Args),
    /// Check, evaluate, test and simulate policies.
    Policy(cmd::policy::Args),
    /// Search and verify the certificate transparency log.
    Audit(cmd::audit::Args),
    /// Start a whole demo system (CA, gateway, agent, upstream) in one process.
    Up(cmd::up::Args),
}

/// jemalloc instead of glibc malloc: a proxied request makes dozens of
/// small, short-lived allocations (header maps, strings, the decision-log
/// line), and glibc's malloc/free (arena locks, chunk consolidation) was
/// 10 to 15 % of the gateway's CPU per request. Measured on one core
/// (32 keep-alive connections): glibc 47-48 µs per request, mimalloc 43-44,
/// jemalloc 43-44 with 9 MB less resident memory than mimalloc (19 vs 28 MB
/// after the load), which is what decides it, since memory per idle
/// connection is a gateway budget too. Its options (a background thread
/// that gives freed pages back after 200 ms) are set at build time in
/// `.cargo/config.toml`. Without the `jemalloc` feature the binary keeps
/// glibc malloc, which heap profilers such as heaptrack hook.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(cli.log_format, &cli.log_level) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Ca(args) => cmd::ca::run(args),
        Command::Agent(args) => cmd::agent::run(args),
        Command::Connect(args) => cmd::connect::run(args),
        Command::Gateway(args) => cmd::gateway::run(args),
        Command::Policy(args) => cmd::policy::run(args),
        Command::Audit(args) => cmd::audit::run(args),
        Command::Up(args) => cmd::up::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
