//! The whole system as separate processes, driven by clients nobody here
//! wrote: a CA on SoftHSM2 (`ward ca serve`), agents enrolled with one-time
//! tokens and renewing (`ward agent enroll`, `ward agent run`) for the
//! gateway and for a client service, the gateway (`ward gateway run`) and an
//! upstream; then curl (HTTP/1.1 and HTTP/2), `openssl s_client`, Python
//! `requests` and `httpx` make allowed and denied calls. At the end the
//! transparency log verifies and the decision log holds exactly one line
//! per call, with the ids the clients saw.
//!
//! One scenario, set up once: the suite has to stay well inside CI's budget
//! on two cores.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::hsm::Hsm;
use common::{Proc, free_port, http_get, ok, wait_until};

const GATEWAY: &str = "spiffe://corp.example/ns/edge/sa/gateway";
const CLIENT: &str = "spiffe://corp.example/ns/shop/sa/frontend";

/// An upstream that answers 200 with the identity headers it received, one
/// request per connection.
fn upstream() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let mut headers = HashMap::new();
                let mut line = String::new();
                let _ = r.read_line(&mut line);
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) <= 2 {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                }
                let body = format!(
                    "identity={}\ndecision={}\n",
                    headers.get("x-ward-identity").cloned().unwrap_or_default(),
                    headers
                        .get("x-ward-decision-id")
                        .cloned()
                        .unwrap_or_default()
                );
                let _ = write!(
                    w,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

struct World {
    dir: PathBuf,
    hsm: Hsm,
}

impl World {
    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }

    fn ward_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(common::ward_bin());
        c.args(args)
            .current_dir(&self.dir)
            .envs(self.hsm.envs())
            .env("WARD_LOG", "info");
        c
    }

    fn ward(&self, args: &[&str]) -> String {
        let out = self.ward_cmd(args).output().unwrap();
        ok(&format!("ward {}", args.join(" ")), &out)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }
}

/// A one-time token in a 0600 file.
fn token(w: &World, identity: &str, dns: Option<&str>, file: &str) -> PathBuf {
    let mut args = vec![
        "ca",
        "token",
        "create",
        "--config",
        "ca.toml",
        "--identity",
        identity,
    ];
    if let Some(d) = dns {
        args.extend(["--dns", d]);
    }
    let secret = w.ward(&args);
    let path = w.path(file);
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    f.write_all(secret.trim().as_bytes()).unwrap();
    path
}

fn serial_of(pem_path: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(pem_path)
        .output()
        .unwrap();
    ok("openssl x509", &out)
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase()
}

/// What one client call saw.
#[derive(Debug)]
struct Seen {
    client: &'static str,
    status: u16,
    decision: String,
    body: String,
}

/// The decision id: the 403's header/body, or what the upstream echoed.
fn decision_in(text: &str) -> String {
    for line in text.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("decision=") {
            return v.to_string();
        }
        let lower = l.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("x-ward-decision-id:") {
            return v.trim().to_string();
        }
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(l)
            && let Some(id) = v["decision_id"].as_str()
        {
            return id.to_string();
        }
    }
    String::new()
}

