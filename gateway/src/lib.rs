//! ward-gateway: terminates mTLS, decides every connection and request with
//! ward-policy, and proxies with a signed identity assertion.
//!
//! Layout, from the wire inwards: [`tls`] (rustls config and the SPIFFE
//! client verifier) → [`identity`] → [`decide`] (policy request, decision
//! log) → [`proxy`] (HTTP routes) or [`tcp`] (SNI routes). [`reload`] swaps
//! the state behind [`server`]; [`admin`] serves metrics and the JWKS. The
//! verifier, identity and decision path know nothing of TCP, so the QUIC
//! listener ([`quic`], HTTP/3 on the same port over UDP) reuses them
//! unchanged.

pub mod admin;
pub mod assertion;
pub mod config;
pub mod crl;
pub mod decide;
mod error;
pub mod extended_connect;
pub mod grpc;
pub mod identity;
pub mod idle;
pub mod metrics;
pub mod park;
pub mod peers;
pub mod policy;
pub mod proxy;
pub mod quic;
pub mod recheck;
pub mod reload;
pub mod server;
pub mod tcp;
pub mod tls;
pub mod tls_stream;
pub mod upstream;

use std::path::Path;

pub use config::Config;
pub use error::{Error, Fault};

/// Runs the gateway from a config file until SIGTERM/SIGINT.
pub async fn run(config_path: &Path) -> Result<(), Error> {
    let config = Config::load(config_path)?;
    server::run(config, Some(config_path.to_path_buf())).await
}

/// Validates the config, certificates, keys, CRLs and policies without
/// opening any socket; returns a short summary for the operator.
pub fn check(config_path: &Path) -> Result<String, Error> {
    tls::install_default_provider();
    let mut config = Config::load(config_path)?;
    let mut notes = String::new();
    if let Some(fetch) = &config.crl_fetch
        && !fetch.file.exists()
    {
        // `run` fetches it before it starts; nothing to check here yet.
        config.crls.retain(|c| c != &fetch.file);
        notes = format!(", CRL to be fetched from {}", fetch.url);
    }
    let state = server::load_state(&config, 0)?;
    state.tls.upstream_client_config()?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let own_left = state.tls.own_not_after - now;
    if own_left <= 0 {
        return Err(Error::Tls(format!(
            "own certificate {} has expired",
            config.cert.display()
        )));
    }
    Ok(format!(
        "config ok: {} HTTP route(s), {} TCP route(s), policy {}, own certificate valid for {}s{notes}",
        config.http_routes.len(),
        config.tcp_routes.len(),
        state.policy.hash(),
        own_left
    ))
}
