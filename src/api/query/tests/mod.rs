//! Tests of the query engine: per-parameter unit tests and paging properties.

mod indexed;
mod props;
mod unit;

use serde_json::Value;

use super::{CollectionSpec, Field, Page, QueryError, run};

pub(super) const SPEC: CollectionSpec<'static> = CollectionSpec {
    default_sort: "name",
    tiebreak: "name",
    default_limit: 3,
    max_limit: 50,
    search: &["name", "title", "inputs.url"],
    filters: &[
        Field::new("name"),
        Field::new("title"),
        Field::new("position"),
        Field::new("stats.alive"),
        Field::new("stats.bitrate"),
        Field::new("inputs.url"),
        Field::alias("organization_id", "organizations.id"),
        Field::alias("stream", "streams"),
    ],
    passthrough: &["preferred_zones"],
    members: &[],
};

pub(super) fn query(items: &[Value], pairs: &[(&str, &str)]) -> Result<Page, QueryError> {
    run(items, pairs.iter().copied(), &SPEC)
}

pub(super) fn names(page: &Page) -> Vec<&str> {
    page.items
        .iter()
        .map(|i| i["name"].as_str().unwrap_or("?"))
        .collect()
}
