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
    orders: Mutex<Vec<CachedOrder>>,
}

/// A sort order by its canonical text, with the sort (to carry it over in
/// [`Index::update`]) and the order once computed.
type CachedOrder = (String, SortSpec, Arc<OnceLock<Order>>);

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

    /// The index of `items`, reusing what this index computed for the items that did not
    /// change: `origin[i]` is `Some(j)` when `items[i]` is this index's item `j` unchanged,
    /// `None` for a new or changed item. Answers exactly as `Index::new(items, search)`
    /// would (see the property tests) at the cost of copying, not recomputing, the unchanged
    /// part: the searched text is copied and each sort order already computed is carried
    /// over with the new items inserted by binary search. One change among 100,000 items
    /// then costs a few memory copies instead of a resort and a re-lowercasing of them all.
    ///
    /// The `Some`s must increase (unchanged items keep their relative order, so that items
    /// equal under a sort keep theirs); otherwise this falls back to a full build.
    pub fn update(&self, items: Vec<Arc<Value>>, origin: &[Option<u32>]) -> Self {
        let mut last = None;
        let monotone = origin.len() == items.len()
            && origin.iter().flatten().all(|&j| {
                let ok = (j as usize) < self.items.len() && last.is_none_or(|l| j > l);
                last = Some(j);
                ok
            });
        if !monotone {
            let search = SearchText::build(&items, self.search.paths.clone());
            return Self {
                items,
                search,
                orders: Mutex::new(Vec::new()),
            };
        }
        let search = self.search.update(&items, origin);
        let fresh: Vec<u32> = (0..items.len() as u32)
            .filter(|&i| origin[i as usize].is_none())
            .collect();
        let mut to_new = vec![u32::MAX; self.items.len()];
        for (i, j) in origin.iter().enumerate() {
            if let Some(j) = j {
                to_new[*j as usize] = i as u32;
            }
        }
        let orders = self
            .orders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|(canonical, sort, cell)| {
                let old = cell.get()?;
                let order = carry_order(sort, &items, old, &to_new, &fresh);
                Some((
                    canonical.clone(),
                    sort.clone(),
                    Arc::new(OnceLock::from(order)),
                ))
            })
            .collect();
        Self {
            items,
            search,
            orders: Mutex::new(orders),
        }
    }

    fn order(&self, sort: &SortSpec) -> Order {
        let canonical = sort.canonical();
        let cell = {
            let mut orders = self.orders.lock().unwrap_or_else(|e| e.into_inner());
            match orders.iter().find(|(k, _, _)| *k == canonical) {
                Some((_, _, cell)) => cell.clone(),
                None => {
                    if orders.len() == MAX_ORDERS {
                        orders.remove(0);
                    }
                    let cell = Arc::new(OnceLock::new());
                    orders.push((canonical, sort.clone(), cell.clone()));
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

/// `old` (an order of the previous items) for `items`: the unchanged items (`to_new` maps
/// their old positions to new ones, `u32::MAX` for gone or changed) keep their relative
/// order, and the `fresh` positions are sorted and merged in by binary search. Ties are
/// broken by position, as the stable sort of a full build breaks them.
fn carry_order(
    sort: &SortSpec,
    items: &[Arc<Value>],
    old: &[u32],
    to_new: &[u32],
    fresh: &[u32],
) -> Order {
    let kept: Vec<u32> = old
        .iter()
        .map(|&j| to_new[j as usize])
        .filter(|&i| i != u32::MAX)
        .collect();
    let table = sort.table(fresh.iter().map(|&i| &*items[i as usize]).collect());
    let mut sorted: Vec<usize> = (0..fresh.len()).collect();
    // Stable: fresh positions are increasing, so ties keep position order.
    sorted.sort_by(|a, b| table.cmp(*a, *b));
    let mut out = Vec::with_capacity(items.len());
    let mut from = 0;
    for f in sorted {
        let key = table.owned_key(f);
        let at = fresh[f];
        let before = |&k: &u32| match sort.cmp_item_boundary(&items[k as usize], &key) {
            Ordering::Less => true,
            Ordering::Equal => k < at,
            Ordering::Greater => false,
        };
        let to = from + kept[from..].partition_point(before);
        out.extend_from_slice(&kept[from..to]);
        out.push(at);
        from = to;
    }
    out.extend_from_slice(&kept[from..]);
    out.into()
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
        Self::build(items, paths.iter().filter_map(|p| Path::parse(p)).collect())
    }

    fn build(items: &[Arc<Value>], paths: Vec<Path>) -> Self {
        let mut text = String::new();
        let mut ends = Vec::with_capacity(items.len());
        for item in items {
            push_text(&paths, item, &mut text);
            ends.push(text.len());
        }
        // ASCII-only lowercasing keeps byte offsets (and UTF-8) intact.
        text.make_ascii_lowercase();
        Self { paths, text, ends }
    }

    /// Like [`build`](Self::build), copying the text of the unchanged items (see
    /// [`Index::update`]).
    fn update(&self, items: &[Arc<Value>], origin: &[Option<u32>]) -> Self {
        let mut text = String::with_capacity(self.text.len());
        let mut ends = Vec::with_capacity(items.len());
        let mut i = 0;
        while i < items.len() {
            match origin[i] {
                // A run of unchanged items in their old order: one copy.
                Some(j) => {
                    let j = j as usize;
                    let mut k = 1;
                    while i + k < items.len() && origin[i + k] == Some((j + k) as u32) {
                        k += 1;
                    }
                    let from = if j == 0 { 0 } else { self.ends[j - 1] };
                    let at = text.len();
                    text.push_str(&self.text[from..self.ends[j + k - 1]]);
                    ends.extend(self.ends[j..j + k].iter().map(|&e| e - from + at));
                    i += k;
                }
                None => {
                    let start = text.len();
                    push_text(&self.paths, &items[i], &mut text);
                    text[start..].make_ascii_lowercase();
                    ends.push(text.len());
                    i += 1;
                }
            }
        }
        Self {
            paths: self.paths.clone(),
            text,
            ends,
        }
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

/// Appends what `q` searches in `item` (not yet lowercased), each value followed by a NUL.
fn push_text(paths: &[Path], item: &Value, text: &mut String) {
    for path in paths {
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
