//! The facade's OpenAPI 3 document, generated from the Rust types that serve the requests
//! (schemars), served at `/watcher/admin-api/v3/openapi.json` with a small HTML page at
//! `/docs`. [`OPERATIONS`] is also how the audit trail names operations.

use axum::Json;
use axum::http::Method;
use axum::response::Html;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::BASE;
use super::auth::LoginInfo;
use super::error::ErrorResponse;
use super::events::Event;
use super::routes::cluster::ClusterHealthStats;
use super::views::{PresetView, StreamView, StreamerView, UserView};
use crate::layout::CountChange;
use crate::resources::wire::{CameraConfig, StreamLayout};

/// What an operation takes and returns, for the document.
#[derive(Clone, Copy)]
pub enum Shape {
    /// Nothing.
    None,
    /// A JSON object of a schema.
    Object(fn(&mut SchemaGenerator) -> Value),
    /// A collection envelope with items under a key.
    List(&'static str, fn(&mut SchemaGenerator) -> Value),
    /// A free-form JSON object.
    Any,
}

/// One operation of the facade.
pub struct Operation {
    /// HTTP method.
    pub method: &'static str,
    /// Path under [`BASE`].
    pub path: &'static str,
    /// operationId.
    pub id: &'static str,
    /// Summary.
    pub summary: &'static str,
    /// Query parameters (name, schema type).
    pub query: &'static [(&'static str, &'static str)],
    /// Request body.
    pub request: Shape,
    /// Success status.
    pub status: u16,
    /// Success body.
    pub response: Shape,
}

fn r<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    g.subschema_for::<T>().to_value()
}

const LIST_Q: &[(&str, &str)] = &[
    ("select", "string"),
    ("sort", "string"),
    ("limit", "integer"),
    ("cursor", "string"),
];

macro_rules! op {
    ($m:literal, $p:literal, $id:literal, $s:literal, $q:expr, $req:expr, $st:literal, $resp:expr) => {
        Operation {
            method: $m,
            path: $p,
            id: $id,
            summary: $s,
            query: $q,
            request: $req,
            status: $st,
            response: $resp,
        }
    };
}

