//! A collection prepared for many queries.
//!
//! The facade answers every list request over the same 100,000 rendered streams until one
//! of them changes, and at that scale streams change many times a second (status writes,
//! live stats). [`Query::execute`] would resolve the sort keys of every item, select the
//! page and lowercase every searched string on each request; an [`Index`] keeps the full
//! order of each sort asked for (so a page is a slice of it, found by binary search from a
//! cursor) and the ASCII-lowercased text `q` searches. Both live in chunks shared between
//! an index and the next one [`Index::edit`] makes, so that one changed item costs a few
//! chunk copies and binary searches, not a copy of every item. The results are exactly
//! those of [`Query::execute`] (see the property tests).

use std::cmp::Ordering;
use std::collections::VecDeque;
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

/// Chunk sizes and the `q` strategy switch; small in tests, so that a few items span many
/// chunks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tuning {
    /// Items per chunk of items: a change copies one chunk (pointers and search text) and
    /// the list of chunks.
    pub(crate) items_per_chunk: usize,
    /// An order's chunks are split past twice this many positions.
    pub(crate) order_chunk: usize,
    /// `q` matches up to 1 / this of the items are sorted directly; more are found by
    /// walking the order.
    pub(crate) sort_matches_below: usize,
    /// An edit of more than 1 / this of the items (every stream's live stats moved)
    /// rebuilds the chunks and merges each order once, instead of an edit per item.
    pub(crate) bulk_edit_above: usize,
}

const TUNING: Tuning = Tuning {
    items_per_chunk: 1024,
    order_chunk: 1024,
    sort_matches_below: 16,
    bulk_edit_above: 64,
};

/// Items plus what queries over them reuse.
pub struct Index {
    tuning: Tuning,
    /// Every chunk holds `tuning.items_per_chunk` items but the last.
    chunks: Vec<Arc<Chunk>>,
    len: usize,
    paths: Arc<[Path]>,
    /// By canonical sort text; the cell lets one request compute an order while others
    /// asking for the same one wait for it instead of sorting too.
    orders: Mutex<Vec<CachedOrder>>,
}

/// Consecutive items and the text `q` searches in them: every string, number and boolean
/// the search paths reach, ASCII-lowercased, each followed by a NUL. A needle without NUL
/// matches this text exactly when it matches one of the values, since a match cannot span
/// a separator (nor, therefore, two items).
#[derive(Clone, Default)]
struct Chunk {
    items: Vec<Arc<Value>>,
    text: String,
    /// Item `i`'s text ends at `ends[i]` and starts where item `i - 1`'s ends.
    ends: Vec<u32>,
}

impl Chunk {
    fn push(&mut self, paths: &[Path], item: Arc<Value>) {
        let start = self.text.len();
        push_text(paths, &item, &mut self.text);
        // ASCII-only lowercasing keeps byte offsets (and UTF-8) intact.
        self.text[start..].make_ascii_lowercase();
        self.ends.push(self.text.len() as u32);
        self.items.push(item);
    }

    fn span(&self, i: usize) -> (usize, usize) {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        (start, self.ends[i] as usize)
    }

    fn set(&mut self, paths: &[Path], i: usize, item: Arc<Value>) {
        let (start, end) = self.span(i);
        let mut text = String::new();
        push_text(paths, &item, &mut text);
        text.make_ascii_lowercase();
        if text == self.text[start..end] {
            self.items[i] = item;
            return;
        }
        self.text.replace_range(start..end, &text);
        let shift = text.len() as i64 - (end - start) as i64;
        for e in &mut self.ends[i..] {
            *e = (*e as i64 + shift) as u32;
        }
        self.items[i] = item;
    }

    fn truncate(&mut self, len: usize) {
        if len < self.items.len() {
            self.items.truncate(len);
            self.ends.truncate(len);
            self.text
                .truncate(self.ends.last().copied().unwrap_or(0) as usize);
        }
    }
}

