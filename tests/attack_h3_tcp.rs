//! The attack matrix of `tests/attack_gateway.rs`, carried over to HTTP/3
//! and to SNI-routed TCP routes, against a real `ward gateway run` process.
//!
//! HTTP/3 requests are written by `tests/clients/h3_attack.py` (aioquic):
//! the header list, pseudo-headers included, is QPACK-encoded exactly as
//! given, so `:path` and `:authority` reach the gateway unnormalised. TCP
//! routes are driven with `openssl s_client` (any SNI, or none) and end at a
//! raw upstream that counts the connections it accepts and the bytes it
//! receives: a denied tunnel must leave it untouched.
//!
//! Not repeated here: an open tunnel closed when the policy stops allowing
//! it (`tests/gateway_e2e.rs`,
//! `tcp_route_tunnels_allowed_clients_and_closes_on_policy_change`; revoked
//! and expired in `open_tunnels_close_when_the_certificate_is_revoked_or_expires`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::gateway::TcpRecorder;
use common::hardening::*;
use serde_json::Value;

/// The hardening policy, plus `tcp:Connect` on route `db` for the client
/// (and for nobody else).
const TCP_POLICY: &str = r#"{
  "Version": "2026-11-01",
  "Statement": [
    {"Sid": "ClientUsesApp", "Effect": "Allow",
     "Principal": {"Spiffe": "spiffe://corp.example/ns/test/sa/client"},
     "Action": ["http:GET", "http:POST"], "Resource": ["route/app/*", "route/slow/*", "route/down/*"]},
    {"Sid": "ClientUsesDb", "Effect": "Allow",
     "Principal": {"Spiffe": "spiffe://corp.example/ns/test/sa/client"},
     "Action": "tcp:Connect", "Resource": "route/db"},
    {"Sid": "NobodyAdmin", "Effect": "Deny", "Principal": "*",
     "Action": "http:*", "Resource": "route/app/admin*"}
  ]
}"#;

/// A gateway with the hardening routes and TCP route `db` (SNI `db.test`)
/// to a raw recorder, under [`TCP_POLICY`].
fn gateway_with_db(limits: &str) -> (Gateway, TcpRecorder) {
    let db = TcpRecorder::start();
    let top = format!(
        "[[tcp_routes]]\nname = \"db\"\nsni = \"db.test\"\nupstream = \"127.0.0.1:{}\"\n",
        db.port
    );
    let gw = Gateway::start_quic(&top, limits);
    gw.reload_policy(TCP_POLICY);
    (gw, db)
}

/// Issues `foreign` (the client's identity from another CA) and `revoked`
/// (revoked on the intermediate's CRL), and waits until the gateway has
/// reloaded that CRL.
fn issue_bad_clients(gw: &mut Gateway) {
    gw.pki
        .issue("foreign", &common::pki::Leaf::client(CLIENT), true);
    let serial = gw.pki.issue_client("revoked", CLIENT);
    let tls_reloads = "ward_gateway_reloads_total{part=\"tls\"}";
    let before = gw.metric(tls_reloads);
    gw.pki.revoke(serial);
    gw.sighup();
    wait_until("the new CRL", 15, || gw.metric(tls_reloads) > before);
}

/// Bytes as the Latin-1 string `h3_attack.py` turns back into the same
/// bytes.
fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| char::from(c)).collect()
}

fn status(r: &Value) -> Option<u16> {
    r["status"].as_u64().map(|s| u16::try_from(s).unwrap())
}

/// The response header `name` of an `h3_attack.py` result.
fn header<'a>(r: &'a Value, name: &str) -> Option<&'a str> {
    r["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0].as_str() == Some(name))
        .and_then(|h| h[1].as_str())
}

/// Refused: no response (stream reset, connection closed) or a 4xx.
fn refused(r: &Value) -> bool {
    status(r).is_none_or(|s| (400..500).contains(&s))
}

// ------------------------------------------------------------ HTTP/3 ----

