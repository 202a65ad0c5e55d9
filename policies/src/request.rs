//! What the host asks: who, which action, on which resource, in which
//! context. The context carries everything the decision may depend on, the
//! current time included, so that a decision can be replayed exactly.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// The authenticated caller, from its verified certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    /// The SPIFFE ID (the certificate's URI SAN), e.g.
    /// `spiffe://corp.example/ns/prod/sa/billing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe: Option<String>,
    /// The e-mail address (rfc822Name SAN) of a human, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl Principal {
    /// A workload or user known by its SPIFFE ID only.
    pub fn spiffe(id: impl Into<String>) -> Principal {
        Principal {
            spiffe: Some(id.into()),
            email: None,
        }
    }
}

/// Condition-key values of one request. Keys are case-insensitive (stored
/// lower-cased); every key has a list of values: one for a single-valued
/// key, any number (possibly none) for a multi-valued key. Values are text
/// in the key's type's syntax: IP addresses, RFC 3339 dates or epoch
/// seconds, decimal numbers, `true`/`false`.
///
/// A context can be layered over a shared base ([`Context::over`]): a host
/// whose requests share most keys (a gateway: everything about the
/// connection) builds those once and adds only the request's own keys,
/// instead of copying the whole map for every request. A layered context
/// reads, compares and serialises exactly like the flat context with the
/// same keys: a key of the layer hides the base's values of that key.
#[derive(Debug, Clone, Default)]
pub struct Context {
    map: BTreeMap<String, Vec<String>>,
    /// Shared keys under `map`; never itself layered (see [`Context::over`]).
    base: Option<Arc<Context>>,
    /// Whether this context's keys passed the key checks of one policy set
    /// (named by its hash `Arc`), so that a shared base is checked once
    /// rather than with every request layered over it. Cleared by every
    /// change.
    pub(crate) checked: OnceLock<(Arc<str>, bool)>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Context {
        Context::default()
    }

    /// An empty layer over `base`: it has every key of `base` until a key is
    /// inserted or set here, and `base` is shared, not copied. A base that
    /// is itself layered is flattened once here, so that lookups stay one
    /// level deep.
    pub fn over(base: Arc<Context>) -> Context {
        let base = if base.base.is_some() {
            Arc::new(Context {
                map: base
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_vec()))
                    .collect(),
                base: None,
                checked: OnceLock::new(),
            })
        } else {
            base
        };
        Context {
            map: BTreeMap::new(),
            base: Some(base),
            checked: OnceLock::new(),
        }
    }

    /// Adds one value to a key (a second call on a single-valued key makes
    /// the request invalid, and it is then denied). On a layered context the
    /// value is added to the base's values of the key, as in a flat one.
    pub fn insert(&mut self, key: &str, value: impl Into<String>) -> &mut Context {
        let lower = if key.bytes().any(|b| b.is_ascii_uppercase()) {
            key.to_ascii_lowercase()
        } else {
            key.to_owned()
        };
        self.checked = OnceLock::new();
        let base = &self.base;
        self.map
            .entry(lower)
            .or_insert_with_key(|k| {
                base.as_ref()
                    .and_then(|b| b.map.get(k))
                    .cloned()
                    .unwrap_or_default()
            })
            .push(value.into());
        self
    }

    /// Sets all values of a key (for multi-valued keys; an empty list is an
    /// empty set, which is not the same as an absent key).
    pub fn set(&mut self, key: &str, values: Vec<String>) -> &mut Context {
        self.checked = OnceLock::new();
        self.map.insert(key.to_ascii_lowercase(), values);
        self
    }

    /// The values of a key, looked up case-insensitively.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.get_lower(&key.to_ascii_lowercase())
    }

    /// Lookup by an already lower-cased key (no allocation).
    pub(crate) fn get_lower(&self, key: &str) -> Option<&[String]> {
        self.map
            .get(key)
            .or_else(|| self.base.as_ref().and_then(|b| b.map.get(key)))
            .map(Vec::as_slice)
    }

    /// The shared base, if this context is a layer.
    pub(crate) fn base(&self) -> Option<&Context> {
        self.base.as_deref()
    }

    /// This context's own keys (without its base's).
    pub(crate) fn own(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Every key (lower-cased, in order) and its values.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        Merged {
            top: self.map.iter().peekable(),
            base: self.base.as_ref().map(|b| b.map.iter().peekable()),
        }
    }
}

type Entries<'a> = std::iter::Peekable<std::collections::btree_map::Iter<'a, String, Vec<String>>>;

/// The keys of a layer and its base in order, the layer's winning.
struct Merged<'a> {
    top: Entries<'a>,
    base: Option<Entries<'a>>,
}

impl<'a> Iterator for Merged<'a> {
    type Item = (&'a str, &'a [String]);

    fn next(&mut self) -> Option<Self::Item> {
        let Some(base) = self.base.as_mut() else {
            return self.top.next().map(|(k, v)| (k.as_str(), v.as_slice()));
        };
        let top_key: Option<&'a String> = self.top.peek().map(|(k, _)| *k);
        let base_key: Option<&'a String> = base.peek().map(|(k, _)| *k);
        let take_top = match (top_key, base_key) {
            (None, None) => return None,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(t), Some(b)) => {
                if t == b {
                    base.next();
                }
                t <= b
            }
        };
        let next = if take_top {
            self.top.next()
        } else {
            base.next()
        };
        next.map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

impl PartialEq for Context {
    /// Equal when the keys and values are, however they are layered.
    fn eq(&self, other: &Context) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Context {}

impl serde::Serialize for Context {
    /// As the flat map always was: `{"map": {key: [values]}}`, merged.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        struct Map<'a>(&'a Context);
        impl serde::Serialize for Map<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter())
            }
        }
        let mut st = s.serialize_struct("Context", 1)?;
        st.serialize_field("map", &Map(self))?;
        st.end()
    }
}

