//! End-to-end tests of `ward gateway run`: a real gateway process, real
//! upstreams in the test, certificates made with rcgen (root →
//! intermediate → leaves, a CRL from the intermediate), and curl / openssl
//! s_client as independent clients. Only 127.0.0.1; every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rcgen::{ExtendedKeyUsagePurpose, SanType};
use time::OffsetDateTime;

mod common;

use common::free_port;
use common::gateway::{CountingUpstream, TcpRecorder, TestGateway, content_length, stream_ticks};
use common::h3::wait_until;
use common::pki::{CLIENT, Leaf, OTHER, Pki, TD, gateway_sans, uri};

// ---------------------------------------------------------- upstreams ----

/// The upstream of route `app`: counts requests and answers with the
/// request head it received as the body (keep-alive, Content-Length
/// bodies); a WebSocket upgrade is switched and echoed raw, `GET /stream`
/// streams for 30 s, `GET /slow` answers after 1.5 s.
fn start_upstream() -> CountingUpstream {
    CountingUpstream::start(echo_head)
}

fn echo_head(head: &str, r: &mut BufReader<TcpStream>, w: &mut TcpStream) -> bool {
    if head.to_ascii_lowercase().contains("upgrade: websocket") {
        // Not a real WebSocket: switch, then echo raw bytes.
        let _ = w.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
        );
        let _ = std::io::copy(r, w);
        return false;
    }
    let len = content_length(head);
    if head.starts_with("GET /stream") {
        // A long streaming response: a line every 100 ms.
        return stream_ticks(w, "", 300, Duration::from_millis(100));
    }
    if head.starts_with("GET /slow") {
        std::thread::sleep(Duration::from_millis(1500));
    }
    let mut body = vec![0; len];
    if r.read_exact(&mut body).is_err() {
        return false;
    }
    let resp = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nx-ward-identity: spoofed-by-upstream-is-fine\r\n\r\n{head}",
        head.len()
    );
    w.write_all(resp.as_bytes()).is_ok()
}

// ------------------------------------------------------------ gateway ----

const ALLOW_POLICY: &str = r#"{
  "Version": "2026-11-01",
  "Statement": [
    {"Sid": "ClientUsesApp", "Effect": "Allow",
     "Principal": {"Spiffe": "spiffe://corp.example/ns/test/sa/client"},
     "Action": ["http:GET", "http:POST"], "Resource": ["route/app/*", "route/down/*", "route/secure/*"]},
    {"Sid": "ClientUsesDb", "Effect": "Allow",
     "Principal": {"Spiffe": "spiffe://corp.example/ns/test/sa/client"},
     "Action": "tcp:Connect", "Resource": "route/db"},
    {"Sid": "ClientUsesLoop", "Effect": "Allow",
     "Principal": {"Spiffe": "spiffe://corp.example/ns/test/sa/client"},
     "Action": "http:GET", "Resource": "route/loop/*"},
    {"Sid": "GatewayUsesInner", "Effect": "Allow",
     "Principal": {"Spiffe": "spiffe://corp.example/gateway"},
     "Action": "http:GET", "Resource": "route/inner/*"},
    {"Sid": "NobodyAdmin", "Effect": "Deny", "Principal": "*",
     "Action": "http:*", "Resource": "route/app/admin*"}
  ]
}"#;

const CANDIDATE_POLICY: &str = r#"{
  "Version": "2026-11-01",
  "Statement": [
    {"Sid": "CandidateAllowsShadowed", "Effect": "Allow",
     "Principal": {"Spiffe": "spiffe://corp.example/ns/test/sa/client"},
     "Action": "http:GET", "Resource": "route/shadowed/*"}
  ]
}"#;

const DENY_ALL_POLICY: &str = r#"{
  "Version": "2026-11-01",
  "Statement": [
    {"Sid": "Lockdown", "Effect": "Deny", "Principal": "*",
     "Action": ["http:*", "tcp:*"], "Resource": "route/*"}
  ]
}"#;

/// The shared [`TestGateway`] (which it derefs to) with this file's
/// counting upstream.
struct Gateway {
    gw: TestGateway,
    upstream: CountingUpstream,
}

common::gateway::deref_to_test_gateway!(Gateway);

impl Gateway {
    fn start() -> Gateway {
        Gateway::start_with("", "", "")
    }

