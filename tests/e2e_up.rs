//! `ward up` as a newcomer uses it: start it, paste the commands it prints,
//! and check they behave as printed; Ctrl-C stops it with exit 0; a second
//! start on the same directory resumes the same CA; a busy port is refused
//! with the option that moves it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Proc, free_port, sh};

const CLIENT: &str = "spiffe://corp.example/ns/demo/sa/client";

/// The banner of one `ward up`, split into what the test needs.
struct Banner {
    text: String,
    root: String,
    allowed: String,
    denied: String,
    no_cert: String,
    audit: String,
    metrics: String,
}

/// The command printed on the line after the heading that starts with
/// `heading`.
fn command_after(lines: &[String], heading: &str) -> String {
    let i = lines
        .iter()
        .position(|l| l.starts_with(heading))
        .unwrap_or_else(|| panic!("no heading {heading:?} in:\n{}", lines.join("\n")));
    lines[i + 1].trim().to_string()
}

struct Up {
    proc: Proc,
    banner: Banner,
}

fn start(work: &Path, ports: (u16, u16, u16)) -> Up {
    let mut cmd = Command::new(common::ward_bin());
    cmd.args(["up", "--dir", "./data"])
        .args(["--gateway-port", &ports.0.to_string()])
        .args(["--ca-port", &ports.1.to_string()])
        .args(["--admin-port", &ports.2.to_string()])
        .current_dir(work)
        .env_remove("SOFTHSM2_CONF")
        .env("WARD_LOG", "info");
    let proc = Proc::spawn_lines("ward up", cmd, &work.join("up.log"));
    let lines = proc.lines_until(Duration::from_secs(120), |l| l.contains("/metrics"));
    let root = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("root "))
        .expect("root fingerprint line")
        .to_string();
    let banner = Banner {
        text: lines.join("\n"),
        root,
        allowed: command_after(&lines, "Allowed by policy"),
        denied: command_after(&lines, "Denied by policy"),
        no_cert: command_after(&lines, "No client certificate"),
        audit: command_after(&lines, "Certificates the CA issued"),
        metrics: command_after(&lines, "Metrics"),
    };
    Up { proc, banner }
}

fn log(work: &Path) -> String {
    std::fs::read_to_string(work.join("up.log")).unwrap_or_default()
}

#[test]
fn ward_up_prints_commands_that_behave_as_printed_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let ports = (free_port(), free_port(), free_port());
    let mut up = start(work, ports);
    let b = &up.banner;
    assert!(b.text.contains("created ./data"), "{}", b.text);
    assert!(b.allowed.starts_with("curl "), "{}", b.text);
    let limit = Duration::from_secs(20);

    // Allowed: 200, and the upstream saw the client's identity.
    let out = sh(work, &b.allowed, &[], limit);
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && body.contains(&format!("X-Ward-Identity: {CLIENT}")),
        "allowed call: {body}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        log(work)
    );
    let code = sh(
        work,
        &format!("{} -o /dev/null -w '%{{http_code}}'", b.allowed),
        &[],
        limit,
    );
    assert_eq!(String::from_utf8_lossy(&code.stdout), "200");

    // Denied by policy: 403 with a decision id that is in the decision log.
    let out = sh(work, &b.denied, &[], limit);
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "denied call: {out:?}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("403 body is JSON");
    let denied_id = v["decision_id"].as_str().expect("decision id").to_string();
    let code = sh(
        work,
        &format!("{} -o /dev/null -w '%{{http_code}}'", b.denied),
        &[],
        limit,
    );
    assert_eq!(String::from_utf8_lossy(&code.stdout), "403");

    // No certificate: refused in the handshake (curl fails, no HTTP status).
    let out = sh(work, &b.no_cert, &[], limit);
    // (Usually exit 56 "alert certificate required"; when the gateway's
    // close wins the race, curl reports the closed connection instead.)
    assert!(!out.status.success(), "no-cert call succeeded: {out:?}");
    assert!(out.stdout.is_empty(), "no-cert call got an answer: {out:?}");

    // The audit command shows the demo client's certificate.
    let out = sh(work, &b.audit, &[], limit);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(CLIENT),
        "audit: {out:?}"
    );
    // The metrics URL serves the gateway's metrics.
    let out = sh(work, &b.metrics, &[], limit);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ward_gateway_requests_total")
            || String::from_utf8_lossy(&out.stdout).contains("ward_gateway_"),
        "metrics: {out:?}"
    );

    let decisions = std::fs::read_to_string(work.join("data/gateway/decisions.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = decisions
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["decision_id"] == denied_id.as_str() && l["result"] == "Deny"),
        "{decisions}"
    );
    assert!(lines.iter().any(|l| l["result"] == "Allow"), "{decisions}");

    // Secrets on disk are private.
    use std::os::unix::fs::PermissionsExt;
    for secret in ["data/hsm-pin", "data/softhsm/so-pin"] {
        let p = work.join(secret);
        if p.exists() {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{secret} is {mode:o}");
        }
    }

    // Ctrl-C: clean shutdown, exit 0.
    up.proc.signal("INT");
    let st = up.proc.wait(Duration::from_secs(30));
    assert!(st.success(), "exit {st}: {}", log(work));
    let first_root = up.banner.root.clone();
    drop(up);

    // Same directory again: same CA, nothing re-initialised.
    let mut again = start(work, ports);
    assert!(
        again.banner.text.contains("resumed ./data"),
        "{}",
        again.banner.text
    );
    assert_eq!(again.banner.root, first_root, "the CA changed on restart");
    let out = sh(work, &again.banner.allowed, &[], limit);
    assert!(out.status.success(), "allowed after restart: {out:?}");

    // A busy port is refused with the option that moves it.
    let mut busy_cmd = Command::new(common::ward_bin());
    busy_cmd
        .args(["up", "--dir", "./data2"])
        .args(["--gateway-port", &ports.0.to_string()])
        .args(["--ca-port", &free_port().to_string()])
        .args(["--admin-port", &free_port().to_string()])
        .current_dir(work)
        .env("WARD_LOG", "warn");
    let out = busy_cmd.output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--gateway-port"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !work.join("data2").exists(),
        "created state before the port check"
    );

    again.proc.signal("TERM");
    let st = again.proc.wait(Duration::from_secs(30));
    assert!(st.success(), "exit {st} after SIGTERM: {}", log(work));
}

