//! The compiled policy set: statements indexed by action and resource
//! prefix, patterns and CIDRs precompiled, evaluated without I/O.
//!
//! # Index
//!
//! A request touches only the statements filed under its exact action
//! (lower-cased), under its action's service (`http:*`-style patterns), or
//! under "any action" (`*`, `NotAction`); within each, only those filed
//! under its resource key (the text up to the second `/`, e.g.
//! `route/ledger`) plus those whose resource patterns have no literal key
//! (`*`, `route/*`, `NotResource`). With 10,000 statements over 500 routes a
//! request looks at a handful.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::condition::{self, Compiled as CompiledCondition, Verdict};
use crate::decision::{Decision, Effect, Kind, Outcome, StatementInfo};
use crate::document::{self, Document, Groups, Principals, Sink, Statement};
use crate::error::{Diagnostic, Error};
use crate::json::Pos;
use crate::pattern::{self, Pattern, Piece};
use crate::request::{Context, Principal, Request};
use crate::schema::{KeyType, Schema};

/// One source document: its name (a path relative to the policy directory,
/// `groups.json` for the group file) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Name used in diagnostics and decisions; `groups.json` at the top
    /// level is the group file, every other name a policy document.
    pub name: String,
    /// The JSON text.
    pub text: String,
}

impl Source {
    /// A source from a name and text.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Source {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// The name of the group file at the top of a policy directory.
pub const GROUPS_FILE: &str = "groups.json";

#[derive(Debug, Clone)]
enum ResourceMatcher {
    Fixed(Pattern),
    Template(Vec<Piece>),
}

#[derive(Debug, Clone)]
struct CompiledPrincipals {
    any: bool,
    spiffe: Vec<Pattern>,
    email: Vec<Pattern>,
    group: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct CompiledStatement {
    info: Arc<StatementInfo>,
    not_principal: bool,
    principals: CompiledPrincipals,
    not_action: bool,
    actions: Vec<Pattern>,
    not_resource: bool,
    resources: Vec<ResourceMatcher>,
    conditions: Vec<CompiledCondition>,
}

#[derive(Debug, Clone, Default)]
struct ResourceIndex {
    by_key: HashMap<String, Vec<u32>>,
    rest: Vec<u32>,
}

#[derive(Debug, Clone, Default)]
struct Index {
    exact: HashMap<String, ResourceIndex>,
    service: HashMap<String, ResourceIndex>,
    any: ResourceIndex,
}

/// A compiled, immutable set of policies. Cheap to share (`Arc<PolicySet>`)
/// between threads; swap the `Arc` to reload.
#[derive(Debug, Clone)]
pub struct PolicySet {
    statements: Vec<CompiledStatement>,
    index: Index,
    boundaries: Vec<u32>,
    groups: Groups,
    keys: HashMap<String, (KeyType, bool)>,
    families: Vec<(String, KeyType)>,
    required: Vec<(String, String)>,
    hash: Arc<str>,
    /// The schema declares `ward:PrincipalGroups` and a condition tests it:
    /// fill it from groups.json when the host does not.
    derive_groups: bool,
    pub(crate) docs: Vec<Document>,
}

/// The condition key filled from groups.json when a request lacks it.
pub(crate) const GROUPS_KEY: &str = "ward:principalgroups";

/// The text of `s` up to (not including) its second `/`, or all of it.
fn resource_key(s: &str) -> &str {
    let mut slashes = s.match_indices('/').map(|(i, _)| i);
    match (slashes.next(), slashes.next()) {
        (Some(_), Some(i)) => s.get(..i).unwrap_or(s),
        _ => s,
    }
}

/// The index key of a resource pattern, if it has one.
fn pattern_resource_key(p: &[Piece]) -> Option<String> {
    let prefix = pattern::literal_prefix(p);
    if prefix.matches('/').count() >= 2 || pattern::is_literal(p) {
        Some(resource_key(&prefix).to_owned())
    } else {
        None
    }
}

/// Lower-cases ASCII into a stack buffer when short enough, to avoid an
/// allocation per request.
fn with_lower<R>(s: &str, f: impl FnOnce(&str) -> R) -> R {
    let mut buf = [0u8; 64];
    if let Some(dst) = buf.get_mut(..s.len()) {
        dst.copy_from_slice(s.as_bytes());
        dst.make_ascii_lowercase();
        if let Ok(l) = std::str::from_utf8(dst) {
            return f(l);
        }
    }
    f(&s.to_ascii_lowercase())
}

impl PolicySet {
    /// Compiles policy documents (and the `groups.json` among `sources`,
    /// if any) against a schema.
    ///
    /// Returns the set and the load-time warnings (footguns, unreachable
    /// statements), or every error found, each with file, line and column.
    pub fn compile(
        sources: &[Source],
        schema: &Schema,
    ) -> Result<(PolicySet, Vec<Diagnostic>), Error> {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let mut groups = Groups::default();
        let mut sorted: Vec<&Source> = sources.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        for w in sorted.windows(2) {
            if let [a, b] = w
                && a.name == b.name
            {
                errors.push(Diagnostic {
                    file: b.name.clone(),
                    line: 1,
                    column: 1,
                    message: "the same source name was given twice".into(),
                });
            }
        }
        if let Some(g) = sorted.iter().find(|s| s.name == GROUPS_FILE) {
            let mut sink = Sink {
                file: &g.name,
                errors: &mut errors,
                warnings: &mut warnings,
            };
            groups = document::parse_groups(&mut sink, &g.text);
        }
        let mut docs = Vec::new();
        for s in sorted.iter().filter(|s| s.name != GROUPS_FILE) {
            let mut sink = Sink {
                file: &s.name,
                errors: &mut errors,
                warnings: &mut warnings,
            };
            if s.name.ends_with(&format!("/{GROUPS_FILE}")) {
                sink.errors.push(Diagnostic::new(
                    &s.name,
                    Pos { line: 1, column: 1 },
                    "groups.json is read only at the top of the policy directory: move these groups there",
                ));
                continue;
            }
            if let Some(d) = document::parse_document(&mut sink, &s.text, schema, &groups) {
                docs.push(d);
            }
        }
        if sorted.iter().all(|s| s.name == GROUPS_FILE) {
            warnings.push(Diagnostic {
                file: "<policy set>".into(),
                line: 1,
                column: 1,
                message: "no policy documents: every request will be denied".into(),
            });
        }
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        unreachable_warnings(&docs, &mut warnings);
        for d in docs.iter().filter(|d| d.kind == Kind::Boundary) {
            let first = d.statements.first();
            if let Some(first) = first
                && d.statements.iter().all(|s| s.effect == Effect::Deny)
            {
                warnings.push(Diagnostic {
                    file: first.info.file.clone(),
                    line: 1,
                    column: 1,
                    message: "this boundary has no Allow statement: every principal it names is denied everything (IAM's boundary rule); add the Allows that set its limits".into(),
                });
            }
        }

        let mut hasher = Sha256::new();
        for s in &sorted {
            hasher.update(s.name.as_bytes());
            hasher.update([0u8]);
            hasher.update((s.text.len() as u64).to_be_bytes());
            hasher.update(s.text.as_bytes());
        }
        let hash: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();

        let mut set = PolicySet {
            statements: Vec::new(),
            index: Index::default(),
            boundaries: Vec::new(),
            groups,
            keys: HashMap::new(),
            families: Vec::new(),
            required: Vec::new(),
            hash: hash.into(),
            derive_groups: schema.key(GROUPS_KEY).is_some_and(|k| k.multi)
                && docs
                    .iter()
                    .flat_map(|d| &d.statements)
                    .flat_map(|s| &s.conditions)
                    .any(|c| c.key == GROUPS_KEY),
            docs: Vec::new(),
        };
        for k in schema.keys() {
            let lower = k.name.to_ascii_lowercase();
            if k.name.ends_with('/') {
                set.families.push((lower, k.ty));
            } else {
                if k.required {
                    set.required.push((lower.clone(), k.name.clone()));
                }
                set.keys.insert(lower, (k.ty, k.multi));
            }
        }
        for d in &docs {
            for s in &d.statements {
                set.add(s);
            }
        }
        set.docs = docs;
        Ok((set, warnings))
    }

