//! Typed comparison of JSON scalars and case-insensitive matching.

use std::cmp::Ordering;

use serde_json::{Number, Value};

/// Total order over sort keys: booleans, then numbers, then strings, then missing (`None`
/// or JSON null). It must be a true total order — `slice::sort*` may panic otherwise —
/// which is why integers and floats are compared exactly rather than through `f64`.
pub(crate) fn cmp_keys(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    let (ra, rb) = (rank(a), rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match (a, b) {
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(Value::Number(x)), Some(Value::Number(y))) => cmp_numbers(x, y),
        (Some(Value::String(x)), Some(Value::String(y))) => x.as_bytes().cmp(y.as_bytes()),
        _ => Ordering::Equal,
    }
}

fn rank(v: Option<&Value>) -> u8 {
    match v {
        Some(Value::Bool(_)) => 0,
        Some(Value::Number(_)) => 1,
        Some(Value::String(_)) => 2,
        _ => 3,
    }
}

enum Num {
    Int(i128),
    Float(f64),
}

fn num(n: &Number) -> Num {
    if let Some(i) = n.as_i64() {
        Num::Int(i128::from(i))
    } else if let Some(u) = n.as_u64() {
        Num::Int(i128::from(u))
    } else {
        Num::Float(n.as_f64().unwrap_or(0.0))
    }
}

pub(crate) fn cmp_numbers(a: &Number, b: &Number) -> Ordering {
    match (num(a), num(b)) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        // serde_json never holds NaN, so partial_cmp is total here.
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        (Num::Int(x), Num::Float(y)) => cmp_int_float(x, y),
        (Num::Float(x), Num::Int(y)) => cmp_int_float(y, x).reverse(),
    }
}

/// Exact: `2^53 + 1` must stay greater than `2^53` whichever representation either has.
fn cmp_int_float(i: i128, f: f64) -> Ordering {
    // 2^127 is exactly representable; anything at or beyond it exceeds every i128.
    const LIMIT: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;
    if f >= LIMIT {
        return Ordering::Less;
    }
    if f < -LIMIT {
        return Ordering::Greater;
    }
    let t = f.trunc();
    // In range and integral, so the cast is exact.
    let ti = t as i128;
    match i.cmp(&ti) {
        Ordering::Equal if f > t => Ordering::Less,
        Ordering::Equal if f < t => Ordering::Greater,
        other => other,
    }
}

/// Parses a query-string value as a JSON number, keeping integers exact.
pub(crate) fn parse_number(raw: &str) -> Option<Number> {
    let raw = raw.trim();
    if let Ok(i) = raw.parse::<i64>() {
        return Some(Number::from(i));
    }
    if let Ok(u) = raw.parse::<u64>() {
        return Some(Number::from(u));
    }
    raw.parse::<f64>().ok().and_then(Number::from_f64)
}

/// A lowercase needle, prepared once per query so that matching thousands of items does
/// not allocate when the needle is ASCII (the common case).
#[derive(Debug, Clone)]
pub(crate) struct Needle {
    lower: String,
    ascii: bool,
}

impl Needle {
    pub(crate) fn new(raw: &str) -> Self {
        Self {
            lower: raw.to_lowercase(),
            ascii: raw.is_ascii(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lower.is_empty()
    }

    /// The lowercase needle if it is ASCII: then it matches exactly where it is a substring
    /// of the ASCII-lowercased haystack.
    pub(crate) fn ascii_lower(&self) -> Option<&str> {
        self.ascii.then_some(self.lower.as_str())
    }

    pub(crate) fn found_in(&self, haystack: &str) -> bool {
        if self.ascii {
            contains_ascii_ci(haystack.as_bytes(), self.lower.as_bytes())
        } else {
            haystack.to_lowercase().contains(&self.lower)
        }
    }

    /// Strings match by substring; numbers and booleans by their JSON text, so that
    /// `id_like=12` behaves as a client would expect.
    pub(crate) fn found_in_value(&self, v: &Value) -> bool {
        match v {
            Value::String(s) => self.found_in(s),
            Value::Number(n) => self.found_in(&n.to_string()),
            Value::Bool(b) => self.found_in(if *b { "true" } else { "false" }),
            _ => false,
        }
    }
}

/// The needle is lowercase ASCII, so a non-ASCII haystack byte can never equal one of its
/// bytes and UTF-8 multibyte sequences need no special handling.
fn contains_ascii_ci(haystack: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    if needle.len() > haystack.len() {
        return false;
    }
    // Cheap first-byte test before comparing the rest: most positions fail there.
    let (first, rest) = (needle[0], &needle[1..]);
    let first_upper = first.to_ascii_uppercase();
    (0..=haystack.len() - needle.len()).any(|i| {
        let b = haystack[i];
        (b == first || b == first_upper)
            && haystack[i + 1..i + needle.len()]
                .iter()
                .zip(rest)
                .all(|(h, n)| h.to_ascii_lowercase() == *n)
    })
}
