//! SPIFFE identities and trust domains, shared with the gateway and agent.
//!
//! Every leaf certificate ward issues carries exactly one SPIFFE ID as its
//! URI SAN. The CA, not the certificate path, enforces which IDs may be
//! issued (no URI name constraints, see RUSTSEC-2026-0098), so parsing here
//! is strict: lowercase trust domain, no query, fragment, port, userinfo,
//! empty, `.` or `..` segments, and only the SPIFFE path character set.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string is not an acceptable SPIFFE ID, trust domain or pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SPIFFE ID `{input}`: {reason}")]
pub struct IdentityError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

fn bad(input: &str, reason: &'static str) -> IdentityError {
    IdentityError {
        input: input.to_string(),
        reason,
    }
}

/// A SPIFFE trust domain, e.g. `corp.example`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Parses a trust domain name (lowercase letters, digits, `.`, `-`, `_`).
    pub fn new(name: &str) -> Result<Self, IdentityError> {
        if name.is_empty() {
            return Err(bad(name, "the trust domain is empty"));
        }
        if name.len() > 255 {
            return Err(bad(name, "the trust domain is longer than 255 bytes"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
        {
            return Err(bad(
                name,
                "the trust domain may only contain lowercase letters, digits, '.', '-' and '_'",
            ));
        }
        Ok(Self(name.to_string()))
    }

    /// The trust domain name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `spiffe://<domain>`, the trust domain's own SPIFFE ID prefix.
    pub fn id_prefix(&self) -> String {
        format!("spiffe://{}", self.0)
    }
}

impl TryFrom<String> for TrustDomain {
    type Error = IdentityError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<TrustDomain> for String {
    fn from(t: TrustDomain) -> String {
        t.0
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A workload or user identity: `spiffe://<trust domain>/<path>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    path: String,
}

impl SpiffeId {
    /// Parses and validates a SPIFFE ID. A path is required: ward never
    /// issues a certificate for a bare trust domain.
    pub fn parse(input: &str) -> Result<Self, IdentityError> {
        let rest = input
            .strip_prefix("spiffe://")
            .ok_or_else(|| bad(input, "it must start with `spiffe://`"))?;
        if input.len() > 2048 {
            return Err(bad(input, "it is longer than 2048 bytes"));
        }
        let (domain, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => return Err(bad(input, "it has no path after the trust domain")),
        };
        if domain.contains(':') || domain.contains('@') {
            return Err(bad(
                input,
                "the trust domain may not have a port or user info",
            ));
        }
        let trust_domain = TrustDomain::new(domain).map_err(|e| bad(input, e.reason))?;
        validate_path(input, path)?;
        Ok(Self {
            trust_domain,
            path: path.to_string(),
        })
    }

    /// The trust domain part.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The path, starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether this is a human (`/user/<id>`) rather than a workload.
    pub fn is_user(&self) -> bool {
        self.path.starts_with("/user/")
    }
}

fn validate_path(input: &str, path: &str) -> Result<(), IdentityError> {
    if path.is_empty() || path == "/" {
        return Err(bad(input, "it has no path after the trust domain"));
    }
    for segment in path.split('/').skip(1) {
        if segment.is_empty() {
            return Err(bad(
                input,
                "the path has an empty segment (`//` or a trailing `/`)",
            ));
        }
        if segment == "." || segment == ".." {
            return Err(bad(input, "the path may not contain `.` or `..` segments"));
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            return Err(bad(
                input,
                "path segments may only contain letters, digits, '.', '-' and '_'",
            ));
        }
    }
    Ok(())
}

impl FromStr for SpiffeId {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for SpiffeId {
    type Error = IdentityError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<SpiffeId> for String {
    fn from(id: SpiffeId) -> String {
        id.to_string()
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}{}", self.trust_domain, self.path)
    }
}

/// What an enrolment token grants: one exact ID, or every ID below a prefix
/// (`spiffe://corp.example/ns/prod/sa/*`). A pattern never crosses trust
/// domains and `*` only stands for one or more whole trailing segments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum IdentityPattern {
    /// Exactly this ID.
    Exact(SpiffeId),
    /// Any ID strictly below this one (the `/*` is not stored).
    Below(SpiffeId),
}

impl IdentityPattern {
    /// Parses `spiffe://td/path` or `spiffe://td/path/*`.
    pub fn parse(input: &str) -> Result<Self, IdentityError> {
        match input.strip_suffix("/*") {
            Some(prefix) => Ok(Self::Below(SpiffeId::parse(prefix)?)),
            None => Ok(Self::Exact(SpiffeId::parse(input)?)),
        }
    }

    /// Whether `id` is granted by this pattern.
    pub fn matches(&self, id: &SpiffeId) -> bool {
        match self {
            Self::Exact(e) => e == id,
            Self::Below(p) => {
                p.trust_domain == id.trust_domain
                    && id
                        .path
                        .strip_prefix(p.path.as_str())
                        .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/'))
            }
        }
    }

    /// The trust domain of the pattern.
    pub fn trust_domain(&self) -> &TrustDomain {
        match self {
            Self::Exact(id) | Self::Below(id) => id.trust_domain(),
        }
    }

    /// The one ID this pattern grants, if it is exact.
    pub fn exact(&self) -> Option<&SpiffeId> {
        match self {
            Self::Exact(id) => Some(id),
            Self::Below(_) => None,
        }
    }
}

impl TryFrom<String> for IdentityPattern {
    type Error = IdentityError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<IdentityPattern> for String {
    fn from(p: IdentityPattern) -> String {
        p.to_string()
    }
}

impl fmt::Display for IdentityPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(id) => write!(f, "{id}"),
            Self::Below(id) => write!(f, "{id}/*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_workload_and_user_ids() {
        let id = SpiffeId::parse("spiffe://corp.example/ns/prod/sa/billing").unwrap();
        assert_eq!(id.trust_domain().as_str(), "corp.example");
        assert_eq!(id.path(), "/ns/prod/sa/billing");
        assert!(!id.is_user());
        assert!(
            SpiffeId::parse("spiffe://corp.example/user/alice")
                .unwrap()
                .is_user()
        );
        assert_eq!(id.to_string(), "spiffe://corp.example/ns/prod/sa/billing");
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "https://corp.example/x",
            "spiffe://corp.example",
            "spiffe://corp.example/",
            "spiffe://Corp.example/x",
            "spiffe://corp.example:443/x",
            "spiffe://u@corp.example/x",
            "spiffe://corp.example/a//b",
            "spiffe://corp.example/a/",
            "spiffe://corp.example/a/../b",
            "spiffe://corp.example/a?b",
            "spiffe://corp.example/a#b",
            "spiffe://corp.example/a%20b",
            "spiffe:///x",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn patterns_match_only_below_the_prefix() {
        let p = IdentityPattern::parse("spiffe://corp.example/ns/prod/*").unwrap();
        let ok = SpiffeId::parse("spiffe://corp.example/ns/prod/sa/x").unwrap();
        let sibling = SpiffeId::parse("spiffe://corp.example/ns/production/x").unwrap();
        let itself = SpiffeId::parse("spiffe://corp.example/ns/prod").unwrap();
        let other_td = SpiffeId::parse("spiffe://evil.example/ns/prod/x").unwrap();
        assert!(p.matches(&ok));
        assert!(!p.matches(&sibling));
        assert!(!p.matches(&itself));
        assert!(!p.matches(&other_td));
        assert_eq!(p.to_string(), "spiffe://corp.example/ns/prod/*");
        let e = IdentityPattern::parse("spiffe://corp.example/a").unwrap();
        assert!(e.matches(&SpiffeId::parse("spiffe://corp.example/a").unwrap()));
        assert!(!e.matches(&ok));
    }
}
