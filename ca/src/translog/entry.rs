//! The canonical byte encoding of a log entry: what the Merkle leaf hashes.
//!
//! Defined once, here. Every integer is big-endian; every variable-length
//! field is `len:u32 || bytes`; there is no padding, no optional field and
//! no trailing data, so one entry has exactly one encoding and the leaf hash
//! `SHA-256(0x00 || encoding)` identifies it.
//!
//! ```text
//! entry     = version:u8 (= 1) kind:u8 time_ms:u64 body
//! body      = issued (kind 1) | revoked (kind 2)
//! issued    = bytes(certificate DER) requester bytes(profile UTF-8)
//! requester = 1:u8 bytes(token id UTF-8)            -- enrolment with a token
//!           | 2:u8 bytes(previous serial, unsigned big-endian) -- renewal
//!           | 3:u8 bytes(other requester UTF-8, e.g. "cli")      -- anything else
//! revoked   = bytes(serial, unsigned big-endian) reason:u8 (RFC 5280 CRLReason)
//!             bytes(revoked_by UTF-8)
//! bytes(x)  = len:u32 x
//! ```
//!
//! `time_ms` is milliseconds since the Unix epoch (UTC) when the CA issued or
//! revoked. Decoding rejects unknown versions, kinds, requester tags and
//! reasons, invalid UTF-8, truncated fields and trailing bytes.
//!
//! Searchable fields (identity, serial, validity) are *derived* from the
//! certificate with x509-parser ([`Entry::index_fields`]) rather than stored
//! twice, so they cannot disagree with what was signed.

use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::Error;

/// The only encoding version so far.
pub const ENTRY_VERSION: u8 = 1;
const KIND_ISSUED: u8 = 1;
const KIND_REVOKED: u8 = 2;
const REQ_TOKEN: u8 = 1;
const REQ_RENEWAL: u8 = 2;
const REQ_OTHER: u8 = 3;

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A certificate was issued.
    Issued(Issued),
    /// A certificate was revoked.
    Revoked(Revoked),
}

/// A certificate the CA issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The whole certificate, DER.
    pub certificate: Vec<u8>,
    /// Who asked for it.
    pub requester: Requester,
    /// The issuance profile (e.g. `workload`, `human`).
    pub profile: String,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
}

/// Who asked for a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Requester {
    /// First enrolment with a one-time token: the token's id (never the secret).
    Token(String),
    /// Renewal with the current certificate: its serial, unsigned big-endian bytes.
    Renewal(#[serde(with = "hex_bytes")] Vec<u8>),
    /// Anything else the CA records, e.g. `cli` (an operator) or `self`
    /// (the CA's own server certificate).
    Other(String),
}

/// A revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// Serial of the revoked certificate, unsigned big-endian bytes.
    pub serial: Vec<u8>,
    /// Why.
    pub reason: RevocationReason,
    /// Who revoked it (SPIFFE ID or admin name).
    pub revoked_by: String,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
}

/// RFC 5280 §5.3.1 CRLReason codes (7 is unused by the RFC); in JSON by
/// their RFC 5280 names (`keyCompromise`, …), as the CA's API spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    #[serde(rename = "cACompromise")]
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    CertificateHold,
    #[serde(rename = "removeFromCRL")]
    RemoveFromCrl,
    PrivilegeWithdrawn,
    #[serde(rename = "aACompromise")]
    AaCompromise,
}

impl RevocationReason {
    /// The RFC 5280 code.
    pub fn code(self) -> u8 {
        match self {
            Self::Unspecified => 0,
            Self::KeyCompromise => 1,
            Self::CaCompromise => 2,
            Self::AffiliationChanged => 3,
            Self::Superseded => 4,
            Self::CessationOfOperation => 5,
            Self::CertificateHold => 6,
            Self::RemoveFromCrl => 8,
            Self::PrivilegeWithdrawn => 9,
            Self::AaCompromise => 10,
        }
    }

    /// From the RFC 5280 name (`keyCompromise`); `None` if unknown.
    pub fn from_name(name: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
    }

