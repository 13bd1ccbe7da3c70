//! Bulk edits of streams (`POST /streams/multiedit`, `POST /streams/zones`): the pure half.
//!
//! A bulk edit is all-or-nothing for its caller, but Kubernetes has no multi-object
//! transaction. So the facade plans everything here first — every item parsed and checked,
//! every resulting spec computed, every write and its undo expressed as a JSON merge patch
//! with a `resourceVersion` precondition — and only then talks to the API server: a dry run
//! of every item, the writes in item order, and on a failure midway the undo patches of the
//! items already written, newest first. Each undo is conditional on the version the facade
//! itself wrote, so an undo never reverts somebody else's later change: such an item is
//! reported as unrevertable instead.
//!
//! Item semantics follow the API's partial saves (reference §2.8): members an item carries
//! are changed, absent members are kept; `dvr` and `layout_rules` merge member-wise (RFC 7386,
//! `null` removes); `preset_id` `0` or `null` detaches the preset.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::domain::validate;
use crate::resources::StreamSpec;

/// Most items one request may carry: each is a dry run and a write on the API server, and the
/// whole request holds its before-states for the undo.
pub const MAX_ITEMS: usize = 1000;

/// Which bulk operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `POST /streams/multiedit`: `{streams: [{name, dvr, layout_rules, preset_id}]}`.
    Multiedit,
    /// `POST /streams/zones`: `{streams: [{name, layout_rules: {required_zones,
    /// preferred_zones}}]}` (the SDK leaves the items untyped; this is the shape accepted).
    Zones,
}

impl Kind {
    /// The members an item may carry.
    pub fn members(self) -> &'static [&'static str] {
        match self {
            Kind::Multiedit => &["name", "dvr", "layout_rules", "preset_id"],
            Kind::Zones => &["name", "layout_rules"],
        }
    }
}

/// The members of `layout_rules`.
pub const LAYOUT_RULES_MEMBERS: &[&str] = &["preferred_zones", "required_zones"];

/// What is wrong with a request, before anything is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The body is not the operation's shape (not an object, no `streams` array, an unknown
    /// member): 400.
    Malformed {
        /// JSON Pointer into the body.
        pointer: String,
        /// What is wrong.
        message: String,
    },
    /// More than [`MAX_ITEMS`] items: 413.
    TooMany(usize),
    /// One item cannot be applied (bad value, unknown zone name, duplicate name): 422 naming
    /// the item and the field.
    Item {
        /// Index of the item in `streams`.
        index: usize,
        /// Its stream name, when it has one.
        name: Option<String>,
        /// JSON Pointer of the field (`/streams/3/dvr/expiration`).
        pointer: String,
        /// What is wrong.
        message: String,
    },
}

impl Refusal {
    fn malformed(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Refusal::Malformed {
            pointer: pointer.into(),
            message: message.into(),
        }
    }

    /// A refusal of item `index` at `field` (a pointer below the item, `""` for the item).
    pub fn item(index: usize, name: Option<&str>, field: &str, message: impl Into<String>) -> Self {
        Refusal::Item {
            index,
            name: name.map(str::to_string),
            pointer: format!("/streams/{index}{field}"),
            message: message.into(),
        }
    }
}

/// A change of the preset: `None` keeps it, `Some(None)` detaches it, `Some(Some(id))` sets
/// the preset with Watcher id `id`.
pub type PresetChange = Option<Option<i64>>;

/// One parsed item.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// Index in `streams`.
    pub index: usize,
    /// The stream's Watcher name.
    pub name: String,
    /// Merge patch of `dvr` (`Value::Null` removes it).
    pub dvr: Option<Value>,
    /// Merge patch of `layout_rules` (`Value::Null` removes it).
    pub layout_rules: Option<Value>,
    /// Preset change.
    pub preset: PresetChange,
}

impl Item {
    /// The zone names the item names (required and preferred), for the existence check.
    pub fn zones(&self) -> impl Iterator<Item = (&'static str, usize, &str)> {
        LAYOUT_RULES_MEMBERS.iter().flat_map(move |m| {
            self.layout_rules
                .as_ref()
                .and_then(|r| r.get(*m))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
                .filter_map(move |(i, z)| Some((*m, i, z.as_str()?)))
        })
    }
}

