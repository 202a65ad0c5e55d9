//! Parsing and validation of policy documents and `groups.json` into a
//! checked syntax tree (with source positions), against a [`Schema`].
//!
//! Both evaluators start from this tree: the compiled one in `set` and the
//! naive reference one in `reference` (tests). Every error and warning is
//! collected with its file, line and column; nothing stops at the first.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::decision::{Effect, Kind, StatementInfo};
use crate::error::Diagnostic;
use crate::json::{self, Member, Node, Pos, Value};
use crate::pattern::{self, Piece};
use crate::schema::{KeyType, Schema};
use crate::values::{self, Cidr};

/// The policy-language versions this crate understands.
pub const VERSIONS: &[&str] = &["2026-11-01"];

/// Comparison of the numeric and date operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    pub(crate) fn holds<T: PartialOrd>(self, req: T, pol: T) -> bool {
        match self {
            // `Ne` is evaluated as the negation of `Eq` by the callers.
            Cmp::Eq | Cmp::Ne => req == pol,
            Cmp::Lt => req < pol,
            Cmp::Le => req <= pol,
            Cmp::Gt => req > pol,
            Cmp::Ge => req >= pol,
        }
    }
}

/// A condition operator without qualifier and `IfExists`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    Numeric(Cmp),
    Date(Cmp),
    Bool,
    IpAddress,
    NotIpAddress,
    Null,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        let cmp = |s: &str| {
            Some(match s {
                "Equals" => Cmp::Eq,
                "NotEquals" => Cmp::Ne,
                "LessThan" => Cmp::Lt,
                "LessThanEquals" => Cmp::Le,
                "GreaterThan" => Cmp::Gt,
                "GreaterThanEquals" => Cmp::Ge,
                _ => return None,
            })
        };
        Some(match s {
            "StringEquals" => Op::StringEquals,
            "StringNotEquals" => Op::StringNotEquals,
            "StringEqualsIgnoreCase" => Op::StringEqualsIgnoreCase,
            "StringNotEqualsIgnoreCase" => Op::StringNotEqualsIgnoreCase,
            "StringLike" => Op::StringLike,
            "StringNotLike" => Op::StringNotLike,
            "Bool" => Op::Bool,
            "IpAddress" => Op::IpAddress,
            "NotIpAddress" => Op::NotIpAddress,
            "Null" => Op::Null,
            _ => {
                if let Some(rest) = s.strip_prefix("Numeric") {
                    Op::Numeric(cmp(rest)?)
                } else if let Some(rest) = s.strip_prefix("Date") {
                    Op::Date(cmp(rest)?)
                } else {
                    return None;
                }
            }
        })
    }

    /// The key type the operator tests; `None` for `Null` (any type).
    pub(crate) fn key_type(self) -> Option<KeyType> {
        Some(match self {
            Op::StringEquals
            | Op::StringNotEquals
            | Op::StringEqualsIgnoreCase
            | Op::StringNotEqualsIgnoreCase
            | Op::StringLike
            | Op::StringNotLike => KeyType::String,
            Op::Numeric(_) => KeyType::Numeric,
            Op::Date(_) => KeyType::Date,
            Op::Bool => KeyType::Bool,
            Op::IpAddress | Op::NotIpAddress => KeyType::Ip,
            Op::Null => return None,
        })
    }

    /// Negated operators are true when the request value matches none of
    /// the policy values, and true on an absent key (IAM).
    pub(crate) fn negated(self) -> bool {
        matches!(
            self,
            Op::StringNotEquals
                | Op::StringNotEqualsIgnoreCase
                | Op::StringNotLike
                | Op::Numeric(Cmp::Ne)
                | Op::Date(Cmp::Ne)
                | Op::NotIpAddress
        )
    }
}

const OPERATOR_NAMES: &[&str] = &[
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
    "NumericEquals",
    "NumericNotEquals",
    "NumericLessThan",
    "NumericLessThanEquals",
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
    "DateEquals",
    "DateNotEquals",
    "DateLessThan",
    "DateLessThanEquals",
    "DateGreaterThan",
    "DateGreaterThanEquals",
    "Bool",
    "IpAddress",
    "NotIpAddress",
    "Null",
];

