//! Key references: RFC 7512 PKCS#11 URIs and `file:` paths.
//!
//! Secrets are never part of a reference: `pin-value` is refused, the PIN
//! comes from `pin-source=env:NAME` or `pin-source=file:PATH`, so a URI can
//! sit in a config file, a log line or `ps` output without leaking.

use std::fmt;
use std::path::PathBuf;

use crate::Error;

/// Where a CA key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// In a PKCS#11 token (the default and the only HSM-protected choice).
    Pkcs11(Pkcs11Uri),
    /// In a PKCS#8 PEM file (embedded demo setups only; warns on every start).
    File(PathBuf),
}

impl KeyRef {
    /// Parses `pkcs11:…` or `file:/path`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s.starts_with("pkcs11:") {
            Ok(Self::Pkcs11(Pkcs11Uri::parse(s)?))
        } else if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err(Error::Setup("key reference `file:` has no path".into()));
            }
            Ok(Self::File(PathBuf::from(path)))
        } else {
            Err(Error::Setup(format!(
                "key reference `{}` must start with `pkcs11:` or `file:`",
                redact(s)
            )))
        }
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pkcs11(u) => write!(f, "{u}"),
            Self::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

/// Where the token's user PIN comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// An environment variable of the CA process.
    Env(String),
    /// A file whose first line is the PIN.
    File(PathBuf),
}

impl PinSource {
    /// Parses `env:NAME` or `file:PATH` (also `file:///PATH`).
    pub fn parse(s: &str) -> Result<Self, Error> {
        if let Some(name) = s.strip_prefix("env:") {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(Error::Setup(format!(
                    "pin-source `{s}`: the environment variable name must be letters, digits and `_`"
                )));
            }
            return Ok(Self::Env(name.to_string()));
        }
        if let Some(path) = s
            .strip_prefix("file://")
            .or_else(|| s.strip_prefix("file:"))
        {
            if path.is_empty() {
                return Err(Error::Setup("pin-source `file:` has no path".into()));
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        Err(Error::Setup(format!(
            "pin-source `{s}` must be `env:NAME` or `file:PATH`"
        )))
    }

    /// Reads the PIN. The value is never logged or put in an error message.
    pub fn read(&self) -> Result<String, Error> {
        match self {
            Self::Env(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(v),
                _ => Err(Error::Hsm(format!(
                    "the HSM PIN environment variable {name} is not set (pin-source=env:{name})"
                ))),
            },
            Self::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::Hsm(format!(
                        "cannot read the HSM PIN file {}: {e}",
                        path.display()
                    ))
                })?;
                let pin = text.lines().next().unwrap_or("").trim_end().to_string();
                if pin.is_empty() {
                    return Err(Error::Hsm(format!(
                        "the HSM PIN file {} is empty",
                        path.display()
                    )));
                }
                Ok(pin)
            }
        }
    }
}

impl fmt::Display for PinSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(n) => write!(f, "env:{n}"),
            Self::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

/// The parts of an RFC 7512 URI that ward uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// Token label (`token=`), used to find the slot: slot ids change when a
    /// token is initialised, labels do not.
    pub token: String,
    /// Key object label (`object=`).
    pub object: String,
    /// The PKCS#11 module (`module-path=`).
    pub module_path: PathBuf,
    /// Where the user PIN comes from (`pin-source=`).
    pub pin_source: PinSource,
}

