//! The `ward` binary's shape: every role is a subcommand with real help, and
//! a bad invocation fails loudly rather than doing nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn ward(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(args)
        .output()
        .expect("run ward")
}

#[test]
fn help_lists_every_role() {
    let out = ward(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for sub in ["ca", "agent", "connect", "gateway", "policy", "audit", "up"] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{sub} "))),
            "`ward --help` does not list `{sub}`:\n{help}"
        );
    }
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["ca", "agent", "connect", "gateway", "policy", "audit", "up"] {
        let out = ward(&[sub, "--help"]);
        assert!(out.status.success(), "`ward {sub} --help` failed");
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(help.contains("Usage: ward"), "`ward {sub} --help`: {help}");
    }
}

#[test]
fn unknown_subcommand_fails_with_usage() {
    let out = ward(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("unrecognized subcommand"), "{err}");
}

#[test]
fn bad_log_filter_is_refused() {
    let out = ward(&["--log-level", "=[", "policy", "--help"]);
    // --help wins before logging is set up; a real command must refuse it.
    assert!(out.status.success());
    let out = ward(&["--log-level", "info,[bad", "up", "--dir", "/nonexistent/x"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--log-level"), "{err}");
}
