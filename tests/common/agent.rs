//! Shared by `tests/agent_*.rs`, `tests/audit_*.rs` and `tests/connect_*.rs`: a real SoftHSM2
//! token in a temp dir, the real CA (`ward ca serve`) as a child process
//! that can be stopped and restarted on the same port, and helpers to run
//! `ward` with bounded waits. Every child is killed on drop; only
//! 127.0.0.1 is used.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const PIN: &str = "24681357";
pub const TD: &str = "corp.example";

pub use super::{Proc, free_port};

/// Polls `f` every 100 ms until it is true; panics with `what` and the
/// output of `context` after `timeout`.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One test's world: a token directory, a CA config, and the CA process.
pub struct World {
    pub dir: tempfile::TempDir,
    pub softhsm_conf: PathBuf,
    pub ca_config: PathBuf,
    pub ca_port: u16,
    pub fingerprint: String,
    pub ca: Option<Proc>,
}

impl World {
    /// Initialises a SoftHSM2 token and a CA whose workload certificates
    /// live `workload_ttl` (e.g. `45s`).
    pub fn new(label: &str, workload_ttl: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let softhsm_conf = super::hsm::init_token(dir.path(), label, PIN);
        let uri = |o: &str| super::hsm::key_uri(label, o);
        let ca_port = free_port();
        let ca_config = dir.path().join("ca.toml");
        std::fs::write(
            &ca_config,
            format!(
                "trust_domain = \"{TD}\"\ndatabase = \"ca.db\"\n[keys]\nroot = \"{}\"\nissuing = \"{}\"\n\
                 [server]\nlisten = \"127.0.0.1:{ca_port}\"\ndns_names = [\"localhost\"]\n\
                 [profiles]\nworkload_ttl = \"{workload_ttl}\"\n",
                uri("root"),
                uri("issuing")
            ),
        )
        .unwrap();
        let mut w = World {
            dir,
            softhsm_conf,
            ca_config,
            ca_port,
            fingerprint: String::new(),
            ca: None,
        };
        let root_out = w.path("root.pem");
        let out = w.ward_ok(&[
            "ca",
            "init",
            "--config",
            w.ca_config.to_str().unwrap(),
            "--root-out",
            root_out.to_str().unwrap(),
        ]);
        w.fingerprint = out
            .lines()
            .find_map(|l| l.strip_prefix("root:"))
            .unwrap()
            .trim()
            .to_string();
        assert!(w.fingerprint.starts_with("sha256:"), "{out}");
        w
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn ca_url(&self) -> String {
        format!("https://localhost:{}", self.ca_port)
    }

    /// `ward …` with the HSM environment; waits for it.
    pub fn ward(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ward"))
            .args(args)
            .env("SOFTHSM2_CONF", &self.softhsm_conf)
            .env("WARD_HSM_PIN", PIN)
            .env("WARD_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub fn ward_ok(&self, args: &[&str]) -> String {
        let out = self.ward(args);
        assert!(
            out.status.success(),
            "ward {args:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Starts `ward ca serve` (on the fixed port) and waits for it.
    pub fn start_ca(&mut self) {
        assert!(self.ca.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("ca.log"))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ward"))
            .args(["ca", "serve", "--config"])
            .arg(&self.ca_config)
            .env("SOFTHSM2_CONF", &self.softhsm_conf)
            .env("WARD_HSM_PIN", PIN)
            .env("WARD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let proc = Proc {
            child,
            name: "ward ca serve".into(),
            lines: None,
        };
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("CA did not start:\n{}", self.log("ca.log")));
        assert!(
            line.starts_with("serving "),
            "{line}\n{}",
            self.log("ca.log")
        );
        assert!(line.contains(&self.fingerprint), "{line}");
        self.ca = Some(proc);
    }

    /// SIGKILLs the CA.
    pub fn stop_ca(&mut self) {
        if let Some(mut p) = self.ca.take() {
            p.kill();
        }
    }

    /// A one-time token for `identity`, written to a 0600 file.
    pub fn token_file(&self, identity: &str, name: &str) -> PathBuf {
        let token = self
            .ward_ok(&[
                "ca",
                "token",
                "create",
                "--config",
                self.ca_config.to_str().unwrap(),
                "--identity",
                identity,
                "--ttl",
                "10m",
            ])
            .trim()
            .to_string();
        assert!(token.starts_with("ward1."), "{token}");
        let path = self.path(name);
        std::fs::write(&path, format!("{token}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// `ward agent enroll`.
    pub fn enroll(&self, token: &Path, out: &Path, fingerprint: &str) -> Output {
        self.ward(&[
            "agent",
            "enroll",
            "--ca",
            &self.ca_url(),
            "--fingerprint",
            fingerprint,
            "--token-file",
            token.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    }

    /// Spawns a long-running `ward` child logging to `<log>`.
    pub fn spawn(&self, name: &str, args: &[&str], log: &str) -> Proc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(log))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ward"))
            .args(args)
            .env("WARD_LOG", "info,ward_agent=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        Proc {
            child,
            name: name.into(),
            lines: None,
        }
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop_ca();
    }
}

/// The current pair of an identity directory, checked (key matches cert),
/// or the reason it is not readable.
pub fn current(dir: &Path) -> Result<ward_agent::sink::Pair, String> {
    ward_agent::sink::read_current(dir).map_err(|e| e.to_string())
}
