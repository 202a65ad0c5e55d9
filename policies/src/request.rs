//! What the host asks: who, which action, on which resource, in which
//! context. The context carries everything the decision may depend on, the
//! current time included, so that a decision can be replayed exactly.

use std::collections::BTreeMap;

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
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Context {
    map: BTreeMap<String, Vec<String>>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Context {
        Context::default()
    }

    /// Adds one value to a key (a second call on a single-valued key makes
    /// the request invalid, and it is then denied).
    pub fn insert(&mut self, key: &str, value: impl Into<String>) -> &mut Context {
        self.map
            .entry(key.to_ascii_lowercase())
            .or_default()
            .push(value.into());
        self
    }

    /// Sets all values of a key (for multi-valued keys; an empty list is an
    /// empty set, which is not the same as an absent key).
    pub fn set(&mut self, key: &str, values: Vec<String>) -> &mut Context {
        self.map.insert(key.to_ascii_lowercase(), values);
        self
    }

    /// The values of a key, looked up case-insensitively.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.map.get(&key.to_ascii_lowercase()).map(Vec::as_slice)
    }

    /// Lookup by an already lower-cased key (no allocation).
    pub(crate) fn get_lower(&self, key: &str) -> Option<&[String]> {
        self.map.get(key).map(Vec::as_slice)
    }

    /// Every key (lower-cased) and its values.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
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
