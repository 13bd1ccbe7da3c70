//! Paging properties checked against an independent reference implementation.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::super::{CollectionSpec, Field, Page, run};

const PSPEC: CollectionSpec<'static> = CollectionSpec {
    default_sort: "name",
    tiebreak: "id",
    default_limit: 5,
    max_limit: 7,
    search: &["name"],
    filters: &[Field::new("group"), Field::new("stats.score")],
    passthrough: &[],
    members: &[],
};

const SORT_KEYS: &[&str] = &[
    "group",
    "-group",
    "stats.score",
    "-stats.score",
    "name",
    "-name",
    "id",
    "-id",
    "missing",
];

type Attrs = (Option<Value>, Option<Value>);

fn attrs() -> impl Strategy<Value = Attrs> {
    let group = prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        any::<bool>().prop_map(|b| Some(json!(b))),
        (0i64..3).prop_map(|n| Some(json!(n))),
        "[ab]{0,2}".prop_map(|s| Some(json!(s))),
    ];
    // Halves, so floats regularly tie with integers.
    let score = prop_oneof![
        Just(None),
        (-4i64..4).prop_map(|n| Some(json!(n))),
        (-8i64..8).prop_map(|n| Some(json!(n as f64 / 2.0))),
    ];
    (group, score)
}

fn make_item(id: u32, (group, score): &Attrs) -> Value {
    let mut item = json!({"id": id, "name": format!("Cam{}", id % 37), "tags": [{"k": id % 3}, 5]});
    if let Some(g) = group {
        item["group"] = g.clone();
    }
    if let Some(s) = score {
        item["stats"] = json!({"score": s, "other": true});
    }
    item
}

fn items_strategy() -> impl Strategy<Value = BTreeMap<u32, Attrs>> {
    proptest::collection::btree_map(0u32..500, attrs(), 0..40)
}

fn sort_strategy() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(
        proptest::collection::vec(proptest::sample::select(SORT_KEYS), 1..4)
            .prop_map(|k| k.join(",")),
    )
}

fn get<'a>(item: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(item, |v, seg| v.get(seg))
        .filter(|v| !v.is_null())
}

/// Written independently of the engine's comparator, with plain f64 for numbers (the
/// generated numbers are small, so that is exact).
fn ref_cmp_value(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    fn rank(v: Option<&Value>) -> u8 {
        match v {
            Some(Value::Bool(_)) => 0,
            Some(Value::Number(_)) => 1,
            Some(Value::String(_)) => 2,
            _ => 3,
        }
    }
    rank(a).cmp(&rank(b)).then_with(|| match (a, b) {
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .unwrap()
            .partial_cmp(&y.as_f64().unwrap())
            .unwrap(),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        _ => Ordering::Equal,
    })
}

fn ref_cmp(sort: &str, a: &Value, b: &Value) -> Ordering {
    let mut keys: Vec<&str> = sort.split(',').filter(|k| !k.is_empty()).collect();
    keys.push("id");
    for key in keys {
        let (desc, path) = key.strip_prefix('-').map_or((false, key), |p| (true, p));
        let ord = ref_cmp_value(get(a, path), get(b, path));
        if ord != Ordering::Equal {
            return if desc { ord.reverse() } else { ord };
        }
    }
    Ordering::Equal
}

fn ids(page: &Page) -> Vec<u64> {
    page.items
        .iter()
        .map(|i| i["id"].as_u64().unwrap())
        .collect()
}

fn fetch(items: &[Value], base: &[(String, String)], cursor: Option<&str>) -> Page {
    let mut pairs = base.to_vec();
    if let Some(c) = cursor {
        pairs.push(("cursor".into(), c.into()));
    }
    run(items, pairs, &PSPEC).expect("valid query")
}

fn base_pairs(
    sort: &Option<String>,
    limit: usize,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut pairs = vec![("limit".to_string(), limit.to_string())];
    if let Some(s) = sort {
        pairs.push(("sort".into(), s.clone()));
    }
    pairs.extend(extra.iter().cloned());
    pairs
}

