//! `ward agent` end to end with real processes: the real CA (`ward ca
//! serve` on a SoftHSM2 token) issuing 45-second certificates, and the real
//! agent. One long scenario, because every step builds on the previous
//! one's files and each process setup costs seconds on a small CI box:
//!
//! enrol (refused on a wrong fingerprint, then accepted; a used token is
//! refused) → renewals observed on disk with new serials and new keys, the
//! hook running after each → `ward agent status` and metrics → the CA
//! stopped (the agent backs off and says so), restarted (the agent renews
//! before expiry) → the agent SIGKILLed at random moments across renewals,
//! leaving a valid matching pair every time → status unhealthy once expired.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::agent::*;

const WEB: &str = "spiffe://corp.example/ns/prod/sa/web";

fn metrics(port: u16) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn serial(dir: &Path) -> String {
    current(dir).map(|p| p.info.serial).unwrap_or_default()
}

fn state(dir: &Path) -> serde_json::Value {
    std::fs::read(dir.join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

#[test]
fn enrol_renew_hook_outage_and_sigkill_keep_a_valid_pair() {
    let mut w = World::new("agent-life", "45s");
    w.start_ca();
    let out_dir = w.path("web");
    let token = w.token_file(WEB, "web.token");
    let secret = std::fs::read_to_string(&token).unwrap().trim().to_string();

    // ---- enrolment: a wrong pin is refused with both fingerprints, and
    // nothing is sent (the token stays usable).
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let out = w.enroll(&token, &out_dir, &wrong);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&wrong) && err.contains(&w.fingerprint),
        "{err}"
    );
    assert!(current(&out_dir).is_err());

    let out = w.enroll(&token, &out_dir, &w.fingerprint);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains(&secret) && !String::from_utf8_lossy(&out.stderr).contains(&secret));
    let first = current(&out_dir).unwrap();
    assert_eq!(first.info.identity, WEB);
    assert!(stdout.contains(&first.info.serial), "{stdout}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&out_dir.join("key.pem")), 0o600);
    assert_eq!(mode(&out_dir), 0o700);
    assert_eq!(
        std::fs::read_to_string(out_dir.join("bundle.pem")).unwrap(),
        std::fs::read_to_string(w.path("root.pem")).unwrap()
    );
    // cert.pem is leaf + intermediate.
    let chain = std::fs::read_to_string(out_dir.join("cert.pem")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);

    // The token is single-use.
    let again = w.enroll(&token, &w.path("web2"), &w.fingerprint);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(err.contains("already used"), "{err}");
    assert!(
        !err.contains(&secret),
        "the token leaked into an error: {err}"
    );

    // ---- renewals with a hook.
    let metrics_port = free_port();
    let agent_toml = w.path("agent.toml");
    std::fs::write(
        &agent_toml,
        format!(
            r#"metrics_listen = "127.0.0.1:{metrics_port}"

[identity.web]
ca = "{ca}"
dir = "web"
crl_file = "web-ca.crl"
retry_max_secs = 4

[identity.web.hook]
command = ["sh", "-c", "echo $WARD_SERIAL >> {hook_log}"]
"#,
            ca = w.ca_url(),
            hook_log = w.path("hook.log").display()
        ),
    )
    .unwrap();
    let cfg = agent_toml.to_str().unwrap().to_string();
    let agent_args = ["agent", "run", "--config", cfg.as_str()];
    let mut agent = w.spawn("ward agent run", &agent_args, "agent.log");
    let root = w.dir.path().to_path_buf();
    let read = |n: &str| std::fs::read_to_string(root.join(n)).unwrap_or_default();
    let log = || read("agent.log") + &read("ca.log");

    let mut serials = vec![first.info.serial.clone()];
    let mut keys = BTreeSet::from([first.info.spki.clone()]);
    for _ in 0..2 {
        let before = serials.last().unwrap().clone();
        wait_until(
            "a renewal",
            Duration::from_secs(40),
            || {
                let s = serial(&out_dir);
                !s.is_empty() && s != before
            },
            log,
        );
        let p = current(&out_dir).unwrap();
        assert_eq!(p.info.identity, WEB);
        assert!(keys.insert(p.info.spki.clone()), "a renewal reused a key");
        serials.push(p.info.serial.clone());
        let s = p.info.serial.clone();
        wait_until(
            "the hook after the renewal",
            Duration::from_secs(10),
            || w.log("hook.log").lines().any(|l| l == s),
            log,
        );
    }
    let hooked: Vec<String> = w.log("hook.log").lines().map(str::to_string).collect();
    assert_eq!(hooked, serials[1..], "one hook run per renewal, in order");
    // The CRL file was fetched after renewing and parses.
    let crl = std::fs::read(w.path("web-ca.crl")).unwrap();
    assert!(crl.first() == Some(&0x30), "CRL is DER");

    let status = w.ward(&["agent", "status", "--config", &cfg]);
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.status.success(), "{text}");
    assert!(
        text.contains(serials.last().unwrap()) && text.contains(WEB),
        "{text}"
    );
    assert!(
        text.contains("next renewal:") && text.contains("last error:    none"),
        "{text}"
    );

    let m = metrics(metrics_port);
    assert!(
        metric(
            &m,
            "ward_agent_renewals_total{identity=\"web\",result=\"ok\"}"
        ) >= 2.0,
        "{m}"
    );
    let to_expiry = metric(&m, "ward_agent_seconds_to_expiry{identity=\"web\"}");
    assert!(to_expiry > 0.0 && to_expiry <= 45.0, "{m}");

    // ---- CA outage: the agent retries with backoff and says so; after the
    // CA comes back it renews before the certificate expires.
    w.stop_ca();
    let during = current(&out_dir).unwrap();
    wait_until(
        "failed renewals while the CA is down",
        Duration::from_secs(40),
        || state(&out_dir)["failures"].as_u64().unwrap_or(0) >= 2,
        log,
    );
    let st = state(&out_dir);
    assert!(
        st["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("connecting"),
        "{st}"
    );
    let m = metrics(metrics_port);
    assert!(
        metric(
            &m,
            "ward_agent_renewals_total{identity=\"web\",result=\"error\"}"
        ) >= 2.0,
        "{m}"
    );
    assert!(log().contains("renewal failed"), "{}", log());
    let status = w.ward(&["agent", "status", "--config", &cfg]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("connecting"),
        "{status:?}"
    );
    assert_eq!(serial(&out_dir), during.info.serial);
    assert!(
        SystemTime::now() < during.info.not_after,
        "outage outlived the certificate"
    );

    w.start_ca();
    wait_until(
        "a renewal after the CA is back",
        Duration::from_secs(30),
        || serial(&out_dir) != during.info.serial,
        log,
    );
    assert!(
        SystemTime::now() < during.info.not_after,
        "renewed only after the old certificate expired"
    );
    wait_until(
        "the error to clear",
        Duration::from_secs(10),
        || state(&out_dir)["last_error"].is_null(),
        log,
    );

    // ---- SIGKILL at random moments across renewals: the pair on disk is
    // always complete and matching, and renewal still makes progress.
    agent.kill();
    let start_serial = serial(&out_dir);
    let mut seen = BTreeSet::new();
    let t0 = std::time::Instant::now();
    let mut kills = 0;
    while t0.elapsed() < Duration::from_secs(25) || seen.len() < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no progress under kills:\n{}",
            log()
        );
        let mut a = w.spawn("ward agent run", &agent_args, "agent.log");
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        std::thread::sleep(Duration::from_millis(200 + u64::from(nanos % 2800)));
        a.kill();
        kills += 1;
        let p = current(&out_dir).unwrap_or_else(|e| panic!("after kill {kills}: {e}\n{}", log()));
        // read_current already checked that the key matches the certificate.
        assert_eq!(p.info.identity, WEB);
        seen.insert(p.info.serial.clone());
        // Old versions are pruned, never the current one.
        assert!(p.dir.join("cert.pem").exists());
    }
    assert!(
        seen.iter().any(|s| *s != start_serial),
        "no renewal completed across {kills} kills"
    );

    // ---- with the CA gone for good, the certificate expires and status
    // turns unhealthy (non-zero exit), naming re-enrolment.
    w.stop_ca();
    let last = current(&out_dir).unwrap();
    let wait = last
        .info
        .not_after
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    std::thread::sleep(wait + Duration::from_secs(1));
    let status = w.ward(&["agent", "status", "--config", &cfg]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(!status.status.success(), "{text}");
    assert!(
        text.contains("EXPIRED") && text.contains("re-enrol"),
        "{text}"
    );
}