    fn add(&mut self, s: &Statement) {
        let Ok(id) = u32::try_from(self.statements.len()) else {
            return;
        };
        let compile_list = |v: &[Vec<Piece>], ci: bool| -> Vec<Pattern> {
            v.iter().map(|p| Pattern::compile(p, ci)).collect()
        };
        let p: &Principals = &s.principals;
        let cs = CompiledStatement {
            info: s.info.clone(),
            not_principal: s.not_principal,
            principals: CompiledPrincipals {
                any: p.any,
                spiffe: compile_list(&p.spiffe, false),
                email: compile_list(&p.email, true),
                group: compile_list(&p.group, false),
            },
            not_action: s.not_action,
            actions: compile_list(&s.actions, true),
            not_resource: s.not_resource,
            resources: s
                .resources
                .iter()
                .map(|r| {
                    if r.iter().any(|x| matches!(x, Piece::Var(_))) {
                        ResourceMatcher::Template(r.clone())
                    } else {
                        ResourceMatcher::Fixed(Pattern::compile(r, false))
                    }
                })
                .collect(),
            conditions: s.conditions.iter().map(CompiledCondition::new).collect(),
        };
        if s.info.kind == Kind::Boundary {
            self.boundaries.push(id);
        }
        self.statements.push(cs);

        // File under resource keys, or under "rest".
        let res_keys: Option<Vec<String>> = if s.not_resource {
            None
        } else {
            s.resources
                .iter()
                .map(|r| pattern_resource_key(r))
                .collect()
        };
        let file = |ri: &mut ResourceIndex| match &res_keys {
            Some(keys) => {
                for k in keys {
                    let list = ri.by_key.entry(k.clone()).or_default();
                    if list.last() != Some(&id) {
                        list.push(id);
                    }
                }
            }
            None => ri.rest.push(id),
        };
        enum Bucket {
            Exact(String),
            Service(String),
        }
        let buckets: Option<Vec<Bucket>> = if s.not_action {
            None
        } else {
            s.actions
                .iter()
                .map(|a| {
                    let prefix = pattern::literal_prefix(a).to_ascii_lowercase();
                    if pattern::is_literal(a) {
                        Some(Bucket::Exact(prefix))
                    } else {
                        prefix
                            .split_once(':')
                            .map(|(svc, _)| Bucket::Service(svc.to_owned()))
                    }
                })
                .collect()
        };
        match buckets {
            None => file(&mut self.index.any),
            Some(bs) => {
                let mut done: Vec<(bool, String)> = Vec::new();
                for b in bs {
                    let (is_exact, key) = match b {
                        Bucket::Exact(k) => (true, k),
                        Bucket::Service(k) => (false, k),
                    };
                    if done.contains(&(is_exact, key.clone())) {
                        continue;
                    }
                    let map = if is_exact {
                        &mut self.index.exact
                    } else {
                        &mut self.index.service
                    };
                    file(map.entry(key.clone()).or_default());
                    done.push((is_exact, key));
                }
            }
        }
    }

