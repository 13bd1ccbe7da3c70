//! Executing a query: filter, keyset-page, project; and the Watcher collection envelope.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use super::cursor::{Cursor, Direction};
use super::parse::Query;

/// One page of a collection.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The page's items, projected by `select`, in sort order. Shared with the collection
    /// when not projected: a page of an indexed collection copies 100 pointers, not 100
    /// JSON trees (at 100,000 streams the copy and its drop were a third of a list's CPU).
    pub items: Vec<Arc<Value>>,
    /// Items matching the filters, ignoring the cursor.
    pub estimated_count: usize,
    /// `None` on the last page.
    pub next: Option<String>,
    /// `None` on the first page.
    pub prev: Option<String>,
}

impl Page {
    /// The Watcher collection envelope: items under `items_key` (`streams`,
    /// `users_list`, …). `next`/`prev` are omitted rather than empty or null on the
    /// ends: the SDK iterator re-requests the first page forever on `"next": ""`.
    pub fn into_envelope(self, items_key: &str, timing: Value) -> Envelope {
        Envelope {
            page: self,
            items_key: items_key.to_owned(),
            timing,
        }
    }
}

/// A page in the Watcher collection envelope, serialized straight from the shared items.
#[derive(Debug)]
pub struct Envelope {
    page: Page,
    items_key: String,
    timing: Value,
}

impl Serialize for Envelope {
    /// Members in name order, as a `serde_json::Map` writes them: the bytes are those of the
    /// envelope built as a `Value`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        enum Member<'a> {
            Count(usize),
            Text(&'a str),
            Timing(&'a Value),
            Items(&'a [Arc<Value>]),
        }
        let p = &self.page;
        let mut members = vec![
            ("estimated_count", Member::Count(p.estimated_count)),
            ("timing", Member::Timing(&self.timing)),
            (self.items_key.as_str(), Member::Items(&p.items)),
        ];
        if let Some(next) = &p.next {
            members.push(("next", Member::Text(next)));
        }
        if let Some(prev) = &p.prev {
            members.push(("prev", Member::Text(prev)));
        }
        members.sort_by_key(|(k, _)| *k);
        let mut map = serializer.serialize_map(Some(members.len()))?;
        for (k, v) in members {
            match v {
                Member::Count(n) => map.serialize_entry(k, &n)?,
                Member::Text(t) => map.serialize_entry(k, t)?,
                Member::Timing(t) => map.serialize_entry(k, t)?,
                Member::Items(items) => {
                    let items: Vec<&Value> = items.iter().map(|v| &**v).collect();
                    map.serialize_entry(k, &items)?
                }
            }
        }
        map.end()
    }
}

impl Query {
    /// Runs the query over the whole collection. Works on references throughout (a
    /// lazily resolved key table, a partial selection of the page rather than a full
    /// sort) and clones only the page's items.
    pub fn execute<V: Borrow<Value>>(&self, items: &[V]) -> Page {
        let matched: Vec<&Value> = items
            .iter()
            .map(Borrow::borrow)
            .filter(|item| self.matches(item))
            .collect();
        let table = self.sort.table(matched);
        let total = table.len();
        let cmp = |a: &usize, b: &usize| table.cmp(*a, *b);
        let cursor = |direction, boundary| Some(self.link(direction, boundary));

        let (direction, boundary) = match &self.cursor {
            Some(c) => (c.direction, c.boundary.as_deref()),
            None => (Direction::After, None),
        };
        // Strictly beyond the boundary: the boundary item itself was on the page the
        // cursor came from.
        let wanted = match direction {
            Direction::After => Ordering::Greater,
            Direction::Before => Ordering::Less,
        };
        let mut candidates: Vec<usize> = match boundary {
            Some(b) => (0..total)
                .filter(|&j| table.cmp_boundary(j, b) == wanted)
                .collect(),
            None => (0..total).collect(),
        };
        let excluded = total - candidates.len();
        let more = candidates.len() > self.limit;

        let (next, prev);
        match direction {
            Direction::After => {
                if more {
                    candidates.select_nth_unstable_by(self.limit, cmp);
                    candidates.truncate(self.limit);
                }
                candidates.sort_unstable_by(cmp);
                next = match candidates.last() {
                    Some(&last) if more => cursor(Direction::After, Some(table.owned_key(last))),
                    _ => None,
                };
                // Everything the boundary excluded lies before this page.
                prev = match candidates.first() {
                    _ if excluded == 0 => None,
                    Some(&first) => cursor(Direction::Before, Some(table.owned_key(first))),
                    // Nothing left after the boundary: step back from the very end.
                    None => cursor(Direction::Before, None),
                };
            }
            Direction::Before => {
                if more {
                    let pivot = candidates.len() - self.limit;
                    candidates.select_nth_unstable_by(pivot, cmp);
                    candidates.drain(..pivot);
                }
                candidates.sort_unstable_by(cmp);
                prev = match candidates.first() {
                    Some(&first) if more => cursor(Direction::Before, Some(table.owned_key(first))),
                    _ => None,
                };
                next = match candidates.last() {
                    _ if excluded == 0 => None,
                    Some(&last) => cursor(Direction::After, Some(table.owned_key(last))),
                    // Nothing left before the boundary: step forward from the very start.
                    None => cursor(Direction::After, None),
                };
            }
        }

        let items = candidates
            .iter()
            .map(|&j| {
                Arc::new(match &self.select {
                    Some(sel) => sel.project(table.item(j)),
                    None => table.item(j).clone(),
                })
            })
            .collect();
        Page {
            items,
            estimated_count: total,
            next,
            prev,
        }
    }

    pub(super) fn link(&self, direction: Direction, boundary: Option<Vec<Value>>) -> String {
        Cursor {
            direction,
            boundary,
        }
        .encode(&self.sort)
    }

    fn matches(&self, item: &Value) -> bool {
        self.filters.iter().all(|f| f.matches(item))
            && self.search.as_ref().is_none_or(|s| s.matches(item))
    }
}
