//! A typed async client for the CA's API, for the agent and the gateway.
//!
//! Trust on first contact is by pin: the caller knows the root's SHA-256
//! fingerprint (`sha256:<hex>`, printed by `ward ca init`), the CA sends
//! its root in the TLS chain, and the client accepts the server only if a
//! certificate in that chain has the pinned fingerprint *and* the server
//! certificate verifies against it (rustls-webpki). After that the root is
//! known ([`CaClient::root_der`]) and can be saved.

use std::sync::{Arc, Mutex};

use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::Error;
pub use crate::authority::Issued;
pub use crate::server::routes::{BundleResponse, RevokeResponse};
use crate::server::routes::{EnrollRequest, RenewRequest, RevokeRequest};

/// Upper bound on one API call (connect, TLS, request, answer).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How the client trusts the CA.
#[derive(Debug, Clone)]
pub enum RootPin {
    /// `sha256:<hex>` of the root certificate (first contact).
    Fingerprint(String),
    /// The root certificate itself, DER (saved from an earlier contact).
    Der(Vec<u8>),
}

fn parse_fingerprint(s: &str) -> Result<[u8; 32], Error> {
    let hex_part = s.strip_prefix("sha256:").ok_or_else(|| {
        Error::Transport(format!(
            "root pin `{s}` must look like sha256:<64 hex digits>"
        ))
    })?;
    let bytes = hex::decode(hex_part.replace(':', ""))
        .map_err(|_| Error::Transport(format!("root pin `{s}` is not hex")))?;
    bytes
        .try_into()
        .map_err(|_| Error::Transport(format!("root pin `{s}` is not 32 bytes")))
}

/// Verifies the server against a pinned root found in the presented chain.
#[derive(Debug)]
struct PinnedRoot {
    pin: [u8; 32],
    found: Mutex<Option<Vec<u8>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedRoot {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let root = intermediates
            .iter()
            .find(|c| Sha256::digest(c.as_ref()).as_slice() == self.pin)
            .ok_or_else(|| {
                rustls::Error::General(
                    "no certificate in the CA's chain matches the pinned root fingerprint".into(),
                )
            })?;
        let mut roots = RootCertStore::empty();
        roots
            .add(root.clone().into_owned())
            .map_err(|e| rustls::Error::General(format!("pinned root unusable: {e}")))?;
        let inner = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&self.provider),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        let ok = inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        if let Ok(mut f) = self.found.lock() {
            *f = Some(root.to_vec());
        }
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client for one CA.
#[derive(Clone)]
pub struct CaClient {
    host: String,
    port: u16,
    pin: RootPin,
    verifier: Arc<PinnedRoot>,
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for CaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaClient")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

fn pem_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Transport(format!("certificate PEM: {e}")))
}