/// `ForAnyValue:` / `ForAllValues:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Qualifier {
    ForAnyValue,
    ForAllValues,
}

/// A policy-side condition value, parsed for its operator's type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CondValue {
    /// String operators; may contain variables (`${ward:Host}`), and for
    /// `StringLike` wildcards.
    Str(Vec<Piece>),
    Num(f64),
    Date(i128),
    Bool(bool),
    Cidr(Cidr),
}

/// One key test: `"Op": {"key": values}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    pub op: Op,
    pub qualifier: Option<Qualifier>,
    pub if_exists: bool,
    /// The key as written (for messages).
    pub key_name: String,
    /// Lower-cased key (contexts store keys lower-cased).
    pub key: String,
    /// Raw values, for messages and the reference evaluator.
    pub raw: Vec<String>,
    pub values: Vec<CondValue>,
}

/// A principal list: `"*"` or `{"Spiffe": […], "Email": […], "Group": […]}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Principals {
    pub any: bool,
    pub spiffe: Vec<Vec<Piece>>,
    pub email: Vec<Vec<Piece>>,
    pub group: Vec<Vec<Piece>>,
}

/// One statement, checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Statement {
    pub info: Arc<StatementInfo>,
    pub effect: Effect,
    pub not_principal: bool,
    pub principals: Principals,
    pub not_action: bool,
    pub actions: Vec<Vec<Piece>>,
    pub not_resource: bool,
    /// Templates: may contain variables.
    pub resources: Vec<Vec<Piece>>,
    pub conditions: Vec<Condition>,
}

/// One checked document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Document {
    pub kind: Kind,
    pub statements: Vec<Statement>,
}

/// `groups.json`: group name → members (SPIFFE IDs and e-mail addresses).
///
/// ```json
/// {"Groups": {"payments-team": ["spiffe://corp.example/ns/prod/sa/billing", "alice@corp.example"]}}
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Groups {
    pub by_name: BTreeMap<String, Vec<String>>,
    /// Member (SPIFFE ID, or lower-cased e-mail) → its groups.
    pub by_member: HashMap<String, Vec<String>>,
}

impl Groups {
    /// The groups of a principal (SPIFFE ID exact, e-mail case-insensitive).
    pub(crate) fn of<'a>(
        &'a self,
        spiffe: Option<&str>,
        email: Option<&str>,
    ) -> impl Iterator<Item = &'a str> + 'a {
        let a = spiffe.and_then(|s| self.by_member.get(s));
        let b = email.and_then(|e| {
            if e.bytes().any(|b| b.is_ascii_uppercase()) {
                self.by_member.get(&e.to_ascii_lowercase())
            } else {
                self.by_member.get(e)
            }
        });
        a.into_iter()
            .chain(b)
            .flat_map(|v| v.iter().map(String::as_str))
    }
}

/// Collects errors and warnings for one file.
pub(crate) struct Sink<'a> {
    pub file: &'a str,
    pub errors: &'a mut Vec<Diagnostic>,
    pub warnings: &'a mut Vec<Diagnostic>,
}

impl Sink<'_> {
    fn error(&mut self, pos: Pos, msg: impl Into<String>) {
        self.errors.push(Diagnostic::new(self.file, pos, msg));
    }
    fn warn(&mut self, pos: Pos, msg: impl Into<String>) {
        self.warnings.push(Diagnostic::new(self.file, pos, msg));
    }
}

/// Levenshtein distance, for "did you mean" hints on misspelt keys.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

fn unknown_key(what: &str, key: &str, expected: &[&str]) -> String {
    let best = expected
        .iter()
        .map(|e| (distance(key, e), *e))
        .min()
        .filter(|(d, _)| *d <= 3);
    let list = expected
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    match best {
        Some((_, b)) => {
            format!("unknown {what} \"{key}\": did you mean \"{b}\"? (expected one of {list})")
        }
        None => format!("unknown {what} \"{key}\": expected one of {list}"),
    }
}

