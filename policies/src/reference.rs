//! A naive reference evaluator, written straight from the rules with no
//! index, no precompiled patterns and its own wildcard and variable code,
//! and a property test that the compiled evaluator agrees with it on random
//! policies and requests. Test-only.
//!
//! Shared with the compiled evaluator (so not cross-checked here): the
//! document parser, the request validation, and the value parsers of
//! `values` (dates, numbers, CIDRs).

use crate::decision::{Effect, Kind, Outcome};
use crate::document::{Cmp, Condition, Op, Qualifier, Statement};
use crate::request::{Principal, Request};
use crate::set::PolicySet;
use crate::values;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Ch(char),
    Star,
    One,
}

/// Recursive wildcard match, the textbook definition.
fn glob(p: &[Tok], t: &[char]) -> bool {
    match (p.first(), t.first()) {
        (None, None) => true,
        (None, Some(_)) => false,
        (Some(Tok::Star), _) => glob(&p[1..], t) || (!t.is_empty() && glob(p, &t[1..])),
        (Some(Tok::One), Some(_)) => glob(&p[1..], &t[1..]),
        (Some(Tok::Ch(c)), Some(d)) if c == d => glob(&p[1..], &t[1..]),
        _ => false,
    }
}

fn chars(s: &str) -> Vec<char> {
    s.chars().collect()
}

/// Tokenises raw policy text: `*`, `?`, `${*}`, `${?}`, `${$}`, and
/// `${key}` replaced by the key's single value (`None` if absent).
fn tokens(raw: &str, req: &Request, vars: bool) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(c) = rest.chars().next() {
        if vars && rest.starts_with("${") {
            let end = rest.find('}')?;
            let name = &rest[2..end];
            match name {
                "*" => out.push(Tok::Ch('*')),
                "?" => out.push(Tok::Ch('?')),
                "$" => out.push(Tok::Ch('$')),
                k => {
                    let v = req.context.get(k.trim())?.first()?;
                    out.extend(v.chars().map(Tok::Ch));
                }
            }
            rest = &rest[end + 1..];
            continue;
        }
        out.push(match c {
            '*' => Tok::Star,
            '?' => Tok::One,
            c => Tok::Ch(c),
        });
        rest = &rest[c.len_utf8()..];
    }
    Some(out)
}

fn literal(toks: &[Tok]) -> String {
    toks.iter()
        .map(|t| match t {
            Tok::Ch(c) => *c,
            Tok::Star => '*',
            Tok::One => '?',
        })
        .collect()
}

fn text_of(pieces: &[crate::pattern::Piece]) -> String {
    crate::pattern::to_text(pieces)
}

/// Back to template source: literal `*`, `?`, `$` escaped as IAM writes them.
fn template_of(pieces: &[crate::pattern::Piece]) -> String {
    use crate::pattern::Piece;
    pieces
        .iter()
        .map(|p| match p {
            Piece::Lit('*') => "${*}".to_owned(),
            Piece::Lit('?') => "${?}".to_owned(),
            Piece::Lit('$') => "${$}".to_owned(),
            Piece::Lit(c) => c.to_string(),
            Piece::Star => "*".to_owned(),
            Piece::One => "?".to_owned(),
            Piece::Var(k) => format!("${{{k}}}"),
        })
        .collect()
}

fn principal_hit(set: &PolicySet, s: &Statement, p: &Principal) -> bool {
    let ps = &s.principals;
    let m = |pats: &[Vec<crate::pattern::Piece>], v: &str, fold: bool| {
        pats.iter().any(|pat| {
            let pat = text_of(pat);
            let (pat, v) = if fold {
                (pat.to_ascii_lowercase(), v.to_ascii_lowercase())
            } else {
                (pat, v.to_owned())
            };
            glob(
                &tokens(&pat, &Request::default(), false).unwrap_or_default(),
                &chars(&v),
            )
        })
    };
    let mut hit = ps.any;
    if let Some(id) = &p.spiffe {
        hit |= m(&ps.spiffe, id, false);
    }
    if let Some(e) = &p.email {
        hit |= m(&ps.email, e, true);
    }
    for (name, members) in &set.groups_for_reference().by_name {
        let member = members.iter().any(|x| {
            Some(x) == p.spiffe.as_ref()
                || p.email.as_ref().is_some_and(|e| e.eq_ignore_ascii_case(x))
        });
        if member {
            hit |= m(&ps.group, name, false);
        }
    }
    hit != s.not_principal
}