impl<'de> serde::Deserialize<'de> for Context {
    /// From a JSON object whose values are strings, numbers, booleans or
    /// arrays of them: `{"ward:SourceIp": "10.1.2.3", "ward:PrincipalGroups": ["a"]}`.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let raw: BTreeMap<String, serde_json::Value> = serde::Deserialize::deserialize(d)?;
        let mut ctx = Context::new();
        for (k, v) in raw {
            let scalar = |v: &serde_json::Value| -> Result<String, D::Error> {
                match v {
                    serde_json::Value::String(s) => Ok(s.clone()),
                    serde_json::Value::Number(n) => Ok(n.to_string()),
                    serde_json::Value::Bool(b) => Ok(b.to_string()),
                    other => Err(D::Error::custom(format!(
                        "context key {k}: expected a string, number, boolean or array, found {other}"
                    ))),
                }
            };
            let values = match &v {
                serde_json::Value::Array(items) => {
                    items.iter().map(scalar).collect::<Result<_, _>>()?
                }
                other => vec![scalar(other)?],
            };
            ctx.set(&k, values);
        }
        Ok(ctx)
    }
}

/// One authorisation question.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Who asks.
    pub principal: Principal,
    /// E.g. `http:GET`, `tcp:Connect`, `ca:Revoke` (case-insensitive).
    pub action: String,
    /// E.g. `route/ledger/v1/entries`, `route/db`, `ca/certs/1A2B`
    /// (case-sensitive).
    pub resource: String,
    /// Condition-key values, the current time included.
    #[serde(default)]
    pub context: Context,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keys_are_case_insensitive() {
        let mut c = Context::new();
        c.insert("Ward:SourceIp", "10.0.0.1");
        assert_eq!(c.get("ward:sourceip").unwrap(), ["10.0.0.1"]);
        assert_eq!(c.get_lower("ward:sourceip").unwrap().len(), 1);
        c.set("ward:PrincipalGroups", vec![]);
        assert_eq!(c.get("WARD:PRINCIPALGROUPS").unwrap().len(), 0);
    }

    #[test]
    fn a_layer_reads_like_the_flat_context() {
        let mut base = Context::new();
        base.insert("ward:SourceIp", "10.0.0.1")
            .insert("ward:Host", "a")
            .set("ward:PrincipalGroups", vec!["g".into()]);
        let base = Arc::new(base);
        let mut c = Context::over(base.clone());
        assert_eq!(c.get("WARD:SOURCEIP").unwrap(), ["10.0.0.1"]);
        c.insert("Ward:Host", "b");
        c.set("ward:PrincipalGroups", vec![]);
        c.insert("ward:Path", "/x");
        assert_eq!(
            c.get("ward:host").unwrap(),
            ["a", "b"],
            "insert adds to the base's values"
        );
        assert_eq!(
            c.get("ward:principalgroups").unwrap().len(),
            0,
            "set hides the base's values"
        );
        assert_eq!(
            base.get("ward:host").unwrap(),
            ["a"],
            "the base is not changed"
        );
        let keys: Vec<&str> = c.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "ward:host",
                "ward:path",
                "ward:principalgroups",
                "ward:sourceip"
            ]
        );
        let mut flat = Context::new();
        flat.insert("ward:sourceip", "10.0.0.1")
            .insert("ward:host", "a")
            .insert("ward:host", "b")
            .insert("ward:path", "/x")
            .set("ward:principalgroups", vec![]);
        assert_eq!(c, flat);
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            serde_json::to_string(&flat).unwrap()
        );
        assert!(
            serde_json::to_string(&flat)
                .unwrap()
                .starts_with(r#"{"map":{"ward:host":["a","b"]"#)
        );
        let deeper = Context::over(Arc::new(c.clone()));
        assert_eq!(deeper, flat, "a layered base is flattened");
        assert_ne!(Context::over(base), flat);
    }

    #[test]
    fn request_from_json() {
        let r: Request = serde_json::from_str(
            r#"{"principal": {"spiffe": "spiffe://x/y"}, "action": "http:GET", "resource": "route/a",
                "context": {"ward:SourceIp": "10.0.0.1", "ward:PrincipalGroups": ["a", "b"], "app:Level": 3}}"#,
        )
        .unwrap();
        assert_eq!(r.principal.spiffe.as_deref(), Some("spiffe://x/y"));
        assert_eq!(r.context.get("ward:principalgroups").unwrap(), ["a", "b"]);
        assert_eq!(r.context.get("app:level").unwrap(), ["3"]);
        assert!(
            serde_json::from_str::<Request>(
                r#"{"action": "a", "resource": "b", "principal": {},
            "context": {"k": {"x": 1}}}"#
            )
            .is_err()
        );
        let typo = r#"{"action": "a", "resource": "b", "principal": {"spife": "x"}}"#;
        assert!(
            serde_json::from_str::<Request>(typo).is_err(),
            "unknown fields are refused"
        );
    }
}
