//! Wildcard patterns (`*` any run of characters, possibly empty; `?` exactly
//! one character) and templates with policy variables (`${ward:Key}`).
//!
//! Patterns are precompiled: a literal becomes an exact comparison, `abc*` a
//! prefix test, `*` a constant, and only the rest runs the general matcher,
//! which is the classic linear-backtracking glob (one saved star; O(n·m) at
//! worst, no recursion, no allocation).

/// One element of a parsed pattern or template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Lit(char),
    /// `*`
    Star,
    /// `?`
    One,
    /// `${key}`; the key as written (resolved case-insensitively).
    Var(String),
}

/// Parses a pattern without variables: `$` is an ordinary character.
pub(crate) fn parse_glob(s: &str) -> Vec<Piece> {
    s.chars()
        .map(|c| match c {
            '*' => Piece::Star,
            '?' => Piece::One,
            c => Piece::Lit(c),
        })
        .collect()
}

/// Parses a template: like [`parse_glob`], plus `${key}` variables and IAM's
/// escapes `${*}`, `${?}`, `${$}` for literal `*`, `?`, `$`.
pub(crate) fn parse_template(s: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '*' => out.push(Piece::Star),
            '?' => out.push(Piece::One),
            '$' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                let rest = s.get(i + 2..).unwrap_or("");
                let Some(end) = rest.find('}') else {
                    return Err(format!("`{s}`: `${{` without a closing `}}`"));
                };
                let name = rest.get(..end).unwrap_or("");
                match name {
                    "*" => out.push(Piece::Lit('*')),
                    "?" => out.push(Piece::Lit('?')),
                    "$" => out.push(Piece::Lit('$')),
                    "" => return Err(format!("`{s}`: empty variable `${{}}`")),
                    n => out.push(Piece::Var(n.trim().to_owned())),
                }
                // Skip `{`, the name and `}`.
                let skip = name.chars().count() + 2;
                for _ in 0..skip {
                    chars.next();
                }
            }
            c => out.push(Piece::Lit(c)),
        }
    }
    Ok(out)
}

/// Characters before the first wildcard or variable.
pub(crate) fn literal_prefix(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .map_while(|p| match p {
            Piece::Lit(c) => Some(*c),
            _ => None,
        })
        .collect()
}

/// Whether a parsed pattern has any wildcard or variable.
pub(crate) fn is_literal(pieces: &[Piece]) -> bool {
    pieces.iter().all(|p| matches!(p, Piece::Lit(_)))
}

/// A precompiled pattern (no variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// `*` (or `**`…): matches everything, the empty string included.
    Any,
    /// No wildcard. Lower-cased when case-insensitive.
    Exact(String),
    /// `literal*`. Lower-cased when case-insensitive.
    Prefix(String),
    /// Anything else. Literals lower-cased when case-insensitive.
    Glob(Vec<Piece>),
}

impl Pattern {
    /// Compiles parsed pieces (which must not contain variables; a variable
    /// would be treated as never matching). `ci`: ASCII case-insensitive.
    pub(crate) fn compile(pieces: &[Piece], ci: bool) -> Pattern {
        let fold = |c: char| if ci { c.to_ascii_lowercase() } else { c };
        let pieces: Vec<Piece> = pieces
            .iter()
            .map(|p| match p {
                Piece::Lit(c) => Piece::Lit(fold(*c)),
                other => other.clone(),
            })
            .collect();
        if !pieces.is_empty() && pieces.iter().all(|p| *p == Piece::Star) {
            return Pattern::Any;
        }
        if is_literal(&pieces) {
            return Pattern::Exact(literal_prefix(&pieces));
        }
        if let Some((Piece::Star, head)) = pieces.split_last()
            && is_literal(head)
        {
            return Pattern::Prefix(literal_prefix(head));
        }
        Pattern::Glob(pieces)
    }

    /// Matches `text`; `ci` must be the flag the pattern was compiled with.
    pub(crate) fn matches(&self, text: &str, ci: bool) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(s) => {
                if ci {
                    s.eq_ignore_ascii_case(text)
                } else {
                    s == text
                }
            }
            Pattern::Prefix(p) => text.get(..p.len()).is_some_and(|h| {
                if ci {
                    h.eq_ignore_ascii_case(p)
                } else {
                    h == p
                }
            }),
            Pattern::Glob(pieces) => glob(pieces, text, ci),
        }
    }
}

