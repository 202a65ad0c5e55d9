//! Evaluation tests through the public API: every operator family, the set
//! qualifiers, IfExists, variables, Not* forms, wildcards, deny-overrides,
//! boundaries, and validation messages with their locations.

use crate::*;

pub(crate) const NOW: &str = "2026-11-30T12:00:00Z";

pub(crate) fn compile(docs: &[(&str, &str)]) -> PolicySet {
    let sources: Vec<Source> = docs.iter().map(|(n, t)| Source::new(*n, *t)).collect();
    match PolicySet::compile(&sources, &Schema::gateway()) {
        Ok((s, _)) => s,
        Err(e) => panic!("{e}"),
    }
}

pub(crate) fn errors(docs: &[(&str, &str)]) -> Vec<Diagnostic> {
    let sources: Vec<Source> = docs.iter().map(|(n, t)| Source::new(*n, *t)).collect();
    match PolicySet::compile(&sources, &Schema::gateway()) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.diagnostics().to_vec(),
    }
}

pub(crate) fn warnings(docs: &[(&str, &str)]) -> Vec<Diagnostic> {
    let sources: Vec<Source> = docs.iter().map(|(n, t)| Source::new(*n, *t)).collect();
    match PolicySet::compile(&sources, &Schema::gateway()) {
        Ok((_, w)) => w,
        Err(e) => panic!("{e}"),
    }
}

/// A request with the gateway's required keys filled in.
pub(crate) fn req(spiffe: &str, action: &str, resource: &str) -> Request {
    let mut context = Context::new();
    context
        .insert("ward:SourceIp", "10.1.2.3")
        .insert("ward:CurrentTime", NOW)
        .insert("ward:Protocol", "h2")
        .insert("ward:PrincipalType", "workload");
    Request {
        principal: Principal::spiffe(spiffe),
        action: action.into(),
        resource: resource.into(),
        context,
    }
}

pub(crate) fn doc(statements: &str) -> String {
    format!(r#"{{"Version": "2026-11-01", "Statement": [{statements}]}}"#)
}

const BILLING: &str = "spiffe://corp.example/ns/prod/sa/billing";

/// A schema with a key of every type (none required) for operator tests.
fn test_schema() -> Schema {
    Schema::new(
        vec![
            KeyDecl::new("t:Str", KeyType::String, false, false),
            KeyDecl::new("t:Str2", KeyType::String, false, false),
            KeyDecl::new("t:Num", KeyType::Numeric, false, false),
            KeyDecl::new("t:Date", KeyType::Date, false, false),
            KeyDecl::new("t:Bool", KeyType::Bool, false, false),
            KeyDecl::new("t:Ip", KeyType::Ip, false, false),
            KeyDecl::new("t:Set", KeyType::String, true, false),
            KeyDecl::new("t:Req", KeyType::String, false, true),
        ],
        vec![],
    )
}

/// Evaluates one statement's Condition block against a context given as
/// `key=value` pairs (a key repeated gives a set; `key=` alone an empty set
/// for t:Set). `t:Req` is always filled in.
fn cond(condition: &str, ctx: &[&str]) -> Outcome {
    let text = doc(&format!(
        r#"{{"Effect": "Allow", "Principal": "*", "Action": "a:b", "Resource": "*", "Condition": {{{condition}}}}}"#
    ));
    let (set, _) = match PolicySet::compile(&[Source::new("c.json", text)], &test_schema()) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let mut context = Context::new();
    context.insert("t:Req", "r");
    for kv in ctx {
        let (k, v) = kv.split_once('=').unwrap();
        if v.is_empty() {
            context.set(k, vec![]);
        } else {
            context.insert(k, v);
        }
    }
    set.evaluate(&Request {
        principal: Principal::spiffe("spiffe://t/x"),
        action: "a:b".into(),
        resource: "r".into(),
        context,
    })
    .outcome()
}

fn holds(condition: &str, ctx: &[&str]) -> bool {
    match cond(condition, ctx) {
        Outcome::Allow => true,
        Outcome::ImplicitDeny => false,
        other => panic!("{other:?}"),
    }
}

#[test]
fn allow_and_default_deny() {
    let set = compile(&[(
        "p.json",
        &doc(
            r#"{"Sid": "A", "Effect": "Allow", "Principal": {"Spiffe": "spiffe://corp.example/ns/prod/sa/billing"},
              "Action": ["http:GET", "http:HEAD"], "Resource": "route/ledger/v1/*"}"#,
        ),
    )]);
    let d = set.evaluate(&req(BILLING, "http:get", "route/ledger/v1/x"));
    assert!(d.allowed(), "{}", d.explain());
    assert_eq!(d.matched()[0].sid.as_deref(), Some("A"));
    assert_eq!((d.matched()[0].line, d.matched()[0].column), (1, 41));
    assert_eq!(d.deciding().count(), 1);
    assert_eq!(d.policy_hash(), set.hash());
    assert_eq!(d.policy_hash().len(), 64);
    let d = set.evaluate(&req(BILLING, "http:POST", "route/ledger/v1/x"));
    assert_eq!(d.outcome(), Outcome::ImplicitDeny);
    assert!(d.matched().is_empty());
    assert!(d.explain().contains("implicit deny"));
    let d = set.evaluate(&req(BILLING, "http:GET", "route/Ledger/v1/x"));
    assert!(!d.allowed(), "resources are case-sensitive");
    let d = set.evaluate(&req(
        "spiffe://corp.example/ns/prod/sa/other",
        "http:GET",
        "route/ledger/v1/x",
    ));
    assert!(!d.allowed());
}

#[test]
fn explicit_deny_wins_everywhere() {
    let set = compile(&[
        (
            "a.json",
            &doc(
                r#"{"Sid": "A", "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}"#,
            ),
        ),
        (
            "team/b.json",
            &doc(
                r#"{"Sid": "D", "Effect": "Deny", "Principal": "*", "Action": "http:DELETE", "Resource": "route/x/*"}"#,
            ),
        ),
    ]);
    let d = set.evaluate(&req(BILLING, "HTTP:Delete", "route/x/1"));
    assert_eq!(d.outcome(), Outcome::ExplicitDeny);
    assert!(d.explicit_deny());
    assert_eq!(d.matched().len(), 2);
    let deciding: Vec<_> = d.deciding().map(|s| s.sid.clone().unwrap()).collect();
    assert_eq!(deciding, ["D"]);
    assert!(
        d.explain()
            .contains("decided by: Deny D at team/b.json:1:41"),
        "{}",
        d.explain()
    );
    assert!(
        set.evaluate(&req(BILLING, "http:GET", "route/x/1"))
            .allowed()
    );
}

