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
use std::sync::{Arc, Mutex, OnceLock, RwLock};
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

/// A loaded PKCS#11 module. Every call into it holds `gate` for reading;
/// re-initialising (C_Finalize + C_Initialize) holds it for writing, so no
/// call is ever in flight while the module is torn down (SoftHSM2 crashes
/// otherwise). The generation counts re-initialisations: sessions from an
/// older generation are dead and their handles may have been reused, so
/// they are forgotten, never closed.
struct Module {
    ctx: Pkcs11,
    gate: RwLock<u64>,
    last_reinit: Mutex<Option<Instant>>,
    /// Serialises the creation of token objects. SoftHSM2's file-backed
    /// token store answers CKR_GENERAL_ERROR ("Some horrible, unrecoverable
    /// error") now and then when two sessions of one process generate key
    /// pairs in the same token at once (seen with parallel tests). Key
    /// generation is rare (`init`), so holding one lock costs nothing, and
    /// it also makes "no key with this label yet" and the creation one step.
    create: Mutex<()>,
}

/// One loaded module per path for the whole process: a second
/// `C_Initialize` would fail, and finalising one copy would kill the
/// other's sessions.
fn module(path: &Path) -> Result<Arc<Module>, Error> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Arc<Module>>>> = OnceLock::new();
    let map = MODULES.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = map
        .lock()
        .map_err(|_| Error::Hsm("PKCS#11 module table poisoned".into()))?;
    if let Some(m) = map.get(path) {
        return Ok(Arc::clone(m));
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
    let m = Arc::new(Module {
        ctx,
        gate: RwLock::new(0),
        last_reinit: Mutex::new(None),
        create: Mutex::new(()),
    });
    map.insert(path.to_path_buf(), Arc::clone(&m));
    Ok(m)
}

impl Module {
    /// Re-initialises the module after a token vanished (HSM restart,
    /// network HSM failover): many modules, SoftHSM2 among them, only
    /// rediscover a token on a fresh C_Initialize. At most once per five
    /// seconds, so a token that stays away does not cause a storm.
    fn reinitialize(&self, seen_generation: u64) {
        let Ok(mut generation) = self.gate.write() else {
            return;
        };
        if *generation != seen_generation {
            return; // another thread already did it
        }
        let Ok(mut last) = self.last_reinit.lock() else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(5)) {
            return;
        }
        *last = Some(Instant::now());
        let _ = self.ctx.clone().finalize();
        let _ = self
            .ctx
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
        *generation += 1;
        tracing::warn!("PKCS#11 module re-initialised to find its token again");
    }
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
                | RvError::CryptokiNotInitialized
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid,
            _
        )
    )
}

/// A logged-in session plus the key handles found through it. Opened
/// without close-on-drop: [`Token::discard`] closes it only if its module
/// generation is current.
struct Pooled {
    session: Session,
    generation: u64,
    handles: HashMap<String, ObjectHandle>,
}

/// Why no session could be opened.
enum OpenError {
    /// The token is not (or no longer) in the module's slot list.
    TokenMissing(Error),
    /// Anything else (wrong PIN, device error, …).
    Other(Error),
}

impl From<OpenError> for Error {
    fn from(e: OpenError) -> Error {
        match e {
            OpenError::TokenMissing(e) | OpenError::Other(e) => e,
        }
    }
}