/// The path tricks of `attack_gateway.rs` as `:path` over HTTP/3: each is
/// refused with nothing upstream, or reaches the upstream byte for byte as
/// the decision log shows it, and never the denied `/admin*`.
#[test]
fn h3_path_tricks_are_refused_or_forwarded_exactly_as_decided() {
    let gw = Gateway::start_quic("", "");
    let tricks = PATH_TRICKS;
    let cases: Vec<Value> = tricks
        .iter()
        .map(|t| h3_get("app.test", &latin1(t), &[]))
        .collect();
    let results = gw.raw_h3(Some("client"), "app.test", &cases);
    let decided: Vec<String> = gw
        .decisions()
        .iter()
        .filter_map(|d| d["context"]["ward:Path"].as_str().map(str::to_string))
        .collect();
    let mut forwarded = Vec::new();
    let mut refused_n = 0;
    for (t, r) in tricks.iter().zip(&results) {
        let shown = String::from_utf8_lossy(t).to_string();
        if status(r) == Some(200) {
            assert!(
                decided.iter().any(|p| p.as_bytes() == *t),
                "{shown}: forwarded, but the policy saw only {decided:?}"
            );
            let decoded = percent_decode(&shown);
            assert!(
                !decoded.starts_with("/admin")
                    && !decoded.contains("/../admin")
                    && !decoded.contains("//admin"),
                "{shown} reached the denied admin area"
            );
            forwarded.push(shown);
        } else {
            assert!(refused(r), "{shown}: {r}");
            refused_n += 1;
        }
    }
    // What reached the upstream is exactly the forwarded tricks, byte for
    // byte (one request each), and nothing reached route `secret`.
    let mut got = gw.app.targets();
    got.sort();
    let mut want = forwarded.clone();
    want.sort();
    assert_eq!(got, want, "upstream targets vs forwarded tricks");
    assert!(gw.secret.targets().is_empty(), "{:?}", gw.secret.targets());
    let no_response: Vec<String> = tricks
        .iter()
        .zip(&results)
        .filter(|(_, r)| status(r).is_none())
        .map(|(t, r)| format!("{} ({})", String::from_utf8_lossy(t), r["error"]))
        .collect();
    eprintln!(
        "h3 path tricks: {} tried, {refused_n} refused ({} without a response: {no_response:?}), {} forwarded unchanged: {forwarded:?}",
        tricks.len(),
        no_response.len(),
        forwarded.len()
    );
    // The plain admin path is denied, a plain allowed path goes through.
    let control = gw.raw_h3(
        Some("client"),
        "app.test",
        &[
            h3_get("app.test", "/admin", &[]),
            h3_get("app.test", "/v1/ok", &[]),
        ],
    );
    assert_eq!(status(&control[0]), Some(403), "{}", control[0]);
    assert_eq!(status(&control[1]), Some(200), "{}", control[1]);
}

/// `:authority` naming route `secret` (case, trailing dot, port), or a
/// `host` header disagreeing with `:authority`, never reaches `secret`
/// (denied to everyone) nor lands on `app` under the other name.
#[test]
fn h3_authority_of_another_route_never_reaches_it() {
    let gw = Gateway::start_quic("", "");
    let port = gw.port.to_string();
    let with_port = format!("secret.test:{port}");
    let cases = vec![
        h3_get("secret.test", "/a1", &[]),
        h3_get("SECRET.TEST", "/a2", &[]),
        h3_get("secret.test.", "/a3", &[]),
        h3_get("secret.test:443", "/a4", &[]),
        h3_get(&with_port, "/a5", &[]),
        h3_get("app.test", "/a6", &[("host", "secret.test")]),
        h3_get("secret.test", "/a7", &[("host", "app.test")]),
        h3_get(
            "app.test",
            "/a8",
            &[("host", "app.test"), ("host", "secret.test")],
        ),
        serde_json::json!({"headers": [
            [":method", "GET"], [":scheme", "https"], [":path", "/a9"], ["host", "secret.test"]
        ]}),
        serde_json::json!({"headers": [
            [":method", "GET"], [":scheme", "https"], [":authority", "app.test"],
            [":authority", "secret.test"], [":path", "/a10"]
        ]}),
    ];
    let results = gw.raw_h3(Some("client"), "app.test", &cases);
    for (c, r) in cases.iter().zip(&results) {
        assert!(refused(r), "{c} was answered {r}");
    }
    assert!(
        gw.secret.targets().is_empty(),
        "reached secret: {:?}",
        gw.secret.targets()
    );
    assert!(
        gw.app.targets().is_empty(),
        "a request for secret landed on app: {:?}",
        gw.app.targets()
    );
    // X-Forwarded-Host naming another route is not trusted: the request
    // goes to `app`, without the header.
    let xfh = gw.raw_h3(
        Some("client"),
        "app.test",
        &[h3_get(
            "app.test",
            "/xfh",
            &[("x-forwarded-host", "secret.test")],
        )],
    );
    assert_eq!(status(&xfh[0]), Some(200), "{}", xfh[0]);
    let heads = gw.app.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        !heads[0].to_ascii_lowercase().contains("secret.test"),
        "{heads:?}"
    );
    eprintln!(
        "h3 authority: {} tried, all refused ({:?}), 0 reached secret",
        cases.len(),
        results
            .iter()
            .map(|r| status(r).map_or_else(|| r["error"].to_string(), |s| s.to_string()))
            .collect::<Vec<_>>()
    );
    // Which route each refused request was decided on.
    let routes: Vec<(String, String)> = gw
        .decisions()
        .iter()
        .map(|d| {
            (
                d["context"]["ward:Path"].to_string(),
                d["route"].to_string(),
            )
        })
        .collect();
    eprintln!("h3 authority decisions (path, route): {routes:?}");
}