fn positive(c: &Condition, rv: &str, pv: &str, req: &Request) -> bool {
    match c.op {
        Op::StringEquals | Op::StringNotEquals => {
            tokens(pv, req, true).is_some_and(|t| literal(&t) == rv)
        }
        Op::StringEqualsIgnoreCase | Op::StringNotEqualsIgnoreCase => {
            tokens(pv, req, true).is_some_and(|t| fold(&literal(&t)) == fold(rv))
        }
        Op::StringLike | Op::StringNotLike => {
            tokens(pv, req, true).is_some_and(|t| glob(&t, &chars(rv)))
        }
        Op::Numeric(cmp) => match (values::parse_number(rv), values::parse_number(pv)) {
            (Some(r), Some(p)) => compare(cmp, r, p),
            _ => false,
        },
        Op::Date(cmp) => match (values::parse_date(rv), values::parse_date(pv)) {
            (Some(r), Some(p)) => compare(cmp, r, p),
            _ => false,
        },
        Op::Bool => {
            values::parse_bool(rv).is_some() && values::parse_bool(rv) == values::parse_bool(pv)
        }
        Op::IpAddress | Op::NotIpAddress => match (values::parse_ip(rv), values::Cidr::parse(pv)) {
            (Some(ip), Ok(net)) => net.contains(ip),
            _ => false,
        },
        Op::Null => false,
    }
}

