//! CA signing keys: PKCS#11 tokens (default) and PEM files (demos only).
//!
//! Everything above this module signs through [`CaKey`], rcgen's
//! dyn-compatible `SigningKey` trait object, so certificates, CRLs and the
//! transparency log's tree heads are signed the same way whatever the
//! backend.

pub mod ecdsa;
pub mod file;
pub mod pkcs11;
pub mod uri;

use std::sync::Arc;

pub use pkcs11::{Pkcs11Key, Token};
pub use uri::{KeyRef, PinSource, Pkcs11Uri};

use crate::Error;

/// A CA key as the rest of the crate sees it.
pub type CaKey = Arc<dyn rcgen::SigningKey + Send + Sync>;

/// Opens tokens once per (module, label) so keys in the same token share
/// one session pool.
#[derive(Debug, Default)]
pub struct KeyOpener {
    tokens: Vec<Arc<Token>>,
}

impl KeyOpener {
    /// A new opener with no tokens open yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn token(&mut self, uri: &Pkcs11Uri) -> Result<Arc<Token>, Error> {
        if let Some(t) = self.tokens.iter().find(|t| t.label() == uri.token) {
            return Ok(Arc::clone(t));
        }
        let t = Token::open(uri)?;
        self.tokens.push(Arc::clone(&t));
        Ok(t)
    }

    /// Opens an existing key.
    pub fn open(&mut self, key: &KeyRef) -> Result<CaKey, Error> {
        match key {
            KeyRef::Pkcs11(uri) => Ok(Arc::new(self.token(uri)?.key(&uri.object)?)),
            KeyRef::File(path) => Ok(Arc::new(file::open(path)?)),
        }
    }

    /// Generates a new key where the reference points; refuses to replace
    /// an existing one.
    pub fn generate(&mut self, key: &KeyRef) -> Result<CaKey, Error> {
        match key {
            KeyRef::Pkcs11(uri) => Ok(Arc::new(self.token(uri)?.generate(&uri.object)?)),
            KeyRef::File(path) => Ok(Arc::new(file::generate(path)?)),
        }
    }

    /// Whether the key already exists.
    pub fn exists(&mut self, key: &KeyRef) -> Result<bool, Error> {
        match key {
            KeyRef::Pkcs11(uri) => self.token(uri)?.has_key(&uri.object),
            KeyRef::File(path) => Ok(path.exists()),
        }
    }

    /// The open tokens (for status output and reconnect tests).
    pub fn tokens(&self) -> &[Arc<Token>] {
        &self.tokens
    }
}

/// A human-readable backend name for `ward ca status`.
pub fn backend_name(key: &KeyRef) -> String {
    match key {
        KeyRef::Pkcs11(u) => format!("pkcs11 (token `{}`, object `{}`)", u.token, u.object),
        KeyRef::File(p) => format!("file {} (NOT HSM-protected)", p.display()),
    }
}
