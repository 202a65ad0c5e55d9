//! Support for the HTTP/3 gateway tests (`tests/gateway_h3.rs`): an rcgen PKI (root → intermediate
//! → leaves, a CRL from the intermediate), a counting HTTP/1.1 upstream and
//! a real `ward gateway run` process on a port free on both TCP and UDP.
//!
//! The PKI and upstream are a trimmed copy of the private helpers of
//! `tests/gateway_e2e.rs` (which belongs to the TCP gateway's tests and
//! keeps its own copy). Only 127.0.0.1; every wait is bounded; the gateway
//! process is killed on drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use time::OffsetDateTime;

pub const TD: &str = "corp.example";
pub const CLIENT: &str = "spiffe://corp.example/ns/test/sa/client";
pub const OTHER: &str = "spiffe://corp.example/ns/test/sa/other";

fn serial() -> SerialNumber {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b[0] = (b[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&b)
}

fn ca_params(cn: &str, path_len: Option<u8>) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = match path_len {
        Some(n) => IsCa::Ca(BasicConstraints::Constrained(n)),
        None => IsCa::Ca(BasicConstraints::Unconstrained),
    };
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.serial_number = Some(serial());
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::from_secs(3600);
    p.not_after = now + Duration::from_secs(86400);
    p
}

/// How a leaf differs from a good client certificate.
#[derive(Clone)]
pub struct Leaf {
    pub sans: Vec<SanType>,
    pub eku: Vec<ExtendedKeyUsagePurpose>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

pub fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

impl Leaf {
    pub fn client(id: &str) -> Leaf {
        let now = OffsetDateTime::now_utc();
        Leaf {
            sans: vec![uri(id)],
            eku: vec![ExtendedKeyUsagePurpose::ClientAuth],
            not_before: now - Duration::from_secs(60),
            not_after: now + Duration::from_secs(3600),
        }
    }
}

pub struct Pki {
    dir: PathBuf,
    inter: CertifiedIssuer<'static, KeyPair>,
    other_root: CertifiedIssuer<'static, KeyPair>,
    revoked: Vec<SerialNumber>,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let root = CertifiedIssuer::self_signed(
            ca_params("ward test root", None),
            KeyPair::generate().unwrap(),
        )
        .unwrap();
        let inter = CertifiedIssuer::signed_by(
            ca_params("ward test issuing", Some(0)),
            KeyPair::generate().unwrap(),
            &root,
        )
        .unwrap();
        let other_root = CertifiedIssuer::self_signed(
            ca_params("someone else's root", None),
            KeyPair::generate().unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join("root.pem"), root.pem()).unwrap();
        let pki = Pki {
            dir: dir.to_path_buf(),
            inter,
            other_root,
            revoked: Vec::new(),
        };
        pki.issue_server();
        pki.write_crl();
        pki
    }

    /// (Re)issues the gateway's own certificate (`server.pem`/`.key`).
    pub fn issue_server(&self) -> SerialNumber {
        let now = OffsetDateTime::now_utc();
        self.issue(
            "server",
            &Leaf {
                sans: vec![
                    SanType::DnsName("app.test".try_into().unwrap()),
                    SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])),
                    uri("spiffe://corp.example/gateway"),
                ],
                eku: vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
                not_before: now - Duration::from_secs(60),
                not_after: now + Duration::from_secs(86400),
            },
            false,
        )
    }

    /// Writes `<name>.pem` (leaf + intermediate) and `<name>.key`; returns
    /// the serial.
    pub fn issue(&self, name: &str, leaf: &Leaf, foreign: bool) -> SerialNumber {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.use_authority_key_identifier_extension = true;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = leaf.eku.clone();
        p.subject_alt_names = leaf.sans.clone();
        p.not_before = leaf.not_before;
        p.not_after = leaf.not_after;
        let s = serial();
        p.serial_number = Some(s.clone());
        let key = KeyPair::generate().unwrap();
        let (cert, chain) = if foreign {
            (p.signed_by(&key, &self.other_root).unwrap(), String::new())
        } else {
            (p.signed_by(&key, &self.inter).unwrap(), self.inter.pem())
        };
        std::fs::write(
            self.dir.join(format!("{name}.pem")),
            format!("{}{}", cert.pem(), chain),
        )
        .unwrap();
        std::fs::write(self.dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        s
    }

    pub fn write_crl(&self) {
        let now = OffsetDateTime::now_utc();
        let crl = CertificateRevocationListParams {
            this_update: now - Duration::from_secs(60),
            next_update: now + Duration::from_secs(3600),
            crl_number: serial(),
            issuing_distribution_point: None,
            revoked_certs: self
                .revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: s.clone(),
                    revocation_time: now - Duration::from_secs(30),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.inter)
        .unwrap();
        let tmp = self.dir.join("inter.crl.tmp");
        std::fs::write(&tmp, crl.pem().unwrap()).unwrap();
        std::fs::rename(tmp, self.dir.join("inter.crl")).unwrap();
    }

    pub fn revoke(&mut self, s: SerialNumber) {
        self.revoked.push(s);
        self.write_crl();
    }
}

/// A tiny HTTP/1.1 upstream: counts requests and answers with the request
/// head (and body) it received as the body; `GET /stream` streams for 20 s.
pub struct Upstream {
    pub port: u16,
    count: Arc<AtomicUsize>,
}

fn read_head(r: &mut BufReader<TcpStream>) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        if line == "\r\n" || line == "\n" {
            return Some(head);
        }
        head.push_str(&line);
    }
}