/// A string or a non-empty array of strings (numbers and booleans too when
/// `scalars`), as IAM accepts both forms.
fn strings(sink: &mut Sink, node: &Node, field: &str, scalars: bool) -> Option<Vec<(String, Pos)>> {
    let one = |n: &Node| -> Option<String> {
        match &n.value {
            Value::String(s) => Some(s.clone()),
            Value::Number(s) if scalars => Some(s.clone()),
            Value::Bool(b) if scalars => Some(b.to_string()),
            _ => None,
        }
    };
    match &node.value {
        Value::Array(items) => {
            if items.is_empty() {
                sink.error(
                    node.pos,
                    format!("\"{field}\" is an empty list, which matches nothing: list at least one value or remove the statement"),
                );
                return None;
            }
            let mut out = Vec::new();
            for it in items {
                match one(it) {
                    Some(s) => out.push((s, it.pos)),
                    None => {
                        sink.error(
                            it.pos,
                            format!(
                                "expected a string in \"{field}\", found {}",
                                it.value.kind()
                            ),
                        );
                        return None;
                    }
                }
            }
            Some(out)
        }
        _ => match one(node) {
            Some(s) => Some(vec![(s, node.pos)]),
            None => {
                sink.error(
                    node.pos,
                    format!(
                        "expected a string or an array of strings for \"{field}\", found {}",
                        node.value.kind()
                    ),
                );
                None
            }
        },
    }
}

/// Parses `groups.json`.
pub(crate) fn parse_groups(sink: &mut Sink, text: &str) -> Groups {
    let mut groups = Groups::default();
    let root = match json::parse(text) {
        Ok(r) => r,
        Err(e) => {
            sink.error(e.pos, format!("invalid JSON: {}", e.message));
            return groups;
        }
    };
    let Value::Object(members) = &root.value else {
        sink.error(
            root.pos,
            "expected an object {\"Groups\": {\"name\": [members…]}}",
        );
        return groups;
    };
    for m in members {
        if m.key != "Groups" {
            sink.error(
                m.key_pos,
                unknown_key("groups.json field", &m.key, &["Groups"]),
            );
            continue;
        }
        let Value::Object(gs) = &m.value.value else {
            sink.error(
                m.value.pos,
                "expected \"Groups\" to be an object of group name → member list",
            );
            continue;
        };
        for g in gs {
            // An empty group is legitimate (a break-glass group, say).
            if matches!(&g.value.value, Value::Array(a) if a.is_empty()) {
                groups.by_name.insert(g.key.clone(), Vec::new());
                continue;
            }
            let Some(list) = strings(sink, &g.value, &g.key, false) else {
                continue;
            };
            let mut names = Vec::new();
            for (member, pos) in list {
                let key = if member.starts_with("spiffe://") {
                    member.clone()
                } else if member.contains('@') {
                    member.to_ascii_lowercase()
                } else {
                    sink.error(
                        pos,
                        format!("group member \"{member}\" is neither a SPIFFE ID (spiffe://…) nor an e-mail address"),
                    );
                    continue;
                };
                if member.contains('*') || member.contains('?') {
                    sink.error(
                        pos,
                        "group members are exact identities: wildcards are not allowed here",
                    );
                    continue;
                }
                let entry = groups.by_member.entry(key).or_default();
                if !entry.contains(&g.key) {
                    entry.push(g.key.clone());
                }
                names.push(member);
            }
            groups.by_name.insert(g.key.clone(), names);
        }
    }
    groups
}

const DOC_KEYS: &[&str] = &["Version", "Id", "Kind", "Statement"];
const STMT_KEYS: &[&str] = &[
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];