/// Every operation, in the reference's order.
pub const OPERATIONS: &[Operation] = &[
    op!(
        "get",
        "/domain_config",
        "domain_config_get",
        "Read domain settings",
        &[],
        Shape::None,
        200,
        Shape::Any
    ),
    op!(
        "put",
        "/domain_config",
        "domain_config_save",
        "Save domain settings (SMTP password is write-only)",
        &[],
        Shape::Any,
        200,
        Shape::Any
    ),
    op!(
        "get",
        "/system_config",
        "system_config_get",
        "Read system settings",
        &[],
        Shape::None,
        200,
        Shape::Any
    ),
    op!(
        "get",
        "/streamers",
        "streamers_list",
        "List streamers",
        LIST_Q,
        Shape::None,
        200,
        Shape::List("streamers", r::<StreamerView>)
    ),
    op!(
        "get",
        "/streamers/{hostname}",
        "streamer_get",
        "Get a streamer",
        &[],
        Shape::None,
        200,
        Shape::Object(r::<StreamerView>)
    ),
    op!(
        "put",
        "/streamers/{hostname}",
        "streamer_save",
        "Create or update a streamer (partial)",
        &[("checks_enable", "boolean")],
        Shape::Any,
        200,
        Shape::Object(r::<StreamerView>)
    ),
    op!(
        "post",
        "/streamers/{hostname}/preview_layout_change",
        "preview_layout_change_for_streamer_config",
        "Dry-run the layouter for a streamer change",
        LIST_Q,
        Shape::Any,
        200,
        Shape::List("changes", r::<CountChange>)
    ),
    op!(
        "get",
        "/cluster/stats",
        "cluster_stats_get",
        "Cluster health",
        &[("format", "string")],
        Shape::None,
        200,
        Shape::Object(r::<ClusterHealthStats>)
    ),
    op!(
        "post",
        "/login",
        "login_create",
        "Issue an access token (Basic credentials, or a refresh token as Bearer)",
        &[],
        Shape::None,
        200,
        Shape::Object(r::<LoginInfo>)
    ),
    op!(
        "get",
        "/users",
        "users_list",
        "List users",
        &[
            ("select", "string"),
            ("sort", "string"),
            ("limit", "integer"),
            ("cursor", "string"),
            ("organization_id", "integer")
        ],
        Shape::None,
        200,
        Shape::List("users_list", r::<UserView>)
    ),
    op!(
        "post",
        "/users",
        "user_create",
        "Create a user",
        &[],
        Shape::Any,
        200,
        Shape::Object(r::<UserView>)
    ),
    op!(
        "get",
        "/users/{user_id}",
        "user_get",
        "Get a user",
        &[],
        Shape::None,
        200,
        Shape::Object(r::<UserView>)
    ),
    op!(
        "put",
        "/users/{user_id}",
        "user_save",
        "Update a user (partial)",
        &[],
        Shape::Any,
        200,
        Shape::Object(r::<UserView>)
    ),
    op!(
        "get",
        "/streams",
        "streams_list",
        "List streams",
        &[
            ("select", "string"),
            ("sort", "string"),
            ("limit", "integer"),
            ("cursor", "string"),
            ("q", "string"),
            ("preferred_zones", "string"),
            ("required_zones", "string")
        ],
        Shape::None,
        200,
        Shape::List("streams", r::<StreamView>)
    ),
    op!(
        "get",
        "/streams/{name}",
        "stream_get",
        "Get a stream",
        &[],
        Shape::None,
        200,
        Shape::Object(r::<StreamView>)
    ),
    op!(
        "put",
        "/streams/{name}",
        "stream_save",
        "Create or update a stream (merge; `$reset: true` replaces)",
        &[("part", "string")],
        Shape::Any,
        200,
        Shape::Object(r::<StreamView>)
    ),
    op!(
        "delete",
        "/streams/{name}",
        "stream_delete",
        "Delete a stream",
        &[("part", "string")],
        Shape::None,
        204,
        Shape::None
    ),
    op!(
        "get",
        "/streams/{name}/layouts",
        "stream_layouts_get",
        "Layout records of a stream",
        &[
            ("select", "string"),
            ("sort", "string"),
            ("limit", "integer"),
            ("cursor", "string"),
            ("created_at_gt", "integer"),
            ("created_at_lt", "integer")
        ],
        Shape::None,
        200,
        Shape::List("layouts", r::<StreamLayout>)
    ),
    op!(
        "post",
        "/streams/{name}/preview_layout_change",
        "preview_layout_change_for_stream_config",
        "Dry-run the layouter for a stream change",
        LIST_Q,
        Shape::Any,
        200,
        Shape::List("changes", r::<StreamLayout>)
    ),
    op!(
        "get",
        "/streams/{name}/camera_config",
        "camera_config_get",
        "Read camera settings",
        &[],
        Shape::None,
        200,
        Shape::Object(r::<CameraConfig>)
    ),
    op!(
        "put",
        "/streams/{name}/camera_config",
        "camera_config_save",
        "Write camera settings (partial)",
        &[],
        Shape::Any,
        200,
        Shape::Object(r::<CameraConfig>)
    ),
    op!(
        "put",
        "/streams/{name}/firmware_update",
        "stream_firmware_update",
        "Upload firmware to the camera (multipart image+proto, JSON {image: base64, proto}, or octet-stream with ?proto=)",
        &[("proto", "string")],
        Shape::Any,
        204,
        Shape::None
    ),
    op!(
        "get",
        "/presets",
        "presets_list",
        "List presets",
        &[
            ("select", "string"),
            ("sort", "string"),
            ("limit", "integer"),
            ("cursor", "string"),
            ("organization_id", "integer")
        ],
        Shape::None,
        200,
        Shape::List("presets", r::<PresetView>)
    ),
    op!(
        "post",
        "/presets",
        "presets_create",
        "Create a preset",
        &[],
        Shape::Any,
        200,
        Shape::Object(r::<PresetView>)
    ),
    op!(
        "get",
        "/presets/{id}",
        "preset_get",
        "Get a preset",
        &[],
        Shape::None,
        200,
        Shape::Object(r::<PresetView>)
    ),
    op!(
        "put",
        "/presets/{id}",
        "preset_save",
        "Update a preset (partial)",
        &[],
        Shape::Any,
        200,
        Shape::Object(r::<PresetView>)
    ),
    op!(
        "get",
        "/agents",
        "agents_list",
        "List agents (derived from agent:// stream inputs)",
        &[
            ("select", "string"),
            ("sort", "string"),
            ("limit", "integer"),
            ("cursor", "string"),
            ("stream_is", "string"),
            ("organization_id", "integer"),
            ("title_like", "string")
        ],
        Shape::None,
        200,
        Shape::List("agents", |_| json!({"type": "object"}))
    ),
    op!(
        "get",
        "/events",
        "events_list",
        "Audit trail of facade calls, newest first",
        LIST_Q,
        Shape::None,
        200,
        Shape::List("events", r::<Event>)
    ),
    op!(
        "put",
        "/organizations/{organization_id}/presets",
        "organization_preset_save",
        "Attach a preset to an organization",
        &[],
        Shape::Any,
        200,
        Shape::Object(r::<PresetView>)
    ),
    op!(
        "delete",
        "/organizations/{organization_id}/presets/{preset_id}",
        "delete_organization_preset",
        "Detach a preset from an organization",
        &[],
        Shape::None,
        204,
        Shape::None
    ),
];

