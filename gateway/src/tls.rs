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
    /// Chain, validity, EKU and, with CRLs, the revocation of every
    /// certificate of the chain whose issuer has a CRL here. Unknown status
    /// is allowed here because webpki has one policy for the whole chain and
    /// most roots publish no CRL; [`LeafRevocation`] closes it for the leaf.
    inner: Arc<dyn ClientCertVerifier>,
    /// With CRLs only.
    leaf: Option<LeafRevocation>,
    trust_domain: crate::identity::TrustDomain,
}

/// Keeps the leaf failing closed: its status must be known, from a CRL of
/// its own issuer, even though `inner` lets unknown status through.
#[derive(Debug)]
struct LeafRevocation {
    /// Issuer names (DER, exactly the bytes webpki compares) of the loaded
    /// CRLs without an issuing distribution point. Such a CRL is
    /// authoritative for every certificate of its issuer, so when the leaf's
    /// issuer is in here `inner` has already checked the leaf against one
    /// (and a CRL whose signature does not verify failed `inner`).
    full_scope_issuers: Vec<Vec<u8>>,
    /// Leaf-only revocation with unknown status denied (the verifier of
    /// before chain checking). Run only when no full-scope CRL of the leaf's
    /// issuer is loaded: then the leaf is either refused (no CRL of its
    /// issuer) or covered by a scoped CRL, whose scope only webpki decides.
    strict: Arc<dyn ClientCertVerifier>,
}

impl LeafRevocation {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let covered = webpki::EndEntityCert::try_from(end_entity).is_ok_and(|leaf| {
            self.full_scope_issuers
                .iter()
                .any(|issuer| issuer.as_slice() == leaf.issuer())
        });
        if covered {
            return Ok(());
        }
        self.strict
            .verify_client_cert(end_entity, intermediates, now)
            .map(|_| ())
    }
}

