//! Composite sort orders, made total by a caller-chosen unique tiebreak key.

use std::cell::Cell;
use std::cmp::Ordering;

use serde_json::Value;

use super::error::QueryError;
use super::path::Path;
use super::value::cmp_keys;

/// More keys than this is no real order, just a way to make every request slower.
pub(crate) const MAX_SORT_KEYS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SortKey {
    pub(crate) path: Path,
    pub(crate) descending: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SortSpec {
    keys: Vec<SortKey>,
}

/// Parses `-stats.bitrate,name`. Empty list elements are skipped (a trailing comma is a
/// harmless client quirk); a bare `-` or a malformed path is an error.
pub(crate) fn parse_sort_keys(raw: &str, parameter: &str) -> Result<Vec<SortKey>, QueryError> {
    let mut keys = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (descending, name) = match part.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, part.strip_prefix('+').unwrap_or(part)),
        };
        let path = Path::parse(name)
            .ok_or_else(|| QueryError::invalid(parameter, format!("bad sort field `{part}`")))?;
        keys.push(SortKey { path, descending });
        if keys.len() > MAX_SORT_KEYS {
            return Err(QueryError::invalid(
                parameter,
                format!("at most {MAX_SORT_KEYS} sort fields"),
            ));
        }
    }
    Ok(keys)
}

impl SortSpec {
    /// Appends the tiebreak (ascending) unless the order already contains it; later
    /// repeats of a path are dropped since they can never decide anything.
    pub(crate) fn new(keys: Vec<SortKey>, tiebreak: Path) -> Self {
        let mut out: Vec<SortKey> = Vec::with_capacity(keys.len() + 1);
        for key in keys {
            if !out.iter().any(|k| k.path == key.path) {
                out.push(key);
            }
        }
        if !out.iter().any(|k| k.path == tiebreak) {
            out.push(SortKey {
                path: tiebreak,
                descending: false,
            });
        }
        Self { keys: out }
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Canonical text of the effective order: `sort=name` and a default of `name` yield the
    /// same text, so a cursor stays valid whichever way the client spelled the order.
    pub(crate) fn canonical(&self) -> String {
        let parts: Vec<String> = self
            .keys
            .iter()
            .map(|k| {
                format!(
                    "{}{}",
                    if k.descending { "-" } else { "" },
                    k.path.as_dotted()
                )
            })
            .collect();
        parts.join(",")
    }

    /// Compares one item with a cursor boundary, like [`KeyTable::cmp_boundary`] without
    /// a table (for the few items a binary search visits).
    pub(crate) fn cmp_item_boundary(&self, item: &Value, boundary: &[Value]) -> Ordering {
        for (k, key) in self.keys.iter().enumerate() {
            let ord = cmp_keys(key.path.first_scalar(item), boundary.get(k));
            if ord != Ordering::Equal {
                return if key.descending { ord.reverse() } else { ord };
            }
        }
        Ordering::Equal
    }

    /// Whether `a` and `b` have the same key (the same scalar, or none, at every path): an
    /// item replaced by one with the same key keeps its place in the order.
    pub(crate) fn same_key(&self, a: &Value, b: &Value) -> bool {
        self.keys
            .iter()
            .all(|k| k.path.first_scalar(a) == k.path.first_scalar(b))
    }

    /// The item's full key, as stored in a cursor (like [`KeyTable::owned_key`]).
    pub(crate) fn owned_key(&self, item: &Value) -> Vec<Value> {
        self.keys
            .iter()
            .map(|k| k.path.first_scalar(item).cloned().unwrap_or(Value::Null))
            .collect()
    }

    /// A lazily filled key table over `items`.
    pub(crate) fn table<'a, 's>(&'s self, items: Vec<&'a Value>) -> KeyTable<'a, 's> {
        let cells = vec![Cell::new(None); items.len() * self.keys.len()];
        KeyTable {
            sort: self,
            items,
            cells,
        }
    }
}

/// Sort keys of a set of items, resolved on first use.
///
/// Resolving a path costs a cache miss per map key it passes (serde_json objects are
/// B-trees of heap-allocated strings), and that dominates a query over thousands of
/// items. Most comparisons are decided by the first key, so later keys (the tiebreak
/// included) are only resolved for the few items that tie on the earlier ones.
pub(crate) struct KeyTable<'a, 's> {
    sort: &'s SortSpec,
    items: Vec<&'a Value>,
    /// Row-major, one row per item; outer `None` = not resolved yet.
    cells: Vec<Cell<Option<Option<&'a Value>>>>,
}

impl<'a> KeyTable<'a, '_> {
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn item(&self, row: usize) -> &'a Value {
        self.items[row]
    }

    fn key(&self, row: usize, k: usize) -> Option<&'a Value> {
        let cell = &self.cells[row * self.sort.keys.len() + k];
        if let Some(v) = cell.get() {
            return v;
        }
        let v = self.sort.keys[k].path.first_scalar(self.items[row]);
        cell.set(Some(v));
        v
    }

    fn cmp_with<'b>(&self, row: usize, other: impl Fn(usize) -> Option<&'b Value>) -> Ordering {
        for (k, key) in self.sort.keys.iter().enumerate() {
            let ord = cmp_keys(self.key(row, k), other(k));
            if ord != Ordering::Equal {
                return if key.descending { ord.reverse() } else { ord };
            }
        }
        Ordering::Equal
    }

    pub(crate) fn cmp(&self, a: usize, b: usize) -> Ordering {
        self.cmp_with(a, |k| self.key(b, k))
    }

    /// Compares an item with a cursor boundary (one value per sort key; null = missing).
    pub(crate) fn cmp_boundary(&self, row: usize, boundary: &[Value]) -> Ordering {
        self.cmp_with(row, |k| boundary.get(k))
    }

    /// The item's full key, as stored in a cursor.
    pub(crate) fn owned_key(&self, row: usize) -> Vec<Value> {
        (0..self.sort.keys.len())
            .map(|k| self.key(row, k).cloned().unwrap_or(Value::Null))
            .collect()
    }
}
