//! Keys in PKCS#8 PEM files: only for embedded demo setups (`ward up`).
//!
//! A file key is not HSM-protected, and every open says so at warn level so
//! that nobody runs a production CA on one by accident.

use std::io::Write;
use std::path::Path;

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};

use crate::Error;

/// Generates a P-256 key and writes it to `path` (0600, atomically).
/// Refuses to overwrite an existing key.
pub fn generate(path: &Path) -> Result<KeyPair, Error> {
    if path.exists() {
        return Err(Error::conflict(
            "key_exists",
            format!(
                "key file {} already exists; refusing to overwrite it",
                path.display()
            ),
        ));
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    write_private(path, key.serialize_pem().as_bytes())?;
    warn(path);
    Ok(key)
}

/// Opens a PEM key file, warning that it is not HSM-protected.
pub fn open(path: &Path) -> Result<KeyPair, Error> {
    let pem = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let key = KeyPair::from_pem(&pem)
        .map_err(|e| Error::Setup(format!("{}: not a PKCS#8 PEM key: {e}", path.display())))?;
    warn(path);
    Ok(key)
}

fn warn(path: &Path) {
    tracing::warn!(
        key = %path.display(),
        "CA KEY IS A FILE, NOT HSM-PROTECTED: anyone who can read {} can issue certificates; use a pkcs11: key outside demos",
        path.display()
    );
}

/// Writes a secret file: temp file in the same directory, mode 0600 from
/// creation, fsync, rename, fsync of the directory.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".ward-key-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(data).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_keys_are_private_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let k = generate(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = open(&path).unwrap();
        assert_eq!(k.public_key_raw(), again.public_key_raw());
        assert!(generate(&path).is_err(), "must not overwrite");
    }
}
