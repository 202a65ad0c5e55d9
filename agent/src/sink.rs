//! The identity directory on disk, written so that a reader (or a crash)
//! never sees a half-written file or a certificate with the wrong key.
//!
//! ```text
//! DIR/                      0700
//!   versions/<serial>/      0700, one per issued certificate (current + previous kept)
//!     cert.pem              leaf + intermediate, 0644
//!     key.pem               PKCS#8 private key, 0600
//!   current -> versions/<serial>     relative symlink, swapped atomically
//!   cert.pem -> current/cert.pem     stable paths for other programs
//!   key.pem  -> current/key.pem
//!   bundle.pem              the CA root (trust anchor), 0644, replaced by rename
//!   state.json              last renewal/error for `ward agent status` (rebuildable)
//! ```
//!
//! Why a symlink swap rather than renaming `cert.pem` and `key.pem` one
//! after the other: two renames are two moments, and an agent killed
//! between them would leave a new key beside the old certificate for good.
//! A new version directory is written completely (files fsynced, directory
//! fsynced, then renamed into place) before one `rename(2)` of the
//! `current` link switches both files at once. A crash at any point leaves
//! `current` on a complete pair. Readers that want the pair consistently
//! resolve `current` once and read both files from that directory
//! ([`read_current`] does); the previous version is kept so that a reader
//! that resolved the link just before a swap still finds its files.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::Error;
use crate::cert::{self, CertInfo};

/// The certificate, its key and what the certificate says, read together.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The version directory the pair was read from.
    pub dir: PathBuf,
    /// Leaf + intermediate, PEM.
    pub chain_pem: String,
    /// Private key, PEM.
    pub key_pem: String,
    /// Parsed leaf.
    pub info: CertInfo,
}

/// `DIR/bundle.pem`.
pub fn bundle_path(dir: &Path) -> PathBuf {
    dir.join("bundle.pem")
}

fn create_private_dir(path: &Path) -> Result<(), Error> {
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
    {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::io("creating directory", path, e)),
    }
}

fn sync_dir(path: &Path) -> Result<(), Error> {
    fs::File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("syncing directory", path, e))
}

/// Writes `data` to `path` atomically: a temp file in the same directory
/// (created with `mode`), fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| Error::io("creating", &tmp, e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("writing", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| Error::io("renaming into place", path, e))?;
    sync_dir(parent)
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::io("creating", path, e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("writing", path, e))
}

/// Points the symlink `link` at `target` atomically (temp link + rename).
fn swap_link(link: &Path, target: &Path) -> Result<(), Error> {
    let parent = link.parent().unwrap_or(Path::new("."));
    if fs::read_link(link).ok().as_deref() == Some(target) {
        return Ok(());
    }
    let name = link
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.link-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(|e| Error::io("creating link", &tmp, e))?;
    fs::rename(&tmp, link).map_err(|e| Error::io("swapping link", link, e))?;
    sync_dir(parent)
}

