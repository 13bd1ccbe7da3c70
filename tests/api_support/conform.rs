//! Response conformance against the served OpenAPI document and the vendor's reference types
//! (`tests/fixtures/reference-types.json`, derived by `scripts/reference-types.py`).
//!
//! JSON Schema accepts `0.0` as an `integer`, and so would any off-the-shelf validator; the
//! vendor's generated clients do not. So integers are checked on the raw number token: a
//! token with a fraction or an exponent parses as an f64 (`Number::is_f64`), and is refused
//! wherever the served schema or the reference says `integer`.

use std::sync::OnceLock;

use serde_json::Value;

/// The vendor's types, as `scripts/reference-types.py` derived them.
pub fn reference() -> &'static Value {
    static REF: OnceLock<Value> = OnceLock::new();
    REF.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/reference-types.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    })
}

/// The OpenAPI document the facade serves (the same function backs the route).
pub fn served() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(panoptes::api::openapi::build)
}

/// The JSON success-response schema of an operation in `doc`, if it has a body.
pub fn response_schema<'a>(doc: &'a Value, operation_id: &str) -> Option<&'a Value> {
    doc["paths"].as_object()?.values().find_map(|item| {
        item.as_object()?.values().find_map(|op| {
            (op["operationId"] == operation_id).then(|| {
                op["responses"].as_object().and_then(|r| {
                    r.iter()
                        .find(|(code, _)| code.starts_with('2'))
                        .and_then(|(_, r)| r.pointer("/content/application~1json/schema"))
                })
            })?
        })
    })
}

/// The reference schema name of an operation's success response.
pub fn reference_response(operation_id: &str) -> Option<&'static str> {
    reference()["operations"][operation_id]["response"].as_str()
}

/// Everything wrong with `value` as the success response of `operation_id`: against the
/// served document's schema (integers strict) and against the reference's member types.
pub fn violations(operation_id: &str, value: &Value) -> Vec<String> {
    let mut errs = types_only(operation_id, value);
    if let Some(name) = reference_response(operation_id) {
        required(&reference()["schemas"][name], value, name, &mut errs);
    }
    errs
}

/// [`violations`] without the reference's required members: what every facade call of the
/// api tests is checked for (their objects are often deliberately partial).
pub fn types_only(operation_id: &str, value: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let doc = served();
    match response_schema(doc, operation_id) {
        Some(schema) => validate(doc, schema, value, "", &mut errs),
        None => errs.push(format!(
            "{operation_id}: the served document has no JSON body"
        )),
    }
    if let Some(name) = reference_response(operation_id) {
        let node = serde_json::json!({"type": ["object"], "ref": name});
        against_reference(&node, value, name, &mut errs);
    }
    errs
}

/// Panics with every violation of `value` as a response of `operation_id`.
pub fn assert_conforms(operation_id: &str, value: &Value) {
    let errs = violations(operation_id, value);
    assert!(
        errs.is_empty(),
        "{operation_id}: the response does not conform:\n  {}\nbody: {value}",
        errs.join("\n  ")
    );
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(want: &str, v: &Value) -> bool {
    match (want, json_type(v)) {
        ("number", "integer") => true,
        (w, got) => w == got,
    }
}

/// The subset of OpenAPI 3.0 schemas that schemars writes, integers strict.
pub fn validate(doc: &Value, schema: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
    let s = resolve(doc, schema);
    if v.is_null() && s.get("nullable") == Some(&Value::Bool(true)) {
        return;
    }
    for sub in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        validate(doc, sub, v, at, errs);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = s.get(key).and_then(Value::as_array) {
            let ok = alts.iter().any(|a| {
                let mut e = Vec::new();
                validate(doc, a, v, at, &mut e);
                e.is_empty()
            });
            if !ok {
                errs.push(format!("{at}: matches none of {key} ({v})"));
            }
        }
    }
    if let Some(options) = s.get("enum").and_then(Value::as_array)
        && !options.contains(v)
    {
        errs.push(format!("{at}: {v} is not one of {options:?}"));
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        errs.push(format!("{at}: {v} is not {c}"));
    }
    let types: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() && !types.iter().any(|t| type_ok(t, v)) {
        errs.push(format!(
            "{at}: {} where the served schema says {types:?} ({v})",
            json_type(v)
        ));
        return;
    }
    if let Value::Number(n) = v {
        let x = n.as_f64().unwrap_or_default();
        if s.get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| x < m)
        {
            errs.push(format!("{at}: {v} below the minimum"));
        }
        if s.get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|m| x > m)
        {
            errs.push(format!("{at}: {v} above the maximum"));
        }
    }
    if let Value::Object(m) = v {
        let props = s.get("properties").and_then(Value::as_object);
        for req in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(k) = req.as_str()
                && !m.contains_key(k)
            {
                errs.push(format!("{at}: required member `{k}` is missing"));
            }
        }
        for (k, child) in m {
            let path = format!("{at}/{k}");
            match props.and_then(|p| p.get(k)) {
                Some(sub) => validate(doc, sub, child, &path, errs),
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => errs.push(format!("{path}: not in the schema")),
                    Some(extra @ Value::Object(_)) => validate(doc, extra, child, &path, errs),
                    _ => {}
                },
            }
        }
    }
    if let (Value::Array(items), Some(item)) = (v, s.get("items")) {
        for (i, child) in items.iter().enumerate() {
            validate(doc, item, child, &format!("{at}/{i}"), errs);
        }
    }
}

