//! Reading certificates and keys: what the agent needs to know about the
//! files it manages (serial, identity, validity) and whether a key belongs
//! to a certificate.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::Error;

/// The facts about a leaf certificate the agent schedules and reports on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Serial, lowercase hex without leading zero bytes (as the CA prints it).
    pub serial: String,
    /// The SPIFFE ID in the URI SAN (empty if there is none).
    pub identity: String,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// SubjectPublicKeyInfo, DER: compared with the key file.
    pub spki: Vec<u8>,
}

impl CertInfo {
    /// Seconds from `now` to expiry (negative once expired).
    pub fn seconds_to_expiry(&self, now: SystemTime) -> f64 {
        signed_secs(self.not_after, now)
    }
}

/// `a - b` in seconds, negative when `a` is earlier.
pub(crate) fn signed_secs(a: SystemTime, b: SystemTime) -> f64 {
    match a.duration_since(b) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

fn to_system(t: i64) -> SystemTime {
    match u64::try_from(t) {
        Ok(s) => SystemTime::UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

/// Unix seconds of a time (0 before the epoch).
pub fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The certificates of a PEM chain, in order.
pub fn chain_ders(pem: &str, origin: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::bad_file(origin, format!("not a PEM certificate list: {e}")))?;
    if certs.is_empty() {
        return Err(Error::bad_file(origin, "holds no certificate"));
    }
    Ok(certs)
}

/// Parses the first certificate of a PEM chain.
pub fn leaf_info(pem: &str, origin: &Path) -> Result<CertInfo, Error> {
    let certs = chain_ders(pem, origin)?;
    let first = certs
        .first()
        .ok_or_else(|| Error::bad_file(origin, "holds no certificate"))?;
    der_info(first.as_ref(), origin)
}

/// Parses one DER certificate.
pub fn der_info(der: &[u8], origin: &Path) -> Result<CertInfo, Error> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::bad_file(origin, format!("certificate does not parse: {e}")))?;
    let identity = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|san| {
            san.value.general_names.iter().find_map(|n| match n {
                x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
                _ => None,
            })
        })
        .unwrap_or_default();
    Ok(CertInfo {
        serial: ward_ca::authority::serial_hex(cert.raw_serial()),
        identity,
        not_before: to_system(cert.validity().not_before.timestamp()),
        not_after: to_system(cert.validity().not_after.timestamp()),
        spki: cert.public_key().raw.to_vec(),
    })
}

/// The SubjectPublicKeyInfo (DER) of a PEM private key.
pub fn key_spki(key_pem: &str, origin: &Path) -> Result<Vec<u8>, Error> {
    let key = rcgen::KeyPair::from_pem(key_pem)
        .map_err(|e| Error::bad_file(origin, format!("private key does not parse: {e}")))?;
    Ok(rcgen::PublicKeyData::subject_public_key_info(&key))
}

/// Checks that `key_pem` is the private key of the leaf in `chain_pem`.
pub fn check_pair(chain_pem: &str, key_pem: &str, origin: &Path) -> Result<CertInfo, Error> {
    let info = leaf_info(chain_pem, origin)?;
    if key_spki(key_pem, origin)? != info.spki {
        return Err(Error::bad_file(
            origin,
            "the private key does not belong to the certificate (mismatched pair); re-enrol",
        ));
    }
    Ok(info)
}

/// `sha256:<hex>` of a DER certificate, as `ward ca init` prints it.
pub fn fingerprint(der: &[u8]) -> String {
    ward_ca::authority::fingerprint(der)
}

/// Normalises a fingerprint for comparison (lowercase, no colons inside the hex).
pub(crate) fn normalise_fingerprint(fp: &str) -> String {
    let fp = fp.trim().to_ascii_lowercase();
    match fp.strip_prefix("sha256:") {
        Some(hex) => format!("sha256:{}", hex.replace(':', "")),
        None => fp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed() -> (String, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.subject_alt_names = vec![rcgen::SanType::URI(
            "spiffe://corp.example/ns/a/sa/b".try_into().unwrap(),
        )];
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0, 0x0a, 0xbc]));
        (p.self_signed(&key).unwrap().pem(), key)
    }

    #[test]
    fn reads_serial_identity_and_matches_its_key() {
        let (pem, key) = self_signed();
        let info = check_pair(&pem, &key.serialize_pem(), Path::new("x")).unwrap();
        assert_eq!(info.serial, "0abc");
        assert_eq!(info.identity, "spiffe://corp.example/ns/a/sa/b");
        assert!(info.not_after > info.not_before);
    }

    #[test]
    fn mismatched_key_is_refused() {
        let (pem, _) = self_signed();
        let other = rcgen::KeyPair::generate().unwrap();
        let e = check_pair(&pem, &other.serialize_pem(), Path::new("x")).unwrap_err();
        assert!(e.to_string().contains("mismatched"), "{e}");
    }

    #[test]
    fn fingerprints_compare_loosely() {
        assert_eq!(normalise_fingerprint(" SHA256:AB:cd "), "sha256:abcd");
    }
}