/// A full sort order: item positions, smallest first, in chunks shared between indexes.
#[derive(Clone, Default)]
struct Order {
    chunks: Vec<Arc<Vec<u32>>>,
    /// Global index of each chunk's first position.
    starts: Vec<usize>,
    len: usize,
}

impl Order {
    fn from_sorted(positions: Vec<u32>, chunk_size: usize) -> Self {
        let mut order = Self {
            chunks: positions
                .chunks(chunk_size)
                .map(|c| Arc::new(c.to_vec()))
                .collect(),
            ..Self::default()
        };
        order.restart();
        order
    }

    fn restart(&mut self) {
        self.chunks.retain(|c| !c.is_empty());
        self.starts.clear();
        let mut at = 0;
        for c in &self.chunks {
            self.starts.push(at);
            at += c.len();
        }
        self.len = at;
    }

    /// The first index whose position does not satisfy `pred` (which holds on a prefix).
    fn partition_point(&self, mut pred: impl FnMut(u32) -> bool) -> usize {
        let c = self
            .chunks
            .partition_point(|c| c.last().is_some_and(|&p| pred(p)));
        match self.chunks.get(c) {
            Some(chunk) => self.starts[c] + chunk.partition_point(|&p| pred(p)),
            None => self.len,
        }
    }

    /// Where global index `i` is: chunk and offset in it (`i < len`).
    fn locate(&self, i: usize) -> (usize, usize) {
        let c = self.starts.partition_point(|&s| s <= i) - 1;
        (c, i - self.starts[c])
    }

    /// Positions at global indexes `from..to`, in order.
    fn range(&self, from: usize, to: usize) -> impl Iterator<Item = u32> + '_ {
        let (c, o) = if from < to {
            self.locate(from)
        } else {
            (self.chunks.len(), 0)
        };
        self.chunks[c.min(self.chunks.len())..]
            .iter()
            .flat_map(|c| c.iter().copied())
            .skip(o)
            .take(to.saturating_sub(from))
    }

    fn remove(&mut self, i: usize) {
        let (c, o) = self.locate(i);
        Arc::make_mut(&mut self.chunks[c]).remove(o);
    }

    fn insert(&mut self, i: usize, position: u32, chunk_size: usize) {
        if self.chunks.is_empty() {
            self.chunks.push(Arc::new(vec![position]));
        } else {
            let (c, o) = if i == self.len {
                let c = self.chunks.len() - 1;
                (c, self.chunks[c].len())
            } else {
                self.locate(i)
            };
            let chunk = Arc::make_mut(&mut self.chunks[c]);
            chunk.insert(o, position);
            if chunk.len() > 2 * chunk_size {
                let tail = chunk.split_off(chunk_size);
                self.chunks.insert(c + 1, Arc::new(tail));
            }
        }
        self.restart();
    }
}

/// A sort order by its canonical text, with the sort (to carry it over in
/// [`Index::edit`]) and the order once computed.
type CachedOrder = (String, SortSpec, Arc<OnceLock<Order>>);

impl Index {
    /// Indexes `items` for `q` over `search` paths (the collection's
    /// [`CollectionSpec::search`](super::CollectionSpec::search)).
    pub fn new(items: Vec<Arc<Value>>, search: &[&str]) -> Self {
        let paths: Arc<[Path]> = search.iter().filter_map(|p| Path::parse(p)).collect();
        Self::build(items, paths, TUNING)
    }

    /// Like [`new`](Self::new), with other chunk sizes (for tests).
    #[cfg(test)]
    pub(crate) fn tuned(items: Vec<Arc<Value>>, search: &[&str], tuning: Tuning) -> Self {
        let paths: Arc<[Path]> = search.iter().filter_map(|p| Path::parse(p)).collect();
        Self::build(items, paths, tuning)
    }

