//! A collection prepared for many queries.
//!
//! The facade answers every list request over the same 10,000 rendered streams until one of
//! them changes. [`Query::execute`] would resolve the sort keys of every item, select the
//! page and lowercase every searched string on each request; an [`Index`] keeps, per
//! collection version, the full order of each sort asked for (so a page is a slice of it,
//! found by binary search from a cursor) and the ASCII-lowercased text `q` searches. The
//! results are exactly those of [`Query::execute`] (see the property tests).

use std::cmp::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

use super::cursor::Direction;
use super::filter::Search;
use super::page::Page;
use super::parse::Query;
use super::path::Path;
use super::sort::SortSpec;

/// Sort orders kept per index: clients use a handful; a client cycling through many
/// only evicts its own.
const MAX_ORDERS: usize = 8;

/// A full sort order: item positions, smallest first.
type Order = Arc<[u32]>;

/// Items plus what queries over them reuse.
pub struct Index {
    items: Vec<Arc<Value>>,
    search: SearchText,
    /// By canonical sort text; the cell lets one request compute an order while others
    /// asking for the same one wait for it instead of sorting too.
    orders: Mutex<Vec<(String, Arc<OnceLock<Order>>)>>,
}

impl Index {
    /// Indexes `items` for `q` over `search` paths (the collection's
    /// [`CollectionSpec::search`](super::CollectionSpec::search)).
    pub fn new(items: Vec<Arc<Value>>, search: &[&str]) -> Self {
        let search = SearchText::new(&items, search);
        Self {
            items,
            search,
            orders: Mutex::new(Vec::new()),
        }
    }

    /// The items, in the order given.
    pub fn items(&self) -> &[Arc<Value>] {
        &self.items
    }

    fn order(&self, sort: &SortSpec) -> Order {
        let canonical = sort.canonical();
        let cell = {
            let mut orders = self.orders.lock().unwrap_or_else(|e| e.into_inner());
            match orders.iter().find(|(k, _)| *k == canonical) {
                Some((_, cell)) => cell.clone(),
                None => {
                    if orders.len() == MAX_ORDERS {
                        orders.remove(0);
                    }
                    let cell = Arc::new(OnceLock::new());
                    orders.push((canonical, cell.clone()));
                    cell
                }
            }
        };
        cell.get_or_init(|| {
            let table = sort.table(self.items.iter().map(|v| &**v).collect());
            let mut order: Vec<u32> = (0..self.items.len() as u32).collect();
            // Stable, so items equal under the order keep the given order.
            order.sort_by(|a, b| table.cmp(*a as usize, *b as usize));
            order.into()
        })
        .clone()
    }
}

/// The text `q` searches, per item: every string, number and boolean the search paths
/// reach, ASCII-lowercased, each followed by a NUL. A needle without NUL matches this text
/// exactly when it matches one of the values, since a match cannot span a separator.
struct SearchText {
    paths: Vec<Path>,
    text: String,
    /// Item `i`'s text ends at `ends[i]` and starts where item `i - 1`'s ends.
    ends: Vec<usize>,
}

impl SearchText {
    fn new(items: &[Arc<Value>], paths: &[&str]) -> Self {
        let paths: Vec<Path> = paths.iter().filter_map(|p| Path::parse(p)).collect();
        let mut text = String::new();
        let mut ends = Vec::with_capacity(items.len());
        for item in items {
            for path in &paths {
                path.visit(item, &mut |v| {
                    match v {
                        Value::String(s) => text.push_str(s),
                        Value::Number(n) => text.push_str(&n.to_string()),
                        Value::Bool(b) => text.push_str(if *b { "true" } else { "false" }),
                        _ => return false,
                    }
                    text.push('\0');
                    false
                });
            }
            ends.push(text.len());
        }
        // ASCII-only lowercasing keeps byte offsets (and UTF-8) intact.
        text.make_ascii_lowercase();
        Self { paths, text, ends }
    }

