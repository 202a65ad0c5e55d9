//! CSR validation: the requester proves possession of a key; the CA takes
//! only that public key from the CSR and decides every other field itself.
//!
//! Refused, each with its own error code: PEM/DER that does not parse, a
//! bad signature, weak or unusual keys (only P-256, P-384, Ed25519 and RSA
//! ≥ 2048 bits), SHA-1 signatures, any attribute other than an extension
//! request, and any requested extension other than subjectAltName (whose
//! URI, DNS and e-mail names are checked against the grant by the caller).

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::Error;

/// What a valid CSR contributes: its key, and the names it asks for.
#[derive(Debug, Clone)]
pub struct CsrRequest {
    /// The requester's public key, for the certificate.
    pub public_key: rcgen::SubjectPublicKeyInfo,
    /// DER SubjectPublicKeyInfo (to compare keys on renewal).
    pub spki_der: Vec<u8>,
    /// URI SANs requested.
    pub uris: Vec<String>,
    /// DNS SANs requested.
    pub dns_names: Vec<String>,
    /// rfc822Name SANs requested.
    pub emails: Vec<String>,
}

const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const P256: &str = "1.2.840.10045.3.1.7";
const P384: &str = "1.3.132.0.34";
const ED25519: &str = "1.3.101.112";
const RSA: &str = "1.2.840.113549.1.1.1";
const EXTENSION_REQUEST: &str = "1.2.840.113549.1.9.14";
const SUBJECT_ALT_NAME: &str = "2.5.29.17";
const GOOD_SIGNATURES: &[&str] = &[
    "1.2.840.10045.4.3.2",   // ecdsa-with-SHA256
    "1.2.840.10045.4.3.3",   // ecdsa-with-SHA384
    "1.2.840.10045.4.3.4",   // ecdsa-with-SHA512
    "1.3.101.112",           // Ed25519
    "1.2.840.113549.1.1.11", // sha256WithRSAEncryption
    "1.2.840.113549.1.1.12", // sha384WithRSAEncryption
    "1.2.840.113549.1.1.13", // sha512WithRSAEncryption
];

/// Parses a PEM (`CERTIFICATE REQUEST`) CSR and validates it.
pub fn parse_pem(pem: &str) -> Result<CsrRequest, Error> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|_| {
        Error::bad(
            "csr_malformed",
            "the CSR is not PEM (expected -----BEGIN CERTIFICATE REQUEST-----)",
        )
    })?;
    if parsed.label != "CERTIFICATE REQUEST" && parsed.label != "NEW CERTIFICATE REQUEST" {
        return Err(Error::bad(
            "csr_malformed",
            format!(
                "the PEM block is a `{}`, not a `CERTIFICATE REQUEST`",
                parsed.label
            ),
        ));
    }
    parse_der(&parsed.contents)
}

