//! Unknown request-body members, at every depth: a typo (`titel`, `dvr.expiraton`,
//! `inputs[0].ulr`, `stats.foo`) answers 400 naming it, instead of 200 with nothing changed.
//!
//! A member is known when any of three sources lists it at its place:
//! - **the reference**: the vendor's schema of what the operation returns, with its read-only
//!   members (generated clients round-trip whole objects). The facade's copy,
//!   `reference-members.json`, is written by `scripts/reference-types.py --members` from the
//!   same reference and the same parser as the tests' judge
//!   (`tests/fixtures/reference-types.json`); a test checks the two agree;
//! - **ours**: the schema of the served OpenAPI document (generated from the Rust types) for
//!   what the operation takes or returns, so members Panoptes adds are accepted too;
//! - **what the facade renders for the object now**, so a GET sent back is always accepted,
//!   members a node reports and the facade passes through (`stats`) included.
//!
//! An object no source lists members for (`labels`, a free-form map) takes any member.

use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::error::ApiError;

/// The reference's member names, by schema, and each operation's response schema.
static REFERENCE_MEMBERS: &str = include_str!("reference-members.json");

/// The parsed [`REFERENCE_MEMBERS`].
pub(crate) fn reference() -> &'static Value {
    static REF: OnceLock<Value> = OnceLock::new();
    REF.get_or_init(|| {
        serde_json::from_str(REFERENCE_MEMBERS).expect("reference-members.json is JSON")
    })
}

/// The served OpenAPI document.
fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(super::openapi::build)
}

/// Where the members at one place of a body are known from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Known<'a> {
    /// A node of [`reference`]: `null` (nothing known), a schema name, or members by name
    /// (`*`: any key of a map, with the members of its values below).
    Reference(&'a Value),
    /// A JSON Schema of the served document.
    Ours(&'a Value),
    /// The object as the facade renders it now.
    Seen(&'a Value),
}

impl<'a> Known<'a> {
    /// The members this source lists at its place, or `None` if it lists none.
    fn members(self) -> Option<Vec<(&'a str, Known<'a>)>> {
        match self {
            Known::Reference(Value::String(schema)) => {
                Known::Reference(&reference()["schemas"][schema.as_str()]).members()
            }
            Known::Reference(Value::Object(m)) => Some(
                m.iter()
                    .map(|(k, v)| (k.as_str(), Known::Reference(v)))
                    .collect(),
            ),
            Known::Reference(_) => None,
            Known::Ours(schema) => {
                let mut out = Vec::new();
                properties(schema, &mut out, 0);
                (!out.is_empty()).then_some(out)
            }
            Known::Seen(Value::Object(m)) => Some(
                m.iter()
                    .map(|(k, v)| (k.as_str(), Known::Seen(v)))
                    .collect(),
            ),
            Known::Seen(_) => None,
        }
    }

    /// The source for element `i` of an array at this place.
    fn item(self, i: usize) -> Option<Known<'a>> {
        match self {
            // The reference's trees make arrays transparent.
            Known::Reference(_) => Some(self),
            Known::Ours(schema) => items(schema, 0).map(Known::Ours),
            // A round trip keeps the order of elements.
            Known::Seen(v) => v.get(i).map(Known::Seen),
        }
    }
}

/// `$ref` targets of the served document.
fn resolve(schema: &Value) -> &Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap_or_default();
            &document()["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// The alternatives and parts a schema is made of.
fn parts(schema: &Value) -> impl Iterator<Item = &Value> {
    ["allOf", "anyOf", "oneOf"]
        .into_iter()
        .filter_map(|k| schema.get(k)?.as_array())
        .flatten()
}

/// Collects the properties of `schema` (through `$ref`, `allOf`, `anyOf`, `oneOf`).
fn properties<'a>(schema: &'a Value, out: &mut Vec<(&'a str, Known<'a>)>, depth: usize) {
    if depth > 16 {
        return;
    }
    let schema = resolve(schema);
    if let Some(p) = schema.get("properties").and_then(Value::as_object) {
        out.extend(p.iter().map(|(k, v)| (k.as_str(), Known::Ours(v))));
    }
    for part in parts(schema) {
        properties(part, out, depth + 1);
    }
}

/// The item schema of an array `schema` (through the same combinators).
fn items(schema: &Value, depth: usize) -> Option<&Value> {
    if depth > 16 {
        return None;
    }
    let schema = resolve(schema);
    schema
        .get("items")
        .or_else(|| parts(schema).find_map(|p| items(p, depth + 1)))
}

/// The success-response (`request: false`) or request-body schema of operation `op` in the
/// served document.
pub(crate) fn operation_schema(op: &str, request: bool) -> Option<&'static Value> {
    document()["paths"].as_object()?.values().find_map(|item| {
        item.as_object()?.values().find_map(|o| {
            if o["operationId"] != op {
                return None;
            }
            if request {
                return o.pointer("/requestBody/content/application~1json/schema");
            }
            o["responses"].as_object()?.iter().find_map(|(code, r)| {
                code.starts_with('2')
                    .then(|| r.pointer("/content/application~1json/schema"))
                    .flatten()
            })
        })
    })
}

