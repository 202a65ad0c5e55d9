//! The one place the gateway touches ward-policy: load a directory, look up
//! groups, evaluate. Everything else in the gateway speaks [`Verdict`], so a
//! change in ward-policy's API is a change here only.

use std::path::Path;

use ward_policy::{PolicySet, Principal, Request, Schema};

use crate::Error;
use crate::decide::Context;
use crate::identity::Identity;

/// What the policy said about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Allow (explicit allow and no explicit deny).
    pub allowed: bool,
    /// The Sid of the deciding statement, if it has one.
    pub sid: Option<String>,
    /// Hash of the policy version that decided.
    pub policy_hash: String,
    /// Why, in ward-policy's words (`Allow`, `ExplicitDeny`, …).
    pub outcome: String,
    /// For a request the schema refused: what was wrong with it.
    pub error: Option<String>,
}

/// A compiled policy directory.
#[derive(Debug)]
pub struct Policy {
    set: PolicySet,
}

impl Policy {
    /// Loads and compiles every policy in `dir` against the gateway schema;
    /// warnings are logged, errors refuse the whole directory.
    pub fn load_dir(dir: &Path) -> Result<Policy, Error> {
        let (set, warnings) = ward_policy::dir::compile(dir, &Schema::gateway())?;
        for w in warnings {
            tracing::warn!(dir = %dir.display(), warning = %w, "policy warning");
        }
        Ok(Policy { set })
    }

    /// Version hash of the loaded policies.
    pub fn hash(&self) -> &str {
        self.set.hash()
    }

    /// The groups the identity belongs to (from `groups.json`).
    pub fn groups_of(&self, identity: &Identity) -> Vec<String> {
        let principal = principal(identity);
        self.set.groups_of(&principal).map(str::to_string).collect()
    }

    /// Evaluates one request; anything not explicitly allowed is denied.
    pub fn evaluate(
        &self,
        identity: &Identity,
        action: &str,
        resource: &str,
        context: &Context,
    ) -> Verdict {
        // The connection's keys are shared, in ward-policy's form already;
        // only the request's own keys are converted here.
        let ctx = context.to_policy();
        let req = Request {
            principal: principal(identity),
            action: action.to_string(),
            resource: resource.to_string(),
            context: ctx,
        };
        let d = self.set.evaluate(&req);
        Verdict {
            allowed: d.allowed(),
            sid: d.deciding().find_map(|s| s.sid.clone()),
            policy_hash: d.policy_hash().to_string(),
            outcome: format!("{:?}", d.outcome()),
            error: d.error().map(str::to_string),
        }
    }
}

fn principal(identity: &Identity) -> Principal {
    Principal {
        spiffe: Some(identity.principal().to_string()),
        email: identity.email.clone(),
    }
}
