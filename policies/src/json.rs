//! A small JSON parser that keeps the line and column of every value and
//! object key.
//!
//! `serde_json::Value` forgets positions, but a policy author needs to be told
//! *where* a misspelt key or a bad CIDR is, so documents are parsed here. The
//! parser is strict RFC 8259 (no comments, no trailing commas), rejects
//! duplicate object keys (IAM keeps the last one silently, a classic way to
//! lose a Deny) and limits nesting depth so that hostile input cannot
//! overflow the stack.

use std::fmt;

/// 1-based position in a source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub line: u32,
    pub column: u32,
}

/// A JSON value with the position of its first character.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub pos: Pos,
    pub value: Value,
}

/// An object member: its key (with the key's position) and value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Member {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    /// The number's source text, kept verbatim (policies compare numbers as
    /// condition values, so no precision is lost to f64 here).
    Number(String),
    String(String),
    Array(Vec<Node>),
    /// Members in source order.
    Object(Vec<Member>),
}

impl Value {
    /// What kind of value this is, for messages ("expected a string, found an array").
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }
}

/// A syntax error at a position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.pos.line, self.pos.column, self.message)
    }
}

const MAX_DEPTH: usize = 64;

/// Parses one JSON document (surrounding whitespace allowed).
pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    // Editors on some systems start UTF-8 files with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut p = Parser {
        chars: text.chars().peekable(),
        pos: Pos { line: 1, column: 1 },
    };
    p.skip_ws();
    let node = p.value(0)?;
    p.skip_ws();
    if let Some(c) = p.peek() {
        return Err(p.err(format!("unexpected `{c}` after the end of the document")));
    }
    Ok(node)
}

struct Parser<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    pos: Pos,
}