/// The operationId of a request (`path` is the full path), for the audit trail.
pub fn operation_id(method: &Method, path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix(BASE)?;
    let segs: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let method = method.as_str().to_ascii_lowercase();
    let matches = |template: &str| {
        let t: Vec<&str> = template.trim_matches('/').split('/').collect();
        if t.first() == Some(&"streams") && t.get(1) == Some(&"{name}") {
            // Stream names may span segments: compare the fixed suffix only.
            let suffix = &t[2..];
            return segs.first() == Some(&"streams")
                && segs.len() > 1 + suffix.len()
                && segs[segs.len() - suffix.len()..] == *suffix
                && (!suffix.is_empty()
                    || !matches!(
                        segs.last(),
                        Some(
                            &("layouts"
                                | "preview_layout_change"
                                | "camera_config"
                                | "firmware_update")
                        )
                    )
                    || segs.len() == 2);
        }
        t.len() == segs.len()
            && t.iter()
                .zip(&segs)
                .all(|(a, b)| a.starts_with('{') || a == b)
    };
    OPERATIONS
        .iter()
        .find(|o| o.method == method && matches(o.path))
        .map(|o| o.id)
}

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

/// The whole document.
pub fn build() -> Value {
    let mut g = SchemaSettings::openapi3().into_generator();
    let error = r::<ErrorResponse>(&mut g);
    let mut paths: Map<String, Value> = Map::new();
    for op in OPERATIONS {
        let mut params: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(|p| {
                let ty = if p.ends_with("id") {
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

/// The declared query parameters of a request, for [`validate_query`].
pub fn operation(method: &Method, path: &str) -> Option<&'static Operation> {
    let id = operation_id(method, path)?;
    OPERATIONS.iter().find(|o| o.id == id)
}

/// Middleware: declared integer and boolean query parameters must parse and appear at most
/// once (string parameters are the handlers' and the query engine's business).
pub async fn validate_query(
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
pub async fn docs_page() -> Html<String> {
    let mut rows = String::new();
    for op in OPERATIONS {
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
    fn operation_ids_resolve_paths() {
        let id = |m: Method, p: &str| operation_id(&m, &format!("{BASE}{p}"));
        assert_eq!(id(Method::GET, "/streams"), Some("streams_list"));
        assert_eq!(id(Method::GET, "/streams/a/b"), Some("stream_get"));
        assert_eq!(
            id(Method::GET, "/streams/a/b/layouts"),
            Some("stream_layouts_get")
        );
        assert_eq!(id(Method::PUT, "/users/3"), Some("user_save"));
        assert_eq!(
            id(Method::DELETE, "/organizations/1/presets/2"),
            Some("delete_organization_preset")
        );
    }

    #[test]
    fn document_has_every_operation() {
        let doc = build();
        let n: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(n, OPERATIONS.len());
        assert_eq!(OPERATIONS.len(), 30);
    }
}
