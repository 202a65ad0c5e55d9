//! Signed tree heads and the log key.
//!
//! The signed message is fixed-width and domain-separated so that a log
//! signature can never be mistaken for anything else the CA signs:
//!
//! ```text
//! "ward-sth-v1\0" (12 bytes) tree_size:u64 timestamp_ms:u64 root_hash:32 bytes
//! ```
//!
//! Integers are big-endian. The signature is ECDSA P-256 with SHA-256,
//! DER-encoded (what `rcgen::SigningKey::sign` returns for
//! `PKCS_ECDSA_P256_SHA256`, whether the key is a file key or an HSM key).
//! The public key is published as a SubjectPublicKeyInfo PEM
//! (`-----BEGIN PUBLIC KEY-----`), which goes into the trust bundle.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::merkle::Hash;
use crate::Error;

const STH_CONTEXT: &[u8; 12] = b"ward-sth-v1\0";

/// A tree head before signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    /// Number of leaves.
    pub tree_size: u64,
    /// When it was signed, milliseconds since the epoch.
    pub timestamp_ms: u64,
    /// `MTH` of the first `tree_size` leaves.
    pub root_hash: Hash,
}

impl TreeHead {
    /// The exact bytes that are signed.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + 8 + 8 + 32);
        out.extend_from_slice(STH_CONTEXT);
        out.extend_from_slice(&self.tree_size.to_be_bytes());
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        out.extend_from_slice(&self.root_hash);
        out
    }

    /// Sign with the log key (file key or PKCS#11, via rcgen's trait).
    pub fn sign(self, key: &dyn rcgen::SigningKey) -> Result<SignedTreeHead, Error> {
        let signature = key
            .sign(&self.signed_bytes())
            .map_err(|e| Error::LogKey(format!("signing the tree head failed: {e}")))?;
        Ok(SignedTreeHead {
            head: self,
            signature,
        })
    }
}

/// A tree head with the log's signature over [`TreeHead::signed_bytes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTreeHead {
    /// What was signed.
    pub head: TreeHead,
    /// DER ECDSA signature.
    pub signature: Vec<u8>,
}

/// JSON shape of a signed tree head (`GET /v1/log/sth`, and the file
/// `ward audit sth` writes for `--from-sth`):
///
/// ```json
/// {"tree_size": 12, "timestamp": 1796083200000,
///  "root_hash": "<base64 32 bytes>", "signature": "<base64 DER>"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SthJson {
    /// Number of leaves.
    pub tree_size: u64,
    /// Milliseconds since the epoch.
    pub timestamp: u64,
    /// Base64 root hash.
    pub root_hash: String,
    /// Base64 DER signature.
    pub signature: String,
}

impl From<&SignedTreeHead> for SthJson {
    fn from(s: &SignedTreeHead) -> Self {
        Self {
            tree_size: s.head.tree_size,
            timestamp: s.head.timestamp_ms,
            root_hash: B64.encode(s.head.root_hash),
            signature: B64.encode(&s.signature),
        }
    }
}

impl TryFrom<&SthJson> for SignedTreeHead {
    type Error = Error;

    fn try_from(j: &SthJson) -> Result<Self, Error> {
        Ok(Self {
            head: TreeHead {
                tree_size: j.tree_size,
                timestamp_ms: j.timestamp,
                root_hash: decode_hash(&j.root_hash, "root_hash")?,
            },
            signature: B64
                .decode(&j.signature)
                .map_err(|e| Error::LogVerify(format!("signature is not base64: {e}")))?,
        })
    }
}

/// Decode one base64 SHA-256 hash.
pub fn decode_hash(text: &str, what: &str) -> Result<Hash, Error> {
    let bytes = B64
        .decode(text)
        .map_err(|e| Error::LogVerify(format!("{what} is not base64: {e}")))?;
    Hash::try_from(bytes.as_slice()).map_err(|_| {
        Error::LogVerify(format!(
            "{what} is {} bytes, a SHA-256 hash is 32",
            bytes.len()
        ))
    })
}