impl SpiffeVerifier {
    /// The verifier for clients chaining to `roots`, checked against `crls`
    /// (none: no revocation checking), with identities in `trust_domain`.
    pub fn new(
        roots: Arc<RootCertStore>,
        crls: Vec<CertificateRevocationListDer<'static>>,
        trust_domain: crate::identity::TrustDomain,
    ) -> Result<SpiffeVerifier, Error> {
        let built = |b: rustls::server::ClientCertVerifierBuilder| {
            b.build()
                .map_err(|e| Error::Tls(format!("client verifier: {e}")))
        };
        let builder = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
        if crls.is_empty() {
            return Ok(SpiffeVerifier {
                inner: built(builder)?,
                leaf: None,
                trust_domain,
            });
        }
        let mut full_scope_issuers = Vec::new();
        for crl in &crls {
            let crl = webpki::CertRevocationList::from(
                webpki::OwnedCertRevocationList::from_der(crl.as_ref())
                    .map_err(|e| Error::Tls(format!("client verifier: unusable CRL: {e}")))?,
            );
            if crl.issuing_distribution_point().is_none() {
                full_scope_issuers.push(crl.issuer().to_vec());
            }
        }
        let strict = built(
            WebPkiClientVerifier::builder_with_provider(roots, provider())
                .with_crls(crls.clone())
                .only_check_end_entity_revocation(),
        )?;
        let inner = built(builder.with_crls(crls).allow_unknown_revocation_status())?;
        Ok(SpiffeVerifier {
            inner,
            leaf: Some(LeafRevocation {
                full_scope_issuers,
                strict,
            }),
            trust_domain,
        })
    }

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
        if let Some(leaf) = &self.leaf {
            leaf.check(end_entity, intermediates, now)?;
        }
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
fn files_hash(config: &Config) -> [u8; 32] {
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
        // Hashed before anything is read: a file replaced during the load
        // then leaves a hash that no longer matches, so the next reload
        // loads again. Hashed after, the material could hold the old CRL
        // under the new file's hash, and every later reload would keep it.
        let source_hash = files_hash(config);
        let bundle = read_certs("trust bundle", &config.trust_bundle)?;
        if !config.crls.is_empty() {
            warn_unrevocable_anchors(&config.trust_bundle, &bundle);
        }
        let store = Arc::new(roots("trust bundle", &config.trust_bundle, bundle)?);
        let upstream_roots = match &config.upstream_ca {
            Some(path) => {
                let what = "upstream CA bundle";
                Arc::new(roots(what, path, read_certs(what, path)?)?)
            }
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
        // With CRLs, every certificate of the presented chain is checked
        // against the CRL of its issuer when one is loaded: the leaf against
        // the issuing intermediate's (the CA's), an intermediate against its
        // parent's (a root's CRL revoking it). The leaf's issuer must have a
        // CRL here or the leaf is refused (unknown status fails closed); an
        // intermediate whose issuer publishes none passes. Trust anchors (the
        // bundle) are never checked. Without CRLs nothing is checked.
        let verifier = Arc::new(SpiffeVerifier::new(
            store,
            crls,
            config.trust_domain.clone(),
        )?);
        let chain = read_certs("certificate", &config.cert)?;
        let own_not_after = chain
            .first()
            .and_then(|c| {
                x509_parser::parse_x509_certificate(c)
                    .ok()
                    .map(|(_, c)| c.validity().not_after.timestamp())
            })
            .unwrap_or(0);
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
    /// and (unless `tls13_only`) 1.2, client certificate required, and the
    /// client's SNI recorded for [`crate::tls_stream::ServerTls::accept`]
    /// (TCP routes are chosen by it).
    pub fn server_config(&self, tls13_only: bool) -> Result<Arc<ServerConfig>, Error> {
        let mut sc =
            Arc::unwrap_or_clone(self.server_config_with(tls13_only, &[b"h2", b"http/1.1"])?);
        sc.cert_resolver = Arc::new(crate::tls_stream::SniRecorder(sc.cert_resolver.clone()));
        Ok(Arc::new(sc))
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

fn roots(
    what: &'static str,
    path: &Path,
    certs: Vec<CertificateDer<'static>>,
) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    for root in certs {
        store.add(root).map_err(|e| Error::Pem {
            what,
            path: path.to_path_buf(),
            message: format!("unusable CA certificate: {e}"),
        })?;
    }
    Ok(store)
}

/// An intermediate in the trust bundle is a trust anchor, so the CRL of
/// its parent is never consulted for it: an operator who revokes it there
/// would believe it revoked. Said at every load, as the bundle may change.
fn warn_unrevocable_anchors(bundle: &Path, certs: &[CertificateDer<'_>]) {
    for der in certs {
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(der)
            && cert.subject().as_raw() != cert.issuer().as_raw()
        {
            tracing::warn!(
                bundle = %bundle.display(),
                subject = %cert.subject(),
                issuer = %cert.issuer(),
                "the trust bundle holds a certificate that is not a root; as a trust anchor \
                 it is never checked for revocation: keep only roots in the trust bundle"
            );
        }
    }
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
        check_crls(path, crls)
    } else {
        check_crls(path, vec![CertificateRevocationListDer::from(bytes)])
    }
}

/// Refuses a CRL webpki cannot use here, naming its file (the verifier
/// builder would refuse it too, but without saying which file).
fn check_crls(
    path: &Path,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Vec<CertificateRevocationListDer<'static>>, Error> {
    for crl in &crls {
        webpki::BorrowedCertRevocationList::from_der(crl.as_ref()).map_err(|e| Error::Pem {
            what: "CRL",
            path: path.to_path_buf(),
            message: format!("unusable CRL: {e}"),
        })?;
    }
    Ok(crls)
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

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
        CrlDistributionPoint, CrlIssuingDistributionPoint, DnType, ExtendedKeyUsagePurpose, IsCa,
        Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams,
        SanType, SerialNumber,
    };
    use std::time::Duration;
    use time::OffsetDateTime;

    const CLIENT: &str = "spiffe://corp.example/ns/test/sa/client";

    fn td() -> crate::identity::TrustDomain {
        crate::identity::TrustDomain::new("corp.example").unwrap()
    }

    fn ca_params(cn: &str, serial: u64, path_len: Option<u8>) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = match path_len {
            Some(n) => IsCa::Ca(BasicConstraints::Constrained(n)),
            None => IsCa::Ca(BasicConstraints::Unconstrained),
        };
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.serial_number = Some(SerialNumber::from(serial));
        let now = OffsetDateTime::now_utc();
        p.not_before = now - Duration::from_secs(3600);
        p.not_after = now + Duration::from_secs(86400);
        p
    }

    /// root → intermediate → client leaf, as the CA issues them.
    struct Chain {
        root: CertifiedIssuer<'static, KeyPair>,
        inter: CertifiedIssuer<'static, KeyPair>,
        inter_serial: SerialNumber,
        leaf: CertificateDer<'static>,
        leaf_serial: SerialNumber,
    }

    impl Chain {
        /// With `leaf_dp`, the leaf names that CRL distribution point.
        fn new(leaf_dp: Option<&str>) -> Chain {
            let root = CertifiedIssuer::self_signed(
                ca_params("root", 1, None),
                KeyPair::generate().unwrap(),
            )
            .unwrap();
            let inter = CertifiedIssuer::signed_by(
                ca_params("issuing", 2, Some(0)),
                KeyPair::generate().unwrap(),
                &root,
            )
            .unwrap();
            let mut p = CertificateParams::default();
            p.distinguished_name.push(DnType::CommonName, "client");
            p.subject_alt_names = vec![SanType::URI(CLIENT.try_into().unwrap())];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.serial_number = Some(SerialNumber::from(3u64));
            if let Some(uri) = leaf_dp {
                p.crl_distribution_points = vec![CrlDistributionPoint {
                    uris: vec![uri.into()],
                }];
            }
            let leaf = p.signed_by(&KeyPair::generate().unwrap(), &inter).unwrap();
            Chain {
                root,
                inter,
                inter_serial: SerialNumber::from(2u64),
                leaf: leaf.der().clone(),
                leaf_serial: SerialNumber::from(3u64),
            }
        }

        fn roots(&self) -> Arc<RootCertStore> {
            let mut store = RootCertStore::empty();
            store.add(self.root.der().clone()).unwrap();
            Arc::new(store)
        }

        fn verify(
            &self,
            crls: Vec<CertificateRevocationListDer<'static>>,
        ) -> Result<(), rustls::Error> {
            let v = SpiffeVerifier::new(self.roots(), crls, td()).unwrap();
            v.verify_client_cert(&self.leaf, &[self.inter.der().clone()], UnixTime::now())?;
            // Re-checking a stored chain must agree with the handshake.
            v.recheck(&self.leaf, &[self.inter.der().clone()])
        }
    }

    /// A CRL from `issuer` revoking `revoked`, scoped to `idp` if given.
    fn crl(
        issuer: &Issuer<'_, KeyPair>,
        revoked: &[&SerialNumber],
        idp: Option<&str>,
    ) -> CertificateRevocationListDer<'static> {
        let now = OffsetDateTime::now_utc();
        CertificateRevocationListParams {
            this_update: now - Duration::from_secs(60),
            next_update: now + Duration::from_secs(3600),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: idp.map(|uri| CrlIssuingDistributionPoint {
                distribution_point: CrlDistributionPoint {
                    uris: vec![uri.into()],
                },
                scope: None,
            }),
            revoked_certs: revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: (*s).clone(),
                    revocation_time: now - Duration::from_secs(30),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(issuer)
        .unwrap()
        .der()
        .clone()
    }

    fn is_revoked(r: Result<(), rustls::Error>) -> bool {
        matches!(
            r,
            Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
        )
    }

    fn is_unknown_status(r: &Result<(), rustls::Error>) -> bool {
        matches!(
            r,
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownRevocationStatus
            ))
        )
    }

    #[test]
    fn without_crls_a_good_chain_is_accepted() {
        let c = Chain::new(None);
        c.verify(vec![]).unwrap();
    }

    #[test]
    fn leaf_checked_against_the_intermediates_crl() {
        let c = Chain::new(None);
        c.verify(vec![crl(&c.inter, &[], None)]).unwrap();
        let r = c.verify(vec![crl(&c.inter, &[&c.leaf_serial], None)]);
        assert!(is_revoked(r.clone()), "{r:?}");
    }

    #[test]
    fn intermediate_revoked_by_the_root_refuses_its_leaves() {
        let c = Chain::new(None);
        let inter_crl = crl(&c.inter, &[], None);
        let root_clean = crl(&c.root, &[], None);
        let root_revoking = crl(&c.root, &[&c.inter_serial], None);
        // Either order of the CRLs in the config.
        c.verify(vec![inter_crl.clone(), root_clean.clone()])
            .unwrap();
        c.verify(vec![root_clean, inter_crl.clone()]).unwrap();
        let r = c.verify(vec![inter_crl.clone(), root_revoking.clone()]);
        assert!(is_revoked(r.clone()), "{r:?}");
        let r = c.verify(vec![root_revoking, inter_crl]);
        assert!(is_revoked(r.clone()), "{r:?}");
        // And the handshake failure says so.
        let e = std::io::Error::new(std::io::ErrorKind::InvalidData, r.unwrap_err());
        assert_eq!(handshake_failure_reason(&e), "revoked");
    }

    #[test]
    fn root_without_crl_leaves_the_intermediate_unknown_and_accepted() {
        let c = Chain::new(None);
        c.verify(vec![crl(&c.inter, &[], None)]).unwrap();
    }

    #[test]
    fn leaf_without_a_crl_of_its_issuer_is_refused() {
        let c = Chain::new(None);
        let r = c.verify(vec![crl(&c.root, &[], None)]);
        assert!(is_unknown_status(&r), "{r:?}");
    }

    /// A CRL under the issuer's name but signed by another key (forged, or
    /// from a re-keyed CA) counts as neither present nor clean.
    #[test]
    fn crl_whose_signature_does_not_verify_is_refused() {
        let c = Chain::new(None);
        let forged_inter = Issuer::new(
            ca_params("issuing", 2, Some(0)),
            KeyPair::generate().unwrap(),
        );
        let forged_root = Issuer::new(ca_params("root", 1, None), KeyPair::generate().unwrap());
        for crls in [
            vec![crl(&forged_inter, &[], None)],
            vec![crl(&c.inter, &[], None), crl(&forged_root, &[], None)],
        ] {
            let r = c.verify(crls);
            assert!(
                matches!(
                    r,
                    Err(rustls::Error::InvalidCertRevocationList(
                        rustls::CertRevocationListError::BadSignature
                    ))
                ),
                "{r:?}"
            );
        }
    }

    /// A CRL with an issuing distribution point covers only certificates
    /// naming that point: webpki decides, and the leaf still fails closed.
    #[test]
    fn scoped_crl_of_the_leafs_issuer_counts_only_when_it_covers_the_leaf() {
        let c = Chain::new(Some("http://ca.test/issuing.crl"));
        c.verify(vec![crl(&c.inter, &[], Some("http://ca.test/issuing.crl"))])
            .unwrap();
        let r = c.verify(vec![crl(
            &c.inter,
            &[&c.leaf_serial],
            Some("http://ca.test/issuing.crl"),
        )]);
        assert!(is_revoked(r.clone()), "{r:?}");
        let r = c.verify(vec![crl(&c.inter, &[], Some("http://ca.test/other.crl"))]);
        assert!(is_unknown_status(&r), "{r:?}");
    }

    /// The same through the config and files the gateway loads.
    #[test]
    fn load_checks_the_whole_chain_and_names_a_bad_crl_file() {
        let c = Chain::new(None);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("root.pem"), c.root.pem()).unwrap();
        let mut sp = CertificateParams::new(vec!["gw.test".to_string()]).unwrap();
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let sk = KeyPair::generate().unwrap();
        let server = sp.signed_by(&sk, &c.inter).unwrap();
        std::fs::write(d.join("gw.pem"), server.pem() + &c.inter.pem()).unwrap();
        std::fs::write(d.join("gw.key"), sk.serialize_pem()).unwrap();
        let write_crl = |name: &str, der: CertificateRevocationListDer<'_>| {
            std::fs::write(d.join(name), der.as_ref()).unwrap();
        };
        write_crl("inter.crl", crl(&c.inter, &[], None));
        write_crl("root.crl", crl(&c.root, &[&c.inter_serial], None));
        let path = d.join("gateway.toml");
        std::fs::write(
            &path,
            "trust_domain = \"corp.example\"\ntrust_bundle = \"root.pem\"\ncert = \"gw.pem\"\n\
             key = \"gw.key\"\npolicy_dir = \"policies\"\ncrls = [\"inter.crl\", \"root.crl\"]\n",
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        let inter = [c.inter.der().clone()];
        let tls = TlsMaterial::load(&config).unwrap();
        assert!(is_revoked(tls.verifier.recheck(&c.leaf, &inter)));
        write_crl("root.crl", crl(&c.root, &[], None));
        let tls = TlsMaterial::load(&config).unwrap();
        tls.verifier.recheck(&c.leaf, &inter).unwrap();
        std::fs::write(d.join("root.crl"), b"\x30\x03\x02\x01\x00").unwrap();
        let e = TlsMaterial::load(&config).unwrap_err().to_string();
        assert!(e.contains("root.crl") && e.contains("CRL"), "{e}");
    }
}