    /// Starts with extra top-level keys, `[limits]` keys and routes.
    fn start_with(top: &str, limits: &str, routes: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(
            dir.path(),
            "ward test root",
            "ward test issuing",
            gateway_sans(&[
                "app.test",
                "down.test",
                "db.test",
                "nowhere.test",
                "shadow.test",
                "secure.test",
                "loop.test",
            ]),
        );
        pki.issue_der("client", &Leaf::client(CLIENT), false);
        pki.issue_der("other", &Leaf::client(OTHER), false);
        let upstream = start_upstream();
        let echo = TcpRecorder::start().port;
        let dead = free_port();
        std::fs::create_dir(dir.path().join("policy")).unwrap();
        std::fs::create_dir(dir.path().join("candidate")).unwrap();
        std::fs::write(dir.path().join("candidate/main.json"), CANDIDATE_POLICY).unwrap();
        std::fs::write(
            dir.path().join("policy/groups.json"),
            format!(r#"{{"Groups": {{"testers": ["{CLIENT}"]}}}}"#),
        )
        .unwrap();
        let gw = TestGateway::builder(dir, pki, ALLOW_POLICY)
            .reload_poll_secs(1)
            .start(&format!(
                r#"{top}

[limits]
upstream_connect_timeout_secs = 2
{limits}

[[http_routes]]
name = "app"
host = "app.test"
upstream = "http://127.0.0.1:{up}"
forward_client_cert = true

[[http_routes]]
name = "down"
host = "down.test"
upstream = "http://127.0.0.1:{dead}"

[[tcp_routes]]
name = "db"
sni = "db.test"
upstream = "127.0.0.1:{echo}"

{routes}
"#,
                up = upstream.port,
                routes = routes.replace("{up}", &upstream.port.to_string()),
            ));
        Gateway { gw, upstream }
    }

    /// The decision log; unlike [`TestGateway::decisions`], a line that is
    /// not JSON fails the test (every line this gateway writes must parse).
    fn decisions(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path("decisions.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// curl with the named client certificate against `host` (resolved to
    /// the gateway); extra args before the URL(s).
    fn curl(&self, cert: Option<&str>, host: &str, extra: &[&str], paths: &[&str]) -> Output {
        let mut c = self.curl_command(cert, host);
        c.args(["--max-time", "10"]).args(extra);
        for p in paths {
            c.arg(self.url(host, p));
        }
        c.output().unwrap()
    }
}

/// (status, headers lowercased, body) from `curl -i` output.
fn parse_response(out: &Output) -> (u16, Vec<(String, String)>, String) {
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Request headers the upstream echoed back in the body (lowercased names).
fn echoed(body: &str) -> Vec<(String, String)> {
    body.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

fn verify_jwt(token: &str, jwks: &serde_json::Value) -> serde_json::Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let header: serde_json::Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("JWT kid is in the JWKS");
    let mut point = vec![4u8];
    point.extend(B64.decode(key["x"].as_str().unwrap()).unwrap());
    point.extend(B64.decode(key["y"].as_str().unwrap()).unwrap());
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &B64.decode(parts[2]).unwrap(),
        )
        .expect("JWT signature verifies against the JWKS");
    serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap()
}

// -------------------------------------------------------------- tests ----

#[test]
fn allowed_request_is_proxied_with_identity_and_a_jwt_that_verifies() {
    let gw = Gateway::start();
    let (_, jwks) = gw.admin_get("/.well-known/jwks.json");
    let jwks: serde_json::Value = serde_json::from_str(&jwks).unwrap();
    let leaf_der = {
        let pem = std::fs::read_to_string(gw.path("client.pem")).unwrap();
        let b64: String = pem
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    };
    let fp = B64.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &leaf_der,
    ));

    for version in ["--http1.1", "--http2"] {
        let before = gw.upstream.count();
        let out = gw.curl(
            Some("client"),
            "app.test",
            &[
                version,
                "-i",
                "-H",
                "X-Ward-Identity: spiffe://corp.example/ns/evil/sa/root",
                "-H",
                "x-ward-assertion: forged",
                "-H",
                "Client-Cert: :Zm9yZ2Vk:",
            ],
            &["/hello?x=1"],
        );
        assert!(
            out.status.success(),
            "{version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (status, headers, body) = parse_response(&out);
        assert_eq!(status, 200, "{version}: {body}");
        assert_eq!(gw.upstream.count(), before + 1);
        assert!(header(&headers, "x-ward-decision-id").is_some());
        let seen = echoed(&body);
        assert!(body.starts_with("GET /hello?x=1 HTTP/1.1"), "{body}");
        let ids: Vec<&str> = seen
            .iter()
            .filter(|(k, _)| k == "x-ward-identity")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(ids, [CLIENT], "spoofed identity must be replaced: {body}");
        let host = format!("app.test:{}", gw.port);
        assert_eq!(
            header(&seen, "host"),
            Some(host.as_str()),
            "client's Host kept"
        );
        let client_cert = format!(
            ":{}:",
            base64::engine::general_purpose::STANDARD.encode(&leaf_der)
        );
        let certs: Vec<&str> = seen
            .iter()
            .filter(|(k, _)| k == "client-cert")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(
            certs,
            [client_cert.as_str()],
            "RFC 9440 header, spoof removed"
        );
        let chain = header(&seen, "client-cert-chain").expect("Client-Cert-Chain");
        assert!(chain.starts_with(':') && chain.ends_with(':') && !chain.contains(','));
        let jwt = header(&seen, "x-ward-assertion").expect("assertion header");
        assert_ne!(jwt, "forged");
        let claims = verify_jwt(jwt, &jwks);
        assert_eq!(claims["sub"], CLIENT);
        assert_eq!(claims["route"], "app");
        assert_eq!(claims["groups"][0], "testers");
        assert_eq!(claims["cnf"]["x5t#S256"], fp.as_str());
        let (iat, exp) = (
            claims["iat"].as_i64().unwrap(),
            claims["exp"].as_i64().unwrap(),
        );
        assert!(exp > iat && exp - iat <= 300, "{claims}");
    }

    let log = gw.decisions();
    assert_eq!(log.len(), 2, "{log:?}");
    for (line, proto) in log.iter().zip(["h1", "h2"]) {
        assert_eq!(line["result"], "Allow");
        assert_eq!(line["matched_sid"], "ClientUsesApp");
        assert_eq!(line["principal"], CLIENT);
        assert_eq!(line["action"], "http:GET");
        assert_eq!(line["resource"], "route/app/hello");
        assert_eq!(line["context"]["ward:Protocol"], proto);
        assert_eq!(line["context"]["ward:SourceIp"], "127.0.0.1");
        assert_eq!(line["context"]["ward:PrincipalGroups"][0], "testers");
        assert!(line["policy_hash"].as_str().unwrap().len() >= 32);
        assert!(
            line["context"]
                .get("ward:RequestHeader/x-ward-identity")
                .is_none()
        );
    }
    assert!(
        gw.metric("ward_gateway_requests_total{decision=\"allow\",route=\"app\",status=\"200\"}")
            >= 2.0
    );
}

#[test]
fn denied_request_is_403_with_a_decision_id_and_never_reaches_the_upstream() {
    let gw = Gateway::start();
    for (cert, path) in [("other", "/hello"), ("client", "/admin/users")] {
        let out = gw.curl(Some(cert), "app.test", &["-i"], &[path]);
        let (status, headers, body) = parse_response(&out);
        assert_eq!(status, 403, "{cert} {path}: {body}");
        let id = header(&headers, "x-ward-decision-id").expect("decision id header");
        assert_eq!(id.len(), 32);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["decision_id"], id);
        let line = gw
            .decisions()
            .into_iter()
            .find(|l| l["decision_id"] == id)
            .expect("decision logged under the same id");
        assert_eq!(line["result"], "Deny");
    }
    let explicit = gw
        .decisions()
        .into_iter()
        .find(|l| l["resource"] == "route/app/admin/users")
        .unwrap();
    assert_eq!(explicit["matched_sid"], "NobodyAdmin");
    assert_eq!(
        gw.upstream.count(),
        0,
        "a denied request reached the upstream"
    );
}

#[test]
fn unknown_host_is_404_and_upstream_down_is_502() {
    let gw = Gateway::start();
    let (status, _, body) =
        parse_response(&gw.curl(Some("client"), "nowhere.test", &["-i"], &["/"]));
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = parse_response(&gw.curl(Some("client"), "down.test", &["-i"], &["/x"]));
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("cannot connect to the upstream"), "{body}");
    let (status, _, body) =
        parse_response(&gw.curl(Some("client"), "app.test", &["-i"], &["/a/%2e%2e/admin"]));
    assert_eq!(status, 400, "{body}");
    assert_eq!(gw.upstream.count(), 0);
}

