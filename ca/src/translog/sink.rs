//! The CA's [`LogSink`](crate::LogSink) on the transparency log: turns the
//! store's certificate records into log entries and appends them durably
//! (the call returns only once the entry is committed).

use super::entry::{Entry, Issued, Requester, RevocationReason, Revoked};
use super::log::Log;
use crate::Error;
use crate::store::CertRecord;

/// The `issued` entry of a stored certificate. The requester string of the
/// store (`token:<id>`, `renew:<serial>`, `cli`, `self`) becomes a
/// [`Requester`].
pub fn issued_entry(cert: &CertRecord) -> Result<Entry, Error> {
    let requester = if let Some(id) = cert.requester.strip_prefix("token:") {
        Requester::Token(id.to_owned())
    } else if let Some(serial) = cert.requester.strip_prefix("renew:") {
        Requester::Renewal(hex::decode(serial).map_err(|e| {
            Error::LogEntry(format!(
                "renewal requester serial {serial:?} is not hex: {e}"
            ))
        })?)
    } else {
        Requester::Other(cert.requester.clone())
    };
    Ok(Entry::Issued(Issued {
        certificate: cert.der.clone(),
        requester,
        profile: cert.profile.clone(),
        time_ms: secs_to_ms(cert.created_at),
    }))
}

/// The `revoked` entry of a stored, revoked certificate.
pub fn revoked_entry(cert: &CertRecord) -> Result<Entry, Error> {
    let serial = hex::decode(&cert.serial)
        .map_err(|e| Error::LogEntry(format!("serial {:?} is not hex: {e}", cert.serial)))?;
    let reason = match cert.reason.as_deref() {
        None | Some("") => RevocationReason::Unspecified,
        Some(name) => RevocationReason::from_name(name)
            .ok_or_else(|| Error::LogEntry(format!("unknown revocation reason {name:?}")))?,
    };
    let at = cert
        .revoked_at
        .ok_or_else(|| Error::LogEntry(format!("certificate {} is not revoked", cert.serial)))?;
    Ok(Entry::Revoked(Revoked {
        serial,
        reason,
        revoked_by: cert.revoked_by.clone().unwrap_or_default(),
        time_ms: secs_to_ms(at),
    }))
}

fn secs_to_ms(s: i64) -> u64 {
    u64::try_from(s).unwrap_or(0).saturating_mul(1000)
}

impl crate::LogSink for Log {
    fn append_issued(&self, cert: &CertRecord) -> Result<(), Error> {
        self.append_blocking(&issued_entry(cert)?).map(|_| ())
    }

    fn append_revoked(&self, cert: &CertRecord) -> Result<(), Error> {
        self.append_blocking(&revoked_entry(cert)?).map(|_| ())
    }
}
