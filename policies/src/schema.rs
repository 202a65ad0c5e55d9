//! Condition-key schemas: which keys a host supplies, of which type, single-
//! or multi-valued, and whether they are always present.
//!
//! The evaluator is generic; the schema is what makes a misspelt key or a
//! `NumericLessThan` on an IP address a load-time error rather than a
//! condition that silently never matches. The gateway uses
//! [`Schema::gateway`], the CA's admin API [`Schema::ca_admin`], and the CLI
//! can load any schema from JSON ([`Schema::from_json`]).

use crate::error::{Diagnostic, Error};
use crate::json::{self, Value};
use crate::values;

/// The type of a condition key's values, which decides the operator family
/// that may test it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum KeyType {
    /// Text: `String*` operators.
    String,
    /// Decimal numbers: `Numeric*` operators.
    Numeric,
    /// RFC 3339 dates or epoch seconds: `Date*` operators.
    Date,
    /// `true`/`false`: `Bool`.
    Bool,
    /// IPv4/IPv6 addresses: `IpAddress`/`NotIpAddress`.
    Ip,
}

impl KeyType {
    fn parse(s: &str) -> Option<KeyType> {
        Some(match s {
            "String" => KeyType::String,
            "Numeric" => KeyType::Numeric,
            "Date" => KeyType::Date,
            "Bool" => KeyType::Bool,
            "Ip" => KeyType::Ip,
            _ => return None,
        })
    }

    /// Checks that a request-side value parses as this type.
    pub(crate) fn check(self, v: &str) -> Result<(), String> {
        let ok = match self {
            KeyType::String => true,
            KeyType::Numeric => values::parse_number(v).is_some(),
            KeyType::Date => values::parse_date(v).is_some(),
            KeyType::Bool => values::parse_bool(v).is_some(),
            KeyType::Ip => values::parse_ip(v).is_some(),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("`{v}` is not a valid {self:?} value"))
        }
    }
}

/// One declared condition key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyDecl {
    /// The key as written in documentation, e.g. `ward:SourceIp`. A name
    /// ending in `/` declares a family (`ward:RequestHeader/` covers
    /// `ward:RequestHeader/x-team`).
    pub name: String,
    /// Value type.
    pub ty: KeyType,
    /// Multi-valued keys (sets) must be tested with `ForAnyValue:` or
    /// `ForAllValues:`.
    pub multi: bool,
    /// Always present in a request: a request without it is denied as
    /// malformed, and `IfExists`/`Null` on it earn a warning.
    pub required: bool,
}

impl KeyDecl {
    /// A declaration; see the fields.
    pub fn new(name: &str, ty: KeyType, multi: bool, required: bool) -> KeyDecl {
        KeyDecl {
            name: name.to_owned(),
            ty,
            multi,
            required,
        }
    }

    fn is_prefix(&self) -> bool {
        self.name.ends_with('/')
    }
}

/// A set of condition keys plus the action services (`http`, `tcp`, `ca`)
/// that a host evaluates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    keys: Vec<KeyDecl>,
    services: Vec<String>,
}

impl Schema {
    /// A schema from declarations and the action services it serves
    /// (lower-case service names, e.g. `["http", "tcp"]`; empty means any).
    pub fn new(keys: Vec<KeyDecl>, services: Vec<String>) -> Schema {
        Schema {
            keys,
            services: services
                .into_iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
        }
    }

    /// The gateway's keys (actions `http:<METHOD>` and `tcp:Connect`).
    ///
    /// Always present: `ward:SourceIp`, `ward:CurrentTime`,
    /// `ward:Protocol` (`h1|h2|h3|tcp`), `ward:PrincipalType`
    /// (`workload|user`). Optional: `ward:Method`, `ward:Path`, `ward:Host`
    /// (absent on TCP routes), `ward:TlsVersion`, `ward:CertSerial`,
    /// `ward:CertFingerprint`, `ward:CertNotAfter`, `ward:PrincipalGroups`
    /// (multi-valued: the groups of the principal; filled from groups.json
    /// when the request lacks it, see [`crate::PolicySet::groups_of`]) and
    /// `ward:RequestHeader/<name>`.
    pub fn gateway() -> Schema {
        use KeyType::*;
        Schema::new(
            vec![
                KeyDecl::new("ward:SourceIp", Ip, false, true),
                KeyDecl::new("ward:CurrentTime", Date, false, true),
                KeyDecl::new("ward:Method", String, false, false),
                KeyDecl::new("ward:Path", String, false, false),
                KeyDecl::new("ward:Host", String, false, false),
                KeyDecl::new("ward:Protocol", String, false, true),
                KeyDecl::new("ward:TlsVersion", String, false, false),
                KeyDecl::new("ward:CertSerial", String, false, false),
                KeyDecl::new("ward:CertFingerprint", String, false, false),
                KeyDecl::new("ward:CertNotAfter", Date, false, false),
                KeyDecl::new("ward:PrincipalType", String, false, true),
                KeyDecl::new("ward:PrincipalGroups", String, true, false),
                KeyDecl::new("ward:RequestHeader/", String, false, false),
            ],
            vec!["http".into(), "tcp".into()],
        )
    }