impl Pkcs11Uri {
    /// Parses a URI such as
    /// `pkcs11:token=ward;object=issuing?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:WARD_HSM_PIN`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let shown = redact(s);
        let err = |what: String| Error::Setup(format!("PKCS#11 URI `{shown}`: {what}"));
        let body = s
            .strip_prefix("pkcs11:")
            .ok_or_else(|| err("must start with `pkcs11:`".into()))?;
        let (path, query) = match body.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (body, None),
        };
        let (mut token, mut object, mut module, mut pin) = (None, None, None, None);
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (k, v) = attr
                .split_once('=')
                .ok_or_else(|| err(format!("path attribute `{attr}` has no `=`")))?;
            let v = pct_decode(v).map_err(|e| err(e.into()))?;
            match k {
                "token" => token = Some(v),
                "object" => object = Some(v),
                "type" if v == "private" || v == "public" => {}
                "type"
                | "id"
                | "slot-id"
                | "manufacturer"
                | "model"
                | "serial"
                | "library-description"
                | "library-manufacturer"
                | "library-version"
                | "slot-description"
                | "slot-manufacturer" => {
                    return Err(err(format!(
                        "attribute `{k}` is not supported; identify keys by `token` and `object` labels"
                    )));
                }
                other => return Err(err(format!("unknown path attribute `{other}`"))),
            }
        }
        for attr in query.unwrap_or("").split('&').filter(|a| !a.is_empty()) {
            let (k, v) = attr
                .split_once('=')
                .ok_or_else(|| err(format!("query attribute `{attr}` has no `=`")))?;
            let v = pct_decode(v).map_err(|e| err(e.into()))?;
            match k {
                "module-path" => module = Some(PathBuf::from(v)),
                "pin-source" => pin = Some(PinSource::parse(&v)?),
                "pin-value" => {
                    return Err(err(
                        "`pin-value` puts the PIN in the config; use `pin-source=env:NAME` or `pin-source=file:PATH`".into(),
                    ));
                }
                "module-name" => {
                    return Err(err(
                        "use `module-path` (an absolute path), not `module-name`".into(),
                    ));
                }
                other => return Err(err(format!("unknown query attribute `{other}`"))),
            }
        }
        Ok(Self {
            token: token.ok_or_else(|| err("`token=<label>` is required".into()))?,
            object: object.ok_or_else(|| err("`object=<label>` is required".into()))?,
            module_path: module.ok_or_else(|| err("`module-path=<path>` is required".into()))?,
            pin_source: pin.ok_or_else(|| {
                err("`pin-source=env:NAME` or `pin-source=file:PATH` is required".into())
            })?,
        })
    }

    /// The same token with another object label (the log key lives beside
    /// the issuing key).
    pub fn with_object(&self, object: &str) -> Self {
        Self {
            object: object.to_string(),
            ..self.clone()
        }
    }
}

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pkcs11:token={};object={}?module-path={}&pin-source={}",
            pct_encode(&self.token),
            pct_encode(&self.object),
            pct_encode(&self.module_path.to_string_lossy()),
            pct_encode(&self.pin_source.to_string())
        )
    }
}

/// Drops everything after a `pin-value=` so a mistaken secret never reaches
/// an error message.
fn redact(s: &str) -> String {
    match s.find("pin-value=") {
        Some(i) => format!("{}pin-value=<redacted>", s.get(..i).unwrap_or("")),
        None => s.to_string(),
    }
}

pub(crate) fn pct_decode(s: &str) -> Result<String, &'static str> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("truncated %-escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad %-escape")?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "%-escapes do not decode to UTF-8")
}

pub(crate) fn pct_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/:".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "pkcs11:token=ward;object=issuing?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:WARD_HSM_PIN";

    #[test]
    fn parses_the_design_example() {
        let u = Pkcs11Uri::parse(GOOD).unwrap();
        assert_eq!(u.token, "ward");
        assert_eq!(u.object, "issuing");
        assert_eq!(
            u.module_path,
            PathBuf::from("/usr/lib/softhsm/libsofthsm2.so")
        );
        assert_eq!(u.pin_source, PinSource::Env("WARD_HSM_PIN".into()));
        assert_eq!(Pkcs11Uri::parse(&u.to_string()).unwrap(), u);
    }

    #[test]
    fn percent_escapes_and_file_pins() {
        let u = Pkcs11Uri::parse(
            "pkcs11:token=my%20token;object=a%3Bb;type=private?module-path=/m.so&pin-source=file:///run/pin",
        )
        .unwrap();
        assert_eq!(u.token, "my token");
        assert_eq!(u.object, "a;b");
        assert_eq!(u.pin_source, PinSource::File("/run/pin".into()));
        assert_eq!(Pkcs11Uri::parse(&u.to_string()).unwrap(), u);
    }

    #[test]
    fn refuses_inline_pins_without_echoing_them() {
        let e = Pkcs11Uri::parse("pkcs11:token=ward;object=x?module-path=/m.so&pin-value=hunter2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pin-value"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn missing_parts_are_named() {
        for (uri, what) in [
            (
                "pkcs11:object=x?module-path=/m.so&pin-source=env:P",
                "token=",
            ),
            (
                "pkcs11:token=t?module-path=/m.so&pin-source=env:P",
                "object=",
            ),
            ("pkcs11:token=t;object=x?pin-source=env:P", "module-path="),
            ("pkcs11:token=t;object=x?module-path=/m.so", "pin-source"),
            (
                "pkcs11:token=t;object=x;slot-id=1?module-path=/m.so&pin-source=env:P",
                "slot-id",
            ),
            (
                "pkcs11:token=t;object=x?module-path=/m.so&pin-source=https://x",
                "pin-source",
            ),
        ] {
            let e = Pkcs11Uri::parse(uri).unwrap_err().to_string();
            assert!(e.contains(what), "{uri}: {e}");
        }
    }

    #[test]
    fn key_refs() {
        assert!(matches!(KeyRef::parse(GOOD).unwrap(), KeyRef::Pkcs11(_)));
        assert_eq!(
            KeyRef::parse("file:/var/lib/ward/issuing.pem").unwrap(),
            KeyRef::File("/var/lib/ward/issuing.pem".into())
        );
        assert!(KeyRef::parse("/plain/path").is_err());
    }
}