#[test]
fn bad_client_certificates_are_refused_at_the_handshake() {
    let mut gw = Gateway::start();
    let now = OffsetDateTime::now_utc();
    let client = Leaf::client(CLIENT);
    let hour = Duration::from_secs(3600);
    let expired = Leaf {
        not_before: now - 2 * hour,
        not_after: now - hour,
        ..client.clone()
    };
    let not_yet = Leaf {
        not_before: now + hour,
        not_after: now + 2 * hour,
        ..client.clone()
    };
    let no_eku = Leaf {
        eku: vec![ExtendedKeyUsagePurpose::ServerAuth],
        ..client.clone()
    };
    let no_spiffe = Leaf {
        sans: vec![SanType::DnsName("client.corp.example".try_into().unwrap())],
        ..client.clone()
    };
    let two_spiffe = Leaf {
        sans: vec![uri(CLIENT), uri(OTHER)],
        ..client.clone()
    };
    let foreign_td = Leaf {
        sans: vec![uri("spiffe://evil.example/ns/test/sa/client")],
        ..client.clone()
    };
    gw.pki.issue_der("expired", &expired, false);
    gw.pki.issue_der("notyet", &not_yet, false);
    gw.pki.issue_der("noeku", &no_eku, false);
    gw.pki.issue_der("nospiffe", &no_spiffe, false);
    gw.pki.issue_der("twospiffe", &two_spiffe, false);
    gw.pki.issue_der("foreigntd", &foreign_td, false);
    gw.pki.issue_der("wrongca", &client, true);
    let (revoked, _) = gw.pki.issue_der("revoked", &client, false);
    // Revoked while the gateway runs: the new CRL is picked up on reload.
    let before = gw.metric("ward_gateway_reloads_total{part=\"tls\"}");
    gw.pki.revoke(revoked);
    gw.sighup();
    wait_until("CRL reload", || {
        gw.metric("ward_gateway_reloads_total{part=\"tls\"}") > before
    });

    let cases = [
        (None, "no_certificate"),
        (Some("expired"), "expired"),
        (Some("notyet"), "not_yet_valid"),
        (Some("wrongca"), "unknown_issuer"),
        (Some("revoked"), "revoked"),
        (Some("noeku"), "wrong_purpose"),
        (Some("nospiffe"), "identity"),
        (Some("twospiffe"), "identity"),
        (Some("foreigntd"), "identity"),
    ];
    for (cert, reason) in cases {
        let metric =
            format!("ward_gateway_handshakes_total{{reason=\"{reason}\",result=\"failed\"}}");
        let before = gw.metric(&metric);
        for version in ["--http1.1", "--http2"] {
            let out = gw.curl(cert, "app.test", &[version, "-i"], &["/hello"]);
            let (status, _, _) = parse_response(&out);
            assert!(
                !out.status.success() && status == 0,
                "{cert:?} {version} was let through: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            // TLS 1.3: refused after the client's Finished, seen on first
            // read (56) or write (55); failures inside the handshake: 35.
            let code = out.status.code().unwrap();
            assert!(
                [35, 55, 56, 58].contains(&code),
                "{cert:?}: curl exit {code}"
            );
        }
        let after = gw.metric(&metric);
        assert!(
            after >= before + 2.0,
            "{cert:?}: {metric} {before} -> {after}\n{}",
            gw.log()
        );
    }
    assert_eq!(gw.upstream.count(), 0);

    // The same over TLS 1.2 with openssl s_client: refused during the
    // handshake itself, while the good certificate completes it.
    let s_client = |cert: &str| {
        Command::new("timeout")
            .args(["10", "openssl", "s_client", "-tls1_2", "-brief", "-connect"])
            .arg(format!("127.0.0.1:{}", gw.port))
            .args(["-servername", "app.test", "-CAfile"])
            .arg(gw.path("root.pem"))
            .arg("-cert")
            .arg(gw.path(&format!("{cert}.pem")))
            .arg("-cert_chain")
            .arg(gw.path(&format!("{cert}.pem")))
            .arg("-key")
            .arg(gw.path(&format!("{cert}.key")))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let good = s_client("client");
    let good_text = String::from_utf8_lossy(&good.stderr);
    assert!(good_text.contains("CONNECTION ESTABLISHED"), "{good_text}");
    for bad in ["twospiffe", "revoked", "expired"] {
        let out = s_client(bad);
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad}: {text}");
        assert!(!text.contains("CONNECTION ESTABLISHED"), "{bad}: {text}");
        assert!(text.contains("alert"), "{bad}: {text}");
    }
}

#[test]
fn policy_reload_flips_the_next_decision_and_a_bad_policy_keeps_the_old_one() {
    let gw = Gateway::start();
    let get = || parse_response(&gw.curl(Some("client"), "app.test", &["-i"], &["/hello"])).0;
    assert_eq!(get(), 200);

    // A broken policy is refused; the last good one stays in force.
    gw.write_policy("{\"Version\": \"2026-11-01\", \"Statement\": [{\"Effect\": \"Allow\"");
    wait_until("refused reload", || {
        gw.metric("ward_gateway_reload_failures_total{part=\"policy\"}") >= 1.0
    });
    assert_eq!(get(), 200);
    assert!(gw.log().contains("policy refused"), "{}", gw.log());

    // A good new policy flips the very next request.
    gw.write_policy(DENY_ALL_POLICY);
    wait_until("deny policy in force", || get() == 403);
    let last = gw.decisions().pop().unwrap();
    assert_eq!(last["matched_sid"], "Lockdown");

    gw.write_policy(ALLOW_POLICY);
    wait_until("allow policy back", || get() == 200);

    // `ward gateway check` accepts the running config and refuses a bad one.
    let check = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["gateway", "check", "--config"])
        .arg(gw.path("gateway.toml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("config ok"));
    std::fs::write(gw.path("policy/broken.json"), "{").unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["gateway", "check", "--config"])
        .arg(gw.path("gateway.toml"))
        .output()
        .unwrap();
    assert!(!check.status.success());
}

#[test]
fn http2_multiplexed_requests_each_get_their_own_decision() {
    let gw = Gateway::start();
    let handshakes = gw.metric("ward_gateway_handshakes_total{reason=\"\",result=\"ok\"}");
    let out = gw.curl(
        Some("client"),
        "app.test",
        &[
            "--http2",
            "--parallel",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version} %header{x-ward-decision-id}\\n",
        ],
        &["/one", "/admin", "/two", "/three"],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 4, "{text}");
    let codes: Vec<&str> = lines.iter().map(|l| &l[..5]).collect();
    assert_eq!(codes, ["200 2", "200 2", "200 2", "403 2"], "{text}");
    let ids: std::collections::HashSet<&str> = lines
        .iter()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(
        ids.len(),
        4,
        "every request has its own decision id: {text}"
    );
    let log = gw.decisions();
    assert_eq!(log.len(), 4);
    assert!(log.iter().all(|l| l["context"]["ward:Protocol"] == "h2"));
    assert_eq!(gw.upstream.count(), 3);
    let after = gw.metric("ward_gateway_handshakes_total{reason=\"\",result=\"ok\"}");
    assert_eq!(
        after - handshakes,
        1.0,
        "all four requests on one connection"
    );
}

