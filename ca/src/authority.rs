//! The running CA: issuance from CSRs (enrol, renew, offline), mTLS
//! authentication, revocation and admin authorisation. `init`, tokens, the
//! CRL and certificate helpers live in their own modules and are
//! re-exported here.
//!
//! Every issuance runs the same pipeline, so the transparency log is wired
//! in at exactly one place ([`LogSink`]):
//! validate → sign (HSM, outside any lock) → store + log append (one
//! transaction, token claimed atomically, one fsync per group) → return.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyUsagePurpose,
    PublicKeyData, SanType, SigningKey,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::Error;
use crate::csr::{self, CsrRequest};
use crate::identity::{IdentityPattern, SpiffeId};
use crate::keys::{CaKey, KeyOpener};
use crate::profile::Profile;
use crate::settings::{CaConfig, MAX_LEAF_TTL};
use crate::store::{CertRecord, SqliteStore, Store, TokenRecord};

pub use crate::certutil::{cert_pem, fingerprint, not_after, serial_hex};
pub use crate::crl::{CRL_VALIDITY, parse_reason};
pub use crate::init::{InitReport, init};
pub use crate::tokens::{NewToken, TokenSpec, create_token};

use crate::certutil::{BACKDATE, ia5, key_id, random_serial};
use crate::crl::CrlCache;
use crate::tokens::{check_dns, constant_time_eq};

/// Where issued and revoked certificates go before the caller sees them.
/// The transparency log (`crate::translog`) implements this; the append
/// must be durable when it returns.
pub trait LogSink: Send + Sync {
    /// A certificate was issued (already stored).
    fn append_issued(&self, cert: &CertRecord) -> Result<(), Error>;
    /// A certificate was revoked (already stored).
    fn append_revoked(&self, cert: &CertRecord) -> Result<(), Error>;
}

/// A sink that records nothing, until the transparency log is wired in.
#[derive(Debug, Default)]
pub struct NoLog;

impl LogSink for NoLog {
    fn append_issued(&self, _: &CertRecord) -> Result<(), Error> {
        Ok(())
    }
    fn append_revoked(&self, _: &CertRecord) -> Result<(), Error> {
        Ok(())
    }
}

/// Lets an `Arc<dyn SigningKey>` be an rcgen issuer key.
#[derive(Clone)]
pub struct SharedKey(pub CaKey);

impl PublicKeyData for SharedKey {
    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.0.algorithm()
    }
}

impl SigningKey for SharedKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.sign(msg)
    }
}

/// A certificate just issued.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Issued {
    /// Serial, lowercase hex.
    pub serial: String,
    /// The SPIFFE ID.
    pub identity: String,
    /// RFC 3339.
    pub not_after: String,
    /// Leaf then intermediate, PEM.
    pub chain_pem: String,
    /// Proof that the issuance is in the transparency log (verify offline
    /// with `translog::verify_inclusion_json` and the bundle's log key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_proof: Option<crate::translog::InclusionProofJson>,
}

/// Who asks for a revocation.
#[derive(Debug, Clone)]
pub enum Revoker {
    /// An operator on the CA host (`ward ca revoke`).
    Operator,
    /// A client certificate over mTLS (already authenticated), from an
    /// address (for `ward:SourceIp` in policies).
    Cert(Box<CertRecord>, std::net::IpAddr),
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// A running CA: keys open, certificates loaded.
pub struct Ca {
    config: CaConfig,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) issuer: Issuer<'static, SharedKey>,
    pub(crate) issuing_ski: Vec<u8>,
    issuing_not_after: OffsetDateTime,
    log_key: CaKey,
    root_der: Vec<u8>,
    issuing_der: Vec<u8>,
    /// A replacement log set with [`Ca::set_log`]; `None`: the built-in
    /// transparency log.
    log: RwLock<Option<Arc<dyn LogSink>>>,
    translog: Arc<crate::translog::Log>,
    policy: Option<ward_policy::PolicySet>,
    pub(crate) crl: RwLock<Option<CrlCache>>,
    keys: KeyOpener,
    /// Held for the life of the process: one CA process per database.
    _lock: std::fs::File,
}