/// Simple (per-character) lower-casing, the documented semantics of the
/// IgnoreCase operators.
fn fold(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

fn compare<T: PartialOrd>(cmp: Cmp, r: T, p: T) -> bool {
    match cmp {
        Cmp::Eq | Cmp::Ne => r == p,
        Cmp::Lt => r < p,
        Cmp::Le => r <= p,
        Cmp::Gt => r > p,
        Cmp::Ge => r >= p,
    }
}

fn condition_holds(c: &Condition, req: &Request) -> bool {
    let values: &[String] = req.context.get(&c.key_name).unwrap_or(&[]);
    let absent = values.is_empty();
    if c.op == Op::Null {
        return c.raw.iter().any(|v| values::parse_bool(v) == Some(absent));
    }
    if absent {
        if c.if_exists {
            return true;
        }
        return match c.qualifier {
            Some(Qualifier::ForAllValues) => true,
            Some(Qualifier::ForAnyValue) => false,
            None => c.op.negated(),
        };
    }
    let ok = |rv: &str| {
        let any = c.raw.iter().any(|pv| positive(c, rv, pv, req));
        if c.op.negated() { !any } else { any }
    };
    match c.qualifier {
        None => ok(&values[0]),
        Some(Qualifier::ForAnyValue) => values.iter().any(|v| ok(v)),
        Some(Qualifier::ForAllValues) => values.iter().all(|v| ok(v)),
    }
}

fn statement_matches(set: &PolicySet, s: &Statement, req: &Request) -> bool {
    let action = req.action.to_ascii_lowercase();
    let action_hit = s.actions.iter().any(|a| {
        let pat = text_of(a).to_ascii_lowercase();
        glob(
            &tokens(&pat, req, false).unwrap_or_default(),
            &chars(&action),
        )
    });
    let resource_hit = s.resources.iter().any(|r| {
        tokens(&template_of(r), req, true).is_some_and(|t| glob(&t, &chars(&req.resource)))
    });
    action_hit != s.not_action
        && resource_hit != s.not_resource
        && principal_hit(set, s, &req.principal)
        && s.conditions.iter().all(|c| condition_holds(c, req))
}

/// Decides by scanning every statement of every document.
pub(crate) fn evaluate(set: &PolicySet, req: &Request) -> (Outcome, Vec<(String, u32, u32)>) {
    let filled = set.with_groups(req);
    let req = filled.as_ref().unwrap_or(req);
    if set.validate(&req.context).is_err() {
        return (Outcome::InvalidRequest, vec![]);
    }
    let (mut deny, mut allow, mut boundary_allow, mut boundary_applies) =
        (false, false, false, false);
    let mut matched = Vec::new();
    for d in &set.docs {
        for s in &d.statements {
            if d.kind == Kind::Boundary && principal_hit(set, s, &req.principal) {
                boundary_applies = true;
            }
            if !statement_matches(set, s, req) {
                continue;
            }
            matched.push((s.info.file.clone(), s.info.line, s.info.column));
            match (s.effect, d.kind) {
                (Effect::Deny, _) => deny = true,
                (Effect::Allow, Kind::Permission) => allow = true,
                (Effect::Allow, Kind::Boundary) => boundary_allow = true,
            }
        }
    }
    matched.sort();
    let outcome = if deny {
        Outcome::ExplicitDeny
    } else if !allow {
        Outcome::ImplicitDeny
    } else if boundary_applies && !boundary_allow {
        Outcome::BoundaryDeny
    } else {
        Outcome::Allow
    };
    (outcome, matched)
}

#[cfg(test)]
mod agreement {
    use proptest::prelude::*;

    use super::*;
    use crate::request::Context;
    use crate::schema::{KeyDecl, KeyType, Schema};
    use crate::set::Source;

    fn schema() -> Schema {
        let mut keys: Vec<KeyDecl> = Schema::gateway()
            .keys()
            .iter()
            .map(|k| KeyDecl {
                required: false,
                ..k.clone()
            })
            .collect();
        keys.push(KeyDecl::new("ward:Level", KeyType::Numeric, false, false));
        keys.push(KeyDecl::new("ward:Flag", KeyType::Bool, false, false));
        Schema::new(keys, vec![])
    }

    const GROUPS: &str = r#"{"Groups": {"g1": ["spiffe://t/a", "alice@x.example"], "g2": ["spiffe://t/b"], "g3": []}}"#;

    const PRINCIPALS: &[&str] = &[
        r#""*""#,
        r#"{"Spiffe": "spiffe://t/a"}"#,
        r#"{"Spiffe": ["spiffe://t/*", "spiffe://u/b"]}"#,
        r#"{"Spiffe": "spiffe://t/?"}"#,
        r#"{"Email": "ALICE@x.example"}"#,
        r#"{"Email": "*@x.example", "Spiffe": "spiffe://t/c"}"#,
        r#"{"Group": "g1"}"#,
        r#"{"Group": ["g2", "g3"]}"#,
        r#"{"Group": "g*"}"#,
    ];
    const ACTIONS: &[&str] = &[
        r#""*""#,
        r#""http:GET""#,
        r#""HTTP:get""#,
        r#"["http:P*", "tcp:Connect"]"#,
        r#""http:*""#,
        r#""h?tp:GET""#,
        r#""http:??T""#,
        r#""*:Connect""#,
        r#""ca:Revoke""#,
    ];
    const RESOURCES: &[&str] = &[
        r#""*""#,
        r#""route/a/*""#,
        r#""route/a/x""#,
        r#"["route/b", "route/c/*"]"#,
        r#""route/*""#,
        r#""route/a/${ward:Host}""#,
        r#""route/?/x""#,
        r#""route/a*""#,
        r#""rou*e/b""#,
        r#""route/a/x${*}""#,
        r#""route/a/""#,
    ];
    const CONDITIONS: &[&str] = &[
        r#""StringEquals": {"ward:Host": ["a", "b"]}"#,
        r#""StringNotEqualsIfExists": {"ward:Host": "a"}"#,
        r#""StringNotEquals": {"ward:Method": "GET"}"#,
        r#""StringLike": {"ward:Path": "/x*"}"#,
        r#""StringNotLike": {"ward:Path": ["/y?", "/z"]}"#,
        r#""StringEqualsIgnoreCase": {"ward:Method": "get"}"#,
        r#""StringNotEqualsIgnoreCase": {"ward:Host": "A"}"#,
        r#""ForAnyValue:StringEquals": {"ward:PrincipalGroups": "g1"}"#,
        r#""ForAllValues:StringLike": {"ward:PrincipalGroups": "g*"}"#,
        r#""ForAnyValue:StringNotEquals": {"ward:PrincipalGroups": ["g1", "g2"]}"#,
        r#""ForAllValues:StringNotEqualsIfExists": {"ward:PrincipalGroups": "x"}"#,
        r#""ForAnyValue:StringLikeIfExists": {"ward:PrincipalGroups": "g?"}"#,
        r#""IpAddress": {"ward:SourceIp": ["10.0.0.0/8", "::1"]}"#,
        r#""NotIpAddressIfExists": {"ward:SourceIp": "10.1.0.0/16"}"#,
        r#""DateLessThan": {"ward:CurrentTime": "2026-12-01T00:00:00Z"}"#,
        r#""DateGreaterThanEqualsIfExists": {"ward:CurrentTime": "1796083200"}"#,
        r#""DateNotEquals": {"ward:CertNotAfter": "2026-12-01T00:00:00Z"}"#,
        r#""NumericLessThan": {"ward:Level": 3}"#,
        r#""NumericGreaterThanEquals": {"ward:Level": ["5", "2.5"]}"#,
        r#""NumericNotEquals": {"ward:Level": 1}"#,
        r#""NumericEqualsIfExists": {"ward:Level": 1}"#,
        r#""Bool": {"ward:Flag": true}"#,
        r#""BoolIfExists": {"ward:Flag": "false"}"#,
        r#""Null": {"ward:Host": "true", "ward:Level": "false"}"#,
        r#""StringLikeIfExists": {"ward:Host": "${ward:Path}*"}"#,
        r#""StringEqualsIfExists": {"ward:Path": ["/${ward:Host}", "${*}"]}"#,
    ];

    prop_compose! {
        fn statement()(
            effect in prop::bool::ANY,
            np in prop::bool::weighted(0.15),
            p in prop::sample::select(PRINCIPALS),
            na in prop::bool::weighted(0.15),
            a in prop::sample::select(ACTIONS),
            nr in prop::bool::weighted(0.15),
            r in prop::sample::select(RESOURCES),
            conds in prop::sample::subsequence(CONDITIONS, 0..3),
        ) -> String {
            let cond = if conds.is_empty() { String::new() } else {
                format!(r#", "Condition": {{{}}}"#, conds.join(", "))
            };
            format!(
                r#"{{"Effect": "{}", "{}Principal": {p}, "{}Action": {a}, "{}Resource": {r}{cond}}}"#,
                if effect { "Allow" } else { "Deny" },
                if np { "Not" } else { "" },
                if na { "Not" } else { "" },
                if nr { "Not" } else { "" },
            )
        }
    }

    prop_compose! {
        fn document()(boundary in prop::bool::weighted(0.25),
                      stmts in prop::collection::vec(statement(), 1..5)) -> String {
            format!(
                r#"{{"Version": "2026-11-01", "Kind": "{}", "Statement": [{}]}}"#,
                if boundary { "Boundary" } else { "Permission" },
                stmts.join(",\n")
            )
        }
    }

    fn opt(vals: &'static [&'static str]) -> impl Strategy<Value = Option<&'static str>> {
        prop::option::of(prop::sample::select(vals))
    }

    prop_compose! {
        fn request()(
            spiffe in opt(&["spiffe://t/a", "spiffe://t/b", "spiffe://t/c", "spiffe://u/b", "spiffe://t/ab"]),
            email in opt(&["alice@x.example", "Alice@X.example", "bob@y.example"]),
            action in prop::sample::select(&["http:GET", "HTTP:get", "http:POST", "tcp:Connect", "ca:Revoke", "http:PUT", "http:GOT"][..]),
            resource in prop::sample::select(&["route/a/x", "route/b", "route/a/", "route/a/a", "route/c/x", "route/a/x*", "Route/b", "route/a", ""][..]),
            host in opt(&["a", "b", "A", "/x1"]),
            path in opt(&["/x1", "/y1", "/z", "/a", "a"]),
            method in opt(&["GET", "get", "POST"]),
            groups in prop::option::of(prop::sample::subsequence(&["g1", "g2", "x"][..], 0..3)),
            ip in opt(&["10.1.1.1", "10.2.0.1", "192.168.0.1", "::1", "::ffff:10.1.2.3"]),
            time in opt(&["2026-11-30T12:00:00Z", "1796083200", "2026-12-02T00:00:00+01:00"]),
            not_after in opt(&["2026-12-01T00:00:00Z", "0"]),
            level in opt(&["1", "2.5", "5", "-1"]),
            flag in opt(&["true", "FALSE"]),
        ) -> Request {
            let mut context = Context::new();
            let mut put = |k: &str, v: Option<&str>| if let Some(v) = v { context.insert(k, v); };
            put("ward:Host", host);
            put("ward:Path", path);
            put("ward:Method", method);
            put("ward:SourceIp", ip);
            put("ward:CurrentTime", time);
            put("ward:CertNotAfter", not_after);
            put("ward:Level", level);
            put("ward:Flag", flag);
            if let Some(g) = groups {
                context.set("ward:PrincipalGroups", g.iter().map(|s| s.to_string()).collect());
            }
            Request {
                principal: Principal { spiffe: spiffe.map(str::to_owned), email: email.map(str::to_owned) },
                action: action.to_owned(),
                resource: resource.to_owned(),
                context,
            }
        }
    }

    fn compile_generated(docs: &[String]) -> PolicySet {
        let mut sources: Vec<Source> = docs
            .iter()
            .enumerate()
            .map(|(i, d)| Source::new(format!("team{}/p{i}.json", i % 2), d.clone()))
            .collect();
        sources.push(Source::new("groups.json", GROUPS));
        match PolicySet::compile(&sources, &schema()) {
            Ok((s, _)) => s,
            Err(e) => panic!("generated policy does not compile: {e}\n{docs:#?}"),
        }
    }

    /// The generators are not vacuous: every outcome occurs often.
    #[test]
    fn generated_cases_reach_every_outcome() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let mut counts = std::collections::HashMap::new();
        for _ in 0..400 {
            let docs = prop::collection::vec(document(), 1..4)
                .new_tree(&mut runner)
                .unwrap()
                .current();
            let req = request().new_tree(&mut runner).unwrap().current();
            let set = compile_generated(&docs);
            *counts.entry(set.evaluate(&req).outcome()).or_insert(0) += 1;
        }
        for o in [
            Outcome::Allow,
            Outcome::ExplicitDeny,
            Outcome::ImplicitDeny,
            Outcome::BoundaryDeny,
        ] {
            assert!(counts.get(&o).copied().unwrap_or(0) >= 3, "{counts:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn compiled_agrees_with_reference(
            docs in prop::collection::vec(document(), 1..4),
            reqs in prop::collection::vec(request(), 1..8),
        ) {
            let set = compile_generated(&docs);
            for req in &reqs {
                let fast = set.evaluate(req);
                let (outcome, matched) = evaluate(&set, req);
                let fast_matched: Vec<(String, u32, u32)> = fast
                    .matched()
                    .iter()
                    .map(|m| (m.file.clone(), m.line, m.column))
                    .collect();
                prop_assert_eq!(fast.outcome(), outcome, "request {:?}\npolicies {:#?}", req, docs);
                prop_assert_eq!(fast_matched, matched, "request {:?}\npolicies {:#?}", req, docs);
            }
        }

        /// A context layered over a shared base (how the gateway builds
        /// one per request) decides exactly like the flat context with the
        /// same keys, and like the reference evaluator: whether a key sits
        /// in the base, in the layer, is split between both by `insert`, or
        /// is hidden in the base by the layer's `set`.
        #[test]
        fn layered_context_decides_like_flat(
            docs in prop::collection::vec(document(), 1..4),
            reqs in prop::collection::vec((request(), prop::collection::vec(0u8..4, 10)), 1..8),
        ) {
            let set = compile_generated(&docs);
            for (req, how) in &reqs {
                let mut base = Context::new();
                let mut later: Vec<(String, Vec<String>, u8)> = Vec::new();
                for (i, (k, vals)) in req.context.iter().enumerate() {
                    let how = how.get(i).copied().unwrap_or(0);
                    match how {
                        0 => { base.set(k, vals.to_vec()); }
                        2 if !vals.is_empty() => { base.set(k, vals[..1].to_vec()); }
                        3 => { base.set(k, vec!["hidden".into(), "by the layer".into()]); }
                        _ => {}
                    }
                    later.push((k.to_owned(), vals.to_vec(), how));
                }
                let mut context = Context::over(std::sync::Arc::new(base));
                for (k, vals, how) in later {
                    match how {
                        0 => {}
                        2 if !vals.is_empty() => {
                            for v in &vals[1..] {
                                context.insert(&k.to_ascii_uppercase(), v.clone());
                            }
                        }
                        _ => { context.set(&k, vals); }
                    }
                }
                prop_assert_eq!(&context, &req.context);
                let layered = Request { context, ..req.clone() };
                prop_assert_eq!(
                    serde_json::to_string(&layered).unwrap(),
                    serde_json::to_string(req).unwrap()
                );
                let flat = set.evaluate(req);
                let fast = set.evaluate(&layered);
                // Again, now with the base's key checks remembered.
                let again = set.evaluate(&layered);
                prop_assert_eq!(again.outcome(), fast.outcome());
                prop_assert_eq!(again.error(), fast.error());
                let (outcome, _) = evaluate(&set, &layered);
                prop_assert_eq!(fast.outcome(), flat.outcome(), "request {:?}", req);
                prop_assert_eq!(fast.outcome(), outcome, "request {:?}", req);
                prop_assert_eq!(fast.matched(), flat.matched());
                prop_assert_eq!(fast.error(), flat.error());
            }
        }
    }
}

