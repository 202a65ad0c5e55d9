//! rustls configs for the upstream's mTLS listener and the bench clients.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Installs aws-lc-rs as the process default (the workspace's one provider).
pub fn install_provider() {
    let _already = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", path.display()))
}

fn key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).with_context(|| format!("reading key {}", path.display()))
}

fn roots(path: &Path) -> anyhow::Result<rustls::RootCertStore> {
    let mut store = rustls::RootCertStore::empty();
    for c in certs(path)? {
        store.add(c)?;
    }
    Ok(store)
}

/// A server that requires a client certificate chaining to `root`, offering
/// h2 and http/1.1.
pub fn server(dir: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder(Arc::new(roots(&dir.join("root.pem"))?))
            .build()?;
    let mut c = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs(&dir.join("server.pem"))?,
            key(&dir.join("server.key"))?,
        )?;
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

/// A client presenting `client.pem` and trusting only the bench root.
/// Without `resume`, every connection is a full handshake (no session
/// tickets, no PSK): the honest "new mTLS handshake" figure.
pub fn client(dir: &Path, resume: bool) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut c = rustls::ClientConfig::builder()
        .with_root_certificates(roots(&dir.join("root.pem"))?)
        .with_client_auth_cert(
            certs(&dir.join("client.pem"))?,
            key(&dir.join("client.key"))?,
        )?;
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        c.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(c))
}