    /// The CA admin API's keys (actions `ca:CreateToken`, `ca:Revoke`,
    /// `ca:ReadLog`). Always present: `ward:SourceIp`, `ward:CurrentTime`,
    /// `ward:PrincipalType`. Optional: `ward:PrincipalGroups` (multi; filled
    /// from groups.json when absent),
    /// `ward:CertSerial` (of the caller's certificate),
    /// `ward:TargetIdentity` (the SPIFFE ID a token is for, or whose
    /// certificate is revoked) and `ward:TargetSerial` (the serial revoked).
    pub fn ca_admin() -> Schema {
        use KeyType::*;
        Schema::new(
            vec![
                KeyDecl::new("ward:SourceIp", Ip, false, true),
                KeyDecl::new("ward:CurrentTime", Date, false, true),
                KeyDecl::new("ward:PrincipalType", String, false, true),
                KeyDecl::new("ward:PrincipalGroups", String, true, false),
                KeyDecl::new("ward:CertSerial", String, false, false),
                KeyDecl::new("ward:TargetIdentity", String, false, false),
                KeyDecl::new("ward:TargetSerial", String, false, false),
            ],
            vec!["ca".into()],
        )
    }

    /// Loads a schema from JSON:
    ///
    /// ```json
    /// {"Services": ["http"],
    ///  "Keys": [{"Name": "ward:SourceIp", "Type": "Ip", "Multi": false, "Required": true}]}
    /// ```
    ///
    /// `Type` is one of `String`, `Numeric`, `Date`, `Bool`, `Ip`; `Multi`
    /// and `Required` default to false; `Services` defaults to any.
    pub fn from_json(file: &str, text: &str) -> Result<Schema, Error> {
        let root = json::parse(text)
            .map_err(|e| Error::Invalid(vec![Diagnostic::new(file, e.pos, e.message)]))?;
        let mut errs = Vec::new();
        let mut keys = Vec::new();
        let mut services = Vec::new();
        let err = |pos, msg: String| Diagnostic::new(file, pos, msg);
        let Value::Object(members) = &root.value else {
            return Err(Error::Invalid(vec![err(
                root.pos,
                format!("expected a schema object, found {}", root.value.kind()),
            )]));
        };
        for m in members {
            match m.key.as_str() {
                "Services" => match &m.value.value {
                    Value::Array(items) => {
                        for it in items {
                            match &it.value {
                                Value::String(s) => services.push(s.clone()),
                                other => errs.push(err(
                                    it.pos,
                                    format!(
                                        "expected a service name string, found {}",
                                        other.kind()
                                    ),
                                )),
                            }
                        }
                    }
                    other => errs.push(err(
                        m.value.pos,
                        format!("expected an array of service names, found {}", other.kind()),
                    )),
                },
                "Keys" => match &m.value.value {
                    Value::Array(items) => {
                        for it in items {
                            match key_decl(file, it) {
                                Ok(k) => keys.push(k),
                                Err(d) => errs.push(d),
                            }
                        }
                    }
                    other => errs.push(err(
                        m.value.pos,
                        format!(
                            "expected an array of key declarations, found {}",
                            other.kind()
                        ),
                    )),
                },
                other => errs.push(err(
                    m.key_pos,
                    format!("unknown schema field \"{other}\": expected \"Services\" or \"Keys\""),
                )),
            }
        }
        if errs.is_empty() {
            Ok(Schema::new(keys, services))
        } else {
            Err(Error::Invalid(errs))
        }
    }