/// An `openssl s_client` TCP tunnel through the `db` route; a thread
/// forwards its output lines, and the channel closes on EOF.
struct Tunnel {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tunnel(gw: &Gateway, cert: &str) -> Tunnel {
    tls_pipe(gw, cert, "db.test")
}

/// `openssl s_client` to the gateway with SNI `sni`: raw bytes in and out.
fn tls_pipe(gw: &Gateway, cert: &str, sni: &str) -> Tunnel {
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect"])
        .arg(format!("127.0.0.1:{}", gw.port))
        .args(["-servername", sni, "-CAfile"])
        .arg(gw.path("root.pem"))
        .arg("-cert")
        .arg(gw.path(&format!("{cert}.pem")))
        .arg("-cert_chain")
        .arg(gw.path(&format!("{cert}.pem")))
        .arg("-key")
        .arg(gw.path(&format!("{cert}.key")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(gw.path(&format!("s_client-{cert}.log"))).unwrap())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        loop {
            let mut line = String::new();
            match out.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            }
        }
    });
    Tunnel { child, lines }
}

/// The next line, or None on EOF or after `secs`.
fn read_line_timeout(t: &mut Tunnel, secs: u64) -> Option<String> {
    t.lines.recv_timeout(Duration::from_secs(secs)).ok()
}