/// Without an HSM (`--file-keys`, as on a machine without SoftHSM2): a loud
/// warning, and the same commands work, also after the in-process agent
/// renewed the gateway's and the client's certificates.
#[test]
fn ward_up_with_file_keys_warns_and_works() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let ports = (free_port(), free_port(), free_port());
    let mut cmd = Command::new(common::ward_bin());
    cmd.args(["up", "--dir", "./data", "--file-keys", "--cert-ttl", "1m"])
        .args(["--gateway-port", &ports.0.to_string()])
        .args(["--ca-port", &ports.1.to_string()])
        .args(["--admin-port", &ports.2.to_string()])
        .current_dir(work)
        .env("WARD_LOG", "warn");
    let mut up = Proc::spawn_lines("ward up --file-keys", cmd, &work.join("up.log"));
    let lines = up.lines_until(Duration::from_secs(120), |l| l.contains("/metrics"));
    let text = lines.join("\n");
    assert!(text.contains("NOT HSM-protected"), "{text}");
    assert!(
        log(work).contains("NOT protected by an HSM"),
        "{}",
        log(work)
    );
    use std::os::unix::fs::PermissionsExt;
    for key in ["root.pem", "issuing.pem", "log.pem"] {
        let mode = std::fs::metadata(work.join("data/ca/keys").join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{key} is {mode:o}");
    }
    let allowed = command_after(&lines, "Allowed by policy");
    let out = sh(work, &allowed, &[], Duration::from_secs(20));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(CLIENT),
        "{out:?}"
    );

    // The in-process agent renews both certificates (1-minute lifetime),
    // the gateway serves its new one, and the printed command still works.
    let serial = |p: &str| {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(work.join(p))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let (gw0, client0) = (
        serial("data/gateway/identity/cert.pem"),
        serial("data/client/cert.pem"),
    );
    common::wait_until("both certificates renewed", Duration::from_secs(90), || {
        serial("data/gateway/identity/cert.pem") != gw0 && serial("data/client/cert.pem") != client0
    });
    let gw1 = serial("data/gateway/identity/cert.pem");
    common::wait_until(
        "the gateway serves its renewed certificate",
        Duration::from_secs(30),
        || {
            let out = sh(
                work,
                &format!(
                    "openssl s_client -connect 127.0.0.1:{} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -serial",
                    ports.0
                ),
                &[],
                Duration::from_secs(10),
            );
            String::from_utf8_lossy(&out.stdout).trim() == gw1
        },
    );
    let out = sh(work, &allowed, &[], Duration::from_secs(20));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(CLIENT),
        "after renewal: {out:?}"
    );

    up.signal("INT");
    let st = up.wait(Duration::from_secs(30));
    assert!(st.success(), "exit {st}: {}", log(work));
}
