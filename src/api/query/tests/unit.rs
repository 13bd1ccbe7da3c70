//! One group of tests per query parameter.

use serde_json::{Value, json};

use super::super::cursor::{Cursor, Direction};
use super::super::{CollectionSpec, QueryErrorKind};
use super::{SPEC, names, query, run};

fn streams() -> Vec<Value> {
    vec![
        json!({"name": "cam-b", "title": "Back Door", "position": 2,
               "stats": {"alive": true, "bitrate": 800},
               "inputs": [{"url": "rtsp://10.0.0.2/stream"}], "organizations": [{"id": 1}]}),
        json!({"name": "cam-a", "title": "Front Gate", "position": 1,
               "stats": {"alive": false, "bitrate": 1200.5},
               "inputs": [{"url": "rtsp://10.0.0.1/main"}, {"url": "rtsp://backup/ALT"}],
               "organizations": [{"id": 1}, {"id": 2}]}),
        json!({"name": "cam-d", "title": "Dock", "position": 10,
               "stats": {"alive": true, "bitrate": 90}, "inputs": [], "streams": ["x"]}),
        json!({"name": "cam-c", "title": "Café Nord", "position": 3,
               "stats": {"alive": true}, "inputs": [{"url": "agent://a1"}], "streams": []}),
        json!({"name": "cam-e", "title": null, "position": 10,
               "stats": {"alive": false, "bitrate": 5000}}),
    ]
}

fn err_of(pairs: &[(&str, &str)]) -> (String, QueryErrorKind) {
    let e = query(&streams(), pairs).expect_err("query must fail");
    (e.parameter, e.kind)
}

fn all(pairs: &[(&str, &str)]) -> Vec<String> {
    let mut with_limit: Vec<(&str, &str)> = pairs.to_vec();
    with_limit.push(("limit", "50"));
    let page = query(&streams(), &with_limit).unwrap();
    names(&page).into_iter().map(str::to_owned).collect()
}

#[test]
fn default_order_and_limit() {
    let page = query(&streams(), &[]).unwrap();
    assert_eq!(names(&page), ["cam-a", "cam-b", "cam-c"]);
    assert_eq!(page.estimated_count, 5);
    assert!(page.prev.is_none());
    assert!(page.next.is_some());
}

#[test]
fn limit_is_validated_and_clamped() {
    assert_eq!(query(&streams(), &[("limit", "2")]).unwrap().items.len(), 2);
    assert_eq!(query(&streams(), &[("limit", "")]).unwrap().items.len(), 3);
    for bad in ["0", "-1", "abc", "1.5", "+2", "1e2"] {
        assert_eq!(err_of(&[("limit", bad)]).0, "limit", "{bad}");
    }
    let big = query(&streams(), &[("limit", "99999999999999999999999")]).unwrap();
    assert_eq!(big.items.len(), 5);
    assert!(big.next.is_none());
    let spec = CollectionSpec {
        max_limit: 2,
        ..SPEC
    };
    let page = run(&streams(), [("limit", "1000")], &spec).unwrap();
    assert_eq!(page.items.len(), 2);
}

#[test]
fn sort_composite_descending_and_typed() {
    assert_eq!(
        all(&[("sort", "-position,name")]),
        ["cam-d", "cam-e", "cam-c", "cam-b", "cam-a"]
    );
    assert_eq!(
        all(&[("sort", "-position,-name")]),
        ["cam-e", "cam-d", "cam-c", "cam-b", "cam-a"]
    );
    // Numeric, not lexicographic ("10" < "2" as text); ints and floats compare together.
    assert_eq!(
        all(&[("sort", "stats.bitrate")]),
        ["cam-d", "cam-b", "cam-a", "cam-e", "cam-c"]
    );
    // Missing last ascending, first descending (the order is simply reversed).
    assert_eq!(all(&[("sort", "-stats.bitrate")])[0], "cam-c");
    assert_eq!(all(&[("sort", "title")])[4], "cam-e");
    // Booleans: false before true, then the tiebreak.
    assert_eq!(
        all(&[("sort", "stats.alive")]),
        ["cam-a", "cam-e", "cam-b", "cam-c", "cam-d"]
    );
    // Unknown paths sort as missing: only the tiebreak decides.
    assert_eq!(all(&[("sort", "nope.x")]), all(&[]));
    assert_eq!(all(&[("sort", "name,")]), all(&[]));
}

