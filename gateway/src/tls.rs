//! TLS: the server config and the client-certificate verifier.
//!
//! [`SpiffeVerifier`] wraps rustls' `WebPkiClientVerifier` (chain to the
//! trust bundle, validity, EKU clientAuth, CRLs) and then insists on exactly
//! one SPIFFE ID in our trust domain, so that a certificate without a usable
//! identity is refused *at the handshake*, never later in a request handler.
//! It knows nothing about TCP: the QUIC listener (issue 6) builds its rustls
//! config from the same [`TlsMaterial`] and so shares the exact same check.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    ServerConfig, SignatureScheme,
};

use crate::Error;
use x509_parser::prelude::FromDer;

use crate::config::Config;
use crate::identity::Identity;

/// The one crypto provider of the process (aws-lc-rs, never ring).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Installs aws-lc-rs as the process default; a second install is fine.
pub fn install_default_provider() {
    let _already_installed = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Client verifier: WebPKI chain + CRL check, then the SPIFFE identity rule.
#[derive(Debug)]
pub struct SpiffeVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    trust_domain: crate::identity::TrustDomain,
}

impl SpiffeVerifier {
    /// Runs the complete check again on a stored chain: used to re-check
    /// long-lived connections after a CRL, bundle or clock change.
    pub fn recheck(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        self.verify_client_cert(end_entity, intermediates, UnixTime::now())
            .map(|_| ())
    }
}

impl ClientCertVerifier for SpiffeVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        match Identity::from_leaf(end_entity, &self.trust_domain) {
            Ok(_) => Ok(verified),
            Err(e) => Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(e)),
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Everything TLS-related read from disk, ready to build rustls configs for
/// any transport.
#[derive(Debug)]
pub struct TlsMaterial {
    /// The client verifier (shared by TCP and, later, QUIC).
    pub verifier: Arc<SpiffeVerifier>,
    /// The gateway's own chain.
    pub chain: Vec<CertificateDer<'static>>,
    /// The gateway's own key.
    pub key: Arc<PrivateKeyDer<'static>>,
    /// notAfter of our own leaf (Unix seconds), for the expiry metric.
    pub own_not_after: i64,
    /// CAs that HTTPS upstreams must chain to.
    pub upstream_roots: Arc<RootCertStore>,
    /// The oldest thisUpdate among the CRLs (Unix seconds), for the CRL
    /// age metric; `None` without CRLs.
    pub crl_this_update: Option<i64>,
    /// SHA-256 over every file this was loaded from: a reload whose files
    /// hash the same keeps this material (and open connections are not
    /// verified again for nothing).
    pub source_hash: [u8; 32],
}

/// SHA-256 over the names and contents of every TLS file of `config`
/// (unreadable files hash as absent: the load then reports them).
pub fn files_hash(config: &Config) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut paths = vec![&config.trust_bundle, &config.cert, &config.key];
    paths.extend(config.upstream_ca.iter());
    paths.extend(config.crls.iter());
    for p in paths {
        h.update(p.as_os_str().as_encoded_bytes());
        match std::fs::read(p) {
            Ok(bytes) => {
                h.update((bytes.len() as u64).to_be_bytes());
                h.update(&bytes);
            }
            Err(_) => h.update(u64::MAX.to_be_bytes()),
        }
    }
    h.finalize().into()
}

impl TlsMaterial {
    /// Reads the trust bundle, CRLs, certificate and key named in `config`.
    pub fn load(config: &Config) -> Result<TlsMaterial, Error> {
        let store = Arc::new(read_roots("trust bundle", &config.trust_bundle)?);
        let upstream_roots = match &config.upstream_ca {
            Some(path) => Arc::new(read_roots("upstream CA bundle", path)?),
            None => store.clone(),
        };
        let mut crls = Vec::new();
        for path in &config.crls {
            crls.extend(read_crls(path)?);
        }
        let crl_this_update = crls
            .iter()
            .filter_map(|c| {
                x509_parser::revocation_list::CertificateRevocationList::from_der(c.as_ref())
                    .ok()
                    .map(|(_, crl)| crl.last_update().timestamp())
            })
            .min();
        let mut builder = WebPkiClientVerifier::builder_with_provider(store, provider());
        if !crls.is_empty() {
            // The CA publishes one CRL, from the issuing intermediate, for
            // the leaves; the intermediate itself is not covered by a CRL.
            // A leaf whose issuer has no CRL here is still refused (unknown
            // revocation status fails closed).
            builder = builder.with_crls(crls).only_check_end_entity_revocation();
        }
        let inner = builder
            .build()
            .map_err(|e| Error::Tls(format!("client verifier: {e}")))?;
        let verifier = Arc::new(SpiffeVerifier {
            inner,
            trust_domain: config.trust_domain.clone(),
        });
        let chain = read_certs("certificate", &config.cert)?;
        let own_not_after = chain
            .first()
            .and_then(|c| {
                x509_parser::parse_x509_certificate(c)
                    .ok()
                    .map(|(_, c)| c.validity().not_after.timestamp())
            })
            .unwrap_or(0);
        let source_hash = files_hash(config);
        // The key is read here and only here; it is never logged.
        let key = PrivateKeyDer::from_pem_file(&config.key).map_err(|e| Error::Pem {
            what: "private key",
            path: config.key.clone(),
            message: e.to_string(),
        })?;
        Ok(TlsMaterial {
            verifier,
            chain,
            key: Arc::new(key),
            own_not_after,
            upstream_roots,
            crl_this_update,
            source_hash,
        })
    }

