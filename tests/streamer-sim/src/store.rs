//! The node's disk config ("flussonic.conf"): the server config and the ordered streams. It
//! survives a simulated restart. Merge rules of PUT live here.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::options::ArrayMerge;

/// One stream as stored on disk (exactly what `config_on_disk` echoes).
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    /// Order of creation; `position` is the rank of this number.
    pub seq: u64,
    /// The stored config, `name` included.
    pub config: Value,
}

/// Disk config of one node.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    /// The stored server config (no `streams`, no `stats`, no `server_id`).
    pub server: Map<String, Value>,
    streams: BTreeMap<String, Stored>,
    next_seq: u64,
}

impl Disk {
    /// A stored stream.
    pub fn stream(&self, name: &str) -> Option<&Stored> {
        self.streams.get(name)
    }

    /// All stored streams, by name.
    pub fn streams(&self) -> impl Iterator<Item = (&String, &Stored)> {
        self.streams.iter()
    }

    /// Number of stored streams.
    pub fn count(&self) -> usize {
        self.streams.len()
    }

    /// 1-based position of a stored stream in the config file.
    pub fn position(&self, seq: u64) -> i64 {
        self.streams.values().filter(|s| s.seq < seq).count() as i64 + 1
    }

    /// Writes a stream's stored config (keeps its position when it exists).
    pub fn put(&mut self, name: &str, config: Value) {
        match self.streams.get_mut(name) {
            Some(s) => s.config = config,
            None => {
                self.next_seq += 1;
                self.streams.insert(
                    name.to_string(),
                    Stored {
                        seq: self.next_seq,
                        config,
                    },
                );
            }
        }
    }

    /// Removes a stream; returns what was stored.
    pub fn remove(&mut self, name: &str) -> Option<Stored> {
        self.streams.remove(name)
    }
}

/// Removes `null` members recursively (a value written from a patch never stores nulls).
pub fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// JSON merge patch (RFC 7386) with a switch for arrays: objects merge deeply, `null` deletes
/// the key, scalars replace, arrays replace (or merge by index).
pub fn merge(target: &mut Value, patch: &Value, arrays: ArrayMerge) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("just made an object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else if let Some(existing) = t.get_mut(k) {
                    merge(existing, v, arrays);
                } else {
                    t.insert(k.clone(), strip_nulls(v));
                }
            }
        }
        Value::Array(p) if arrays == ArrayMerge::ByIndex && target.is_array() => {
            let t = target.as_array_mut().expect("checked");
            t.truncate(p.len());
            for (i, v) in p.iter().enumerate() {
                match t.get_mut(i) {
                    Some(existing) => merge(existing, v, arrays),
                    None => t.push(strip_nulls(v)),
                }
            }
        }
        other => *target = strip_nulls(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_rules() {
        let mut t = json!({"a": {"b": 1, "c": 2}, "l": [1, 2, 3], "x": 1});
        merge(
            &mut t,
            &json!({"a": {"b": null, "d": {"e": null, "f": 1}}, "l": [9], "x": null}),
            ArrayMerge::Replace,
        );
        assert_eq!(t, json!({"a": {"c": 2, "d": {"f": 1}}, "l": [9]}));
        let mut t = json!({"l": [{"u": 1, "p": 1}, {"u": 2}]});
        merge(&mut t, &json!({"l": [{"p": 2}]}), ArrayMerge::ByIndex);
        assert_eq!(t, json!({"l": [{"u": 1, "p": 2}]}));
    }

    #[test]
    fn positions_follow_creation_order() {
        let mut d = Disk::default();
        d.put("b", json!({}));
        d.put("a", json!({}));
        d.put("c", json!({}));
        assert_eq!(d.position(d.stream("a").unwrap().seq), 2);
        d.remove("b");
        assert_eq!(d.position(d.stream("a").unwrap().seq), 1);
        d.put("a", json!({"x": 1}));
        assert_eq!(d.position(d.stream("c").unwrap().seq), 2);
    }
}
