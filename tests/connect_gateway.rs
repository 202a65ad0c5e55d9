//! `ward connect` end to end with real processes: the real CA (`ward ca
//! serve` on SoftHSM2) issues the gateway's server certificate and the
//! agent's client certificate, the real gateway (`ward gateway run`) has a
//! TCP route to a line-echo server, and a plain TCP client talks to the
//! echo server through `ward connect`. The policy first allows, then
//! denies (reload with SIGHUP). On the way: a renewal by `ward agent run`
//! is picked up by the next tunnel without restarting `ward connect`, a
//! gateway restart only fails the tunnels made while it is down, closing
//! the local client closes the tunnel promptly, and a second identity
//! whose CA is unreachable fails without holding up the first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::agent::*;
use common::gateway::decisions;

const LAPTOP: &str = "spiffe://corp.example/ns/dev/sa/laptop";
const OTHER: &str = "spiffe://corp.example/ns/dev/sa/other";

const ALLOW: &str = r#"{
  "Version": "2026-11-01",
  "Statement": [
    {"Sid": "LaptopUsesDb", "Effect": "Allow",
     "Principal": {"Spiffe": "spiffe://corp.example/ns/dev/sa/laptop"},
     "Action": "tcp:Connect", "Resource": "route/db"}
  ]
}"#;

const DENY: &str = r#"{
  "Version": "2026-11-01",
  "Statement": [
    {"Sid": "Lockdown", "Effect": "Deny", "Principal": "*",
     "Action": "tcp:*", "Resource": "route/*"}
  ]
}"#;

/// A line-echo server: answers every line with `echo: <line>`, counts
/// connections it has seen closed.
fn echo_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let closed = std::sync::Arc::new(AtomicUsize::new(0));
    let c = closed.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let c = c.clone();
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                for line in BufReader::new(s).lines() {
                    let Ok(line) = line else { break };
                    if writeln!(w, "echo: {line}").is_err() {
                        break;
                    }
                }
                c.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (port, closed)
}

struct Gateway {
    proc: Proc,
    port: u16,
    admin: u16,
}

fn admin_ready(admin: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", admin)) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = s.write_all(b"GET /readyz HTTP/1.0\r\nHost: admin\r\n\r\n");
    let mut t = String::new();
    let _ = s.read_to_string(&mut t);
    t.starts_with("HTTP/1.1 200") || t.starts_with("HTTP/1.0 200")
}

fn start_gateway(w: &World, port: u16, admin: u16) -> Gateway {
    let proc = w.spawn(
        "ward gateway run",
        &[
            "gateway",
            "run",
            "--config",
            w.path("gateway.toml").to_str().unwrap(),
        ],
        "gateway.log",
    );
    let root = w.dir.path().to_path_buf();
    wait_until(
        "the gateway to be ready",
        Duration::from_secs(30),
        || admin_ready(admin),
        || std::fs::read_to_string(root.join("gateway.log")).unwrap_or_default(),
    );
    Gateway { proc, port, admin }
}

/// A local client of `ward connect`.
struct Client {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Client {
    fn open(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }

    /// Sends a line and returns the answer line, or None on EOF, reset or
    /// timeout.
    fn ask(&mut self, line: &str) -> Option<String> {
        if writeln!(self.w, "{line}").is_err() {
            return None;
        }
        let mut answer = String::new();
        match self.r.read_line(&mut answer) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(answer.trim_end().to_string()),
        }
    }

    /// True when the tunnel has been closed from the far side (EOF or
    /// reset) within `within`.
    fn closed_within(&mut self, within: Duration) -> bool {
        self.r.get_ref().set_read_timeout(Some(within)).unwrap();
        let mut buf = String::new();
        match self.r.read_line(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }
}

#[test]
fn connect_carries_a_line_protocol_through_the_gateway_until_policy_denies_it() {
    let mut w = World::new("connect", "45s");

    // The gateway's server certificate, issued offline by the same CA.
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    std::fs::write(w.path("gw.csr"), csr).unwrap();
    std::fs::write(w.path("gw.key"), key.serialize_pem()).unwrap();
    w.ward_ok(&[
        "ca",
        "issue",
        "--config",
        w.ca_config.to_str().unwrap(),
        "--csr",
        w.path("gw.csr").to_str().unwrap(),
        "--identity",
        "spiffe://corp.example/gateway",
        "--profile",
        "server",
        "--dns",
        "db.test",
        "--ttl",
        "24h",
        "--out",
        w.path("gw.pem").to_str().unwrap(),
    ]);
    w.start_ca();

    // The laptop enrols.
    let token = w.token_file(LAPTOP, "laptop.token");
    let out = w.enroll(&token, &w.path("laptop"), &w.fingerprint);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A second identity whose CA address is dead: it must fail on its own
    // without holding up the laptop's renewals (identities are independent).
    let token = w.token_file(OTHER, "other.token");
    let out = w.enroll(&token, &w.path("other"), &w.fingerprint);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        w.path("agent.toml"),
        format!(
            "[identity.laptop]\nca = \"{}\"\ndir = \"laptop\"\nretry_max_secs = 4\n\n\
             [identity.other]\nca = \"https://localhost:{}\"\ndir = \"other\"\nretry_max_secs = 4\n",
            w.ca_url(),
            free_port()
        ),
    )
    .unwrap();