fn curl(w: &World, port: u16, version: &str, path: &str) -> (Seen, Output) {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "10", version])
        .args(["-w", "\nstatus=%{http_code} version=%{http_version}\n"])
        .arg("--cacert")
        .arg(w.path("root.pem"))
        .arg("--cert")
        .arg(w.path("client/cert.pem"))
        .arg("--key")
        .arg(w.path("client/key.pem"))
        .arg("--resolve")
        .arg(format!("localhost:{port}:127.0.0.1"))
        .arg(format!("https://localhost:{port}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .lines()
        .find_map(|l| l.strip_prefix("status="))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let client = if version == "--http2" {
        "curl-h2"
    } else {
        "curl-h1"
    };
    (
        Seen {
            client,
            status,
            decision: decision_in(&text),
            body: text,
        },
        out,
    )
}

fn s_client(w: &World, port: u16, path: &str, with_cert: bool) -> (Seen, Output) {
    let mut cmd = Command::new("timeout");
    cmd.args(["15", "openssl", "s_client"])
        .args(["-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "localhost", "-alpn", "http/1.1"])
        .args(["-verify_return_error", "-quiet", "-ign_eof"])
        .arg("-CAfile")
        .arg(w.path("root.pem"));
    if with_cert {
        cmd.arg("-cert")
            .arg(w.path("client/cert.pem"))
            .arg("-key")
            .arg(w.path("client/key.pem"))
            .arg("-cert_chain")
            .arg(w.path("intermediate.pem"));
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    write!(
        child.stdin.take().unwrap(),
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        Seen {
            client: "openssl-s_client",
            status,
            decision: decision_in(&text),
            body: text,
        },
        out,
    )
}

const PY_REQUESTS: &str = r#"
import sys, requests
url, cert, key, ca = sys.argv[1:5]
r = requests.get(url, cert=(cert, key), verify=ca, timeout=10)
print("status=%d" % r.status_code)
print("x-ward-decision-id: %s" % r.headers.get("x-ward-decision-id", ""))
print(r.text)
"#;

const PY_HTTPX: &str = r#"
import sys, ssl, httpx
url, cert, key, ca = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
# .ci/run installs `h2`, so httpx speaks HTTP/2 here: a second,
# independent HTTP/2 client beside curl.
with httpx.Client(verify=ctx, http2=True, timeout=10) as c:
    r = c.get(url)
print("status=%d" % r.status_code)
print("version=%s" % r.http_version)
print("x-ward-decision-id: %s" % r.headers.get("x-ward-decision-id", ""))
print(r.text)
"#;

fn python(w: &World, port: u16, which: &'static str, path: &str) -> (Seen, Output) {
    let script = if which == "python-requests" {
        PY_REQUESTS
    } else {
        PY_HTTPX
    };
    let out = Command::new("timeout")
        .args(["20", "python3", "-c", script])
        .arg(format!("https://localhost:{port}{path}"))
        .arg(w.path("client/cert.pem"))
        .arg(w.path("client/key.pem"))
        .arg(w.path("root.pem"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .lines()
        .find_map(|l| l.strip_prefix("status="))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        Seen {
            client: which,
            status,
            decision: decision_in(&text),
            body: text,
        },
        out,
    )
}

#[test]
fn real_clients_through_ca_agents_and_gateway() {
    for tool in ["softhsm2-util", "curl", "openssl", "python3"] {
        assert!(common::have(tool), "{tool} is needed (.ci/run installs it)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let hsm = Hsm::new(&dir, "ward-e2e");
    let w = World { dir, hsm };

    // CA: keys in the token; 2-minute workload certificates (3 minutes of
    // life with the 1-minute backdate), so the agents renew about a minute
    // after enrolment: within this test, but after the calls below, which
    // must not race a certificate swap (a reader that opens cert.pem and
    // key.pem on either side of the swap sees a mismatched pair).
    let ca_port = free_port();
    std::fs::write(
        w.path("ca.toml"),
        format!(
            "trust_domain = \"corp.example\"\ndatabase = \"ca.db\"\n[keys]\nroot = \"{}\"\nissuing = \"{}\"\nlog = \"{}\"\n[server]\nlisten = \"127.0.0.1:{ca_port}\"\ndns_names = [\"localhost\"]\n[profiles]\nworkload_ttl = \"2m\"\n",
            w.hsm.uri("root"),
            w.hsm.uri("issuing"),
            w.hsm.uri("log")
        ),
    )
    .unwrap();
    w.ward(&[
        "ca",
        "init",
        "--config",
        "ca.toml",
        "--root-out",
        "root.pem",
    ]);
    let ca = Proc::spawn_lines(
        "ward ca serve",
        w.ward_cmd(&["ca", "serve", "--config", "ca.toml"]),
        &w.path("ca.log"),
    );
    let line = ca
        .line(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("CA did not start: {}", w.log("ca.log")));
    // "serving https://127.0.0.1:PORT root sha256:…"
    let root_fp = line
        .split_whitespace()
        .nth(3)
        .expect("fingerprint")
        .to_string();
    let ca_url = format!("https://localhost:{ca_port}");

    // Enrolment with one-time tokens, for the gateway and a client service.
    for (id, dns, name) in [
        (GATEWAY, Some("localhost"), "gateway"),
        (CLIENT, None, "client"),
    ] {
        let t = token(&w, id, dns, &format!("{name}.token"));
        let out = w.ward(&[
            "agent",
            "enroll",
            "--ca",
            &ca_url,
            "--fingerprint",
            &root_fp,
            "--token-file",
            t.to_str().unwrap(),
            "--out",
            name,
        ]);
        assert!(out.contains(id), "{out}");
        // A token is good for one enrolment only.
        let again = w
            .ward_cmd(&[
                "agent",
                "enroll",
                "--ca",
                &ca_url,
                "--fingerprint",
                &root_fp,
                "--token-file",
                t.to_str().unwrap(),
                "--out",
                &format!("{name}-again"),
            ])
            .output()
            .unwrap();
        assert!(!again.status.success(), "a used token enrolled again");
    }
    let chain = std::fs::read_to_string(w.path("client/cert.pem")).unwrap();
    let inter = chain
        .find("-----END CERTIFICATE-----")
        .map(|i| {
            chain[i + "-----END CERTIFICATE-----".len()..]
                .trim_start()
                .to_string()
        })
        .unwrap();
    std::fs::write(w.path("intermediate.pem"), inter).unwrap();
    let first_gw = serial_of(&w.path("gateway/cert.pem"));
    let first_client = serial_of(&w.path("client/cert.pem"));

    std::fs::write(
        w.path("agent.toml"),
        format!(
            "[identity.gateway]\nca = \"{ca_url}\"\ndir = \"gateway\"\nretry_max_secs = 5\n\n[identity.client]\nca = \"{ca_url}\"\ndir = \"client\"\nretry_max_secs = 5\n"
        ),
    )
    .unwrap();
    let _agent = Proc::spawn(
        "ward agent run",
        w.ward_cmd(&["agent", "run", "--config", "agent.toml"]),
        &w.path("agent.log"),
    );

    // Policy: the client may GET its orders; nobody may use the admin
    // route; POST on orders is denied explicitly.
    std::fs::create_dir(w.path("policies")).unwrap();
    std::fs::write(
        w.path("policies/shop.json"),
        format!(
            r#"{{"Version": "2026-11-01", "Statement": [
  {{"Sid": "FrontendReadsOrders", "Effect": "Allow", "Principal": {{"Spiffe": "{CLIENT}"}},
    "Action": ["http:GET", "http:HEAD"], "Resource": "route/orders/*"}},
  {{"Sid": "NoWritesToday", "Effect": "Deny", "Principal": "*",
    "Action": "http:POST", "Resource": "route/orders/*"}}
]}}"#
        ),
    )
    .unwrap();
    let (gw_port, admin) = (free_port(), free_port());
    let up = upstream();
    std::fs::write(
        w.path("gateway.toml"),
        format!(
            r#"listen = "127.0.0.1:{gw_port}"
admin_listen = "127.0.0.1:{admin}"
trust_domain = "corp.example"
trust_bundle = "root.pem"
cert = "gateway/cert.pem"
key = "gateway/key.pem"
policy_dir = "policies"
decision_log = "decisions.jsonl"
reload_poll_secs = 1

[crl_fetch]
url = "{ca_url}"
root_pin = "{root_fp}"
interval_secs = 5
file = "ca.crl"

[limits]
shutdown_grace_secs = 2

[[http_routes]]
name = "orders"
host = "localhost"
path_prefix = "/orders"
upstream = "http://127.0.0.1:{up}"

[[http_routes]]
name = "admin"
host = "localhost"
path_prefix = "/admin"
upstream = "http://127.0.0.1:{up}"
"#
        ),
    )
    .unwrap();
    let mut gw = Proc::spawn(
        "ward gateway run",
        w.ward_cmd(&["gateway", "run", "--config", "gateway.toml"]),
        &w.path("gateway.log"),
    );
    wait_until("gateway ready", Duration::from_secs(30), || {
        if let Some(st) = gw.exited() {
            panic!("gateway exited {st}: {}", w.log("gateway.log"));
        }
        http_get(admin, "/readyz").is_some_and(|(c, _)| c == 200)
    });

    // The calls: every client once allowed, once denied.
    let mut seen: Vec<(Seen, bool)> = Vec::new();
    let mut call = |(s, out): (Seen, Output), allowed: bool| {
        let want = if allowed { 200 } else { 403 };
        assert_eq!(
            s.status,
            want,
            "{}: {}\nstderr: {}\ngateway log: {}",
            s.client,
            s.body,
            String::from_utf8_lossy(&out.stderr),
            w.log("gateway.log")
        );
        assert_eq!(
            s.decision.len(),
            32,
            "{}: no decision id in {}",
            s.client,
            s.body
        );
        if allowed {
            assert!(
                s.body.contains(&format!("identity={CLIENT}")),
                "{}: upstream did not see the identity: {}",
                s.client,
                s.body
            );
        }
        seen.push((s, allowed));
    };
    let (h1, out) = curl(&w, gw_port, "--http1.1", "/orders/1");
    assert!(h1.body.contains("version=1.1"), "{}", h1.body);
    call((h1, out), true);
    call(curl(&w, gw_port, "--http1.1", "/admin/users"), false);
    let (h2, out) = curl(&w, gw_port, "--http2", "/orders/2");
    assert!(h2.body.contains("version=2"), "{}", h2.body);
    call((h2, out), true);
    call(curl(&w, gw_port, "--http2", "/admin/users"), false);
    call(s_client(&w, gw_port, "/orders/3", true), true);
    call(s_client(&w, gw_port, "/admin/x", true), false);
    call(python(&w, gw_port, "python-requests", "/orders/4"), true);
    call(python(&w, gw_port, "python-requests", "/admin/x"), false);
    let (httpx_seen, out) = python(&w, gw_port, "python-httpx", "/orders/5");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("version=HTTP/2"),
        "httpx did not use HTTP/2: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    call((httpx_seen, out), true);
    call(python(&w, gw_port, "python-httpx", "/admin/x"), false);

    // POST is denied by an explicit Deny (curl, HTTP/2).
    let out = Command::new("curl")
        .args([
            "-sS",
            "-i",
            "--http2",
            "--max-time",
            "10",
            "-X",
            "POST",
            "-d",
            "x=1",
        ])
        .arg("--cacert")
        .arg(w.path("root.pem"))
        .arg("--cert")
        .arg(w.path("client/cert.pem"))
        .arg("--key")
        .arg(w.path("client/key.pem"))
        .arg("--resolve")
        .arg(format!("localhost:{gw_port}:127.0.0.1"))
        .arg(format!("https://localhost:{gw_port}/orders/6"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.starts_with("HTTP/2 403"),
        "POST: {text}\ncurl {}: {}\ngateway log: {}\nagent log: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        w.log("gateway.log"),
        w.log("agent.log")
    );
    let post_id = decision_in(&text);
    call(
        (
            Seen {
                client: "curl-post",
                status: 403,
                decision: post_id,
                body: text,
            },
            out,
        ),
        false,
    );

    // No certificate: refused in the handshake, by curl and s_client alike,
    // and never reaches a decision.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(w.path("root.pem"))
        .arg("--resolve")
        .arg(format!("localhost:{gw_port}:127.0.0.1"))
        .arg(format!("https://localhost:{gw_port}/orders/1"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "curl without a certificate got in");
    let (s, _) = s_client(&w, gw_port, "/orders/1", false);
    assert_eq!(
        s.status, 0,
        "s_client without a certificate got in: {}",
        s.body
    );

    // Renewal: both agents renew (2-minute certificates), the gateway
    // serves its new certificate, and the client's new one is accepted.
    wait_until("both identities renewed", Duration::from_secs(150), || {
        serial_of(&w.path("gateway/cert.pem")) != first_gw
            && serial_of(&w.path("client/cert.pem")) != first_client
    });
    let new_gw = serial_of(&w.path("gateway/cert.pem"));
    wait_until(
        "gateway serves its renewed certificate",
        Duration::from_secs(30),
        || {
            let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "timeout 10 openssl s_client -connect 127.0.0.1:{gw_port} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -serial"
            ))
            .output()
            .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .trim_start_matches("serial=")
                .eq_ignore_ascii_case(&new_gw)
        },
    );
    call(curl(&w, gw_port, "--http2", "/orders/after-renewal"), true);

    // The decision log holds every call exactly once, with the ids and
    // results the clients saw.
    let log = w.log("decisions.jsonl");
    let requests: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "request")
        .collect();
    assert_eq!(requests.len(), seen.len(), "one decision per call:\n{log}");
    for (s, allowed) in &seen {
        let line = requests
            .iter()
            .find(|v| v["decision_id"] == s.decision.as_str())
            .unwrap_or_else(|| panic!("{}: decision {} not logged", s.client, s.decision));
        assert_eq!(line["principal"], CLIENT);
        assert_eq!(
            line["result"],
            if *allowed { "Allow" } else { "Deny" },
            "{}: {line}",
            s.client
        );
    }

    // The transparency log: every certificate (enrolments and renewals)
    // is in it, and it verifies against the key from the CA's bundle.
    let bundle = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(w.path("root.pem"))
        .arg("--resolve")
        .arg(format!("localhost:{ca_port}:127.0.0.1"))
        .arg(format!("{ca_url}/v1/bundle"))
        .output()
        .unwrap();
    let bundle: serde_json::Value = serde_json::from_str(&ok("GET /v1/bundle", &bundle)).unwrap();
    let b64 = bundle["log_public_key"].as_str().unwrap();
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    std::fs::write(w.path("log-key.pem"), pem).unwrap();
    let search = w.ward(&[
        "audit",
        "search",
        "--db",
        "ca.db",
        "--identity",
        CLIENT,
        "--json",
    ]);
    assert!(
        search.lines().count() >= 2,
        "enrolment and renewal logged:\n{search}"
    );
    let verify = w.ward(&[
        "audit",
        "verify",
        "--db",
        "ca.db",
        "--log-key",
        "log-key.pem",
    ]);
    assert!(verify.starts_with("ok"), "{verify}");

    gw.signal("TERM");
    let st = gw.wait(Duration::from_secs(20));
    assert!(st.success(), "gateway exit {st}");
}