impl Upstream {
    pub fn start() -> Upstream {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                let c = c.clone();
                std::thread::spawn(move || {
                    let mut w = s.try_clone().unwrap();
                    let mut r = BufReader::new(s);
                    while let Some(head) = read_head(&mut r) {
                        c.fetch_add(1, Ordering::SeqCst);
                        if head.starts_with("GET /stream") {
                            // A long streaming response: a chunk every
                            // 200 ms for 20 s.
                            let _ = w.write_all(
                                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n",
                            );
                            for _ in 0..100 {
                                if w.write_all(b"5\r\ntick\n\r\n").is_err() {
                                    return;
                                }
                                std::thread::sleep(Duration::from_millis(200));
                            }
                            let _ = w.write_all(b"0\r\n\r\n");
                            continue;
                        }
                        let len = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        let mut body = vec![0; len];
                        if r.read_exact(&mut body).is_err() {
                            return;
                        }
                        let mut reply = head.clone();
                        reply.push_str(&String::from_utf8_lossy(&body));
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{reply}",
                            reply.len()
                        );
                        if w.write_all(resp.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Upstream { port, count }
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// A port free on both TCP and UDP at 127.0.0.1: bind TCP to port 0, then
/// UDP to the same port; retry on conflict.
pub fn free_tcp_udp_port() -> u16 {
    for _ in 0..50 {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free on both TCP and UDP after 50 tries");
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub const ALLOW_POLICY: &str = r#"{
  "Version": "2026-11-01",
  "Statement": [
    {"Sid": "ClientUsesApp", "Effect": "Allow",
     "Principal": {"Spiffe": "spiffe://corp.example/ns/test/sa/client"},
     "Action": ["http:GET", "http:POST"], "Resource": "route/app/*"},
    {"Sid": "NobodyAdmin", "Effect": "Deny", "Principal": "*",
     "Action": "http:*", "Resource": "route/app/admin*"}
  ]
}"#;

pub const DENY_ALL_POLICY: &str = r#"{
  "Version": "2026-11-01",
  "Statement": [
    {"Sid": "Lockdown", "Effect": "Deny", "Principal": "*",
     "Action": ["http:*", "tcp:*"], "Resource": "route/*"}
  ]
}"#;

pub struct Gateway {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub admin: u16,
    pub pki: Pki,
    pub upstream: Upstream,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// Starts a gateway with one HTTP route `app` (host `app.test`) and
    /// `extra` appended to the config; `prepare` runs on the PKI before the
    /// gateway starts (to issue or revoke certificates).
    pub fn start(extra: &str, prepare: impl Fn(&mut Pki)) -> Gateway {
        let mut last = String::new();
        // The port is free when chosen but another process may take it
        // before the gateway binds it: retry a few times.
        for _ in 0..3 {
            match Gateway::try_start(extra, &prepare) {
                Ok(gw) => return gw,
                Err(log) => last = log,
            }
        }
        panic!("gateway did not start:\n{last}");
    }

    fn try_start(extra: &str, prepare: &impl Fn(&mut Pki)) -> Result<Gateway, String> {
        let dir = tempfile::tempdir().unwrap();
        let mut pki = Pki::new(dir.path());
        pki.issue("client", &Leaf::client(CLIENT), false);
        pki.issue("other", &Leaf::client(OTHER), false);
        prepare(&mut pki);
        let upstream = Upstream::start();
        let port = free_tcp_udp_port();
        let admin = free_port();
        std::fs::create_dir(dir.path().join("policy")).unwrap();
        std::fs::write(dir.path().join("policy/main.json"), ALLOW_POLICY).unwrap();
        let config = format!(
            r#"
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"
trust_domain = "{TD}"
trust_bundle = "root.pem"
cert = "server.pem"
key = "server.key"
crls = ["inter.crl"]
policy_dir = "policy"
decision_log = "decisions.jsonl"
reload_poll_secs = 1

{extra}

[[http_routes]]
name = "app"
host = "app.test"
upstream = "http://127.0.0.1:{up}"
"#,
            up = upstream.port,
        );
        std::fs::write(dir.path().join("gateway.toml"), config).unwrap();
        let stderr = std::fs::File::create(dir.path().join("gateway.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ward"))
            .args([
                "--log-level",
                "info,ward_gateway=debug",
                "gateway",
                "run",
                "--config",
            ])
            .arg(dir.path().join("gateway.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut gw = Gateway {
            child,
            dir,
            port,
            admin,
            pki,
            upstream,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if gw.child.try_wait().unwrap().is_some() {
                return Err(gw.log());
            }
            if gw.admin_get("/readyz").0 == 200 {
                return Ok(gw);
            }
            if Instant::now() > deadline {
                return Err(format!("not ready in 30 s:\n{}", gw.log()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("gateway.log")).unwrap_or_default()
    }

    pub fn decisions(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path("decisions.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Plain HTTP/1.0 GET on the admin listener: (status, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.admin)) else {
            return (0, String::new());
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: admin\r\n\r\n");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|x| x.1)
            .unwrap_or("")
            .to_string();
        (status, body)
    }

    /// The value of one metric sample (0 if absent).
    pub fn metric(&self, name_and_labels: &str) -> f64 {
        let (_, body) = self.admin_get("/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    pub fn sighup(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// SIGTERM, then waits up to `limit` for the process to exit; `true`
    /// if it did.
    pub fn terminate_within(&mut self, limit: Duration) -> bool {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn write_policy(&self, text: &str) {
        let tmp = self.path("policy/.main.json.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.path("policy/main.json")).unwrap();
        self.sighup();
    }
}

/// Polls `f` for up to 15 s.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
