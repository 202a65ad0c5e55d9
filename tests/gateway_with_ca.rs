//! The gateway with certificates from the real ward CA (SoftHSM2-backed):
//! the CA issues the gateway's and the client's certificates, the gateway
//! fetches the CA's CRL on an interval, and a certificate revoked through
//! the CA's API is refused at the next handshake without touching the
//! gateway.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::free_port;
use ward_ca::client::{CaClient, RootPin};

const PIN: &str = "11223344";
const CLIENT: &str = "spiffe://corp.example/ns/test/sa/client";

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn ward(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(args)
        .env("SOFTHSM2_CONF", dir.join("softhsm2.conf"))
        .env("WARD_HSM_PIN", PIN)
        .env("WARD_LOG", "warn")
        .output()
        .unwrap()
}

fn wait_until(what: &str, f: impl FnMut() -> bool) {
    common::wait_until(what, Duration::from_secs(20), f);
}

/// A CSR and its key, both PEM.
fn csr(dir: &Path, name: &str) -> PathBuf {
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    let path = dir.join(format!("{name}.csr"));
    std::fs::write(&path, csr).unwrap();
    path
}

/// An upstream that answers every request with 200 and closes.
fn upstream() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 2 {
                    line.clear();
                }
                let _ = w.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n",
                );
            });
        }
    });
    port
}

fn metric(admin: u16, name: &str) -> f64 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", admin)) else {
        return -1.0;
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = write!(s, "GET /metrics HTTP/1.0\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn certificates_from_the_ca_and_a_revocation_through_its_api() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::hsm::init_token(d, "ward-gw", PIN);
    let uri = |o: &str| common::hsm::key_uri("ward-gw", o);
    let ca_toml = d.join("ca.toml");
    std::fs::write(
        &ca_toml,
        format!(
            "trust_domain = \"corp.example\"\ndatabase = \"ca.db\"\n[keys]\nroot = \"{}\"\nissuing = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n",
            uri("root"),
            uri("issuing")
        ),
    )
    .unwrap();
    let ca = ca_toml.to_str().unwrap();
    ok(&ward(
        d,
        &[
            "ca",
            "init",
            "--config",
            ca,
            "--root-out",
            d.join("root.pem").to_str().unwrap(),
        ],
    ));

    // Offline issue for the gateway (serverAuth via --dns) and a client.
    let gw_csr = csr(d, "gw");
    ok(&ward(
        d,
        &[
            "ca",
            "issue",
            "--config",
            ca,
            "--csr",
            gw_csr.to_str().unwrap(),
            "--identity",
            "spiffe://corp.example/ward/gateway",
            "--dns",
            "app.test",
            "--out",
            d.join("gw.pem").to_str().unwrap(),
        ],
    ));
    let client_csr = csr(d, "client");
    ok(&ward(
        d,
        &[
            "ca",
            "issue",
            "--config",
            ca,
            "--csr",
            client_csr.to_str().unwrap(),
            "--identity",
            CLIENT,
            "--out",
            d.join("client.pem").to_str().unwrap(),
        ],
    ));

    let mut server = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["ca", "serve", "--config", ca])
        .env("SOFTHSM2_CONF", d.join("softhsm2.conf"))
        .env("WARD_HSM_PIN", PIN)
        .env("WARD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _server = Kill(server);
    // "serving https://127.0.0.1:PORT root sha256:…"
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(parts.first(), Some(&"serving"), "{line}");
    let port = parts[1].rsplit(':').next().unwrap();
    let ca_url = format!("https://localhost:{port}");
    let root_fp = parts[3].to_string();

    std::fs::create_dir(d.join("policy")).unwrap();
    std::fs::write(
        d.join("policy/main.json"),
        format!(
            r#"{{"Version": "2026-11-01", "Statement": [{{"Sid": "ClientUsesApp", "Effect": "Allow",
               "Principal": {{"Spiffe": "{CLIENT}"}}, "Action": "http:GET", "Resource": "route/app/*"}}]}}"#
        ),
    )
    .unwrap();
    let (gw_port, admin) = (free_port(), free_port());
    std::fs::write(
        d.join("gateway.toml"),
        format!(
            r#"
listen = "127.0.0.1:{gw_port}"
admin_listen = "127.0.0.1:{admin}"
trust_domain = "corp.example"
trust_bundle = "root.pem"
cert = "gw.pem"
key = "gw.key"
policy_dir = "policy"

[crl_fetch]
url = "{ca_url}"
root_pin = "{root_fp}"
interval_secs = 1
file = "ca.crl"

[[http_routes]]
name = "app"
host = "app.test"
upstream = "http://127.0.0.1:{up}"
"#,
            up = upstream()
        ),
    )
    .unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["gateway", "check", "--config"])
        .arg(d.join("gateway.toml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let log = std::fs::File::create(d.join("gateway.log")).unwrap();
    let mut gw = Kill(
        Command::new(env!("CARGO_BIN_EXE_ward"))
            .args(["gateway", "run", "--config"])
            .arg(d.join("gateway.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_until("gateway ready", || {
        if let Some(st) = gw.0.try_wait().unwrap() {
            panic!(
                "gateway exited {st}: {}",
                std::fs::read_to_string(d.join("gateway.log")).unwrap()
            );
        }
        metric(admin, "ward_gateway_active_connections") >= 0.0
    });
    assert!(d.join("ca.crl").exists(), "CRL fetched at start");

    let curl = || {
        Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "10",
            ])
            .arg("--cacert")
            .arg(d.join("root.pem"))
            .arg("--resolve")
            .arg(format!("app.test:{gw_port}:127.0.0.1"))
            .arg("--cert")
            .arg(d.join("client.pem"))
            .arg("--key")
            .arg(d.join("client.key"))
            .arg(format!("https://app.test:{gw_port}/hello"))
            .output()
            .unwrap()
    };
    let first = curl();
    assert_eq!(
        String::from_utf8_lossy(&first.stdout),
        "200",
        "{}\n{}",
        String::from_utf8_lossy(&first.stderr),
        std::fs::read_to_string(d.join("gateway.log")).unwrap()
    );

    // The client revokes its own certificate through the CA's API (mTLS);
    // the gateway picks the new CRL up by itself.
    let serial = ok(&Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(d.join("client.pem"))
        .output()
        .unwrap());
    let serial = serial
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase();
    let chain = std::fs::read_to_string(d.join("client.pem")).unwrap();
    let key = std::fs::read_to_string(d.join("client.key")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = CaClient::new(&ca_url, RootPin::Fingerprint(root_fp.clone()))
            .unwrap()
            .with_client_cert(&chain, &key)
            .unwrap();
        client.revoke(&serial, Some("keyCompromise")).await.unwrap();
    });
    wait_until("revoked certificate refused", || curl().stdout != b"200");
    let out = curl();
    assert!(!out.status.success(), "revoked certificate let through");
    assert!(
        metric(
            admin,
            "ward_gateway_handshakes_total{reason=\"revoked\",result=\"failed\"}"
        ) >= 1.0
    );
    assert!(metric(admin, "ward_gateway_reloads_total{part=\"crl_fetch\"}") >= 1.0);
}