/// Walks `v` along the reference's tree: a member the reference types never gets another
/// JSON type (null aside: every optional member may be null), and integers are integers.
/// Members the reference does not know are the document comparison's business.
pub fn against_reference(node: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
    if v.is_null() {
        return;
    }
    let types: Vec<&str> = node["type"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !types.contains(&"any") && !types.iter().any(|t| type_ok(t, v)) {
        errs.push(format!(
            "{at}: {} where the reference says {types:?} ({v})",
            json_type(v)
        ));
        return;
    }
    match v {
        Value::Object(m) => {
            let members = node
                .get("members")
                .or_else(|| node["ref"].as_str().map(|r| &reference()["schemas"][r]));
            if let Some(members) = members.and_then(Value::as_object) {
                for (k, child) in m {
                    if let Some(sub) = members.get(k) {
                        against_reference(sub, child, &format!("{at}.{k}"), errs);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = node.get("items") {
                for child in items {
                    against_reference(item, child, &format!("{at}[]"), errs);
                }
            }
        }
        _ => {}
    }
}

/// The JSON types a served schema allows (`any` when it does not say).
fn served_types(doc: &Value, schema: &Value) -> Vec<String> {
    let s = resolve(doc, schema);
    let mut out: Vec<String> = match s.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect(),
        _ => vec![],
    };
    for key in ["anyOf", "oneOf", "allOf"] {
        for alt in s.get(key).and_then(Value::as_array).into_iter().flatten() {
            out.extend(served_types(doc, alt));
        }
    }
    if out.is_empty() {
        if s.get("properties").is_some() {
            out.push("object".into());
        } else if let Some(e) = s.get("enum").and_then(Value::as_array) {
            out.extend(e.iter().map(|v| json_type(v).to_string()));
        } else {
            out.push("any".into());
        }
    }
    out.retain(|t| t != "null");
    out.sort();
    out.dedup();
    out
}

fn properties<'a>(doc: &'a Value, schema: &'a Value) -> Vec<(&'a String, &'a Value)> {
    let s = resolve(doc, schema);
    let mut out: Vec<(&String, &Value)> = s
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    for key in ["anyOf", "oneOf", "allOf"] {
        for alt in s.get(key).and_then(Value::as_array).into_iter().flatten() {
            out.extend(properties(doc, alt));
        }
    }
    out
}

fn array_items<'a>(doc: &'a Value, schema: &'a Value) -> Option<&'a Value> {
    let s = resolve(doc, schema);
    s.get("items").or_else(|| {
        ["anyOf", "oneOf", "allOf"].iter().find_map(|k| {
            s.get(*k)?
                .as_array()?
                .iter()
                .find_map(|alt| array_items(doc, alt))
        })
    })
}

/// Differences between a served schema and a reference node: members the reference lacks
/// and type mismatches, each as `Schema.path: what` (`Schema` is the nearest reference schema,
/// so one allow-list entry covers every operation that returns it).
pub fn compare(doc: &Value, served: &Value, node: &Value, at: &str, out: &mut Vec<String>) {
    let ours = served_types(doc, served);
    let theirs: Vec<String> = node["type"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(String::from))
        .collect();
    let fits =
        |t: &String| theirs.contains(t) || (t == "integer" && theirs.iter().any(|x| x == "number"));
    if !theirs.iter().any(|t| t == "any")
        && !ours.iter().any(|t| t == "any")
        && !ours.iter().all(fits)
    {
        out.push(format!("{at}: served {ours:?}, reference {theirs:?}"));
        return;
    }
    let (node, at) = match node["ref"].as_str() {
        Some(r) => (
            serde_json::json!({"type": ["object"], "members": reference()["schemas"][r]}),
            r.to_string(),
        ),
        None => (node.clone(), at.to_string()),
    };
    if let Some(members) = node.get("members").and_then(Value::as_object) {
        for (k, sub) in properties(doc, served) {
            match members.get(k) {
                Some(theirs) => compare(doc, sub, theirs, &format!("{at}.{k}"), out),
                None => out.push(format!("{at}.{k}: served, not in the reference")),
            }
        }
    }
    if let (Some(item), Some(theirs)) = (array_items(doc, served), node.get("items")) {
        compare(doc, item, theirs, &format!("{at}[]"), out);
    }
}

/// The members the reference requires are present (so not for `select`-projected lists): a
/// generated client refuses an object without one. Not checked inside a streamer's node
/// configuration, stored and returned as the caller gave it (the seed's own samples omit its
/// read-only keys).
fn required(members: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
    let passthrough = at
        .split('.')
        .any(|seg| seg.starts_with("config") || seg.starts_with("dvrs"));
    let (Value::Object(m), Some(members)) = (v, members.as_object()) else {
        return;
    };
    for (k, node) in members {
        let child = m.get(k);
        if node["required"] == true && !passthrough && child.is_none() {
            errs.push(format!("{at}: the reference requires `{k}`"));
        }
        if let Some(child) = child {
            let path = format!("{at}.{k}");
            match (node.get("members"), node["ref"].as_str(), node.get("items")) {
                (Some(sub), _, _) => required(sub, child, &path, errs),
                (None, Some(r), _) => required(&reference()["schemas"][r], child, &path, errs),
                (None, None, Some(item)) => {
                    let sub = item
                        .get("members")
                        .or_else(|| item["ref"].as_str().map(|r| &reference()["schemas"][r]));
                    if let (Some(sub), Value::Array(items)) = (sub, child) {
                        for i in items {
                            required(sub, i, &format!("{path}[]"), errs);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}