    // The gateway, with a TCP route to the echo server.
    let (echo, echo_closed) = echo_server();
    let gw_port = free_port();
    let admin = free_port();
    std::fs::create_dir(w.path("policy")).unwrap();
    std::fs::write(w.path("policy/main.json"), ALLOW).unwrap();
    std::fs::write(
        w.path("gateway.toml"),
        format!(
            r#"listen = "127.0.0.1:{gw_port}"
admin_listen = "127.0.0.1:{admin}"
trust_domain = "{TD}"
trust_bundle = "root.pem"
cert = "gw.pem"
key = "gw.key"
policy_dir = "policy"
decision_log = "decisions.jsonl"
reload_poll_secs = 1

[[tcp_routes]]
name = "db"
sni = "db.test"
upstream = "127.0.0.1:{echo}"
"#
        ),
    )
    .unwrap();
    let mut gw = start_gateway(&w, gw_port, admin);

    // ward connect, on a port it picks and prints.
    let mut connect = w.spawn(
        "ward connect",
        &[
            "connect",
            "--gateway",
            &format!("127.0.0.1:{gw_port}"),
            "--sni",
            "db.test",
            "--listen",
            "127.0.0.1:0",
            "--config",
            w.path("agent.toml").to_str().unwrap(),
            "--identity",
            "laptop",
        ],
        "connect.log",
    );
    let stdout = connect.child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("ward connect did not start:\n{}", w.log("connect.log")));
    let local: u16 = line
        .trim()
        .strip_prefix("listening on 127.0.0.1:")
        .unwrap_or_else(|| panic!("{line}"))
        .parse()
        .unwrap();
    let root = w.dir.path().to_path_buf();
    let read = |n: &str| std::fs::read_to_string(root.join(n)).unwrap_or_default();
    let logs = || read("connect.log") + &read("gateway.log") + &read("agent.log");

    // ---- allowed: a real conversation, several lines, one tunnel.
    let mut c = Client::open(local);
    assert_eq!(c.ask("hello").as_deref(), Some("echo: hello"), "{}", logs());
    assert_eq!(c.ask("second line").as_deref(), Some("echo: second line"));
    let first_serial = current(&w.path("laptop")).unwrap().info.serial;
    let d = decisions(&w.path("decisions.jsonl"));
    let allow = d.iter().find(|l| l["route"] == "db").unwrap();
    assert_eq!(allow["result"], "Allow");
    assert_eq!(allow["principal"], LAPTOP);
    assert_eq!(allow["serial"], first_serial.as_str());

    // Closing the local client closes the tunnel up to the upstream promptly.
    let closed_before = echo_closed.load(std::sync::atomic::Ordering::SeqCst);
    drop(c);
    wait_until(
        "the upstream connection to close after the local client closed",
        Duration::from_secs(5),
        || echo_closed.load(std::sync::atomic::Ordering::SeqCst) > closed_before,
        logs,
    );

    // ---- a renewal by the agent is used by the next tunnel, no restart.
    let cfg = w.path("agent.toml");
    let mut agent = w.spawn(
        "ward agent run",
        &["agent", "run", "--config", cfg.to_str().unwrap()],
        "agent.log",
    );
    wait_until(
        "a renewal",
        Duration::from_secs(40),
        || current(&w.path("laptop")).is_ok_and(|p| p.info.serial != first_serial),
        logs,
    );
    wait_until(
        "the other identity to fail on its own",
        Duration::from_secs(30),
        || {
            std::fs::read(w.path("other/state.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["failures"].as_u64())
                .is_some_and(|n| n >= 1)
        },
        logs,
    );
    agent.kill();
    let renewed = current(&w.path("laptop")).unwrap().info.serial;
    let mut c = Client::open(local);
    assert_eq!(
        c.ask("after renewal").as_deref(),
        Some("echo: after renewal"),
        "{}",
        logs()
    );
    let last = decisions(&w.path("decisions.jsonl")).pop().unwrap();
    assert_eq!(
        last["serial"],
        renewed.as_str(),
        "the tunnel used the renewed certificate"
    );
    drop(c);

    // ---- the gateway restarts: tunnels made while it is down fail
    // cleanly, and the next one after it is back works.
    gw.proc.kill();
    let mut down = Client::open(local);
    assert_eq!(down.ask("anyone?"), None);
    gw = start_gateway(&w, gw.port, gw.admin);
    let mut c = Client::open(local);
    assert_eq!(c.ask("back").as_deref(), Some("echo: back"), "{}", logs());
    assert!(connect.exited().is_none(), "ward connect died:\n{}", logs());

    // ---- the policy now denies: the open tunnel is closed by the
    // gateway's re-check, and a new one gets no answer.
    let tmp = w.path("policy/.main.json.tmp");
    std::fs::write(&tmp, DENY).unwrap();
    std::fs::rename(&tmp, w.path("policy/main.json")).unwrap();
    gw.proc.signal("HUP");
    let t = Instant::now();
    assert!(
        c.closed_within(Duration::from_secs(15)),
        "open tunnel not closed:\n{}",
        logs()
    );
    assert!(t.elapsed() < Duration::from_secs(15));
    let mut denied = Client::open(local);
    assert_eq!(denied.ask("let me in"), None, "{}", logs());
    wait_until(
        "the deny decision",
        Duration::from_secs(5),
        || {
            decisions(&w.path("decisions.jsonl"))
                .iter()
                .any(|l| l["route"] == "db" && l["result"] == "Deny")
        },
        logs,
    );
    assert!(read("connect.log").contains("tunnel"), "{}", logs());
}