/// Hostile input: compiling arbitrary text and evaluating arbitrary
/// requests returns errors or decisions, never panics.
#[cfg(test)]
mod robustness {
    use proptest::prelude::*;

    use crate::request::Context;
    use crate::schema::Schema;
    use crate::set::{PolicySet, Source};
    use crate::{Principal, Request};

    const VALID: &str = r#"{"Version": "2026-11-01", "Statement": [{"Sid": "A", "Effect": "Allow",
        "Principal": {"Spiffe": "spiffe://t/*", "Group": "g"}, "Action": ["http:G?T", "tcp:*"],
        "Resource": "route/${ward:Host}/*", "Condition": {"IpAddress": {"ward:SourceIp": "10.0.0.0/8"},
        "ForAnyValue:StringLike": {"ward:PrincipalGroups": "g*"}, "DateLessThanIfExists": {"ward:CertNotAfter": "2027-01-01T00:00:00Z"}}}]}"#;
    const GROUPS: &str = r#"{"Groups": {"g": ["spiffe://t/a"]}}"#;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = PolicySet::compile(&[Source::new("x.json", text.clone())], &Schema::gateway());
            let _ = PolicySet::compile(&[Source::new("groups.json", text)], &Schema::gateway());
        }

        #[test]
        fn mutated_documents_never_panic(pos in 0usize..700, len in 0usize..6, insert in "\\PC{0,6}") {
            let mut chars: Vec<char> = VALID.chars().collect();
            let at = pos.min(chars.len());
            let end = (at + len).min(chars.len());
            chars.splice(at..end, insert.chars());
            let text: String = chars.into_iter().collect();
            let sources = [Source::new("groups.json", GROUPS), Source::new("x.json", text)];
            if let Ok((set, _)) = PolicySet::compile(&sources, &Schema::gateway()) {
                let mut context = Context::new();
                context.insert("ward:Host", "h");
                let _ = set.evaluate(&Request {
                    principal: Principal::spiffe("spiffe://t/a"),
                    action: "http:GET".into(),
                    resource: "route/h/x".into(),
                    context,
                });
            }
        }

        #[test]
        fn arbitrary_requests_never_panic(
            spiffe in proptest::option::of("\\PC{0,40}"),
            email in proptest::option::of("\\PC{0,20}"),
            action in "\\PC{0,80}",
            resource in "\\PC{0,80}",
            ctx in proptest::collection::vec(("(?i)ward:(sourceip|host|certnotafter|principalgroups|currenttime|requestheader/x)", "\\PC{0,30}"), 0..6),
        ) {
            let sources = [Source::new("groups.json", GROUPS), Source::new("x.json", VALID)];
            let (set, _) = PolicySet::compile(&sources, &Schema::gateway()).unwrap();
            let mut context = Context::new();
            for (k, v) in ctx {
                context.insert(&k, v);
            }
            let d = set.evaluate(&Request { principal: Principal { spiffe, email }, action, resource, context });
            let _ = d.explain();
        }
    }
}
