//! Secrets stay secret (issue 10): the HSM PIN never appears on any
//! process's command line (`/proc/*/cmdline`) nor in the logs of `ward ca
//! init / token create / serve` at debug level, and an enrolment token
//! never appears in a log; the agent refuses a private key file that group
//! or others may read.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Distinctive, so that a match cannot be a coincidence.
const PIN: &str = "73195550";

fn cmdlines_containing(needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let p = e.path().join("cmdline");
        if let Ok(b) = std::fs::read(&p) {
            let text = String::from_utf8_lossy(&b).replace('\0', " ");
            if text.contains(needle) {
                hits.push(format!("{}: {text}", p.display()));
            }
        }
    }
    hits
}

fn ward(conf: &Path, args: &[&str], log: &Path) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(args)
        .env("SOFTHSM2_CONF", conf)
        .env("WARD_HSM_PIN", PIN)
        .env("WARD_LOG", "trace")
        .output()
        .unwrap();
    let mut all = std::fs::read(log).unwrap_or_default();
    all.extend_from_slice(&out.stderr);
    std::fs::write(log, all).unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn hsm_pin_and_tokens_never_reach_argv_or_logs() {
    let dir = tempfile::tempdir().unwrap();
    // (softhsm2-util takes the PIN as an argument: it has exited before any scan.)
    let conf = common::hsm::init_token(dir.path(), "ward-sec", PIN);
    let uri = |o: &str| common::hsm::key_uri("ward-sec", o);
    let config = dir.path().join("ca.toml");
    std::fs::write(
        &config,
        format!(
            "trust_domain = \"corp.example\"\ndatabase = \"ca.db\"\n[keys]\nroot = \"{}\"\nissuing = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n",
            uri("root"),
            uri("issuing")
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let log = dir.path().join("all.log");
    ward(&conf, &["ca", "init", "--config", cfg], &log);
    let created = ward(
        &conf,
        &[
            "ca",
            "token",
            "create",
            "--config",
            cfg,
            "--identity",
            "spiffe://corp.example/ns/a/sa/b",
            "--ttl",
            "10m",
        ],
        &log,
    );
    let token = String::from_utf8(created.stdout)
        .unwrap()
        .trim()
        .to_string();
    assert!(token.starts_with("ward1."), "{token}");
    let secret = token.rsplit('.').next().unwrap().to_string();

    let serve_log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["ca", "serve", "--config", cfg])
        .env("SOFTHSM2_CONF", &conf)
        .env("WARD_HSM_PIN", PIN)
        .env("WARD_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(serve_log)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(serve.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .split_whitespace()
        .nth(1)
        .and_then(|a| a.rsplit(':').next())
        .unwrap_or("0")
        .to_string();
    // Make it work while we look: bundle, CRL, and an enrolment that fails
    // (a garbage CSR) but carries the token.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut scans = 0;
    let mut hits = Vec::new();
    while Instant::now() < deadline && scans < 5 {
        for path in ["/v1/bundle", "/v1/crl"] {
            let _ = Command::new("curl")
                .args([
                    "-sk",
                    "--max-time",
                    "5",
                    &format!("https://127.0.0.1:{port}{path}"),
                ])
                .output();
        }
        let body = format!(r#"{{"token":"{token}","csr":"not a csr"}}"#);
        let _ = Command::new("curl")
            .args([
                "-sk",
                "--max-time",
                "5",
                "-H",
                "content-type: application/json",
                "-o",
                "/dev/null",
                "--data-binary",
                "@-",
            ])
            .arg(format!("https://127.0.0.1:{port}/v1/enroll"))
            .stdin(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(body.as_bytes())?;
                c.wait()
            });
        hits.extend(cmdlines_containing(PIN));
        scans += 1;
    }
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(hits.is_empty(), "PIN on a command line: {hits:?}");
    let mut logs = std::fs::read_to_string(&log).unwrap();
    logs.push_str(&std::fs::read_to_string(dir.path().join("serve.log")).unwrap());
    assert!(logs.len() > 100, "no logs captured");
    assert!(!logs.contains(PIN), "PIN in the logs");
    assert!(!logs.contains(&secret), "token secret in the logs");
    eprintln!(
        "secrets: {scans} /proc scans, {} log bytes, no PIN, no token",
        logs.len()
    );
}

#[test]
fn agent_refuses_a_key_file_others_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    for mode in [0o644, 0o640, 0o604, 0o666] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let e = ward_agent::sink::read_key(&key).unwrap_err();
        assert!(
            matches!(e, ward_agent::Error::KeyPermissions { .. }),
            "{mode:o}: {e}"
        );
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(ward_agent::sink::read_key(&key).is_ok());
}
