//! The one error type of ward-policy.

/// Everything that can go wrong while loading or compiling policies.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A policy document is not valid JSON or does not follow the language;
    /// the message names the file, line, column and what was expected.
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        /// The policy file (or `<input>` when loaded from memory).
        file: String,
        /// 1-based line of the offending value.
        line: usize,
        /// 1-based column of the offending value.
        column: usize,
        /// What was wrong and what was expected instead.
        message: String,
    },
}
