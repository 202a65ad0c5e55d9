//! ward-policy: IAM-style JSON policies compiled into a pure evaluator.
//!
//! ```text
//! let sources = ward_policy::dir::load(dir)?;                 // the only I/O
//! let (set, warnings) = PolicySet::compile(&sources, &Schema::gateway())?;
//! let decision = set.evaluate(&request);                      // pure
//! if decision.allowed() { … } else { 403 with decision.explain() }
//! ```
//!
//! Evaluation does no I/O and reads no clock: the whole request context,
//! the current time (`ward:CurrentTime`) included, is an input, so every
//! decision is reproducible and names the policy-set hash it was made
//! under. The only I/O in the crate is [`dir`], which reads a policy
//! directory into memory. It depends on no other ward crate.
//!
//! Semantics are IAM's: default deny; an explicit Deny anywhere wins;
//! otherwise an Allow allows, unless a permissions boundary applies to the
//! principal and none of its statements allows too. Actions match
//! case-insensitively, resources case-sensitively; `*` matches any run of
//! characters (including none), `?` exactly one.
#![deny(clippy::indexing_slicing)]

mod condition;
mod decision;
pub mod dir;
mod document;
mod error;
mod json;
mod pattern;
mod request;
mod schema;
mod set;
mod values;

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

pub use decision::{Decision, Effect, Kind, Outcome, StatementInfo};
pub use document::VERSIONS;
pub use error::{Diagnostic, Error};
pub use request::{Context, Principal, Request};
pub use schema::{KeyDecl, KeyType, Schema};
pub use set::{GROUPS_FILE, PolicySet, Source};