#[test]
fn wildcards_in_evaluation() {
    let set = compile(&[(
        "p.json",
        &doc(
            r#"{"Effect": "Allow", "Principal": "*", "Action": ["http:G?T", "tcp:*"], "Resource": ["route/a*", "route/b/?", "route/c.d"]}"#,
        ),
    )]);
    let ok = |a: &str, r: &str| set.evaluate(&req(BILLING, a, r)).allowed();
    assert!(ok("http:GET", "route/a"), "* matches empty");
    assert!(ok("http:GOT", "route/abc/def"));
    assert!(!ok("http:GEET", "route/a"), "? is exactly one");
    assert!(ok("TCP:connect", "route/b/x"));
    assert!(!ok("tcp:Connect", "route/b/xy"));
    assert!(!ok("tcp:Connect", "route/b/"));
    assert!(ok("tcp:Connect", "route/c.d"));
    assert!(!ok("tcp:Connect", "route/cxd"), ". is a literal");
    assert!(!ok("udp:Connect", "route/a"));
}

#[test]
fn not_action_not_resource_not_principal() {
    let set = compile(&[(
        "p.json",
        &doc(
            r#"{"Sid": "NA", "Effect": "Allow", "Principal": "*", "NotAction": ["http:DELETE", "tcp:*"], "Resource": "route/a/*"},
               {"Sid": "NR", "Effect": "Allow", "Principal": "*", "Action": "http:PUT", "NotResource": "route/a/*"},
               {"Sid": "NP", "Effect": "Deny", "NotPrincipal": {"Spiffe": "spiffe://corp.example/ns/prod/sa/*"}, "Action": "http:PATCH", "Resource": "*"}"#,
        ),
    )]);
    let out = |p: &str, a: &str, r: &str| set.evaluate(&req(p, a, r)).outcome();
    assert_eq!(out(BILLING, "http:GET", "route/a/1"), Outcome::Allow);
    assert_eq!(
        out(BILLING, "http:delete", "route/a/1"),
        Outcome::ImplicitDeny
    );
    assert_eq!(
        out(BILLING, "tcp:Connect", "route/a/1"),
        Outcome::ImplicitDeny
    );
    assert_eq!(out(BILLING, "http:GET", "route/b/1"), Outcome::ImplicitDeny);
    assert_eq!(out(BILLING, "http:PUT", "route/b/1"), Outcome::Allow);
    // http:PUT on route/a/* is allowed by NA (NotAction), not by NR.
    let d = set.evaluate(&req(BILLING, "http:PUT", "route/a/1"));
    assert_eq!(
        d.deciding()
            .map(|s| s.sid.clone().unwrap())
            .collect::<Vec<_>>(),
        ["NA"]
    );
    // NotPrincipal: denies everybody outside ns/prod.
    assert_eq!(out(BILLING, "http:PATCH", "route/a/1"), Outcome::Allow);
    assert_eq!(
        out(
            "spiffe://corp.example/ns/dev/sa/x",
            "http:PATCH",
            "route/a/1"
        ),
        Outcome::ExplicitDeny
    );
}

#[test]
fn principals_spiffe_email_group() {
    let set = compile(&[
        (
            "groups.json",
            r#"{"Groups": {"ops": ["spiffe://corp.example/user/carol", "Dave@Corp.Example"], "empty": []}}"#,
        ),
        (
            "p.json",
            &doc(
                r#"{"Sid": "S", "Effect": "Allow", "Principal": {"Spiffe": "spiffe://corp.example/ns/*/sa/api"}, "Action": "http:GET", "Resource": "route/s"},
                   {"Sid": "E", "Effect": "Allow", "Principal": {"Email": "*@corp.example"}, "Action": "http:GET", "Resource": "route/e"},
                   {"Sid": "G", "Effect": "Allow", "Principal": {"Group": ["ops", "empty"]}, "Action": "http:GET", "Resource": "route/g"}"#,
            ),
        ),
    ]);
    let ask = |p: Principal, r: &str| {
        let mut q = req("", "http:GET", r);
        q.principal = p;
        set.evaluate(&q).allowed()
    };
    let email = |e: &str| Principal {
        spiffe: Some("spiffe://corp.example/user/x".into()),
        email: Some(e.into()),
    };
    assert!(ask(
        Principal::spiffe("spiffe://corp.example/ns/prod/sa/api"),
        "route/s"
    ));
    assert!(!ask(
        Principal::spiffe("spiffe://corp.example/ns/prod/sa/web"),
        "route/s"
    ));
    assert!(
        ask(email("bob@CORP.example"), "route/e"),
        "e-mail is case-insensitive"
    );
    assert!(!ask(email("bob@evil.example"), "route/e"));
    assert!(
        !ask(
            Principal::spiffe("spiffe://corp.example/user/bob"),
            "route/e"
        ),
        "no e-mail"
    );
    assert!(ask(
        Principal::spiffe("spiffe://corp.example/user/carol"),
        "route/g"
    ));
    assert!(ask(email("dave@corp.example"), "route/g"));
    assert!(!ask(
        Principal::spiffe("spiffe://corp.example/user/dave"),
        "route/g"
    ));
    let both = Principal {
        spiffe: Some("spiffe://corp.example/user/carol".into()),
        email: Some("DAVE@corp.example".into()),
    };
    let groups: Vec<&str> = set.groups_of(&both).collect();
    assert_eq!(groups, ["ops", "ops"]);
}

#[test]
fn boundaries_limit_permissions() {
    let set = compile(&[
        (
            "security/boundary.json",
            r#"{"Version": "2026-11-01", "Kind": "Boundary", "Statement": [
                {"Sid": "B", "Effect": "Allow", "Principal": {"Spiffe": "spiffe://corp.example/ns/team/*"}, "Action": "http:GET", "Resource": "route/team/*"},
                {"Sid": "BD", "Effect": "Deny", "Principal": {"Spiffe": "spiffe://corp.example/ns/team/*"}, "Action": "http:GET", "Resource": "route/team/secret"}]}"#,
        ),
        (
            "team/p.json",
            &doc(
                r#"{"Sid": "P", "Effect": "Allow", "Principal": "*", "Action": "http:*", "Resource": "route/*"}"#,
            ),
        ),
    ]);
    let out = |p: &str, a: &str, r: &str| set.evaluate(&req(p, a, r)).outcome();
    let team = "spiffe://corp.example/ns/team/sa/x";
    assert_eq!(out(team, "http:GET", "route/team/1"), Outcome::Allow);
    assert_eq!(out(team, "http:PUT", "route/team/1"), Outcome::BoundaryDeny);
    assert_eq!(out(team, "http:GET", "route/other"), Outcome::BoundaryDeny);
    assert_eq!(
        out(team, "http:GET", "route/team/secret"),
        Outcome::ExplicitDeny
    );
    // The boundary does not apply to other principals.
    assert_eq!(out(BILLING, "http:PUT", "route/other"), Outcome::Allow);
    // A boundary alone grants nothing.
    assert_eq!(
        out(team, "tcp:Connect", "route/team/1"),
        Outcome::ImplicitDeny
    );
    let d = set.evaluate(&req(team, "http:PUT", "route/team/1"));
    assert!(
        d.explain().contains("no applicable boundary allowed"),
        "{}",
        d.explain()
    );
    assert_eq!(d.deciding().count(), 0);
}