    /// From the RFC 5280 code; `None` for 7 and anything above 10.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Unspecified,
            1 => Self::KeyCompromise,
            2 => Self::CaCompromise,
            3 => Self::AffiliationChanged,
            4 => Self::Superseded,
            5 => Self::CessationOfOperation,
            6 => Self::CertificateHold,
            8 => Self::RemoveFromCrl,
            9 => Self::PrivilegeWithdrawn,
            10 => Self::AaCompromise,
            _ => return None,
        })
    }
}

/// Fields the store indexes, derived from the entry (and its certificate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFields {
    /// `issued` or `revoked`.
    pub kind: &'static str,
    /// The certificate's SPIFFE URI SAN (issued entries only).
    pub identity: Option<String>,
    /// Serial as [`serial_hex`].
    pub serial: String,
    /// Certificate notBefore, seconds since the epoch (issued only).
    pub not_before: Option<i64>,
    /// Certificate notAfter, seconds since the epoch (issued only).
    pub not_after: Option<i64>,
    /// The entry's time, milliseconds since the epoch.
    pub time_ms: u64,
}

/// A serial number as ward prints it everywhere: lowercase hex of the
/// unsigned big-endian value without leading zero bytes (`00` for zero).
pub fn serial_hex(bytes: &[u8]) -> String {
    let trimmed: &[u8] = match bytes.iter().position(|b| *b != 0) {
        Some(i) => bytes.get(i..).unwrap_or_default(),
        None => &[0],
    };
    hex::encode(trimmed)
}

/// Normalise a serial typed by a person (`0A:1B…`, `0x0a1b`, upper case)
/// into [`serial_hex`] form.
pub fn normalize_serial(text: &str) -> Result<String, Error> {
    let t = text.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    let digits: String = t.chars().filter(|c| *c != ':').collect();
    let digits = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits
    };
    let bytes = hex::decode(&digits)
        .map_err(|e| Error::bad("bad_serial", format!("serial {text:?} is not hex: {e}")))?;
    Ok(serial_hex(&bytes))
}

impl Entry {
    /// The canonical encoding (see the module documentation).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(ENTRY_VERSION);
        match self {
            Self::Issued(i) => {
                out.push(KIND_ISSUED);
                out.extend_from_slice(&i.time_ms.to_be_bytes());
                put_bytes(&mut out, &i.certificate);
                match &i.requester {
                    Requester::Token(id) => {
                        out.push(REQ_TOKEN);
                        put_bytes(&mut out, id.as_bytes());
                    }
                    Requester::Renewal(serial) => {
                        out.push(REQ_RENEWAL);
                        put_bytes(&mut out, serial);
                    }
                    Requester::Other(who) => {
                        out.push(REQ_OTHER);
                        put_bytes(&mut out, who.as_bytes());
                    }
                }
                put_bytes(&mut out, i.profile.as_bytes());
            }
            Self::Revoked(r) => {
                out.push(KIND_REVOKED);
                out.extend_from_slice(&r.time_ms.to_be_bytes());
                put_bytes(&mut out, &r.serial);
                out.push(r.reason.code());
                put_bytes(&mut out, r.revoked_by.as_bytes());
            }
        }
        out
    }

    /// Parse a canonical encoding; anything else is [`Error::LogEntry`].
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader { rest: bytes };
        let version = r.u8("version")?;
        if version != ENTRY_VERSION {
            return Err(Error::LogEntry(format!(
                "unknown entry version {version} (this ward reads version {ENTRY_VERSION})"
            )));
        }
        let kind = r.u8("kind")?;
        let time_ms = r.u64("time")?;
        let entry = match kind {
            KIND_ISSUED => {
                let certificate = r.bytes("certificate")?.to_vec();
                let requester = match r.u8("requester kind")? {
                    REQ_TOKEN => Requester::Token(r.string("token id")?),
                    REQ_RENEWAL => Requester::Renewal(r.bytes("previous serial")?.to_vec()),
                    REQ_OTHER => Requester::Other(r.string("requester")?),
                    other => {
                        return Err(Error::LogEntry(format!("unknown requester kind {other}")));
                    }
                };
                let profile = r.string("profile")?;
                Self::Issued(Issued {
                    certificate,
                    requester,
                    profile,
                    time_ms,
                })
            }
            KIND_REVOKED => {
                let serial = r.bytes("serial")?.to_vec();
                let code = r.u8("reason")?;
                let reason = RevocationReason::from_code(code).ok_or_else(|| {
                    Error::LogEntry(format!("unknown revocation reason code {code}"))
                })?;
                let revoked_by = r.string("revoked_by")?;
                Self::Revoked(Revoked {
                    serial,
                    reason,
                    revoked_by,
                    time_ms,
                })
            }
            other => return Err(Error::LogEntry(format!("unknown entry kind {other}"))),
        };
        if !r.rest.is_empty() {
            return Err(Error::LogEntry(format!(
                "{} trailing bytes after the entry",
                r.rest.len()
            )));
        }
        Ok(entry)
    }

    /// When the CA issued or revoked, milliseconds since the epoch.
    pub fn time_ms(&self) -> u64 {
        match self {
            Self::Issued(i) => i.time_ms,
            Self::Revoked(r) => r.time_ms,
        }
    }

    /// The searchable fields; parses the certificate of an issued entry.
    pub fn index_fields(&self) -> Result<IndexFields, Error> {
        match self {
            Self::Issued(i) => {
                let cert = CertFields::parse(&i.certificate)?;
                Ok(IndexFields {
                    kind: "issued",
                    identity: cert.identity,
                    serial: cert.serial,
                    not_before: Some(cert.not_before),
                    not_after: Some(cert.not_after),
                    time_ms: i.time_ms,
                })
            }
            Self::Revoked(r) => Ok(IndexFields {
                kind: "revoked",
                identity: None,
                serial: serial_hex(&r.serial),
                not_before: None,
                not_after: None,
                time_ms: r.time_ms,
            }),
        }
    }
}

