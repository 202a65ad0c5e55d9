//! gRPC through `ward gateway run` with grpcio at both ends
//! (`tests/clients/grpc_peer.py`): a real gRPC server as the upstream of an
//! `http2 = true` route (h2c prior knowledge) and a real gRPC client over
//! mTLS. Unary and server-streaming calls, the upstream's status and
//! trailers, and the gateway's own refusals as gRPC statuses. Only
//! 127.0.0.1; every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

mod common;

use common::gateway::TestGateway;
use common::pki::{CLIENT, Leaf, Pki, dns};
use common::{Proc, free_port};

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/grpc_peer.py");

const POLICY: &str = r#"{
  "Version": "2026-11-01",
  "Statement": [
    {"Sid": "ClientCallsEcho", "Effect": "Allow",
     "Principal": {"Spiffe": "spiffe://corp.example/ns/test/sa/client"},
     "Action": "http:POST", "Resource": ["route/grpc/ward.test.Echo/*", "route/grpcdown/*"]},
    {"Sid": "NobodyCallsAdmin", "Effect": "Deny", "Principal": "*",
     "Action": "http:*", "Resource": "route/grpc/ward.test.Echo/Admin"}
  ]
}"#;

/// A gateway with a gRPC route to a grpcio server and one to a dead port.
struct World {
    gw: TestGateway,
    upstream: Proc,
}

common::gateway::deref_to_test_gateway!(World);

impl World {
    fn start() -> World {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(
            dir.path(),
            "ward grpc test root",
            "ward grpc test issuing",
            vec![dns("grpc.test"), dns("grpcdown.test"), dns("nowhere.test")],
        );
        pki.issue("client", &Leaf::client(CLIENT), false);
        let mut server = Command::new("python3");
        server.args([PEER, "server"]);
        let upstream = Proc::spawn_lines("grpc_peer server", server, &dir.path().join("peer.log"));
        let line = upstream.line(Duration::from_secs(20)).unwrap_or_else(|| {
            panic!(
                "grpc_peer server did not start (is grpcio installed?):\n{}",
                std::fs::read_to_string(dir.path().join("peer.log")).unwrap_or_default()
            )
        });
        let up: u16 = line.strip_prefix("port ").unwrap().parse().unwrap();
        let dead = free_port();
        let gw = TestGateway::builder(dir, pki, POLICY).start(&format!(
            r#"
[limits]
upstream_connect_timeout_secs = 2
upstream_timeout_secs = 1

[[http_routes]]
name = "grpc"
host = "grpc.test"
upstream = "http://127.0.0.1:{up}"
http2 = true

[[http_routes]]
name = "grpcdown"
host = "grpcdown.test"
upstream = "http://127.0.0.1:{dead}"
http2 = true
"#
        ));
        World { gw, upstream }
    }

    /// One call with the client certificate: the JSON that
    /// `grpc_peer.py client` prints.
    fn call(&self, authority: &str, method: &str, stream: bool, data: &str) -> Value {
        let mut c = Command::new("python3");
        c.args([PEER, "client", "--target"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["--authority", authority, "--ca"])
            .arg(self.path("root.pem"))
            .arg("--cert")
            .arg(self.path("client.pem"))
            .arg("--key")
            .arg(self.path("client.key"))
            .args(["--method", method, "--data", data, "--timeout", "10"]);
        if stream {
            c.arg("--stream");
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "grpc_peer client failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
        })
    }

    /// The next call the upstream received, as it logged it.
    fn upstream_saw(&self) -> Value {
        let line = self
            .upstream
            .line(Duration::from_secs(10))
            .expect("the upstream logged a call");
        serde_json::from_str(&line).unwrap()
    }
}

fn requests(route: &str, decision: &str, status: &str) -> String {
    format!(
        "ward_gateway_requests_total{{decision=\"{decision}\",route=\"{route}\",status=\"{status}\"}}"
    )
}

/// The decision id named in a gateway-made `grpc-message`.
fn decision_in(details: &str) -> &str {
    details
        .split_once("(decision ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no decision id in {details:?}"))
}

#[test]
fn unary_and_server_streaming_calls_pass_with_identity_and_trailers() {
    let w = World::start();

    let r = w.call("grpc.test", "/ward.test.Echo/Unary", false, "hello");
    assert_eq!(r["code"], "OK", "{r}\n{}", w.log());
    assert_eq!(r["messages"], serde_json::json!(["echo:hello"]));
    assert_eq!(
        r["trailing_metadata"]["x-upstream-trailer"], "yes",
        "the upstream's trailers reach the client: {r}"
    );
    let saw = w.upstream_saw();
    assert_eq!(saw["method"], "Unary");
    assert_eq!(saw["identity"], CLIENT);
    assert_eq!(saw["assertion"], true, "{saw}");
    let id = saw["decision_id"].as_str().unwrap();
    let logged = w.decision(id).expect("the call's decision is logged");
    assert_eq!(logged["action"], "http:POST");
    assert_eq!(logged["resource"], "route/grpc/ward.test.Echo/Unary");
    assert_eq!(logged["context"]["ward:Protocol"], "h2");

    // Five messages 200 ms apart arrive in order, as they are sent: the
    // response streams through the gateway, it is not buffered whole.
    let r = w.call("grpc.test", "/ward.test.Echo/Stream", true, "5");
    assert_eq!(r["code"], "OK", "{r}");
    assert_eq!(
        r["messages"],
        serde_json::json!(["msg-0", "msg-1", "msg-2", "msg-3", "msg-4"])
    );
    let times: Vec<f64> = r["times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    assert!(
        times[4] - times[0] >= 0.6,
        "messages arrived together, not as streamed: {times:?}"
    );
    assert_eq!(w.upstream_saw()["method"], "Stream");
    assert_eq!(w.metric(&requests("grpc", "allow", "200")), 2.0);
}