    fn of(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    /// The lowercase needle when `search` can use this text: an ASCII needle (a non-ASCII
    /// one is matched with full Unicode lowercasing, which this text does not have)
    /// without NUL, over the paths this text was built from.
    fn needle<'q>(&self, search: &'q Search) -> Option<&'q str> {
        let needle = search.needle().ascii_lower()?;
        (!needle.contains('\0') && search.paths() == self.paths.as_slice()).then_some(needle)
    }
}

impl Query {
    /// Runs the query over an [`Index`]: the same page as [`Query::execute`] over the
    /// index's items, without sorting them (the order is the index's, computed once) and,
    /// with no filter and no `q`, without visiting more than the page and a binary search.
    pub fn execute_indexed(&self, index: &Index) -> Page {
        let order = index.order(&self.sort);
        let item = |i: u32| -> &Value { &index.items[i as usize] };
        let needle = self.search.as_ref().map(|s| (s, index.search.needle(s)));
        let matches = |i: u32| {
            self.filters.iter().all(|f| f.matches(item(i)))
                && needle.is_none_or(|(search, needle)| match needle {
                    Some(n) => index.search.of(i as usize).contains(n),
                    None => search.matches(item(i)),
                })
        };
        let everything = self.filters.is_empty() && self.search.is_none();

        let (direction, boundary) = match &self.cursor {
            Some(c) => (c.direction, c.boundary.as_deref()),
            None => (Direction::After, None),
        };
        // `order` is sorted, so the items strictly beyond the boundary (the candidates)
        // are a suffix of it (`After`) or a prefix (`Before`); the rest is `excluded`.
        let beyond = |i: u32, wanted: Ordering| {
            boundary.is_none_or(|b| self.sort.cmp_item_boundary(item(i), b) == wanted)
        };
        let (candidates, excluded): (&[u32], &[u32]) = match direction {
            Direction::After => {
                let p = order.partition_point(|&i| !beyond(i, Ordering::Greater));
                (&order[p..], &order[..p])
            }
            Direction::Before => {
                let p = order.partition_point(|&i| beyond(i, Ordering::Less));
                (&order[..p], &order[p..])
            }
        };
        let (page, found, excluded) = if everything {
            let page = match direction {
                Direction::After => &candidates[..self.limit.min(candidates.len())],
                Direction::Before => &candidates[candidates.len().saturating_sub(self.limit)..],
            };
            (page.to_vec(), candidates.len(), excluded.len())
        } else {
            let found: Vec<u32> = candidates.iter().copied().filter(|&i| matches(i)).collect();
            let excluded = excluded.iter().filter(|&&i| matches(i)).count();
            let page = match direction {
                Direction::After => &found[..self.limit.min(found.len())],
                Direction::Before => &found[found.len().saturating_sub(self.limit)..],
            };
            (page.to_vec(), found.len(), excluded)
        };
        let more = found > self.limit;
        let key = |i: u32| Some(self.sort.owned_key(item(i)));
        let link = |direction, boundary| Some(self.link(direction, boundary));

        let (next, prev) = match direction {
            Direction::After => (
                match page.last() {
                    Some(&last) if more => link(Direction::After, key(last)),
                    _ => None,
                },
                match page.first() {
                    _ if excluded == 0 => None,
                    Some(&first) => link(Direction::Before, key(first)),
                    None => link(Direction::Before, None),
                },
            ),
            Direction::Before => (
                match page.last() {
                    _ if excluded == 0 => None,
                    Some(&last) => link(Direction::After, key(last)),
                    None => link(Direction::After, None),
                },
                match page.first() {
                    Some(&first) if more => link(Direction::Before, key(first)),
                    _ => None,
                },
            ),
        };
        let items = page
            .iter()
            .map(|&i| match &self.select {
                Some(sel) => sel.project(item(i)),
                None => item(i).clone(),
            })
            .collect();
        Page {
            items,
            estimated_count: found + excluded,
            next,
            prev,
        }
    }
}
