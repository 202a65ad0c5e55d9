//! The reload hook run after each renewal, so that the program using the
//! certificate (a web server, the gateway) picks up the new files.
//!
//! A signal is sent by running `kill -s SIG PID` rather than calling
//! kill(2): the workspace denies `unsafe_code`, and the POSIX `kill`
//! utility avoids a new dependency for one system call.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

use crate::Error;
use crate::config::HookConfig;

/// What the hook is told about the new certificate (environment).
#[derive(Debug, Clone)]
pub struct Renewed<'a> {
    /// The identity's name in `agent.toml`.
    pub name: &'a str,
    /// The identity directory.
    pub dir: &'a Path,
    /// The new serial.
    pub serial: &'a str,
}

/// Runs the hook and waits for it (at most `timeout`).
pub async fn run(hook: &HookConfig, what: &Renewed<'_>, timeout: Duration) -> Result<(), Error> {
    let (label, mut cmd) = match (&hook.command, &hook.pid_file) {
        (Some(argv), _) => {
            let (prog, args) = argv.split_first().ok_or_else(|| Error::Hook {
                hook: "command".into(),
                message: "the command is empty".into(),
            })?;
            let mut c = Command::new(prog);
            c.args(args);
            (argv.join(" "), c)
        }
        (None, Some(pid_file)) => {
            let sig = hook.signal.as_deref().unwrap_or("HUP");
            let label = format!("signal {sig} to the pid in {}", pid_file.display());
            let pid = std::fs::read_to_string(pid_file)
                .map_err(|e| Error::Hook {
                    hook: label.clone(),
                    message: format!("cannot read the pid file: {e}"),
                })?
                .trim()
                .parse::<u32>()
                .map_err(|_| Error::Hook {
                    hook: label.clone(),
                    message: "the pid file does not hold a process id".into(),
                })?;
            let mut c = Command::new("kill");
            c.args(["-s", sig, &pid.to_string()]);
            (label, c)
        }
        (None, None) => return Ok(()),
    };
    cmd.env("WARD_IDENTITY_NAME", what.name)
        .env("WARD_DIR", what.dir)
        .env("WARD_CERT", what.dir.join("cert.pem"))
        .env("WARD_KEY", what.dir.join("key.pem"))
        .env("WARD_BUNDLE", what.dir.join("bundle.pem"))
        .env("WARD_SERIAL", what.serial)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let fail = |message: String| Error::Hook {
        hook: label.clone(),
        message,
    };
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot start: {e}")))?;
    let status = tokio::time::timeout(timeout, child.wait())
        .await
        .map_err(|_| {
            fail(format!(
                "still running after {} s; killed",
                timeout.as_secs()
            ))
        })?
        .map_err(|e| fail(format!("waiting failed: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(fail(format!("exited with {status}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renewed(dir: &Path) -> Renewed<'_> {
        Renewed {
            name: "web",
            dir,
            serial: "0abc",
        }
    }

    #[tokio::test]
    async fn command_gets_the_environment_and_failures_are_reported() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let hook = HookConfig {
            command: Some(vec![
                "sh".into(),
                "-c".into(),
                format!(
                    "echo \"$WARD_SERIAL $WARD_IDENTITY_NAME\" > {}",
                    out.display()
                ),
            ]),
            pid_file: None,
            signal: None,
        };
        run(&hook, &renewed(d.path()), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "0abc web\n");

        let failing = HookConfig {
            command: Some(vec!["false".into()]),
            pid_file: None,
            signal: None,
        };
        let e = run(&failing, &renewed(d.path()), Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("exited with"), "{e}");

        let slow = HookConfig {
            command: Some(vec!["sleep".into(), "5".into()]),
            pid_file: None,
            signal: None,
        };
        let e = run(&slow, &renewed(d.path()), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("killed"), "{e}");
    }

    #[tokio::test]
    async fn signal_goes_to_the_pid_in_the_file() {
        let d = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new("sleep")
            .arg("30")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid_file = d.path().join("p.pid");
        std::fs::write(&pid_file, format!("{}\n", child.id().unwrap())).unwrap();
        let hook = HookConfig {
            command: None,
            pid_file: Some(pid_file),
            signal: Some("TERM".into()),
        };
        run(&hook, &renewed(d.path()), Duration::from_secs(10))
            .await
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(!status.success());
    }
}