#[test]
fn tcp_route_tunnels_allowed_clients_and_closes_on_policy_change() {
    let gw = Gateway::start();
    let mut t = tunnel(&gw, "client");
    t.child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"ping\n")
        .unwrap();
    assert_eq!(
        read_line_timeout(&mut t, 10).as_deref(),
        Some("ping\n"),
        "{}\n{}",
        std::fs::read_to_string(gw.path("s_client-client.log")).unwrap_or_default(),
        gw.log()
    );

    let mut denied = tunnel(&gw, "other");
    let _ = denied.child.stdin.as_mut().unwrap().write_all(b"ping\n");
    assert_eq!(
        read_line_timeout(&mut denied, 10),
        None,
        "denied tunnel echoed"
    );

    // The open tunnel is re-decided when the policy changes, and closed.
    gw.write_policy(DENY_ALL_POLICY);
    wait_until("tunnel closed by re-check", || {
        gw.metric("ward_gateway_rechecks_closed_total{reason=\"policy\"}") >= 1.0
    });
    let _ = t.child.stdin.as_mut().unwrap().write_all(b"again\n");
    assert_eq!(read_line_timeout(&mut t, 10), None);
    let close = gw
        .decisions()
        .into_iter()
        .find(|l| l["kind"] == "close")
        .expect("close logged");
    assert_eq!(close["route"], "db");
    assert!(close["reason"].as_str().unwrap().contains("policy"));
}

#[test]
fn websocket_is_proxied_and_closed_when_the_policy_no_longer_allows_it() {
    let gw = Gateway::start();
    let mut t = tls_pipe(&gw, "client", "app.test");
    t.child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .unwrap();
    let status = read_line_timeout(&mut t, 10).unwrap_or_default();
    assert!(
        status.starts_with("HTTP/1.1 101"),
        "{status:?}\n{}",
        gw.log()
    );
    while read_line_timeout(&mut t, 10).is_some_and(|l| l != "\r\n") {}
    t.child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"ping\n")
        .unwrap();
    assert_eq!(read_line_timeout(&mut t, 10).as_deref(), Some("ping\n"));

    gw.write_policy(DENY_ALL_POLICY);
    wait_until("WebSocket closed by re-check", || {
        gw.metric("ward_gateway_rechecks_closed_total{reason=\"policy\"}") >= 1.0
    });
    let _ = t.child.stdin.as_mut().unwrap().write_all(b"again\n");
    assert_eq!(read_line_timeout(&mut t, 10), None, "stream still open");
    let close = gw
        .decisions()
        .into_iter()
        .find(|l| l["kind"] == "close")
        .expect("close logged");
    assert_eq!(close["route"], "app");
    assert_eq!(gw.upstream.count(), 1);
}

#[test]
fn slow_upstream_is_504() {
    let gw = Gateway::start_with("", "upstream_timeout_secs = 1", "");
    let (status, _, body) =
        parse_response(&gw.curl(Some("client"), "app.test", &["-i"], &["/slow"]));
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("upstream timed out"), "{body}");
}

#[test]
fn shadow_route_logs_where_the_candidate_policy_differs_without_enforcing_it() {
    let gw = Gateway::start_with(
        "",
        "",
        r#"
[[http_routes]]
name = "shadowed"
host = "shadow.test"
upstream = "http://127.0.0.1:{up}"
mode = "shadow"
candidate_policy_dir = "candidate"
"#,
    );
    let (status, _, body) =
        parse_response(&gw.curl(Some("client"), "shadow.test", &["-i"], &["/x"]));
    assert_eq!(
        status, 403,
        "enforced policy has no statement for route/shadowed: {body}"
    );
    let line = gw.decisions().pop().unwrap();
    assert_eq!(line["result"], "Deny");
    assert_eq!(line["shadow"]["result"], "Allow");
    assert_eq!(line["shadow"]["differs"], true);
    assert_eq!(line["shadow"]["matched_sid"], "CandidateAllowsShadowed");
    assert_eq!(gw.metric("ward_gateway_shadow_mismatches_total"), 1.0);
}

#[test]
fn tls13_only_refuses_tls12_clients() {
    let gw = Gateway::start_with("tls13_only = true", "", "");
    let out = gw.curl(
        Some("client"),
        "app.test",
        &["-i", "--tls-max", "1.2"],
        &["/x"],
    );
    assert_eq!(
        out.status.code(),
        Some(35),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, _, _) = parse_response(&gw.curl(Some("client"), "app.test", &["-i"], &["/x"]));
    assert_eq!(status, 200);
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits() {
    let mut gw = Gateway::start_with("", "shutdown_grace_secs = 10", "");
    let mut slow = gw.curl_command(Some("client"), "app.test");
    slow.args(["-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"])
        .arg(gw.url("app.test", "/slow"))
        .stdout(Stdio::piped());
    let slow = slow.spawn().unwrap();
    wait_until("slow request in flight", || gw.upstream.count() == 1);
    let ok = Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = slow.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "in-flight request was cut"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = gw.child.as_mut().unwrap().try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "gateway did not exit after draining"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}\n{}", gw.log());
    assert!(gw.log().contains("gateway stopped"));
}