#[test]
fn string_operators() {
    assert!(holds(
        r#""StringEquals": {"t:Str": ["a", "b"]}"#,
        &["t:Str=b"]
    ));
    assert!(!holds(r#""StringEquals": {"t:Str": "a"}"#, &["t:Str=A"]));
    assert!(
        !holds(r#""StringEquals": {"t:Str": "a*"}"#, &["t:Str=abc"]),
        "no wildcards in Equals"
    );
    assert!(holds(r#""StringEquals": {"t:Str": "a*"}"#, &["t:Str=a*"]));
    assert!(holds(
        r#""StringNotEquals": {"t:Str": ["a", "b"]}"#,
        &["t:Str=c"]
    ));
    assert!(!holds(
        r#""StringNotEquals": {"t:Str": ["a", "b"]}"#,
        &["t:Str=a"]
    ));
    assert!(holds(
        r#""StringEqualsIgnoreCase": {"t:Str": "ÄbC"}"#,
        &["t:Str=äBc"]
    ));
    assert!(!holds(
        r#""StringNotEqualsIgnoreCase": {"t:Str": "abc"}"#,
        &["t:Str=ABC"]
    ));
    assert!(holds(
        r#""StringNotEqualsIgnoreCase": {"t:Str": "abc"}"#,
        &["t:Str=abd"]
    ));
    assert!(holds(r#""StringLike": {"t:Str": "a*c?"}"#, &["t:Str=ac!"]));
    assert!(!holds(r#""StringLike": {"t:Str": "a*c?"}"#, &["t:Str=Ac!"]));
    assert!(holds(
        r#""StringNotLike": {"t:Str": ["x*", "y*"]}"#,
        &["t:Str=z"]
    ));
    assert!(!holds(
        r#""StringNotLike": {"t:Str": ["x*", "y*"]}"#,
        &["t:Str=yes"]
    ));
    // Multiple keys in one operator are AND, multiple operators are AND.
    assert!(!holds(
        r#""StringEquals": {"t:Str": "a", "t:Str2": "b"}"#,
        &["t:Str=a", "t:Str2=c"]
    ));
    assert!(holds(
        r#""StringEquals": {"t:Str": "a", "t:Str2": "b"}"#,
        &["t:Str=a", "t:Str2=b"]
    ));
    assert!(!holds(
        r#""StringEquals": {"t:Str": "a"}, "StringLike": {"t:Str2": "z*"}"#,
        &["t:Str=a", "t:Str2=b"]
    ));
    // Condition key names are case-insensitive.
    assert!(holds(r#""StringEquals": {"T:STR": "a"}"#, &["t:str=a"]));
}

#[test]
fn numeric_operators() {
    let n = |op: &str, v: &str, rv: &str| {
        holds(
            &format!(r#""{op}": {{"t:Num": {v}}}"#),
            &[&format!("t:Num={rv}")],
        )
    };
    assert!(n("NumericEquals", "5", "5.0"));
    assert!(!n("NumericEquals", "5", "6"));
    assert!(n("NumericNotEquals", "[5, 6]", "7"));
    assert!(!n("NumericNotEquals", "[5, 6]", "6"));
    assert!(n("NumericLessThan", "\"5\"", "4.5"));
    assert!(!n("NumericLessThan", "5", "5"));
    assert!(n("NumericLessThanEquals", "5", "5"));
    assert!(n("NumericGreaterThan", "-1", "0"));
    assert!(!n("NumericGreaterThan", "0", "0"));
    assert!(n("NumericGreaterThanEquals", "1e3", "1000"));
}

#[test]
fn date_operators() {
    let d = |op: &str, v: &str, rv: &str| {
        holds(
            &format!(r#""{op}": {{"t:Date": "{v}"}}"#),
            &[&format!("t:Date={rv}")],
        )
    };
    assert!(d(
        "DateEquals",
        "2026-11-30T12:00:00Z",
        "2026-11-30T13:00:00+01:00"
    ));
    assert!(
        d("DateEquals", "1796083200", "2026-12-01T00:00:00Z"),
        "epoch seconds"
    );
    assert!(d(
        "DateNotEquals",
        "2026-11-30T12:00:00Z",
        "2026-11-30T12:00:01Z"
    ));
    assert!(d(
        "DateLessThan",
        "2026-12-01T00:00:00Z",
        "2026-11-30T23:59:59Z"
    ));
    assert!(!d(
        "DateLessThan",
        "2026-12-01T00:00:00Z",
        "2026-12-01T00:00:00Z"
    ));
    assert!(d(
        "DateLessThanEquals",
        "2026-12-01T00:00:00Z",
        "2026-12-01T00:00:00Z"
    ));
    assert!(d(
        "DateGreaterThan",
        "2026-12-01T00:00:00Z",
        "2027-01-01T00:00:00Z"
    ));
    assert!(!d(
        "DateGreaterThanEquals",
        "2026-12-01T00:00:00Z",
        "2026-11-01T00:00:00Z"
    ));
}

#[test]
fn bool_ip_and_null_operators() {
    assert!(holds(r#""Bool": {"t:Bool": true}"#, &["t:Bool=TRUE"]));
    assert!(!holds(r#""Bool": {"t:Bool": "true"}"#, &["t:Bool=false"]));
    assert!(holds(
        r#""IpAddress": {"t:Ip": ["10.0.0.0/8", "2001:db8::/32"]}"#,
        &["t:Ip=2001:db8::5"]
    ));
    assert!(holds(
        r#""IpAddress": {"t:Ip": "10.0.0.0/8"}"#,
        &["t:Ip=::ffff:10.9.9.9"]
    ));
    assert!(!holds(
        r#""IpAddress": {"t:Ip": "10.0.0.0/8"}"#,
        &["t:Ip=192.168.1.1"]
    ));
    assert!(holds(
        r#""NotIpAddress": {"t:Ip": "10.0.0.0/8"}"#,
        &["t:Ip=192.168.1.1"]
    ));
    assert!(!holds(
        r#""NotIpAddress": {"t:Ip": ["10.0.0.0/8", "::1"]}"#,
        &["t:Ip=::1"]
    ));
    assert!(holds(r#""Null": {"t:Str": "true"}"#, &[]));
    assert!(!holds(r#""Null": {"t:Str": "true"}"#, &["t:Str=x"]));
    assert!(holds(r#""Null": {"t:Str": false}"#, &["t:Str=x"]));
    assert!(
        holds(r#""Null": {"t:Set": "true"}"#, &["t:Set="]),
        "an empty set counts as absent"
    );
    assert!(holds(r#""Null": {"t:Set": "false"}"#, &["t:Set=a"]));
}

#[test]
fn absent_keys_and_if_exists() {
    // Positive operators are false on an absent key, negated ones true (IAM).
    assert!(!holds(r#""StringEquals": {"t:Str": "a"}"#, &[]));
    assert!(holds(r#""StringNotEquals": {"t:Str": "a"}"#, &[]));
    assert!(holds(r#""NotIpAddress": {"t:Ip": "10.0.0.0/8"}"#, &[]));
    assert!(!holds(r#""NumericLessThan": {"t:Num": 1}"#, &[]));
    // IfExists: true when absent, the operator when present; every family.
    for (op, v, bad) in [
        ("StringEqualsIfExists", "\"a\"", "t:Str=b"),
        ("StringLikeIfExists", "\"a*\"", "t:Str=b"),
        ("NumericLessThanIfExists", "1", "t:Num=2"),
        (
            "DateLessThanIfExists",
            "\"2026-01-01T00:00:00Z\"",
            "t:Date=2027-01-01T00:00:00Z",
        ),
        ("BoolIfExists", "true", "t:Bool=false"),
        ("IpAddressIfExists", "\"10.0.0.0/8\"", "t:Ip=11.0.0.1"),
    ] {
        let key = bad.split('=').next().unwrap();
        let c = format!(r#""{op}": {{"{key}": {v}}}"#);
        assert!(holds(&c, &[]), "{c} on absent key");
        assert!(!holds(&c, &[bad]), "{c} on {bad}");
    }
}

#[test]
fn set_qualifiers_on_missing_empty_and_multi_valued_keys() {
    let any = r#""ForAnyValue:StringEquals": {"t:Set": ["a", "b"]}"#;
    assert!(holds(any, &["t:Set=x", "t:Set=b"]));
    assert!(!holds(any, &["t:Set=x", "t:Set=y"]));
    assert!(
        !holds(any, &["t:Set="]),
        "ForAnyValue on an empty set is false"
    );
    assert!(!holds(any, &[]), "ForAnyValue on an absent key is false");
    let all = r#""ForAllValues:StringEquals": {"t:Set": ["a", "b"]}"#;
    assert!(holds(all, &["t:Set=a", "t:Set=b"]));
    assert!(!holds(all, &["t:Set=a", "t:Set=c"]));
    assert!(
        holds(all, &["t:Set="]),
        "ForAllValues on an empty set is true"
    );
    assert!(holds(all, &[]), "ForAllValues on an absent key is true");
    let any_not = r#""ForAnyValue:StringNotEquals": {"t:Set": "a"}"#;
    assert!(holds(any_not, &["t:Set=a", "t:Set=b"]));
    assert!(!holds(any_not, &["t:Set=a"]));
    assert!(!holds(any_not, &[]));
    let all_not = r#""ForAllValues:StringNotLike": {"t:Set": "adm*"}"#;
    assert!(holds(all_not, &["t:Set=dev", "t:Set=ops"]));
    assert!(!holds(all_not, &["t:Set=dev", "t:Set=admin"]));
    let any_if = r#""ForAnyValue:StringEqualsIfExists": {"t:Set": "a"}"#;
    assert!(holds(any_if, &[]));
    assert!(!holds(any_if, &["t:Set=b"]));
}

#[test]
fn decision_warns_when_absence_made_it_match() {
    let text = doc(
        r#"{"Sid": "S", "Effect": "Allow", "Principal": "*", "Action": "a:b", "Resource": "*", "Condition": {"StringEqualsIfExists": {"t:Str": "a"}}}"#,
    );
    let (set, _) = PolicySet::compile(&[Source::new("c.json", text)], &test_schema()).unwrap();
    let mut context = Context::new();
    context.insert("t:Req", "r");
    let mut r = Request {
        principal: Principal::spiffe("spiffe://t/x"),
        action: "a:b".into(),
        resource: "r".into(),
        context,
    };
    let d = set.evaluate(&r);
    assert!(d.allowed());
    assert_eq!(d.warnings().len(), 1);
    assert!(
        d.warnings()[0].contains("matched only because t:Str is absent"),
        "{:?}",
        d.warnings()
    );
    r.context.insert("t:Str", "a");
    assert!(set.evaluate(&r).warnings().is_empty());
}

#[test]
fn policy_variables_in_resources_and_conditions() {
    let set = compile(&[(
        "p.json",
        &doc(
            r#"{"Sid": "Home", "Effect": "Allow", "Principal": "*", "Action": "http:GET", "Resource": "route/home/${ward:Host}/*"},
               {"Sid": "Hdr", "Effect": "Allow", "Principal": "*", "Action": "http:PUT", "Resource": "route/*",
                "Condition": {"StringEquals": {"ward:RequestHeader/x-owner": "${ward:RequestHeader/X-User}"}}},
               {"Sid": "Esc", "Effect": "Allow", "Principal": "*", "Action": "http:POST", "Resource": "route/lit/${*}${?}${$}"}"#,
        ),
    )]);
    let mut r = req(BILLING, "http:GET", "route/home/h1/x");
    assert!(!set.evaluate(&r).allowed(), "variable absent: no match");
    r.context.insert("ward:Host", "h1");
    assert!(set.evaluate(&r).allowed());
    r.resource = "route/home/h2/x".into();
    assert!(!set.evaluate(&r).allowed());

    let mut r = req(BILLING, "http:PUT", "route/x");
    r.context.insert("ward:RequestHeader/x-owner", "ann");
    assert!(!set.evaluate(&r).allowed());
    r.context.insert("ward:requestheader/x-user", "ann");
    assert!(set.evaluate(&r).allowed());

    let r = req(BILLING, "http:POST", "route/lit/*?$");
    assert!(set.evaluate(&r).allowed());
    let r = req(BILLING, "http:POST", "route/lit/ab$");
    assert!(!set.evaluate(&r).allowed(), "escaped wildcards are literal");
}

#[test]
fn invalid_requests_are_denied_with_a_reason() {
    let set = compile(&[(
        "p.json",
        &doc(r#"{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}"#),
    )]);
    let mut r = req(BILLING, "http:GET", "route/a");
    assert!(set.evaluate(&r).allowed());
    r.context.insert("ward:SourceIp", "10.0.0.2");
    let d = set.evaluate(&r);
    assert_eq!(d.outcome(), Outcome::InvalidRequest);
    assert!(
        d.error()
            .unwrap()
            .contains("single-valued but has 2 values"),
        "{:?}",
        d.error()
    );
    let mut r = req(BILLING, "http:GET", "route/a");
    r.context.set("ward:CurrentTime", vec!["tomorrow".into()]);
    assert!(
        set.evaluate(&r)
            .error()
            .unwrap()
            .contains("not a valid Date value")
    );
    let mut r = req(BILLING, "http:GET", "route/a");
    r.context = Context::new();
    let d = set.evaluate(&r);
    assert!(
        d.error()
            .unwrap()
            .contains("required by the schema but missing"),
        "{:?}",
        d.error()
    );
    // Unknown keys are ignored; headers are typed by their family.
    let mut r = req(BILLING, "http:GET", "route/a");
    r.context
        .insert("x:Unknown", "1")
        .insert("ward:RequestHeader/a", "b");
    assert!(set.evaluate(&r).allowed());
}

#[test]
fn policy_hash_is_stable_and_content_addressed() {
    let a = compile(&[
        (
            "a.json",
            &doc(r#"{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}"#),
        ),
        (
            "b.json",
            &doc(r#"{"Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "x"}"#),
        ),
    ]);
    let b = compile(&[
        (
            "b.json",
            &doc(r#"{"Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "x"}"#),
        ),
        (
            "a.json",
            &doc(r#"{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}"#),
        ),
    ]);
    assert_eq!(a.hash(), b.hash(), "source order does not matter");
    let c = compile(&[
        (
            "a.json",
            &doc(r#"{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}"#),
        ),
        (
            "c.json",
            &doc(r#"{"Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "x"}"#),
        ),
    ]);
    assert_ne!(a.hash(), c.hash(), "names count");
}

/// Compiles `text` as `f.json` and checks the first error: its position is
/// that of `marker` in `text` (the `nth` occurrence, 0-based) and its
/// message contains `message`.
#[track_caller]
fn error_at(text: &str, marker: &str, nth: usize, message: &str) {
    let e = errors(&[("f.json", text)]);
    let offset = text
        .match_indices(marker)
        .nth(nth)
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("marker {marker}"));
    let before = &text[..offset];
    let line = before.matches('\n').count() as u32 + 1;
    let column = before.rsplit('\n').next().unwrap().chars().count() as u32 + 1;
    let hit = e.iter().find(|d| d.message.contains(message));
    let Some(d) = hit else {
        panic!("no error containing {message:?}: {e:#?}")
    };
    assert_eq!(
        (d.file.as_str(), d.line, d.column),
        ("f.json", line, column),
        "{d}"
    );
}

fn stmt(body: &str) -> String {
    doc(&format!("{{{body}}}"))
}

const OK: &str = r#""Effect": "Allow", "Principal": "*", "Action": "http:GET", "Resource": "*""#;

#[test]
fn document_level_errors() {
    error_at(
        "{\n  \"Version\": 1,\n}",
        "}",
        0,
        "invalid JSON: expected a double-quoted object key",
    );
    error_at(
        "{\"Version\": \"2026-11-01\",\n \"Statement\": [}",
        "}",
        0,
        "invalid JSON: expected a JSON value",
    );
    error_at(
        "[1]",
        "[",
        0,
        "expected a policy document object, found an array",
    );
    error_at(
        r#"{"Version": "2012-10-17", "Statement": []}"#,
        "\"2012",
        0,
        "unsupported \"Version\": expected \"2026-11-01\"",
    );
    error_at(
        r#"{"Version": "2026-11-01", "Statement": []}"#,
        "[",
        0,
        "\"Statement\" is empty",
    );
    error_at(
        r#"{"Version": "2026-11-01", "Statement": 3}"#,
        "3",
        0,
        "expected \"Statement\" to be an object or an array",
    );
    error_at(
        r#"{"Version": "2026-11-01", "Id": 3, "Statement": []}"#,
        "3",
        0,
        "expected \"Id\" to be a string",
    );
    error_at(
        r#"{"Version": "2026-11-01", "Kind": "Limit", "Statement": []}"#,
        "\"Limit",
        0,
        "\"Kind\" to be \"Permission\" or \"Boundary\"",
    );
    error_at(
        r#"{"Versoin": "2026-11-01", "Statement": []}"#,
        "\"Versoin",
        0,
        "unknown document field \"Versoin\": did you mean \"Version\"?",
    );
    error_at(r#"{"Statement": []}"#, "{", 0, "missing \"Version\"");
    error_at(
        r#"{"Version": "2026-11-01"}"#,
        "{",
        0,
        "missing \"Statement\"",
    );
    let dup = doc(&format!(
        "{{\"Sid\": \"X\", {OK}}},\n{{\"Sid\": \"X\", {OK}}}"
    ));
    error_at(&dup, "{\"Sid", 1, "duplicate Sid \"X\"");
}

#[test]
fn statement_level_errors() {
    error_at(
        &doc("3"),
        "3",
        0,
        "expected a statement object, found a number",
    );
    error_at(
        &stmt(&format!("\"Efect\": \"Allow\", {OK}")),
        "\"Efect",
        0,
        "unknown statement field \"Efect\": did you mean \"Effect\"?",
    );
    error_at(
        &stmt(&format!("\"Sid\": 1, {OK}")),
        "1,",
        0,
        "expected \"Sid\" to be a string",
    );
    error_at(
        &stmt(r#""Effect": "allow", "Principal": "*", "Action": "a:b", "Resource": "*""#),
        "\"allow",
        0,
        "\"Effect\" to be \"Allow\" or \"Deny\"",
    );
    error_at(
        &stmt(r#""Principal": "*", "Action": "a:b", "Resource": "*""#),
        "{\"Principal",
        0,
        "missing \"Effect\"",
    );
    error_at(
        &stmt(&format!("{OK}, \"NotPrincipal\": \"*\"")),
        "\"NotPrincipal",
        0,
        "\"Principal\" and \"NotPrincipal\" together",
    );
    error_at(
        &stmt(&format!("{OK}, \"NotAction\": \"a:b\"")),
        "\"NotAction",
        0,
        "\"Action\" and \"NotAction\" together",
    );
    error_at(
        &stmt(&format!("{OK}, \"NotResource\": \"x\"")),
        "\"NotResource",
        0,
        "\"Resource\" and \"NotResource\" together",
    );
    error_at(
        &stmt(r#""Effect": "Allow", "Action": "a:b", "Resource": "*""#),
        "{\"Effect",
        0,
        "missing \"Principal\" (or \"NotPrincipal\")",
    );
    error_at(
        &stmt(r#""Effect": "Allow", "Principal": "*", "Resource": "*""#),
        "{\"Effect",
        0,
        "missing \"Action\" (or \"NotAction\")",
    );
    error_at(
        &stmt(r#""Effect": "Allow", "Principal": "*", "Action": "a:b""#),
        "{\"Effect",
        0,
        "missing \"Resource\" (or \"NotResource\")",
    );
    error_at(
        &stmt(r#""Effect": "Allow", "Principal": "*", "Action": [], "Resource": "*""#),
        "[]",
        0,
        "\"Action\" is an empty list",
    );
    error_at(
        &stmt(r#""Effect": "Allow", "Principal": "*", "Action": ["a:b", 3], "Resource": "*""#),
        "3]",
        0,
        "expected a string in \"Action\"",
    );
    error_at(
        &stmt(r#""Effect": "Allow", "Principal": "*", "Action": {"a": 1}, "Resource": "*""#),
        "{\"a\"",
        0,
        "expected a string or an array of strings for \"Action\"",
    );
    error_at(
        &stmt(r#""Effect": "Allow", "Principal": "*", "Action": "GET", "Resource": "*""#),
        "\"GET",
        0,
        "action \"GET\" has no service",
    );
}

#[test]
fn principal_errors() {
    let p = |principal: &str| {
        stmt(&format!(
            r#""Effect": "Allow", "Principal": {principal}, "Action": "a:b", "Resource": "*""#
        ))
    };
    error_at(
        &p(r#"{"Spiffe": "corp.example/x"}"#),
        "\"corp",
        0,
        "\"corp.example/x\" is not a SPIFFE ID",
    );
    error_at(
        &p(r#"{"Email": "alice"}"#),
        "\"alice",
        0,
        "\"alice\" is not an e-mail address",
    );
    error_at(
        &p(r#"{"Group": "opps"}"#),
        "\"opps",
        0,
        "group \"opps\" is not defined in groups.json",
    );
    error_at(
        &p(r#"{"AWS": "*"}"#),
        "\"AWS",
        0,
        "unknown principal type \"AWS\"",
    );
    error_at(&p(r#"{}"#), "{}", 0, "empty principal object");
    error_at(
        &p(r#""everyone""#),
        "\"everyone",
        0,
        "expected \"*\" or an object",
    );
    // With groups.json, an unknown group gets a suggestion.
    let e = errors(&[
        ("groups.json", r#"{"Groups": {"ops": ["a@b.c"]}}"#),
        ("f.json", &p(r#"{"Group": "opps"}"#)),
    ]);
    assert!(e[0].message.contains("did you mean \"ops\"?"), "{e:?}");
}

#[test]
fn resource_and_variable_errors() {
    let r = |res: &str| {
        stmt(&format!(
            r#""Effect": "Allow", "Principal": "*", "Action": "a:b", "Resource": "{res}""#
        ))
    };
    error_at(
        &r("route/${ward:Nope}"),
        "\"route",
        0,
        "variable ${ward:Nope}: unknown condition key",
    );
    error_at(
        &r("route/${ward:PrincipalGroups}"),
        "\"route",
        0,
        "is multi-valued, a variable needs a single value",
    );
    error_at(&r("route/${ward:Host"), "\"route", 0, "without a closing");
    error_at(&r("route/${}"), "\"route", 0, "empty variable");
}

#[test]
fn condition_errors() {
    let c = |cond: &str| stmt(&format!(r#"{OK}, "Condition": {cond}"#));
    error_at(&c("[]"), "[]", 0, "expected \"Condition\" to be an object");
    error_at(
        &c(r#"{"StringEqual": {"ward:Host": "a"}}"#),
        "\"StringEqual\"",
        0,
        "unknown condition operator \"StringEqual\": did you mean \"StringEquals\"?",
    );
    error_at(
        &c(r#"{"NullIfExists": {"ward:Host": "true"}}"#),
        "\"NullIfExists",
        0,
        "\"Null\" takes no IfExists",
    );
    error_at(
        &c(r#"{"ForAnyValue:Null": {"ward:Host": "true"}}"#),
        "\"ForAnyValue",
        0,
        "\"Null\" takes no IfExists suffix and no ForAnyValue",
    );
    error_at(
        &c(r#"{"StringEquals": "a"}"#),
        "\"a\"",
        0,
        "expected \"StringEquals\" to be an object of condition key",
    );
    error_at(&c(r#"{"StringEquals": {}}"#), "{}", 0, "tests no key");
    error_at(
        &c(r#"{"StringEquals": {"ward:Hots": "a"}}"#),
        "\"ward:Hots",
        0,
        "unknown condition key \"ward:Hots\": did you mean \"ward:Host\"?",
    );
    error_at(
        &c(r#"{"NumericLessThan": {"ward:SourceIp": 3}}"#),
        "\"ward:SourceIp",
        0,
        "is a Ip key but \"NumericLessThan\" compares Numeric values: use a IpAddress/NotIpAddress operator",
    );
    error_at(
        &c(r#"{"ForAnyValue:StringEquals": {"ward:Host": "a"}}"#),
        "\"ForAnyValue",
        0,
        "\"ward:Host\" is single-valued",
    );
    error_at(
        &c(r#"{"StringEquals": {"ward:PrincipalGroups": "a"}}"#),
        "\"StringEquals",
        0,
        "is multi-valued: say ForAnyValue:StringEquals",
    );
    error_at(
        &c(r#"{"DateLessThan": {"ward:CurrentTime": "${ward:CertNotAfter}"}}"#),
        "\"${",
        0,
        "policy variables are only allowed in String operators",
    );
    error_at(
        &c(r#"{"DateLessThan": {"ward:CurrentTime": "2026-13-01"}}"#),
        "\"2026-13",
        0,
        "is not a date: expected RFC 3339",
    );
    error_at(
        &c(r#"{"IpAddress": {"ward:SourceIp": ["10.0.0.0/8", "10.0.0.0/33"]}}"#),
        "\"10.0.0.0/33",
        0,
        "bad CIDR: `10.0.0.0/33`: an IPv4 prefix length is at most 32",
    );
    error_at(
        &c(r#"{"IpAddress": {"ward:SourceIp": "10.1.0.0/8"}}"#),
        "\"10.1",
        0,
        "host bits",
    );
    error_at(
        &c(r#"{"Null": {"ward:Host": "yes"}}"#),
        "\"yes",
        0,
        "\"Null\" takes \"true\"",
    );
    error_at(
        &c(r#"{"StringEquals": {"ward:Host": "${ward:Nope}"}}"#),
        "\"${",
        0,
        "variable ${ward:Nope}: unknown condition key",
    );
    error_at(
        &c(r#"{"StringEquals": {"ward:Host": []}}"#),
        "[]",
        0,
        "\"ward:Host\" is an empty list",
    );
    let schema = Schema::new(
        vec![
            KeyDecl::new("t:Num", KeyType::Numeric, false, false),
            KeyDecl::new("t:Bool", KeyType::Bool, false, false),
        ],
        vec![],
    );
    for (cond, marker, msg) in [
        (
            r#"{"NumericEquals": {"t:Num": "ten"}}"#,
            "\"ten",
            "\"ten\" is not a number",
        ),
        (
            r#"{"Bool": {"t:Bool": "yes"}}"#,
            "\"yes",
            "\"yes\" is not a boolean",
        ),
    ] {
        let text = c(cond);
        let e = PolicySet::compile(&[Source::new("f.json", text.clone())], &schema).unwrap_err();
        let d = &e.diagnostics()[0];
        assert!(d.message.contains(msg), "{d}");
        let col = text.find(marker).unwrap() as u32 + 1;
        assert_eq!((d.line, d.column), (1, col), "{d}");
    }
}

#[test]
fn groups_file_errors() {
    let g = |text: &str| errors(&[("groups.json", text), ("f.json", &stmt(OK))]);
    let e = g(r#"{"Groups": {"ops": ["carol"]}}"#);
    assert_eq!(
        (e[0].file.as_str(), e[0].line, e[0].column),
        ("groups.json", 1, 21)
    );
    assert!(e[0].message.contains("neither a SPIFFE ID"), "{e:?}");
    let e = g(r#"{"Groups": {"ops": ["spiffe://x/*"]}}"#);
    assert!(e[0].message.contains("wildcards are not allowed"), "{e:?}");
    let e = g(r#"{"Grups": {}}"#);
    assert!(e[0].message.contains("did you mean \"Groups\"?"), "{e:?}");
    assert_eq!(e[0].column, 2);
    let e = g(r#"{"Groups": []}"#);
    assert!(
        e[0].message.contains("expected \"Groups\" to be an object"),
        "{e:?}"
    );
    let e = g("[]");
    assert!(e[0].message.contains("expected an object"), "{e:?}");
    let e = g("{");
    assert!(e[0].message.contains("invalid JSON"), "{e:?}");
    let e = errors(&[
        ("team/groups.json", r#"{"Groups": {}}"#),
        ("f.json", &stmt(OK)),
    ]);
    assert!(e[0].message.contains("read only at the top"), "{e:?}");
    let e = errors(&[("f.json", &stmt(OK)), ("f.json", &stmt(OK))]);
    assert!(e[0].message.contains("given twice"), "{e:?}");
}

#[test]
fn all_errors_are_collected() {
    let e = errors(&[
        (
            "a.json",
            &stmt(r#""Effect": "Alow", "Principal": "*", "Action": "a:b", "Resource": "*""#),
        ),
        (
            "b.json",
            &stmt(r#""Effect": "Allow", "Principal": "*", "Action": "GET", "Resource": "*""#),
        ),
    ]);
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0].file, "a.json");
    assert_eq!(e[1].file, "b.json");
}

#[test]
fn footgun_warnings() {
    let w = |body: &str| warnings(&[("f.json", &stmt(body))]);
    let has = |ws: &[Diagnostic], s: &str| ws.iter().any(|d| d.message.contains(s));
    let ws =
        w(r#""Effect": "Allow", "Principal": "*", "NotAction": "http:DELETE", "Resource": "*""#);
    assert!(has(&ws, "Allow with NotAction on Resource \"*\""), "{ws:?}");
    assert_eq!((ws[0].line, ws[0].column), (1, 41));
    let ws =
        w(r#""Effect": "Allow", "Principal": "*", "Action": "*", "NotResource": "route/admin/*""#);
    assert!(
        has(&ws, "Allow with NotResource and Action \"*\""),
        "{ws:?}"
    );
    let ws = w(
        r#""Effect": "Allow", "NotPrincipal": {"Spiffe": "spiffe://x/y"}, "Action": "a:b", "Resource": "x""#,
    );
    assert!(has(&ws, "Allow with NotPrincipal"), "{ws:?}");
    let ws = w(r#""Effect": "Deny", "Principal": "*", "NotAction": "http:GET", "Resource": "*""#);
    assert!(ws.is_empty(), "Deny with NotAction is fine: {ws:?}");
    let text = stmt(&format!(
        r#"{OK}, "Condition": {{"ForAllValues:StringEquals": {{"ward:PrincipalGroups": "a"}}}}"#
    ));
    let ws = warnings(&[("f.json", &text)]);
    assert!(has(&ws, "ForAllValues: in an Allow is true when"), "{ws:?}");
    let col = text.find("\"ward:PrincipalGroups").unwrap() as u32 + 1;
    assert_eq!(ws[0].column, col);
    let ws = w(&format!(
        r#"{OK}, "Condition": {{"ForAllValues:StringEquals": {{"ward:PrincipalGroups": "a"}}, "Null": {{"ward:PrincipalGroups": "false"}}}}"#
    ));
    assert!(ws.is_empty(), "guarded by Null false: {ws:?}");
    let ws = w(&format!(
        r#"{OK}, "Condition": {{"IpAddressIfExists": {{"ward:SourceIp": "10.0.0.0/8"}}}}"#
    ));
    assert!(
        has(
            &ws,
            "always present in this schema, so IfExists has no effect"
        ),
        "{ws:?}"
    );
    let ws = w(&format!(
        r#"{OK}, "Condition": {{"Null": {{"ward:SourceIp": "true"}}}}"#
    ));
    assert!(has(&ws, "so Null has no effect"), "{ws:?}");
    let ws = w(
        r#""Effect": "Allow", "Principal": "*", "Action": ["http:GET", "htp:GET"], "Resource": "*""#,
    );
    assert!(
        has(&ws, "action \"htp:GET\" is unreachable: service \"htp\""),
        "{ws:?}"
    );
    let ws = warnings(&[("groups.json", r#"{"Groups": {}}"#)]);
    assert!(has(&ws, "no policy documents"), "{ws:?}");
}

#[test]
fn shadowed_allow_is_reported_unreachable() {
    let ws = warnings(&[
        (
            "a.json",
            &doc(
                r#"{"Sid": "Reads", "Effect": "Allow", "Principal": {"Spiffe": "spiffe://x/y"}, "Action": "http:GET", "Resource": "route/admin/users"}"#,
            ),
        ),
        (
            "b.json",
            &doc(
                r#"{"Sid": "NoAdmin", "Effect": "Deny", "Principal": "*", "Action": "http:*", "Resource": "route/admin/*"}"#,
            ),
        ),
    ]);
    assert_eq!(ws.len(), 1, "{ws:?}");
    assert_eq!(
        (ws[0].file.as_str(), ws[0].line, ws[0].column),
        ("a.json", 1, 41)
    );
    assert!(
        ws[0].message.contains(
            "statement Reads is unreachable: the unconditional Deny Deny NoAdmin at b.json:1:41"
        ),
        "{ws:?}"
    );
    // A conditional Deny does not make it unreachable.
    let ws = warnings(&[
        (
            "a.json",
            &doc(
                r#"{"Sid": "Reads", "Effect": "Allow", "Principal": "*", "Action": "http:GET", "Resource": "route/admin/users"}"#,
            ),
        ),
        (
            "b.json",
            &doc(
                r#"{"Effect": "Deny", "Principal": "*", "Action": "http:*", "Resource": "route/admin/*", "Condition": {"StringEquals": {"ward:Host": "x"}}}"#,
            ),
        ),
    ]);
    assert!(ws.is_empty(), "{ws:?}");
}

#[test]
fn kind_after_statement_still_applies() {
    let set = compile(&[
        (
            "b.json",
            r#"{"Version": "2026-11-01", "Statement": {"Effect": "Allow", "Principal": "*", "Action": "http:GET", "Resource": "*"}, "Kind": "Boundary"}"#,
        ),
        (
            "p.json",
            &doc(r#"{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}"#),
        ),
    ]);
    assert_eq!(
        set.evaluate(&req(BILLING, "http:PUT", "route/a")).outcome(),
        Outcome::BoundaryDeny
    );
    assert_eq!(
        set.evaluate(&req(BILLING, "http:GET", "route/a")).outcome(),
        Outcome::Allow
    );
}

#[test]
fn index_finds_every_candidate() {
    // Statements filed under exact actions, services, "any", resource keys
    // and "rest" are all found.
    let set = compile(&[(
        "p.json",
        &doc(
            r#"{"Sid": "1", "Effect": "Allow", "Principal": "*", "Action": "http:GET", "Resource": "route/a/x"},
               {"Sid": "2", "Effect": "Allow", "Principal": "*", "Action": "http:*", "Resource": "route/a/*"},
               {"Sid": "3", "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "route/*"},
               {"Sid": "4", "Effect": "Allow", "Principal": "*", "NotAction": "tcp:*", "NotResource": "route/b/*"},
               {"Sid": "5", "Effect": "Allow", "Principal": "*", "Action": ["http:GET", "http:G*"], "Resource": ["route/a", "route/a/x"]},
               {"Sid": "6", "Effect": "Allow", "Principal": "*", "Action": "h*:GET", "Resource": "route/a/${ward:Host}"}"#,
        ),
    )]);
    let mut r = req(BILLING, "HTTP:GET", "route/a/x");
    r.context.insert("ward:Host", "x");
    let d = set.evaluate(&r);
    let sids: Vec<_> = d.matched().iter().map(|m| m.sid.clone().unwrap()).collect();
    assert_eq!(sids, ["1", "2", "3", "4", "5", "6"]);
    assert_eq!(set.len(), 6);
    assert!(!set.is_empty());
}

#[test]
fn long_and_unicode_actions_do_not_break_the_index() {
    let set = compile(&[(
        "p.json",
        &doc(r#"{"Effect": "Allow", "Principal": "*", "Action": "http:*", "Resource": "*"}"#),
    )]);
    let long = format!("http:{}", "X".repeat(200));
    assert!(set.evaluate(&req(BILLING, &long, "r")).allowed());
    assert!(set.evaluate(&req(BILLING, "http:GÉT", "r")).allowed());
    assert!(!set.evaluate(&req(BILLING, "ÉÉ", "r")).allowed());
}

#[test]
fn principal_groups_are_filled_from_groups_json_when_absent() {
    let set = compile(&[
        (
            "groups.json",
            r#"{"Groups": {"ops": ["spiffe://corp.example/user/carol"]}}"#,
        ),
        (
            "p.json",
            &doc(
                r#"{"Effect": "Allow", "Principal": "*", "Action": "http:GET", "Resource": "*",
                     "Condition": {"ForAnyValue:StringEquals": {"ward:PrincipalGroups": "ops"}}}"#,
            ),
        ),
    ]);
    let r = req("spiffe://corp.example/user/carol", "http:GET", "route/a");
    assert!(set.evaluate(&r).allowed(), "derived from groups.json");
    let mut r2 = r.clone();
    r2.context.set("ward:PrincipalGroups", vec![]);
    assert!(!set.evaluate(&r2).allowed(), "the host's value wins");
    let r3 = req("spiffe://corp.example/user/dave", "http:GET", "route/a");
    assert!(!set.evaluate(&r3).allowed());
}

#[test]
fn policy_set_and_decision_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<PolicySet>();
    shareable::<Decision>();
}

#[test]
fn ignore_case_is_per_character_unicode() {
    assert!(holds(
        r#""StringEqualsIgnoreCase": {"t:Str": "ΟΔΟΣ"}"#,
        &["t:Str=οδοσ"]
    ));
    assert!(holds(
        r#""StringEqualsIgnoreCase": {"t:Str": "straße"}"#,
        &["t:Str=STRAßE"]
    ));
}

#[test]
fn deny_only_boundary_is_warned_about_and_denies_everything() {
    let b = r#"{"Version": "2026-11-01", "Kind": "Boundary", "Statement": {"Effect": "Deny", "Principal": {"Spiffe": "spiffe://corp.example/ns/x/*"}, "Action": "http:DELETE", "Resource": "*"}}"#;
    let p = doc(r#"{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}"#);
    let ws = warnings(&[("b.json", b), ("p.json", &p)]);
    assert!(
        ws.iter()
            .any(|w| w.file == "b.json" && w.message.contains("no Allow statement")),
        "{ws:?}"
    );
    let set = compile(&[("b.json", b), ("p.json", &p)]);
    let out = set
        .evaluate(&req("spiffe://corp.example/ns/x/sa/a", "http:GET", "r"))
        .outcome();
    assert_eq!(out, Outcome::BoundaryDeny);
    assert!(set.evaluate(&req(BILLING, "http:GET", "r")).allowed());
}

/// A base checked once for a set: valid keys are not checked again, an
/// invalid base key is still reported (or not, once a layer hides it), and
/// a change to the base after a check is checked again.
#[test]
fn a_layered_base_is_checked_once_per_set_and_never_wrongly() {
    let set = compile(&[(
        "p.json",
        &doc(r#"{"Effect": "Allow", "Principal": "*", "Action": "http:GET", "Resource": "*"}"#),
    )]);
    let other = compile(&[(
        "q.json",
        &doc(r#"{"Effect": "Allow", "Principal": "*", "Action": "http:GET", "Resource": "*"}"#),
    )]);
    let layered = |base: Context, own: &[(&str, &str)]| {
        let mut r = req("spiffe://corp.example/a", "http:GET", "route/a");
        let mut c = Context::over(std::sync::Arc::new(base));
        for (k, v) in own {
            c.set(k, vec![(*v).to_string()]);
        }
        r.context = c;
        r
    };
    let good = req("spiffe://corp.example/a", "http:GET", "route/a").context;
    let r = layered(good.clone(), &[("ward:Path", "/x")]);
    for s in [&set, &set, &other, &set] {
        assert_eq!(s.evaluate(&r).outcome(), Outcome::Allow);
    }
    let remembered = r.context.base().unwrap().checked.get();
    assert!(remembered.is_some_and(|(h, ok)| **h == *set.hash() && *ok));
    // A bad layer key is caught with the base's checks remembered.
    let r = layered(good.clone(), &[("ward:SourceIp", "not an ip")]);
    let bad_ip = set.evaluate(&r);
    assert_eq!(bad_ip.outcome(), Outcome::InvalidRequest);
    assert!(
        bad_ip.error().unwrap().contains("ward:sourceip"),
        "{:?}",
        bad_ip.error()
    );
    // A bad base key: reported every time, unless the layer hides it.
    let mut bad = good.clone();
    bad.set("ward:CurrentTime", vec!["yesterday".into()]);
    let r = layered(bad.clone(), &[("ward:Path", "/x")]);
    for _ in 0..2 {
        assert_eq!(set.evaluate(&r).outcome(), Outcome::InvalidRequest);
    }
    let hidden = layered(bad, &[("ward:CurrentTime", NOW)]);
    assert_eq!(set.evaluate(&hidden).outcome(), Outcome::Allow);
    // A context changed after it was checked is checked again.
    let mut changed = good;
    assert!(set.keys_ok(&changed));
    changed.insert("ward:SourceIp", "10.9.9.9");
    let r = layered(changed, &[("ward:Path", "/x")]);
    let d = set.evaluate(&r);
    assert_eq!(d.outcome(), Outcome::InvalidRequest);
    assert!(
        d.error().unwrap().contains("single-valued"),
        "{:?}",
        d.error()
    );
}