/// Parses and checks one policy document. Returns `None` when it has errors.
pub(crate) fn parse_document(
    sink: &mut Sink,
    text: &str,
    schema: &Schema,
    groups: &Groups,
) -> Option<Document> {
    let before = sink.errors.len();
    let root = match json::parse(text) {
        Ok(r) => r,
        Err(e) => {
            sink.error(e.pos, format!("invalid JSON: {}", e.message));
            return None;
        }
    };
    let Value::Object(members) = &root.value else {
        sink.error(
            root.pos,
            format!(
                "expected a policy document object, found {}",
                root.value.kind()
            ),
        );
        return None;
    };
    let mut kind = Kind::Permission;
    let mut version = None;
    let mut statements = Vec::new();
    let mut saw_statement = false;
    for m in members {
        match m.key.as_str() {
            "Version" => match &m.value.value {
                Value::String(v) if VERSIONS.contains(&v.as_str()) => version = Some(v.clone()),
                _ => sink.error(
                    m.value.pos,
                    format!(
                        "unsupported \"Version\": expected \"{}\"",
                        VERSIONS.join("\" or \"")
                    ),
                ),
            },
            "Id" => {
                if !matches!(m.value.value, Value::String(_)) {
                    sink.error(m.value.pos, "expected \"Id\" to be a string");
                }
            }
            "Kind" => match &m.value.value {
                Value::String(k) if k == "Permission" => kind = Kind::Permission,
                Value::String(k) if k == "Boundary" => kind = Kind::Boundary,
                _ => sink.error(
                    m.value.pos,
                    "expected \"Kind\" to be \"Permission\" or \"Boundary\"",
                ),
            },
            "Statement" => {
                saw_statement = true;
                let items: Vec<&Node> = match &m.value.value {
                    Value::Array(a) => a.iter().collect(),
                    Value::Object(_) => vec![&m.value],
                    other => {
                        sink.error(
                            m.value.pos,
                            format!("expected \"Statement\" to be an object or an array of objects, found {}", other.kind()),
                        );
                        vec![]
                    }
                };
                if items.is_empty() && matches!(m.value.value, Value::Array(_)) {
                    sink.error(
                        m.value.pos,
                        "\"Statement\" is empty: add at least one statement",
                    );
                }
                statements = items
                    .into_iter()
                    .filter_map(|n| statement(sink, n, schema, groups, kind))
                    .collect();
            }
            other => sink.error(m.key_pos, unknown_key("document field", other, DOC_KEYS)),
        }
    }
    if version.is_none() && !members.iter().any(|m| m.key == "Version") {
        sink.error(
            root.pos,
            format!(
                "missing \"Version\": add \"Version\": \"{}\"",
                VERSIONS.join("")
            ),
        );
    }
    if !saw_statement {
        sink.error(
            root.pos,
            "missing \"Statement\": a document needs at least one statement",
        );
    }
    // "Kind" may come after "Statement" in the file: fix up the statements.
    for s in &mut statements {
        if s.info.kind != kind {
            let mut info = (*s.info).clone();
            info.kind = kind;
            s.info = Arc::new(info);
        }
    }
    let mut sids: HashMap<&str, Pos> = HashMap::new();
    for s in &statements {
        if let Some(sid) = &s.info.sid {
            let pos = Pos {
                line: s.info.line,
                column: s.info.column,
            };
            if sids.insert(sid.as_str(), pos).is_some() {
                sink.error(pos, format!("duplicate Sid \"{sid}\" in this document: Sids must be unique so that decisions name one statement"));
            }
        }
    }
    (sink.errors.len() == before).then_some(Document { kind, statements })
}

fn field<'a>(members: &'a [Member], key: &str) -> Option<&'a Member> {
    members.iter().find(|m| m.key == key)
}