/// What the log needs to know about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFields {
    /// The first `spiffe://` URI SAN (X509-SVIDs have exactly one).
    pub identity: Option<String>,
    /// [`serial_hex`] of the serial.
    pub serial: String,
    /// notBefore, seconds since the epoch.
    pub not_before: i64,
    /// notAfter, seconds since the epoch.
    pub not_after: i64,
}

impl CertFields {
    /// Parse a DER certificate.
    pub fn parse(der: &[u8]) -> Result<Self, Error> {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| Error::LogEntry(format!("certificate does not parse: {e}")))?;
        if !rest.is_empty() {
            return Err(Error::LogEntry(
                "trailing bytes after the certificate".into(),
            ));
        }
        let san = cert
            .subject_alternative_name()
            .map_err(|e| Error::LogEntry(format!("bad subjectAltName: {e}")))?;
        let identity = san.and_then(|san| {
            san.value.general_names.iter().find_map(|n| match n {
                GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some((*uri).to_owned()),
                _ => None,
            })
        });
        Ok(Self {
            identity,
            serial: serial_hex(cert.raw_serial()),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Fields are certificates and short strings; anything near 4 GiB is a
    // bug upstream, and saturating keeps the encoding total (decode of such
    // an entry would then fail loudly rather than mis-frame silently).
    let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Error> {
        if self.rest.len() < n {
            return Err(Error::LogEntry(format!(
                "truncated entry: {what} needs {n} bytes, {} left",
                self.rest.len()
            )));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &str) -> Result<u8, Error> {
        Ok(self.take(1, what)?.first().copied().unwrap_or_default())
    }

    fn u64(&mut self, what: &str) -> Result<u64, Error> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn bytes(&mut self, what: &str) -> Result<&'a [u8], Error> {
        let b = self.take(4, what)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        let len = usize::try_from(u32::from_be_bytes(a))
            .map_err(|_| Error::LogEntry(format!("{what} is too long")))?;
        self.take(len, what)
    }

    fn string(&mut self, what: &str) -> Result<String, Error> {
        let b = self.bytes(what)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| Error::LogEntry(format!("{what} is not valid UTF-8")))
    }
}

/// Serde helper: bytes as lowercase hex.
pub(crate) mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued() -> Entry {
        Entry::Issued(Issued {
            certificate: vec![0x30, 0x03, 0x02, 0x01, 0x05],
            requester: Requester::Token("tok-1".into()),
            profile: "workload".into(),
            time_ms: 0x0102_0304_0506_0708,
        })
    }

