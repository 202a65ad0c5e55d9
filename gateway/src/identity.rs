//! Who a verified client certificate says it is.
//!
//! Transport-agnostic on purpose: the TCP listener's verifier and the QUIC
//! listener (issue 6) both call [`Identity::from_leaf`] on the DER leaf, so
//! the two cannot disagree about who is talking.
//!
//! ward-ca has no shared SPIFFE type yet (`ca/src/identity.rs` did not exist
//! when this was written); [`SpiffeId`] is small and should move there when
//! it does, so that the CA and the gateway parse identities the same way.

use std::fmt;

use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::Error;

/// A SPIFFE ID, `spiffe://<trust domain>/<path>`, checked for syntax.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    uri: String,
    td_len: usize,
}

impl SpiffeId {
    /// Parses and checks a SPIFFE ID (SPIFFE ID spec: lowercase trust
    /// domain, non-empty path of segments without `.`/`..`, no query,
    /// fragment, port or userinfo).
    pub fn parse(uri: &str) -> Result<SpiffeId, String> {
        let rest = uri
            .strip_prefix("spiffe://")
            .ok_or_else(|| format!("{uri:?} is not a spiffe:// URI"))?;
        let (td, path) = rest
            .split_once('/')
            .ok_or_else(|| format!("{uri:?} has no path"))?;
        if !crate::config::valid_trust_domain(td) {
            return Err(format!("{uri:?} has an invalid trust domain"));
        }
        for seg in path.split('/') {
            let ok = !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
            if !ok {
                return Err(format!("{uri:?} has an invalid path segment {seg:?}"));
            }
        }
        Ok(SpiffeId {
            uri: uri.to_string(),
            td_len: td.len(),
        })
    }

    /// The trust domain, e.g. `corp.example`.
    pub fn trust_domain(&self) -> &str {
        self.uri
            .get("spiffe://".len().."spiffe://".len() + self.td_len)
            .unwrap_or("")
    }

    /// The path, starting with `/`.
    pub fn path(&self) -> &str {
        self.uri
            .get("spiffe://".len() + self.td_len..)
            .unwrap_or("")
    }

    /// The whole URI.
    pub fn as_str(&self) -> &str {
        &self.uri
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

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
    pub fn from_leaf(der: &[u8], trust_domain: &str) -> Result<Identity, Error> {
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
        let spiffe_id = SpiffeId::parse(uri).map_err(Error::Identity)?;
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
            spiffe_id,
            email,
            serial_hex,
            fingerprint: Sha256::digest(der).into(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// `ward:PrincipalType`.
    pub fn principal_type(&self) -> PrincipalType {
        if self.spiffe_id.path().starts_with("/user/") {
            PrincipalType::User
        } else {
            PrincipalType::Workload
        }
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

    fn uri(s: &str) -> SanType {
        SanType::URI(s.try_into().unwrap())
    }

    #[test]
    fn one_spiffe_id_in_domain_is_accepted() {
        let der = leaf(vec![
            uri("spiffe://corp.example/user/alice"),
            SanType::Rfc822Name("alice@corp.example".try_into().unwrap()),
        ]);
        let id = Identity::from_leaf(&der, "corp.example").unwrap();
        assert_eq!(id.spiffe_id.as_str(), "spiffe://corp.example/user/alice");
        assert_eq!(id.spiffe_id.path(), "/user/alice");
        assert_eq!(id.email.as_deref(), Some("alice@corp.example"));
        assert_eq!(id.serial_hex, "1a2b");
        assert_eq!(id.principal_type(), PrincipalType::User);
        assert_eq!(id.fingerprint_hex().len(), 64);
    }

    #[test]
    fn none_two_or_foreign_are_refused() {
        let none = leaf(vec![SanType::DnsName("a.example".try_into().unwrap())]);
        assert!(Identity::from_leaf(&none, "corp.example").is_err());
        let two = leaf(vec![
            uri("spiffe://corp.example/a"),
            uri("spiffe://corp.example/b"),
        ]);
        assert!(Identity::from_leaf(&two, "corp.example").is_err());
        let foreign = leaf(vec![uri("spiffe://evil.example/a")]);
        assert!(Identity::from_leaf(&foreign, "corp.example").is_err());
        let https = leaf(vec![uri("https://corp.example/a")]);
        assert!(Identity::from_leaf(&https, "corp.example").is_err());
        assert!(Identity::from_leaf(b"junk", "corp.example").is_err());
    }

    #[test]
    fn spiffe_syntax() {
        assert!(SpiffeId::parse("spiffe://corp.example/ns/prod/sa/billing").is_ok());
        for bad in [
            "spiffe://corp.example",
            "spiffe://corp.example/",
            "spiffe://Corp.example/a",
            "spiffe://corp.example/a/../b",
            "spiffe://corp.example/a//b",
            "spiffe://corp.example:443/a",
            "spiffe://corp.example/a?x=1",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad}");
        }
    }
}