fn statement(
    sink: &mut Sink,
    node: &Node,
    schema: &Schema,
    groups: &Groups,
    kind: Kind,
) -> Option<Statement> {
    let before = sink.errors.len();
    let Value::Object(members) = &node.value else {
        sink.error(
            node.pos,
            format!("expected a statement object, found {}", node.value.kind()),
        );
        return None;
    };
    for m in members {
        if !STMT_KEYS.contains(&m.key.as_str()) {
            sink.error(m.key_pos, unknown_key("statement field", &m.key, STMT_KEYS));
        }
    }
    let sid = match field(members, "Sid").map(|m| &m.value) {
        None => None,
        Some(Node {
            value: Value::String(s),
            ..
        }) => Some(s.clone()),
        Some(n) => {
            sink.error(
                n.pos,
                format!("expected \"Sid\" to be a string, found {}", n.value.kind()),
            );
            None
        }
    };
    let effect = match field(members, "Effect").map(|m| &m.value) {
        Some(Node {
            value: Value::String(e),
            ..
        }) if e == "Allow" => Some(Effect::Allow),
        Some(Node {
            value: Value::String(e),
            ..
        }) if e == "Deny" => Some(Effect::Deny),
        Some(n) => {
            sink.error(
                n.pos,
                "expected \"Effect\" to be \"Allow\" or \"Deny\" (case-sensitive)",
            );
            None
        }
        None => {
            sink.error(
                node.pos,
                "missing \"Effect\": add \"Effect\": \"Allow\" or \"Deny\"",
            );
            None
        }
    };
    let pair = |sink: &mut Sink, pos: &str, neg: &str| -> Option<(bool, &Member)> {
        match (field(members, pos), field(members, neg)) {
            (Some(p), None) => Some((false, p)),
            (None, Some(n)) => Some((true, n)),
            (Some(_), Some(n)) => {
                sink.error(
                    n.key_pos,
                    format!(
                        "\"{pos}\" and \"{neg}\" together: a statement has exactly one of them"
                    ),
                );
                None
            }
            (None, None) => {
                sink.error(
                    node.pos,
                    format!(
                        "missing \"{pos}\" (or \"{neg}\"): a statement needs exactly one of them"
                    ),
                );
                None
            }
        }
    };
    let principal = pair(sink, "Principal", "NotPrincipal");
    let action = pair(sink, "Action", "NotAction");
    let resource = pair(sink, "Resource", "NotResource");

    let principals = principal.and_then(|(_, m)| principals(sink, &m.value, groups));
    let actions = action.and_then(|(_, m)| actions(sink, &m.value, &m.key, schema));
    let resources = resource.and_then(|(_, m)| resources(sink, &m.value, &m.key, schema));
    let conditions = match field(members, "Condition") {
        Some(m) => conditions(sink, &m.value, schema, effect),
        None => Some(vec![]),
    };

    let (Some(effect), Some((not_principal, _)), Some((not_action, _)), Some((not_resource, _))) =
        (effect, principal, action, resource)
    else {
        return None;
    };
    let (Some(principals), Some(actions), Some(resources), Some(conditions)) =
        (principals, actions, resources, conditions)
    else {
        return None;
    };
    if sink.errors.len() != before {
        return None;
    }

    // Footguns that are legal but almost always a mistake.
    let has_star = |v: &[Vec<Piece>]| v.iter().any(|p| p.iter().all(|x| *x == Piece::Star));
    if effect == Effect::Allow {
        if not_action && has_star(&resources) && !not_resource {
            sink.warn(
                node.pos,
                "Allow with NotAction on Resource \"*\" grants every other action, including ones added later: list the allowed actions instead",
            );
        }
        if not_resource && has_star(&actions) && !not_action {
            sink.warn(
                node.pos,
                "Allow with NotResource and Action \"*\" grants everything on every other resource, including routes added later: list the allowed resources instead",
            );
        }
        if not_principal {
            sink.warn(
                node.pos,
                "Allow with NotPrincipal grants every other principal, including identities issued later: list the allowed principals instead",
            );
        }
    }
    let pos = node.pos;
    Some(Statement {
        info: Arc::new(StatementInfo {
            sid,
            file: sink.file.to_owned(),
            line: pos.line,
            column: pos.column,
            effect,
            kind,
        }),
        effect,
        not_principal,
        principals,
        not_action,
        actions,
        not_resource,
        resources,
        conditions,
    })
}

