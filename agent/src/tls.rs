//! rustls plumbing: the process-wide provider, learning which root a
//! server presents (for an honest fingerprint-mismatch message), and the
//! client config `ward connect` uses towards the gateway.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::Error;
use crate::sink::Pair;

/// Installs aws-lc-rs as the process default provider; a provider that is
/// already installed (by the CA client, say) is fine.
pub fn install_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Splits `https://host:port/…` into host and port (443 by default).
pub(crate) fn host_port(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("https://")?;
    let rest = rest.split('/').next().unwrap_or(rest);
    match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => Some((
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse().ok()?,
        )),
        _ => Some((rest.to_string(), 443)),
    }
}

/// Records the chain a server presents and accepts nothing: the handshake
/// always fails after the certificate message, so no data is ever sent.
#[derive(Debug)]
struct Recorder {
    chain: Mutex<Vec<Vec<u8>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut c) = self.chain.lock() {
            c.push(end_entity.to_vec());
            c.extend(intermediates.iter().map(|i| i.to_vec()));
        }
        Err(rustls::Error::General("only recording the chain".into()))
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The fingerprint of the last certificate (the root) the server at `url`
/// sends, or `None` if it cannot be learnt.
pub async fn presented_root_fingerprint(url: &str) -> Option<String> {
    let (host, port) = host_port(url)?;
    let recorder = Arc::new(Recorder {
        chain: Mutex::new(Vec::new()),
        provider: provider(),
    });
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.clone()).ok()?;
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .ok()?
    .ok()?;
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp),
    )
    .await;
    let chain = recorder.chain.lock().ok()?.clone();
    chain.last().map(|root| crate::cert::fingerprint(root))
}

/// The client config for one gateway connection: trusts the roots in
/// `bundle_pem`, presents `pair`.
pub fn gateway_client(bundle_pem: &str, pair: &Pair) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(bundle_pem.as_bytes()) {
        let c = c.map_err(|e| Error::Tls(format!("bundle.pem: {e}")))?;
        roots
            .add(c)
            .map_err(|e| Error::Tls(format!("bundle.pem: unusable root: {e}")))?;
    }
    if roots.is_empty() {
        return Err(Error::Tls("bundle.pem holds no certificate".into()));
    }
    let chain = CertificateDer::pem_slice_iter(pair.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes())
        .map_err(|e| Error::Tls(format!("private key: {e}")))?;
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| Error::Tls(format!("client certificate: {e}")))?;
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        assert_eq!(host_port("https://ca:8443"), Some(("ca".into(), 8443)));
        assert_eq!(host_port("https://ca/"), Some(("ca".into(), 443)));
        assert_eq!(host_port("https://[::1]:9/x"), Some(("::1".into(), 9)));
        assert_eq!(host_port("http://ca"), None);
    }
}