    /// Hex SHA-256 over the sources, sorted by name, each hashed as
    /// `name, 0x00, text length (u64 big-endian), text`. The same files give
    /// the same hash wherever they are loaded.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Number of compiled statements (permission and boundary).
    pub fn len(&self) -> usize {
        self.statements.len()
    }

    /// Whether the set has no statement (and so denies everything).
    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// The groups (from `groups.json`) a principal belongs to. When a
    /// request lacks `ward:PrincipalGroups`, [`PolicySet::evaluate`] fills it
    /// from this; a host that fills it itself saves a copy of the request.
    pub fn groups_of<'a>(&'a self, principal: &'a Principal) -> impl Iterator<Item = &'a str> + 'a {
        self.groups
            .of(principal.spiffe.as_deref(), principal.email.as_deref())
    }

    /// The parsed groups, for the reference evaluator.
    #[cfg(test)]
    pub(crate) fn groups_for_reference(&self) -> &Groups {
        &self.groups
    }

    /// Checks the context against the schema: required keys present,
    /// single-valued keys with one value, every value parses as its type.
    /// Keys the schema does not know are ignored.
    ///
    /// A layered context whose base already passed this set's key checks
    /// (remembered in the base) has only its own keys checked: the base's
    /// other keys are the same for every request over it. The first error
    /// is the same as a full check's, since no base key has one.
    pub(crate) fn validate(&self, ctx: &Context) -> Result<(), String> {
        match ctx.base() {
            Some(base) if self.keys_ok(base) => self.check_keys(ctx.own())?,
            _ => self.check_keys(ctx.iter())?,
        }
        for (lower, name) in &self.required {
            if ctx.get_lower(lower).is_none() {
                return Err(format!(
                    "context key {name} is required by the schema but missing"
                ));
            }
        }
        Ok(())
    }

    /// Whether every key of `base` passes this set's key checks; the
    /// answer is kept in `base` for the set it was first asked by.
    pub(crate) fn keys_ok(&self, base: &Context) -> bool {
        match base.checked.get() {
            Some((set, ok)) if Arc::ptr_eq(set, &self.hash) => *ok,
            Some(_) => self.check_keys(base.iter()).is_ok(),
            None => {
                let ok = self.check_keys(base.iter()).is_ok();
                let _ = base.checked.set((self.hash.clone(), ok));
                ok
            }
        }
    }

