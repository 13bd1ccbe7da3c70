//! Pure functions over stream bodies: what Panoptes sends a node for a stream, and whether
//! what the node stored on disk (`config_on_disk`) still matches it.

use serde_json::{Map, Value};

use crate::resources::common::{MANAGED_LABEL, MANAGED_VALUE};
use crate::resources::wire::{NodeStream, StreamConfigSpec};

/// Members of [`StreamConfigSpec`] that exist only in Watcher / Panoptes, never on a node.
pub const WATCHER_ONLY: &[&str] = &[
    "vision",
    "coordinates",
    "map_coordinates",
    "postal_address",
    "onvif",
    "folder_id",
    "audio",
    "can_publish",
    "layout_rules",
];

/// Members a node fills itself; never sent.
pub const READ_ONLY: &[&str] = &[
    "stats",
    "config_on_disk",
    "named_by",
    "position",
    "srt_port_resolve",
];

/// A `PUT /streams/{name}` body: always carries `name`, never read-only members.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamBody(Map<String, Value>);

impl StreamBody {
    /// A partial update (merge; `null` deletes a member). Read-only members are dropped.
    pub fn patch(name: &str, fields: Map<String, Value>) -> Self {
        let mut body = Self(fields);
        body.sanitize(name);
        body
    }

    /// A full replacement (`"$reset": true`) with exactly these members.
    pub fn replace(name: &str, fields: Map<String, Value>) -> Self {
        let mut body = Self::patch(name, fields);
        body.0.insert("$reset".into(), Value::Bool(true));
        body
    }

    fn sanitize(&mut self, name: &str) {
        for k in READ_ONLY {
            self.0.remove(*k);
        }
        for list in ["inputs", "pushes"] {
            if let Some(Value::Array(items)) = self.0.get_mut(list) {
                for item in items.iter_mut().filter_map(Value::as_object_mut) {
                    item.remove("stats");
                }
            }
        }
        self.0
            .insert("name".into(), Value::String(name.to_string()));
    }

    /// Stream name.
    pub fn name(&self) -> &str {
        self.0
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// Whether this is a full replacement.
    pub fn is_reset(&self) -> bool {
        self.0.get("$reset") == Some(&Value::Bool(true))
    }

    /// The JSON object sent.
    pub fn as_json(&self) -> &Map<String, Value> {
        &self.0
    }

    /// Compares with what the node has on disk; see [`drift`].
    pub fn drift(&self, config_on_disk: Option<&Value>) -> Drift {
        drift(self, config_on_disk)
    }
}

/// The node-side body for a stream Panoptes owns: the spec without Watcher-only members and
/// without `dvr.redundancy_factor`, plus `name`, the ownership label and `"$reset": true`.
pub fn node_stream_body(name: &str, spec: &StreamConfigSpec) -> StreamBody {
    let mut m = match serde_json::to_value(spec) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for k in WATCHER_ONLY {
        m.remove(*k);
    }
    if let Some(Value::Object(dvr)) = m.get_mut("dvr") {
        dvr.remove("redundancy_factor");
        if dvr.is_empty() {
            m.remove("dvr");
        }
    }
    let labels = m
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if !labels.is_object() {
        *labels = Value::Object(Map::new());
    }
    if let Value::Object(l) = labels {
        l.insert(MANAGED_LABEL.into(), Value::String(MANAGED_VALUE.into()));
    }
    StreamBody::replace(name, m)
}

/// Result of comparing a desired body with `config_on_disk`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drift {
    /// The node has what Panoptes wants.
    InSync,
    /// The node has no such stream on disk.
    Missing,
    /// These members differ (JSON pointers, e.g. `/dvr/expiration`).
    Differs(Vec<String>),
}