/// The general matcher. `Var` pieces never match (callers expand them
/// first with [`expand`]).
pub(crate) fn glob(p: &[Piece], t: &str, ci: bool) -> bool {
    let eq = |a: char, b: char| {
        if ci {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        let next = t.get(ti..).and_then(|s| s.chars().next());
        let step = match (p.get(pi), next) {
            (Some(Piece::Star), _) => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            (Some(Piece::One), Some(c)) => Some(c),
            (Some(Piece::Lit(pc)), Some(c)) if eq(*pc, c) => Some(c),
            (None, None) => return true,
            _ => None,
        };
        if let Some(c) = step {
            pi += 1;
            ti += c.len_utf8();
            continue;
        }
        // Mismatch: let the last star swallow one more character.
        match star {
            Some((sp, st)) => match t.get(st..).and_then(|s| s.chars().next()) {
                Some(c) => {
                    star = Some((sp, st + c.len_utf8()));
                    pi = sp + 1;
                    ti = st + c.len_utf8();
                }
                None => return false,
            },
            None => return false,
        }
    }
}

/// Replaces variables by their (single) values: `lookup` returns `None`
/// when the key is absent, and then the whole template is `None` (IAM: a
/// statement whose variable cannot be resolved does not match).
pub(crate) fn expand<'a>(
    pieces: &[Piece],
    mut lookup: impl FnMut(&str) -> Option<&'a str>,
) -> Option<Vec<Piece>> {
    let mut out = Vec::with_capacity(pieces.len() + 16);
    for p in pieces {
        match p {
            Piece::Var(k) => out.extend(lookup(k)?.chars().map(Piece::Lit)),
            other => out.push(other.clone()),
        }
    }
    Some(out)
}

/// The text of an all-literal piece list (wildcards kept as `*`/`?`).
pub(crate) fn to_text(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Lit(c) => c.to_string(),
            Piece::Star => "*".into(),
            Piece::One => "?".into(),
            Piece::Var(k) => format!("${{{k}}}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        let c = Pattern::compile(&parse_glob(p), false);
        let general = glob(&parse_glob(p), t, false);
        assert_eq!(
            c.matches(t, false),
            general,
            "precompiled vs general for {p} / {t}"
        );
        general
    }

    #[test]
    fn star_matches_empty_and_anything() {
        assert!(m("*", ""));
        assert!(m("*", "abc"));
        assert!(m("a*", "a"));
        assert!(m("*a", "a"));
        assert!(m("a*b", "ab"));
        assert!(m("a*b", "axxxb"));
        assert!(!m("a*b", "axxxc"));
        assert!(m("a*b*c", "abbbcbc"));
        assert!(m("**", ""));
        assert!(m("route/*", "route/"));
        assert!(!m("route/*", "route"));
    }

    #[test]
    fn question_is_exactly_one_char() {
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(!m("a?c", "abbc"));
        assert!(m("?", "é"));
        assert!(!m("?", ""));
        assert!(m("*?", "x"));
        assert!(!m("*?", ""));
    }

    #[test]
    fn other_chars_are_literal() {
        assert!(m("a.b", "a.b"));
        assert!(!m("a.b", "axb"));
        assert!(m("[x]", "[x]"));
        assert!(m("$", "$"));
        assert!(m("route/a+b", "route/a+b"));
        assert!(!m("abc", "ABC"));
    }

    #[test]
    fn case_insensitive_for_actions() {
        let p = Pattern::compile(&parse_glob("HTTP:Get"), true);
        assert!(p.matches("http:GET", true));
        let p = Pattern::compile(&parse_glob("http:*"), true);
        assert!(p.matches("HTTP:DELETE", true));
        assert!(glob(&parse_glob("h?tp:g*t"), "HTTP:GET", true));
        assert!(!Pattern::compile(&parse_glob("é"), true).matches("É", true));
    }

    #[test]
    fn prefix_on_multibyte_boundary_does_not_panic() {
        let p = Pattern::compile(&parse_glob("é*"), false);
        assert!(!p.matches("e", false));
        let p = Pattern::compile(&parse_glob("ab*"), false);
        assert!(!p.matches("aé", false));
    }

    #[test]
    fn templates_variables_and_escapes() {
        let t = parse_template("route/home/${ward:Host}/${*}${?}${$}*").unwrap();
        assert_eq!(t[11], Piece::Var("ward:Host".into()));
        assert_eq!(
            &t[13..16],
            &[Piece::Lit('*'), Piece::Lit('?'), Piece::Lit('$')]
        );
        assert_eq!(t[16], Piece::Star);
        let e = expand(&t, |k| (k == "ward:Host").then_some("h")).unwrap();
        assert!(glob(&e, "route/home/h/*?$anything", false));
        assert!(!glob(&e, "route/home/h/x?$", false));
        assert!(expand(&t, |_| None).is_none());
        assert!(parse_template("a${b").unwrap_err().contains("closing"));
        assert!(parse_template("${}").unwrap_err().contains("empty"));
        assert_eq!(parse_template("a$b").unwrap().len(), 3);
    }

    #[test]
    fn compile_kinds() {
        assert_eq!(Pattern::compile(&parse_glob("*"), false), Pattern::Any);
        assert_eq!(
            Pattern::compile(&parse_glob("ab"), false),
            Pattern::Exact("ab".into())
        );
        assert_eq!(
            Pattern::compile(&parse_glob("AB*"), true),
            Pattern::Prefix("ab".into())
        );
        assert!(matches!(
            Pattern::compile(&parse_glob("a*b"), false),
            Pattern::Glob(_)
        ));
        assert_eq!(Pattern::compile(&[], false), Pattern::Exact(String::new()));
    }
}
