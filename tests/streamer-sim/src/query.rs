//! List queries of `GET /streams`: `select` (dotted, nested), `sort` (composite, `-` for
//! descending), `q`, equality filters on dotted paths, `limit` and opaque cursors.
//!
//! Cursors are keyset cursors: they hold the sort key of the last (or first) item of a page,
//! so a walk stays consistent while streams are added or removed between pages. The
//! `position` key is ordered by creation order, which `position` is the rank of.

use std::cmp::Ordering;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::error::ApiError;

const RESERVED: &[&str] = &["select", "limit", "cursor", "sort", "q", "format", "full"];
const DEFAULT_SORT: &str = "named_by,position,name";

/// A parsed list query.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// Paths to keep (`None` = everything).
    pub select: Option<Vec<Vec<String>>>,
    /// Sort keys, `true` = descending. `name` is always the final tie-breaker.
    pub sort: Vec<(Vec<String>, bool)>,
    /// Sort as given (kept in the cursor).
    pub sort_raw: String,
    /// Page size.
    pub limit: usize,
    /// Search text (lower case).
    pub q: Option<String>,
    /// Equality filters.
    pub filters: Vec<(Vec<String>, String)>,
    /// Where to continue.
    pub cursor: Option<Cursor>,
}

/// A decoded cursor.
#[derive(Clone, Debug, PartialEq)]
pub struct Cursor {
    /// Sort key of the item to continue after (or before).
    pub key: Vec<Value>,
    /// `true` = the page before `key`.
    pub prev: bool,
    /// Sort the cursor was made with.
    pub sort: String,
}

impl Cursor {
    /// Opaque text form.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(json!({"k": self.key, "p": self.prev, "s": self.sort}).to_string())
    }

    fn decode(s: &str) -> Option<Self> {
        let v: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()?).ok()?;
        Some(Self {
            key: v.get("k")?.as_array()?.clone(),
            prev: v.get("p")?.as_bool()?,
            sort: v.get("s")?.as_str()?.to_string(),
        })
    }
}

fn path(s: &str) -> Vec<String> {
    s.split('.').map(str::to_string).collect()
}

fn parse_sort(raw: &str) -> Vec<(Vec<String>, bool)> {
    let mut keys: Vec<(Vec<String>, bool)> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.strip_prefix('-') {
            Some(f) => (path(f), true),
            None => (path(s.trim_start_matches('+')), false),
        })
        .collect();
    if !keys.iter().any(|(p, _)| p.len() == 1 && p[0] == "name") {
        keys.push((vec!["name".into()], false));
    }
    keys
}

/// Parses the query string pairs.
pub fn parse(params: &[(String, String)]) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery {
        limit: 100,
        sort_raw: DEFAULT_SORT.into(),
        ..ListQuery::default()
    };
    let mut cursor_raw = None;
    for (k, v) in params {
        match k.as_str() {
            "select" => {
                let paths: Vec<Vec<String>> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(path)
                    .collect();
                q.select = Some(paths);
            }
            "limit" => {
                q.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=10_000).contains(l))
                    .ok_or_else(|| {
                        ApiError::bad_parameter("limit", "limit must be an integer 1..10000")
                    })?;
            }
            "sort" if !v.trim().is_empty() => q.sort_raw = v.clone(),
            "q" if !v.is_empty() => q.q = Some(v.to_lowercase()),
            "cursor" if !v.is_empty() => cursor_raw = Some(v.clone()),
            k if RESERVED.contains(&k) => {}
            k => q.filters.push((path(k), v.clone())),
        }
    }
    if let Some(raw) = cursor_raw {
        let c = Cursor::decode(&raw)
            .ok_or_else(|| ApiError::bad_parameter("cursor", "invalid cursor"))?;
        q.sort_raw = c.sort.clone();
        q.cursor = Some(c);
    }
    q.sort = parse_sort(&q.sort_raw);
    Ok(q)
}

impl ListQuery {
    /// Whether filtering or sorting looks at runtime stats (then every item needs them).
    pub fn orders_or_filters_on_stats(&self) -> bool {
        self.filters
            .iter()
            .map(|(p, _)| p)
            .chain(self.sort.iter().map(|(p, _)| p))
            .any(|p| p[0] == "stats")
    }