impl Drift {
    /// Whether a write is needed.
    pub fn needs_write(&self) -> bool {
        !matches!(self, Self::InSync)
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn diff(want: &Value, have: Option<&Value>, exact: bool, ptr: &str, out: &mut Vec<String>) {
    match (want, have) {
        (Value::Null, None) => {}
        (Value::Null, Some(_)) | (_, None) => out.push(ptr.to_string()),
        (Value::Object(w), Some(Value::Object(h))) => diff_object(w, h, exact, ptr, None, out),
        (Value::Array(w), Some(Value::Array(h))) if w.len() == h.len() => {
            for (i, (a, b)) in w.iter().zip(h).enumerate() {
                // Arrays are replaced as a whole by the node, so elements compare exactly.
                diff(a, Some(b), true, &format!("{ptr}/{i}"), out);
            }
        }
        (w, Some(h)) if same(w, h) => {}
        _ => out.push(ptr.to_string()),
    }
}

/// [`diff`] of two objects; `skip` is a member of `w` that is not config (`$reset`).
fn diff_object(
    w: &Map<String, Value>,
    h: &Map<String, Value>,
    exact: bool,
    ptr: &str,
    skip: Option<&str>,
    out: &mut Vec<String>,
) {
    for (k, v) in w.iter().filter(|(k, _)| Some(k.as_str()) != skip) {
        diff(v, h.get(k), exact, &format!("{ptr}/{}", escape(k)), out);
    }
    if exact {
        for k in h.keys().filter(|k| !w.contains_key(*k)) {
            out.push(format!("{ptr}/{}", escape(k)));
        }
    }
}

/// Compares a desired body with the node's `config_on_disk` (never with the effective
/// config: defaults and template values would look like drift). A `$reset` body must match
/// exactly (members a human added count as drift); a patch only on the members it names,
/// where `null` means "must be absent".
pub fn drift(desired: &StreamBody, config_on_disk: Option<&Value>) -> Drift {
    let Some(Value::Object(have)) = config_on_disk else {
        return Drift::Missing;
    };
    // Compared in place: cloning both sides cost more than the comparison (it runs for every
    // stream on every reconcile).
    let mut out = Vec::new();
    diff_object(
        &desired.0,
        have,
        desired.is_reset(),
        "",
        Some("$reset"),
        &mut out,
    );
    out.sort();
    if out.is_empty() {
        Drift::InSync
    } else {
        Drift::Differs(out)
    }
}

/// Whether a listed stream is Panoptes's: configured on disk (`named_by` config) and carrying
/// the ownership label in its disk config. Foreign streams (user, remote, external) never are.
pub fn is_managed(stream: &NodeStream) -> bool {
    let configured = stream.named_by.as_deref().is_none_or(|n| n == "config");
    let label = |labels: Option<&Value>| {
        labels
            .and_then(|l| l.get(MANAGED_LABEL))
            .and_then(Value::as_str)
            == Some(MANAGED_VALUE)
    };
    let on_disk = stream
        .config_on_disk
        .as_ref()
        .map(|c| label(c.get("labels")));
    configured
        && on_disk.unwrap_or_else(|| {
            stream
                .labels
                .as_ref()
                .and_then(|l| l.get(MANAGED_LABEL))
                .map(String::as_str)
                == Some(MANAGED_VALUE)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::wire::StreamDvrSpec;
    use serde_json::json;

    fn spec() -> StreamConfigSpec {
        serde_json::from_value(json!({
            "title": "Gate 1", "static": true,
            "inputs": [{"url": "rtsp://10.0.0.42/s1", "priority": 1}],
            "dvr": {"root": "/storage", "expiration": 604800, "redundancy_factor": 1},
            "labels": {"site": "north"},
            "vision": {"alg": "faces"}, "coordinates": {"latitude": 1.0, "longitude": 2.0},
            "postal_address": "x", "onvif": {"url": "http://cam"}, "folder_id": 3,
            "audio": {"disabled": true}, "can_publish": false, "layout_rules": {"required_zones": ["a"]}
        }))
        .unwrap()
    }

    #[test]
    fn body_strips_watcher_members_and_marks_ownership() {
        let b = node_stream_body("cam-0042", &spec());
        assert_eq!(
            Value::Object(b.as_json().clone()),
            json!({
                "$reset": true, "name": "cam-0042", "title": "Gate 1", "static": true,
                "inputs": [{"url": "rtsp://10.0.0.42/s1", "priority": 1}],
                "dvr": {"root": "/storage", "expiration": 604800},
                "labels": {"site": "north", "managed-by": "panoptes"}
            })
        );
        assert!(b.is_reset());
        let only_rf = StreamConfigSpec {
            dvr: Some(Box::new(StreamDvrSpec {
                redundancy_factor: Some(2),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert!(
            !node_stream_body("x", &only_rf)
                .as_json()
                .contains_key("dvr")
        );
    }

    #[test]
    fn patch_drops_read_only_members_and_sets_name() {
        let b = StreamBody::patch("a", json!({"name": "b", "stats": {}, "named_by": "config", "position": 1, "config_on_disk": {}, "inputs": [{"url": "u", "stats": {}}], "title": "t"}).as_object().unwrap().clone());
        assert_eq!(
            Value::Object(b.as_json().clone()),
            json!({"name": "a", "inputs": [{"url": "u"}], "title": "t"})
        );
        assert!(!b.is_reset());
    }

    #[test]
    fn drift_against_config_on_disk() {
        let b = node_stream_body("cam", &spec());
        let mut disk = Value::Object(b.as_json().clone());
        disk.as_object_mut().unwrap().remove("$reset");
        assert_eq!(drift(&b, Some(&disk)), Drift::InSync);
        assert_eq!(drift(&b, None), Drift::Missing);
        // A number written as 604800.0 is still the same.
        disk["dvr"]["expiration"] = json!(604800.0);
        assert_eq!(drift(&b, Some(&disk)), Drift::InSync);
        disk["dvr"]["expiration"] = json!(1);
        disk["comment"] = json!("added by hand");
        disk["inputs"][0]["url"] = json!("rtsp://other");
        assert_eq!(
            drift(&b, Some(&disk)),
            Drift::Differs(vec![
                "/comment".into(),
                "/dvr/expiration".into(),
                "/inputs/0/url".into()
            ])
        );
        disk["inputs"] = json!([]);
        assert!(
            matches!(drift(&b, Some(&disk)), Drift::Differs(p) if p.contains(&"/inputs".to_string()))
        );
    }

    #[test]
    fn patch_drift_looks_only_at_named_members() {
        let p = StreamBody::patch(
            "cam",
            json!({"title": "t", "comment": null, "dvr": {"expiration": 5}})
                .as_object()
                .unwrap()
                .clone(),
        );
        let disk = json!({"name": "cam", "title": "t", "static": true, "dvr": {"root": "/r", "expiration": 5}});
        assert_eq!(drift(&p, Some(&disk)), Drift::InSync);
        let disk = json!({"name": "cam", "title": "t", "comment": "c", "dvr": {"expiration": 5}});
        assert_eq!(
            drift(&p, Some(&disk)),
            Drift::Differs(vec!["/comment".into()])
        );
    }

    #[test]
    fn ownership() {
        let mut s = NodeStream {
            name: "a".into(),
            named_by: Some("config".into()),
            config_on_disk: Some(json!({"labels": {"managed-by": "panoptes"}})),
            ..Default::default()
        };
        assert!(is_managed(&s));
        s.named_by = Some("user".into());
        assert!(!is_managed(&s));
        s.named_by = Some("config".into());
        s.config_on_disk = Some(json!({"labels": {}}));
        assert!(!is_managed(&s));
    }
}
