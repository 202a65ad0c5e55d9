//! Faults around a real gateway process (issue 10): upstream slow or down,
//! the gateway SIGKILLed and restarted under load, a full disk under the
//! decision log, and a CRL source that disappears. Only 127.0.0.1; every
//! loop and wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::hardening::*;

fn paths(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Slow upstream: 504 after `upstream_timeout_secs`; dead upstream: 502
/// fast; afterwards the gateway holds no extra connections or fds.
#[test]
fn slow_and_dead_upstreams_give_504_and_502_and_leave_nothing_stuck() {
    let gw = Gateway::start("upstream_timeout_secs = 2\n");
    let (_, fds_before) = rss_and_fds(gw.pid());
    let start = Instant::now();
    let slow = gw.statuses(Some("client"), "slow.test", &paths("/slow", 3));
    assert_eq!(slow, vec![504; 3]);
    assert!(
        start.elapsed() < Duration::from_secs(12),
        "{:?}",
        start.elapsed()
    );
    let start = Instant::now();
    let down = gw.statuses(Some("client"), "down.test", &paths("/x", 5));
    assert_eq!(down, vec![502; 5]);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    // Parallel slow requests on separate connections, then everything drains.
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let port = gw.port;
            let dir = gw.dir.path().to_path_buf();
            std::thread::spawn(move || {
                Command::new("curl")
                    .args([
                        "-sS",
                        "--max-time",
                        "15",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code}",
                    ])
                    .arg("--cacert")
                    .arg(dir.join("root.pem"))
                    .arg("--cert")
                    .arg(dir.join("client.pem"))
                    .arg("--key")
                    .arg(dir.join("client.key"))
                    .arg("--resolve")
                    .arg(format!("slow.test:{port}:127.0.0.1"))
                    .arg(format!("https://slow.test:{port}/slow-par"))
                    .output()
                    .unwrap()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(String::from_utf8_lossy(&h.join().unwrap().stdout), "504");
    }
    assert_eq!(gw.status(Some("client"), "app.test", "/v1/after"), 200);
    // The slow upstream finishes its sleeps; the gateway drops what it pooled.
    wait_until("fds back near the start", 20, || {
        rss_and_fds(gw.pid()).1 <= fds_before + 4
    });
    eprintln!(
        "upstream faults: 3x504, 5x502, 8 parallel 504, fds {fds_before} -> {}",
        rss_and_fds(gw.pid()).1
    );
}

/// SIGKILL under load, restart on the same port: requests fail only while
/// no gateway runs, and every request after the restart is decided and
/// answered correctly.
#[test]
fn gateway_killed_under_load_and_restarted_serves_again() {
    let mut gw = Gateway::start("");
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let wrong = Arc::new(AtomicUsize::new(0));
    let port = gw.port;
    let dir = gw.dir.path().to_path_buf();
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let (stop, ok, failed, wrong, dir) = (
                stop.clone(),
                ok.clone(),
                failed.clone(),
                wrong.clone(),
                dir.clone(),
            );
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(40);
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let mut c = Command::new("curl");
                    c.args(["-sS", "--max-time", "5", "--cacert"])
                        .arg(dir.join("root.pem"))
                        .arg("--cert")
                        .arg(dir.join("client.pem"))
                        .arg("--key")
                        .arg(dir.join("client.key"))
                        .arg("--resolve")
                        .arg(format!("app.test:{port}:127.0.0.1"));
                    for i in 0..10 {
                        // Every third worker asks for the denied admin area.
                        let p = if w == 2 { "/admin" } else { "/v1/load" };
                        c.args(["-o", "/dev/null", "-w", "%{http_code}\\n"])
                            .arg(format!("https://app.test:{port}{p}{i}"));
                    }
                    let out = c.output().unwrap();
                    for l in String::from_utf8_lossy(&out.stdout).lines() {
                        match (w, l.trim()) {
                            (2, "403") | (0 | 1, "200") => ok.fetch_add(1, Ordering::SeqCst),
                            (_, "000") => failed.fetch_add(1, Ordering::SeqCst),
                            _ => wrong.fetch_add(1, Ordering::SeqCst),
                        };
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let before_kill = ok.load(Ordering::SeqCst);
    Command::new("kill")
        .args(["-KILL", &gw.pid().to_string()])
        .status()
        .unwrap();
    let _ = gw.child.as_mut().unwrap().wait();
    std::thread::sleep(Duration::from_millis(500));
    gw.spawn();
    let at_restart = ok.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    let (ok, failed, wrong) = (
        ok.load(Ordering::SeqCst),
        failed.load(Ordering::SeqCst),
        wrong.load(Ordering::SeqCst),
    );
    eprintln!("kill -9 under load: {ok} right, {failed} transport errors, {wrong} wrong");
    assert!(before_kill > 0);
    assert!(ok > at_restart, "nothing served after the restart");
    assert_eq!(wrong, 0, "a request got a wrong answer");
    assert_eq!(gw.status(Some("client"), "app.test", "/v1/final"), 200);
    assert_eq!(gw.status(Some("client"), "app.test", "/admin"), 403);
}

/// Unmounts the tmpfs on drop.
struct Mount(std::path::PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The decision log's disk fills up: requests keep being decided (allowed
/// ones served, denied ones refused) and the lost lines are counted in
/// `ward_gateway_decision_log_lost_total` and logged.
#[test]
fn full_disk_under_the_decision_log_keeps_deciding_and_counts_the_gap() {
    let logdir = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16k", "tmpfs"])
        .arg(logdir.path())
        .status()
        .is_ok_and(|s| s.success());
    let _m = mounted.then(|| Mount(logdir.path().to_path_buf()));
    // Without mount rights, /dev/full stands in for a full disk.
    let log = if mounted {
        logdir.path().join("decisions.jsonl")
    } else {
        std::path::PathBuf::from("/dev/full")
    };
    let gw = Gateway::start_with(&format!("decision_log = \"{}\"\n", log.display()), "");
    wait_until("a first answer", 15, || {
        gw.status(Some("client"), "app.test", "/v1/first") == 200
    });
    let allowed = gw.statuses(Some("client"), "app.test", &paths("/v1/fill", 120));
    let denied = gw.statuses(Some("client"), "app.test", &paths("/admin", 30));
    assert!(
        allowed.iter().all(|s| *s == 200),
        "{allowed:?}\n{}",
        gw.log()
    );
    assert!(denied.iter().all(|s| *s == 403), "{denied:?}");
    let lost = gw.metric("ward_gateway_decision_log_lost_total");
    let logged = std::fs::read_to_string(&log)
        .map(|t| t.lines().count())
        .unwrap_or(0);
    eprintln!("disk full (tmpfs: {mounted}): 151 decided, {logged} logged, {lost} lost");
    assert!(lost > 0.0, "no gap counted");
    assert!(gw.log().contains("cannot write the decision log"));
    assert!(gw.app.targets().iter().all(|t| !t.starts_with("/admin")));
}

/// The CRL file vanishes (CA down, nothing refreshes it): the gateway keeps
/// the last good CRL, keeps serving, and reports the CRL's age; a revoked
/// client stays refused.
#[test]
fn a_missing_crl_keeps_the_last_one_and_reports_its_age() {
    let mut gw = Gateway::start("");
    let s = gw.pki.issue_client("victim", CLIENT);
    gw.pki.revoke(s);
    gw.sighup();
    wait_until("victim refused", 15, || {
        gw.status(Some("victim"), "app.test", "/v1/x") != 200
    });
    std::fs::remove_file(gw.path("inter.crl")).unwrap();
    gw.sighup();
    std::thread::sleep(Duration::from_secs(2));
    assert!(gw.alive());
    assert_eq!(gw.status(Some("client"), "app.test", "/v1/x"), 200);
    assert_ne!(gw.status(Some("victim"), "app.test", "/v1/x"), 200);
    let age = gw.metric("ward_gateway_crl_age_seconds");
    assert!(age >= 60.0, "CRL age not reported: {age}");
}
