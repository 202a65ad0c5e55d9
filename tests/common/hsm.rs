//! SoftHSM2 tokens for the tests that run a CA: a token directory and
//! config per test, initialised with `softhsm2-util`, and PKCS#11 key URIs
//! into it. Test-only tokens: softhsm2-util takes PINs only as arguments.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The SoftHSM2 PKCS#11 module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Writes `dir/softhsm2.conf` (tokens in `dir/tokens`) and initialises a
/// token `label` with user PIN `pin` in it; returns the config's path (the
/// `SOFTHSM2_CONF` of every process that touches the token).
pub fn init_token(dir: &Path, label: &str, pin: &str) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", label])
        .args(["--so-pin", "12345678", "--pin", pin])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "softhsm2-util --init-token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    conf
}

/// The PKCS#11 URI of key `object` in token `label` of `module`, its PIN
/// read from the environment variable `pin_env`.
pub fn key_uri_in(module: &str, label: &str, object: &str, pin_env: &str) -> String {
    format!("pkcs11:token={label};object={object}?module-path={module}&pin-source=env:{pin_env}")
}

/// As [`key_uri_in`] for SoftHSM2 with the PIN in `WARD_HSM_PIN`.
pub fn key_uri(label: &str, object: &str) -> String {
    key_uri_in(SOFTHSM_MODULE, label, object, "WARD_HSM_PIN")
}

/// A SoftHSM2 token in `dir/softhsm` with a process-specific PIN; the
/// env pairs of [`Hsm::envs`] (`SOFTHSM2_CONF`, PIN variable) go to every
/// `ward` process that touches it.
pub struct Hsm {
    pub conf: PathBuf,
    pub label: String,
    pub pin_env: &'static str,
    pub pin: String,
}

impl Hsm {
    pub fn new(dir: &Path, label: &str) -> Hsm {
        let pin = format!("{:08}", std::process::id());
        let conf = init_token(&dir.join("softhsm"), label, &pin);
        Hsm {
            conf,
            label: label.into(),
            pin_env: "WARD_E2E_HSM_PIN",
            pin,
        }
    }

    /// A key URI for `object` in this token.
    pub fn uri(&self, object: &str) -> String {
        key_uri_in(SOFTHSM_MODULE, &self.label, object, self.pin_env)
    }

    pub fn envs(&self) -> Vec<(String, String)> {
        vec![
            ("SOFTHSM2_CONF".into(), self.conf.display().to_string()),
            (self.pin_env.into(), self.pin.clone()),
        ]
    }
}
