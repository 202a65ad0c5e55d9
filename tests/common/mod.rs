//! Shared support for the end-to-end tests (`tests/e2e_*.rs`,
//! `tests/docs_*.rs`): child processes that die with the test, free
//! loopback ports, bounded waits, and a SoftHSM2 token per test.
//!
//! Kept small and stable on purpose: other test files may use it with
//! `mod common;`. Everything listens on 127.0.0.1 only.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Debian's SoftHSM2 module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The `ward` binary under test.
pub fn ward_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ward")
}

/// A child process that is killed (and reaped) when dropped.
pub struct Proc {
    pub name: String,
    pub child: Child,
    /// Lines of stdout, if it was piped with [`Proc::spawn_lines`].
    pub lines: Option<mpsc::Receiver<String>>,
}

impl Proc {
    /// Spawns `cmd` with stdin closed, stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Proc {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        Proc {
            name: name.into(),
            child,
            lines: None,
        }
    }

    /// Spawns `cmd` with stdout read line by line (see [`Proc::line`]) and
    /// stderr appended to `log`.
    pub fn spawn_lines(name: &str, mut cmd: Command, log: &Path) -> Proc {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            name: name.into(),
            child,
            lines: Some(rx),
        }
    }

    /// The next stdout line, waiting at most `timeout`; `None` at the end.
    pub fn line(&self, timeout: Duration) -> Option<String> {
        self.lines.as_ref()?.recv_timeout(timeout).ok()
    }

    /// Stdout lines until (and including) the first one for which `last`
    /// holds; panics after `timeout`.
    pub fn lines_until(&self, timeout: Duration, last: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.line(left) {
                Some(l) => {
                    let done = last(&l);
                    out.push(l);
                    if done {
                        return out;
                    }
                }
                None => panic!(
                    "{}: stdout ended or timed out; so far:\n{}",
                    self.name,
                    out.join("\n")
                ),
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`INT`, `TERM`, `HUP`) to this child only.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(st.success(), "kill -{sig} {}", self.pid());
    }

    /// Exit status if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits for the exit, at most `timeout` (then panics).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.exited() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 100 ms until it holds; panics after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts success and returns stdout.
pub fn ok(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `sh -c script` in `dir` with a time limit (via `timeout(1)`).
pub fn sh(dir: &Path, script: &str, envs: &[(&str, &str)], limit: Duration) -> Output {
    Command::new("timeout")
        .arg(format!("{}", limit.as_secs().max(1)))
        .args(["sh", "-c", script])
        .current_dir(dir)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A plain-HTTP GET on loopback; returns (status, body). Timeouts: 5 s.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    Some((code, body.to_string()))
}

/// A SoftHSM2 token in `dir/softhsm` with a random label-specific PIN; the
/// returned env pairs (`SOFTHSM2_CONF`, PIN variable) go to every `ward`
/// process that touches it.
pub struct Hsm {
    pub conf: PathBuf,
    pub label: String,
    pub pin_env: &'static str,
    pub pin: String,
}

impl Hsm {
    pub fn new(dir: &Path, label: &str) -> Hsm {
        let tokens = dir.join("softhsm/tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.join("softhsm/softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let pin = format!("{:08}", std::process::id());
        // Test-only token: softhsm2-util takes PINs only as arguments.
        ok(
            "softhsm2-util --init-token",
            &Command::new("softhsm2-util")
                .args(["--init-token", "--free", "--label", label])
                .args(["--so-pin", "12345678", "--pin", &pin])
                .env("SOFTHSM2_CONF", &conf)
                .output()
                .unwrap(),
        );
        Hsm {
            conf,
            label: label.into(),
            pin_env: "WARD_E2E_HSM_PIN",
            pin,
        }
    }

    /// A key URI for `object` in this token.
    pub fn uri(&self, object: &str) -> String {
        format!(
            "pkcs11:token={};object={object}?module-path={SOFTHSM_MODULE}&pin-source=env:{}",
            self.label, self.pin_env
        )
    }

    pub fn envs(&self) -> Vec<(String, String)> {
        vec![
            ("SOFTHSM2_CONF".into(), self.conf.display().to_string()),
            (self.pin_env.into(), self.pin.clone()),
        ]
    }
}

/// Whether a program is on PATH (tests that need it skip loudly otherwise).
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