fn principals(sink: &mut Sink, node: &Node, groups: &Groups) -> Option<Principals> {
    let mut p = Principals::default();
    match &node.value {
        Value::String(s) if s == "*" => {
            p.any = true;
            return Some(p);
        }
        Value::Object(members) => {
            let before = sink.errors.len();
            for m in members {
                let Some(list) = strings(sink, &m.value, &m.key, false) else {
                    continue;
                };
                match m.key.as_str() {
                    "Spiffe" => {
                        for (s, pos) in list {
                            if s != "*" && !s.starts_with("spiffe://") {
                                sink.error(pos, format!("\"{s}\" is not a SPIFFE ID: expected spiffe://<trust domain>/<path> (wildcards allowed) or \"*\""));
                            }
                            p.spiffe.push(pattern::parse_glob(&s));
                        }
                    }
                    "Email" => {
                        for (s, pos) in list {
                            if s != "*" && !s.contains('@') {
                                sink.error(pos, format!("\"{s}\" is not an e-mail address: expected user@domain (wildcards allowed) or \"*\""));
                            }
                            p.email.push(pattern::parse_glob(&s.to_ascii_lowercase()));
                        }
                    }
                    "Group" => {
                        for (s, pos) in list {
                            let pieces = pattern::parse_glob(&s);
                            if pattern::is_literal(&pieces) && !groups.by_name.contains_key(&s) {
                                let known: Vec<&str> =
                                    groups.by_name.keys().map(String::as_str).collect();
                                let hint = if known.is_empty() {
                                    "groups.json defines no groups".to_owned()
                                } else {
                                    unknown_key("group", &s, &known)
                                };
                                sink.error(
                                    pos,
                                    format!("group \"{s}\" is not defined in groups.json ({hint})"),
                                );
                            }
                            p.group.push(pieces);
                        }
                    }
                    other => sink.error(
                        m.key_pos,
                        unknown_key("principal type", other, &["Spiffe", "Email", "Group"]),
                    ),
                }
            }
            if members.is_empty() {
                sink.error(node.pos, "empty principal object matches nobody: add \"Spiffe\", \"Email\" or \"Group\", or use \"*\"");
            }
            if sink.errors.len() != before {
                return None;
            }
        }
        _ => {
            sink.error(
                node.pos,
                "expected \"*\" or an object such as {\"Spiffe\": [\"spiffe://…\"]}, {\"Email\": […]}, {\"Group\": […]}",
            );
            return None;
        }
    }
    Some(p)
}

fn actions(sink: &mut Sink, node: &Node, field: &str, schema: &Schema) -> Option<Vec<Vec<Piece>>> {
    let list = strings(sink, node, field, false)?;
    let mut out = Vec::new();
    for (a, pos) in list {
        let pieces = pattern::parse_glob(&a);
        let prefix = pattern::literal_prefix(&pieces);
        match prefix.split_once(':') {
            Some((service, _)) => {
                let services = schema.services();
                if !services.is_empty() && !services.iter().any(|s| s.eq_ignore_ascii_case(service))
                {
                    sink.warn(
                        pos,
                        format!(
                            "action \"{a}\" is unreachable: service \"{service}\" is not one of {} in this schema",
                            services.join(", ")
                        ),
                    );
                }
            }
            None if pattern::is_literal(&pieces) => {
                sink.error(pos, format!("action \"{a}\" has no service: expected service:Action, e.g. http:GET, tcp:Connect, ca:Revoke"));
                continue;
            }
            None => {}
        }
        out.push(pieces);
    }
    Some(out)
}

fn check_variables(sink: &mut Sink, pieces: &[Piece], pos: Pos, schema: &Schema) -> bool {
    let mut ok = true;
    for p in pieces {
        if let Piece::Var(k) = p {
            match schema.key(k) {
                None => {
                    sink.error(
                        pos,
                        format!("variable ${{{k}}}: unknown condition key (not in the schema)"),
                    );
                    ok = false;
                }
                Some(d) if d.multi => {
                    sink.error(pos, format!("variable ${{{k}}}: {} is multi-valued, a variable needs a single value", d.name));
                    ok = false;
                }
                Some(_) => {}
            }
        }
    }
    ok
}

fn resources(
    sink: &mut Sink,
    node: &Node,
    field: &str,
    schema: &Schema,
) -> Option<Vec<Vec<Piece>>> {
    let list = strings(sink, node, field, false)?;
    let mut out = Vec::new();
    for (r, pos) in list {
        match pattern::parse_template(&r) {
            Ok(pieces) => {
                if check_variables(sink, &pieces, pos, schema) {
                    out.push(lower_vars(pieces));
                }
            }
            Err(e) => sink.error(pos, e),
        }
    }
    Some(out)
}