#[test]
fn sort_errors_name_the_parameter() {
    for bad in ["-", "a..b", ".a", "a."] {
        assert_eq!(err_of(&[("sort", bad)]).0, "sort", "{bad}");
    }
    let many = vec!["a"; 17].join(",");
    assert_eq!(err_of(&[("sort", &many)]).0, "sort");
}

#[test]
fn select_projects_nested_paths() {
    let page = query(
        &streams(),
        &[
            ("select", "name,stats.bitrate,inputs.url,missing.x"),
            ("limit", "2"),
        ],
    )
    .unwrap();
    assert_eq!(
        page.items.iter().map(|v| (**v).clone()).collect::<Vec<_>>(),
        vec![
            json!({"name": "cam-a", "stats": {"bitrate": 1200.5},
                   "inputs": [{"url": "rtsp://10.0.0.1/main"}, {"url": "rtsp://backup/ALT"}]}),
            json!({"name": "cam-b", "stats": {"bitrate": 800},
                   "inputs": [{"url": "rtsp://10.0.0.2/stream"}]}),
        ]
    );
    // A whole member wins over a deeper path into it; the intermediate with no selected
    // member present is absent.
    let page = query(
        &streams(),
        &[("select", "stats.bitrate,stats,name"), ("sort", "-name")],
    )
    .unwrap();
    assert_eq!(
        *page.items[0],
        json!({"name": "cam-e", "stats": {"alive": false, "bitrate": 5000}})
    );
    let page = query(&streams(), &[("select", "stats.nothing,name.deeper")]).unwrap();
    assert_eq!(*page.items[0], json!({}));
    assert_eq!(err_of(&[("select", "a..b")]).0, "select");
    // Empty select returns everything.
    let page = query(&streams(), &[("select", "")]).unwrap();
    assert_eq!(*page.items[0], streams()[1]);
}

#[test]
fn q_searches_name_title_and_urls_case_insensitively() {
    assert_eq!(all(&[("q", "GATE")]), ["cam-a"]);
    assert_eq!(all(&[("q", "backup/alt")]), ["cam-a"]);
    assert_eq!(all(&[("q", "rtsp://10.0.0")]), ["cam-a", "cam-b"]);
    assert_eq!(all(&[("q", "CAFÉ")]), ["cam-c"]);
    assert_eq!(all(&[("q", "cam-")]).len(), 5);
    assert_eq!(all(&[("q", "")]).len(), 5);
    assert!(all(&[("q", "zzz")]).is_empty());
    let spec = CollectionSpec {
        search: &[],
        ..SPEC
    };
    let e = run(&streams(), [("q", "x")], &spec).unwrap_err();
    assert_eq!(
        (e.parameter.as_str(), e.kind),
        ("q", QueryErrorKind::UnknownParameter)
    );
}

#[test]
fn equality_filters_are_typed() {
    assert_eq!(all(&[("name", "cam-d")]), ["cam-d"]);
    assert_eq!(all(&[("position", "10")]), ["cam-d", "cam-e"]);
    assert_eq!(all(&[("position", "10.0")]), ["cam-d", "cam-e"]);
    assert!(all(&[("position", "ten")]).is_empty());
    assert_eq!(all(&[("stats.alive", "false")]), ["cam-a", "cam-e"]);
    assert_eq!(all(&[("stats.bitrate", "1200.5")]), ["cam-a"]);
    // Any element of an array path.
    assert_eq!(all(&[("organization_id", "2")]), ["cam-a"]);
    assert_eq!(all(&[("organization_id", "1")]), ["cam-a", "cam-b"]);
    // Repeated filters all apply.
    assert_eq!(
        all(&[("organization_id", "1"), ("position", "2")]),
        ["cam-b"]
    );
}

#[test]
fn comparison_filters() {
    assert_eq!(all(&[("position_gt", "2")]), ["cam-c", "cam-d", "cam-e"]);
    assert_eq!(all(&[("position_gte", "3")]), ["cam-c", "cam-d", "cam-e"]);
    assert_eq!(all(&[("position_lt", "3")]), ["cam-a", "cam-b"]);
    assert_eq!(all(&[("position_lte", "2")]), ["cam-a", "cam-b"]);
    assert_eq!(all(&[("stats.bitrate_gt", "800")]), ["cam-a", "cam-e"]);
    assert_eq!(all(&[("name_gt", "cam-c")]), ["cam-d", "cam-e"]);
    // Missing values never satisfy a comparison.
    assert_eq!(all(&[("stats.bitrate_lt", "100000")]).len(), 4);
}

