//! Collection query engine (select, sort, limit, cursor, q, filters): pure, no I/O.
//!
//! Every Watcher list operation renders its resources to JSON and hands them here, so
//! paging and filtering behave identically across `/streams`, `/users`, `/presets`, …
//!
//! ```
//! use panoptes::api::query::{CollectionSpec, Field, run};
//! use serde_json::json;
//!
//! const STREAMS: CollectionSpec<'static> = CollectionSpec {
//!     default_sort: "name",
//!     tiebreak: "name",
//!     default_limit: 100,
//!     max_limit: 1000,
//!     search: &["name", "title", "inputs.url"],
//!     filters: &[Field::new("name"), Field::new("title"), Field::new("stats.alive")],
//!     passthrough: &["preferred_zones", "required_zones"],
//!     members: &["name", "title", "inputs", "stats"],
//! };
//!
//! let items = vec![json!({"name": "b", "title": "Gate"}), json!({"name": "a", "title": "Hall"})];
//! let page = run(&items, [("limit", "1"), ("select", "name")], &STREAMS).unwrap();
//! assert_eq!(page.items, vec![json!({"name": "a"})]);
//! let envelope = page.into_envelope("streams", json!({}));
//! assert!(envelope.get("next").is_some() && envelope.get("prev").is_none());
//! ```

mod cursor;
mod error;
mod filter;
mod index;
mod page;
mod parse;
mod path;
mod select;
mod sort;
mod value;

#[cfg(test)]
mod tests;

use std::borrow::Borrow;

use serde_json::Value;

pub use error::{QueryError, QueryErrorKind};
pub use index::Index;
#[cfg(test)]
pub(crate) use index::Tuning;
pub use page::{Envelope, Page};
pub use parse::{CollectionSpec, Field, FieldKind, Query};

/// Parses `pairs` (percent-decoded query pairs) against `spec` and runs the query.
pub fn run<V, K, S>(
    items: &[V],
    pairs: impl IntoIterator<Item = (K, S)>,
    spec: &CollectionSpec<'_>,
) -> Result<Page, QueryError>
where
    V: Borrow<Value>,
    K: AsRef<str>,
    S: AsRef<str>,
{
    Ok(Query::parse(pairs, spec)?.execute(items))
}