/// Variables are resolved against lower-cased context keys.
fn lower_vars(pieces: Vec<Piece>) -> Vec<Piece> {
    pieces
        .into_iter()
        .map(|p| match p {
            Piece::Var(k) => Piece::Var(k.to_ascii_lowercase()),
            other => other,
        })
        .collect()
}

fn conditions(
    sink: &mut Sink,
    node: &Node,
    schema: &Schema,
    effect: Option<Effect>,
) -> Option<Vec<Condition>> {
    let Value::Object(ops) = &node.value else {
        sink.error(
            node.pos,
            "expected \"Condition\" to be an object of operator → {key: values}",
        );
        return None;
    };
    let before = sink.errors.len();
    let mut out = Vec::new();
    for opm in ops {
        let mut name = opm.key.as_str();
        let qualifier = if let Some(rest) = name.strip_prefix("ForAnyValue:") {
            name = rest;
            Some(Qualifier::ForAnyValue)
        } else if let Some(rest) = name.strip_prefix("ForAllValues:") {
            name = rest;
            Some(Qualifier::ForAllValues)
        } else {
            None
        };
        let (base, if_exists) = match name.strip_suffix("IfExists") {
            Some(b) => (b, true),
            None => (name, false),
        };
        let Some(op) = Op::parse(base) else {
            sink.error(opm.key_pos, unknown_key("condition operator", &opm.key, OPERATOR_NAMES).replace("expected one of", "optionally prefixed ForAnyValue:/ForAllValues: and suffixed IfExists; expected one of"));
            continue;
        };
        if op == Op::Null && (if_exists || qualifier.is_some()) {
            sink.error(opm.key_pos, "\"Null\" takes no IfExists suffix and no ForAnyValue:/ForAllValues: qualifier: it already tests presence");
            continue;
        }
        let Value::Object(keys) = &opm.value.value else {
            sink.error(
                opm.value.pos,
                format!(
                    "expected \"{}\" to be an object of condition key → values",
                    opm.key
                ),
            );
            continue;
        };
        if keys.is_empty() {
            sink.error(
                opm.value.pos,
                format!(
                    "\"{}\" tests no key: add one or remove the operator",
                    opm.key
                ),
            );
        }
        for km in keys {
            let Some(decl) = schema.key(&km.key) else {
                let names: Vec<&str> = schema.keys().iter().map(|k| k.name.as_str()).collect();
                sink.error(km.key_pos, unknown_key("condition key", &km.key, &names));
                continue;
            };
            if let Some(ty) = op.key_type()
                && ty != decl.ty
            {
                sink.error(
                    km.key_pos,
                    format!(
                        "\"{}\" is a {:?} key but \"{}\" compares {:?} values: use a {} operator",
                        km.key,
                        decl.ty,
                        opm.key,
                        ty,
                        family_of(decl.ty)
                    ),
                );
                continue;
            }
            match (qualifier, decl.multi) {
                (Some(_), false) => {
                    sink.error(opm.key_pos, format!(
                        "\"{}\" is single-valued: ForAnyValue:/ForAllValues: apply to multi-valued keys only (and ForAllValues: is true when the key is absent); use \"{}\"",
                        km.key, name
                    ));
                    continue;
                }
                (None, true) if op != Op::Null => {
                    sink.error(opm.key_pos, format!(
                        "\"{}\" is multi-valued: say ForAnyValue:{} (some value matches) or ForAllValues:{} (every value matches)",
                        km.key, name, name
                    ));
                    continue;
                }
                _ => {}
            }
            if qualifier == Some(Qualifier::ForAllValues)
                && effect == Some(Effect::Allow)
                && !null_false_guards(ops, &km.key)
            {
                sink.warn(km.key_pos, format!(
                    "ForAllValues: in an Allow is true when \"{}\" is absent or empty: add \"Null\": {{\"{}\": \"false\"}} or use ForAnyValue:",
                    km.key, km.key
                ));
            }
            if decl.required && (if_exists || op == Op::Null) {
                sink.warn(
                    km.key_pos,
                    format!(
                        "\"{}\" is always present in this schema, so {} has no effect here",
                        km.key,
                        if op == Op::Null { "Null" } else { "IfExists" }
                    ),
                );
            }
            let Some(list) = strings(sink, &km.value, &km.key, true) else {
                continue;
            };
            let mut values = Vec::new();
            let mut raw = Vec::new();
            for (v, pos) in list {
                let parsed = value(sink, op, &v, pos, schema);
                if let Some(p) = parsed {
                    values.push(p);
                }
                raw.push(v);
            }
            out.push(Condition {
                op,
                qualifier,
                if_exists,
                key_name: km.key.clone(),
                key: km.key.to_ascii_lowercase(),
                raw,
                values,
            });
        }
    }
    (sink.errors.len() == before).then_some(out)
}