/// Encode one hash as base64.
pub fn encode_hash(h: &Hash) -> String {
    B64.encode(h)
}

/// The log's public key: ECDSA P-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPublicKey {
    spki_der: Vec<u8>,
    point: Vec<u8>,
}

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";

impl LogPublicKey {
    /// From a DER SubjectPublicKeyInfo; only ECDSA P-256 is accepted.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, Error> {
        let (rest, spki) = SubjectPublicKeyInfo::from_der(der)
            .map_err(|e| Error::LogKey(format!("not a SubjectPublicKeyInfo: {e}")))?;
        if !rest.is_empty() {
            return Err(Error::LogKey("trailing bytes after the public key".into()));
        }
        let alg = spki.algorithm.algorithm.to_id_string();
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string());
        if alg != OID_EC_PUBLIC_KEY || curve.as_deref() != Some(OID_P256) {
            return Err(Error::LogKey(format!(
                "the log key must be ECDSA P-256 (got algorithm {alg}, curve {curve:?})"
            )));
        }
        Ok(Self {
            spki_der: der.to_vec(),
            point: spki.subject_public_key.data.to_vec(),
        })
    }

    /// From `-----BEGIN PUBLIC KEY-----` PEM.
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        let mut inside = false;
        let mut b64 = String::new();
        for line in pem.lines() {
            let line = line.trim();
            if line == "-----BEGIN PUBLIC KEY-----" {
                inside = true;
            } else if line == "-----END PUBLIC KEY-----" {
                let der = B64
                    .decode(&b64)
                    .map_err(|e| Error::LogKey(format!("public key PEM is not base64: {e}")))?;
                return Self::from_spki_der(&der);
            } else if inside {
                b64.push_str(line);
            }
        }
        Err(Error::LogKey(
            "no -----BEGIN PUBLIC KEY----- block found (the log key is an SPKI PEM)".into(),
        ))
    }

    /// The public half of a signing key (file key or HSM key).
    pub fn from_signing_key(key: &dyn rcgen::SigningKey) -> Result<Self, Error> {
        Self::from_spki_der(&key.subject_public_key_info())
    }

    /// `-----BEGIN PUBLIC KEY-----` PEM, for the trust bundle.
    pub fn to_pem(&self) -> String {
        crate::certutil::pem_block("PUBLIC KEY", &self.spki_der)
    }

    /// DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// Log id: SHA-256 of the SPKI DER (as in RFC 6962), hex.
    pub fn log_id(&self) -> String {
        hex::encode(Sha256::digest(&self.spki_der))
    }

    /// Check a tree head's signature.
    pub fn verify(&self, sth: &SignedTreeHead) -> Result<(), Error> {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(&sth.head.signed_bytes(), &sth.signature)
            .map_err(|_| {
                Error::LogVerify(format!(
                    "the signature on the tree head of size {} is not the log key's",
                    sth.head.tree_size
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_reject_any_change() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pk = LogPublicKey::from_signing_key(&key).unwrap();
        let pk = LogPublicKey::from_pem(&pk.to_pem()).unwrap();
        let sth = TreeHead {
            tree_size: 5,
            timestamp_ms: 1_700_000_000_000,
            root_hash: [7u8; 32],
        }
        .sign(&key)
        .unwrap();
        pk.verify(&sth).unwrap();
        let json = SthJson::from(&sth);
        let back = SignedTreeHead::try_from(&json).unwrap();
        pk.verify(&back).unwrap();
        for change in 0..3 {
            let mut bad = sth.clone();
            match change {
                0 => bad.head.tree_size += 1,
                1 => bad.head.timestamp_ms += 1,
                _ => bad.head.root_hash[0] ^= 1,
            }
            assert!(pk.verify(&bad).is_err());
        }
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let other = LogPublicKey::from_signing_key(&other).unwrap();
        assert!(other.verify(&sth).is_err());
        assert_ne!(other.log_id(), pk.log_id());
    }

    #[test]
    fn only_p256_keys_are_accepted() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        assert!(LogPublicKey::from_signing_key(&key).is_err());
        assert!(LogPublicKey::from_pem("hello").is_err());
    }
}