/// A token (found by label) with a pool of logged-in sessions.
pub struct Token {
    module: Arc<Module>,
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
        let module = module(&uri.module_path)?;
        let pin = uri.pin_source.read()?;
        let token = Arc::new(Self {
            module,
            label: uri.token.clone(),
            module_path: uri.module_path.clone(),
            pin: AuthPin::from(pin),
            idle: Mutex::new(Vec::new()),
        });
        let generation = token.read_gate()?;
        let first = token.open_session(*generation)?;
        drop(generation);
        token.give_back(first);
        Ok(token)
    }

    /// The token label.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn read_gate(&self) -> Result<std::sync::RwLockReadGuard<'_, u64>, Error> {
        self.module
            .gate
            .read()
            .map_err(|_| Error::Hsm("PKCS#11 module lock poisoned".into()))
    }

    fn find_slot(&self) -> Result<Slot, OpenError> {
        let ctx = &self.module.ctx;
        let slots = ctx
            .get_slots_with_token()
            .map_err(|e| OpenError::Other(self.hsm_err("listing slots", &e)))?;
        for slot in slots {
            if let Ok(info) = ctx.get_token_info(slot)
                && info.label().trim_end() == self.label
            {
                return Ok(slot);
            }
        }
        Err(OpenError::TokenMissing(Error::Hsm(format!(
            "no token labelled `{}` in PKCS#11 module {}",
            self.label,
            self.module_path.display()
        ))))
    }

    /// Opens and logs in a session; the caller holds the read gate.
    fn open_session(&self, generation: u64) -> Result<Pooled, OpenError> {
        let slot = self.find_slot()?;
        let session = self
            .module
            .ctx
            .open_rw_session_no_drop(slot)
            .map_err(|e| OpenError::Other(self.hsm_err("opening a session", &e)))?;
        let login = match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => Err(Error::Hsm(format!(
                "wrong PIN for token `{}` (CKR_PIN_INCORRECT)",
                self.label
            ))),
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(Error::Hsm(format!(
                "the user PIN of token `{}` is locked (CKR_PIN_LOCKED)",
                self.label
            ))),
            Err(e) => Err(self.hsm_err("logging in", &e)),
        };
        if let Err(e) = login {
            let _ = session.close();
            return Err(OpenError::Other(e));
        }
        Ok(Pooled {
            session,
            generation,
            handles: HashMap::new(),
        })
    }

    fn hsm_err(&self, doing: &str, e: &CkError) -> Error {
        Error::Hsm(format!("token `{}`: {doing}: {e}", self.label))
    }

    /// Closes a session if it belongs to the current module generation;
    /// older ones are dead already and only forgotten.
    fn discard(p: Pooled, generation: u64) {
        if p.generation == generation {
            let _ = p.session.close();
        }
    }

    fn take(&self, generation: u64) -> Result<Pooled, OpenError> {
        loop {
            let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            match pooled {
                Some(p) if p.generation == generation => return Ok(p),
                Some(stale) => Self::discard(stale, generation),
                None => return self.open_session(generation),
            }
        }
    }

    fn give_back(&self, p: Pooled) {
        let generation = p.generation;
        let overflow = match self.idle.lock() {
            Ok(mut idle) if idle.len() < POOL_SIZE => {
                idle.push(p);
                None
            }
            _ => Some(p),
        };
        if let Some(p) = overflow {
            Self::discard(p, generation);
        }
    }

    fn drop_idle(&self, generation: u64) {
        let idle = match self.idle.lock() {
            Ok(mut idle) => std::mem::take(&mut *idle),
            Err(_) => return,
        };
        for p in idle {
            Self::discard(p, generation);
        }
    }

    /// Runs `f` on a pooled session. On a session-level failure it empties
    /// the pool and retries on a new session; if the token has vanished it
    /// re-initialises the module (see [`Module::reinitialize`]) and retries.
    fn with_session<T>(
        &self,
        doing: &str,
        f: impl Fn(&mut Pooled) -> Result<T, CkError>,
    ) -> Result<T, Error> {
        let mut last = None;
        for _attempt in 0..3 {
            let gate = self.read_gate()?;
            let generation = *gate;
            let mut p = match self.take(generation) {
                Ok(p) => p,
                Err(OpenError::TokenMissing(e)) => {
                    drop(gate);
                    self.module.reinitialize(generation);
                    last = Some(e);
                    continue;
                }
                Err(OpenError::Other(e)) => return Err(e),
            };
            match f(&mut p) {
                Ok(v) => {
                    self.give_back(p);
                    return Ok(v);
                }
                Err(e) if is_session_failure(&e) => {
                    tracing::warn!(token = %self.label, error = %e, "PKCS#11 session lost; reopening");
                    Self::discard(p, generation);
                    self.drop_idle(generation);
                    last = Some(self.hsm_err(doing, &e));
                }
                Err(e) => {
                    self.give_back(p);
                    return Err(self.hsm_err(doing, &e));
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Hsm(format!("token `{}`: {doing} failed", self.label))))
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
        let _creating = self
            .module
            .create
            .lock()
            .map_err(|_| Error::Hsm("PKCS#11 key generation lock poisoned".into()))?;
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
        // SoftHSM2 answers CKR_GENERAL_ERROR now and then when a token
        // object is created while other sessions of the process use the same
        // token (parallel tests sharing one token do this). The spec says
        // the call may have partly succeeded, so remove whatever it left
        // under this label and try again, a bounded number of times.
        let mut attempt: u64 = 0;
        loop {
            attempt += 1;
            match self.generate_once(label, &id)? {
                Err(CkError::Pkcs11(RvError::GeneralError, _)) if attempt < 4 => {
                    tracing::warn!(token = %self.label, label, attempt, "key generation failed with CKR_GENERAL_ERROR; removing leftovers and retrying");
                    self.destroy_label(label)?;
                    std::thread::sleep(std::time::Duration::from_millis(20 * attempt));
                }
                Err(e) => return Err(self.hsm_err("generating a key pair", &e)),
                Ok(()) => break,
            }
        }
        self.key(label)
    }

    /// One C_GenerateKeyPair. A CKR_GENERAL_ERROR comes back as the inner
    /// error so that [`Self::generate`] can clean up and retry; every other
    /// failure is final.
    fn generate_once(&self, label: &str, id: &[u8]) -> Result<Result<(), CkError>, Error> {
        self.with_session("generating a key pair", |p| {
            let public = [
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Verify(true),
                Attribute::KeyType(KeyType::EC),
                Attribute::EcParams(ecdsa::P256_PARAMS.to_vec()),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id.to_vec()),
            ];
            let private = [
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::KeyType(KeyType::EC),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id.to_vec()),
            ];
            match p
                .session
                .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            {
                Ok(_) => Ok(Ok(())),
                Err(e @ CkError::Pkcs11(RvError::GeneralError, _)) => Ok(Err(e)),
                Err(e) => Err(e),
            }
        })
    }

    /// Destroys every key object under `label`: what a failed generation
    /// may have left behind. Only called while [`Module::create`] is held
    /// and after `generate` found no key under that label.
    fn destroy_label(&self, label: &str) -> Result<(), Error> {
        self.with_session("removing a partly generated key", |p| {
            for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
                for h in Self::find(&p.session, class, label)? {
                    p.session.destroy_object(h)?;
                }
            }
            Ok(())
        })
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
        self.with_session("logging out", |p| p.session.logout())
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

thread_local! {
    /// Why the last signature on this thread failed: rcgen's error type
    /// cannot carry it, and the API must say why it answers 503.
    static LAST_SIGN_ERROR: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Takes the reason of the last failed token signature on this thread.
pub fn take_last_sign_error() -> Option<String> {
    LAST_SIGN_ERROR.with(|e| e.borrow_mut().take())
}

impl SigningKey for Pkcs11Key {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let digest = Sha256::digest(msg);
        self.sign_digest(&digest).map_err(|e| {
            tracing::error!(error = %e, "HSM signing failed");
            let text = match e {
                Error::Hsm(m) => m,
                other => other.to_string(),
            };
            LAST_SIGN_ERROR.with(|l| *l.borrow_mut() = Some(text));
            rcgen::Error::RemoteKeyError
        })
    }
}
