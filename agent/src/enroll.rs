//! `ward agent enroll`: first contact with the CA. Pins the root by
//! fingerprint, generates the key here (it never leaves the host), sends a
//! CSR with the one-time token, and installs the result.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ward_ca::client::{CaClient, RootPin};

use crate::cert::{self, CertInfo};
use crate::{Error, sink, state};

/// How long one CA call may take before it counts as a failure.
pub const CA_TIMEOUT: Duration = Duration::from_secs(30);

/// A secret that never shows in `Debug` or logs.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// Reads a token from a file (trimmed); warns when others may read it.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        use std::os::unix::fs::PermissionsExt;
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
        if let Ok(m) = std::fs::metadata(path)
            && m.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "the token file is readable by group or others; anyone who reads it first can enrol as you (chmod 600)"
            );
        }
        let t = text.trim();
        if t.is_empty() {
            return Err(Error::bad_file(path, "the token file is empty"));
        }
        Ok(Self(t.to_string()))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// What `ward agent enroll` was asked to do.
#[derive(Debug, Clone)]
pub struct Enrollment {
    /// CA URL.
    pub ca: String,
    /// `sha256:<hex>` of the CA root.
    pub fingerprint: String,
    /// The one-time token.
    pub token: Token,
    /// Identity directory to create or replace.
    pub out: PathBuf,
    /// SPIFFE ID to ask for; needed only when the token grants a pattern.
    pub identity: Option<String>,
}

/// A fresh P-256 key and a CSR for it (naming `identity` if given).
pub fn key_and_csr(identity: Option<&str>) -> Result<(rcgen::KeyPair, String), Error> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| Error::Key(e.to_string()))?;
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(id) = identity {
        let uri = rcgen::string::Ia5String::try_from(id)
            .map_err(|_| Error::Key(format!("`{id}` is not an ASCII URI")))?;
        p.subject_alt_names = vec![rcgen::SanType::URI(uri)];
    }
    let csr = p
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(|e| Error::Key(e.to_string()))?;
    Ok((key, csr))
}

/// Runs a CA call with [`CA_TIMEOUT`].
pub(crate) async fn bounded<T>(
    f: impl Future<Output = Result<T, ward_ca::Error>>,
) -> Result<T, Error> {
    tokio::time::timeout(CA_TIMEOUT, f)
        .await
        .map_err(|_| Error::Timeout(CA_TIMEOUT.as_secs()))?
        .map_err(Error::from)
}

/// Checks that the chain the CA issued is for `key`.
pub(crate) fn check_issued(chain_pem: &str, key: &rcgen::KeyPair) -> Result<CertInfo, Error> {
    let info = cert::leaf_info(chain_pem, Path::new("<CA answer>"))?;
    if info.spki != rcgen::PublicKeyData::subject_public_key_info(key) {
        return Err(Error::BadAnswer(
            "the issued certificate is not for the key this agent generated".into(),
        ));
    }
    Ok(info)
}

/// Enrols: returns the installed certificate.
pub async fn enroll(e: &Enrollment) -> Result<CertInfo, Error> {
    crate::tls::install_provider();
    let want = cert::normalise_fingerprint(&e.fingerprint);
    let client = CaClient::new(&e.ca, RootPin::Fingerprint(want.clone()))?;
    let bundle = match bounded(client.bundle()).await {
        Ok(b) => b,
        Err(err) => {
            // The client refuses an unpinned root before sending anything;
            // learn which root it was so the message shows both.
            if let Some(actual) = crate::tls::presented_root_fingerprint(&e.ca).await
                && actual != want
            {
                return Err(Error::FingerprintMismatch {
                    url: e.ca.clone(),
                    expected: want,
                    actual,
                });
            }
            return Err(err);
        }
    };
    let root = cert::chain_ders(&bundle.root_pem, Path::new("<CA bundle>"))?;
    let root_fp = root
        .first()
        .map(|r| cert::fingerprint(r.as_ref()))
        .unwrap_or_default();
    if root_fp != want {
        return Err(Error::FingerprintMismatch {
            url: e.ca.clone(),
            expected: want,
            actual: root_fp,
        });
    }
    let (key, csr) = key_and_csr(e.identity.as_deref())?;
    let issued = bounded(client.enroll(&e.token.0, &csr)).await?;
    check_issued(&issued.chain_pem, &key)?;
    let info = sink::install(&e.out, &issued.chain_pem, &key.serialize_pem())?;
    sink::write_atomic(
        &sink::bundle_path(&e.out),
        bundle.root_pem.as_bytes(),
        0o644,
    )?;
    let now = cert::unix(std::time::SystemTime::now());
    state::save(
        &e.out,
        &state::State {
            last_success: Some(now),
            ..state::State::default()
        },
    )?;
    tracing::info!(
        identity = %info.identity,
        serial = %info.serial,
        dir = %e.out.display(),
        "enrolled"
    );
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_redacted() {
        let t = Token("ward1.abc.secret".into());
        assert!(!format!("{t:?}").contains("secret"));
    }

    #[test]
    fn csr_names_the_identity_and_keys_are_fresh() {
        let (k1, csr) = key_and_csr(Some("spiffe://corp.example/x")).unwrap();
        let (k2, _) = key_and_csr(None).unwrap();
        assert!(csr.contains("BEGIN CERTIFICATE REQUEST"));
        assert_ne!(k1.serialize_pem(), k2.serialize_pem());
    }
}