#[test]
fn like_ne_and_is_filters() {
    assert_eq!(all(&[("title_like", "DO")]), ["cam-b", "cam-d"]);
    assert_eq!(all(&[("inputs.url_like", "AGENT")]), ["cam-c"]);
    assert_eq!(all(&[("position_ne", "10")]), ["cam-a", "cam-b", "cam-c"]);
    // `_ne` holds when no value equals, including when the member is missing.
    assert_eq!(all(&[("stats.bitrate_ne", "90")]).len(), 4);
    assert_eq!(all(&[("title_is", "null")]), ["cam-e"]);
    assert_eq!(all(&[("title_is", "not_null")]).len(), 4);
    assert_eq!(all(&[("stats.bitrate_is", "null")]), ["cam-c"]);
    // Missing, and empty lists, count as null: agents' `stream_is=null`.
    assert_eq!(
        all(&[("stream_is", "null")]),
        ["cam-a", "cam-b", "cam-c", "cam-e"]
    );
    assert_eq!(all(&[("stream_is", "not_null")]), ["cam-d"]);
    assert_eq!(
        err_of(&[("title_is", "nil")]),
        (
            "title_is".into(),
            QueryErrorKind::InvalidValue("expected `null` or `not_null`".into())
        )
    );
}

#[test]
fn unknown_and_repeated_parameters_are_rejected() {
    assert_eq!(
        err_of(&[("colour", "red")]),
        ("colour".into(), QueryErrorKind::UnknownParameter)
    );
    assert_eq!(err_of(&[("title_likee", "x")]).0, "title_likee");
    assert_eq!(err_of(&[("stats.cpu_gt", "1")]).0, "stats.cpu_gt");
    assert_eq!(
        err_of(&[("limit", "1"), ("limit", "2")]),
        ("limit".into(), QueryErrorKind::Repeated)
    );
    assert_eq!(err_of(&[("sort", "name"), ("sort", "name")]).0, "sort");
    let mut many = vec![("position_ne", "0"); 32];
    assert_eq!(all(&many).len(), 5);
    many.push(("position_ne", "1"));
    assert_eq!(err_of(&many).0, "position_ne");
    // Passthrough parameters belong to the facade.
    assert_eq!(all(&[("preferred_zones", "a,b")]).len(), 5);
}

