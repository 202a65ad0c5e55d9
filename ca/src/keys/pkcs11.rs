//! Keys inside a PKCS#11 token, used through rcgen's `SigningKey` trait.
//!
//! The private key never leaves the token: we hash with SHA-256 in software
//! (SoftHSM2 has no CKM_ECDSA_SHA256), sign the digest with CKM_ECDSA, and
//! DER-encode the raw `r || s` the token returns.
//!
//! Sessions break in long-running CAs (HSM restart, idle timeout, network
//! HSM failover: CKR_SESSION_HANDLE_INVALID, CKR_DEVICE_ERROR, …). A
//! `cryptoki::Session` is `Send` but not `Sync`, so a [`Token`] keeps a small
//! pool of idle sessions behind a mutex; an operation takes one out, and on a
//! session-level failure the pool is emptied and the operation retried once
//! on a freshly opened, logged-in session. If that fails too, the caller gets
//! [`Error::Hsm`] (503) naming the token and the return value.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use rcgen::{PKCS_ECDSA_P256_SHA256, PublicKeyData, SignatureAlgorithm, SigningKey};
use sha2::{Digest, Sha256};

use super::ecdsa;
use super::uri::Pkcs11Uri;
use crate::Error;

/// Idle sessions kept per token; more are opened under load and closed
/// when returned to a full pool.
const POOL_SIZE: usize = 4;

/// One loaded module per path for the whole process: a second
/// `C_Initialize` would fail, and finalising one copy would kill the
/// other's sessions.
fn module(path: &Path) -> Result<Pkcs11, Error> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let map = MODULES.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = map
        .lock()
        .map_err(|_| Error::Hsm("PKCS#11 module table poisoned".into()))?;
    if let Some(ctx) = map.get(path) {
        return Ok(ctx.clone());
    }
    if !path.exists() {
        return Err(Error::Hsm(format!(
            "PKCS#11 module {} does not exist (module-path in the key URI)",
            path.display()
        )));
    }
    let ctx = Pkcs11::new(path).map_err(|e| {
        Error::Hsm(format!(
            "cannot load PKCS#11 module {}: {e}",
            path.display()
        ))
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(Error::Hsm(format!(
                "cannot initialise PKCS#11 module {}: {e}",
                path.display()
            )));
        }
    }
    map.insert(path.to_path_buf(), ctx.clone());
    Ok(ctx)
}

/// Return values after which a session (or the whole login state) is gone
/// and a fresh session may succeed.
fn is_session_failure(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceError
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::UserNotLoggedIn
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid,
            _
        )
    )
}

/// A logged-in session plus the key handles found through it.
struct Pooled {
    session: Session,
    handles: HashMap<String, ObjectHandle>,
}

/// A token (found by label) with a pool of logged-in sessions.
pub struct Token {
    ctx: Pkcs11,
    label: String,
    module_path: PathBuf,
    pin: AuthPin,
    idle: Mutex<Vec<Pooled>>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("label", &self.label)
            .field("module_path", &self.module_path)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// Loads the module, reads the PIN from its source, finds the token by
    /// label and logs in once, so that a wrong PIN or a missing token is
    /// reported at start rather than at the first request.
    pub fn open(uri: &Pkcs11Uri) -> Result<Arc<Self>, Error> {
        let ctx = module(&uri.module_path)?;
        let pin = uri.pin_source.read()?;
        let token = Arc::new(Self {
            ctx,
            label: uri.token.clone(),
            module_path: uri.module_path.clone(),
            pin: AuthPin::from(pin),
            idle: Mutex::new(Vec::new()),
        });
        let first = token.open_session()?;
        token.give_back(first);
        Ok(token)
    }

