//! The answer: allowed or not, why, which statements matched, and under
//! which policy set.

use std::fmt::Write as _;
use std::sync::Arc;

/// `Allow` or `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Effect {
    /// Grants, unless something denies.
    Allow,
    /// Denies, whatever else allows.
    Deny,
}

/// A document's role: an ordinary permission policy, or a permissions
/// boundary (IAM's rule: when a boundary applies to the principal, a request
/// needs an Allow from both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Kind {
    /// `"Kind": "Permission"` (the default).
    Permission,
    /// `"Kind": "Boundary"`.
    Boundary,
}

/// Where a statement comes from, for explanations and audit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatementInfo {
    /// The statement's `Sid`, if it has one.
    pub sid: Option<String>,
    /// Source file name.
    pub file: String,
    /// 1-based line of the statement's `{`.
    pub line: u32,
    /// 1-based column of the statement's `{`.
    pub column: u32,
    /// The statement's effect.
    pub effect: Effect,
    /// Permission or boundary document.
    pub kind: Kind,
}

impl std::fmt::Display for StatementInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Permission => "",
            Kind::Boundary => " (boundary)",
        };
        write!(
            f,
            "{:?} {} at {}:{}:{}{kind}",
            self.effect,
            self.sid.as_deref().unwrap_or("<no Sid>"),
            self.file,
            self.line,
            self.column
        )
    }
}

/// Why a decision came out as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Outcome {
    /// A permission statement allowed, no Deny matched, and every applicable
    /// boundary allowed.
    Allow,
    /// A Deny statement (permission or boundary) matched: it wins.
    ExplicitDeny,
    /// No permission statement allowed (the default deny).
    ImplicitDeny,
    /// A permission statement allowed, but a boundary applies to the
    /// principal and none of its statements allowed the request.
    BoundaryDeny,
    /// The request context does not fit the schema (a required key is
    /// missing, a value does not parse, a single-valued key has several
    /// values): denied without evaluating, see [`Decision::error`].
    InvalidRequest,
}

/// The result of [`crate::PolicySet::evaluate`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    pub(crate) outcome: Outcome,
    pub(crate) matched: Vec<Arc<StatementInfo>>,
    pub(crate) warnings: Vec<String>,
    pub(crate) error: Option<String>,
    pub(crate) policy_hash: Arc<str>,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn allowed(&self) -> bool {
        self.outcome == Outcome::Allow
    }

    /// Why.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// Whether an explicit Deny decided.
    pub fn explicit_deny(&self) -> bool {
        self.outcome == Outcome::ExplicitDeny
    }

    /// Every statement that matched the request (Allow and Deny, permission
    /// and boundary), in policy-set order.
    pub fn matched(&self) -> &[Arc<StatementInfo>] {
        &self.matched
    }

    /// The statements that decided: the matching Denies for an explicit
    /// deny, the matching permission Allows for an allow, none otherwise.
    pub fn deciding(&self) -> impl Iterator<Item = &StatementInfo> {
        let want = match self.outcome {
            Outcome::ExplicitDeny => Some((Effect::Deny, None)),
            Outcome::Allow => Some((Effect::Allow, Some(Kind::Permission))),
            _ => None,
        };
        self.matched
            .iter()
            .map(Arc::as_ref)
            .filter(move |s| match want {
                Some((e, k)) => s.effect == e && k.is_none_or(|k| s.kind == k),
                None => false,
            })
    }

    /// Things a reviewer should know, e.g. that a statement matched only
    /// because an `IfExists` key was absent.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// For [`Outcome::InvalidRequest`]: what was wrong with the request.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Hex SHA-256 of the policy set the decision was made under.
    pub fn policy_hash(&self) -> &str {
        &self.policy_hash
    }

    /// A human explanation, several lines.
    pub fn explain(&self) -> String {
        let mut s = String::new();
        let verdict = if self.allowed() { "ALLOW" } else { "DENY" };
        let why = match self.outcome {
            Outcome::Allow => "allowed by a matching Allow statement",
            Outcome::ExplicitDeny => "an explicit Deny matched (Deny always wins)",
            Outcome::ImplicitDeny => "no Allow statement matched (implicit deny)",
            Outcome::BoundaryDeny => {
                "a permission statement allowed, but no applicable boundary allowed"
            }
            Outcome::InvalidRequest => "the request does not fit the schema",
        };
        let _ = writeln!(s, "{verdict}: {why}");
        if let Some(e) = &self.error {
            let _ = writeln!(s, "  error: {e}");
        }
        for m in self.deciding() {
            let _ = writeln!(s, "  decided by: {m}");
        }
        for m in &self.matched {
            let _ = writeln!(s, "  matched: {m}");
        }
        for w in &self.warnings {
            let _ = writeln!(s, "  warning: {w}");
        }
        let _ = writeln!(s, "  policy hash: {}", self.policy_hash);
        s
    }
}
