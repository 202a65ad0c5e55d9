//! TOML config loading shared by every ward role.
//!
//! Every config struct derives `Deserialize` with `deny_unknown_fields`, so a
//! misspelt key is an error rather than a silently ignored setting. This
//! module turns serde's error into one that names the file, the line and
//! column, and the dotted key path, because "invalid type" without a location
//! is useless in a 200-line gateway config.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A config file that was read but could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the config came from (or `<input>` for in-memory text).
    pub path: PathBuf,
    /// 1-based line of the problem, when the parser knows it.
    pub line: Option<usize>,
    /// 1-based column of the problem, when the parser knows it.
    pub column: Option<usize>,
    /// Dotted path of the offending key, e.g. `listeners[0].address`;
    /// empty when the problem is with the document as a whole.
    pub key: String,
    /// What the parser said was wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if !self.key.is_empty() && self.key != "." {
            write!(f, ": key `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Reads and parses a TOML config file into `T`.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, crate::Error> {
    let text = std::fs::read_to_string(path).map_err(|source| crate::Error::ConfigRead {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse(&text, path)?)
}

/// Parses TOML text into `T`; `origin` is only used in error messages.
pub fn parse<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T, ConfigError> {
    let de =
        toml::Deserializer::parse(text).map_err(|e| from_toml(text, origin, String::new(), &e))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        from_toml(text, origin, key, e.inner())
    })
}

fn from_toml(text: &str, origin: &Path, key: String, e: &toml::de::Error) -> ConfigError {
    let (line, column) = match e.span() {
        Some(span) => {
            let (l, c) = line_col(text, span.start);
            (Some(l), Some(c))
        }
        None => (None, None),
    };
    ConfigError {
        path: origin.to_path_buf(),
        line,
        column,
        key,
        message: e.message().trim().to_string(),
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Listener {
        address: String,
        #[serde(default)]
        tls13_only: bool,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Config {
        name: String,
        #[serde(default)]
        listeners: Vec<Listener>,
    }

    #[test]
    fn parses_a_good_config() {
        let c: Config = parse(
            "name = \"gw\"\n[[listeners]]\naddress = \"127.0.0.1:8443\"\n",
            Path::new("gw.toml"),
        )
        .unwrap();
        assert_eq!(c.name, "gw");
        assert_eq!(c.listeners.len(), 1);
        assert!(!c.listeners[0].tls13_only);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = "name = \"gw\"\n\n[[listeners]]\naddress = \"x\"\ntls13_onyl = true\n";
        let e = parse::<Config>(text, Path::new("gw.toml")).unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        assert_eq!(e.column, Some(1), "{e}");
        assert!(e.message.contains("unknown field `tls13_onyl`"), "{e}");
        assert!(e.key.starts_with("listeners[0]"), "{e}");
        let shown = e.to_string();
        assert!(shown.starts_with("gw.toml:5:1"), "{shown}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let text = "name = \"gw\"\n[[listeners]]\naddress = 8443\n";
        let e = parse::<Config>(text, Path::new("gw.toml")).unwrap_err();
        assert_eq!(e.key, "listeners[0].address", "{e}");
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("invalid type"), "{e}");
    }

    #[test]
    fn missing_key_is_reported() {
        let e =
            parse::<Config>("[[listeners]]\naddress = \"x\"\n", Path::new("c.toml")).unwrap_err();
        assert!(e.message.contains("missing field `name`"), "{e}");
    }

    #[test]
    fn syntax_error_has_a_location() {
        let e = parse::<Config>("name = \"gw\"\nlisteners = [\n", Path::new("c.toml")).unwrap_err();
        assert!(e.line.is_some(), "{e}");
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = load::<Config>(&dir.path().join("nope.toml")).unwrap_err();
        assert!(e.to_string().contains("cannot read config file"), "{e}");
    }
}
