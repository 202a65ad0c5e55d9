//! Revocation of a whole client chain by a real `ward gateway run` process,
//! with curl (TCP) and aioquic (`tests/clients/h3_client.py`, HTTP/3) as
//! clients: a root's CRL revoking the issuing intermediate refuses every
//! leaf under it at the handshake, lifting it lets the same client in after
//! a reload, and revoking it again closes the client's open connection (the
//! re-check after a CRL change). Only 127.0.0.1; every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use rcgen::{CertifiedIssuer, KeyPair, SerialNumber};

mod common;

use common::gateway::{CountingUpstream, TestGateway, http_route};
use common::h3::{ALLOW_POLICY, start_upstream};
use common::pki::{CLIENT, Leaf, Pki, atomic_write, crl_pem, gateway_sans};
use common::wait_until;

struct Gateway {
    gw: TestGateway,
    root: CertifiedIssuer<'static, KeyPair>,
    inter_serial: SerialNumber,
    upstream: CountingUpstream,
}

common::gateway::deref_to_test_gateway!(Gateway);

impl Gateway {
    /// A gateway with the intermediate's CRL and the root's CRL (revoking
    /// the intermediate when `inter_revoked`) in `crls`, one HTTP route
    /// `app` and a policy that lets `client` GET it. The trust bundle is the
    /// root, plus the intermediate with `inter_in_bundle`.
    fn start(inter_revoked: bool, inter_in_bundle: bool) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let (pki, root, inter_serial) = Pki::new_with_root(
            dir.path(),
            "ward test root",
            "ward test issuing",
            gateway_sans(&["app.test"]),
        );
        pki.issue("client", &Leaf::client(CLIENT), false);
        std::fs::write(
            dir.path().join("bundle.pem"),
            if inter_in_bundle {
                root.pem() + &pki.inter.pem()
            } else {
                root.pem()
            },
        )
        .unwrap();
        write_root_crl(dir.path(), &root, &inter_serial, inter_revoked);
        let upstream = start_upstream();
        let gw = TestGateway::builder(dir, pki, ALLOW_POLICY)
            .quic()
            .trust_bundle("bundle.pem")
            .crls(&["inter.crl", "root.crl"])
            .reload_poll_secs(1)
            .start(&http_route("app", "app.test", upstream.port));
        Gateway {
            gw,
            root,
            inter_serial,
            upstream,
        }
    }

    /// Replaces the root's CRL and waits until the gateway has reloaded it.
    fn reload_root_crl(&self, inter_revoked: bool) {
        let reloads = "ward_gateway_reloads_total{part=\"tls\"}";
        let before = self.metric(reloads);
        write_root_crl(
            self.dir.path(),
            &self.root,
            &self.inter_serial,
            inter_revoked,
        );
        self.sighup();
        wait_until("TLS reload", Duration::from_secs(15), || {
            self.metric(reloads) > before
        });
    }

    /// curl as `client`, GET `path` on the route.
    fn curl(&self, path: &str, extra: &[&str]) -> Command {
        let mut c = self.curl_command(Some("client"), "app.test");
        c.args(extra).arg(self.url("app.test", path));
        c
    }

    /// HTTP/3 GET as `client`: the status, or `None` if refused.
    fn h3_get(&self, path: &str) -> Option<u16> {
        let out = self
            .h3_client_command(Some("client"), path)
            .args(["--timeout", "10"])
            .output()
            .unwrap();
        match out.status.code() {
            Some(0) => String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("status: "))
                .and_then(|s| s.parse().ok()),
            Some(2) => None,
            other => panic!(
                "h3_client.py failed ({other:?}): {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    fn get(&self, path: &str) -> Output {
        self.curl(
            path,
            &["--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}"],
        )
        .output()
        .unwrap()
    }
}

/// The root's CRL in `dir`, with or without the intermediate on it.
fn write_root_crl(
    dir: &Path,
    root: &CertifiedIssuer<'static, KeyPair>,
    inter_serial: &SerialNumber,
    inter_revoked: bool,
) {
    let revoked = if inter_revoked {
        vec![inter_serial.clone()]
    } else {
        vec![]
    };
    atomic_write(&dir.join("root.crl"), crl_pem(root, &revoked).as_bytes());
}

fn code(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_client_under_a_revoked_intermediate_is_refused_until_the_root_lifts_it() {
    let gw = Gateway::start(true, false);
    let revoked = "ward_gateway_handshakes_total{reason=\"revoked\",result=\"failed\"}";

    // The leaf itself is on no CRL; only its intermediate is, on the root's.
    let out = gw.get("/hello");
    assert!(
        !out.status.success() && code(&out) == "000",
        "let through under a revoked intermediate: {} {}",
        code(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    // TLS 1.3: the refusal is seen on the first read (56) or write (55);
    // inside the handshake: 35.
    let exit = out.status.code().unwrap();
    assert!([35, 55, 56, 58].contains(&exit), "curl exit {exit}");
    wait_until("revoked handshake counted", Duration::from_secs(5), || {
        gw.metric(revoked) >= 1.0
    });
    // HTTP/3 shares the verifier.
    assert_eq!(gw.h3_get("/hello"), None, "let through over HTTP/3");
    wait_until(
        "revoked QUIC handshake counted",
        Duration::from_secs(5),
        || {
            gw.metric("ward_gateway_quic_handshakes_total{reason=\"revoked\",result=\"failed\"}")
                >= 1.0
        },
    );
    assert_eq!(gw.upstream.count(), 0, "nothing reached the upstream");

    // The root's new CRL no longer lists the intermediate: same client,
    // same certificate, in after the reload.
    gw.reload_root_crl(false);
    let out = gw.get("/hello");
    assert_eq!(
        code(&out),
        "200",
        "refused after the intermediate was lifted: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    assert_eq!(gw.h3_get("/hello"), Some(200));
    assert_eq!(gw.upstream.count(), 2);

    // Revoked again while the client streams: the open connection is
    // re-checked against the new CRL and closed long before the stream's
    // 20 s are up.
    let closed = "ward_gateway_rechecks_closed_total{reason=\"revoked_or_untrusted\"}";
    let closed_before = gw.metric(closed);
    // Killed on drop if the assertion below fails.
    let mut stream = common::Proc::spawn(
        "curl streaming under a revoked intermediate",
        gw.curl("/stream", &["--max-time", "30", "-o", "/dev/null"]),
        &gw.path("curl-stream.log"),
    );
    wait_until("stream started", Duration::from_secs(10), || {
        gw.upstream.count() == 3
    });
    gw.reload_root_crl(true);
    // Panics (the connection was kept open) unless curl ends within 10 s.
    stream.wait(Duration::from_secs(10));
    wait_until("re-check close counted", Duration::from_secs(5), || {
        gw.metric(closed) > closed_before
    });
    let out = gw.get("/hello");
    assert_eq!(code(&out), "000", "a new handshake got through");
}

/// An intermediate in the trust bundle is a trust anchor, beyond the reach
/// of its root's CRL: the gateway says so in its log rather than let the
/// operator believe the revocation works.
#[test]
fn an_intermediate_in_the_trust_bundle_is_reported_as_never_checked() {
    let gw = Gateway::start(true, true);
    let log = gw.log();
    let warning = log
        .lines()
        .find(|l| l.contains("never checked for revocation"))
        .unwrap_or_else(|| panic!("no warning about the intermediate:\n{log}"));
    assert!(
        warning.contains("WARN") && warning.contains("ward test issuing"),
        "{warning}"
    );
    assert_eq!(
        log.matches("never checked for revocation").count(),
        1,
        "only the intermediate is reported, not the root:\n{log}"
    );
}