/// Client-supplied identity headers over HTTP/3 are replaced by the
/// gateway's own (or the request is refused); none reaches the upstream.
#[test]
fn h3_spoofed_identity_headers_are_replaced() {
    let gw = Gateway::start_quic("", "");
    let spoofs: &[(&str, &str)] = &[
        ("x-ward-identity", "spiffe://corp.example/ns/prod/sa/root"),
        ("x-ward-assertion", "eyJhbGciOiJub25lIn0.e30."),
        ("x-ward-decision-id", "spoofed-decision-id"),
        ("x-ward-decision", "allow"),
        ("client-cert", ":MIIBspoof:"),
        ("client-cert-chain", ":MIIBspoof:"),
    ];
    let marks = [
        "ns/prod/sa/root",
        "eyjhbgcioijub25lin0",
        "spoofed-decision-id",
        "x-ward-decision: allow",
        "miibspoof",
    ];
    let lower_case = h3_get("app.test", "/v1/h3-spoof", spoofs);
    // HTTP/3 field names must be lowercase (RFC 9114 §4.2): uppercase ones
    // make the request malformed. Either way they must not arrive.
    let upper: Vec<(String, &str)> = spoofs
        .iter()
        .map(|(k, v)| (k.to_ascii_uppercase(), *v))
        .collect();
    let upper_refs: Vec<(&str, &str)> = upper.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let upper_case = h3_get("app.test", "/v1/h3-spoof-upper", &upper_refs);
    // `connection` is connection-specific, so malformed in HTTP/3; naming
    // the gateway's own headers in it must not get them dropped.
    let connection = h3_get(
        "app.test",
        "/v1/h3-spoof-connection",
        &[
            ("connection", "x-ward-identity, x-ward-assertion"),
            ("x-ward-identity", "spiffe://corp.example/ns/prod/sa/root"),
        ],
    );
    let results = gw.raw_h3(
        Some("client"),
        "app.test",
        &[lower_case, upper_case, connection],
    );
    assert_eq!(status(&results[0]), Some(200), "{}", results[0]);
    let heads = gw.app.heads();
    assert!(!heads.is_empty());
    let mut outcome = Vec::new();
    for (r, name) in results.iter().zip(["lowercase", "uppercase", "connection"]) {
        outcome.push(format!("{name}: {:?}", status(r)));
        assert!(status(r) == Some(200) || refused(r), "{name}: {r}");
    }
    let decision_ids: Vec<String> = gw
        .decisions()
        .iter()
        .filter_map(|d| d["decision_id"].as_str().map(str::to_string))
        .collect();
    for head in &heads {
        let lower = head.to_ascii_lowercase();
        for m in marks {
            assert!(
                !lower.contains(m),
                "spoofed {m:?} reached the upstream: {head}"
            );
        }
        assert!(
            lower.contains(&format!("x-ward-identity: {CLIENT}")),
            "gateway identity header missing: {head}"
        );
        assert!(lower.contains("x-ward-assertion: ey"), "{head}");
        let id = lower
            .lines()
            .find_map(|l| l.strip_prefix("x-ward-decision-id: "))
            .map(str::trim)
            .expect("decision id header");
        assert!(
            decision_ids.iter().any(|d| d.eq_ignore_ascii_case(id)),
            "upstream decision id {id} is not one the gateway logged"
        );
        assert_eq!(lower.matches("x-ward-identity:").count(), 1, "{head}");
    }
    // The gateway's decision id, not the client's, reaches the client too.
    assert_ne!(
        header(&results[0], "x-ward-decision-id"),
        Some("spoofed-decision-id")
    );
    eprintln!(
        "h3 spoofed headers: 3 requests ({}), {} reached the upstream, 0 spoofed values",
        outcome.join(", "),
        heads.len()
    );
}