    /// Looks a key up, case-insensitively; `ward:RequestHeader/X-Team`
    /// finds the `ward:RequestHeader/` family.
    pub fn key(&self, name: &str) -> Option<&KeyDecl> {
        self.keys
            .iter()
            .find(|k| !k.is_prefix() && k.name.eq_ignore_ascii_case(name))
            .or_else(|| {
                self.keys.iter().find(|k| {
                    k.is_prefix()
                        && name.len() > k.name.len()
                        && name
                            .get(..k.name.len())
                            .is_some_and(|p| p.eq_ignore_ascii_case(&k.name))
                })
            })
    }

    /// Every declared key.
    pub fn keys(&self) -> &[KeyDecl] {
        &self.keys
    }

    /// The action services this schema serves (lower case); empty = any.
    pub fn services(&self) -> &[String] {
        &self.services
    }
}

fn key_decl(file: &str, node: &json::Node) -> Result<KeyDecl, Diagnostic> {
    let Value::Object(members) = &node.value else {
        return Err(Diagnostic::new(
            file,
            node.pos,
            format!(
                "expected a key declaration object, found {}",
                node.value.kind()
            ),
        ));
    };
    let (mut name, mut ty, mut multi, mut required) = (None, None, false, false);
    for m in members {
        match (m.key.as_str(), &m.value.value) {
            ("Name", Value::String(s)) if s.contains(':') => name = Some(s.clone()),
            ("Name", _) => {
                return Err(Diagnostic::new(
                    file,
                    m.value.pos,
                    "expected \"Name\" to be a namespaced key string such as \"ward:SourceIp\"",
                ));
            }
            ("Type", Value::String(s)) => {
                ty = Some(KeyType::parse(s).ok_or_else(|| {
                    Diagnostic::new(
                        file,
                        m.value.pos,
                        format!(
                            "unknown key type \"{s}\": expected String, Numeric, Date, Bool or Ip"
                        ),
                    )
                })?)
            }
            ("Multi", Value::Bool(b)) => multi = *b,
            ("Required", Value::Bool(b)) => required = *b,
            ("Type" | "Multi" | "Required", v) => {
                return Err(Diagnostic::new(
                    file,
                    m.value.pos,
                    format!("unexpected {} for \"{}\"", v.kind(), m.key),
                ));
            }
            (other, _) => {
                return Err(Diagnostic::new(
                    file,
                    m.key_pos,
                    format!(
                        "unknown key-declaration field \"{other}\": expected Name, Type, Multi or Required"
                    ),
                ));
            }
        }
    }
    match (name, ty) {
        (Some(name), Some(ty)) => Ok(KeyDecl::new(&name, ty, multi, required)),
        _ => Err(Diagnostic::new(
            file,
            node.pos,
            "a key declaration needs \"Name\" and \"Type\"",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_handles_families() {
        let s = Schema::gateway();
        assert_eq!(s.key("WARD:sourceip").unwrap().ty, KeyType::Ip);
        assert_eq!(
            s.key("ward:RequestHeader/X-Team").unwrap().name,
            "ward:RequestHeader/"
        );
        assert!(s.key("ward:RequestHeader/").is_none());
        assert!(s.key("ward:SourceIP2").is_none());
        assert!(s.key("ward:PrincipalGroups").unwrap().multi);
        assert!(Schema::ca_admin().key("ward:CertSerial").is_some());
        assert_eq!(Schema::ca_admin().services(), ["ca"]);
    }

    #[test]
    fn from_json_round_trip_and_errors() {
        let s = Schema::from_json(
            "s.json",
            r#"{"Services": ["app"], "Keys": [{"Name": "app:Level", "Type": "Numeric", "Required": true},
                {"Name": "app:Tags", "Type": "String", "Multi": true}]}"#,
        )
        .unwrap();
        assert_eq!(s.key("app:level").unwrap().ty, KeyType::Numeric);
        assert!(s.key("app:tags").unwrap().multi);
        let e = Schema::from_json("s.json", r#"{"Keys": [{"Name": "a:b", "Type": "Float"}]}"#)
            .unwrap_err();
        let d = &e.diagnostics()[0];
        assert_eq!((d.line, d.column), (1, 35));
        assert!(d.message.contains("unknown key type \"Float\""), "{d}");
        let e = Schema::from_json("s.json", r#"{"Kyes": []}"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("s.json:1:2: unknown schema field \"Kyes\""),
            "{e}"
        );
        let e = Schema::from_json("s.json", r#"{"Keys": [{"Name": "a:b"}]}"#).unwrap_err();
        assert!(e.to_string().contains("needs \"Name\" and \"Type\""), "{e}");
    }
}
