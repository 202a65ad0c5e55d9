//! The CA process SIGKILLed in the middle of a burst of enrolments
//! (issue 10): every certificate a client received is in the transparency
//! log with a valid inclusion proof, the whole log verifies, and the CA
//! serves again after a restart. (The log layer alone is crash-tested in
//! `ca/tests/translog_crash.rs`; this drives the real `ward ca serve`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;

const PIN: &str = "11223344";

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ward(conf: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(args)
        .env("SOFTHSM2_CONF", conf)
        .env("WARD_HSM_PIN", PIN)
        .env("WARD_LOG", "warn")
        .output()
        .unwrap()
}

fn serve(conf: &Path, cfg: &str) -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["ca", "serve", "--config", cfg])
        .env("SOFTHSM2_CONF", conf)
        .env("WARD_HSM_PIN", PIN)
        .env("WARD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .split_whitespace()
        .nth(1)
        .and_then(|a| a.rsplit(':').next())
        .unwrap()
        .to_string();
    (Killed(child), port)
}

#[test]
fn ca_killed_mid_burst_loses_no_issued_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let conf = common::hsm::init_token(dir.path(), "ward-kill", PIN);
    let uri = |o: &str| common::hsm::key_uri("ward-kill", o);
    let config = dir.path().join("ca.toml");
    let db = dir.path().join("ca.db");
    std::fs::write(
        &config,
        format!(
            "trust_domain = \"corp.example\"\ndatabase = \"{}\"\n[keys]\nroot = \"{}\"\nissuing = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n",
            db.display(),
            uri("root"),
            uri("issuing")
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    assert!(
        ward(&conf, &["ca", "init", "--config", cfg])
            .status
            .success()
    );
    let n = 24;
    let tokens: Vec<String> = (0..n)
        .map(|i| {
            let out = ward(
                &conf,
                &[
                    "ca",
                    "token",
                    "create",
                    "--config",
                    cfg,
                    "--identity",
                    &format!("spiffe://corp.example/ns/burst/sa/w{i}"),
                    "--ttl",
                    "10m",
                ],
            );
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        })
        .collect();
    let (server, port) = serve(&conf, cfg);
    let bundle = Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "5",
            &format!("https://127.0.0.1:{port}/v1/bundle"),
        ])
        .output()
        .unwrap();
    let bundle: serde_json::Value = serde_json::from_slice(&bundle.stdout).unwrap();
    let spki = base64::engine::general_purpose::STANDARD
        .decode(bundle["log_public_key"].as_str().unwrap())
        .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(spki);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for c in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(c).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    let log_key = dir.path().join("log.pub.pem");
    std::fs::write(&log_key, pem).unwrap();

    let issued = Arc::new(Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, token)| {
            let (issued, port) = (issued.clone(), port.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(25 * i as u64));
                let key = rcgen::KeyPair::generate().unwrap();
                let csr = rcgen::CertificateParams::default()
                    .serialize_request(&key)
                    .unwrap()
                    .pem()
                    .unwrap();
                let body = serde_json::json!({"token": token, "csr": csr}).to_string();
                let mut c = Command::new("curl")
                    .args([
                        "-sk",
                        "--max-time",
                        "10",
                        "-H",
                        "content-type: application/json",
                        "--data-binary",
                        "@-",
                    ])
                    .arg(format!("https://127.0.0.1:{port}/v1/enroll"))
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap();
                let _ = c.stdin.take().unwrap().write_all(body.as_bytes());
                let out = c.wait_with_output().unwrap();
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
                    && let Some(s) = v["serial"].as_str()
                {
                    issued.lock().unwrap().push(s.to_string());
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(25 * n as u64 * 2 / 3));
    drop(server); // SIGKILL mid-burst
    for w in workers {
        w.join().unwrap();
    }
    let issued = issued.lock().unwrap().clone();
    eprintln!(
        "ca kill -9: {} of {n} enrolments answered before the kill",
        issued.len()
    );
    for s in &issued {
        let out = ward(
            &conf,
            &[
                "audit",
                "prove",
                "--db",
                db.to_str().unwrap(),
                "--serial",
                s,
                "--log-key",
                log_key.to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "issued {s} is not provable: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = ward(
        &conf,
        &[
            "audit",
            "verify",
            "--db",
            db.to_str().unwrap(),
            "--log-key",
            log_key.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "log does not verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The CA comes back on the same database.
    let (_server, port) = serve(&conf, cfg);
    let again = Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("https://127.0.0.1:{port}/v1/bundle"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&again.stdout), "200");
}
