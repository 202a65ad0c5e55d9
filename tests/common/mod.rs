//! Shared support for all integration tests of the root package, used
//! with `mod common;`: child processes that die with the test, free
//! loopback ports and bounded waits (here); SoftHSM2 tokens (`hsm`); the
//! rcgen PKI (`pki`); the one gateway harness, `TestGateway`, with its
//! test upstreams (`gateway`); the HTTP/3 tests' gateway (`h3`) and the
//! hardening suites' gateway (`hardening`), both built on it; and the CA +
//! agent world (`agent`).
//!
//! Kept small and stable on purpose: other test files may use it with
//! `mod common;`. Everything listens on 127.0.0.1 only.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod agent;
pub mod gateway;
pub mod h3;
pub mod hardening;
pub mod hsm;
pub mod pki;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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
    pub fn spawn_lines(name: &str, cmd: Command, log: &Path) -> Proc {
        Proc::spawn_reading(name, cmd, log, Stdio::null())
    }

    /// As [`Proc::spawn_lines`], with stdin open for [`Proc::send_line`].
    pub fn spawn_talking(name: &str, cmd: Command, log: &Path) -> Proc {
        Proc::spawn_reading(name, cmd, log, Stdio::piped())
    }

    fn spawn_reading(name: &str, mut cmd: Command, log: &Path, stdin: Stdio) -> Proc {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut child = cmd
            .stdin(stdin)
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

    /// Writes `text` and a newline to stdin (see [`Proc::spawn_talking`]).
    pub fn send_line(&mut self, text: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin was not piped");
        stdin.write_all(format!("{text}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
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

    /// SIGKILL now and reap (the "pull the plug" case).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
        self.kill();
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

/// Whether a program is on PATH (tests that need it skip loudly otherwise).
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
