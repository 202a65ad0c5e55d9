//! Small certificate helpers: fingerprints, PEM, serials, key identifiers.

use std::time::Duration;

use rcgen::{KeyIdMethod, PublicKeyData, SerialNumber};
use sha2::{Digest, Sha256};

use crate::Error;

/// How far notBefore is backdated for clock skew.
pub(crate) const BACKDATE: Duration = Duration::from_secs(60);

/// `sha256:<hex>` of DER bytes: how clients pin the root.
pub fn fingerprint(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// PEM-encodes a certificate.
pub fn cert_pem(der: &[u8]) -> String {
    pem_block("CERTIFICATE", der)
}

/// PEM-encodes DER under any label (`X509 CRL`, `PUBLIC KEY`, …), 64
/// base64 characters a line as RFC 7468 asks.
pub fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// 128 random bits, positive, no leading zero byte (so the hex form is
/// stable and 32 characters).
pub(crate) fn random_serial() -> (SerialNumber, String) {
    loop {
        let bytes: [u8; 16] = rand::random();
        if bytes[0] != 0 {
            return (SerialNumber::from_slice(&bytes), hex::encode(bytes));
        }
    }
}

/// notAfter of a DER certificate (unix seconds), if it parses.
pub fn not_after(der: &[u8]) -> Option<i64> {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .map(|(_, c)| c.validity().not_after.timestamp())
}

/// Lowercase hex of a certificate serial without leading zero bytes.
pub fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    hex::encode(raw.get(start..).unwrap_or(&[]))
}

pub(crate) fn ia5(s: &str) -> Result<rcgen::string::Ia5String, Error> {
    rcgen::string::Ia5String::try_from(s)
        .map_err(|_| Error::bad("bad_name", format!("`{s}` is not an ASCII (IA5) string")))
}

/// RFC 7093 method 1: the leftmost 160 bits of SHA-256 over the
/// subjectPublicKey bits (rcgen's `Sha256` hashes the whole SPKI, which
/// pkilint reports as an unknown method).
pub(crate) fn key_id(key: &impl PublicKeyData) -> KeyIdMethod {
    KeyIdMethod::PreSpecified(
        Sha256::digest(key.der_bytes())
            .get(..20)
            .unwrap_or_default()
            .to_vec(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_128_bit_hex() {
        for _ in 0..100 {
            let (_, h) = random_serial();
            assert_eq!(h.len(), 32);
            assert_eq!(serial_hex(&hex::decode(&h).unwrap()), h);
        }
        assert_eq!(serial_hex(&[0, 0x80, 1]), "8001");
    }

    #[test]
    fn serials_keep_a_leading_zero_nibble() {
        assert_eq!(serial_hex(&[0x0b, 0xbf]), "0bbf");
        assert_eq!(serial_hex(&[0x00, 0x0b]), "0b");
    }
}