/// Kills a helper process when the test ends.
struct Killer(Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn https_upstream_is_verified_and_gets_the_gateway_certificate() {
    let s_port = free_port();
    let gw = Gateway::start_with(
        "",
        "",
        &format!(
            r#"
[[http_routes]]
name = "secure"
host = "secure.test"
upstream = "https://127.0.0.1:{s_port}"
"#
        ),
    );
    // openssl s_server as an independent TLS upstream that *requires* a
    // client certificate chaining to our root (-Verify), and whose -www
    // page shows the certificate it got.
    let _server = Killer(
        Command::new("openssl")
            .args(["s_server", "-accept"])
            .arg(format!("127.0.0.1:{s_port}"))
            .arg("-cert")
            .arg(gw.path("server.pem"))
            .arg("-cert_chain")
            .arg(gw.path("server.pem"))
            .arg("-key")
            .arg(gw.path("server.key"))
            .arg("-CAfile")
            .arg(gw.path("root.pem"))
            .args(["-Verify", "2", "-www"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("s_server listening", || {
        TcpStream::connect(("127.0.0.1", s_port)).is_ok()
    });
    let (status, _, body) =
        parse_response(&gw.curl(Some("client"), "secure.test", &["-i"], &["/"]));
    assert_eq!(status, 200, "{body}\n{}", gw.log());
    assert!(body.contains("Client certificate"), "{body}");
    assert!(
        body.contains("Subject: CN=server"),
        "the gateway's own certificate: {body}"
    );
}

#[test]
fn open_tunnels_close_when_the_certificate_is_revoked_or_expires() {
    let mut gw = Gateway::start();
    let (serial, _) = gw.pki.issue_der("later", &Leaf::client(CLIENT), false);
    let short = Leaf {
        not_after: OffsetDateTime::now_utc() + Duration::from_secs(4),
        ..Leaf::client(CLIENT)
    };
    gw.pki.issue_der("short", &short, false);

    let mut revoked = tunnel(&gw, "later");
    let mut expiring = tunnel(&gw, "short");
    for t in [&mut revoked, &mut expiring] {
        t.child.stdin.as_mut().unwrap().write_all(b"hi\n").unwrap();
        assert_eq!(read_line_timeout(t, 10).as_deref(), Some("hi\n"));
    }

    gw.pki.revoke(serial);
    gw.sighup();
    wait_until("revoked tunnel closed", || {
        gw.metric("ward_gateway_rechecks_closed_total{reason=\"revoked_or_untrusted\"}") >= 1.0
    });
    let _ = revoked.child.stdin.as_mut().unwrap().write_all(b"again\n");
    assert_eq!(read_line_timeout(&mut revoked, 10), None);

    wait_until("expired tunnel closed", || {
        gw.metric("ward_gateway_rechecks_closed_total{reason=\"expired\"}") >= 1.0
    });
    let _ = expiring.child.stdin.as_mut().unwrap().write_all(b"again\n");
    assert_eq!(read_line_timeout(&mut expiring, 10), None);
    let reasons: Vec<String> = gw
        .decisions()
        .into_iter()
        .filter(|l| l["kind"] == "close")
        .map(|l| l["reason"].as_str().unwrap().to_string())
        .collect();
    assert!(reasons.iter().any(|r| r.contains("Revoked")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("expired")), "{reasons:?}");
}

#[test]
fn an_idle_http_connection_closes_when_its_certificate_expires() {
    let gw = Gateway::start();
    let short = Leaf {
        not_after: OffsetDateTime::now_utc() + Duration::from_secs(4),
        ..Leaf::client(CLIENT)
    };
    gw.pki.issue_der("short", &short, false);
    // One keep-alive request, then the connection sits idle (and parked)
    // while the certificate runs out.
    let mut t = tls_pipe(&gw, "short", "app.test");
    t.child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"GET /x HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_line_timeout(&mut t, 10).as_deref(),
        Some("HTTP/1.1 200 OK\r\n"),
        "{}",
        gw.log()
    );
    let started = Instant::now();
    while read_line_timeout(&mut t, 15).is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the connection outlived its certificate"
        );
    }
    assert!(gw.metric("ward_gateway_rechecks_closed_total{reason=\"expired\"}") >= 1.0);
    assert!(
        gw.decisions()
            .iter()
            .any(|l| l["kind"] == "close" && l["reason"] == "client certificate expired"),
        "{:?}",
        gw.decisions()
    );
}

#[test]
fn silent_clients_are_dropped_after_the_handshake_timeout() {
    let gw = Gateway::start_with("", "handshake_timeout_secs = 1", "");
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "connection closed without a byte");
    assert!(started.elapsed() < Duration::from_secs(5));
    wait_until("timeout counted", || {
        gw.metric("ward_gateway_handshakes_total{reason=\"timeout\",result=\"failed\"}") >= 1.0
    });
}