    /// The rustls config of the TCP listener: ALPN h2 + http/1.1, TLS 1.3
    /// and (unless `tls13_only`) 1.2, client certificate required.
    pub fn server_config(&self, tls13_only: bool) -> Result<Arc<ServerConfig>, Error> {
        self.server_config_with(tls13_only, &[b"h2", b"http/1.1"])
    }

    /// A server config with the same verifier, certificate and key for any
    /// transport: the QUIC listener asks for `&[b"h3"]` with TLS 1.3 only.
    pub fn server_config_with(
        &self,
        tls13_only: bool,
        alpn: &[&[u8]],
    ) -> Result<Arc<ServerConfig>, Error> {
        let versions: &[&'static rustls::SupportedProtocolVersion] = if tls13_only {
            &[&rustls::version::TLS13]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let verifier: Arc<dyn ClientCertVerifier> = self.verifier.clone();
        let mut sc = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| Error::Tls(format!("own certificate/key: {e}")))?;
        sc.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(sc))
    }
}

fn read_roots(what: &'static str, path: &Path) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    for root in read_certs(what, path)? {
        store.add(root).map_err(|e| Error::Pem {
            what,
            path: path.to_path_buf(),
            message: format!("unusable CA certificate: {e}"),
        })?;
    }
    Ok(store)
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::File {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Pem {
            what,
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(Error::Pem {
            what,
            path: path.to_path_buf(),
            message: "no CERTIFICATE blocks".into(),
        });
    }
    Ok(certs)
}

impl TlsMaterial {
    /// The TLS client config for HTTPS upstreams: verify against
    /// `upstream_roots`, present our own certificate when asked (mTLS),
    /// offer h2 and http/1.1.
    pub fn upstream_client_config(&self) -> Result<Arc<rustls::ClientConfig>, Error> {
        let mut cc = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(self.upstream_roots.clone())
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| Error::Tls(format!("own certificate/key for upstreams: {e}")))?;
        cc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cc))
    }
}

/// Reads a CRL file in PEM (one or more blocks) or DER.
fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::File {
        what: "CRL",
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.starts_with(b"-----") || bytes.iter().take(64).all(|b| b.is_ascii()) {
        let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Pem {
                what: "CRL",
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        if crls.is_empty() {
            return Err(Error::Pem {
                what: "CRL",
                path: path.to_path_buf(),
                message: "no X509 CRL blocks".into(),
            });
        }
        Ok(crls)
    } else {
        Ok(vec![CertificateRevocationListDer::from(bytes)])
    }
}

/// A short, stable reason for a failed handshake (metrics label and log).
pub fn handshake_failure_reason(e: &std::io::Error) -> &'static str {
    let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return match e.kind() {
            std::io::ErrorKind::TimedOut => "timeout",
            std::io::ErrorKind::UnexpectedEof => "eof",
            _ => "io",
        };
    };
    match inner {
        rustls::Error::NoCertificatesPresented => "no_certificate",
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "not_yet_valid"
            }
            CertificateError::Revoked => "revoked",
            CertificateError::UnknownIssuer => "unknown_issuer",
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "wrong_purpose"
            }
            CertificateError::Other(_) => "identity",
            _ => "bad_certificate",
        },
        rustls::Error::NoApplicationProtocol => "alpn",
        rustls::Error::PeerIncompatible(_) => "incompatible",
        _ => "tls",
    }
}
