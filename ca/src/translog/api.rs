//! JSON shapes of the log API, and their offline verification.
//!
//! Hashes and byte strings are standard base64 (with padding); sizes,
//! indices and STH timestamps (milliseconds since the epoch) are JSON
//! numbers; certificate times are RFC 3339 strings; serials are lowercase
//! hex ([`super::entry::serial_hex`]).
//!
//! | Endpoint | Function | Shape |
//! |---|---|---|
//! | `GET /v1/log/sth` | [`LogReader::sth`] | [`SthJson`] |
//! | `GET /v1/log/entries?start=&end=` (inclusive) | [`LogReader::entries`] | [`EntriesJson`] |
//! | `GET /v1/log/proof/inclusion?leaf_hash=&tree_size=` | [`LogReader::inclusion_proof`] | [`InclusionProofJson`] |
//! | `GET /v1/log/proof/consistency?first=&second=` | [`LogReader::consistency_proof`] | [`ConsistencyProofJson`] |
//! | `GET /v1/certs?identity=&serial=&since=&until=` | [`LogReader::certs`] | [`CertsJson`] |
//!
//! The proofs carry the signed heads they lead to, so that
//! [`verify_inclusion_json`] and [`verify_consistency_json`] need nothing but
//! the log's public key: anyone can check a proof they were handed.
//!
//! [`LogReader::sth`]: super::reader::LogReader::sth
//! [`LogReader::entries`]: super::reader::LogReader::entries
//! [`LogReader::inclusion_proof`]: super::reader::LogReader::inclusion_proof
//! [`LogReader::consistency_proof`]: super::reader::LogReader::consistency_proof
//! [`LogReader::certs`]: super::reader::LogReader::certs

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::entry::{Entry, Requester, RevocationReason};
use super::merkle::{self, Hash};
use super::sth::{LogPublicKey, SignedTreeHead, SthJson, decode_hash, encode_hash};
use crate::Error;

/// Most entries one `entries` call returns.
pub const MAX_PAGE: u64 = 256;

/// An inclusion proof, as the API returns it and `ward audit check-proof`
/// reads it:
///
/// ```json
/// {"leaf_index": 3, "tree_size": 8, "leaf_hash": "<b64>",
///  "audit_path": ["<b64>", …],
///  "sth": {"tree_size": 8, "timestamp": …, "root_hash": "<b64>", "signature": "<b64>"},
///  "entry": "<b64 canonical entry>"}
/// ```
///
/// `sth` is the signed head of `tree_size` (absent only if the log never
/// signed a head of exactly that size); `entry` lets the holder check that
/// the leaf is the certificate they hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProofJson {
    /// Position of the leaf.
    pub leaf_index: u64,
    /// Size of the tree the proof is for.
    pub tree_size: u64,
    /// Base64 leaf hash.
    pub leaf_hash: String,
    /// Base64 hashes, leaf's sibling first.
    pub audit_path: Vec<String>,
    /// Signed head of `tree_size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sth: Option<SthJson>,
    /// Base64 canonical entry bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
}

/// A consistency proof between two tree sizes:
///
/// ```json
/// {"first": 3, "second": 8, "consistency_path": ["<b64>", …],
///  "first_sth": {…}, "second_sth": {…}}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProofJson {
    /// The smaller size.
    pub first: u64,
    /// The larger size.
    pub second: u64,
    /// Base64 hashes in RFC 9162 order.
    pub consistency_path: Vec<String>,
    /// Signed head of `first`, when the log signed one of that size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_sth: Option<SthJson>,
    /// Signed head of `second`, when the log signed one of that size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_sth: Option<SthJson>,
}

/// A page of entries: `{"entries": [EntryJson, …]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntriesJson {
    /// In index order.
    pub entries: Vec<EntryJson>,
}

/// One entry: the canonical bytes plus their decoded fields for reading.
/// Only `index`, `leaf_hash` and `entry` are authoritative; the rest is a
/// convenience decoded from `entry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryJson {
    /// Leaf index.
    pub index: u64,
    /// Base64 leaf hash.
    pub leaf_hash: String,
    /// Base64 canonical entry bytes.
    pub entry: String,
    /// `issued` or `revoked`.
    pub kind: String,
    /// RFC 3339 time of issuance or revocation.
    pub time: String,
    /// Serial (hex).
    pub serial: String,
    /// SPIFFE ID (issued).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// RFC 3339 notBefore (issued).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// RFC 3339 notAfter (issued).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// Who asked (issued): `{"token": id}` or `{"renewal": serial hex}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<Requester>,
    /// Issuance profile (issued).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Revocation reason (revoked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<RevocationReason>,
    /// Who revoked (revoked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

