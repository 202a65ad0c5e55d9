//! One real SoftHSM2 token per test binary, in a temp dir.
//!
//! SOFTHSM2_CONF is read by the module at C_Initialize and is process-wide,
//! so it is set exactly once (before any PKCS#11 call) and every test in
//! the binary shares the token, each with its own object labels and DB.

#![allow(dead_code, unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use ward_ca::settings::CaConfig;

pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const TOKEN: &str = "ward-test";
pub const PIN_ENV: &str = "WARD_TEST_HSM_PIN";
const PIN: &str = "87654321";

pub struct Hsm {
    pub dir: tempfile::TempDir,
}

pub fn hsm() -> &'static Hsm {
    static HSM: OnceLock<Hsm> = OnceLock::new();
    HSM.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        // SAFETY (test only): set once, before this process loads the
        // PKCS#11 module; std's own env reads are synchronised with this.
        unsafe {
            std::env::set_var("SOFTHSM2_CONF", &conf);
            std::env::set_var(PIN_ENV, PIN);
        }
        let out = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                TOKEN,
                "--so-pin",
                "12345678",
                "--pin",
                PIN,
            ])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Hsm { dir }
    })
}

pub fn uri(object: &str) -> String {
    format!("pkcs11:token={TOKEN};object={object}?module-path={MODULE}&pin-source=env:{PIN_ENV}")
}

/// A fresh CA config with unique object labels and its own database.
pub fn config(dir: &Path, extra: &str) -> CaConfig {
    static N: AtomicUsize = AtomicUsize::new(0);
    hsm();
    let n = N.fetch_add(1, Ordering::SeqCst);
    let p = std::process::id();
    let text = format!(
        "trust_domain = \"corp.example\"\ndatabase = \"ca.db\"\n{extra}\n[keys]\nroot = \"{}\"\nissuing = \"{}\"\nlog = \"{}\"\n",
        uri(&format!("root-{p}-{n}")),
        uri(&format!("issuing-{p}-{n}")),
        uri(&format!("log-{p}-{n}")),
    );
    let path = dir.join("ca.toml");
    std::fs::write(&path, text).unwrap();
    CaConfig::load(&path).unwrap()
}

pub fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// A CSR for `uri` (if any) with a fresh P-256 key; returns (csr, key pem).
pub fn csr(uri: Option<&str>) -> (String, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    if let Some(u) = uri {
        p.subject_alt_names = vec![rcgen::SanType::URI(u.try_into().unwrap())];
    }
    (p.serialize_request(&key).unwrap().pem().unwrap(), key)
}

pub fn pem_to_ders(pem: &str) -> Vec<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap().to_vec())
        .collect()
}