    fn build(items: Vec<Arc<Value>>, paths: Arc<[Path]>, tuning: Tuning) -> Self {
        let len = items.len();
        let per = tuning.items_per_chunk;
        let mut chunks = Vec::with_capacity(len.div_ceil(per));
        let mut chunk = Chunk::default();
        for item in items {
            if chunk.items.len() == per {
                chunks.push(Arc::new(std::mem::take(&mut chunk)));
            }
            chunk.push(&paths, item);
        }
        if !chunk.items.is_empty() {
            chunks.push(Arc::new(chunk));
        }
        Self {
            tuning,
            chunks,
            len,
            paths,
            orders: Mutex::new(Vec::new()),
        }
    }

    /// How many items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Item `i`.
    pub fn get(&self, i: usize) -> Option<&Arc<Value>> {
        let per = self.tuning.items_per_chunk;
        self.chunks.get(i / per)?.items.get(i % per)
    }

    fn shared(&self, i: u32) -> &Arc<Value> {
        let (i, per) = (i as usize, self.tuning.items_per_chunk);
        &self.chunks[i / per].items[i % per]
    }

    fn item(&self, i: u32) -> &Value {
        self.shared(i)
    }

    /// The items, in the order given.
    pub fn items(&self) -> impl Iterator<Item = &Arc<Value>> + '_ {
        self.chunks.iter().flat_map(|c| c.items.iter())
    }

    /// The index of `items`, reusing what this index computed for the items that did not
    /// change: `origin[i]` is `Some(j)` when `items[i]` is this index's item `j` unchanged,
    /// `None` for a new or changed item. Answers exactly as `Index::new(items, search)`
    /// would (see the property tests). When every unchanged item kept its position (items
    /// replaced in place, removed from the end, appended: how the facade's rendered streams
    /// change) this is an [`edit`](Self::edit); otherwise a full build.
    pub fn update(&self, items: Vec<Arc<Value>>, origin: &[Option<u32>]) -> Self {
        let in_place = origin.len() == items.len()
            && origin.iter().enumerate().all(|(i, o)| match o {
                Some(j) => *j as usize == i && i < self.len,
                None => true,
            });
        if !in_place {
            return Self::build(items, self.paths.clone(), self.tuning);
        }
        let changed: Vec<(u32, Arc<Value>)> = origin
            .iter()
            .zip(items)
            .enumerate()
            .filter(|(_, (o, _))| o.is_none())
            .map(|(i, (_, item))| (i as u32, item))
            .collect();
        self.edit(origin.len(), changed)
    }

    /// This index with `len` items: its own, cut at `len` or followed by new ones, with the
    /// item at each position of `changed` replaced (ascending positions; every position
    /// from this index's length to `len` must be among them). Costs in proportion to the
    /// change: a chunk copy per changed item, and per sort order already computed a binary
    /// search and a chunk copy to take each changed item out and put it back in. A replaced
    /// item with the same search text and the same key under an order (a stream whose live
    /// stats moved, in the default order by name) costs its chunk copy only: the order
    /// keeps every chunk.
    pub fn edit(&self, len: usize, changed: Vec<(u32, Arc<Value>)>) -> Self {
        let kept = self.len.min(len);
        assert!(
            changed.windows(2).all(|w| w[0].0 < w[1].0)
                && changed.last().is_none_or(|(p, _)| (*p as usize) < len)
                && changed.iter().filter(|(p, _)| *p as usize >= kept).count() == len - kept,
            "edit: ascending positions below the length, every new one included"
        );
        let many = |n: usize| n > self.len.max(len) / self.tuning.bulk_edit_above;
        let cut = (len..self.len).len();
        let positions: Vec<u32> = changed.iter().map(|(p, _)| *p).collect();
        let next = if many(changed.len().max(cut)) {
            self.successor(self.rebuilt_chunks(len, changed), len)
        } else {
            self.successor(self.edited_chunks(len, changed), len)
        };
        let orders = self
            .orders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|(canonical, sort, cell)| {
                let order = cell.get()?;
                // Re-placed: new positions and replaced items whose key moved.
                let moved: Vec<u32> = positions
                    .iter()
                    .copied()
                    .filter(|&p| p as usize >= kept || !sort.same_key(self.item(p), next.item(p)))
                    .collect();
                // Taken out, found by their old keys: the moved items this index has, and
                // those beyond the new length.
                let out: Vec<u32> = moved
                    .iter()
                    .copied()
                    .filter(|&p| (p as usize) < kept)
                    .chain(kept as u32..self.len as u32)
                    .collect();
                let order = if many(out.len().max(moved.len())) {
                    let mut gone = vec![false; self.len];
                    for &p in &out {
                        gone[p as usize] = true;
                    }
                    let kept: Vec<u32> = order
                        .range(0, order.len)
                        .filter(|&p| !gone[p as usize])
                        .collect();
                    Order::from_sorted(merge(sort, &next, kept, &moved), self.tuning.order_chunk)
                } else {
                    let mut order = order.clone();
                    for &p in &out {
                        remove_from(&mut order, sort, self, p);
                    }
                    for &p in &moved {
                        let key = sort.owned_key(next.item(p));
                        let at = order.partition_point(|k| before(sort, &next, k, &key, p));
                        order.insert(at, p, self.tuning.order_chunk);
                    }
                    order
                };
                Some((
                    canonical.clone(),
                    sort.clone(),
                    Arc::new(OnceLock::from(order)),
                ))
            })
            .collect();
        *next.orders.lock().unwrap_or_else(|e| e.into_inner()) = orders;
        next
    }

    /// The next snapshot over `chunks`, with this one's tuning and paths; its orders are
    /// filled by the caller.
    fn successor(&self, chunks: Vec<Arc<Chunk>>, len: usize) -> Self {
        Self {
            tuning: self.tuning,
            chunks,
            len,
            paths: self.paths.clone(),
            orders: Mutex::new(Vec::new()),
        }
    }

    /// The chunks for [`edit`](Self::edit) of a few items: each changed item's chunk copied
    /// and edited in place.
    fn edited_chunks(&self, len: usize, changed: Vec<(u32, Arc<Value>)>) -> Vec<Arc<Chunk>> {
        let per = self.tuning.items_per_chunk;
        let mut chunks = self.chunks.clone();
        chunks.truncate(len.div_ceil(per));
        // Cut: the chunk `len` ends in is the last one now.
        if len < self.len
            && !len.is_multiple_of(per)
            && let Some(last) = chunks.last_mut()
        {
            let keep = len % per;
            if last.items.len() > keep {
                Arc::make_mut(last).truncate(keep);
            }
        }
        for (p, item) in changed {
            let (c, o) = (p as usize / per, p as usize % per);
            if c == chunks.len() {
                chunks.push(Arc::new(Chunk::default()));
            }
            let chunk = Arc::make_mut(&mut chunks[c]);
            if o < chunk.items.len() {
                chunk.set(&self.paths, o, item);
            } else {
                chunk.push(&self.paths, item);
            }
        }
        chunks
    }

    /// The chunks for [`edit`](Self::edit) of many items: untouched chunks shared, touched
    /// ones rebuilt (the unchanged items' text copied).
    fn rebuilt_chunks(&self, len: usize, changed: Vec<(u32, Arc<Value>)>) -> Vec<Arc<Chunk>> {
        let per = self.tuning.items_per_chunk;
        let mut changes = changed.into_iter().peekable();
        let mut chunks = Vec::with_capacity(len.div_ceil(per));
        for c in 0..len.div_ceil(per) {
            let (from, to) = (c * per, ((c + 1) * per).min(len));
            let old = self.chunks.get(c);
            let untouched = changes.peek().is_none_or(|(p, _)| *p as usize >= to);
            if untouched
                && let Some(old) = old
                && old.items.len() == to - from
            {
                chunks.push(old.clone());
                continue;
            }
            let mut chunk = Chunk::default();
            for i in from..to {
                match changes.next_if(|(p, _)| *p as usize == i) {
                    Some((_, item)) => chunk.push(&self.paths, item),
                    None => {
                        let old = old.expect("unchanged positions are below the old length");
                        let (start, end) = old.span(i - from);
                        chunk.text.push_str(&old.text[start..end]);
                        chunk.ends.push(chunk.text.len() as u32);
                        chunk.items.push(old.items[i - from].clone());
                    }
                }
            }
            chunks.push(Arc::new(chunk));
        }
        chunks
    }

    fn order(&self, sort: &SortSpec) -> Arc<OnceLock<Order>> {
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
            let table = sort.table(self.items().map(|v| &**v).collect());
            let mut order: Vec<u32> = (0..self.len as u32).collect();
            // Stable, so items equal under the order keep the given order.
            order.sort_by(|a, b| table.cmp(*a as usize, *b as usize));
            Order::from_sorted(order, self.tuning.order_chunk)
        });
        cell
    }

    /// Positions of the items whose search text contains `needle` (ASCII lowercase, no
    /// NUL, not empty), ascending: one substring search over each chunk's text.
    fn search(&self, needle: &str) -> Vec<u32> {
        let finder = memchr::memmem::Finder::new(needle.as_bytes());
        let mut found = Vec::new();
        for (c, chunk) in self.chunks.iter().enumerate() {
            let text = chunk.text.as_bytes();
            let mut from = 0;
            while let Some(at) = finder.find(&text[from..]) {
                let i = chunk.ends.partition_point(|&e| e as usize <= from + at);
                found.push((c * self.tuning.items_per_chunk + i) as u32);
                from = chunk.ends[i] as usize;
            }
        }
        found
    }

    /// The lowercase needle when `search` can use the index's text: an ASCII needle (a
    /// non-ASCII one is matched with full Unicode lowercasing, which this text does not
    /// have) without NUL, over the paths this text was built from.
    fn needle<'q>(&self, search: &'q Search) -> Option<&'q str> {
        let needle = search.needle().ascii_lower()?;
        (!needle.is_empty() && !needle.contains('\0') && search.paths() == &*self.paths)
            .then_some(needle)
    }
}