/// Installs a new certificate and key as the current pair of `dir`.
///
/// Order: checks the pair, writes `versions/.tmp-*/key.pem` then
/// `cert.pem` (both fsynced), renames the directory to
/// `versions/<serial>`, swaps `current`, makes sure the stable
/// `cert.pem`/`key.pem` links exist, and prunes all but the current and
/// previous versions.
pub fn install(dir: &Path, chain_pem: &str, key_pem: &str) -> Result<CertInfo, Error> {
    let info = cert::check_pair(chain_pem, key_pem, dir)?;
    create_private_dir(dir)?;
    let versions = dir.join("versions");
    create_private_dir(&versions)?;
    let previous = fs::read_link(dir.join("current")).ok();

    let tmp = versions.join(format!(".tmp-{}-{}", info.serial, std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    create_private_dir(&tmp)?;
    write_new(&tmp.join("key.pem"), key_pem.as_bytes(), 0o600)?;
    write_new(&tmp.join("cert.pem"), chain_pem.as_bytes(), 0o644)?;
    sync_dir(&tmp)?;
    let final_dir = versions.join(&info.serial);
    if final_dir.exists() {
        fs::remove_dir_all(&final_dir).map_err(|e| Error::io("removing", &final_dir, e))?;
    }
    fs::rename(&tmp, &final_dir).map_err(|e| Error::io("renaming into place", &final_dir, e))?;
    sync_dir(&versions)?;

    let rel = Path::new("versions").join(&info.serial);
    swap_link(&dir.join("current"), &rel)?;
    for name in ["cert.pem", "key.pem"] {
        swap_link(&dir.join(name), &Path::new("current").join(name))?;
    }
    prune(&versions, &info.serial, previous.as_deref());
    Ok(info)
}

/// Removes version directories other than `keep` and `previous` (and
/// leftover temp directories of crashed installs). Failures are only logged:
/// stale directories waste space but are never read.
fn prune(versions: &Path, keep: &str, previous: Option<&Path>) {
    let previous = previous
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let Ok(entries) = fs::read_dir(versions) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == keep || previous.as_deref() == Some(name.as_str()) {
            continue;
        }
        if let Err(err) = fs::remove_dir_all(e.path()) {
            tracing::warn!(path = %e.path().display(), error = %err, "cannot prune an old certificate version");
        }
    }
}

/// Reads a private key file, refusing one that group or others may read.
pub fn read_key(path: &Path) -> Result<String, Error> {
    let meta = fs::metadata(path).map_err(|e| Error::io("reading", path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::KeyPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))
}

/// Reads the current pair of `dir`: resolves `current` once and reads both
/// files from that version directory, so the two always belong together.
/// A directory laid out by hand (plain `cert.pem` and `key.pem`, no
/// `current`) is read as is, and the pair is still checked.
pub fn read_current(dir: &Path) -> Result<Pair, Error> {
    let vdir = match fs::read_link(dir.join("current")) {
        Ok(target) => dir.join(target),
        Err(_) if dir.join("cert.pem").exists() => dir.to_path_buf(),
        Err(_) => {
            return Err(Error::NotEnrolled {
                dir: dir.to_path_buf(),
            });
        }
    };
    let cert_path = vdir.join("cert.pem");
    let chain_pem =
        fs::read_to_string(&cert_path).map_err(|e| Error::io("reading", &cert_path, e))?;
    let key_pem = read_key(&vdir.join("key.pem"))?;
    let info = cert::check_pair(&chain_pem, &key_pem, &cert_path)?;
    Ok(Pair {
        dir: vdir,
        chain_pem,
        key_pem,
        info,
    })
}

/// Reads `DIR/bundle.pem` (the trusted roots).
pub fn read_bundle(dir: &Path) -> Result<String, Error> {
    let p = bundle_path(dir);
    fs::read_to_string(&p).map_err(|e| Error::io("reading", &p, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::default();
        let s: [u8; 8] = rand::random();
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&[&[0x11], &s[..]].concat()));
        (p.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn install_swaps_pairs_and_keeps_one_previous_version() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("id");
        let mut serials = Vec::new();
        for _ in 0..3 {
            let (c, k) = leaf();
            serials.push(install(&dir, &c, &k).unwrap().serial);
            let pair = read_current(&dir).unwrap();
            assert_eq!(&pair.info.serial, serials.last().unwrap());
            assert_eq!(fs::read_to_string(dir.join("cert.pem")).unwrap(), c);
            assert_eq!(fs::read_to_string(dir.join("key.pem")).unwrap(), k);
        }
        let mut left: Vec<String> = fs::read_dir(dir.join("versions"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want = vec![serials[1].clone(), serials[2].clone()];
        want.sort();
        assert_eq!(left, want);
        let mode = fs::metadata(dir.join("key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn mismatched_pair_is_not_installed() {
        let d = tempfile::tempdir().unwrap();
        let (c, _) = leaf();
        let (_, k) = leaf();
        assert!(install(d.path(), &c, &k).is_err());
        assert!(matches!(
            read_current(d.path()),
            Err(Error::NotEnrolled { .. })
        ));
    }

    #[test]
    fn group_readable_key_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let (c, k) = leaf();
        install(d.path(), &c, &k).unwrap();
        let key = d.path().join("key.pem");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
        let e = read_current(d.path()).unwrap_err();
        assert!(
            matches!(e, Error::KeyPermissions { mode: 0o640, .. }),
            "{e}"
        );
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bundle.pem");
        write_atomic(&p, b"one", 0o644).unwrap();
        write_atomic(&p, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
