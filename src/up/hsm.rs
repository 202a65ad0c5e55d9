//! The CA's key store for `ward up`: a SoftHSM2 token of its own inside the
//! state directory when SoftHSM2 is installed, else PEM key files.
//!
//! Why a private token directory: the user's other SoftHSM2 tokens stay
//! untouched, and deleting the state directory removes every key with it.
//! The PINs are random, live in 0600 files in the state directory and reach
//! the module through `pin-source=file:` (never argv, never logs).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

/// Debian's SoftHSM2 module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// Label of the token `ward up` creates.
pub const TOKEN_LABEL: &str = "ward-up";

/// Where the CA keys live.
#[derive(Debug, Clone)]
pub enum Keys {
    /// A SoftHSM2 token; `pin_file` holds the user PIN.
    SoftHsm { pin_file: PathBuf },
    /// PEM files in this directory (not HSM-protected).
    Files { dir: PathBuf },
}

impl Keys {
    /// The `[keys]` section of `ca.toml`.
    pub fn toml(&self) -> String {
        match self {
            Keys::SoftHsm { pin_file } => {
                let uri = |object: &str| {
                    format!(
                        "pkcs11:token={TOKEN_LABEL};object={object}?module-path={SOFTHSM_MODULE}&pin-source=file:{}",
                        pct(&pin_file.display().to_string())
                    )
                };
                format!(
                    "[keys]\nroot = {:?}\nissuing = {:?}\nlog = {:?}\n",
                    uri("ward-root"),
                    uri("ward-issuing"),
                    uri("ward-log")
                )
            }
            Keys::Files { dir } => {
                let f = |name: &str| format!("file:{}", dir.join(name).display());
                format!(
                    "[keys]\nroot = {:?}\nissuing = {:?}\nlog = {:?}\n",
                    f("root.pem"),
                    f("issuing.pem"),
                    f("log.pem")
                )
            }
        }
    }

    /// One line for the banner.
    pub fn describe(&self) -> String {
        match self {
            Keys::SoftHsm { .. } => format!("SoftHSM2 token {TOKEN_LABEL}"),
            Keys::Files { .. } => "PEM files (NOT HSM-protected)".into(),
        }
    }
}

/// Percent-encodes what a PKCS#11 URI query value may not carry as is.
fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A random secret: 32 hex digits (128 bits).
pub fn random_secret() -> String {
    let b: [u8; 16] = rand::random();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes a secret file 0600, atomically.
pub fn write_secret(path: &Path, data: &str) -> anyhow::Result<()> {
    ward_agent::sink::write_atomic(path, data.as_bytes(), 0o600)
        .with_context(|| format!("writing {}", path.display()))
}

/// Prepares the key store under `dir`: the SoftHSM2 config and token on the
/// first run (SOFTHSM2_CONF must already point at `softhsm_conf(dir)`), or
/// the key directory for file keys.
pub fn prepare(dir: &Path, use_softhsm: bool) -> anyhow::Result<Keys> {
    if !use_softhsm {
        let keys = dir.join("ca").join("keys");
        create_private_dir(&keys)?;
        return Ok(Keys::Files { dir: keys });
    }
    let pin_file = dir.join("hsm-pin");
    let so_pin_file = dir.join("softhsm").join("so-pin");
    let module = Pkcs11::new(SOFTHSM_MODULE)
        .with_context(|| format!("loading PKCS#11 module {SOFTHSM_MODULE}"))?;
    module
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .context("initialising SoftHSM2")?;
    let result = ensure_token(&module, &pin_file, &so_pin_file);
    // ward-ca loads the module again for itself; it must find it finalised.
    let _ = module.finalize();
    result?;
    Ok(Keys::SoftHsm { pin_file })
}

/// Path of the private SoftHSM2 config.
pub fn softhsm_conf(dir: &Path) -> PathBuf {
    dir.join("softhsm").join("softhsm2.conf")
}

/// Writes `softhsm2.conf` and the token directory (idempotent).
pub fn write_softhsm_conf(dir: &Path) -> anyhow::Result<()> {
    let tokens = dir.join("softhsm").join("tokens");
    create_private_dir(&tokens)?;
    let conf = softhsm_conf(dir);
    let text = format!(
        "# written by `ward up`: the demo CA's own token directory\ndirectories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
        tokens.display()
    );
    if std::fs::read_to_string(&conf).ok().as_deref() != Some(text.as_str()) {
        ward_agent::sink::write_atomic(&conf, text.as_bytes(), 0o600)
            .with_context(|| format!("writing {}", conf.display()))?;
    }
    Ok(())
}

fn ensure_token(module: &Pkcs11, pin_file: &Path, so_pin_file: &Path) -> anyhow::Result<()> {
    let find = || -> anyhow::Result<Option<cryptoki::slot::Slot>> {
        for slot in module.get_slots_with_token()? {
            let info = module.get_token_info(slot)?;
            if info.token_initialized() && info.label().trim_end() == TOKEN_LABEL {
                return Ok(Some(slot));
            }
        }
        Ok(None)
    };
    if find()?.is_some() {
        if !pin_file.exists() {
            bail!(
                "the SoftHSM2 token {TOKEN_LABEL} exists but its PIN file {} is gone; \
                 remove the state directory to start over",
                pin_file.display()
            );
        }
        return Ok(());
    }
    let mut free = None;
    for slot in module.get_all_slots()? {
        if let Ok(info) = module.get_token_info(slot)
            && !info.token_initialized()
        {
            free = Some(slot);
            break;
        }
    }
    let Some(free) = free else {
        bail!("SoftHSM2 offers no free slot to create the {TOKEN_LABEL} token in");
    };
    let pin = random_secret();
    let so_pin = random_secret();
    // The PINs are on disk before the token exists, so a crash in between
    // never leaves a token nobody can log in to.
    write_secret(so_pin_file, &so_pin)?;
    write_secret(pin_file, &pin)?;
    let so = AuthPin::from(so_pin);
    module
        .init_token(free, &so, TOKEN_LABEL)
        .context("creating the SoftHSM2 token")?;
    // The slot id changes once a token is initialised: look it up by label.
    let slot = find()?.context("the new SoftHSM2 token is not listed")?;
    let session = module.open_rw_session(slot)?;
    session.login(UserType::So, Some(&so))?;
    session.init_pin(&AuthPin::from(pin))?;
    session.logout()?;
    tracing::info!(token = TOKEN_LABEL, "created the SoftHSM2 token");
    Ok(())
}

/// `mkdir -p` with 0700 for what is created.
pub fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_file_paths_are_escaped_in_key_uris() {
        assert_eq!(pct("/srv/ward data/pin"), "/srv/ward%20data/pin");
        let keys = Keys::SoftHsm {
            pin_file: PathBuf::from("/d/hsm-pin"),
        };
        let toml = keys.toml();
        assert!(toml.contains("pin-source=file:/d/hsm-pin"), "{toml}");
        for object in ["ward-root", "ward-issuing", "ward-log"] {
            assert!(toml.contains(&format!("object={object}?")), "{toml}");
        }
    }

    #[test]
    fn secrets_are_random_and_private() {
        assert_ne!(random_secret(), random_secret());
        assert_eq!(random_secret().len(), 32);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pin");
        write_secret(&p, "1234").unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