impl EntryJson {
    /// Decode stored bytes into the JSON view.
    pub fn from_bytes(index: u64, bytes: &[u8]) -> Result<Self, Error> {
        let entry = Entry::decode(bytes)?;
        let f = entry.index_fields()?;
        let mut out = Self {
            index,
            leaf_hash: encode_hash(&merkle::leaf_hash(bytes)),
            entry: B64.encode(bytes),
            kind: f.kind.to_owned(),
            time: rfc3339_ms(f.time_ms),
            serial: f.serial,
            identity: f.identity,
            not_before: f.not_before.map(rfc3339_s),
            not_after: f.not_after.map(rfc3339_s),
            requester: None,
            profile: None,
            reason: None,
            revoked_by: None,
        };
        match entry {
            Entry::Issued(i) => {
                out.requester = Some(i.requester);
                out.profile = Some(i.profile);
            }
            Entry::Revoked(r) => {
                out.reason = Some(r.reason);
                out.revoked_by = Some(r.revoked_by);
            }
        }
        Ok(out)
    }
}

/// `{"certs": [CertJson, …]}`: certificates matching a search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertsJson {
    /// By log index.
    pub certs: Vec<CertJson>,
}

/// One issued certificate and what the log says about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertJson {
    /// Index of its `issued` entry.
    pub index: u64,
    /// Serial (hex).
    pub serial: String,
    /// SPIFFE ID.
    pub identity: Option<String>,
    /// RFC 3339.
    pub not_before: Option<String>,
    /// RFC 3339.
    pub not_after: Option<String>,
    /// RFC 3339 time of issuance.
    pub issued_at: String,
    /// Who asked.
    pub requester: Option<Requester>,
    /// Issuance profile.
    pub profile: Option<String>,
    /// RFC 3339 time of the first revocation, if revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// Reason of the first revocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_reason: Option<RevocationReason>,
    /// Who revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
    /// Base64 leaf hash of the issued entry (for `/v1/log/proof/inclusion`).
    pub leaf_hash: String,
    /// Base64 DER certificate.
    pub certificate: String,
}

/// Query of `/v1/certs`; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertQuery {
    /// Exact SPIFFE ID.
    pub identity: Option<String>,
    /// Serial in any common hex spelling.
    pub serial: Option<String>,
    /// Certificates valid at some point at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Certificates valid at some point at or before this RFC 3339 time.
    pub until: Option<String>,
}

/// RFC 3339 for milliseconds since the epoch.
pub fn rfc3339_ms(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{ms}ms"))
}

/// RFC 3339 for seconds since the epoch.
pub fn rfc3339_s(s: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(s)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{s}s"))
}

/// Parse an RFC 3339 time into seconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Result<i64, Error> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| {
            Error::bad(
                "bad_time",
                format!("{text:?} is not an RFC 3339 time (e.g. 2026-11-30T12:00:00Z): {e}"),
            )
        })
}

/// Parse a leaf hash from a query string leniently: standard or URL-safe
/// base64 (a `+` that the query decoding turned into a space is restored),
/// or 64 hex digits. A malformed value is a 400, not a 500.
pub fn parse_leaf_hash_param(text: &str) -> Result<Hash, Error> {
    use base64::engine::general_purpose::URL_SAFE;
    let t = text.trim().replace(' ', "+");
    let bytes = if t.len() == 64 && t.chars().all(|c| c.is_ascii_hexdigit()) {
        hex::decode(&t).ok()
    } else {
        B64.decode(&t)
            .ok()
            .or_else(|| URL_SAFE.decode(&t).ok())
            .or_else(|| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(&t)
                    .ok()
            })
    };
    bytes
        .and_then(|b| Hash::try_from(b.as_slice()).ok())
        .ok_or_else(|| {
            Error::bad(
                "bad_leaf_hash",
                format!("leaf_hash {text:?} is not a base64 (or hex) SHA-256 hash"),
            )
        })
}

fn decode_path(path: &[String], what: &str) -> Result<Vec<Hash>, Error> {
    path.iter()
        .enumerate()
        .map(|(i, h)| decode_hash(h, &format!("{what}[{i}]")))
        .collect()
}

/// What a verified inclusion proof established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedInclusion {
    /// The signed head the leaf is under.
    pub sth: SignedTreeHead,
    /// The leaf's position.
    pub leaf_index: u64,
    /// The entry, when the proof carried it (checked against the leaf hash).
    pub entry: Option<Entry>,
}