    /// The token label.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn find_slot(&self) -> Result<Slot, Error> {
        let slots = self
            .ctx
            .get_slots_with_token()
            .map_err(|e| self.hsm_err("listing slots", &e))?;
        for slot in slots {
            if let Ok(info) = self.ctx.get_token_info(slot)
                && info.label().trim_end() == self.label
            {
                return Ok(slot);
            }
        }
        Err(Error::Hsm(format!(
            "no token labelled `{}` in PKCS#11 module {}",
            self.label,
            self.module_path.display()
        )))
    }

    fn open_session(&self) -> Result<Pooled, Error> {
        let slot = self.find_slot()?;
        let session = self
            .ctx
            .open_rw_session(slot)
            .map_err(|e| self.hsm_err("opening a session", &e))?;
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                return Err(Error::Hsm(format!(
                    "wrong PIN for token `{}` (CKR_PIN_INCORRECT)",
                    self.label
                )));
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                return Err(Error::Hsm(format!(
                    "the user PIN of token `{}` is locked (CKR_PIN_LOCKED)",
                    self.label
                )));
            }
            Err(e) => return Err(self.hsm_err("logging in", &e)),
        }
        Ok(Pooled {
            session,
            handles: HashMap::new(),
        })
    }

    fn hsm_err(&self, doing: &str, e: &CkError) -> Error {
        Error::Hsm(format!("token `{}`: {doing}: {e}", self.label))
    }

    fn take(&self) -> Result<Pooled, Error> {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match pooled {
            Some(p) => Ok(p),
            None => self.open_session(),
        }
    }

    fn give_back(&self, p: Pooled) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < POOL_SIZE
        {
            idle.push(p);
        }
    }

    fn drop_idle(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    /// Runs `f` on a pooled session; on a session-level failure empties the
    /// pool and retries once on a new session.
    fn with_session<T>(
        &self,
        doing: &str,
        f: impl Fn(&mut Pooled) -> Result<T, CkError>,
    ) -> Result<T, Error> {
        let mut p = self.take()?;
        match f(&mut p) {
            Ok(v) => {
                self.give_back(p);
                return Ok(v);
            }
            Err(e) if is_session_failure(&e) => {
                tracing::warn!(token = %self.label, error = %e, "PKCS#11 session lost; reopening");
                drop(p);
                self.drop_idle();
            }
            Err(e) => return Err(self.hsm_err(doing, &e)),
        }
        let mut p = self.open_session()?;
        let v = f(&mut p).map_err(|e| self.hsm_err(doing, &e))?;
        self.give_back(p);
        Ok(v)
    }

    fn find(
        session: &Session,
        class: ObjectClass,
        label: &str,
    ) -> Result<Vec<ObjectHandle>, CkError> {
        session.find_objects(&[
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
    }

    /// Opens an existing P-256 key pair by object label.
    pub fn key(self: &Arc<Self>, label: &str) -> Result<Pkcs11Key, Error> {
        let point = self.with_session("reading a public key", |p| {
            let Some(&public) = Self::find(&p.session, ObjectClass::PUBLIC_KEY, label)?.first()
            else {
                return Ok(None);
            };
            let attrs = p
                .session
                .get_attributes(public, &[AttributeType::EcPoint])?;
            Ok(attrs.into_iter().find_map(|a| match a {
                Attribute::EcPoint(v) => Some(v),
                _ => None,
            }))
        })?;
        let point = point.ok_or_else(|| {
            Error::Hsm(format!(
                "token `{}` has no EC public key labelled `{label}` (run `ward ca init`?)",
                self.label
            ))
        })?;
        let point = ecdsa::unwrap_p256_point(&point).ok_or_else(|| {
            Error::Hsm(format!(
                "key `{label}` in token `{}` is not a P-256 key",
                self.label
            ))
        })?;
        let key = Pkcs11Key {
            token: Arc::clone(self),
            label: label.to_string(),
            point,
        };
        // Fail now, not at the first request, if the private half is missing.
        key.private_handle_check()?;
        Ok(key)
    }

    /// Generates a P-256 key pair inside the token: private key sensitive,
    /// never extractable, a token object. Refuses to create a second key
    /// with the same label, so `init` cannot silently shadow a live key.
    pub fn generate(self: &Arc<Self>, label: &str) -> Result<Pkcs11Key, Error> {
        let exists = self.with_session("looking for existing keys", |p| {
            Ok(
                !Self::find(&p.session, ObjectClass::PRIVATE_KEY, label)?.is_empty()
                    || !Self::find(&p.session, ObjectClass::PUBLIC_KEY, label)?.is_empty(),
            )
        })?;
        if exists {
            return Err(Error::conflict(
                "key_exists",
                format!(
                    "token `{}` already has a key labelled `{label}`; refusing to generate another",
                    self.label
                ),
            ));
        }
        let id = label.as_bytes().to_vec();
        self.with_session("generating a key pair", |p| {
            let public = [
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Verify(true),
                Attribute::KeyType(KeyType::EC),
                Attribute::EcParams(ecdsa::P256_PARAMS.to_vec()),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id.clone()),
            ];
            let private = [
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::KeyType(KeyType::EC),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id.clone()),
            ];
            p.session
                .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
                .map(|_| ())
        })?;
        self.key(label)
    }

    /// Whether a key with this label exists (private half).
    pub fn has_key(&self, label: &str) -> Result<bool, Error> {
        self.with_session("looking for a key", |p| {
            Ok(!Self::find(&p.session, ObjectClass::PRIVATE_KEY, label)?.is_empty())
        })
    }

    /// The protection attributes of a private key: (CKA_SENSITIVE,
    /// CKA_EXTRACTABLE, CKA_TOKEN, CKA_NEVER_EXTRACTABLE), for `status` and
    /// tests that prove keys cannot leave the token.
    pub fn key_protection(&self, label: &str) -> Result<(bool, bool, bool, bool), Error> {
        self.with_session("reading key attributes", |p| {
            let Some(&h) = Self::find(&p.session, ObjectClass::PRIVATE_KEY, label)?.first() else {
                return Err(CkError::Pkcs11(
                    RvError::KeyHandleInvalid,
                    cryptoki::context::Function::FindObjects,
                ));
            };
            let attrs = p.session.get_attributes(
                h,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::Token,
                    AttributeType::NeverExtractable,
                ],
            )?;
            let mut out = (false, true, false, false);
            for a in attrs {
                match a {
                    Attribute::Sensitive(v) => out.0 = v,
                    Attribute::Extractable(v) => out.1 = v,
                    Attribute::Token(v) => out.2 = v,
                    Attribute::NeverExtractable(v) => out.3 = v,
                    _ => {}
                }
            }
            Ok(out)
        })
    }

    /// Logs every session of this application out, as an HSM restart does.
    /// Only for tests of the reconnect path: the next operation must find
    /// its session unusable and recover.
    #[doc(hidden)]
    pub fn logout_all_for_test(&self) -> Result<(), Error> {
        let p = self.take()?;
        p.session
            .logout()
            .map_err(|e| self.hsm_err("logging out", &e))?;
        self.give_back(p);
        Ok(())
    }
}

