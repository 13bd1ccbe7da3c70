//! [`Query::execute_indexed`] gives exactly the pages of [`Query::execute`]: same items in
//! the same order, same counts, same cursors, page after page in both directions.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::super::{CollectionSpec, Field, Index, Page, Query};

const ISPEC: CollectionSpec<'static> = CollectionSpec {
    default_sort: "name",
    tiebreak: "id",
    default_limit: 4,
    max_limit: 9,
    search: &["name", "title", "inputs.url", "n"],
    filters: &[Field::new("group"), Field::new("stats.score")],
    passthrough: &[],
    members: &[],
};

const SORTS: &[&str] = &[
    "",
    "name",
    "-name",
    "group",
    "-group",
    "stats.score",
    "-stats.score",
    "title",
    "-id",
    "missing",
];

/// Text with case, a non-ASCII letter, the Kelvin sign (lowercases to ASCII `k`), a NUL
/// and the characters `q` needles are made of.
fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just('a'),
            Just('B'),
            Just('k'),
            Just('K'),
            Just('\u{212A}'),
            Just('É'),
            Just('é'),
            Just('0'),
            Just('\0'),
        ],
        0..4,
    )
    .prop_map(|c| c.into_iter().collect())
}

fn scalar() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        any::<bool>().prop_map(|b| Some(json!(b))),
        (-3i64..3).prop_map(|n| Some(json!(n))),
        (-6i64..6).prop_map(|n| Some(json!(n as f64 / 2.0))),
        text().prop_map(|s| Some(json!(s))),
    ]
}

/// name, title, input urls, group, score, n.
type Raw = (
    String,
    Option<Value>,
    Vec<String>,
    Option<Value>,
    Option<Value>,
    Option<Value>,
);

fn item() -> impl Strategy<Value = Raw> {
    (
        text(),
        scalar(),
        proptest::collection::vec(text(), 0..3),
        scalar(),
        scalar(),
        scalar(),
    )
}

fn make(id: usize, (name, title, urls, group, score, n): &Raw) -> Value {
    let mut v = json!({
        "id": id,
        "name": name,
        "inputs": urls.iter().map(|u| json!({"url": u})).collect::<Vec<_>>(),
    });
    for (k, x) in [("title", title), ("group", group), ("n", n)] {
        if let Some(x) = x {
            v[k] = x.clone();
        }
    }
    if let Some(s) = score {
        v["stats"] = json!({"score": s});
    }
    v
}

fn pairs_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
    (
        proptest::sample::select(SORTS),
        proptest::option::of(1usize..12),
        proptest::option::of(text()),
        proptest::option::of(prop_oneof![
            (-3i64..3).prop_map(|n| ("stats.score_gte".to_string(), n.to_string())),
            Just(("group_is".to_string(), "null".to_string())),
            Just(("group".to_string(), "true".to_string())),
        ]),
        proptest::option::of(Just("name,stats")),
    )
        .prop_map(|(sort, limit, q, filter, select)| {
            let mut p = Vec::new();
            if !sort.is_empty() {
                p.push(("sort".to_string(), sort.to_string()));
            }
            if let Some(l) = limit {
                p.push(("limit".to_string(), l.to_string()));
            }
            if let Some(q) = q {
                p.push(("q".to_string(), q));
            }
            p.extend(filter);
            if let Some(s) = select {
                p.push(("select".to_string(), s.to_string()));
            }
            p
        })
}

fn both(items: &[Value], index: &Index, pairs: &[(String, String)]) -> (Page, Page) {
    let q = Query::parse(pairs.iter().map(|(k, v)| (k, v)), &ISPEC).unwrap();
    (q.execute(items), q.execute_indexed(index))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn indexed_pages_equal_plain_pages(
        raw in proptest::collection::vec(item(), 0..30),
        pairs in pairs_strategy(),
        moves in proptest::collection::vec(any::<bool>(), 0..6),
    ) {
        let items: Vec<Value> = raw.iter().enumerate().map(|(i, r)| make(i, r)).collect();
        let index = Index::new(items.iter().cloned().map(Arc::new).collect(), ISPEC.search);
        let (plain, indexed) = both(&items, &index, &pairs);
        prop_assert_eq!(&indexed, &plain);
        let mut page = plain;
        // Follow next (true) or prev (false) cursors from the first page.
        for forward in moves {
            let cursor = if forward { page.next.clone() } else { page.prev.clone() };
            let Some(cursor) = cursor else { continue };
            let mut with = pairs.clone();
            with.push(("cursor".to_string(), cursor));
            let (plain, indexed) = both(&items, &index, &with);
            prop_assert_eq!(&indexed, &plain);
            page = plain;
        }
    }
}

#[test]
fn orders_are_cached_per_sort() {
    let items: Vec<Arc<Value>> = (0..5)
        .map(|i| Arc::new(json!({"id": i, "name": format!("n{}", 4 - i)})))
        .collect();
    let index = Index::new(items, ISPEC.search);
    let names = |sort: &str| {
        let q = Query::parse([("sort", sort)], &ISPEC).unwrap();
        q.execute_indexed(&index)
            .items
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names("name"), ["n0", "n1", "n2", "n3"]);
    assert_eq!(names("-name"), ["n4", "n3", "n2", "n1"]);
    // Asked again: served from the cached order, same answer.
    assert_eq!(names("name"), ["n0", "n1", "n2", "n3"]);
}
