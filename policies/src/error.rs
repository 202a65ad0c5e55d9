//! The one error type of ward-policy, and the located message both errors
//! and warnings are made of.

use std::fmt;
use std::path::PathBuf;

/// One located message: a validation error or a load-time warning.
///
/// `file` is the source name given to [`crate::PolicySet::compile`] (the path
/// relative to the policy directory when loaded with [`crate::dir::load`]);
/// `line` and `column` are 1-based and point at the offending JSON value or
/// key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// Source file name.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column (in characters).
    pub column: u32,
    /// What was wrong, what was expected, and what to do.
    pub message: String,
}

impl Diagnostic {
    pub(crate) fn new(file: &str, pos: crate::json::Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_owned(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Everything that can go wrong while loading or compiling policies.
///
/// Evaluation itself never fails: a request the policy set cannot judge (a
/// required context key missing, say) is denied, and the decision says why.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// One or more documents (policies, `groups.json`, or a schema) are not
    /// valid JSON or do not follow the language. Every diagnostic names the
    /// file, line, column and what was expected; all of them are collected,
    /// not just the first.
    #[error("{}", render(.0))]
    Invalid(Vec<Diagnostic>),
    /// A policy directory or file could not be read.
    #[error("cannot read {path}: {source}; check that it exists and is readable")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The diagnostics of an [`Error::Invalid`]; empty for other variants.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            Error::Invalid(d) => d,
            Error::Io { .. } => &[],
        }
    }
}

fn render(diags: &[Diagnostic]) -> String {
    let mut out = format!(
        "{} policy error{} (fix each and run `ward policy check` again):",
        diags.len(),
        if diags.len() == 1 { "" } else { "s" }
    );
    for d in diags {
        out.push_str("\n  ");
        out.push_str(&d.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_lists_every_diagnostic_with_location() {
        let e = Error::Invalid(vec![
            Diagnostic {
                file: "a.json".into(),
                line: 3,
                column: 7,
                message: "bad".into(),
            },
            Diagnostic {
                file: "b.json".into(),
                line: 1,
                column: 1,
                message: "worse".into(),
            },
        ]);
        let s = e.to_string();
        assert!(s.starts_with("2 policy errors"), "{s}");
        assert!(s.contains("a.json:3:7: bad"), "{s}");
        assert!(s.contains("b.json:1:1: worse"), "{s}");
        assert_eq!(e.diagnostics().len(), 2);
    }
}