fn filter_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec(
        prop_oneof![
            (-4i64..4).prop_map(|n| ("stats.score_gte".to_string(), n.to_string())),
            Just(("group_is".to_string(), "not_null".to_string())),
            (0u32..4).prop_map(|n| ("q".to_string(), format!("cAm{n}"))),
        ],
        0..2,
    )
    .prop_map(|mut v| {
        // `q` may be given once only.
        let mut seen_q = false;
        v.retain(|(k, _)| k != "q" || !std::mem::replace(&mut seen_q, true));
        v
    })
}

fn ref_matches(item: &Value, filters: &[(String, String)]) -> bool {
    filters.iter().all(|(k, v)| match k.as_str() {
        "stats.score_gte" => get(item, "stats.score")
            .and_then(Value::as_f64)
            .is_some_and(|s| s >= v.parse::<f64>().unwrap()),
        "group_is" => get(item, "group").is_some(),
        "q" => item["name"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains(&v.to_lowercase()),
        _ => unreachable!(),
    })
}

proptest! {
    #[test]
    fn next_visits_every_match_once_in_order(
        raw in items_strategy(), sort in sort_strategy(), limit in 1usize..10,
        filters in filter_strategy(),
    ) {
        let items: Vec<Value> = raw.iter().map(|(id, a)| make_item(*id, a)).collect();
        let sort_text = sort.clone().unwrap_or_else(|| "name".into());
        let mut expected: Vec<&Value> = items.iter().filter(|i| ref_matches(i, &filters)).collect();
        expected.sort_by(|a, b| ref_cmp(&sort_text, a, b));
        let expected: Vec<u64> = expected.iter().map(|i| i["id"].as_u64().unwrap()).collect();

        let base = base_pairs(&sort, limit, &filters);
        let effective = limit.min(PSPEC.max_limit);
        let mut seen = Vec::new();
        let mut page = fetch(&items, &base, None);
        prop_assert!(page.prev.is_none());
        let mut pages = 0;
        loop {
            prop_assert_eq!(page.estimated_count, expected.len());
            prop_assert!(page.items.len() <= effective);
            if page.next.is_some() {
                prop_assert_eq!(page.items.len(), effective);
            }
            seen.extend(ids(&page));
            pages += 1;
            prop_assert!(pages <= expected.len() + 1, "paging does not terminate");
            match page.next.as_deref() {
                Some(next) => {
                    prop_assert!(!next.is_empty());
                    let following = fetch(&items, &base, Some(next));
                    // prev of page k+1 is page k, cursors included.
                    let back = fetch(&items, &base, following.prev.as_deref());
                    prop_assert_eq!(&back, &page);
                    page = following;
                }
                None => break,
            }
        }
        prop_assert_eq!(seen, expected);
    }

    #[test]
    fn survivors_are_neither_skipped_nor_repeated(
        raw in items_strategy(), sort in sort_strategy(), limit in 1usize..6,
        steps in proptest::collection::vec(
            proptest::collection::vec((any::<bool>(), any::<u16>(), attrs()), 0..4), 0..20),
    ) {
        let mut live: BTreeMap<u32, Value> =
            raw.iter().map(|(id, a)| (*id, make_item(*id, a))).collect();
        let sort_text = sort.clone().unwrap_or_else(|| "name".into());
        let mut survivors: BTreeSet<u64> = live.keys().map(|id| u64::from(*id)).collect();
        let mut used: BTreeSet<u32> = live.keys().copied().collect();
        let base = base_pairs(&sort, limit, &[]);

        let snapshot = |live: &BTreeMap<u32, Value>| live.values().cloned().collect::<Vec<_>>();
        let mut page = fetch(&snapshot(&live), &base, None);
        let mut seen: Vec<Value> = page.items.iter().map(|v| (**v).clone()).collect();
        let mut step = steps.into_iter();
        let mut guard = 0;
        while let Some(next) = page.next.clone() {
            for (insert, pick, attrs) in step.next().unwrap_or_default() {
                if insert {
                    let id = 1000 + u32::from(pick);
                    if used.insert(id) {
                        live.insert(id, make_item(id, &attrs));
                    }
                } else if !live.is_empty() {
                    let id = *live.keys().nth(usize::from(pick) % live.len()).unwrap();
                    live.remove(&id);
                    survivors.remove(&u64::from(id));
                }
            }
            page = fetch(&snapshot(&live), &base, Some(&next));
            seen.extend(page.items.iter().map(|v| (**v).clone()));
            guard += 1;
            prop_assert!(guard < 2000, "paging does not terminate");
        }
        let seen_ids: Vec<u64> = seen.iter().map(|i| i["id"].as_u64().unwrap()).collect();
        let unique: BTreeSet<u64> = seen_ids.iter().copied().collect();
        prop_assert_eq!(unique.len(), seen_ids.len(), "an item was returned twice");
        prop_assert!(survivors.is_subset(&unique), "an item present throughout was skipped");
        for pair in seen.windows(2) {
            prop_assert_eq!(ref_cmp(&sort_text, &pair[0], &pair[1]), Ordering::Less);
        }
    }

    #[test]
    fn select_yields_a_sub_object(
        raw in items_strategy(),
        paths in proptest::collection::vec(
            proptest::sample::select(&["id", "name", "stats", "stats.score", "stats.nope",
                "tags.k", "tags", "group.x", "nope", "name.x"][..]), 1..4),
    ) {
        let items: Vec<Value> = raw.iter().map(|(id, a)| make_item(*id, a)).collect();
        let select = paths.join(",");
        let pairs = [("select", select.as_str()), ("limit", "7"), ("sort", "id")];
        let page = run(&items, pairs, &PSPEC).unwrap();
        for (projected, original) in page.items.iter().zip(&items) {
            prop_assert!(is_sub(projected, original), "{} not within {}", projected, original);
            for path in &paths {
                // Any selected path reaching a value through objects only is kept verbatim.
                if let Some(v) = path.split('.').try_fold(original, |v, s| v.get(s)) {
                    let got = path.split('.').try_fold(&**projected, |v, s| v.get(s));
                    prop_assert_eq!(got, Some(v));
                }
            }
        }
    }

    #[test]
    fn garbage_cursors_never_panic(
        text in any::<String>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        junk in arb_json(),
        dir in any::<char>(),
    ) {
        let items: Vec<Value> = (0..10).map(|i| make_item(i, &(None, None))).collect();
        let first = run(&items, [("limit", "3")], &PSPEC).unwrap();
        let real = first.next.unwrap();
        let mut wire: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&real).unwrap()).unwrap();
        wire["k"] = junk.clone();
        wire["d"] = json!(dir.to_string());
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).unwrap());
        let mut flipped = real.clone().into_bytes();
        let at = bytes.first().map_or(0, |b| usize::from(*b) % flipped.len());
        flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        for cursor in [text, URL_SAFE_NO_PAD.encode(&bytes), forged, flipped,
                       URL_SAFE_NO_PAD.encode(junk.to_string())] {
            // Either an error naming `cursor` or a well-formed page: never a panic.
            match run(&items, [("limit", "3"), ("cursor", cursor.as_str())], &PSPEC) {
                Ok(page) => prop_assert!(page.items.len() <= 3),
                Err(e) => prop_assert_eq!(e.parameter, "cursor"),
            }
        }
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,3}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects: a subset of members, each a sub-value. Arrays: elements are sub-values of
/// an in-order subsequence of the original's elements (non-objects may be dropped).
fn is_sub(sub: &Value, of: &Value) -> bool {
    match (sub, of) {
        (Value::Object(s), Value::Object(o)) => s
            .iter()
            .all(|(k, v)| o.get(k).is_some_and(|ov| is_sub(v, ov))),
        (Value::Array(s), Value::Array(o)) => {
            let mut rest = o.iter();
            s.iter().all(|v| rest.by_ref().any(|ov| is_sub(v, ov)))
        }
        _ => sub == of,
    }
}