    /// The per-key checks of [`PolicySet::validate`].
    fn check_keys<'c>(
        &self,
        keys: impl Iterator<Item = (&'c str, &'c [String])>,
    ) -> Result<(), String> {
        for (k, vals) in keys {
            let decl = self.keys.get(k).copied().or_else(|| {
                self.families
                    .iter()
                    .find(|(f, _)| k.len() > f.len() && k.starts_with(f.as_str()))
                    .map(|(_, ty)| (*ty, false))
            });
            let Some((ty, multi)) = decl else { continue };
            if !multi && vals.len() != 1 {
                return Err(format!(
                    "context key {k} is single-valued but has {} values",
                    vals.len()
                ));
            }
            for v in vals {
                ty.check(v).map_err(|e| format!("context key {k}: {e}"))?;
            }
        }
        Ok(())
    }

    fn principal_matches(&self, s: &CompiledStatement, p: &Principal) -> bool {
        let ps = &s.principals;
        let hit = ps.any
            || p.spiffe
                .as_deref()
                .is_some_and(|id| ps.spiffe.iter().any(|pat| pat.matches(id, false)))
            || p.email
                .as_deref()
                .is_some_and(|e| ps.email.iter().any(|pat| pat.matches(e, true)))
            || (!ps.group.is_empty()
                && self
                    .groups
                    .of(p.spiffe.as_deref(), p.email.as_deref())
                    .any(|g| ps.group.iter().any(|pat| pat.matches(g, false))));
        hit != s.not_principal
    }

    /// Full match of one statement: `None` when it does not apply,
    /// `Some(absent)` when it does, `absent` naming a key whose absence made
    /// a condition true.
    fn statement_matches<'s>(
        &self,
        s: &'s CompiledStatement,
        req: &Request,
        action_lower: &str,
    ) -> Option<Option<&'s str>> {
        let action_hit = s.actions.iter().any(|a| a.matches(action_lower, true));
        if action_hit == s.not_action {
            return None;
        }
        let res_hit = s.resources.iter().any(|r| match r {
            ResourceMatcher::Fixed(p) => p.matches(&req.resource, false),
            ResourceMatcher::Template(t) => pattern::expand(t, |k| {
                req.context
                    .get_lower(k)
                    .and_then(|v| v.first())
                    .map(String::as_str)
            })
            .is_some_and(|e| pattern::glob(&e, &req.resource, false)),
        });
        if res_hit == s.not_resource {
            return None;
        }
        if !self.principal_matches(s, &req.principal) {
            return None;
        }
        let mut absent = None;
        for c in &s.conditions {
            match condition::evaluate(c, &req.context) {
                Verdict::False => return None,
                Verdict::True => {}
                Verdict::TrueBecauseAbsent => absent = Some(c.key_name.as_str()),
            }
        }
        Some(absent)
    }

    /// Decides a request. Pure: the result depends only on the set and the
    /// request (whose context carries the current time); no clock, no I/O.
    /// Never panics; an invalid request is denied ([`Outcome::InvalidRequest`]).
    pub fn evaluate(&self, req: &Request) -> Decision {
        match self.with_groups(req) {
            Some(filled) => self.decide(&filled),
            None => self.decide(req),
        }
    }

    /// When a condition tests `ward:PrincipalGroups` and the request does
    /// not carry it, the request with it filled from groups.json (hosts that
    /// fill it themselves avoid this copy).
    pub(crate) fn with_groups(&self, req: &Request) -> Option<Request> {
        if !self.derive_groups || req.context.get_lower(GROUPS_KEY).is_some() {
            return None;
        }
        let mut filled = req.clone();
        let groups = self.groups_of(&req.principal).map(str::to_owned).collect();
        filled.context.set(GROUPS_KEY, groups);
        Some(filled)
    }

    fn decide(&self, req: &Request) -> Decision {
        let mut d = Decision {
            outcome: Outcome::ImplicitDeny,
            matched: Vec::new(),
            warnings: Vec::new(),
            error: None,
            policy_hash: self.hash.clone(),
        };
        if let Err(e) = self.validate(&req.context) {
            d.outcome = Outcome::InvalidRequest;
            d.error = Some(e);
            return d;
        }
        let (mut allow, mut deny, mut boundary_allow) = (false, false, false);
        with_lower(&req.action, |action| {
            let service = action.split_once(':').map(|(s, _)| s);
            let key = resource_key(&req.resource);
            let indexes = [
                self.index.exact.get(action),
                service.and_then(|s| self.index.service.get(s)),
                Some(&self.index.any),
            ];
            for ri in indexes.into_iter().flatten() {
                let lists = [
                    ri.by_key.get(key).map(Vec::as_slice),
                    Some(ri.rest.as_slice()),
                ];
                for &id in lists.into_iter().flatten().flatten() {
                    let Some(s) = self.statements.get(id as usize) else {
                        continue;
                    };
                    if d.matched.iter().any(|m| Arc::ptr_eq(m, &s.info)) {
                        continue;
                    }
                    let Some(absent) = self.statement_matches(s, req, action) else {
                        continue;
                    };
                    match (s.info.effect, s.info.kind) {
                        (Effect::Deny, _) => deny = true,
                        (Effect::Allow, Kind::Permission) => allow = true,
                        (Effect::Allow, Kind::Boundary) => boundary_allow = true,
                    }
                    if let Some(k) = absent {
                        d.warnings.push(format!(
                            "{} matched only because {k} is absent or empty",
                            s.info
                        ));
                    }
                    d.matched.push(s.info.clone());
                }
            }
        });
        // Report in policy-set order, whatever order the index found them in.
        d.matched
            .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        d.outcome = if deny {
            Outcome::ExplicitDeny
        } else if !allow {
            Outcome::ImplicitDeny
        } else if !boundary_allow && self.boundary_applies(&req.principal) {
            Outcome::BoundaryDeny
        } else {
            Outcome::Allow
        };
        d
    }

    fn boundary_applies(&self, p: &Principal) -> bool {
        self.boundaries.iter().any(|&id| {
            self.statements
                .get(id as usize)
                .is_some_and(|s| self.principal_matches(s, p))
        })
    }
}