impl CaClient {
    /// A client for `https://host:port`, trusting the CA by `pin`.
    pub fn new(url: &str, pin: RootPin) -> Result<Self, Error> {
        crate::server::install_crypto_provider();
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| Error::Transport(format!("CA URL `{url}` must start with https://")))?
            .trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h.trim_start_matches('[').trim_end_matches(']').to_string(),
                p.parse()
                    .map_err(|_| Error::Transport(format!("CA URL `{url}` has a bad port")))?,
            ),
            None => (rest.to_string(), 443),
        };
        let pin_bytes = match &pin {
            RootPin::Fingerprint(f) => parse_fingerprint(f)?,
            RootPin::Der(der) => Sha256::digest(der).into(),
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = Arc::new(PinnedRoot {
            pin: pin_bytes,
            found: Mutex::new(None),
            provider: Arc::clone(&provider),
        });
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Transport(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        Ok(Self {
            host,
            port,
            pin,
            verifier,
            tls: Arc::new(tls),
        })
    }

    /// The same client presenting a certificate (for renew and revoke).
    /// `chain_pem` is leaf first; `key_pem` is a PKCS#8/SEC1 PEM key.
    pub fn with_client_cert(&self, chain_pem: &str, key_pem: &str) -> Result<Self, Error> {
        use rustls::pki_types::pem::PemObject;
        let chain = pem_certs(chain_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| Error::Transport(format!("client key PEM: {e}")))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Transport(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(self.verifier.clone())
            .with_client_auth_cert(chain, key)
            .map_err(|e| Error::Transport(format!("client certificate: {e}")))?;
        Ok(Self {
            tls: Arc::new(tls),
            ..self.clone()
        })
    }

    /// The pinned root once a connection has verified it.
    pub fn root_der(&self) -> Option<Vec<u8>> {
        match &self.pin {
            RootPin::Der(d) => Some(d.clone()),
            RootPin::Fingerprint(_) => self.verifier.found.lock().ok().and_then(|f| f.clone()),
        }
    }

    /// One request on a fresh connection, bounded by [`REQUEST_TIMEOUT`] so
    /// an unresponsive CA never hangs an agent or gateway.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), Error> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.request_inner(method, path, body))
            .await
            .map_err(|_| {
                Error::Transport(format!(
                    "no answer from {}:{} within {} s",
                    self.host,
                    self.port,
                    REQUEST_TIMEOUT.as_secs()
                ))
            })?
    }

    async fn request_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), Error> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| {
                Error::Transport(format!("connecting to {}:{}: {e}", self.host, self.port))
            })?;
        let name = ServerName::try_from(self.host.clone())
            .map_err(|e| Error::Transport(format!("server name {}: {e}", self.host)))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
            .connect(name, tcp)
            .await
            .map_err(|e| Error::Transport(format!("TLS with {}: {e}", self.host)))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, format!("{}:{}", self.host, self.port));
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| Error::Transport(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| Error::Transport(e.to_string()))?
            .to_bytes();
        Ok((status, bytes))
    }

    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, Error> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| Error::Transport(e.to_string()))?;
        let (status, bytes) = self.request(method, path, body).await?;
        if !status.is_success() {
            return Err(remote_error(status, &bytes));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Transport(format!("unexpected answer from the CA: {e}")))
    }

    /// `GET /v1/bundle`.
    pub async fn bundle(&self) -> Result<BundleResponse, Error> {
        self.call(Method::GET, "/v1/bundle", None::<&()>).await
    }

    /// `POST /v1/enroll`.
    pub async fn enroll(&self, token: &str, csr_pem: &str) -> Result<Issued, Error> {
        let body = EnrollRequest {
            token: token.into(),
            csr: csr_pem.into(),
        };
        self.call(Method::POST, "/v1/enroll", Some(&body)).await
    }

    /// `POST /v1/renew` (needs [`with_client_cert`](Self::with_client_cert)).
    pub async fn renew(&self, csr_pem: &str) -> Result<Issued, Error> {
        let body = RenewRequest {
            csr: csr_pem.into(),
        };
        self.call(Method::POST, "/v1/renew", Some(&body)).await
    }

    /// `POST /v1/revoke` (needs a client certificate).
    pub async fn revoke(
        &self,
        serial: &str,
        reason: Option<&str>,
    ) -> Result<RevokeResponse, Error> {
        let body = RevokeRequest {
            serial: serial.into(),
            reason: reason.map(str::to_string),
        };
        self.call(Method::POST, "/v1/revoke", Some(&body)).await
    }

    /// `GET /v1/crl` (DER).
    pub async fn crl(&self) -> Result<Vec<u8>, Error> {
        let (status, bytes) = self.request(Method::GET, "/v1/crl", None).await?;
        if !status.is_success() {
            return Err(remote_error(status, &bytes));
        }
        Ok(bytes.to_vec())
    }

    /// `GET /v1/log/sth`: the newest signed tree head.
    pub async fn log_sth(&self) -> Result<crate::translog::SthJson, Error> {
        self.call(Method::GET, "/v1/log/sth", None::<&()>).await
    }

    /// `GET /v1/log/proof/inclusion?serial=`: proof that a certificate's
    /// issuance is in the log (check it with
    /// `translog::verify_inclusion_json` and the bundle's log key).
    pub async fn inclusion_proof(
        &self,
        serial: &str,
    ) -> Result<crate::translog::InclusionProofJson, Error> {
        let path = format!(
            "/v1/log/proof/inclusion?serial={}",
            crate::keys::uri::pct_encode(serial)
        );
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/log/proof/consistency?first=&second=`.
    pub async fn consistency_proof(
        &self,
        first: u64,
        second: u64,
    ) -> Result<crate::translog::ConsistencyProofJson, Error> {
        let path = format!("/v1/log/proof/consistency?first={first}&second={second}");
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/certs` (mTLS, `ca:ReadLog`).
    pub async fn certs(
        &self,
        q: &crate::translog::CertQuery,
    ) -> Result<crate::translog::CertsJson, Error> {
        let mut parts = Vec::new();
        for (k, v) in [
            ("identity", &q.identity),
            ("serial", &q.serial),
            ("since", &q.since),
            ("until", &q.until),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}={}", crate::keys::uri::pct_encode(v)));
            }
        }
        let path = format!("/v1/certs?{}", parts.join("&"));
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `GET /metrics` (Prometheus text).
    pub async fn metrics(&self) -> Result<String, Error> {
        let (status, bytes) = self.request(Method::GET, "/metrics", None).await?;
        if !status.is_success() {
            return Err(remote_error(status, &bytes));
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Sends raw bytes to a path (tests of malformed and oversized input).
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> Result<(u16, String), Error> {
        let (status, bytes) = self.request(Method::POST, path, Some(body)).await?;
        Ok((
            status.as_u16(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ))
    }
}

fn remote_error(status: StatusCode, body: &[u8]) -> Error {
    #[derive(serde::Deserialize)]
    struct E {
        error: String,
        code: String,
    }
    match serde_json::from_slice::<E>(body) {
        Ok(e) => Error::Remote {
            status: status.as_u16(),
            code: e.code,
            message: e.error,
        },
        Err(_) => Error::Remote {
            status: status.as_u16(),
            code: "unknown".into(),
            message: String::from_utf8_lossy(body).into_owned(),
        },
    }
}