#[test]
fn cursors_page_forward_and_back() {
    let items = streams();
    let p1 = query(&items, &[("limit", "2")]).unwrap();
    assert_eq!(names(&p1), ["cam-a", "cam-b"]);
    let next = p1.next.clone().unwrap();
    let p2 = query(&items, &[("limit", "2"), ("cursor", &next)]).unwrap();
    assert_eq!(names(&p2), ["cam-c", "cam-d"]);
    let next = p2.next.clone().unwrap();
    let p3 = query(&items, &[("limit", "2"), ("cursor", &next)]).unwrap();
    assert_eq!(names(&p3), ["cam-e"]);
    assert!(p3.next.is_none());
    assert_eq!(p3.estimated_count, 5);
    let back = query(
        &items,
        &[("limit", "2"), ("cursor", p3.prev.as_deref().unwrap())],
    )
    .unwrap();
    assert_eq!(back, p2);
    let back = query(
        &items,
        &[("limit", "2"), ("cursor", p2.prev.as_deref().unwrap())],
    )
    .unwrap();
    assert_eq!(back, p1);
    // Cursors are URL-safe and never empty.
    assert!(
        next.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
}

#[test]
fn cursor_survives_deletion_of_its_boundary_item() {
    let mut items = streams();
    let p1 = query(&items, &[("limit", "2")]).unwrap();
    items.retain(|i| i["name"] != "cam-b");
    let p2 = query(
        &items,
        &[("limit", "2"), ("cursor", p1.next.as_deref().unwrap())],
    )
    .unwrap();
    assert_eq!(names(&p2), ["cam-c", "cam-d"]);
}

#[test]
fn empty_page_after_cursor_still_links_back() {
    let mut items = streams();
    let p = query(&items, &[("limit", "2"), ("sort", "position")]).unwrap();
    items.retain(|i| i["position"].as_i64() < Some(3));
    let empty = query(
        &items,
        &[
            ("limit", "2"),
            ("sort", "position"),
            ("cursor", p.next.as_deref().unwrap()),
        ],
    )
    .unwrap();
    assert!(empty.items.is_empty() && empty.next.is_none());
    let back = query(
        &items,
        &[
            ("limit", "2"),
            ("sort", "position"),
            ("cursor", empty.prev.as_deref().unwrap()),
        ],
    )
    .unwrap();
    assert_eq!(names(&back), ["cam-a", "cam-b"]);
    assert!(back.prev.is_none() && back.next.is_none());
}

#[test]
fn cursor_is_bound_to_the_sort_order() {
    let items = streams();
    let p1 = query(&items, &[("limit", "2"), ("sort", "-position")]).unwrap();
    let next = p1.next.unwrap();
    let e = query(&items, &[("limit", "2"), ("cursor", &next)]).unwrap_err();
    assert_eq!(
        (e.parameter.as_str(), e.kind),
        ("cursor", QueryErrorKind::CursorSortMismatch)
    );
    // Spelling the default order explicitly keeps the cursor valid.
    let p1 = query(&items, &[("limit", "2")]).unwrap();
    let p2 = query(
        &items,
        &[
            ("limit", "2"),
            ("sort", "name"),
            ("cursor", p1.next.as_deref().unwrap()),
        ],
    );
    assert_eq!(names(&p2.unwrap()), ["cam-c", "cam-d"]);
}

#[test]
fn garbage_cursors_are_errors() {
    let sort =
        super::super::sort::SortSpec::new(vec![], super::super::path::Path::parse("name").unwrap());
    let wrong_width = Cursor {
        direction: Direction::After,
        boundary: Some(vec![json!("a"), json!(1)]),
    }
    .encode(&sort);
    let long = "A".repeat(20_000);
    for bad in [
        "!!!",
        "e30",
        "bm90IGpzb24",
        long.as_str(),
        wrong_width.as_str(),
    ] {
        let e = query(&streams(), &[("cursor", bad)]).unwrap_err();
        assert_eq!(e.parameter, "cursor");
    }
    // Empty cursor means "first page" (the SDK drops empty parameters anyway).
    assert!(query(&streams(), &[("cursor", "")]).unwrap().prev.is_none());
}

#[test]
fn envelope_omits_absent_cursors() {
    let page = query(&streams(), &[("limit", "10")]).unwrap();
    let env =
        serde_json::to_value(page.into_envelope("users_list", json!({"total_ms": 1}))).unwrap();
    assert_eq!(env["estimated_count"], 5);
    assert_eq!(env["users_list"].as_array().unwrap().len(), 5);
    assert_eq!(env["timing"], json!({"total_ms": 1}));
    let obj = env.as_object().unwrap();
    assert!(!obj.contains_key("next") && !obj.contains_key("prev"));
    let page = query(&streams(), &[("limit", "1")]).unwrap();
    let env = serde_json::to_value(page.into_envelope("streams", json!({}))).unwrap();
    assert!(env["next"].as_str().is_some_and(|s| !s.is_empty()));
}

/// The envelope is written straight from the shared items; its bytes are those of the same
/// envelope as a `serde_json::Value` (members in name order), whatever the items' key.
#[test]
fn an_envelope_writes_the_bytes_of_its_value() {
    let first = query(&streams(), &[("limit", "1")]).unwrap();
    let cursor = first.next.unwrap();
    for key in ["agents", "streams", "users_list", "zz"] {
        let page = query(&streams(), &[("limit", "1"), ("cursor", &cursor)]).unwrap();
        assert!(page.next.is_some() && page.prev.is_some());
        let direct = serde_json::to_string(&page.clone().into_envelope(key, json!({"q": 1})));
        let value = serde_json::to_value(page.into_envelope(key, json!({"q": 1}))).unwrap();
        assert_eq!(
            direct.unwrap(),
            serde_json::to_string(&value).unwrap(),
            "{key}"
        );
    }
}

#[test]
fn error_envelope_carries_the_parameter() {
    let e = query(&streams(), &[("bogus_gt", "1")]).unwrap_err();
    let env = e.to_watcher_error();
    assert_eq!(env["errors"][0]["status"], "400");
    assert_eq!(env["errors"][0]["source"]["parameter"], "bogus_gt");
    assert_eq!(env["errors"][0]["code"], "unknown_parameter");
}

#[test]
fn numbers_compare_exactly_across_representations() {
    use super::super::value::cmp_numbers;
    use serde_json::Number;
    use std::cmp::Ordering::{Equal, Greater, Less};
    let int = |i: i64| Number::from(i);
    let float = |f: f64| Number::from_f64(f).unwrap();
    let two53 = 9_007_199_254_740_992_i64;
    assert_eq!(cmp_numbers(&int(two53 + 1), &float(two53 as f64)), Greater);
    assert_eq!(cmp_numbers(&float(two53 as f64), &int(two53 + 1)), Less);
    assert_eq!(cmp_numbers(&int(two53), &float(two53 as f64)), Equal);
    assert_eq!(cmp_numbers(&int(-2), &float(-2.5)), Greater);
    assert_eq!(cmp_numbers(&int(2), &float(2.5)), Less);
    assert_eq!(cmp_numbers(&Number::from(u64::MAX), &float(1e30)), Less);
    assert_eq!(cmp_numbers(&int(i64::MIN), &float(-1e30)), Greater);
    assert_eq!(cmp_numbers(&Number::from(u64::MAX), &int(-1)), Greater);
    assert_eq!(cmp_numbers(&float(-0.0), &int(0)), Equal);
}

#[test]
fn wide_objects_and_substring_edges() {
    // More members than the linear scan handles: the B-tree lookup path.
    let mut wide = serde_json::Map::new();
    for i in 0..100 {
        wide.insert(format!("k{i}"), json!(i));
    }
    wide.insert("name".into(), json!("Ünïcode STREAM end"));
    wide.insert("position".into(), json!(7));
    let items = vec![Value::Object(wide)];
    for (needle, hit) in [
        ("end", true),
        ("stream end", true),
        ("ünïcode stream", true),
        ("ÜNÏCODE", true),
        ("Ünïcode STREAM end!", false),
        ("x", false),
    ] {
        let page = query(&items, &[("name_like", needle)]).unwrap();
        assert_eq!(page.items.len(), usize::from(hit), "{needle}");
    }
    assert_eq!(query(&items, &[("position", "7")]).unwrap().items.len(), 1);
}

#[test]
fn typos_in_select_sort_and_typed_filters_are_rejected() {
    use super::super::Field;
    let spec = CollectionSpec {
        members: &["name", "title", "position", "stats", "inputs"],
        filters: &[
            Field::new("name"),
            Field::boolean("stats.alive"),
            Field::integer("stats.bitrate"),
        ],
        ..SPEC
    };
    let err = |pairs: &[(&str, &str)]| {
        let e = run(&streams(), pairs.iter().copied(), &spec).unwrap_err();
        (e.parameter, e.kind)
    };
    for (param, value) in [
        ("select", "nmae"),
        ("select", "name,stats.x,bogus.y"),
        ("sort", "bogus"),
        ("sort", "-name,-nope"),
    ] {
        let (p, kind) = err(&[(param, value)]);
        assert_eq!(p, param, "{param}={value}");
        assert!(
            matches!(kind, QueryErrorKind::InvalidValue(ref m) if m.contains("unknown field")),
            "{kind:?}"
        );
    }
    assert_eq!(err(&[("stats.alive", "flase")]).0, "stats.alive");
    assert_eq!(err(&[("stats.bitrate_gt", "fast")]).0, "stats.bitrate_gt");
    assert_eq!(
        err(&[("nmae", "x")]),
        ("nmae".into(), QueryErrorKind::UnknownParameter)
    );
    // Known members, nested paths, `_is` and `_like` keep working.
    for ok in [
        ("select", "name,stats.alive"),
        ("sort", "-stats.bitrate,name,position"),
        ("stats.alive", "true"),
        ("stats.alive_is", "null"),
        ("stats.bitrate_gte", "10"),
    ] {
        assert!(run(&streams(), [ok], &spec).is_ok(), "{ok:?}");
    }
}