/// Validates a DER CSR.
pub fn parse_der(der: &[u8]) -> Result<CsrRequest, Error> {
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| Error::bad("csr_malformed", format!("the CSR does not parse: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::bad("csr_malformed", "the CSR has trailing bytes"));
    }
    let sig_alg = csr.signature_algorithm.algorithm.to_id_string();
    if !GOOD_SIGNATURES.contains(&sig_alg.as_str()) {
        return Err(Error::bad(
            "csr_weak_signature",
            format!(
                "the CSR is signed with algorithm {sig_alg}; use ECDSA with SHA-256/384/512, Ed25519 or RSA with SHA-256 or longer"
            ),
        ));
    }
    let info = &csr.certification_request_info;
    // Key first: a key we refuse gets that reason even if our verifier
    // could not check its signature (e.g. P-521).
    check_key(&info.subject_pki)?;
    csr.verify_signature().map_err(|_| {
        Error::bad(
            "csr_bad_signature",
            "the CSR's signature does not verify with its own public key (was it altered, or signed with another key?)",
        )
    })?;

    let mut req = CsrRequest {
        public_key: rcgen::SubjectPublicKeyInfo::from_der(info.subject_pki.raw)
            .map_err(|e| Error::bad("csr_weak_key", format!("unsupported public key: {e}")))?,
        spki_der: info.subject_pki.raw.to_vec(),
        uris: Vec::new(),
        dns_names: Vec::new(),
        emails: Vec::new(),
    };
    for attr in info.iter_attributes() {
        let oid = attr.oid.to_id_string();
        if oid != EXTENSION_REQUEST {
            return Err(Error::bad(
                "csr_unexpected_attribute",
                format!(
                    "the CSR carries attribute {oid}; only an extension request with subjectAltName is accepted"
                ),
            ));
        }
        let ParsedCriAttribute::ExtensionRequest(ext_req) = attr.parsed_attribute() else {
            return Err(Error::bad(
                "csr_malformed",
                "the CSR's extension request does not parse",
            ));
        };
        for ext in &ext_req.extensions {
            let oid = ext.oid.to_id_string();
            if oid != SUBJECT_ALT_NAME {
                return Err(Error::bad(
                    "csr_unexpected_extension",
                    format!(
                        "the CSR requests extension {oid}{}; the CA sets key usage, EKU and basic constraints itself, so only subjectAltName may be requested",
                        extension_name(&oid)
                    ),
                ));
            }
            let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() else {
                return Err(Error::bad(
                    "csr_malformed",
                    "the CSR's subjectAltName does not parse",
                ));
            };
            for name in &san.general_names {
                match name {
                    GeneralName::URI(u) => req.uris.push((*u).to_string()),
                    GeneralName::DNSName(d) => req.dns_names.push(d.to_ascii_lowercase()),
                    GeneralName::RFC822Name(e) => req.emails.push((*e).to_string()),
                    other => {
                        return Err(Error::bad(
                            "csr_unexpected_extension",
                            format!(
                                "the CSR's subjectAltName has a name of a kind the CA does not issue: {other}"
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(req)
}

fn extension_name(oid: &str) -> &'static str {
    match oid {
        "2.5.29.15" => " (keyUsage)",
        "2.5.29.37" => " (extendedKeyUsage)",
        "2.5.29.19" => " (basicConstraints)",
        "2.5.29.30" => " (nameConstraints)",
        _ => "",
    }
}

fn check_key(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<(), Error> {
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            if curve == P256 || curve == P384 {
                Ok(())
            } else {
                Err(Error::bad(
                    "csr_weak_key",
                    format!("EC curve {curve} is not accepted; use P-256 or P-384"),
                ))
            }
        }
        ED25519 => Ok(()),
        RSA => {
            let bits = match spki.parsed() {
                Ok(PublicKey::RSA(rsa)) => rsa_bits(rsa.modulus),
                _ => 0,
            };
            if bits >= 2048 {
                Ok(())
            } else {
                Err(Error::bad(
                    "csr_weak_key",
                    format!("RSA key of {bits} bits is too weak; at least 2048 bits are required"),
                ))
            }
        }
        other => Err(Error::bad(
            "csr_weak_key",
            format!(
                "public key algorithm {other} is not accepted; use P-256, P-384, Ed25519 or RSA ≥ 2048"
            ),
        )),
    }
}

fn rsa_bits(modulus: &[u8]) -> usize {
    let start = modulus
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(modulus.len());
    let m = modulus.get(start..).unwrap_or(&[]);
    match m.first() {
        Some(&b) => (m.len() - 1) * 8 + (8 - b.leading_zeros() as usize),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, KeyUsagePurpose, PublicKeyData, SanType};

    fn csr_with(params: CertificateParams, key: &KeyPair) -> String {
        params.serialize_request(key).unwrap().pem().unwrap()
    }

    #[test]
    fn accepts_the_supported_key_types() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            let key = KeyPair::generate_for(alg).unwrap();
            let mut p = CertificateParams::default();
            p.subject_alt_names = vec![SanType::URI("spiffe://corp.example/a".try_into().unwrap())];
            let req = parse_pem(&csr_with(p, &key)).unwrap();
            assert_eq!(req.uris, vec!["spiffe://corp.example/a"]);
            assert_eq!(req.spki_der, key.subject_public_key_info());
        }
    }

    #[test]
    fn refuses_extensions_other_than_san() {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let e = parse_pem(&csr_with(p, &key)).unwrap_err();
        assert_eq!(e.code(), "csr_unexpected_extension");
        assert!(e.to_string().contains("keyUsage"), "{e}");
    }

    #[test]
    fn refuses_a_tampered_csr() {
        let key = KeyPair::generate().unwrap();
        let p = CertificateParams::new(vec!["a.example".to_string()]).unwrap();
        let der = p.serialize_request(&key).unwrap().der().to_vec();
        let mut bad = der.clone();
        // Flip a byte inside the DNS name (the signed part).
        let pos = bad.windows(9).position(|w| w == b"a.example").unwrap();
        bad[pos] = b'b';
        assert_eq!(parse_der(&bad).unwrap_err().code(), "csr_bad_signature");
        assert!(parse_der(&der).is_ok());
        assert_eq!(parse_der(&der[..10]).unwrap_err().code(), "csr_malformed");
        assert_eq!(parse_pem("hello").unwrap_err().code(), "csr_malformed");
    }

    #[test]
    fn rsa_bit_counting() {
        let mut m = vec![0u8, 0x80];
        m.extend([0u8; 255]);
        assert_eq!(rsa_bits(&m), 2048);
        assert_eq!(rsa_bits(&[0x01, 0, 0]), 17);
    }
}