    /// Whether the selected fields include stats.
    pub fn selects_stats(&self) -> bool {
        self.select
            .as_ref()
            .is_none_or(|s| s.iter().any(|p| p[0] == "stats"))
    }
}

/// One listed stream with its hidden ordering data.
#[derive(Clone, Debug)]
pub struct Item {
    /// Name.
    pub name: String,
    /// 0 = config (or external), 1 = user, 2 = remote.
    pub rank: i64,
    /// Creation order of configured streams.
    pub seq: Option<u64>,
    /// The effective object.
    pub value: Value,
}

/// Looks up a dotted path.
pub fn lookup<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, seg| match cur {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn key_of(item: &Item, sort: &[(Vec<String>, bool)]) -> Vec<Value> {
    sort.iter()
        .map(|(p, _)| match p.as_slice() {
            [f] if f == "named_by" => json!(item.rank),
            [f] if f == "position" => item.seq.map(Value::from).unwrap_or(Value::Null),
            [f] if f == "name" => json!(item.name),
            _ => lookup(&item.value, p).cloned().unwrap_or(Value::Null),
        })
        .collect()
}

fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// A total order over JSON values.
pub fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        _ if type_rank(a) != type_rank(b) => type_rank(a).cmp(&type_rank(b)),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

fn cmp_keys(a: &[Value], b: &[Value], sort: &[(Vec<String>, bool)]) -> Ordering {
    for (i, (_, desc)) in sort.iter().enumerate() {
        let (x, y) = (
            a.get(i).unwrap_or(&Value::Null),
            b.get(i).unwrap_or(&Value::Null),
        );
        let o = cmp_values(x, y);
        let o = if *desc { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

fn value_matches(v: Option<&Value>, want: &str) -> bool {
    match v {
        None => false,
        Some(Value::Null) => want == "null",
        Some(Value::String(s)) => s == want,
        Some(Value::Bool(b)) => want == if *b { "true" } else { "false" },
        Some(Value::Number(n)) => want.parse::<f64>().is_ok_and(|w| n.as_f64() == Some(w)),
        Some(Value::Array(a)) => a.iter().any(|x| value_matches(Some(x), want)),
        Some(Value::Object(_)) => false,
    }
}

fn matches(item: &Item, q: &ListQuery) -> bool {
    let filters_ok = q.filters.iter().all(|(p, want)| match p.as_slice() {
        [f] if f == "named_by" => {
            item.value.get("named_by").and_then(Value::as_str) == Some(want.as_str())
        }
        _ => value_matches(lookup(&item.value, p), want),
    });
    let text_ok = q.q.as_deref().is_none_or(|needle| {
        let v = &item.value;
        let mut hay = vec![item.name.to_lowercase()];
        for k in ["title", "comment"] {
            if let Some(s) = v.get(k).and_then(Value::as_str) {
                hay.push(s.to_lowercase());
            }
        }
        for i in v
            .get("inputs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(s) = i.get("url").and_then(Value::as_str) {
                hay.push(s.to_lowercase());
            }
        }
        hay.iter().any(|h| h.contains(needle))
    });
    filters_ok && text_ok
}

/// One page of a list.
pub struct Page {
    /// Items of the page, in order.
    pub items: Vec<Item>,
    /// Items matching the query in total.
    pub total: usize,
    /// Cursor to the next page.
    pub next: Option<String>,
    /// Cursor to the previous page.
    pub prev: Option<String>,
}

/// Filters, sorts and cuts one page.
pub fn page(items: Vec<Item>, q: &ListQuery) -> Page {
    let mut keyed: Vec<(Vec<Value>, Item)> = items
        .into_iter()
        .filter(|i| matches(i, q))
        .map(|i| (key_of(&i, &q.sort), i))
        .collect();
    keyed.sort_by(|a, b| cmp_keys(&a.0, &b.0, &q.sort));
    let total = keyed.len();
    let (start, end) = match &q.cursor {
        None => (0, q.limit.min(total)),
        Some(c) if !c.prev => {
            let s =
                keyed.partition_point(|(k, _)| cmp_keys(k, &c.key, &q.sort) != Ordering::Greater);
            (s, (s + q.limit).min(total))
        }
        Some(c) => {
            let e = keyed.partition_point(|(k, _)| cmp_keys(k, &c.key, &q.sort) == Ordering::Less);
            (e.saturating_sub(q.limit), e)
        }
    };
    let cursor = |key: &Vec<Value>, prev| {
        Cursor {
            key: key.clone(),
            prev,
            sort: q.sort_raw.clone(),
        }
        .encode()
    };
    let next = (end < total && end > start).then(|| cursor(&keyed[end - 1].0, false));
    let prev = (start > 0 && end > start).then(|| cursor(&keyed[start].0, true));
    let items = keyed.drain(start..end).map(|(_, i)| i).collect();
    Page {
        items,
        total,
        next,
        prev,
    }
}

fn copy_path(src: &Value, path: &[String], dst: &mut Map<String, Value>) {
    let Some((head, rest)) = path.split_first() else {
        return;
    };
    let Some(v) = src.get(head) else { return };
    if rest.is_empty() {
        dst.insert(head.clone(), v.clone());
        return;
    }
    match v {
        Value::Object(_) => {
            let slot = dst
                .entry(head.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = slot {
                copy_path(v, rest, m);
            }
        }
        Value::Array(list) => {
            let slot = dst.entry(head.clone()).or_insert_with(|| {
                Value::Array(list.iter().map(|_| Value::Object(Map::new())).collect())
            });
            if let Value::Array(out) = slot {
                for (el, o) in list.iter().zip(out.iter_mut()) {
                    if let Value::Object(m) = o {
                        copy_path(el, rest, m);
                    }
                }
            }
        }
        _ => {}
    }
}

/// Keeps only the selected paths.
pub fn project(v: &Value, select: &Option<Vec<Vec<String>>>) -> Value {
    let Some(paths) = select else {
        return v.clone();
    };
    let mut out = Map::new();
    for p in paths {
        copy_path(v, p, &mut out);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, seq: u64, v: Value) -> Item {
        Item {
            name: name.into(),
            rank: 0,
            seq: Some(seq),
            value: v,
        }
    }

    fn q(pairs: &[(&str, &str)]) -> ListQuery {
        parse(
            &pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>(),
        )
        .unwrap()
    }

    #[test]
    fn pages_follow_cursors_both_ways() {
        let items: Vec<Item> = (0..5)
            .map(|i| item(&format!("s{i}"), i, json!({"name": format!("s{i}")})))
            .collect();
        let p1 = page(items.clone(), &q(&[("limit", "2")]));
        assert_eq!(
            p1.items.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            ["s0", "s1"]
        );
        assert!(p1.prev.is_none());
        let p2 = page(
            items.clone(),
            &q(&[("limit", "2"), ("cursor", p1.next.as_deref().unwrap())]),
        );
        assert_eq!(
            p2.items.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            ["s2", "s3"]
        );
        let back = page(
            items.clone(),
            &q(&[("limit", "2"), ("cursor", p2.prev.as_deref().unwrap())]),
        );
        assert_eq!(
            back.items
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>(),
            ["s0", "s1"]
        );
        let p3 = page(
            items,
            &q(&[("limit", "2"), ("cursor", p2.next.as_deref().unwrap())]),
        );
        assert_eq!(p3.items.len(), 1);
        assert!(p3.next.is_none());
    }

    #[test]
    fn sort_desc_filter_and_select() {
        let items = vec![
            item(
                "a",
                1,
                json!({"name": "a", "labels": {"k": "x"}, "stats": {"bitrate": 5}}),
            ),
            item(
                "b",
                2,
                json!({"name": "b", "labels": {"k": "y"}, "stats": {"bitrate": 9}}),
            ),
            item(
                "c",
                3,
                json!({"name": "c", "labels": {"k": "x"}, "stats": {"bitrate": 7}}),
            ),
        ];
        let p = page(items.clone(), &q(&[("sort", "-stats.bitrate")]));
        assert_eq!(
            p.items.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            ["b", "c", "a"]
        );
        let p = page(items, &q(&[("labels.k", "x")]));
        assert_eq!(p.total, 2);
        let sel = q(&[("select", "name,stats.bitrate")]).select;
        assert_eq!(
            project(
                &json!({"name": "a", "x": 1, "stats": {"bitrate": 1, "y": 2}}),
                &sel
            ),
            json!({"name": "a", "stats": {"bitrate": 1}})
        );
        let sel = q(&[("select", "inputs.url")]).select;
        assert_eq!(
            project(&json!({"inputs": [{"url": "u", "p": 1}]}), &sel),
            json!({"inputs": [{"url": "u"}]})
        );
    }
}