/// Whether position `k` comes before the item at position `p` whose sort key is `key`:
/// ties are broken by position, as the stable sort of a full build breaks them.
fn before(sort: &SortSpec, index: &Index, k: u32, key: &[Value], p: u32) -> bool {
    match sort.cmp_item_boundary(index.item(k), key) {
        Ordering::Less => true,
        Ordering::Equal => k < p,
        Ordering::Greater => false,
    }
}

/// `kept` (sorted positions of unchanged items of `index`) with the `fresh` positions
/// (ascending) sorted and merged in by binary search, ties broken by position.
fn merge(sort: &SortSpec, index: &Index, kept: Vec<u32>, fresh: &[u32]) -> Vec<u32> {
    let table = sort.table(fresh.iter().map(|&i| index.item(i)).collect());
    let mut sorted: Vec<usize> = (0..fresh.len()).collect();
    // Stable: fresh positions are increasing, so ties keep position order.
    sorted.sort_by(|a, b| table.cmp(*a, *b));
    let mut out = Vec::with_capacity(kept.len() + fresh.len());
    let mut from = 0;
    for f in sorted {
        let key = table.owned_key(f);
        let at = fresh[f];
        let to = from + kept[from..].partition_point(|&k| before(sort, index, k, &key, at));
        out.extend_from_slice(&kept[from..to]);
        out.push(at);
        from = to;
    }
    out.extend_from_slice(&kept[from..]);
    out
}

