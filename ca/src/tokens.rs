//! One-time enrolment tokens: `ward1.<id>.<secret>`, only the SHA-256 of
//! the secret is stored; single use is enforced by the store's atomic claim.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::Error;
use crate::identity::IdentityPattern;
use crate::profile::Profile;
use crate::settings::CaConfig;
use crate::store::{Store, TokenRecord};

fn random_token_part(bytes: usize) -> String {
    use base64::Engine;
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// A new token as printed once: `ward1.<id>.<secret>`.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The full token: give it to the enrolling host, it is not stored.
    pub secret: String,
    /// What was stored.
    pub record: TokenRecord,
}

/// Options for a new enrolment token.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    /// SPIFFE ID or pattern granted.
    pub identity: String,
    /// Lifetime of the token itself.
    pub ttl: Duration,
    /// Certificate profile.
    pub profile: Profile,
    /// DNS names the certificate will carry (and serverAuth).
    pub dns_names: Vec<String>,
    /// rfc822Name for user certificates.
    pub email: Option<String>,
}

/// Creates a token (store only; no HSM needed).
pub fn create_token(
    config: &CaConfig,
    store: &dyn Store,
    spec: &TokenSpec,
) -> Result<NewToken, Error> {
    let pattern = IdentityPattern::parse(&spec.identity)
        .map_err(|e| Error::bad("bad_identity", e.to_string()))?;
    if pattern.trust_domain() != &config.trust_domain {
        return Err(Error::bad(
            "identity_outside_trust_domain",
            format!(
                "{} is outside this CA's trust domain {}",
                spec.identity, config.trust_domain
            ),
        ));
    }
    if spec.profile == Profile::Server {
        return Err(Error::bad(
            "bad_profile",
            "tokens are for `workload` or `user` certificates",
        ));
    }
    if spec.profile == Profile::User && spec.email.is_none() {
        return Err(Error::bad(
            "email_required",
            "user tokens need the user's e-mail (--email): user certificates carry it as rfc822Name",
        ));
    }
    if spec.ttl > Duration::from_secs(30 * 86400) {
        return Err(Error::bad(
            "bad_duration",
            "an enrolment token may live at most 30 days",
        ));
    }
    for d in &spec.dns_names {
        check_dns(d)?;
    }
    if let Some(e) = &spec.email {
        check_email(e)?;
    }
    let id = hex::encode(rand::random::<[u8; 8]>());
    let secret_part = random_token_part(32);
    let t = crate::settings::unix_now();
    let record = TokenRecord {
        id: id.clone(),
        secret_sha256: Sha256::digest(secret_part.as_bytes()).to_vec(),
        identity: pattern.to_string(),
        profile: spec.profile.as_str().into(),
        dns_names: spec
            .dns_names
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect(),
        email: spec.email.clone(),
        created_at: t,
        expires_at: t.saturating_add(i64::try_from(spec.ttl.as_secs()).unwrap_or(i64::MAX)),
        used_at: None,
        revoked_at: None,
    };
    store.insert_token(&record)?;
    Ok(NewToken {
        secret: format!("ward1.{id}.{secret_part}"),
        record,
    })
}

pub(crate) fn check_dns(d: &str) -> Result<(), Error> {
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::bad(
            "bad_dns_name",
            format!("`{d}` is not a valid DNS name"),
        ))
    }
}

pub(crate) fn check_email(e: &str) -> Result<(), Error> {
    match e.split_once('@') {
        Some((l, d)) if !l.is_empty() && check_dns(d).is_ok() && e.is_ascii() => Ok(()),
        _ => Err(Error::bad(
            "bad_email",
            format!("`{e}` is not a valid e-mail address"),
        )),
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> subtle_bool::Choice {
    subtle_bool::eq(a, b)
}

/// A tiny constant-time comparison (no extra dependency for one use).
mod subtle_bool {
    /// Result of a constant-time comparison.
    pub struct Choice(bool);
    impl From<Choice> for bool {
        fn from(c: Choice) -> bool {
            c.0
        }
    }
    pub fn eq(a: &[u8], b: &[u8]) -> Choice {
        if a.len() != b.len() {
            return Choice(false);
        }
        let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
        Choice(std::hint::black_box(diff) == 0)
    }
}
