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

#[test]
fn smoke_allow_and_default_deny() {
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
    assert_eq!(d.policy_hash(), set.hash());
    assert_eq!(d.policy_hash().len(), 64);
    let d = set.evaluate(&req(BILLING, "http:POST", "route/ledger/v1/x"));
    assert_eq!(d.outcome(), Outcome::ImplicitDeny);
    let d = set.evaluate(&req(BILLING, "http:GET", "route/Ledger/v1/x"));
    assert!(!d.allowed(), "resources are case-sensitive");
}

#[test]
fn smoke_errors_and_warnings() {
    let e = errors(&[("p.json", &doc(r#"{"Effect": "Allow"}"#))]);
    assert!(
        e.iter()
            .any(|d| d.message.contains("missing \"Principal\"")),
        "{e:?}"
    );
    let w = warnings(&[(
        "p.json",
        &doc(
            r#"{"Effect": "Allow", "Principal": "*", "NotAction": "http:DELETE", "Resource": "*"}"#,
        ),
    )]);
    assert!(w.iter().any(|d| d.message.contains("NotAction")), "{w:?}");
}