/// Whether the same Condition block also says `"Null": {key: "false"}`
/// (the key must be present), which makes a `ForAllValues:` safe in an Allow.
fn null_false_guards(ops: &[Member], key: &str) -> bool {
    let is_false = |v: &Value| match v {
        Value::String(s) => s.eq_ignore_ascii_case("false"),
        Value::Bool(b) => !b,
        _ => false,
    };
    ops.iter()
        .filter(|o| o.key == "Null")
        .any(|o| match &o.value.value {
            Value::Object(keys) => keys
                .iter()
                .any(|k| k.key.eq_ignore_ascii_case(key) && is_false(&k.value.value)),
            _ => false,
        })
}

fn family_of(ty: KeyType) -> &'static str {
    match ty {
        KeyType::String => "String…",
        KeyType::Numeric => "Numeric…",
        KeyType::Date => "Date…",
        KeyType::Bool => "Bool",
        KeyType::Ip => "IpAddress/NotIpAddress",
    }
}

fn value(sink: &mut Sink, op: Op, v: &str, pos: Pos, schema: &Schema) -> Option<CondValue> {
    let has_var = v.contains("${");
    let non_string = |sink: &mut Sink| {
        sink.error(pos, format!("policy variables are only allowed in String operators, not in this one (\"{v}\"): comparisons of other types with variables are refused"));
    };
    match op.key_type() {
        Some(KeyType::String) => match pattern::parse_template(v) {
            Ok(pieces) => {
                let pieces = if matches!(op, Op::StringLike | Op::StringNotLike) {
                    pieces
                } else {
                    // Outside Like, `*` and `?` are literal characters.
                    pieces
                        .into_iter()
                        .map(|p| match p {
                            Piece::Star => Piece::Lit('*'),
                            Piece::One => Piece::Lit('?'),
                            other => other,
                        })
                        .collect()
                };
                check_variables(sink, &pieces, pos, schema)
                    .then(|| CondValue::Str(lower_vars(pieces)))
            }
            Err(e) => {
                sink.error(pos, e);
                None
            }
        },
        _ if has_var => {
            non_string(sink);
            None
        }
        Some(KeyType::Numeric) => match values::parse_number(v) {
            Some(n) => Some(CondValue::Num(n)),
            None => {
                sink.error(
                    pos,
                    format!("\"{v}\" is not a number: expected a decimal such as 42 or 1.5"),
                );
                None
            }
        },
        Some(KeyType::Date) => match values::parse_date(v) {
            Some(d) => Some(CondValue::Date(d)),
            None => {
                sink.error(pos, format!("\"{v}\" is not a date: expected RFC 3339 (2026-11-30T12:00:00Z) or epoch seconds"));
                None
            }
        },
        Some(KeyType::Bool) => match values::parse_bool(v) {
            Some(b) => Some(CondValue::Bool(b)),
            None => {
                sink.error(
                    pos,
                    format!("\"{v}\" is not a boolean: expected \"true\" or \"false\""),
                );
                None
            }
        },
        Some(KeyType::Ip) => match Cidr::parse(v) {
            Ok(c) => Some(CondValue::Cidr(c)),
            Err(e) => {
                sink.error(pos, format!("bad CIDR: {e}"));
                None
            }
        },
        None => match values::parse_bool(v) {
            Some(b) => Some(CondValue::Bool(b)),
            None => {
                sink.error(pos, format!("\"Null\" takes \"true\" (key absent) or \"false\" (key present), not \"{v}\""));
                None
            }
        },
    }
}