/// A P-256 private key in a token. Signing goes through the token's
/// session pool; cloning is cheap.
#[derive(Clone)]
pub struct Pkcs11Key {
    token: Arc<Token>,
    label: String,
    /// Bare uncompressed point, as SubjectPublicKeyInfo wants it.
    point: Vec<u8>,
}

impl std::fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("token", &self.token.label)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Key {
    fn private_handle(&self, p: &mut Pooled) -> Result<ObjectHandle, CkError> {
        if let Some(h) = p.handles.get(&self.label) {
            return Ok(*h);
        }
        let found = Token::find(&p.session, ObjectClass::PRIVATE_KEY, &self.label)?;
        match found.first() {
            Some(&h) => {
                p.handles.insert(self.label.clone(), h);
                Ok(h)
            }
            // Not visible: either missing, or the login is gone. The
            // caller tells them apart by retrying on a fresh session.
            None => Err(CkError::Pkcs11(
                RvError::KeyHandleInvalid,
                cryptoki::context::Function::FindObjects,
            )),
        }
    }

    fn private_handle_check(&self) -> Result<(), Error> {
        self.token
            .with_session("finding the private key", |p| self.private_handle(p))
            .map(|_| ())
            .map_err(|_| {
                Error::Hsm(format!(
                    "token `{}` has no private key labelled `{}`",
                    self.token.label, self.label
                ))
            })
    }

    /// Signs a SHA-256 digest with CKM_ECDSA and returns the DER signature.
    pub fn sign_digest(&self, digest: &[u8]) -> Result<Vec<u8>, Error> {
        let started = Instant::now();
        let raw = self.token.with_session("signing", |p| {
            let h = self.private_handle(p)?;
            p.session.sign(&Mechanism::Ecdsa, h, digest)
        });
        crate::metrics::observe_sign(started.elapsed());
        ecdsa::raw_to_der(&raw?).ok_or_else(|| {
            Error::Hsm(format!(
                "token `{}` returned a malformed ECDSA signature",
                self.token.label
            ))
        })
    }

    /// The object label.
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl PublicKeyData for Pkcs11Key {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

impl SigningKey for Pkcs11Key {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let digest = Sha256::digest(msg);
        self.sign_digest(&digest).map_err(|e| {
            tracing::error!(error = %e, "HSM signing failed");
            rcgen::Error::RemoteKeyError
        })
    }
}