#[test]
fn a_renewed_gateway_certificate_is_served_to_new_connections() {
    let gw = Gateway::start();
    let serial_seen = || {
        let out = Command::new("timeout")
            .args(["10", "openssl", "s_client", "-connect"])
            .arg(format!("127.0.0.1:{}", gw.port))
            .args(["-servername", "app.test", "-CAfile"])
            .arg(gw.path("root.pem"))
            .arg("-cert")
            .arg(gw.path("client.pem"))
            .arg("-cert_chain")
            .arg(gw.path("client.pem"))
            .arg("-key")
            .arg(gw.path("client.key"))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .unwrap();
        let pem = String::from_utf8_lossy(&out.stdout).to_string();
        let start = pem.find("-----BEGIN CERTIFICATE-----").unwrap();
        let end = pem.find("-----END CERTIFICATE-----").unwrap();
        pem[start..end].to_string()
    };
    let before = serial_seen();
    let now = OffsetDateTime::now_utc();
    // What an agent does: write the renewed certificate and key, then HUP.
    gw.pki.issue_der(
        "server",
        &Leaf {
            sans: vec![
                SanType::DnsName("app.test".try_into().unwrap()),
                uri("spiffe://corp.example/gateway"),
            ],
            eku: vec![ExtendedKeyUsagePurpose::ServerAuth],
            not_before: now - Duration::from_secs(60),
            not_after: now + Duration::from_secs(7200),
        },
        false,
    );
    gw.sighup();
    wait_until("new certificate served", || serial_seen() != before);
    let (status, _, _) = parse_response(&gw.curl(Some("client"), "app.test", &["-i"], &["/x"]));
    assert_eq!(status, 200);
}

#[test]
fn idle_connections_are_closed() {
    let gw = Gateway::start_with("", "idle_timeout_secs = 1", "");
    let started = Instant::now();
    let mut t = tls_pipe(&gw, "client", "app.test");
    assert_eq!(read_line_timeout(&mut t, 10), None);
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(gw.metric("ward_gateway_limited_total{limit=\"idle\"}") >= 1.0);
}

#[test]
fn connection_limits_apply_per_identity_and_in_total() {
    let gw = Gateway::start_with("", "max_connections_per_identity = 1", "");
    let ok_handshakes = "ward_gateway_handshakes_total{reason=\"\",result=\"ok\"}";
    let _held = tls_pipe(&gw, "client", "app.test");
    wait_until("first connection up", || gw.metric(ok_handshakes) >= 1.0);
    let out = gw.curl(Some("client"), "app.test", &["-i"], &["/x"]);
    assert_eq!(
        parse_response(&out).0,
        0,
        "second connection of one identity"
    );
    assert!(gw.metric("ward_gateway_limited_total{limit=\"per_identity\"}") >= 1.0);
    let (status, _, _) = parse_response(&gw.curl(Some("other"), "app.test", &["-i"], &["/x"]));
    assert_eq!(
        status, 403,
        "another identity is not limited (and then denied)"
    );
    assert_eq!(gw.upstream.count(), 0);

    let gw = Gateway::start_with("", "max_connections = 1", "");
    let _held = tls_pipe(&gw, "client", "app.test");
    wait_until("first connection up", || gw.metric(ok_handshakes) >= 1.0);
    let out = gw.curl(Some("other"), "app.test", &["-i"], &["/x"]);
    assert_eq!(parse_response(&out).0, 0);
    assert!(gw.metric("ward_gateway_limited_total{limit=\"max_connections\"}") >= 1.0);
}