#[test]
fn the_upstreams_status_and_message_reach_the_client_unchanged() {
    let w = World::start();

    // Trailers-only from the upstream, with a message that needs
    // percent-encoding on the wire.
    let r = w.call("grpc.test", "/ward.test.Echo/Fail", false, "");
    assert_eq!(r["code"], "RESOURCE_EXHAUSTED", "{r}\n{}", w.log());
    assert_eq!(r["details"], "quota 100% used \u{2014} caf\u{e9}");
    assert!(r["trailing_metadata"].get("x-ward-decision-id").is_some());

    // Status in real trailers after two messages.
    let r = w.call("grpc.test", "/ward.test.Echo/Stream", true, "fail");
    assert_eq!(r["messages"], serde_json::json!(["msg-0", "msg-1"]), "{r}");
    assert_eq!(r["code"], "DATA_LOSS", "{r}");
    assert_eq!(r["details"], "lost the rest after 2 messages");
    assert_eq!(w.upstream_saw()["method"], "Fail");
    assert_eq!(w.upstream_saw()["method"], "Stream");
}

#[test]
fn a_denied_method_is_permission_denied_with_its_decision_id_and_never_reaches_the_upstream() {
    let w = World::start();

    let r = w.call("grpc.test", "/ward.test.Echo/Admin", false, "");
    assert_eq!(r["code"], "PERMISSION_DENIED", "{r}\n{}", w.log());
    let details = r["details"].as_str().unwrap();
    assert!(details.contains("denied by policy on route grpc"), "{r}");
    let id = decision_in(details);
    assert_eq!(
        r["trailing_metadata"]["x-ward-decision-id"], id,
        "the header and the message name the same decision: {r}"
    );
    let logged = w.decision(id).expect("the denial is in the decision log");
    assert_eq!(logged["result"], "Deny");
    assert_eq!(logged["matched_sid"], "NobodyCallsAdmin");
    assert_eq!(logged["resource"], "route/grpc/ward.test.Echo/Admin");
    // Metrics keep the real outcome: a denial, counted as 403.
    assert_eq!(w.metric(&requests("grpc", "deny", "403")), 1.0);
    assert_eq!(w.metric(&requests("grpc", "deny", "200")), 0.0);

    // The next call the upstream sees is this allowed one: the denied call
    // never reached it.
    let r = w.call("grpc.test", "/ward.test.Echo/Unary", false, "after");
    assert_eq!(r["code"], "OK", "{r}");
    assert_eq!(w.upstream_saw()["method"], "Unary");

    // No route for the host: UNIMPLEMENTED, no decision to name.
    let r = w.call("nowhere.test", "/ward.test.Echo/Unary", false, "");
    assert_eq!(r["code"], "UNIMPLEMENTED", "{r}");
    assert!(
        r["details"]
            .as_str()
            .unwrap()
            .contains("no route for this host and path"),
        "{r}"
    );
    assert_eq!(w.metric(&requests("", "none", "404")), 1.0);
}

#[test]
fn an_upstream_that_is_down_is_unavailable_and_a_slow_one_deadline_exceeded() {
    let w = World::start();
    let r = w.call("grpcdown.test", "/ward.test.Echo/Unary", false, "");
    assert_eq!(r["code"], "UNAVAILABLE", "{r}\n{}", w.log());
    let details = r["details"].as_str().unwrap();
    assert!(
        details.starts_with("bad gateway: cannot connect to the upstream on route grpcdown"),
        "{r}"
    );
    let id = decision_in(details);
    assert!(w.decisions().iter().any(|d| d["decision_id"] == id));
    assert_eq!(w.metric(&requests("grpcdown", "allow", "502")), 1.0);

    // The gateway waits 1 s for the upstream's answer; this one takes 3 s.
    let r = w.call("grpc.test", "/ward.test.Echo/Slow", false, "");
    assert_eq!(r["code"], "DEADLINE_EXCEEDED", "{r}");
    let details = r["details"].as_str().unwrap();
    assert!(
        details.starts_with("upstream timed out on route grpc"),
        "{r}"
    );
    decision_in(details);
    assert_eq!(w.upstream_saw()["method"], "Slow");
    assert_eq!(w.metric(&requests("grpc", "allow", "504")), 1.0);
}
