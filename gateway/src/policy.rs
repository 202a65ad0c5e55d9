//! The one place the gateway touches ward-policy: load a directory, look up
//! groups, evaluate. Everything else in the gateway speaks [`Verdict`], so a
//! change in ward-policy's API is a change here only.

use std::path::Path;

use crate::Error;
use crate::decide::Context;

/// What the policy said about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Allow (explicit allow and no explicit deny).
    pub allowed: bool,
    /// The Sid of the deciding statement, if it has one.
    pub sid: Option<String>,
    /// Hash of the policy version that decided.
    pub policy_hash: String,
}

/// A compiled policy directory.
#[derive(Debug)]
pub struct Policy {
    hash: String,
}

impl Policy {
    /// Loads and compiles every policy in `dir` against the gateway schema.
    pub fn load_dir(dir: &Path) -> Result<Policy, Error> {
        Err(Error::ConfigInvalid {
            path: dir.to_path_buf(),
            message: "ward-policy evaluator not wired yet".into(),
        })
    }

    /// Version hash of the loaded policies.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The groups `principal` belongs to (from `groups.json`).
    pub fn groups_of(&self, _principal: &str) -> Vec<String> {
        Vec::new()
    }

    /// Evaluates one request; anything not explicitly allowed is denied.
    pub fn evaluate(
        &self,
        _principal: &str,
        _action: &str,
        _resource: &str,
        _context: &Context,
    ) -> Verdict {
        Verdict {
            allowed: false,
            sid: None,
            policy_hash: self.hash.clone(),
        }
    }
}
