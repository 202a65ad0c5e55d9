//! Fetching the CRL from the CA on an interval (`[crl_fetch]`).
//!
//! The fetched CRL is written atomically to a file that is also one of the
//! `crls`, and the gateway reloads: the CRL reaches the verifier by exactly
//! the same path as a CRL file dropped in place by an operator. A CRL older
//! than the one in force is refused (no rollback by a replayed answer), and
//! when the CA cannot be reached the last good CRL stays in force.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ward_ca::client::{CaClient, RootPin};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::Error;
use crate::config::CrlFetch;
use crate::server::Shared;

/// thisUpdate (Unix seconds) of a DER or PEM CRL.
fn this_update(bytes: &[u8]) -> Option<i64> {
    let der = if bytes.starts_with(b"-----") {
        use rustls::pki_types::CertificateRevocationListDer;
        use rustls::pki_types::pem::PemObject;
        CertificateRevocationListDer::from_pem_slice(bytes)
            .ok()?
            .as_ref()
            .to_vec()
    } else {
        bytes.to_vec()
    };
    CertificateRevocationList::from_der(&der)
        .ok()
        .map(|(_, c)| c.last_update().timestamp())
}

fn client(fetch: &CrlFetch, trust_bundle: &Path) -> Result<CaClient, Error> {
    let pin = match &fetch.root_pin {
        Some(p) => RootPin::Fingerprint(p.clone()),
        None => {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let root = CertificateDer::from_pem_file(trust_bundle).map_err(|e| Error::Pem {
                what: "trust bundle",
                path: trust_bundle.to_path_buf(),
                message: e.to_string(),
            })?;
            RootPin::Der(root.as_ref().to_vec())
        }
    };
    Ok(CaClient::new(&fetch.url, pin)?)
}

/// Fetches once; writes the file if the CRL is new. Returns whether the
/// file changed.
pub async fn fetch_once(fetch: &CrlFetch, trust_bundle: &Path) -> Result<bool, Error> {
    let client = client(fetch, trust_bundle)?;
    let timeout = Duration::from_secs(fetch.timeout_secs);
    let der = tokio::time::timeout(timeout, client.crl())
        .await
        .map_err(|_| Error::Upstream {
            upstream: fetch.url.clone(),
            message: format!("no CRL within {}s", timeout.as_secs()),
        })??;
    let Some(new) = this_update(&der) else {
        return Err(Error::Upstream {
            upstream: fetch.url.clone(),
            message: "the CA answered with something that is not a CRL".into(),
        });
    };
    let current = std::fs::read(&fetch.file).ok();
    if current.as_deref() == Some(der.as_slice()) {
        return Ok(false);
    }
    if let Some(old) = current.as_deref().and_then(this_update)
        && new < old
    {
        return Err(Error::Upstream {
            upstream: fetch.url.clone(),
            message: "the CA's CRL is older than the one in force; keeping ours".into(),
        });
    }
    let tmp = fetch.file.with_extension("crl.tmp");
    let io = |source| Error::File {
        what: "CRL",
        path: fetch.file.clone(),
        source,
    };
    std::fs::write(&tmp, &der).map_err(io)?;
    std::fs::rename(&tmp, &fetch.file).map_err(io)?;
    Ok(true)
}

/// Runs forever: fetch, and reload when the CRL changed.
pub async fn fetch_loop(shared: Arc<Shared>) {
    let Some(fetch) = shared.config.crl_fetch.clone() else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_secs(fetch.interval_secs.max(1)));
    tick.tick().await;
    loop {
        tick.tick().await;
        match fetch_once(&fetch, &shared.config.trust_bundle).await {
            Ok(true) => {
                tracing::info!(url = %fetch.url, "new CRL from the CA");
                shared
                    .metrics
                    .reloads
                    .with_label_values(&["crl_fetch"])
                    .inc();
                crate::reload::reload(&shared);
            }
            Ok(false) => {}
            Err(e) => {
                shared
                    .metrics
                    .reload_failures
                    .with_label_values(&["crl_fetch"])
                    .inc();
                tracing::warn!(url = %fetch.url, error = %e.report(), "CRL fetch failed; the last good CRL stays in force");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_update_reads_der_and_pem_and_refuses_junk() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::default();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::KeyCertSign,
        ];
        let issuer = rcgen::Issuer::new(ca, key);
        let t = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let crl = rcgen::CertificateRevocationListParams {
            this_update: t,
            next_update: t + time::Duration::hours(1),
            crl_number: rcgen::SerialNumber::from(7u64),
            issuing_distribution_point: None,
            revoked_certs: vec![],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .unwrap();
        assert_eq!(this_update(crl.der()), Some(1_800_000_000));
        assert_eq!(
            this_update(crl.pem().unwrap().as_bytes()),
            Some(1_800_000_000)
        );
        assert_eq!(this_update(b"<html>"), None);
    }
}
