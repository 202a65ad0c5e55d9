//! Who a verified client certificate says it is.
//!
//! Transport-agnostic on purpose: the TCP listener's verifier and the QUIC
//! listener (issue 6) both call [`Identity::from_leaf`] on the DER leaf, so
//! the two cannot disagree about who is talking.
//!
//! The SPIFFE ID syntax is ward-ca's ([`ward_ca::identity::SpiffeId`]), so
//! the CA and the gateway cannot disagree about what a valid ID is.

use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

pub use ward_ca::identity::{SpiffeId, TrustDomain};

use crate::Error;

/// Humans and workloads, told apart by the SPIFFE path (`/user/…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalType {
    /// `spiffe://<td>/user/<id>`.
    User,
    /// Any other path (services, hosts).
    Workload,
}

impl PrincipalType {
    /// The value policies see in `ward:PrincipalType`.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalType::User => "user",
            PrincipalType::Workload => "workload",
        }
    }
}

/// The identity of a client, taken from its verified leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The one SPIFFE ID of the certificate.
    pub spiffe_id: SpiffeId,
    /// The same ID as text (kept to avoid formatting it on every request).
    pub uri: String,
    /// The rfc822Name SAN, for humans.
    pub email: Option<String>,
    /// Serial number, lowercase hex without leading zero bytes.
    pub serial_hex: String,
    /// SHA-256 of the leaf's DER.
    pub fingerprint: [u8; 32],
    /// notAfter as Unix seconds.
    pub not_after: i64,
}

impl Identity {
    /// Extracts the identity from a leaf certificate and checks that it has
    /// exactly one URI SAN, a SPIFFE ID in `trust_domain` (X509-SVID rule).
    /// Chain, validity and revocation are the verifier's job, not this one.
    pub fn from_leaf(der: &[u8], trust_domain: &TrustDomain) -> Result<Identity, Error> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| Error::Identity(format!("unparsable certificate: {e}")))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| Error::Identity(format!("bad subjectAltName: {e}")))?;
        let mut uris = Vec::new();
        let mut email = None;
        if let Some(san) = san {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(u) => uris.push(*u),
                    GeneralName::RFC822Name(e) if email.is_none() => {
                        email = Some((*e).to_string());
                    }
                    _ => {}
                }
            }
        }
        let uri = match uris.as_slice() {
            [one] => *one,
            [] => return Err(Error::Identity("certificate has no SPIFFE URI SAN".into())),
            _ => {
                return Err(Error::Identity(format!(
                    "certificate has {} URI SANs; exactly one SPIFFE ID is allowed",
                    uris.len()
                )));
            }
        };
        let spiffe_id = SpiffeId::parse(uri).map_err(|e| Error::Identity(e.to_string()))?;
        if spiffe_id.trust_domain() != trust_domain {
            return Err(Error::Identity(format!(
                "{spiffe_id} is not in trust domain {trust_domain}"
            )));
        }
        let serial = cert.raw_serial();
        let first = serial.iter().position(|b| *b != 0).unwrap_or(serial.len());
        let serial_hex = match serial.get(first..) {
            Some(s) if !s.is_empty() => hex::encode(s),
            _ => "00".to_string(),
        };
        Ok(Identity {
            uri: spiffe_id.to_string(),
            spiffe_id,
            email,
            serial_hex,
            fingerprint: Sha256::digest(der).into(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// `ward:PrincipalType`.
    pub fn principal_type(&self) -> PrincipalType {
        if self.spiffe_id.is_user() {
            PrincipalType::User
        } else {
            PrincipalType::Workload
        }
    }

    /// The SPIFFE ID as text: the policy principal.
    pub fn principal(&self) -> &str {
        &self.uri
    }

    /// Fingerprint as lowercase hex (logs, policy context).
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SanType};

    fn leaf(sans: Vec<SanType>) -> Vec<u8> {
        let mut p = CertificateParams::default();
        p.subject_alt_names = sans;
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0, 0x1a, 0x2b]));
        let key = KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    fn td() -> TrustDomain {
        TrustDomain::new("corp.example").unwrap()
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(s.try_into().unwrap())
    }

    #[test]
    fn one_spiffe_id_in_domain_is_accepted() {
        let der = leaf(vec![
            uri("spiffe://corp.example/user/alice"),
            SanType::Rfc822Name("alice@corp.example".try_into().unwrap()),
        ]);
        let id = Identity::from_leaf(&der, &td()).unwrap();
        assert_eq!(id.principal(), "spiffe://corp.example/user/alice");
        assert_eq!(id.spiffe_id.path(), "/user/alice");
        assert_eq!(id.email.as_deref(), Some("alice@corp.example"));
        assert_eq!(id.serial_hex, "1a2b");
        assert_eq!(id.principal_type(), PrincipalType::User);
        assert_eq!(id.fingerprint_hex().len(), 64);
    }

    #[test]
    fn none_two_or_foreign_are_refused() {
        let none = leaf(vec![SanType::DnsName("a.example".try_into().unwrap())]);
        assert!(Identity::from_leaf(&none, &td()).is_err());
        let two = leaf(vec![
            uri("spiffe://corp.example/a"),
            uri("spiffe://corp.example/b"),
        ]);
        assert!(Identity::from_leaf(&two, &td()).is_err());
        let foreign = leaf(vec![uri("spiffe://evil.example/a")]);
        assert!(Identity::from_leaf(&foreign, &td()).is_err());
        let https = leaf(vec![uri("https://corp.example/a")]);
        assert!(Identity::from_leaf(&https, &td()).is_err());
        assert!(Identity::from_leaf(b"junk", &td()).is_err());
    }
}