/// Parses and checks a bulk body: its shape, the item count, and each item's values. Unknown
/// members at every depth are the facade's body check (it knows the schemas); this refuses
/// them at the item level too, so the plan never carries a member it would ignore.
pub fn parse(body: Option<&Value>, kind: Kind) -> Result<Vec<Item>, Refusal> {
    let Some(Value::Object(body)) = body else {
        return Err(Refusal::malformed(
            "",
            "a JSON object body `{\"streams\": [...]}` is required",
        ));
    };
    if let Some(k) = body.keys().find(|k| k.as_str() != "streams") {
        return Err(Refusal::malformed(
            format!("/{k}"),
            format!("unknown member `{k}`"),
        ));
    }
    let items = match body.get("streams") {
        Some(Value::Array(items)) => items,
        _ => {
            return Err(Refusal::malformed(
                "/streams",
                "`streams` must be an array of items",
            ));
        }
    };
    if items.len() > MAX_ITEMS {
        return Err(Refusal::TooMany(items.len()));
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(items.len());
    for (index, raw) in items.iter().enumerate() {
        let item = parse_item(index, raw, kind)?;
        if let Some(first) = seen.get(item.name.as_str()) {
            return Err(Refusal::item(
                index,
                Some(&item.name),
                "/name",
                format!(
                    "stream {} is also edited by item {first}; name each stream once",
                    item.name
                ),
            ));
        }
        seen.insert(item.name.clone(), index);
        out.push(item);
    }
    Ok(out)
}

fn parse_item(index: usize, raw: &Value, kind: Kind) -> Result<Item, Refusal> {
    let Value::Object(m) = raw else {
        return Err(Refusal::malformed(
            format!("/streams/{index}"),
            "each item must be an object",
        ));
    };
    if let Some(k) = m.keys().find(|k| !kind.members().contains(&k.as_str())) {
        return Err(Refusal::malformed(
            format!("/streams/{index}/{k}"),
            format!("unknown member `{k}`"),
        ));
    }
    let name = match m.get("name") {
        Some(Value::String(n)) if validate::stream_name(n) => n.clone(),
        Some(Value::String(_)) => {
            return Err(Refusal::item(
                index,
                None,
                "/name",
                validate::STREAM_NAME_RULE,
            ));
        }
        _ => {
            return Err(Refusal::item(
                index,
                None,
                "/name",
                "`name` (the stream) is required",
            ));
        }
    };
    let named = Some(name.as_str());
    let dvr = match m.get("dvr") {
        None => None,
        Some(v @ (Value::Null | Value::Object(_))) => Some(v.clone()),
        Some(_) => {
            return Err(Refusal::item(
                index,
                named,
                "/dvr",
                "`dvr` must be an object",
            ));
        }
    };
    let layout_rules = match m.get("layout_rules") {
        None => None,
        Some(Value::Null) => Some(Value::Null),
        Some(Value::Object(rules)) => {
            for (member, zones) in rules {
                let at = format!("/layout_rules/{member}");
                if !LAYOUT_RULES_MEMBERS.contains(&member.as_str()) {
                    return Err(Refusal::malformed(
                        format!("/streams/{index}{at}"),
                        format!("unknown member `{member}`"),
                    ));
                }
                match zones {
                    Value::Null => {}
                    Value::Array(zones) => {
                        for (i, z) in zones.iter().enumerate() {
                            if !z.as_str().is_some_and(validate::unix_name) {
                                return Err(Refusal::item(
                                    index,
                                    named,
                                    &format!("{at}/{i}"),
                                    validate::UNIX_NAME_RULE,
                                ));
                            }
                        }
                    }
                    _ => {
                        return Err(Refusal::item(
                            index,
                            named,
                            &at,
                            format!("`{member}` must be an array of zone names"),
                        ));
                    }
                }
            }
            Some(Value::Object(rules.clone()))
        }
        Some(_) => {
            return Err(Refusal::item(
                index,
                named,
                "/layout_rules",
                "`layout_rules` must be an object",
            ));
        }
    };
    let preset = match m.get("preset_id") {
        None => None,
        Some(Value::Null) => Some(None),
        // Ids start at 1; the seed's samples send 0 as "none".
        Some(Value::Number(n)) if n.as_i64() == Some(0) => Some(None),
        Some(Value::Number(n)) if n.as_i64().is_some_and(|i| i > 0) => Some(n.as_i64()),
        Some(_) => {
            return Err(Refusal::item(
                index,
                named,
                "/preset_id",
                "`preset_id` must be a positive integer id, or 0 for none",
            ));
        }
    };
    Ok(Item {
        index,
        name,
        dvr,
        layout_rules,
        preset,
    })
}

/// The spec `item` leads to from `spec`; `preset_ref` is the preset change already resolved to
/// an object name (the facade looks the id up in the stream's namespace).
pub fn edited(
    spec: &StreamSpec,
    item: &Item,
    preset_ref: Option<Option<String>>,
) -> Result<StreamSpec, Refusal> {
    let mut out = spec.clone();
    if let Some(patch) = &item.dvr {
        out.config.dvr = merged(&spec.config.dvr, patch, item, "/dvr")?;
    }
    if let Some(patch) = &item.layout_rules {
        out.config.layout_rules = merged(&spec.config.layout_rules, patch, item, "/layout_rules")?;
    }
    if let Some(p) = preset_ref {
        out.preset_ref = p;
    }
    Ok(out)
}

/// `patch` merged into `current` (RFC 7386; a `null` patch removes the whole member), as the
/// member's type; a value the type refuses names the item's `field`.
fn merged<T: serde::Serialize + serde::de::DeserializeOwned>(
    current: &Option<T>,
    patch: &Value,
    item: &Item,
    field: &str,
) -> Result<Option<T>, Refusal> {
    if patch.is_null() {
        return Ok(None);
    }
    let mut v = serde_json::to_value(current).unwrap_or(Value::Null);
    crate::domain::merge_patch::merge(&mut v, patch.clone());
    serde_json::from_value(v)
        .map_err(|e| Refusal::item(item.index, Some(&item.name), field, e.to_string()))
}

/// The JSON merge patch (RFC 7386) that turns `have` into `want`: changed and new members are
/// set, removed members become `null`; objects are diffed member-wise, anything else replaced.
/// `want` holds no `null` (specs serialise absent members by leaving them out).
pub fn merge_diff(have: &Value, want: &Value) -> Value {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => {
            let mut out = Map::new();
            for (k, hv) in h {
                match w.get(k) {
                    None => {
                        out.insert(k.clone(), Value::Null);
                    }
                    Some(wv) if wv != hv => {
                        let d = if hv.is_object() && wv.is_object() {
                            merge_diff(hv, wv)
                        } else {
                            wv.clone()
                        };
                        out.insert(k.clone(), d);
                    }
                    Some(_) => {}
                }
            }
            for (k, wv) in w {
                if !h.contains_key(k) {
                    out.insert(k.clone(), wv.clone());
                }
            }
            Value::Object(out)
        }
        (_, w) => w.clone(),
    }
}

