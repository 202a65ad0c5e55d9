//! The role pages in `docs/` run: every fenced ```sh block right after a
//! `<!-- run -->` line is executed, page by page and in order, as one
//! `bash -euo pipefail` script against a real system, so the pages never
//! rot. Convention (also in `docs/README.md`):
//!
//! - `<!-- run -->` on the line before a ```sh block marks it; unmarked
//!   blocks (placeholders, interactive prompts, production hosts) are not run.
//! - Pages for the policy author, the employee and the auditor run in a
//!   directory where `ward up --dir ./ward-data` is running; the operator's
//!   page runs in an empty directory with a SoftHSM2 token labelled `ward`
//!   and its PIN in `WARD_HSM_PIN` (what the page asks the operator to set up).
//! - The fixed ports in the pages (8443 gateway, 9443 CA, 9090 admin,
//!   15432 `ward connect`) are replaced with free ones; `ward` is on PATH.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::hsm::Hsm;
use common::{Proc, free_port};

const MARK: &str = "<!-- run -->";
const PAGES: [&str; 4] = ["operator", "policy-author", "employee", "auditor"];

fn page(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("docs/{name}.md"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The marked blocks of a page, in order; panics on a marker that is not
/// directly followed by a ```sh block (a typo would silently skip it).
fn run_blocks(name: &str, text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == MARK {
            assert!(
                lines.get(i + 1).map(|l| l.trim()) == Some("```sh"),
                "docs/{name}.md:{}: {MARK} must be directly followed by a ```sh block",
                i + 1
            );
            let mut block = String::new();
            i += 2;
            while i < lines.len() && lines[i].trim() != "```" {
                block.push_str(lines[i]);
                block.push('\n');
                i += 1;
            }
            assert!(i < lines.len(), "docs/{name}.md: unterminated block");
            out.push(block);
        }
        i += 1;
    }
    out
}

struct Ports {
    gateway: u16,
    ca: u16,
    admin: u16,
    connect: u16,
}

fn script(name: &str, ports: &Ports) -> String {
    let blocks = run_blocks(name, &page(name));
    let mut s = String::from("set -euo pipefail\n");
    for b in blocks {
        s.push_str(&b);
    }
    s.replace("8443", &ports.gateway.to_string())
        .replace("9443", &ports.ca.to_string())
        .replace("9090", &ports.admin.to_string())
        .replace("15432", &ports.connect.to_string())
}

/// Runs one page's script in `dir` in its own session (so that anything it
/// left in the background is killed afterwards); panics with its output.
fn run_page(name: &str, dir: &Path, ports: &Ports, envs: &[(String, String)]) {
    let bin_dir = Path::new(common::ward_bin()).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = dir.join(format!("{name}.page.log"));
    let mut cmd = Command::new("setsid");
    cmd.args(["bash", "-x", "-c", &script(name, ports)])
        .current_dir(dir)
        .env("PATH", path)
        .env("WARD_LOG", "warn")
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut p = Proc::spawn(&format!("docs/{name}.md"), cmd, &log);
    let st = p.wait(Duration::from_secs(240));
    // Whatever the page started in the background dies with its session.
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{}", p.pid())])
        .stderr(std::process::Stdio::null())
        .status();
    assert!(
        st.success(),
        "docs/{name}.md failed ({st}); its commands and output:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[test]
fn every_page_has_commands_that_are_run() {
    for name in PAGES {
        let blocks = run_blocks(name, &page(name));
        assert!(!blocks.is_empty(), "docs/{name}.md has no {MARK} block");
    }
}

#[test]
fn the_pages_run_against_a_real_system() {
    let ports = Ports {
        gateway: free_port(),
        ca: free_port(),
        admin: free_port(),
        connect: free_port(),
    };

    // The operator: a CA of their own on a SoftHSM2 token.
    let op = tempfile::tempdir().unwrap();
    let hsm = Hsm::new(op.path(), "ward");
    run_page(
        "operator",
        op.path(),
        &ports,
        &[
            ("SOFTHSM2_CONF".into(), hsm.conf.display().to_string()),
            ("WARD_HSM_PIN".into(), hsm.pin.clone()),
        ],
    );

    // Everyone else: against `ward up`.
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let mut cmd = Command::new(common::ward_bin());
    cmd.args(["up", "--dir", "./ward-data"])
        .args(["--gateway-port", &ports.gateway.to_string()])
        .args(["--ca-port", &ports.ca.to_string()])
        .args(["--admin-port", &ports.admin.to_string()])
        .current_dir(work)
        .env_remove("SOFTHSM2_CONF")
        .env("WARD_LOG", "info");
    let mut up = Proc::spawn_lines("ward up", cmd, &work.join("up.log"));
    up.lines_until(Duration::from_secs(120), |l| l.contains("/metrics"));
    for name in ["policy-author", "employee", "auditor"] {
        run_page(name, work, &ports, &[]);
    }
    up.signal("INT");
    let st = up.wait(Duration::from_secs(30));
    assert!(st.success(), "ward up exit {st}");
}