/// Refuses a member of a save `body` of operation `op` that neither the reference's schema of
/// what `op` returns, nor ours, nor `seen` (the object as rendered now) has, at any depth;
/// `extra` are request-only members at the top (`$reset`, `password`, …).
pub(crate) fn reject_unknown(
    body: &Map<String, Value>,
    op: &str,
    extra: &[&str],
    seen: Option<&Value>,
) -> Result<(), ApiError> {
    let reference_node = reference()["operations"].get(op).unwrap_or(&Value::Null);
    let mut known = vec![Known::Reference(reference_node)];
    known.extend(operation_schema(op, false).map(Known::Ours));
    known.extend(seen.map(Known::Seen));
    let top: Map<String, Value> = body
        .iter()
        .filter(|(k, _)| !extra.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    check(&Value::Object(top), &known, "", "")
}

/// Checks `value` at pointer `at` (dotted name `name`) against the `known` sources.
pub(crate) fn check(
    value: &Value,
    known: &[Known<'_>],
    at: &str,
    name: &str,
) -> Result<(), ApiError> {
    match value {
        Value::Object(m) => {
            let lists: Vec<Vec<(&str, Known<'_>)>> =
                known.iter().filter_map(|k| k.members()).collect();
            // Only a schema closes an object; what the facade rendered adds members to a
            // closed one (a node's stats) but never closes a map (`labels`) by itself.
            let closed = known
                .iter()
                .any(|k| !matches!(k, Known::Seen(_)) && k.members().is_some());
            if !closed {
                return Ok(());
            }
            for (k, v) in m {
                // `*`: the reference's maps (`map<string, object>`) take any key.
                let subs: Vec<Known<'_>> = lists
                    .iter()
                    .flatten()
                    .filter(|(n, _)| n == k || *n == "*")
                    .map(|(_, s)| *s)
                    .collect();
                let pointer = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                let dotted = if name.is_empty() {
                    k.clone()
                } else {
                    format!("{name}.{k}")
                };
                if subs.is_empty() {
                    return Err(ApiError::invalid_body(
                        &pointer,
                        format!("unknown member `{dotted}`"),
                    ));
                }
                check(v, &subs, &pointer, &dotted)?;
            }
            Ok(())
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                let subs: Vec<Known<'_>> = known.iter().filter_map(|k| k.item(i)).collect();
                check(v, &subs, &format!("{at}/{i}"), &format!("{name}[{i}]"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stream_body(v: Value) -> Result<(), ApiError> {
        reject_unknown(v.as_object().unwrap(), "stream_save", &["$reset"], None)
    }

    #[test]
    fn nested_typos_are_named() {
        for (body, pointer, member) in [
            (json!({"titel": "x"}), "/titel", "titel"),
            (json!({"dvr": {"titel": 1}}), "/dvr/titel", "dvr.titel"),
            (
                json!({"inputs": [{"url": "fake://a"}, {"ulr": "x"}]}),
                "/inputs/1/ulr",
                "inputs[1].ulr",
            ),
            (json!({"stats": {"foo": 1}}), "/stats/foo", "stats.foo"),
            (
                json!({"layout_rules": {"required_zone": []}}),
                "/layout_rules/required_zone",
                "layout_rules.required_zone",
            ),
        ] {
            let e = stream_body(body.clone()).expect_err(&body.to_string());
            let source = e.object.source.clone().unwrap();
            assert_eq!(source.pointer.as_deref(), Some(pointer), "{body}");
            assert!(e.object.title.contains(member), "{}", e.object.title);
        }
    }

    #[test]
    fn reference_and_our_members_are_accepted() {
        stream_body(json!({
            "$reset": true,
            "title": "t",
            "labels": {"anything": "goes"},
            "stats": {"alive": true, "media_info": {"tracks": []}},
            "dvr": {"expiration": 1, "root": "/r", "disk_usage_limit": 5},
            "inputs": [{"url": "fake://a", "via": "agent://x", "stats": {}}],
            "path": [{"id": 0, "title": "root"}],
            "layout": {"ingest": "n1"},
        }))
        .unwrap();
        reject_unknown(
            json!({"config": {"rproxy": {"forward_ports": {"8080": {"handler": "h"}}}}})
                .as_object()
                .unwrap(),
            "streamer_save",
            &[],
            None,
        )
        .unwrap();
        let e = reject_unknown(
            json!({"config": {"rproxy": {"forward_ports": {"8080": {"handlr": "h"}}}}})
                .as_object()
                .unwrap(),
            "streamer_save",
            &[],
            None,
        )
        .unwrap_err();
        assert!(
            e.object.title.contains("forward_ports.8080.handlr"),
            "{}",
            e.object.title
        );
        // What the facade renders for the object is accepted back, whatever a node reported.
        let seen = json!({"stats": {"node_only": 1}, "labels": {"a": "b"}});
        reject_unknown(
            json!({"stats": {"node_only": 2}, "labels": {"c": "d"}})
                .as_object()
                .unwrap(),
            "stream_save",
            &[],
            Some(&seen),
        )
        .unwrap();
    }
}
