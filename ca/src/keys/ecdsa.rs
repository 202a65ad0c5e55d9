//! Encodings PKCS#11 and X.509 disagree on.
//!
//! A token's CKM_ECDSA returns the raw `r || s` pair; X.509 and TLS carry
//! `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }`. CKA_EC_POINT is
//! (per PKCS#11 2.40, and in SoftHSM2) the point wrapped in an OCTET STRING,
//! while SubjectPublicKeyInfo wants the bare uncompressed point.

/// DER `OBJECT IDENTIFIER` of prime256v1, the CKA_EC_PARAMS for P-256.
pub const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Converts a raw `r || s` signature into DER. `None` if the length is odd
/// or the integers would need long-form lengths (never for P-256/P-384).
pub fn raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let r = der_uint(r);
    let s = der_uint(s);
    let body = r.len() + s.len();
    if body > 127 {
        return None;
    }
    let mut out = Vec::with_capacity(body + 2);
    out.push(0x30);
    out.push(u8::try_from(body).ok()?);
    out.extend_from_slice(&r);
    out.extend_from_slice(&s);
    Some(out)
}

/// One unsigned big-endian integer as a minimal DER INTEGER.
fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let trimmed = bytes.get(first..).unwrap_or(&[]);
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.is_empty() || trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    let mut out = vec![0x02, u8::try_from(content.len()).unwrap_or(0)];
    out.extend_from_slice(&content);
    out
}

/// Unwraps CKA_EC_POINT to the bare uncompressed P-256 point (65 bytes,
/// starting 0x04). Accepts both the OCTET STRING form and the raw form that
/// some tokens return.
pub fn unwrap_p256_point(attr: &[u8]) -> Option<Vec<u8>> {
    match attr {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 && rest.first() == Some(&0x04) => {
            Some(rest.to_vec())
        }
        [0x04, ..] if attr.len() == 65 => Some(attr.to_vec()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_encodes_high_bit_and_leading_zeros() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r needs a 0x00 pad
        raw[31] = 1;
        raw[63] = 5; // s = 5 after stripping 31 leading zeros
        let der = raw_to_der(&raw).unwrap();
        assert_eq!(der[0], 0x30);
        assert_eq!(&der[2..5], &[0x02, 33, 0x00]);
        assert_eq!(&der[der.len() - 3..], &[0x02, 1, 5]);
        assert_eq!(der[1] as usize, der.len() - 2);
        assert!(raw_to_der(&[1, 2, 3]).is_none());
    }

    #[test]
    fn der_matches_aws_lc_verification() {
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
            UnparsedPublicKey,
        };
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let kp =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        for i in 0..50u8 {
            let msg = [i; 10];
            let raw = kp.sign(&rng, &msg).unwrap();
            let der = raw_to_der(raw.as_ref()).unwrap();
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, kp.public_key().as_ref())
                .verify(&msg, &der)
                .unwrap();
        }
    }

    #[test]
    fn unwraps_ec_points() {
        let mut point = vec![0x04];
        point.extend([7u8; 64]);
        let mut wrapped = vec![0x04, 0x41];
        wrapped.extend(&point);
        assert_eq!(unwrap_p256_point(&wrapped).unwrap(), point);
        assert_eq!(unwrap_p256_point(&point).unwrap(), point);
        assert!(unwrap_p256_point(&[0x04, 0x02, 1, 2]).is_none());
    }
}
