//! Compiled condition evaluation: one operator on one key, with IAM's rules
//! for absent keys, `IfExists`, negated operators and the set qualifiers.
//!
//! Policy-side values were parsed at compile time (CIDRs, dates, numbers);
//! the request-side value is parsed once per condition, without allocating.

use crate::document::{CondValue, Condition, Op, Qualifier};
use crate::pattern::{self, Pattern, Piece};
use crate::request::Context;
use crate::values;

/// A policy-side string value, precompiled when it has no variable.
#[derive(Debug, Clone)]
pub(crate) enum StrValue {
    /// No variable: exact text (Equals/IgnoreCase) or a compiled pattern (Like).
    Text(String),
    Like(Pattern),
    /// Has variables: expanded per request.
    Template(Vec<Piece>),
}

/// A condition ready to evaluate.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub op: Op,
    pub qualifier: Option<Qualifier>,
    pub if_exists: bool,
    pub key: String,
    pub key_name: String,
    pub strs: Vec<StrValue>,
    pub values: Vec<CondValue>,
}

impl Compiled {
    pub(crate) fn new(c: &Condition) -> Compiled {
        let like = matches!(c.op, Op::StringLike | Op::StringNotLike);
        let strs = c
            .values
            .iter()
            .filter_map(|v| match v {
                CondValue::Str(p) if p.iter().any(|x| matches!(x, Piece::Var(_))) => {
                    Some(StrValue::Template(p.clone()))
                }
                CondValue::Str(p) if like => Some(StrValue::Like(Pattern::compile(p, false))),
                CondValue::Str(p) => Some(StrValue::Text(pattern::to_text(p))),
                _ => None,
            })
            .collect();
        Compiled {
            op: c.op,
            qualifier: c.qualifier,
            if_exists: c.if_exists,
            key: c.key.clone(),
            key_name: c.key_name.clone(),
            strs,
            values: c.values.clone(),
        }
    }
}

/// How a condition came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    False,
    True,
    /// True only because the key was absent (`IfExists`, or `ForAllValues:`
    /// on an absent or empty key): worth a warning on the decision.
    TrueBecauseAbsent,
}

/// IgnoreCase comparison: simple per-character Unicode lower-casing (no
/// context-dependent rules such as the final sigma), without allocating.
fn fold_eq(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

fn first<'c>(ctx: &'c Context, key: &str) -> Option<&'c str> {
    ctx.get_lower(key)
        .and_then(|v| v.first())
        .map(String::as_str)
}

/// Whether the request value `rv` matches any policy value (the positive
/// form of the operator; negation is applied by the caller).
fn any_matches(c: &Compiled, rv: &str, ctx: &Context) -> bool {
    match c.op {
        Op::StringEquals | Op::StringNotEquals => c.strs.iter().any(|s| match s {
            StrValue::Text(t) => t == rv,
            StrValue::Template(p) => {
                pattern::expand(p, |k| first(ctx, k)).is_some_and(|e| pattern::to_text(&e) == rv)
            }
            StrValue::Like(_) => false,
        }),
        Op::StringEqualsIgnoreCase | Op::StringNotEqualsIgnoreCase => {
            c.strs.iter().any(|s| match s {
                StrValue::Text(t) => fold_eq(t, rv),
                StrValue::Template(p) => pattern::expand(p, |k| first(ctx, k))
                    .is_some_and(|e| fold_eq(&pattern::to_text(&e), rv)),
                StrValue::Like(_) => false,
            })
        }
        Op::StringLike | Op::StringNotLike => c.strs.iter().any(|s| match s {
            StrValue::Like(p) => p.matches(rv, false),
            StrValue::Template(p) => {
                pattern::expand(p, |k| first(ctx, k)).is_some_and(|e| pattern::glob(&e, rv, false))
            }
            StrValue::Text(t) => t == rv,
        }),
        Op::Numeric(cmp) => values::parse_number(rv).is_some_and(|r| {
            c.values
                .iter()
                .any(|v| matches!(v, CondValue::Num(p) if cmp.holds(r, *p)))
        }),
        Op::Date(cmp) => values::parse_date(rv).is_some_and(|r| {
            c.values
                .iter()
                .any(|v| matches!(v, CondValue::Date(p) if cmp.holds(r, *p)))
        }),
        Op::Bool => values::parse_bool(rv).is_some_and(|r| {
            c.values
                .iter()
                .any(|v| matches!(v, CondValue::Bool(p) if *p == r))
        }),
        Op::IpAddress | Op::NotIpAddress => values::parse_ip(rv).is_some_and(|ip| {
            c.values
                .iter()
                .any(|v| matches!(v, CondValue::Cidr(p) if p.contains(ip)))
        }),
        Op::Null => false,
    }
}

fn value_ok(c: &Compiled, rv: &str, ctx: &Context) -> bool {
    let hit = any_matches(c, rv, ctx);
    if c.op.negated() { !hit } else { hit }
}

/// Evaluates one condition against a (validated) context.
pub(crate) fn evaluate(c: &Compiled, ctx: &Context) -> Verdict {
    let present = ctx.get_lower(&c.key).filter(|v| !v.is_empty());
    let b = |x: bool| if x { Verdict::True } else { Verdict::False };
    if c.op == Op::Null {
        let absent = present.is_none();
        return b(c
            .values
            .iter()
            .any(|v| matches!(v, CondValue::Bool(want) if *want == absent)));
    }
    let Some(vals) = present else {
        // Absent key (or, for a set, an empty one).
        return match c.qualifier {
            _ if c.if_exists => Verdict::TrueBecauseAbsent,
            Some(Qualifier::ForAllValues) => Verdict::TrueBecauseAbsent,
            Some(Qualifier::ForAnyValue) => Verdict::False,
            None => b(c.op.negated()),
        };
    };
    match c.qualifier {
        None => b(vals.first().is_some_and(|v| value_ok(c, v, ctx))),
        Some(Qualifier::ForAnyValue) => b(vals.iter().any(|v| value_ok(c, v, ctx))),
        Some(Qualifier::ForAllValues) => b(vals.iter().all(|v| value_ok(c, v, ctx))),
    }
}
