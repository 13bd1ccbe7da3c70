//! Field filters (`<param>[_gt|_lt|_gte|_lte|_like|_ne|_is]=<value>`) and `q` search.
//!
//! A path may reach several values (through arrays); a filter holds when any reached
//! value satisfies it, except `_ne` and `_is=null`, which hold when none does — so
//! `streams_is=null` selects items with no (or an empty list of) streams.

use std::cmp::Ordering;

use serde_json::{Number, Value};

use super::error::QueryError;
use super::path::Path;
use super::value::{Needle, cmp_numbers, parse_number};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Gt,
    Lt,
    Gte,
    Lte,
    Like,
    IsNull,
    IsNotNull,
}

/// Longest suffixes first, so `x_gte` is not read as `x_gt` + `e`.
const SUFFIXES: &[(&str, Option<Op>)] = &[
    ("_gte", Some(Op::Gte)),
    ("_lte", Some(Op::Lte)),
    ("_like", Some(Op::Like)),
    ("_gt", Some(Op::Gt)),
    ("_lt", Some(Op::Lt)),
    ("_ne", Some(Op::Ne)),
    // The operator depends on the value (`null` / `not_null`).
    ("_is", None),
];

/// Splits `title_like` into (`title`, suffix) candidates; the caller decides which base
/// names exist. The bare name (equality) is always the first candidate.
/// `None` as the operator stands for `_is`.
pub(crate) fn candidates(param: &str) -> impl Iterator<Item = (&str, Option<Op>)> {
    std::iter::once((param, Some(Op::Eq))).chain(
        SUFFIXES
            .iter()
            .filter_map(move |(suffix, op)| param.strip_suffix(suffix).map(|base| (base, *op))),
    )
}

#[derive(Debug, Clone)]
pub(crate) struct Filter {
    path: Path,
    op: Op,
    text: String,
    number: Option<Number>,
    needle: Needle,
}

impl Filter {
    /// `op == None` is the `_is` suffix, resolved from the value.
    pub(crate) fn new(
        parameter: &str,
        path: Path,
        op: Option<Op>,
        value: &str,
    ) -> Result<Self, QueryError> {
        let op = match op {
            Some(op) => op,
            None => match value {
                "null" => Op::IsNull,
                "not_null" => Op::IsNotNull,
                _ => {
                    return Err(QueryError::invalid(
                        parameter,
                        "expected `null` or `not_null`",
                    ));
                }
            },
        };
        Ok(Self {
            path,
            op,
            text: value.to_owned(),
            number: parse_number(value),
            needle: Needle::new(value),
        })
    }

    /// Compares an item value with the filter value in the item value's type: a string
    /// value cannot equal a number in the query string and vice versa.
    fn typed_cmp(&self, v: &Value) -> Option<Ordering> {
        match v {
            Value::String(s) => Some(s.as_bytes().cmp(self.text.as_bytes())),
            Value::Number(n) => self.number.as_ref().map(|q| cmp_numbers(n, q)),
            Value::Bool(b) => match self.text.as_str() {
                "true" => Some(b.cmp(&true)),
                "false" => Some(b.cmp(&false)),
                _ => None,
            },
            _ => None,
        }
    }

    fn any(&self, item: &Value, mut pred: impl FnMut(&Value) -> bool) -> bool {
        self.path.visit(item, &mut |v| pred(v))
    }

    pub(crate) fn matches(&self, item: &Value) -> bool {
        let with =
            |want: fn(Ordering) -> bool| move |v: &Value| self.typed_cmp(v).is_some_and(want);
        match self.op {
            Op::Eq => self.any(item, with(Ordering::is_eq)),
            Op::Ne => !self.any(item, with(Ordering::is_eq)),
            Op::Gt => self.any(item, with(Ordering::is_gt)),
            Op::Lt => self.any(item, with(Ordering::is_lt)),
            Op::Gte => self.any(item, with(Ordering::is_ge)),
            Op::Lte => self.any(item, with(Ordering::is_le)),
            Op::Like => self.any(item, |v| self.needle.found_in_value(v)),
            Op::IsNull => !self.any(item, |v| !v.is_null()),
            Op::IsNotNull => self.any(item, |v| !v.is_null()),
        }
    }
}

/// `q`: a case-insensitive substring anywhere in the caller's search fields.
#[derive(Debug, Clone)]
pub(crate) struct Search {
    paths: Vec<Path>,
    needle: Needle,
}

impl Search {
    /// `None` for an empty pattern, which matches everything anyway.
    pub(crate) fn new(paths: Vec<Path>, pattern: &str) -> Option<Self> {
        let needle = Needle::new(pattern.trim());
        (!needle.is_empty()).then_some(Self { paths, needle })
    }

    pub(crate) fn paths(&self) -> &[Path] {
        &self.paths
    }

    pub(crate) fn needle(&self) -> &Needle {
        &self.needle
    }

    pub(crate) fn matches(&self, item: &Value) -> bool {
        self.paths
            .iter()
            .any(|p| p.visit(item, &mut |v| self.needle.found_in_value(v)))
    }
}