#[test]
fn http2_upstream_over_mtls_to_a_second_gateway() {
    let b_port = free_port();
    let b_admin = free_port();
    let a = Gateway::start_with(
        "",
        "",
        &format!(
            r#"
[[http_routes]]
name = "loop"
host = "loop.test"
upstream = "https://127.0.0.1:{b_port}"
http2 = true
"#
        ),
    );
    // Gateway B shares A's PKI and policy; its client is gateway A, whose
    // own certificate (spiffe://corp.example/gateway) it must verify.
    std::fs::write(
        a.path("b.toml"),
        format!(
            r#"
listen = "127.0.0.1:{b_port}"
admin_listen = "127.0.0.1:{b_admin}"
trust_domain = "{TD}"
trust_bundle = "root.pem"
cert = "server.pem"
key = "server.key"
policy_dir = "policy"
decision_log = "b-decisions.jsonl"

[[http_routes]]
name = "inner"
host = "loop.test"
upstream = "http://127.0.0.1:{up}"
"#,
            up = a.upstream.port
        ),
    )
    .unwrap();
    let _b = Killer(
        Command::new(env!("CARGO_BIN_EXE_ward"))
            .args(["gateway", "run", "--config"])
            .arg(a.path("b.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(a.path("b.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_until("gateway B listening", || {
        TcpStream::connect(("127.0.0.1", b_port)).is_ok()
    });
    let (status, _, body) = parse_response(&a.curl(
        Some("client"),
        "loop.test",
        &["-i", "--http1.1"],
        &["/deep"],
    ));
    assert_eq!(
        status,
        200,
        "{body}\n{}\n{}",
        a.log(),
        std::fs::read_to_string(a.path("b.log")).unwrap_or_default()
    );
    // The upstream sees B's view: the caller is gateway A.
    let seen = echoed(&body);
    assert_eq!(
        header(&seen, "x-ward-identity"),
        Some("spiffe://corp.example/gateway")
    );
    let b_log: Vec<serde_json::Value> = std::fs::read_to_string(a.path("b-decisions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(b_log.len(), 1);
    assert_eq!(b_log[0]["principal"], "spiffe://corp.example/gateway");
    assert_eq!(b_log[0]["matched_sid"], "GatewayUsesInner");
    assert_eq!(
        b_log[0]["context"]["ward:Protocol"], "h2",
        "A spoke HTTP/2 to B"
    );
}

#[test]
fn the_decision_log_replays_with_ward_policy_simulate() {
    let gw = Gateway::start();
    for (cert, path) in [("client", "/a"), ("client", "/admin"), ("other", "/b")] {
        gw.curl(Some(cert), "app.test", &["-i"], &[path]);
    }
    std::fs::create_dir(gw.path("proposed")).unwrap();
    std::fs::write(gw.path("proposed/main.json"), DENY_ALL_POLICY).unwrap();
    let simulate = |to: &str| {
        Command::new(env!("CARGO_BIN_EXE_ward"))
            .args(["policy", "simulate", "--json", "--from"])
            .arg(gw.path("policy"))
            .arg("--to")
            .arg(gw.path(to))
            .arg("--log")
            .arg(gw.path("decisions.jsonl"))
            .output()
            .unwrap()
    };
    // Same policy: every recorded decision replays to the same result.
    let same = simulate("policy");
    assert!(
        same.status.success(),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );
    // Lockdown: only the one allowed request changes.
    let changed = simulate("proposed");
    assert_eq!(
        changed.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&changed.stderr)
    );
    let out = String::from_utf8_lossy(&changed.stdout);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("route/app/a"), "{out}");
}

#[test]
fn open_http2_streams_are_killed_when_the_policy_changes() {
    let gw = Gateway::start();
    let mut curl = gw.curl_command(Some("client"), "app.test");
    curl.args(["--http2", "-N", "--max-time", "20"])
        .arg(gw.url("app.test", "/stream"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let child = curl.spawn().unwrap();
    wait_until("stream open", || gw.upstream.count() == 1);
    std::thread::sleep(Duration::from_millis(300));
    gw.write_policy(DENY_ALL_POLICY);
    let out = child.wait_with_output().unwrap();
    let ticks = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(!out.status.success(), "stream ran to completion");
    assert!((1..250).contains(&ticks), "{ticks} ticks");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(gw.metric("ward_gateway_rechecks_closed_total{reason=\"policy\"}") >= 1.0);
    let close = gw
        .decisions()
        .into_iter()
        .find(|l| l["kind"] == "close")
        .unwrap();
    assert!(
        close["reason"].as_str().unwrap().contains("http:GET"),
        "{close}"
    );
}

#[test]
fn too_many_request_headers_are_refused() {
    let gw = Gateway::start_with("", "max_headers = 20", "");
    let mut args = vec!["-i".to_string(), "--http1.1".to_string()];
    for i in 0..40 {
        args.push("-H".into());
        args.push(format!("x-filler-{i}: {i}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, _, _) = parse_response(&gw.curl(Some("client"), "app.test", &args, &["/x"]));
    assert_eq!(status, 431);
    assert_eq!(gw.upstream.count(), 0);
}

#[test]
fn config_mistakes_are_named_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let run = |text: &str, sub: &str| {
        std::fs::write(&path, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_ward"))
            .args(["gateway", sub, "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let base = "trust_domain = \"corp.example\"\ntrust_bundle = \"b.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\npolicy_dir = \"p\"\n";
    let e = run(&format!("{base}[limits]\nmax_conections = 5\n"), "check");
    assert!(
        e.contains("gateway.toml:7") && e.contains("max_conections"),
        "{e}"
    );
    let e = run(
        &format!("{base}[[http_routes]]\nname = \"a\"\nhost = \"h\"\nupstream = \"ftp://x:1\"\n"),
        "run",
    );
    assert!(e.contains("http_routes[0].upstream"), "{e}");
    let e = run(base, "run");
    assert!(e.contains("trust bundle") && e.contains("b.pem"), "{e}");
}

#[test]
fn routes_reload_from_the_config_and_a_bad_config_keeps_them() {
    let gw = Gateway::start();
    let status = || parse_response(&gw.curl(Some("client"), "nowhere.test", &["-i"], &["/x"])).0;
    assert_eq!(status(), 404);
    let config = std::fs::read_to_string(gw.path("gateway.toml")).unwrap();
    let added = format!(
        "{config}\n[[http_routes]]\nname = \"late\"\nhost = \"nowhere.test\"\nupstream = \"http://127.0.0.1:{}\"\n",
        gw.upstream.port
    );
    std::fs::write(gw.path("gateway.toml"), &added).unwrap();
    gw.sighup();
    // Routed now, and decided: the policy has nothing for route/late.
    wait_until("new route", || status() == 403);
    let line = gw.decisions().pop().unwrap();
    assert_eq!(line["resource"], "route/late/x");

    std::fs::write(
        gw.path("gateway.toml"),
        format!("{added}\nlisten_typo = 1\n"),
    )
    .unwrap();
    gw.sighup();
    wait_until("refused config", || {
        gw.metric("ward_gateway_reload_failures_total{part=\"config\"}") >= 1.0
    });
    assert_eq!(status(), 403, "routes in force stay");
    assert!(gw.log().contains("config refused"), "{}", gw.log());
}