    #[test]
    fn issued_encoding_is_exactly_the_documented_bytes() {
        let bytes = issued().encode();
        let mut want = vec![1u8, 1, 1, 2, 3, 4, 5, 6, 7, 8];
        want.extend_from_slice(&[0, 0, 0, 5, 0x30, 0x03, 0x02, 0x01, 0x05]);
        want.push(1);
        want.extend_from_slice(&[0, 0, 0, 5]);
        want.extend_from_slice(b"tok-1");
        want.extend_from_slice(&[0, 0, 0, 8]);
        want.extend_from_slice(b"workload");
        assert_eq!(bytes, want);
        assert_eq!(Entry::decode(&bytes).unwrap(), issued());
    }

    #[test]
    fn revoked_round_trips() {
        let e = Entry::Revoked(Revoked {
            serial: vec![0x0a, 0x1b],
            reason: RevocationReason::KeyCompromise,
            revoked_by: "spiffe://corp.example/user/alice".into(),
            time_ms: 42,
        });
        let bytes = e.encode();
        assert_eq!(&bytes[..2], &[1, 2]);
        assert_eq!(Entry::decode(&bytes).unwrap(), e);
        let renewal = Entry::Issued(Issued {
            requester: Requester::Renewal(vec![1, 2, 3]),
            ..match issued() {
                Entry::Issued(i) => i,
                Entry::Revoked(_) => unreachable!(),
            }
        });
        assert_eq!(Entry::decode(&renewal.encode()).unwrap(), renewal);
        let other = Entry::Issued(Issued {
            requester: Requester::Other("cli".into()),
            ..match issued() {
                Entry::Issued(i) => i,
                Entry::Revoked(_) => unreachable!(),
            }
        });
        assert_eq!(Entry::decode(&other.encode()).unwrap(), other);
        assert_eq!(
            RevocationReason::from_name("keyCompromise"),
            Some(RevocationReason::KeyCompromise)
        );
        assert_eq!(
            RevocationReason::from_name("removeFromCRL"),
            Some(RevocationReason::RemoveFromCrl)
        );
        assert_eq!(RevocationReason::from_name("because"), None);
    }

    #[test]
    fn decode_rejects_non_canonical_input() {
        let good = issued().encode();
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(
            matches!(Entry::decode(&trailing), Err(Error::LogEntry(m)) if m.contains("trailing"))
        );
        let mut version = good.clone();
        version[0] = 2;
        assert!(
            matches!(Entry::decode(&version), Err(Error::LogEntry(m)) if m.contains("version"))
        );
        let mut kind = good.clone();
        kind[1] = 9;
        assert!(Entry::decode(&kind).is_err());
        for cut in 0..good.len() {
            assert!(
                Entry::decode(&good[..cut]).is_err(),
                "prefix {cut} accepted"
            );
        }
        // A length that runs past the end.
        let mut long = good.clone();
        long[13] = 0xff;
        assert!(Entry::decode(&long).is_err());
        let mut reason = Entry::Revoked(Revoked {
            serial: vec![1],
            reason: RevocationReason::Superseded,
            revoked_by: "x".into(),
            time_ms: 1,
        })
        .encode();
        reason[15] = 7;
        assert!(Entry::decode(&reason).is_err());
    }

    #[test]
    fn serials_are_normalised() {
        assert_eq!(serial_hex(&[0, 0, 0x0a, 0xff]), "0aff");
        assert_eq!(serial_hex(&[0, 0]), "00");
        assert_eq!(normalize_serial("0A:FF").unwrap(), "0aff");
        assert_eq!(normalize_serial("0x00aff").unwrap(), "0aff");
        assert!(normalize_serial("zz").is_err());
    }
}
