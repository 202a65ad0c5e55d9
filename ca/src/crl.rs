//! The CRL: DER, signed by the issuing key, nextUpdate ten minutes out,
//! re-signed on every revocation and at most a minute stale otherwise.

use std::time::Duration;

use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
};
use time::OffsetDateTime;

use crate::Error;
use crate::authority::Ca;
use crate::certutil::BACKDATE;

/// CRL validity (nextUpdate − thisUpdate).
pub const CRL_VALIDITY: Duration = Duration::from_secs(600);
/// A cached CRL older than this is re-signed on the next request, so
/// revocations made by another process (`ward ca revoke`) show up.
const CRL_REFRESH: Duration = Duration::from_secs(60);

/// The last CRL signed.
pub(crate) struct CrlCache {
    pub(crate) der: Vec<u8>,
    pub(crate) signed_at: OffsetDateTime,
}

impl Ca {
    /// Signs a fresh CRL over every revoked, unexpired certificate.
    pub fn refresh_crl(&self) -> Result<Vec<u8>, Error> {
        let t = OffsetDateTime::now_utc();
        let revoked = self.store.revoked_unexpired(t.unix_timestamp())?;
        let mut revoked_certs = Vec::with_capacity(revoked.len());
        for r in &revoked {
            let bytes = hex::decode(&r.serial)
                .map_err(|_| Error::Store(format!("stored serial {} is not hex", r.serial)))?;
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: OffsetDateTime::from_unix_timestamp(r.revoked_at.unwrap_or(0))
                    .unwrap_or(t),
                reason_code: parse_reason(r.reason.as_deref().unwrap_or("unspecified"))
                    .ok()
                    .flatten(),
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: t - BACKDATE,
            next_update: t + CRL_VALIDITY,
            crl_number: SerialNumber::from(self.store.next_crl_number()?),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::PreSpecified(self.issuing_ski.clone()),
        };
        let crl = params.signed_by(&self.issuer).map_err(|e| match e {
            rcgen::Error::RemoteKeyError => Error::Hsm(
                crate::keys::pkcs11::take_last_sign_error()
                    .unwrap_or_else(|| "the issuing key could not sign the CRL".into()),
            ),
            other => Error::from(other),
        })?;
        let der = crl.der().to_vec();
        if let Ok(mut c) = self.crl.write() {
            *c = Some(CrlCache {
                der: der.clone(),
                signed_at: t,
            });
        }
        if let Some(m) = crate::metrics::get() {
            m.crl_age_seconds.set(0.0);
        }
        Ok(der)
    }

    /// Seconds since the cached CRL was signed (also sets the
    /// `ward_ca_crl_age_seconds` gauge); `None` before the first CRL.
    pub fn crl_age(&self) -> Option<f64> {
        let age = self
            .crl
            .read()
            .ok()?
            .as_ref()
            .map(|c| (OffsetDateTime::now_utc() - c.signed_at).as_seconds_f64())?;
        if let Some(m) = crate::metrics::get() {
            m.crl_age_seconds.set(age);
        }
        Some(age)
    }

    /// The current CRL (DER), re-signed when older than a minute.
    pub fn crl(&self) -> Result<Vec<u8>, Error> {
        if let Ok(c) = self.crl.read()
            && let Some(c) = c.as_ref()
        {
            let age = OffsetDateTime::now_utc() - c.signed_at;
            if let Some(m) = crate::metrics::get() {
                m.crl_age_seconds.set(age.as_seconds_f64());
            }
            if age < CRL_REFRESH {
                return Ok(c.der.clone());
            }
        }
        self.refresh_crl()
    }
}

/// RFC 5280 reason names accepted by the API and CLI.
pub fn parse_reason(reason: &str) -> Result<Option<RevocationReason>, Error> {
    Ok(Some(match reason {
        "" | "unspecified" => return Ok(None),
        "keyCompromise" => RevocationReason::KeyCompromise,
        "affiliationChanged" => RevocationReason::AffiliationChanged,
        "superseded" => RevocationReason::Superseded,
        "cessationOfOperation" => RevocationReason::CessationOfOperation,
        "privilegeWithdrawn" => RevocationReason::PrivilegeWithdrawn,
        other => {
            return Err(Error::bad(
                "bad_reason",
                format!(
                    "revocation reason `{other}` must be one of unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn"
                ),
            ));
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons() {
        assert!(parse_reason("keyCompromise").unwrap().is_some());
        assert!(parse_reason("").unwrap().is_none());
        assert_eq!(parse_reason("because").unwrap_err().code(), "bad_reason");
    }
}