/// An oversized header block or too many header fields over HTTP/3 is
/// refused with nothing upstream, and the gateway keeps serving.
#[test]
fn h3_oversized_and_too_many_headers_are_refused() {
    let mut gw = Gateway::start_quic("", "max_header_bytes = 16384\nmax_headers = 50\n");
    let big = "a".repeat(64 * 1024);
    let names: Vec<String> = (0..200).map(|i| format!("x-h{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    let wide: Vec<String> = (0..40).map(|i| format!("x-w{i}")).collect();
    let kilo = "b".repeat(1000);
    let wide_refs: Vec<(&str, &str)> = wide.iter().map(|n| (n.as_str(), kilo.as_str())).collect();
    let cases = vec![
        h3_get("app.test", "/v1/big", &[("x-big", &big)]),
        h3_get("app.test", "/v1/many", &many),
        h3_get("app.test", "/v1/wide", &wide_refs),
    ];
    let results = gw.raw_h3(Some("client"), "app.test", &cases);
    for (name, r) in ["64 KiB header", "200 headers", "40 x 1 KB"]
        .iter()
        .zip(&results)
    {
        assert!(refused(r), "{name}: {r}");
    }
    assert!(gw.app.targets().is_empty(), "{:?}", gw.app.targets());
    // The field count is the gateway's own check (the 200 short fields are
    // well under the byte limit h3 enforces).
    assert_eq!(status(&results[1]), Some(431), "{}", results[1]);
    assert_eq!(
        gw.metric("ward_gateway_quic_streams_total{result=\"too_many_headers\"}"),
        1.0
    );
    assert!(gw.alive());
    let after = gw.raw_h3(
        Some("client"),
        "app.test",
        &[h3_get("app.test", "/v1/after", &[])],
    );
    assert_eq!(status(&after[0]), Some(200), "{}", after[0]);
    eprintln!(
        "h3 header limits: {:?}",
        results
            .iter()
            .map(|r| (status(r), r["error"].clone()))
            .collect::<Vec<_>>()
    );
}

/// A QUIC client without a certificate, with one from another CA, or with
/// a revoked one gets no request through, even one sent in the first
/// flight after its handshake (before the server has judged the
/// certificate).
#[test]
fn h3_clients_with_bad_certificates_get_nothing_through() {
    let mut gw = Gateway::start_quic("", "");
    issue_bad_clients(&mut gw);
    let post = serde_json::json!({"headers": [
        [":method", "POST"], [":scheme", "https"], [":authority", "app.test"],
        [":path", "/v1/bad-cert"], ["content-length", "5"]
    ], "data": "hello"});
    let mut errors = Vec::new();
    for cert in [None, Some("foreign"), Some("revoked")] {
        let r = gw.raw_h3(
            cert,
            "app.test",
            &[post.clone(), h3_get("app.test", "/v1/x", &[])],
        );
        for r in &r {
            assert_eq!(status(r), None, "{cert:?}: {r}");
            errors.push(format!("{cert:?}: {}", r["error"]));
        }
    }
    assert!(gw.app.targets().is_empty(), "{:?}", gw.app.targets());
    for reason in ["no_certificate", "unknown_issuer", "revoked"] {
        let m =
            format!("ward_gateway_quic_handshakes_total{{reason=\"{reason}\",result=\"failed\"}}");
        wait_until(&format!("{reason} counted"), 15, || gw.metric(&m) >= 2.0);
    }
    // The good certificate still works.
    let ok = gw.raw_h3(
        Some("client"),
        "app.test",
        &[h3_get("app.test", "/v1/good", &[])],
    );
    assert_eq!(status(&ok[0]), Some(200), "{}", ok[0]);
    assert!(gw.alive());
    eprintln!("h3 bad certificates: 6 tried, 6 refused: {errors:?}");
}

// -------------------------------------------------------- TCP routes ----

/// Sends `bytes` through a TLS connection with SNI `sni` (or none) and
/// returns what came back within `secs`.
fn tls_exchange(gw: &Gateway, cert: Option<&str>, sni: Option<&str>, bytes: &[u8]) -> Vec<u8> {
    gw.raw_tls_sni(cert, sni, "http/1.1", bytes, Duration::from_secs(3))
}

/// The `tcp:Connect` decisions logged after the first `skip`.
fn tcp_decisions(gw: &Gateway, skip: usize) -> Vec<Value> {
    gw.decisions()
        .into_iter()
        .skip(skip)
        .filter(|d| d["action"] == "tcp:Connect")
        .collect()
}

/// A certificate that may not `tcp:Connect`, or a bad certificate, never
/// gets a byte to the upstream, under any spelling of the route's SNI;
/// case variants of the SNI reach the route with the same decision as the
/// exact name, and a trailing dot either does the same or is refused.
#[test]
fn tcp_route_is_reached_only_as_the_policy_decides_under_any_sni_spelling() {
    let (mut gw, db) = gateway_with_db("");
    issue_bad_clients(&mut gw);

    let ping = b"ping over the tunnel\n";
    // Control: the exact SNI with an allowed certificate is tunnelled.
    let out = tls_exchange(&gw, Some("client"), Some("db.test"), ping);
    assert_eq!(out, ping, "allowed tunnel did not echo");
    assert_eq!(db.accepted(), 1);

    let spellings = ["db.test", "DB.test", "DB.TEST", "Db.TeSt", "db.test."];
    let mut tried = 0;
    let mut tunnelled = Vec::new();
    let mut refused_n = 0;
    let logged_before_denied = gw.decisions().len();
    // Denied certificates first: nothing may reach the upstream.
    for sni in spellings {
        for cert in [Some("other"), None, Some("foreign"), Some("revoked")] {
            tried += 1;
            let (conns, bytes) = (db.accepted(), db.bytes());
            let out = tls_exchange(&gw, cert, Some(sni), ping);
            assert!(
                out.is_empty(),
                "{cert:?} via {sni:?} got {:?}",
                String::from_utf8_lossy(&out)
            );
            assert_eq!(
                db.accepted(),
                conns,
                "{cert:?} via {sni:?} reached the upstream"
            );
            assert_eq!(
                db.bytes(),
                bytes,
                "{cert:?} via {sni:?} sent bytes upstream"
            );
            refused_n += 1;
        }
    }
    // Only `other` completes a handshake; each of its connections is
    // decided, and denied.
    let denied = tcp_decisions(&gw, logged_before_denied);
    assert!(denied.len() >= 4, "{denied:?}");
    assert!(
        denied
            .iter()
            .all(|d| d["result"] != "Allow" && d["route"] == "db"),
        "{denied:?}"
    );
    // The allowed certificate under each spelling: the same route and the
    // same decision, or (trailing dot) refused without touching it.
    for sni in spellings {
        tried += 1;
        let logged = gw.decisions().len();
        let conns = db.accepted();
        let out = tls_exchange(&gw, Some("client"), Some(sni), ping);
        let new = tcp_decisions(&gw, logged);
        if out == ping {
            assert_eq!(db.accepted(), conns + 1, "{sni}");
            assert_eq!(db.received(conns), ping, "{sni}");
            assert_eq!(new.len(), 1, "{sni}: {new:?}");
            assert_eq!(new[0]["route"], "db", "{sni}: {new:?}");
            assert_eq!(new[0]["result"], "Allow", "{sni}: {new:?}");
            tunnelled.push(sni);
        } else {
            assert_eq!(db.accepted(), conns, "{sni} reached the upstream undecided");
            assert!(new.is_empty(), "{sni}: {new:?}");
            refused_n += 1;
        }
    }
    assert!(
        ["db.test", "DB.test", "DB.TEST", "Db.TeSt"]
            .iter()
            .all(|s| tunnelled.contains(s)),
        "case variants are the same name: {tunnelled:?}"
    );
    eprintln!(
        "tcp sni: {tried} tried, {refused_n} refused, {} tunnelled as decided ({tunnelled:?}), 0 bypasses",
        tunnelled.len()
    );
}

/// No SNI, or an SNI no TCP route has, is served as HTTP: raw bytes are
/// not tunnelled anywhere, and an HTTP request naming the TCP route's name
/// as Host (or HTTP/3 `:authority`) finds no HTTP route.
#[test]
fn no_sni_or_an_unknown_sni_never_reaches_a_tcp_upstream() {
    let (gw, db) = gateway_with_db("");
    let ping = b"ping\n";
    let get_db = b"GET /x HTTP/1.1\r\nHost: db.test\r\nConnection: close\r\n\r\n";
    let mut tried = 0;
    for sni in [
        None,
        Some("nope.test"),
        Some("db.test.evil"),
        Some("db"),
        Some("app.test"),
    ] {
        tried += 2;
        let out = tls_exchange(&gw, Some("client"), sni, ping);
        let text = String::from_utf8_lossy(&out);
        assert!(
            out.is_empty() || text.starts_with("HTTP/1.1 400"),
            "{sni:?}: raw bytes got {text:?}"
        );
        let out = tls_exchange(&gw, Some("client"), sni, get_db);
        let text = String::from_utf8_lossy(&out);
        assert_eq!(status_of(&text), 404, "{sni:?}: {text}");
    }
    // HTTP/3 carries no TCP routes: with SNI db.test or app.test,
    // `:authority` db.test is no HTTP route.
    for sni in ["db.test", "app.test"] {
        let r = gw.raw_h3(Some("client"), sni, &[h3_get("db.test", "/x", &[])]);
        tried += 1;
        assert_eq!(status(&r[0]), Some(404), "{sni}: {}", r[0]);
    }
    assert_eq!(db.accepted(), 0, "a TCP upstream was reached");
    assert!(gw.app.targets().is_empty() && gw.secret.targets().is_empty());
    eprintln!(
        "tcp no/unknown sni: {tried} tried, {tried} refused (400/404), 0 reached the TCP upstream"
    );
}

/// HTTP sent into a TCP route is tunnelled raw: the upstream receives the
/// client's bytes exactly, spoofed `x-ward-*` headers included, and no
/// header added by the gateway. A TCP route's upstream therefore learns
/// nothing about the client from the gateway and must not trust such
/// headers (SECURITY.md says so).
#[test]
fn http_sent_to_a_tcp_route_is_tunnelled_raw() {
    let (gw, db) = gateway_with_db("");
    let req = b"GET /admin HTTP/1.1\r\nHost: secret.test\r\n\
X-Ward-Identity: spiffe://corp.example/ns/prod/sa/root\r\n\
Client-Cert: :MIIB:\r\nConnection: close\r\n\r\n";
    let out = tls_exchange(&gw, Some("client"), Some("db.test"), req);
    assert_eq!(db.accepted(), 1);
    assert_eq!(db.received(0), req, "the tunnel changed the bytes");
    assert_eq!(out, req, "the echo came back changed");
    let logged = tcp_decisions(&gw, 0);
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0]["result"], "Allow");
    // No HTTP decision was made for the tunnelled request.
    assert!(
        !gw.decisions()
            .iter()
            .any(|d| d["action"].as_str().is_some_and(|a| a.starts_with("http:"))),
        "the tunnelled bytes were decided as HTTP"
    );
    assert!(gw.secret.targets().is_empty());
}
