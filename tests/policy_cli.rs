//! `ward policy …` end to end: the real binary on files in a temporary
//! directory, checking output and exit codes (0 ok/allowed, 1 error,
//! 3 denied / mismatch / changed outcome).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ward(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(args)
        .output()
        .expect("run ward")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    p
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/examples")
}

const POLICY: &str = r#"{
  "Version": "2026-11-01",
  "Statement": [
    {"Sid": "ReadLedger", "Effect": "Allow", "Principal": {"Spiffe": "spiffe://corp.example/ns/prod/sa/*"},
     "Action": "http:GET", "Resource": "route/ledger/*"},
    {"Sid": "NoStaging", "Effect": "Deny", "Principal": {"Spiffe": "spiffe://corp.example/ns/prod/sa/staging"},
     "Action": "*", "Resource": "*"}
  ]
}"#;

const CTX: &[&str] = &[
    "--context",
    "ward:SourceIp=10.0.0.1",
    "--context",
    "ward:Protocol=h2",
    "--context",
    "ward:CurrentTime=2026-11-30T12:00:00Z",
];

#[test]
fn example_directory_checks_and_passes_its_tests() {
    let dir = examples().join("corp");
    let out = ward(&["policy", "check", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("ok: 5 files"), "{}", stdout(&out));
    let tests = examples().join("corp.tests.json");
    let out = ward(&[
        "policy",
        "test",
        dir.to_str().unwrap(),
        tests.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains(" passed, 0 failed"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn ca_admin_example_passes_with_the_ca_preset() {
    let dir = examples().join("ca-admin");
    let tests = examples().join("ca-admin.tests.json");
    let args = [
        "policy",
        "test",
        "--preset",
        "ca-admin",
        dir.to_str().unwrap(),
        tests.to_str().unwrap(),
    ];
    let out = ward(&args);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("8 passed, 0 failed"),
        "{}",
        stdout(&out)
    );
    // The gateway schema has no ward:TargetIdentity: the same files are refused.
    let out = ward(&["policy", "check", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("unknown condition key \"ward:TargetIdentity\""),
        "{}",
        stdout(&out)
    );
}

#[test]
fn check_reports_errors_with_locations_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "team/bad.json",
        "{\n  \"Version\": \"2026-11-01\",\n  \"Statement\": [{\n    \"Efect\": \"Allow\",\n    \"Principal\": \"*\", \"Action\": \"http:GET\", \"Resource\": \"*\",\n    \"Condition\": {\"IpAddress\": {\"ward:SourceIp\": \"10.0.0.1/8\"}}\n  }]\n}\n",
    );
    let out = ward(&["policy", "check", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "error: team/bad.json:4:5: unknown statement field \"Efect\": did you mean \"Effect\"?"
        ),
        "{text}"
    );
    assert!(text.contains("team/bad.json:6:50: bad CIDR"), "{text}");
    assert!(text.contains("host bits"), "{text}");
    let out = ward(&["policy", "check", "--json", tmp.path().to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"][0]["line"], 4);
    assert_eq!(v["errors"][0]["column"], 5);
}

#[test]
fn eval_explains_and_exit_code_follows_the_decision() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "p.json", POLICY);
    let d = tmp.path().to_str().unwrap();
    let mut args = vec![
        "policy",
        "eval",
        d,
        "--principal",
        "spiffe://corp.example/ns/prod/sa/billing",
        "--action",
        "HTTP:get",
        "--resource",
        "route/ledger/x",
    ];
    args.extend_from_slice(CTX);
    let out = ward(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("ALLOW"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("ReadLedger at p.json:4:5"),
        "{}",
        stdout(&out)
    );

    args[4] = "spiffe://corp.example/ns/prod/sa/staging";
    let out = ward(&args);
    assert_eq!(out.status.code(), Some(3));
    assert!(stdout(&out).contains("explicit Deny"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("decided by: Deny NoStaging"),
        "{}",
        stdout(&out)
    );

    args.push("--json");
    let out = ward(&args);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["allowed"], false);
    assert_eq!(v["outcome"], "ExplicitDeny");
    assert_eq!(v["deciding"][0]["sid"], "NoStaging");
    assert_eq!(v["policy_hash"].as_str().unwrap().len(), 64);

    // A request file, and an implicit deny.
    let req = write(
        tmp.path(),
        "req/request.json",
        r#"{"principal": {"spiffe": "spiffe://corp.example/ns/prod/sa/billing"}, "action": "http:POST",
            "resource": "route/ledger/x", "context": {"ward:SourceIp": "10.0.0.1", "ward:Protocol": "h2",
            "ward:CurrentTime": "2026-11-30T12:00:00Z"}}"#,
    );
    let other = tempfile::tempdir().unwrap();
    write(other.path(), "p.json", POLICY);
    let out = ward(&[
        "policy",
        "eval",
        other.path().to_str().unwrap(),
        "--request",
        req.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("implicit deny"), "{}", stdout(&out));
}

#[test]
fn eval_with_a_schema_file() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "pol/p.json",
        r#"{"Version": "2026-11-01", "Statement": {"Effect": "Allow", "Principal": "*", "Action": "app:Read",
            "Resource": "doc/*", "Condition": {"NumericLessThanEquals": {"app:Level": 3}}}}"#,
    );
    let schema = write(
        tmp.path(),
        "schema.json",
        r#"{"Services": ["app"], "Keys": [{"Name": "app:Level", "Type": "Numeric", "Required": true}]}"#,
    );
    let run = |level: &str| {
        ward(&[
            "policy",
            "eval",
            tmp.path().join("pol").to_str().unwrap(),
            "--schema",
            schema.to_str().unwrap(),
            "--principal",
            "a@corp.example",
            "--action",
            "app:Read",
            "--resource",
            "doc/1",
            "--context",
            &format!("app:Level={level}"),
        ])
    };
    assert_eq!(run("2").status.code(), Some(0));
    assert_eq!(run("4").status.code(), Some(3));
    let out = run("x");
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stdout(&out).contains("not a valid Numeric value"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn test_reports_mismatches_diff_style() {
    let tmp = tempfile::tempdir().unwrap();
    let pol = tmp.path().join("pol");
    write(&pol, "p.json", POLICY);
    let tests = write(
        tmp.path(),
        "tests.json",
        r#"{"Context": {"ward:SourceIp": "10.0.0.1", "ward:Protocol": "h2", "ward:CurrentTime": "2026-11-30T12:00:00Z"},
            "Tests": [
              {"Name": "reads", "Principal": "spiffe://corp.example/ns/prod/sa/a", "Action": "http:GET",
               "Resource": "route/ledger/1", "Expect": "Allow", "Sid": "ReadLedger"},
              {"Name": "writes (wrong expectation)", "Principal": "spiffe://corp.example/ns/prod/sa/a",
               "Action": "http:PUT", "Resource": "route/ledger/1", "Expect": "Allow"},
              {"Name": "wrong sid", "Principal": "spiffe://corp.example/ns/prod/sa/a", "Action": "http:GET",
               "Resource": "route/ledger/1", "Expect": "Allow", "Sid": "Other"}
            ]}"#,
    );
    let out = ward(&[
        "policy",
        "test",
        pol.to_str().unwrap(),
        tests.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("FAIL #2 writes (wrong expectation)"),
        "{text}"
    );
    assert!(
        text.contains("  - expected: Allow\n  + actual:   Deny (ImplicitDeny)"),
        "{text}"
    );
    assert!(text.contains("FAIL #3 wrong sid"), "{text}");
    assert!(
        text.contains("  - expected: Allow by Other\n  + actual:   Allow by ReadLedger"),
        "{text}"
    );
    assert!(text.contains("1 passed, 2 failed"), "{text}");
    assert!(!text.contains("FAIL #1"), "{text}");

    let bad = write(tmp.path(), "bad.json", r#"{"Tests": [{"Principal": "x"}]}"#);
    let out = ward(&[
        "policy",
        "test",
        pol.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("bad.json"), "{}", stderr(&out));
}

#[test]
fn simulate_lists_every_changed_request() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old");
    let new = tmp.path().join("new");
    write(&old, "p.json", POLICY);
    write(
        &new,
        "p.json",
        &POLICY.replace(
            "\"Action\": \"http:GET\"",
            "\"Action\": [\"http:GET\", \"http:POST\"]",
        ),
    );
    let ctx = r#"{"ward:SourceIp": "10.0.0.1", "ward:Protocol": "h2", "ward:CurrentTime": "2026-11-30T12:00:00Z"}"#;
    let log = write(
        tmp.path(),
        "decisions.jsonl",
        &[
            format!(r#"{{"decision_id": "d1", "principal": "spiffe://corp.example/ns/prod/sa/a", "action": "http:GET", "resource": "route/ledger/1", "context": {ctx}, "result": "Allow"}}"#),
            format!(r#"{{"decision_id": "d2", "principal": "spiffe://corp.example/ns/prod/sa/a", "action": "http:POST", "resource": "route/ledger/1", "context": {ctx}, "result": "Deny"}}"#),
            r#"{"decision_id": "d3", "kind": "close", "principal": "spiffe://corp.example/ns/prod/sa/a", "result": "Close"}"#.to_owned(),
            format!(r#"{{"decision_id": "d4", "principal": "spiffe://corp.example/ns/prod/sa/staging", "action": "http:POST", "resource": "route/ledger/1", "context": {ctx}, "result": "Deny"}}"#),
        ]
        .join("\n"),
    );
    let out = ward(&[
        "policy",
        "simulate",
        "--from",
        old.to_str().unwrap(),
        "--to",
        new.to_str().unwrap(),
        "--log",
        log.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains(":2: spiffe://corp.example/ns/prod/sa/a http:POST route/ledger/1: Deny -> Allow (Allow by ReadLedger)"),
        "{text}"
    );
    assert_eq!(text.matches(" -> ").count(), 1, "{text}");
    assert!(
        text.contains("3 requests replayed, 1 change outcome, 1 lines skipped"),
        "{text}"
    );

    let out = ward(&[
        "policy",
        "simulate",
        "--from",
        old.to_str().unwrap(),
        "--to",
        old.to_str().unwrap(),
        "--log",
        log.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(stdout(&out), "");
}
