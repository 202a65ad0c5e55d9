//! CA state behind a trait, so a PostgreSQL store can serve several CA
//! replicas later. Every method that writes more than one row does so in
//! one transaction: a failure leaves nothing half-written.

mod sqlite;

pub use sqlite::SqliteStore;
pub(crate) use sqlite::write_issue_alone;

use crate::Error;

/// The CA certificates created by `ward ca init`.
#[derive(Debug, Clone)]
pub struct Authority {
    /// Self-signed root, DER.
    pub root_der: Vec<u8>,
    /// Issuing intermediate, DER.
    pub issuing_der: Vec<u8>,
    /// The log key's SubjectPublicKeyInfo, DER (for verifiers).
    pub log_spki: Vec<u8>,
    /// Unix seconds.
    pub created_at: i64,
}

/// One issued certificate and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRecord {
    /// Lowercase hex, no leading zero bytes.
    pub serial: String,
    /// The SPIFFE ID in the URI SAN.
    pub identity: String,
    /// `workload`, `user` or `server`.
    pub profile: String,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// rfc822Name SAN (user profile).
    pub email: Option<String>,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// The certificate.
    pub der: Vec<u8>,
    /// Who asked: `token:<id>`, `renew:<serial>`, `cli` or `self`.
    pub requester: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, if revoked.
    pub revoked_at: Option<i64>,
    /// RFC 5280 reason name, if revoked.
    pub reason: Option<String>,
    /// Who revoked it: `cert:<serial>` or `cli`.
    pub revoked_by: Option<String>,
}

/// A one-time enrolment token. The secret itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Public id, printed by `token list`.
    pub id: String,
    /// SHA-256 of the secret part.
    pub secret_sha256: Vec<u8>,
    /// SPIFFE ID or pattern (`…/*`) it grants.
    pub identity: String,
    /// Certificate profile.
    pub profile: String,
    /// DNS names the certificate may carry (adds serverAuth).
    pub dns_names: Vec<String>,
    /// rfc822Name for user certificates.
    pub email: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// Unix seconds, once used.
    pub used_at: Option<i64>,
    /// Unix seconds, if revoked before use.
    pub revoked_at: Option<i64>,
}

/// Filter for [`Store::list_certs`].
#[derive(Debug, Clone, Default)]
pub struct CertFilter {
    /// Only this SPIFFE ID.
    pub identity: Option<String>,
    /// Only issued at or after (unix seconds).
    pub since: Option<i64>,
    /// Only issued before (unix seconds).
    pub until: Option<i64>,
}

/// Counts for `ward ca status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// All certificates ever issued.
    pub issued: u64,
    /// Unexpired and unrevoked.
    pub active: u64,
    /// Revoked.
    pub revoked: u64,
    /// Tokens that can still be used.
    pub usable_tokens: u64,
}

/// Where the CA keeps its state.
pub trait Store: Send + Sync {
    /// Records the CA certificates; `Conflict` if a CA already exists.
    fn init_authority(&self, a: &Authority) -> Result<(), Error>;
    /// The CA certificates, if initialised.
    fn authority(&self) -> Result<Option<Authority>, Error>;
    /// The next CRL number (strictly increasing).
    fn next_crl_number(&self) -> Result<u64, Error>;
    /// Adds a token.
    fn insert_token(&self, t: &TokenRecord) -> Result<(), Error>;
    /// Looks a token up by id.
    fn token(&self, id: &str) -> Result<Option<TokenRecord>, Error>;
    /// Every token.
    fn list_tokens(&self) -> Result<Vec<TokenRecord>, Error>;
    /// Revokes an unused token.
    fn revoke_token(&self, id: &str, now: i64) -> Result<(), Error>;
    /// Records an issued certificate. With `claim = Some((token id, now))`
    /// the token is atomically marked used in the same transaction; if it
    /// was used, revoked or expired meanwhile, nothing is written and the
    /// answer is `Conflict`/`Unauthenticated`.
    fn record_issue(&self, cert: &CertRecord, claim: Option<(&str, i64)>) -> Result<(), Error>;
    /// One certificate by serial (lowercase hex).
    fn cert(&self, serial: &str) -> Result<Option<CertRecord>, Error>;
    /// Certificates matching a filter, newest first.
    fn list_certs(&self, filter: &CertFilter) -> Result<Vec<CertRecord>, Error>;
    /// Revokes a certificate; `NotFound` or `Conflict` (already revoked).
    fn revoke_cert(
        &self,
        serial: &str,
        at: i64,
        reason: &str,
        by: &str,
    ) -> Result<CertRecord, Error>;
    /// Revoked certificates that have not expired at `now` (CRL content).
    fn revoked_unexpired(&self, now: i64) -> Result<Vec<CertRecord>, Error>;
    /// Counts for status.
    fn counts(&self, now: i64) -> Result<Counts, Error>;
}

/// A placeholder certificate record for the store's and the log's unit
/// tests: only the serial varies; the DER is not a certificate.
#[cfg(test)]
pub(crate) fn sample_cert(serial: &str) -> CertRecord {
    CertRecord {
        serial: serial.into(),
        identity: "spiffe://corp.example/a".into(),
        profile: "workload".into(),
        dns_names: vec![],
        email: None,
        not_before: 0,
        not_after: 100,
        der: vec![1, 2, 3],
        requester: "token:t".into(),
        created_at: 1,
        revoked_at: None,
        reason: None,
        revoked_by: None,
    }
}
