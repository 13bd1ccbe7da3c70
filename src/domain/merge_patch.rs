//! JSON merge patches (RFC 7386): how every partial save of the Watcher API applies a body,
//! shared by the facade and the bulk-edit planning.

use serde_json::{Map, Value};

/// RFC 7386 merge of `patch` into `target`: objects merge member-wise, `null` deletes,
/// anything else replaces.
pub fn merge(target: &mut Value, patch: Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("made an object above");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge(t.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_is_rfc7386() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        merge(
            &mut t,
            json!({"b": {"c": null, "x": 1}, "e": [2], "a": null}),
        );
        assert_eq!(t, json!({"b": {"d": 3, "x": 1}, "e": [2]}));
    }
}
