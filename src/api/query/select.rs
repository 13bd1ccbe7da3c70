//! `select`: nested projection of each item onto a set of dot paths.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::error::QueryError;
use super::path::Path;

/// Generous, yet keeps a hostile `select` from building a huge tree per request.
pub(crate) const MAX_SELECT_PATHS: usize = 256;

/// The selected paths as a tree: `stats.bitrate,stats.alive,name` becomes
/// `{name: *, stats: {bitrate: *, alive: *}}`, so projecting walks each item once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Selection {
    /// The member is taken whole; deeper selections under it are redundant.
    whole: bool,
    children: BTreeMap<String, Selection>,
}

impl Selection {
    /// `None` when no paths are given: every member is returned.
    pub(crate) fn parse(raw: &str, parameter: &str) -> Result<Option<Self>, QueryError> {
        let mut root = Selection::default();
        let mut count = 0;
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let path = Path::parse(part)
                .ok_or_else(|| QueryError::invalid(parameter, format!("bad field `{part}`")))?;
            count += 1;
            if count > MAX_SELECT_PATHS {
                return Err(QueryError::invalid(
                    parameter,
                    format!("at most {MAX_SELECT_PATHS} fields"),
                ));
            }
            root.insert(path.segments());
        }
        Ok((count > 0).then_some(root))
    }

    fn insert(&mut self, segments: &[String]) {
        let Some((head, tail)) = segments.split_first() else {
            self.whole = true;
            self.children.clear();
            return;
        };
        if self.whole {
            return;
        }
        self.children.entry(head.clone()).or_default().insert(tail);
    }

    /// Projects an item. Unknown paths are simply absent, and so is an intermediate
    /// object none of whose selected members exist. Arrays are projected element-wise.
    pub(crate) fn project(&self, item: &Value) -> Value {
        match item {
            Value::Object(map) => Value::Object(self.project_object(map)),
            Value::Array(items) => Value::Array(self.project_array(items)),
            other => other.clone(),
        }
    }

    fn project_object(&self, map: &Map<String, Value>) -> Map<String, Value> {
        let mut out = Map::new();
        for (key, sel) in &self.children {
            let Some(value) = map.get(key) else { continue };
            if sel.whole {
                out.insert(key.clone(), value.clone());
                continue;
            }
            match value {
                Value::Object(inner) => {
                    let projected = sel.project_object(inner);
                    if !projected.is_empty() {
                        out.insert(key.clone(), Value::Object(projected));
                    }
                }
                Value::Array(items) => {
                    out.insert(key.clone(), Value::Array(sel.project_array(items)));
                }
                // A path continuing below a scalar names nothing.
                _ => {}
            }
        }
        out
    }

    /// Object elements are kept even when nothing in them matched (as `{}`), so the
    /// array keeps one entry per original element a client may want to count;
    /// scalars cannot contain the selected members and are dropped.
    fn project_array(&self, items: &[Value]) -> Vec<Value> {
        items
            .iter()
            .filter_map(|item| match item {
                Value::Object(map) => Some(Value::Object(self.project_object(map))),
                Value::Array(inner) => Some(Value::Array(self.project_array(inner))),
                _ => None,
            })
            .collect()
    }
}