/// Takes `<database>.lock` exclusively. The transparency log keeps its tree
/// frontier in memory, so a second process appending to the same database
/// (`ward ca issue` while `ward ca serve` runs) would fork the log; it is
/// refused instead. The kernel drops the lock when the process dies.
fn lock_database(db: &std::path::Path) -> Result<std::fs::File, Error> {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    let path = std::path::PathBuf::from(name);
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::conflict(
            "ca_running",
            format!(
                "another ward CA process is using {} (is `ward ca serve` running?); stop it first, or go through its HTTPS API",
                db.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(source)) => Err(Error::Io { path, source }),
    }
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("trust_domain", &self.config.trust_domain)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Opens the store and keys of an initialised CA. Fails with a message
    /// naming the problem if the HSM is unreachable, the PIN is wrong, or
    /// the issuing key does not match the stored intermediate.
    pub fn open(config: CaConfig) -> Result<Self, Error> {
        let lock = lock_database(&config.database)?;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.database)?);
        let authority = store.authority()?.ok_or_else(|| {
            Error::Setup(format!(
                "{} holds no CA; run `ward ca init` first",
                config.database.display()
            ))
        })?;
        let mut keys = KeyOpener::new();
        let issuing_key = keys.open(&config.issuing_key()?)?;
        let log_key = keys.open(&config.log_key()?)?;
        let (_, inter) = x509_parser::parse_x509_certificate(&authority.issuing_der)
            .map_err(|e| Error::Store(format!("stored intermediate does not parse: {e}")))?;
        if inter.public_key().raw != issuing_key.subject_public_key_info().as_slice() {
            return Err(Error::Setup(format!(
                "key {} does not match the stored issuing certificate",
                config.issuing_key()?
            )));
        }
        let issuing_ski = inter
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                    Some(k.0.to_vec())
                }
                _ => None,
            })
            .ok_or_else(|| {
                Error::Store("stored intermediate has no subject key identifier".into())
            })?;
        let issuing_not_after = inter.validity().not_after.to_datetime();
        let issuer = Issuer::from_ca_cert_der(
            &authority.issuing_der.clone().into(),
            SharedKey(issuing_key),
        )?;
        // The transparency log shares the database file (its own tables)
        // and signs tree heads with the log key.
        let translog = Arc::new(crate::translog::Log::open(
            &config.database,
            Arc::clone(&log_key),
            crate::translog::LogOptions::default(),
        )?);
        let policy = match &config.server.policy_dir {
            None => None,
            Some(dir) => {
                let (set, warnings) =
                    ward_policy::dir::compile(dir, &ward_policy::Schema::ca_admin()).map_err(
                        |e| Error::Setup(format!("CA admin policy {}: {e}", dir.display())),
                    )?;
                for w in warnings {
                    tracing::warn!(warning = %w, "CA admin policy");
                }
                Some(set)
            }
        };
        if matches!(config.issuing_key()?, crate::keys::KeyRef::File(_)) {
            tracing::warn!("the issuing key is a file: this CA is not HSM-protected");
        }
        Ok(Self {
            config,
            store,
            issuer,
            issuing_ski,
            issuing_not_after,
            log_key,
            root_der: authority.root_der,
            issuing_der: authority.issuing_der,
            log: RwLock::new(None),
            translog,
            policy,
            crl: RwLock::new(None),
            keys,
            _lock: lock,
        })
    }

    /// The transparency log every issued and revoked certificate goes to
    /// (for the `/v1/log/*` routes and `ward audit`).
    pub fn translog(&self) -> &Arc<crate::translog::Log> {
        &self.translog
    }

    /// Replaces where issued and revoked certificates are appended (the
    /// transparency log by default); the append must be durable.
    pub fn set_log(&self, log: Arc<dyn LogSink>) {
        if let Ok(mut l) = self.log.write() {
            *l = Some(log);
        }
    }

    fn custom_log(&self) -> Option<Arc<dyn LogSink>> {
        self.log.read().ok().and_then(|l| l.clone())
    }

    /// Stores an issuance (claiming the token, if any, in the same
    /// transaction) and appends it to the log, durably, before anything is
    /// returned. With the built-in log both go into one SQLite transaction
    /// on the log writer's connection, so a group of issuances costs one
    /// fsync and one write lock, and a failure leaves neither the store row
    /// nor the log entry. A replacement sink ([`Ca::set_log`]) gets the
    /// store's own group commit and then its append, as before. Returns the
    /// inclusion proof with the built-in log.
    fn record_and_log(
        &self,
        rec: &CertRecord,
        claim: Option<&str>,
        arrival: Option<crate::translog::Arrival>,
    ) -> Result<Option<crate::translog::InclusionProofJson>, Error> {
        match self.custom_log() {
            Some(l) => {
                self.store
                    .record_issue(rec, claim.map(|id| (id, rec.created_at)))?;
                l.append_issued(rec).map(|()| None)
            }
            None => {
                let entry = crate::translog::sink::issued_entry(rec)?;
                let claim = claim.map(|id| (id.to_owned(), rec.created_at));
                let receipt =
                    self.translog
                        .append_issue_blocking(&entry, rec.clone(), claim, arrival)?;
                Ok(Some(receipt.to_json()))
            }
        }
    }

    fn log_revoked(&self, rec: &CertRecord) -> Result<(), Error> {
        match self.custom_log() {
            Some(l) => l.append_revoked(rec),
            None => LogSink::append_revoked(self.translog.as_ref(), rec),
        }
    }

    /// The key the transparency log signs tree heads with.
    pub fn log_key(&self) -> CaKey {
        Arc::clone(&self.log_key)
    }

    /// The issuing key (e.g. for an ES256 assertion key in demos).
    pub fn issuing_key(&self) -> CaKey {
        Arc::clone(&self.issuer.key().0)
    }

    /// The store (the log may share its database file: `config().database`).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The config it was opened with.
    pub fn config(&self) -> &CaConfig {
        &self.config
    }

    /// Root certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// Intermediate certificate, DER.
    pub fn issuing_der(&self) -> &[u8] {
        &self.issuing_der
    }

    /// Open PKCS#11 tokens (status, reconnect tests).
    pub fn keys(&self) -> &KeyOpener {
        &self.keys
    }

    /// Signs a leaf for `id`. Only the public key comes from the requester.
    #[allow(clippy::too_many_arguments)]
    fn sign_leaf(
        &self,
        public_key: &rcgen::SubjectPublicKeyInfo,
        id: &SpiffeId,
        profile: Profile,
        dns_names: &[String],
        email: Option<&str>,
        ttl: Duration,
        requester: String,
    ) -> Result<CertRecord, Error> {
        if id.trust_domain() != &self.config.trust_domain {
            return Err(Error::forbidden(
                "identity_outside_trust_domain",
                format!(
                    "{id} is outside this CA's trust domain {}",
                    self.config.trust_domain
                ),
            ));
        }
        let t = now();
        let ttl = ttl.min(MAX_LEAF_TTL);
        let not_after = (t + ttl).min(self.issuing_not_after);
        let (serial, serial_hex) = random_serial();
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.serial_number = Some(serial);
        p.not_before = t - BACKDATE;
        p.not_after = not_after;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.use_authority_key_identifier_extension = true;
        p.key_identifier_method = key_id(public_key);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if !dns_names.is_empty() || profile == Profile::Server {
            p.extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        p.subject_alt_names = vec![SanType::URI(ia5(&id.to_string())?)];
        for d in dns_names {
            match d.parse::<std::net::IpAddr>() {
                Ok(ip) => p.subject_alt_names.push(SanType::IpAddress(ip)),
                Err(_) => p.subject_alt_names.push(SanType::DnsName(ia5(d)?)),
            }
        }
        if let Some(e) = email {
            p.subject_alt_names.push(SanType::Rfc822Name(ia5(e)?));
        }
        let cert = p.signed_by(public_key, &self.issuer).map_err(|e| match e {
            rcgen::Error::RemoteKeyError => Error::Hsm(
                crate::keys::pkcs11::take_last_sign_error()
                    .unwrap_or_else(|| "the issuing key could not sign".into()),
            ),
            other => Error::from(other),
        })?;
        Ok(CertRecord {
            serial: serial_hex,
            identity: id.to_string(),
            profile: profile.as_str().into(),
            dns_names: dns_names.to_vec(),
            email: email.map(str::to_string),
            not_before: p.not_before.unix_timestamp(),
            not_after: not_after.unix_timestamp(),
            der: cert.der().to_vec(),
            requester,
            created_at: t.unix_timestamp(),
            revoked_at: None,
            reason: None,
            revoked_by: None,
        })
    }

    /// Store (claiming the token in the same transaction), log, answer.
    /// `arrival` is the announcement made when the request came in (see
    /// [`crate::translog::Log::arriving`]).
    fn finish(
        &self,
        rec: CertRecord,
        claim: Option<&str>,
        arrival: Option<crate::translog::Arrival>,
    ) -> Result<Issued, Error> {
        let log_proof = self.record_and_log(&rec, claim, arrival)?;
        if let Some(m) = crate::metrics::get() {
            m.issued.with_label_values(&[rec.profile.as_str()]).inc();
        }
        let not_after = OffsetDateTime::from_unix_timestamp(rec.not_after)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        Ok(Issued {
            serial: rec.serial,
            identity: rec.identity,
            not_after,
            chain_pem: format!("{}{}", cert_pem(&rec.der), cert_pem(&self.issuing_der)),
            log_proof,
        })
    }

    fn ttl(&self, profile: Profile) -> Duration {
        self.config.ttl(profile)
    }

    /// Checks a presented enrolment token without using it up.
    fn check_token(&self, token: &str) -> Result<TokenRecord, Error> {
        let unknown = || Error::unauth("token_unknown", "unknown enrolment token");
        let mut parts = token.trim().splitn(3, '.');
        let (Some("ward1"), Some(id), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(unknown());
        };
        let rec = self.store.token(id)?.ok_or_else(unknown)?;
        let hash = Sha256::digest(secret.as_bytes());
        if !bool::from(constant_time_eq(&hash, &rec.secret_sha256)) {
            return Err(unknown());
        }
        if rec.revoked_at.is_some() {
            return Err(Error::unauth(
                "token_revoked",
                format!("enrolment token {id} was revoked"),
            ));
        }
        if rec.used_at.is_some() {
            return Err(Error::conflict(
                "token_used",
                format!("enrolment token {id} was already used (tokens are single-use)"),
            ));
        }
        if rec.expires_at <= now().unix_timestamp() {
            return Err(Error::unauth(
                "token_expired",
                format!("enrolment token {id} has expired"),
            ));
        }
        Ok(rec)
    }

    /// Enrolment: a one-time token plus a CSR.
    pub fn enroll(&self, token: &str, csr_pem: &str) -> Result<Issued, Error> {
        // Announced before the slow part, so that concurrent enrolments
        // reach the log writer in one group.
        let arrival = self.translog.arriving();
        let tok = self.check_token(token)?;
        let req = csr::parse_pem(csr_pem)?;
        let pattern = IdentityPattern::parse(&tok.identity)
            .map_err(|e| Error::Store(format!("stored token identity: {e}")))?;
        let id = self.requested_identity(&req, pattern.exact())?;
        if !pattern.matches(&id) {
            return Err(Error::forbidden(
                "identity_not_granted",
                format!("the token grants {pattern}, not {id}"),
            ));
        }
        for d in &req.dns_names {
            if !tok.dns_names.contains(d) {
                return Err(Error::forbidden(
                    "dns_not_granted",
                    format!("the CSR asks for DNS name {d}, which the token does not grant"),
                ));
            }
        }
        for e in &req.emails {
            if tok.email.as_deref() != Some(e.as_str()) {
                return Err(Error::forbidden(
                    "email_not_granted",
                    format!("the CSR asks for e-mail {e}, which the token does not grant"),
                ));
            }
        }
        let profile: Profile = tok.profile.parse()?;
        let rec = self.sign_leaf(
            &req.public_key,
            &id,
            profile,
            &tok.dns_names,
            tok.email.as_deref(),
            self.ttl(profile),
            format!("token:{}", tok.id),
        )?;
        self.finish(rec, Some(&tok.id), Some(arrival))
    }

    /// The identity a CSR asks for: its one URI SAN, or the token's exact
    /// grant when the CSR names none.
    fn requested_identity(
        &self,
        req: &CsrRequest,
        default: Option<&SpiffeId>,
    ) -> Result<SpiffeId, Error> {
        match req.uris.as_slice() {
            [] => default.cloned().ok_or_else(|| {
                Error::bad(
                    "csr_missing_identity",
                    "the token grants a pattern; the CSR must name its SPIFFE ID in a URI SAN",
                )
            }),
            [one] => {
                let id = SpiffeId::parse(one)
                    .map_err(|e| Error::bad("csr_bad_identity", e.to_string()))?;
                if id.trust_domain() != &self.config.trust_domain {
                    return Err(Error::forbidden(
                        "identity_outside_trust_domain",
                        format!(
                            "{id} is outside this CA's trust domain {}",
                            self.config.trust_domain
                        ),
                    ));
                }
                Ok(id)
            }
            _ => Err(Error::bad(
                "csr_bad_identity",
                "the CSR has more than one URI SAN; a certificate carries exactly one SPIFFE ID",
            )),
        }
    }

    /// Authenticates a client certificate presented over mTLS: it must be
    /// one this CA issued (byte-for-byte in the store), unexpired and not
    /// revoked.
    pub fn authenticate(&self, peer_der: Option<&[u8]>) -> Result<CertRecord, Error> {
        let der = peer_der.ok_or_else(|| {
            Error::unauth(
                "client_cert_required",
                "this endpoint needs a client certificate (mTLS)",
            )
        })?;
        let foreign = || {
            Error::unauth(
                "client_cert_foreign",
                "the client certificate was not issued by this CA",
            )
        };
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| foreign())?;
        let serial = serial_hex(cert.raw_serial());
        let rec = self.store.cert(&serial)?.ok_or_else(foreign)?;
        if rec.der != der {
            return Err(foreign());
        }
        if rec.revoked_at.is_some() {
            return Err(Error::forbidden(
                "client_cert_revoked",
                format!("client certificate {serial} is revoked"),
            ));
        }
        if rec.not_after <= now().unix_timestamp() {
            return Err(Error::unauth(
                "client_cert_expired",
                format!("client certificate {serial} has expired; enrol again with a new token"),
            ));
        }
        Ok(rec)
    }

    /// Renewal: authenticated by the current certificate; same identity,
    /// new key.
    pub fn renew(&self, current: &CertRecord, csr_pem: &str) -> Result<Issued, Error> {
        let arrival = self.translog.arriving();
        let req = csr::parse_pem(csr_pem)?;
        let (_, old) = x509_parser::parse_x509_certificate(&current.der)
            .map_err(|e| Error::Store(format!("stored certificate does not parse: {e}")))?;
        if old.public_key().raw == req.spki_der.as_slice() {
            return Err(Error::bad(
                "renew_same_key",
                "renewal needs a new key pair; the CSR reuses the current certificate's key",
            ));
        }
        let id = SpiffeId::parse(&current.identity)
            .map_err(|e| Error::Store(format!("stored identity: {e}")))?;
        let asked = self.requested_identity(&req, Some(&id))?;
        if asked != id {
            return Err(Error::forbidden(
                "identity_not_granted",
                format!("renewal keeps the identity {id}; the CSR asks for {asked}"),
            ));
        }
        for d in &req.dns_names {
            if !current.dns_names.contains(d) {
                return Err(Error::forbidden(
                    "dns_not_granted",
                    format!(
                        "renewal keeps the DNS names of the current certificate; {d} is not one"
                    ),
                ));
            }
        }
        for e in &req.emails {
            if current.email.as_deref() != Some(e.as_str()) {
                return Err(Error::forbidden(
                    "email_not_granted",
                    format!("renewal keeps the e-mail of the current certificate; {e} is not it"),
                ));
            }
        }
        let profile: Profile = current.profile.parse()?;
        let rec = self.sign_leaf(
            &req.public_key,
            &id,
            profile,
            &current.dns_names,
            current.email.as_deref(),
            self.ttl(profile),
            format!("renew:{}", current.serial),
        )?;
        let issued = self.finish(rec, None, Some(arrival))?;
        if let Some(m) = crate::metrics::get() {
            m.renewals.inc();
        }
        Ok(issued)
    }

    /// Offline issuance (`ward ca issue`), e.g. to bootstrap a gateway.
    pub fn issue_offline(
        &self,
        csr_pem: &str,
        identity: &str,
        profile: Profile,
        dns_names: &[String],
        email: Option<&str>,
        ttl: Option<Duration>,
    ) -> Result<Issued, Error> {
        let req = csr::parse_pem(csr_pem)?;
        let id =
            SpiffeId::parse(identity).map_err(|e| Error::bad("bad_identity", e.to_string()))?;
        let asked = self.requested_identity(&req, Some(&id))?;
        if asked != id {
            return Err(Error::bad(
                "csr_bad_identity",
                format!("the CSR asks for {asked}, not {id}"),
            ));
        }
        for d in &req.dns_names {
            if !dns_names.contains(d) {
                return Err(Error::bad(
                    "dns_not_granted",
                    format!("the CSR asks for DNS name {d}; pass it with --dns to include it"),
                ));
            }
        }
        for d in dns_names {
            check_dns(d).or_else(|_| {
                d.parse::<std::net::IpAddr>().map(|_| ()).map_err(|_| {
                    Error::bad(
                        "bad_dns_name",
                        format!("`{d}` is not a DNS name or IP address"),
                    )
                })
            })?;
        }
        let ttl = ttl.unwrap_or_else(|| self.ttl(profile));
        if ttl > MAX_LEAF_TTL {
            return Err(Error::bad(
                "ttl_too_long",
                "the hard maximum lifetime is 7 days",
            ));
        }
        let rec = self.sign_leaf(
            &req.public_key,
            &id,
            profile,
            dns_names,
            email,
            ttl,
            "cli".into(),
        )?;
        self.finish(rec, None, None)
    }

    /// The CA's own API server certificate, with a key generated in memory.
    pub fn server_identity(&self, ttl: Duration) -> Result<(Vec<Vec<u8>>, Vec<u8>), Error> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let spki = rcgen::SubjectPublicKeyInfo::from_der(&key.subject_public_key_info())?;
        let id = SpiffeId::parse(&format!("{}/ward/ca", self.config.trust_domain.id_prefix()))
            .map_err(|e| Error::Setup(e.to_string()))?;
        let rec = self.sign_leaf(
            &spki,
            &id,
            Profile::Server,
            &self.config.server.dns_names,
            None,
            ttl,
            "self".into(),
        )?;
        self.record_and_log(&rec, None, None)?;
        Ok((
            vec![rec.der, self.issuing_der.clone(), self.root_der.clone()],
            key.serialize_der(),
        ))
    }

    /// Revokes a certificate. An mTLS caller may revoke its own
    /// certificate; revoking another needs `ca:Revoke`, which until the
    /// policy engine is wired in means being listed in `server.admins`.
    pub fn revoke(&self, serial: &str, reason: &str, by: &Revoker) -> Result<CertRecord, Error> {
        let serial = serial.trim().trim_start_matches("0x").to_ascii_lowercase();
        if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::bad("bad_serial", "the serial must be hexadecimal"));
        }
        // Byte-level normalisation: a serial may start with a 0 nibble
        // ("0bbf…"), only whole leading zero bytes are dropped.
        let padded = if !serial.len().is_multiple_of(2) {
            format!("0{serial}")
        } else {
            serial
        };
        let serial = serial_hex(
            &hex::decode(&padded)
                .map_err(|_| Error::bad("bad_serial", "the serial must be hexadecimal"))?,
        );
        parse_reason(reason)?;
        let revoked_by = match by {
            Revoker::Operator => "cli".to_string(),
            Revoker::Cert(me, source_ip) => {
                if me.serial != serial {
                    self.authorize_revoke(me, *source_ip, &serial)?;
                }
                format!("cert:{}", me.serial)
            }
        };
        let rec = self
            .store
            .revoke_cert(&serial, now().unix_timestamp(), reason, &revoked_by)?;
        self.log_revoked(&rec)?;
        if let Some(m) = crate::metrics::get() {
            m.revocations.inc();
        }
        self.refresh_crl()?;
        Ok(rec)
    }

    /// `ca:Revoke` on `ca/certs/<serial>` for someone else's certificate.
    fn authorize_revoke(
        &self,
        me: &CertRecord,
        source_ip: std::net::IpAddr,
        serial: &str,
    ) -> Result<(), Error> {
        let target = self.store.cert(serial)?;
        self.authorize(
            me,
            source_ip,
            "ca:Revoke",
            &format!("ca/certs/{serial}"),
            Some(serial),
            target.as_ref().map(|t| t.identity.as_str()),
        )
        .map_err(|e| match e {
            Error::Forbidden { code, message } => Error::Forbidden {
                code,
                message: format!(
                    "{} may revoke only its own certificate; {message}",
                    me.identity
                ),
            },
            other => other,
        })
    }

    /// Authorises a CA admin action (`ca:Revoke`, `ca:ReadLog`,
    /// `ca:CreateToken`) for an mTLS caller: `server.admins` always may;
    /// otherwise the admin policy (`server.policy_dir`, evaluated with
    /// `Schema::ca_admin`) decides, and without one the answer is no.
    pub fn authorize(
        &self,
        me: &CertRecord,
        source_ip: std::net::IpAddr,
        action: &str,
        resource: &str,
        target_serial: Option<&str>,
        target_identity: Option<&str>,
    ) -> Result<(), Error> {
        if SpiffeId::parse(&me.identity)
            .map(|id| self.config.server.admins.contains(&id))
            .unwrap_or(false)
        {
            return Ok(());
        }
        let denied = |why: String| {
            Error::forbidden(
                "not_authorized",
                format!(
                    "{action} on {resource} is not allowed for {} ({why})",
                    me.identity
                ),
            )
        };
        let Some(policy) = &self.policy else {
            return Err(denied(
                "not in server.admins and no policy_dir configured".into(),
            ));
        };
        let mut ctx = ward_policy::Context::new();
        ctx.insert("ward:SourceIp", source_ip.to_string());
        ctx.insert(
            "ward:CurrentTime",
            crate::settings::format_time(now().unix_timestamp()),
        );
        let user = SpiffeId::parse(&me.identity)
            .map(|i| i.is_user())
            .unwrap_or(false);
        ctx.insert("ward:PrincipalType", if user { "user" } else { "workload" });
        ctx.insert("ward:CertSerial", me.serial.clone());
        if let Some(s) = target_serial {
            ctx.insert("ward:TargetSerial", s.to_string());
        }
        if let Some(t) = target_identity {
            ctx.insert("ward:TargetIdentity", t.to_string());
        }
        let request = ward_policy::Request {
            principal: ward_policy::Principal {
                spiffe: Some(me.identity.clone()),
                email: me.email.clone(),
            },
            action: action.into(),
            resource: resource.into(),
            context: ctx,
        };
        let decision = policy.evaluate(&request);
        if decision.allowed() {
            Ok(())
        } else {
            Err(denied(decision.explain()))
        }
    }
}