/// Check a signed head's signature.
pub fn verify_sth_json(sth: &SthJson, key: &LogPublicKey) -> Result<SignedTreeHead, Error> {
    let sth = SignedTreeHead::try_from(sth)?;
    key.verify(&sth)?;
    Ok(sth)
}

/// Fully offline check of an inclusion proof: the head's signature, the
/// path to its root, and (when present) that the entry hashes to the leaf.
pub fn verify_inclusion_json(
    p: &InclusionProofJson,
    key: &LogPublicKey,
) -> Result<VerifiedInclusion, Error> {
    let sth_json = p.sth.as_ref().ok_or_else(|| {
        Error::LogVerify(
            "the proof carries no signed tree head (\"sth\"), so it cannot be checked offline"
                .into(),
        )
    })?;
    let sth = verify_sth_json(sth_json, key)?;
    if sth.head.tree_size != p.tree_size {
        return Err(Error::LogVerify(format!(
            "the proof is for tree size {} but its signed head is for size {}",
            p.tree_size, sth.head.tree_size
        )));
    }
    let leaf = decode_hash(&p.leaf_hash, "leaf_hash")?;
    let path = decode_path(&p.audit_path, "audit_path")?;
    let entry = match &p.entry {
        Some(b64) => {
            let bytes = B64
                .decode(b64)
                .map_err(|e| Error::LogVerify(format!("entry is not base64: {e}")))?;
            if merkle::leaf_hash(&bytes) != leaf {
                return Err(Error::LogVerify(
                    "the entry does not hash to leaf_hash".into(),
                ));
            }
            Some(Entry::decode(&bytes)?)
        }
        None => None,
    };
    merkle::verify_inclusion(p.leaf_index, p.tree_size, &leaf, &path, &sth.head.root_hash)?;
    Ok(VerifiedInclusion {
        sth,
        leaf_index: p.leaf_index,
        entry,
    })
}

/// Fully offline check of a consistency proof: both heads' signatures and
/// the RFC 9162 proof between their roots.
pub fn verify_consistency_json(
    p: &ConsistencyProofJson,
    key: &LogPublicKey,
) -> Result<(SignedTreeHead, SignedTreeHead), Error> {
    let (Some(first), Some(second)) = (&p.first_sth, &p.second_sth) else {
        return Err(Error::LogVerify(
            "the proof lacks first_sth or second_sth, so it cannot be checked offline".into(),
        ));
    };
    let first = verify_sth_json(first, key)?;
    let second = verify_sth_json(second, key)?;
    if first.head.tree_size != p.first || second.head.tree_size != p.second {
        return Err(Error::LogVerify(format!(
            "the proof is for sizes {} -> {} but its signed heads are for {} -> {}",
            p.first, p.second, first.head.tree_size, second.head.tree_size
        )));
    }
    let path = decode_path(&p.consistency_path, "consistency_path")?;
    merkle::verify_consistency(
        p.first,
        p.second,
        &first.head.root_hash,
        &second.head.root_hash,
        &path,
    )?;
    Ok((first, second))
}

/// Anything `ward audit check-proof` accepts, told apart by its fields
/// (`leaf_index`, `first`, or a bare signed head's `root_hash`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProofJson {
    /// An inclusion proof.
    Inclusion(InclusionProofJson),
    /// A consistency proof.
    Consistency(ConsistencyProofJson),
    /// A signed tree head on its own (its signature is checked).
    Sth(SthJson),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_hash_params_are_parsed_leniently() {
        let h = merkle::leaf_hash(b"x");
        let std = B64.encode(h);
        assert_eq!(parse_leaf_hash_param(&std).unwrap(), h);
        assert_eq!(parse_leaf_hash_param(&std.replace('+', " ")).unwrap(), h);
        let url = base64::engine::general_purpose::URL_SAFE.encode(h);
        assert_eq!(parse_leaf_hash_param(&url).unwrap(), h);
        assert_eq!(parse_leaf_hash_param(&hex::encode(h)).unwrap(), h);
        let err = parse_leaf_hash_param("AAAA").unwrap_err();
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn times_format_and_parse() {
        assert_eq!(rfc3339_ms(1_800_000_000_123), "2027-01-15T08:00:00.123Z");
        assert_eq!(rfc3339_s(1_800_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(
            parse_rfc3339("2027-01-15T08:00:00Z").unwrap(),
            1_800_000_000
        );
        assert_eq!(parse_rfc3339("soon").unwrap_err().status(), 400);
    }
}