/// Takes position `p` out of `order`, an order of `index`'s items.
fn remove_from(order: &mut Order, sort: &SortSpec, index: &Index, p: u32) {
    let key = sort.owned_key(index.item(p));
    let at = order.partition_point(|k| before(sort, index, k, &key, p));
    let at = match order.range(at, order.len).next() {
        Some(q) if q == p => at,
        // Not where its key says (never seen: the keys order totally); look for it.
        _ => match order.range(0, order.len).position(|q| q == p) {
            Some(at) => at,
            None => return,
        },
    };
    order.remove(at);
    order.restart();
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

/// The page of the matching items beyond a boundary, how many match beyond it (`found`)
/// and how many on the other side (`excluded`).
struct Selection {
    page: Vec<u32>,
    found: usize,
    excluded: usize,
}

/// Walks `positions` (in order), keeping the first (`After`) or last (`Before`) `limit`
/// that match and counting them all: memory for the page, not the items.
fn walk(
    positions: impl Iterator<Item = u32>,
    direction: Direction,
    limit: usize,
    mut matches: impl FnMut(u32) -> bool,
) -> (Vec<u32>, usize) {
    let mut page = VecDeque::with_capacity(limit.min(1024));
    let mut found = 0;
    for i in positions {
        if !matches(i) {
            continue;
        }
        found += 1;
        match direction {
            Direction::After if page.len() < limit => page.push_back(i),
            Direction::After => {}
            Direction::Before => {
                if page.len() == limit {
                    page.pop_front();
                }
                if limit > 0 {
                    page.push_back(i);
                }
            }
        }
    }
    (page.into(), found)
}

impl Query {
    /// Runs the query over an [`Index`]: the same page as [`Query::execute`] over the
    /// index's items, without sorting them (the order is the index's, computed once). With
    /// no filter and no `q` it visits the page and a binary search; with an ASCII `q` it
    /// searches the index's text once and sorts the few matches; otherwise it walks the
    /// order.
    pub fn execute_indexed(&self, index: &Index) -> Page {
        let item = |i: u32| -> &Value { index.item(i) };
        let (direction, boundary) = match &self.cursor {
            Some(c) => (c.direction, c.boundary.as_deref()),
            None => (Direction::After, None),
        };
        // Items strictly beyond the boundary are the candidates; the rest is excluded.
        let wanted = match direction {
            Direction::After => Ordering::Greater,
            Direction::Before => Ordering::Less,
        };
        let beyond =
            |i: u32| boundary.is_none_or(|b| self.sort.cmp_item_boundary(item(i), b) == wanted);
        let filters = |i: u32| self.filters.iter().all(|f| f.matches(item(i)));
        let needle = self.search.as_ref().and_then(|s| index.needle(s));
        let matched = needle.map(|n| {
            let mut m = index.search(n);
            m.retain(|&i| filters(i));
            m
        });
        let selection = match matched {
            // Few matches: sorted as the order has them (key, then position).
            Some(mut m) if m.len() <= index.len / index.tuning.sort_matches_below => {
                let table = self.sort.table(m.iter().map(|&i| item(i)).collect());
                let mut rows: Vec<usize> = (0..m.len()).collect();
                // Stable, and `m` is ascending: ties keep position order.
                rows.sort_by(|a, b| table.cmp(*a, *b));
                let sorted: Vec<u32> = rows.iter().map(|&r| m[r]).collect();
                m.clear();
                let (candidates, excluded): (Vec<u32>, Vec<u32>) =
                    sorted.into_iter().partition(|&i| beyond(i));
                let (page, found) = walk(candidates.into_iter(), direction, self.limit, |_| true);
                Selection {
                    page,
                    found,
                    excluded: excluded.len(),
                }
            }
            matched => {
                let cell = index.order(&self.sort);
                let order = cell.get().expect("computed by `order`");
                let p = match direction {
                    Direction::After => order.partition_point(|i| !beyond(i)),
                    Direction::Before => order.partition_point(beyond),
                };
                let ((from, to), (ex_from, ex_to)) = match direction {
                    Direction::After => ((p, order.len), (0, p)),
                    Direction::Before => ((0, p), (p, order.len)),
                };
                let search_only = self.search.is_some() && needle.is_none();
                if self.filters.is_empty() && self.search.is_none() {
                    let n = to - from;
                    let page = match direction {
                        Direction::After => order.range(from, from + self.limit.min(n)).collect(),
                        Direction::Before => order.range(to - self.limit.min(n), to).collect(),
                    };
                    Selection {
                        page,
                        found: n,
                        excluded: ex_to - ex_from,
                    }
                } else {
                    // Many `q` matches: a bit per item says which.
                    let bits = matched.map(|m| {
                        let mut bits = vec![0u64; index.len.div_ceil(64)];
                        for i in m {
                            bits[i as usize / 64] |= 1 << (i % 64);
                        }
                        bits
                    });
                    let matches = |i: u32| match &bits {
                        Some(bits) => bits[i as usize / 64] & (1 << (i % 64)) != 0,
                        None => {
                            filters(i)
                                && (!search_only
                                    || self.search.as_ref().is_none_or(|s| s.matches(item(i))))
                        }
                    };
                    let (page, found) = walk(order.range(from, to), direction, self.limit, matches);
                    let excluded = order.range(ex_from, ex_to).filter(|&i| matches(i)).count();
                    Selection {
                        page,
                        found,
                        excluded,
                    }
                }
            }
        };
        let Selection {
            page,
            found,
            excluded,
        } = selection;
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
                Some(sel) => Arc::new(sel.project(item(i))),
                None => index.shared(i).clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(i: usize, score: usize) -> Arc<Value> {
        Arc::new(json!({"id": i, "name": format!("cam-{i:03}"), "stats": {"score": score}}))
    }

    fn chunks_of(index: &Index, canonical: &str) -> Vec<Arc<Vec<u32>>> {
        let orders = index.orders.lock().unwrap();
        let (_, _, cell) = orders.iter().find(|(k, _, _)| k == canonical).unwrap();
        cell.get().unwrap().chunks.clone()
    }

    /// Live stats moving in many items (a stats refresh) leave the order by name as it was,
    /// every chunk shared, whether the edit goes item by item or in bulk; the order by the
    /// moved member is re-placed.
    #[test]
    fn items_whose_key_stayed_keep_the_order_untouched() {
        for bulk_edit_above in [1, usize::MAX] {
            let tuning = Tuning {
                items_per_chunk: 4,
                order_chunk: 4,
                sort_matches_below: 16,
                bulk_edit_above,
            };
            let index = Index::tuned((0..64).map(|i| item(i, i)).collect(), &["name"], tuning);
            let by = |sort: &str| {
                let pairs = if sort.is_empty() {
                    vec![]
                } else {
                    vec![("sort", sort)]
                };
                let spec = super::super::CollectionSpec {
                    default_sort: "name",
                    tiebreak: "id",
                    default_limit: 100,
                    max_limit: 100,
                    search: &["name"],
                    filters: &[],
                    passthrough: &[],
                    members: &[],
                };
                Query::parse(pairs, &spec).unwrap()
            };
            let names = |index: &Index| -> Vec<String> {
                by("-stats.score")
                    .execute_indexed(index)
                    .items
                    .iter()
                    .map(|v| v["name"].as_str().unwrap().to_string())
                    .collect()
            };
            by("").execute_indexed(&index);
            names(&index);
            let before = chunks_of(&index, "name,id");
            let changed: Vec<(u32, Arc<Value>)> = (0..64)
                .step_by(3)
                .map(|i| (i as u32, item(i, 100 + i)))
                .collect();
            let next = index.edit(64, changed);
            let after = chunks_of(&next, "name,id");
            assert_eq!(before.len(), after.len());
            assert!(
                before.iter().zip(&after).all(|(a, b)| Arc::ptr_eq(a, b)),
                "bulk_edit_above {bulk_edit_above}: the order by name was copied"
            );
            let top = names(&next);
            assert_eq!(&top[..3], ["cam-063", "cam-060", "cam-057"]);
            assert_eq!(top.len(), 64);
        }
    }
}