/// The patch of one conditional write: `spec` from `before` to `after`, accepted by the API
/// server only while the object is still at `resource_version`.
pub fn conditional_patch(before: &StreamSpec, after: &StreamSpec, resource_version: &str) -> Value {
    let (b, a) = (spec_json(before), spec_json(after));
    json!({
        "metadata": {"resourceVersion": resource_version},
        "spec": merge_diff(&b, &a),
    })
}

fn spec_json(spec: &StreamSpec) -> Value {
    serde_json::to_value(spec).unwrap_or_else(|_| Value::Object(Map::new()))
}

/// An item the facade wrote: enough to undo it.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    /// Index in `streams`.
    pub index: usize,
    /// Stream name.
    pub name: String,
    /// The spec before the write.
    pub before: StreamSpec,
    /// The spec the API server stored.
    pub stored: StreamSpec,
    /// The `resourceVersion` the write produced.
    pub resource_version: String,
}

impl Written {
    /// The undo: back to `before`, only if nobody wrote after us.
    pub fn undo(&self) -> Value {
        conditional_patch(&self.stored, &self.before, &self.resource_version)
    }
}

/// The undo order: newest write first, so the objects go back through the states they came.
pub fn undo_order(written: &[Written]) -> impl Iterator<Item = &Written> {
    written.iter().rev()
}

