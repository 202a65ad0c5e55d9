//! Pieces shared by every harness that runs a real `ward gateway run`
//! process: reading a request head in test upstreams, the admin listener
//! (readiness, metrics), the decision log, and signals to the process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Reads an HTTP/1.x request head up to the blank line (at most 1000
/// lines); `None` on EOF, error or an endless head.
pub fn read_head(r: &mut BufReader<TcpStream>) -> Option<String> {
    let mut head = String::new();
    for _ in 0..1000 {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        if line == "\r\n" || line == "\n" {
            return Some(head);
        }
        head.push_str(&line);
    }
    None
}

/// Plain HTTP/1.0 GET on the admin listener at `admin`: (status, body);
/// `(0, "")` if nothing listens. Reads for at most 5 s.
pub fn admin_get(admin: u16, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", admin)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: admin\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

/// The value of one sample in a Prometheus text page (0 if absent).
pub fn metric_in(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The value of one metric sample from the admin listener (0 if absent).
pub fn metric(admin: u16, name_and_labels: &str) -> f64 {
    metric_in(&admin_get(admin, "/metrics").1, name_and_labels)
}

/// The decision log at `path`, one JSON value per line (unparsable lines,
/// such as a half-written last one, are skipped).
pub fn decisions(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `kill -<sig> <pid>`; panics if it fails.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Starts `ward --log-level <log_level> gateway run` on `dir/gateway.toml`:
/// stdin and stdout closed, stderr to `dir/gateway.log` (appended to, or
/// truncated first). The caller waits for readiness and kills it on drop.
pub fn spawn(dir: &Path, log_level: &str, append_log: bool) -> Child {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append_log)
        .truncate(!append_log)
        .open(dir.join("gateway.log"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["--log-level", log_level, "gateway", "run", "--config"])
        .arg(dir.join("gateway.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}