impl Parser<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.pos.line = self.pos.line.saturating_add(1);
            self.pos.column = 1;
        } else {
            self.pos.column = self.pos.column.saturating_add(1);
        }
        Some(c)
    }

    fn err(&self, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            pos: self.pos,
            message: message.into(),
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r')) {
            self.bump();
        }
    }

    fn expect(&mut self, want: char, what: &str) -> Result<(), SyntaxError> {
        match self.peek() {
            Some(c) if c == want => {
                self.bump();
                Ok(())
            }
            Some(c) => Err(self.err(format!("expected {what}, found `{c}`"))),
            None => Err(self.err(format!("expected {what}, found the end of the file"))),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.err(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        let pos = self.pos;
        let value = match self.peek() {
            Some('{') => self.object(depth)?,
            Some('[') => self.array(depth)?,
            Some('"') => Value::String(self.string()?),
            Some('t') => self.word("true", Value::Bool(true))?,
            Some('f') => self.word("false", Value::Bool(false))?,
            Some('n') => self.word("null", Value::Null)?,
            Some(c) if c == '-' || c.is_ascii_digit() => self.number()?,
            Some(c) => return Err(self.err(format!("expected a JSON value, found `{c}`"))),
            None => return Err(self.err("expected a JSON value, found the end of the file")),
        };
        Ok(Node { pos, value })
    }

    fn word(&mut self, word: &str, value: Value) -> Result<Value, SyntaxError> {
        let start = self.pos;
        for want in word.chars() {
            if self.peek() != Some(want) {
                return Err(SyntaxError {
                    pos: start,
                    message: format!("expected `{word}` (strings need double quotes)"),
                });
            }
            self.bump();
        }
        Ok(value)
    }

    fn number(&mut self) -> Result<Value, SyntaxError> {
        let start = self.pos;
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E') {
                s.push(c);
                self.bump();
            } else {
                break;
            }
        }
        if !valid_number(&s) {
            return Err(SyntaxError {
                pos: start,
                message: format!("`{s}` is not a valid JSON number"),
            });
        }
        Ok(Value::Number(s))
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        self.expect('"', "`\"`")?;
        let mut out = String::new();
        loop {
            let here = self.pos;
            match self.bump() {
                None => return Err(self.err("unterminated string: expected a closing `\"`")),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('/') => out.push('/'),
                    Some('b') => out.push('\u{8}'),
                    Some('f') => out.push('\u{c}'),
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some('u') => {
                        let hi = self.hex4()?;
                        let c = if (0xD800..0xDC00).contains(&hi) {
                            self.expect('\\', "a low surrogate `\\uDC00`..`\\uDFFF`")?;
                            self.expect('u', "a low surrogate `\\uDC00`..`\\uDFFF`")?;
                            let lo = self.hex4()?;
                            if !(0xDC00..0xE000).contains(&lo) {
                                return Err(SyntaxError {
                                    pos: here,
                                    message: "invalid surrogate pair in string escape".into(),
                                });
                            }
                            char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                        } else {
                            char::from_u32(hi)
                        };
                        match c {
                            Some(c) => out.push(c),
                            None => {
                                return Err(SyntaxError {
                                    pos: here,
                                    message: "invalid unicode escape (lone surrogate)".into(),
                                });
                            }
                        }
                    }
                    _ => {
                        return Err(SyntaxError {
                            pos: here,
                            message: "invalid escape: expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX".into(),
                        });
                    }
                },
                Some(c) if (c as u32) < 0x20 => {
                    return Err(SyntaxError {
                        pos: here,
                        message: "control character in string: escape it (\\n, \\t, \\u00XX)"
                            .into(),
                    });
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = self
                .peek()
                .and_then(|c| c.to_digit(16))
                .ok_or_else(|| self.err("expected four hex digits after \\u"))?;
            self.bump();
            v = v * 16 + d;
        }
        Ok(v)
    }

    fn array(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        self.expect('[', "`[`")?;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(']') {
            self.bump();
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(']') => {
                    self.bump();
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.err("expected `,` or `]` in array")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        self.expect('{', "`{`")?;
        let mut members: Vec<Member> = Vec::new();
        self.skip_ws();
        if self.peek() == Some('}') {
            self.bump();
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_ws();
            let key_pos = self.pos;
            if self.peek() != Some('"') {
                return Err(self.err("expected a double-quoted object key"));
            }
            let key = self.string()?;
            if members.iter().any(|m| m.key == key) {
                return Err(SyntaxError {
                    pos: key_pos,
                    message: format!(
                        "duplicate key \"{key}\": JSON parsers disagree on which one wins, so merge them into one"
                    ),
                });
            }
            self.skip_ws();
            self.expect(':', "`:` after the object key")?;
            self.skip_ws();
            let value = self.value(depth + 1)?;
            members.push(Member {
                key,
                key_pos,
                value,
            });
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some('}') => {
                    self.bump();
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.err("expected `,` or `}` in object")),
            }
        }
    }
}

/// RFC 8259 number grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn valid_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let at = |i: usize| b.get(i).copied();
    if at(i) == Some(b'-') {
        i += 1;
    }
    match at(i) {
        Some(b'0') => i += 1,
        Some(c) if c.is_ascii_digit() => {
            while at(i).is_some_and(|c| c.is_ascii_digit()) {
                i += 1;
            }
        }
        _ => return false,
    }
    if at(i) == Some(b'.') {
        i += 1;
        if !at(i).is_some_and(|c| c.is_ascii_digit()) {
            return false;
        }
        while at(i).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
        }
    }
    if matches!(at(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(at(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !at(i).is_some_and(|c| c.is_ascii_digit()) {
            return false;
        }
        while at(i).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_values_and_keys() {
        let n = parse("{\n  \"a\": [1, \"x\"],\n  \"b\": true\n}").unwrap();
        let Value::Object(m) = n.value else { panic!() };
        assert_eq!(m[0].key_pos, Pos { line: 2, column: 3 });
        assert_eq!(m[1].key_pos, Pos { line: 3, column: 3 });
        assert_eq!(m[1].value.pos, Pos { line: 3, column: 8 });
        let Value::Array(a) = &m[0].value.value else {
            panic!()
        };
        assert_eq!(
            a[1].pos,
            Pos {
                line: 2,
                column: 12
            }
        );
        assert_eq!(a[0].value, Value::Number("1".into()));
    }

    #[test]
    fn escapes_and_unicode() {
        let n = parse(r#""a\"b\\\u00e9\ud83d\ude00\n""#).unwrap();
        assert_eq!(n.value, Value::String("a\"b\\é😀\n".into()));
    }

    #[test]
    fn errors_have_positions() {
        let e = parse("{\"a\": 1,}").unwrap_err();
        assert_eq!(e.pos, Pos { line: 1, column: 9 });
        assert!(e.message.contains("double-quoted object key"), "{e}");
        let e = parse("{\"a\": 1, \"a\": 2}").unwrap_err();
        assert!(e.message.contains("duplicate key"), "{e}");
        assert_eq!(e.pos.column, 10);
        let e = parse("[1 2]").unwrap_err();
        assert!(e.message.contains("`,` or `]`"), "{e}");
        let e = parse("\n  tru").unwrap_err();
        assert_eq!(e.pos, Pos { line: 2, column: 3 });
        let e = parse("01").unwrap_err();
        assert!(e.message.contains("not a valid JSON number"));
        let e = parse("\"abc").unwrap_err();
        assert!(e.message.contains("unterminated"));
        let e = parse("{} x").unwrap_err();
        assert!(e.message.contains("after the end"));
        let e = parse("\"\\ud800\"").unwrap_err();
        assert!(e.message.contains("surrogate"), "{e}");
    }

    #[test]
    fn byte_order_mark_is_skipped() {
        let n = parse("\u{feff}{\"a\": 1}").unwrap();
        assert_eq!(n.pos, Pos { line: 1, column: 1 });
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let s = "[".repeat(10_000);
        let e = parse(&s).unwrap_err();
        assert!(e.message.contains("nesting"));
    }

    #[test]
    fn numbers() {
        for ok in ["0", "-1", "1.5", "1e10", "2E-3", "-0.0"] {
            assert!(valid_number(ok), "{ok}");
        }
        for bad in ["", "-", "1.", ".5", "1e", "00", "1-2"] {
            assert!(!valid_number(bad), "{bad}");
        }
    }
}
