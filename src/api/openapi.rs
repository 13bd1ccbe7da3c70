//! The facade's OpenAPI 3 document, generated from the Rust types that serve the requests
//! (schemars), served at `/watcher/admin-api/v3/openapi.json` with a small HTML page at
//! `/docs`, both from the route table ([`super::operations`]).

use axum::Json;
use axum::response::Html;
use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::BASE;
use super::error::ErrorResponse;
use super::operations::{Access, Shape, documented, operation, r};

fn shape(g: &mut SchemaGenerator, s: Shape) -> Option<Value> {
    match s {
        Shape::None => None,
        Shape::Any => Some(json!({"type": "object", "additionalProperties": true})),
        Shape::Object(f) => Some(f(g)),
        Shape::List(key, f) => {
            let item = f(g);
            Some(json!({
                "type": "object",
                "required": [key],
                "properties": {
                    "estimated_count": {"type": "integer"},
                    "next": {"type": "string"},
                    "prev": {"type": "string"},
                    "timing": {"type": "object", "additionalProperties": true},
                    key: {"type": "array", "items": item},
                },
            }))
        }
    }
}

/// The operationId of a request (`path` is the full path), for clients outside the crate
/// (the response-conformance checks of the tests name a response by it).
pub fn operation_id(method: &axum::http::Method, path: &str) -> Option<&'static str> {
    super::operations::operation(method, path).map(|o| o.id)
}

/// The whole document.
pub fn build() -> Value {
    let mut g = SchemaSettings::openapi3().into_generator();
    let error = r::<ErrorResponse>(&mut g);
    let mut paths: Map<String, Value> = Map::new();
    for op in documented() {
        let mut params: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(|p| {
                // Agent ids are the `agent://ID` names of inputs, not numbers.
                let ty = if p.ends_with("id") && !op.path.starts_with("/agents/") {
                    "integer"
                } else {
                    "string"
                };
                json!({"name": p, "in": "path", "required": true, "schema": {"type": ty}})
            })
            .collect();
        params.extend(op.query.iter().map(
            |(n, t)| json!({"name": n, "in": "query", "required": false, "schema": {"type": t}}),
        ));
        let mut responses = Map::new();
        let ok = match shape(&mut g, op.response) {
            _ if op.status == 501 => {
                json!({"description": "Not served by Panoptes: the error envelope says why and where to look", "content": {"application/json": {"schema": error}}})
            }
            Some(schema) => {
                json!({"description": "Success", "content": {"application/json": {"schema": schema}}})
            }
            None => json!({"description": "Success, no body"}),
        };
        responses.insert(op.status.to_string(), ok);
        responses.insert(
            "default".into(),
            json!({"description": "Error", "content": {"application/json": {"schema": error}}}),
        );
        let mut o = json!({
            "operationId": op.id,
            "summary": op.summary,
            "parameters": params,
            "responses": responses,
        });
        if let Some(schema) = shape(&mut g, op.request) {
            o["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": schema}}});
        }
        if op.id == "login_create" {
            o["security"] = json!([{"basic": []}]);
        } else if op.access == Access::Open {
            o["security"] = json!([]);
        }
        if op.id == "cluster_stats_get" {
            o["responses"]["200"]["content"]["application/openmetrics-text"] =
                json!({"schema": {"type": "string"}});
        }
        paths
            .entry(format!("{BASE}{}", op.path))
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("an object")
            .insert(op.method.to_string(), o);
    }
    // `select` projects list items down to the members asked for, so no member of an item
    // is required (nested ones neither: `select=inputs.comment` drops `inputs[].url`).
    let schemas: Map<String, Value> = g
        .take_definitions(true)
        .into_iter()
        .map(|(name, mut schema)| {
            if !KEEP_REQUIRED.contains(&name.as_str()) {
                strip_required(&mut schema);
            }
            (name, schema)
        })
        .collect();
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Panoptes — Watcher admin API",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "basic": {"type": "http", "scheme": "basic"},
            },
        },
        "security": [{"bearer": []}],
    })
}

/// Schemas never projected by `select`.
const KEEP_REQUIRED: &[&str] = &["ErrorResponse", "ErrorObject", "LoginInfo"];

fn strip_required(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("required");
            m.values_mut().for_each(strip_required);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_required),
        _ => {}
    }
}

/// Middleware: declared integer and boolean query parameters must parse and appear at most
/// once (string parameters are the handlers' and the query engine's business).
pub(crate) async fn validate_query(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    // Inside the nested router the URI lacks the base path; the original has it.
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| req.uri().path().to_string(), |u| u.path().to_string());
    if let Some(op) = operation(req.method(), &path) {
        let pairs: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        for (name, ty) in op.query {
            let values: Vec<&str> = pairs
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .collect();
            let bad = match *ty {
                "integer" => values.iter().any(|v| v.parse::<i64>().is_err()),
                "boolean" => values.iter().any(|v| !matches!(*v, "true" | "false")),
                _ => false,
            };
            if bad || (values.len() > 1 && *ty != "string") {
                let what = if bad {
                    format!("`{name}` must be a single {ty}")
                } else {
                    format!("`{name}` given more than once")
                };
                return super::error::ApiError::invalid_parameter(name, what).into_response();
            }
        }
    }
    next.run(req).await
}

/// `GET /openapi.json`.
pub async fn document() -> Json<Value> {
    Json(build())
}

/// `GET /docs`: the operations with links, without external scripts.
pub(crate) async fn docs_page() -> Html<String> {
    let mut rows = String::new();
    for op in documented() {
        rows.push_str(&format!(
            "<tr><td><code>{}</code></td><td><code>{BASE}{}</code></td><td>{}</td><td>{}</td></tr>\n",
            op.method.to_uppercase(),
            op.path,
            op.id,
            op.summary.replace('<', "&lt;")
        ));
    }
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Panoptes Watcher admin API</title></head>\
         <body><h1>Watcher admin API</h1><p>OpenAPI document: <a href=\"{BASE}/openapi.json\">openapi.json</a>. \
         Log in with <code>POST {BASE}/login</code> (Basic credentials), then send <code>Authorization: Bearer</code>.</p>\
         <table border=\"1\" cellpadding=\"4\"><tr><th>Method</th><th>Path</th><th>operationId</th><th>Summary</th></tr>\n{rows}</table></body></html>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_has_every_operation() {
        let doc = build();
        let n: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(n, documented().count());
        assert_eq!(n, 53);
    }
}