/// What happened to the items of a bulk edit that failed midway.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Items written before the failure (their names, in item order).
    pub applied: Vec<String>,
    /// Of those, the ones put back to their before-state.
    pub reverted: Vec<String>,
    /// Of those, the ones that could not be put back (changed by someone else since, or the
    /// API server failed again): they keep the edit.
    pub unrevertable: Vec<String>,
}

impl Outcome {
    /// Whether the cluster is as it was before the request.
    pub fn clean(&self) -> bool {
        self.unrevertable.is_empty()
    }

    /// The outcome as the error envelope's `meta` (strings only: names joined with `,`, which
    /// no stream name contains).
    pub fn meta(&self) -> Vec<(&'static str, String)> {
        vec![
            ("applied", self.applied.join(",")),
            ("reverted", self.reverted.join(",")),
            ("unrevertable", self.unrevertable.join(",")),
        ]
    }
}

/// The body field an API server message names (`spec.dvr.expiration: Invalid value …`), as a
/// pointer below the item (`/dvr/expiration`): the spec's wire members are the item's.
pub fn field_of_message(message: &str) -> Option<String> {
    let at = message.find("spec.")? + "spec.".len();
    let path: String = message[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
        .collect();
    let path = path.trim_end_matches('.');
    (!path.is_empty()).then(|| path.split('.').map(|s| format!("/{s}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn items(v: Value) -> Result<Vec<Item>, Refusal> {
        parse(Some(&v), Kind::Multiedit)
    }

    #[test]
    fn bodies_are_checked_before_items() {
        for (body, pointer) in [
            (json!([]), ""),
            (json!({"streams": {}}), "/streams"),
            (json!({"stream": []}), "/stream"),
            (
                json!({"streams": [{"name": "a", "dvrr": {}}]}),
                "/streams/0/dvrr",
            ),
            (
                json!({"streams": [{"name": "a", "layout_rules": {"required": []}}]}),
                "/streams/0/layout_rules/required",
            ),
            (json!({"streams": [1]}), "/streams/0"),
        ] {
            match items(body.clone()) {
                Err(Refusal::Malformed { pointer: p, .. }) => assert_eq!(p, pointer, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        assert_eq!(
            parse(None, Kind::Zones).unwrap_err(),
            Refusal::malformed("", "a JSON object body `{\"streams\": [...]}` is required")
        );
        let many = json!({"streams": vec![json!({"name": "a"}); MAX_ITEMS + 1]});
        assert_eq!(items(many), Err(Refusal::TooMany(MAX_ITEMS + 1)));
        // Zones items carry no dvr.
        let z = parse(
            Some(&json!({"streams": [{"name": "a", "dvr": {}}]})),
            Kind::Zones,
        );
        assert!(matches!(z, Err(Refusal::Malformed { .. })), "{z:?}");
    }

    #[test]
    fn bad_items_are_named_by_index_and_field() {
        for (item, pointer) in [
            (json!({}), "/streams/1/name"),
            (json!({"name": "../x"}), "/streams/1/name"),
            (json!({"name": "b", "dvr": 3}), "/streams/1/dvr"),
            (
                json!({"name": "b", "preset_id": -1}),
                "/streams/1/preset_id",
            ),
            (
                json!({"name": "b", "preset_id": "1"}),
                "/streams/1/preset_id",
            ),
            (
                json!({"name": "b", "layout_rules": {"required_zones": ["ok", "no way"]}}),
                "/streams/1/layout_rules/required_zones/1",
            ),
            (
                json!({"name": "b", "layout_rules": {"preferred_zones": "z"}}),
                "/streams/1/layout_rules/preferred_zones",
            ),
            (json!({"name": "a"}), "/streams/1/name"),
        ] {
            match items(json!({"streams": [{"name": "a"}, item.clone()]})) {
                Err(Refusal::Item {
                    index, pointer: p, ..
                }) => {
                    assert_eq!((index, p.as_str()), (1, pointer), "{item}")
                }
                other => panic!("{item}: {other:?}"),
            }
        }
    }

    #[test]
    fn items_edit_only_what_they_carry() {
        let spec: StreamSpec = serde_json::from_value(json!({
            "name": "cam", "presetRef": "gold", "disabled": true,
            "dvr": {"expiration": 3600, "root": "/storage"},
            "layout_rules": {"required_zones": ["a"]}
        }))
        .unwrap();
        let parsed = items(json!({"streams": [
            {"name": "cam", "dvr": {"expiration": 60, "root": null}},
            {"name": "b", "layout_rules": {"preferred_zones": ["p"]}},
            {"name": "c", "preset_id": 0, "layout_rules": null},
        ]}))
        .unwrap();
        let a = edited(&spec, &parsed[0], None).unwrap();
        assert_eq!(a.config.dvr.as_ref().unwrap().expiration, Some(60));
        assert_eq!(a.config.dvr.as_ref().unwrap().root, None);
        assert_eq!(a.preset_ref.as_deref(), Some("gold"));
        assert_eq!(a.config.layout_rules, spec.config.layout_rules);
        let b = edited(&spec, &parsed[1], None).unwrap();
        let rules = b.config.layout_rules.unwrap();
        assert_eq!(rules.required_zones, Some(vec!["a".to_string()]));
        assert_eq!(rules.preferred_zones, Some(vec!["p".to_string()]));
        let c = edited(&spec, &parsed[2], Some(None)).unwrap();
        assert_eq!((c.preset_ref, c.config.layout_rules), (None, None));
        assert_eq!(c.config.dvr, spec.config.dvr);
        // A value the type refuses names the member.
        let bad =
            items(json!({"streams": [{"name": "x", "dvr": {"expiration": "long"}}]})).unwrap();
        assert!(
            matches!(edited(&spec, &bad[0], None), Err(Refusal::Item { pointer, .. }) if pointer == "/streams/0/dvr")
        );
    }

    #[test]
    fn undo_is_conditional_on_our_write() {
        let before: StreamSpec =
            serde_json::from_value(json!({"disabled": true, "dvr": {"expiration": 1}})).unwrap();
        let mut stored = before.clone();
        stored.config.dvr = None;
        stored.preset_ref = Some("p".into());
        let w = Written {
            index: 0,
            name: "cam".into(),
            before,
            stored,
            resource_version: "42".into(),
        };
        assert_eq!(
            w.undo(),
            json!({"metadata": {"resourceVersion": "42"}, "spec": {"dvr": {"expiration": 1}, "presetRef": null}})
        );
        let ws = vec![w.clone(), Written { index: 1, ..w }];
        assert_eq!(
            undo_order(&ws).map(|w| w.index).collect::<Vec<_>>(),
            vec![1, 0]
        );
    }

    #[test]
    fn messages_name_their_field() {
        assert_eq!(
            field_of_message(
                "Stream.panoptes.dev \"x\" is invalid: spec.dvr.redundancy_factor: Invalid value: 9"
            ),
            Some("/dvr/redundancy_factor".into())
        );
        assert_eq!(field_of_message("denied request: no"), None);
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<bool>().prop_map(Value::from),
            (0i64..5).prop_map(Value::from),
            "[a-c]{0,2}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                prop::collection::btree_map("[a-d]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The diff applied to `have` gives `want`, and the diff of equal values changes nothing.
        #[test]
        fn merge_diff_round_trips(have in json_value(), want in json_value()) {
            let mut got = have.clone();
            crate::domain::merge_patch::merge(&mut got, merge_diff(&have, &want));
            prop_assert_eq!(&got, &want);
            let same = merge_diff(&want, &want);
            prop_assert!(same.as_object().is_none_or(Map::is_empty), "{}", same);
        }
    }
}