/// Warns about Allow statements that an unconditional Deny always
/// overrides (a conservative check: it only reports sure cases).
fn unreachable_warnings(docs: &[Document], warnings: &mut Vec<Diagnostic>) {
    let denies: Vec<&Statement> = docs
        .iter()
        .flat_map(|d| &d.statements)
        .filter(|s| {
            s.effect == Effect::Deny
                && s.conditions.is_empty()
                && !s.not_principal
                && !s.not_action
                && !s.not_resource
        })
        .collect();
    if denies.is_empty() {
        return;
    }
    // A Deny whose resources all have an index key can only cover Allow
    // resources with the same key, so compare an Allow with those and with
    // the unkeyed Denies only (linear instead of quadratic on big sets).
    let mut by_key: HashMap<String, Vec<&Statement>> = HashMap::new();
    let mut unkeyed: Vec<&Statement> = Vec::new();
    for d in &denies {
        let keys: Option<Vec<String>> = d
            .resources
            .iter()
            .map(|r| pattern_resource_key(r))
            .collect();
        match keys {
            Some(keys) => {
                for k in keys {
                    let list = by_key.entry(k).or_default();
                    if !list.last().is_some_and(|l| std::ptr::eq(*l, *d)) {
                        list.push(d);
                    }
                }
            }
            None => unkeyed.push(d),
        }
    }
    let covers = |d: &[Piece], a: &[Piece], ci: bool| {
        d.iter().all(|x| *x == Piece::Star)
            || d == a
            || (pattern::is_literal(a)
                && !d.iter().any(|x| matches!(x, Piece::Var(_)))
                && pattern::glob(d, &pattern::to_text(a), ci))
    };
    for s in docs.iter().flat_map(|d| &d.statements) {
        if s.effect != Effect::Allow || s.not_principal || s.not_action || s.not_resource {
            continue;
        }
        let keyed = s
            .resources
            .first()
            .and_then(|r| pattern_resource_key(r))
            .and_then(|k| by_key.get(&k))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let by = keyed.iter().chain(unkeyed.iter()).find(|d| {
            let principals_covered = d.principals.any
                || (!s.principals.any
                    && s.principals
                        .spiffe
                        .iter()
                        .all(|p| d.principals.spiffe.contains(p))
                    && s.principals
                        .email
                        .iter()
                        .all(|p| d.principals.email.contains(p))
                    && s.principals
                        .group
                        .iter()
                        .all(|p| d.principals.group.contains(p)));
            principals_covered
                && s.actions
                    .iter()
                    .all(|a| d.actions.iter().any(|x| covers(x, a, true)))
                && s.resources
                    .iter()
                    .all(|r| d.resources.iter().any(|x| covers(x, r, false)))
        });
        if let Some(d) = by {
            warnings.push(Diagnostic {
                file: s.info.file.clone(),
                line: s.info.line,
                column: s.info.column,
                message: format!(
                    "statement {} is unreachable: the unconditional Deny {} always overrides it",
                    s.info.sid.as_deref().unwrap_or("<no Sid>"),
                    d.info
                ),
            });
        }
    }
}
