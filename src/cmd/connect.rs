//! `ward connect`: forward a local port through the gateway.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Gateway address, `host:port`.
    #[arg(long)]
    gateway: String,
    /// Host name of the gateway's TCP route (sent as SNI and checked in
    /// the gateway's certificate).
    #[arg(long)]
    sni: String,
    /// Local address to listen on (loopback only); port 0 picks one and
    /// prints it.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Agent config whose identity is presented to the gateway.
    #[arg(long, default_value = "agent.toml")]
    config: PathBuf,
    /// Which identity of the config (needed when it has several).
    #[arg(long)]
    identity: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = ward_agent::config::AgentConfig::load(&args.config)?;
    let (_, id) = cfg.pick(args.identity.as_deref(), &args.config)?;
    let fwd = ward_agent::connect::Forward {
        gateway: args.gateway,
        sni: args.sni,
        dir: id.dir.clone(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let listener = ward_agent::connect::bind(args.listen).await?;
        let addr = listener.local_addr().context("local address")?;
        // Scripts (and tests) read the port from this line.
        println!("listening on {addr}");
        tracing::info!(%addr, gateway = %fwd.gateway, sni = %fwd.sni, "forwarding");
        tokio::select! {
            r = ward_agent::connect::serve(listener, fwd) => r?,
            _ = tokio::signal::ctrl_c() => {}
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
