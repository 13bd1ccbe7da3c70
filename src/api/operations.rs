//! The route table: every route of the facade, declared once. The axum router
//! ([`super::router`]), the OpenAPI document ([`super::openapi`]), the query validation, the
//! request metrics and the audit trail's operation names all read [`OPERATIONS`], so a route
//! cannot be served without being documented, or documented without being served.
//!
//! Hand-rolled rather than `aide`: the document is the reference's shapes (collection
//! envelopes, `select`-projected items without `required`), which a generator would have to be
//! talked out of, and a table of plain data stays testable without a server.

use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter};
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Value, json};

use super::audit::Event;
use super::auth::{self, LoginInfo};
use super::names::{StreamPath, split_stream_path};
use super::openapi;
use super::routes::cluster::{self, ClusterHealthStats};
use super::routes::{
    self, ServerStatsWhoami, access, agents, bulk, events, organizations, presets, settings,
    streamers, streams, users, zones,
};
use super::views::{PresetView, StreamView, StreamerView, UserView};
use super::{ApiState, BASE};
use crate::layout::CountChange;
use crate::resources::wire::{CameraConfig, StreamLayout};

/// What an operation takes and returns, for the document.
#[derive(Clone, Copy)]
pub(crate) enum Shape {
    /// Nothing.
    None,
    /// A JSON object of a schema.
    Object(fn(&mut SchemaGenerator) -> Value),
    /// A collection envelope with items under a key.
    List(&'static str, fn(&mut SchemaGenerator) -> Value),
    /// A free-form JSON object.
    Any,
}

/// Who may call an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// A Bearer JWT of an admin ([`auth::require_admin`]); query parameters are validated.
    Admin,
    /// A Bearer JWT of any enabled user ([`auth::require_user`]); the handler admits admins
    /// and the user the path names. Query parameters are validated.
    Own,
    /// Anyone (`POST /login` checks its own credentials).
    Open,
    /// Anyone, and not an operation of the Watcher API: the probes and the document itself.
    /// Not in the document, and not named in metrics or the audit trail.
    Plumbing,
}

/// How the router reaches an operation's handler.
#[derive(Clone, Copy)]
pub(crate) enum Serve {
    /// A route of its own: the operation's method filter gives its method router.
    Route(fn(MethodFilter) -> MethodRouter<ApiState>),
    /// Through the one `/streams/{*rest}` route, because stream names may contain `/`
    /// ([`split_stream_path`]): the sub-resource the path ends in, and the handler.
    Stream(StreamPath, streams::Handler),
}

/// One operation of the facade.
pub(crate) struct Operation {
    /// HTTP method, lower case (as the document spells it).
    pub(crate) method: &'static str,
    /// Path under [`BASE`].
    pub(crate) path: &'static str,
    /// operationId.
    pub(crate) id: &'static str,
    /// Summary.
    pub(crate) summary: &'static str,
    /// Query parameters (name, schema type).
    pub(crate) query: &'static [(&'static str, &'static str)],
    /// Request body.
    pub(crate) request: Shape,
    /// Success status.
    pub(crate) status: u16,
    /// Success body.
    pub(crate) response: Shape,
    /// Who may call it.
    pub(crate) access: Access,
    /// How it is served.
    pub(crate) serve: Serve,
}

impl Operation {
    /// Whether the OpenAPI document lists it.
    pub(crate) fn documented(&self) -> bool {
        self.access != Access::Plumbing
    }

    /// The method as the router filters it.
    pub(crate) fn filter(&self) -> MethodFilter {
        match self.method {
            "get" => MethodFilter::GET,
            "put" => MethodFilter::PUT,
            "post" => MethodFilter::POST,
            "delete" => MethodFilter::DELETE,
            other => unreachable!("no operation uses {other}"),
        }
    }

    fn is(&self, method: &Method) -> bool {
        method.as_str().eq_ignore_ascii_case(self.method)
    }
}

/// The operations the OpenAPI document lists, in the reference's order.
pub(crate) fn documented() -> impl Iterator<Item = &'static Operation> {
    OPERATIONS.iter().filter(|o| o.documented())
}

/// The operations served through `/streams/{*rest}` for a sub-resource, with their handlers.
pub(crate) fn on_stream(
    sub: StreamPath,
) -> impl Iterator<Item = (&'static Operation, streams::Handler)> {
    OPERATIONS.iter().filter_map(move |o| match o.serve {
        Serve::Stream(s, handler) if s == sub => Some((o, handler)),
        _ => None,
    })
}

/// The documented operation a request (`path` is the full path) is for: its name in the audit
/// trail and the request metrics, and the query parameters [`openapi::validate_query`] checks.
pub(crate) fn operation(method: &Method, path: &str) -> Option<&'static Operation> {
    let rest = path.strip_prefix(BASE)?;
    let segs: Vec<&str> = rest.trim_matches('/').split('/').collect();
    // Routes of their own first: the bulk edits' fixed paths under `/streams/` win for their
    // method, as the router has them.
    let routed = documented()
        .filter(|o| matches!(o.serve, Serve::Route(_)) && o.is(method))
        .find(|o| {
            let t: Vec<&str> = o.path.trim_matches('/').split('/').collect();
            t.len() == segs.len()
                && t.iter()
                    .zip(&segs)
                    .all(|(a, b)| a.starts_with('{') || a == b)
        });
    if routed.is_some() {
        return routed;
    }
    let (_, sub) = rest.strip_prefix("/streams/").and_then(split_stream_path)?;
    on_stream(sub).map(|(o, _)| o).find(|o| o.is(method))
}

/// The operationId of a request (`path` is the full path).
pub(crate) fn operation_id(method: &Method, path: &str) -> Option<&'static str> {
    operation(method, path).map(|o| o.id)
}

pub(crate) fn r<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    g.subschema_for::<T>().to_value()
}

const LIST_Q: &[(&str, &str)] = &[
    ("select", "string"),
    ("sort", "string"),
    ("limit", "integer"),
    ("cursor", "string"),
];

/// An admin operation with a route of its own.
macro_rules! route {
    ($h:expr) => {
        (Access::Admin, Serve::Route(|m| axum::routing::on(m, $h)))
    };
}

/// An operation a user may call on themself (and an admin on anyone).
macro_rules! own {
    ($h:expr) => {
        (Access::Own, Serve::Route(|m| axum::routing::on(m, $h)))
    };
}

/// An admin `POST` on a fixed path under `/streams/` (the bulk edits): other methods on the
/// path fall through to the stream operations, so a stream named `multiedit` or `zones` stays
/// reachable by get, save and delete.
macro_rules! on_streams {
    ($h:expr) => {
        (
            Access::Admin,
            Serve::Route(|m| axum::routing::on(m, $h).fallback(streams::dispatch)),
        )
    };
}

/// An operation anyone may call.
macro_rules! open {
    ($h:expr) => {
        (Access::Open, Serve::Route(|m| axum::routing::on(m, $h)))
    };
}

/// An admin operation on a stream path.
macro_rules! stream {
    ($sub:ident, $h:expr) => {
        (Access::Admin, Serve::Stream(StreamPath::$sub, $h))
    };
}

macro_rules! op {
    ($serve:expr, $m:literal, $p:literal, $id:literal, $s:literal, $q:expr, $req:expr, $st:literal, $resp:expr) => {
        Operation {
            method: $m,
            path: $p,
            id: $id,
            summary: $s,
            query: $q,
            request: $req,
            status: $st,
            response: $resp,
            access: $serve.0,
            serve: $serve.1,
        }
    };
}

/// A route of the server rather than of the Watcher API.
macro_rules! plumbing {
    ($m:literal, $p:literal, $id:literal, $h:expr) => {
        Operation {
            method: $m,
            path: $p,
            id: $id,
            summary: "",
            query: &[],
            request: Shape::None,
            status: 200,
            response: Shape::Any,
            access: Access::Plumbing,
            serve: Serve::Route(|m| axum::routing::on(m, $h)),
        }
    };
}

/// Every route: the Watcher operations in the reference's order, then the plumbing.
pub(crate) const OPERATIONS: &[Operation] = &[
    op!(
        route!(settings::domain_get),
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
        route!(settings::domain_save),
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
        route!(settings::system_get),
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
        route!(streamers::list),
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
        route!(streamers::get),
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
        route!(streamers::save),
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
        route!(streamers::delete),
        "delete",
        "/streamers/{hostname}",
        "streamer_delete",
        "Delete a streamer: drains it first (its streams move), 409 naming streams that cannot move",
        &[],
        Shape::None,
        204,
        Shape::None
    ),
    op!(
        route!(streamers::preview),
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
        route!(cluster::stats),
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
        open!(auth::login),
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
        route!(users::list),
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
        route!(users::create),
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
        route!(users::get),
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
        route!(users::save),
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
        route!(streams::list),
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
        stream!(Stream, streams::call::get),
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
        stream!(Stream, streams::call::save),
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
        stream!(Stream, streams::call::delete),
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
        stream!(Layouts, streams::call::layouts),
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
        stream!(Preview, streams::call::preview),
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
        stream!(CameraConfig, streams::call::camera_get),
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
        stream!(CameraConfig, streams::call::camera_save),
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
        stream!(Firmware, streams::call::firmware),
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
        route!(presets::list),
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
        route!(presets::create),
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
        route!(presets::get),
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
        route!(presets::save),
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
        route!(agents::list),
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
        route!(agents::get),
        "get",
        "/agents/{id}",
        "agent_get",
        "Get an agent (the item agents_list lists)",
        &[],
        Shape::None,
        200,
        Shape::Any
    ),
    op!(
        route!(events::list),
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
        route!(organizations::preset_save),
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
        route!(organizations::preset_delete),
        "delete",
        "/organizations/{organization_id}/presets/{preset_id}",
        "delete_organization_preset",
        "Detach a preset from an organization",
        &[],
        Shape::None,
        204,
        Shape::None
    ),
    op!(
        stream!(Reboot, streams::call::reboot),
        "post",
        "/streams/{name}/reboot",
        "camera_reboot",
        "Reboot the camera: 501, the nodes offer no camera reboot (camera_reboot_not_supported)",
        &[],
        Shape::None,
        501,
        Shape::None
    ),
    op!(
        route!(routes::tls),
        "get",
        "/tls/letsencrypt",
        "tls_certificate_get",
        "501: TLS belongs to the Ingress/Gateway and cert-manager (tls_managed_by_cluster)",
        &[],
        Shape::None,
        501,
        Shape::None
    ),
    op!(
        route!(routes::tls),
        "post",
        "/tls/letsencrypt",
        "letsencrypt_issue",
        "501: certificates are cert-manager's (tls_managed_by_cluster)",
        &[],
        Shape::Any,
        501,
        Shape::None
    ),
    op!(
        open!(routes::liveness),
        "get",
        "/monitoring/liveness",
        "liveness_probe",
        "Liveness probe (no credentials)",
        &[],
        Shape::None,
        200,
        Shape::Object(r::<ServerStatsWhoami>)
    ),
    op!(
        open!(routes::readiness),
        "get",
        "/monitoring/readiness",
        "readiness_probe",
        "Readiness probe (no credentials): 503 until the facade's stores have synced",
        &[],
        Shape::None,
        200,
        Shape::Object(r::<ServerStatsWhoami>)
    ),
    op!(
        route!(users::delete),
        "delete",
        "/users/{user_id}",
        "user_delete",
        "Delete a user (409 for yourself or the last enabled admin)",
        &[],
        Shape::None,
        204,
        Shape::None
    ),
    op!(
        route!(routes::peeklio),
        "post",
        "/peeklio/create_operator_id",
        "watcher_provision",
        "501: no Peeklio integration (peeklio_not_supported)",
        &[],
        Shape::Any,
        501,
        Shape::None
    ),
    op!(
        route!(routes::peeklio),
        "get",
        "/peeklio/check_watcher_status",
        "watcher_status_get",
        "501: no Peeklio integration (peeklio_not_supported)",
        &[],
        Shape::None,
        501,
        Shape::None
    ),
    op!(
        route!(zones::list),
        "get",
        "/zones",
        "zones_list",
        "List zones (stats computed from the cluster)",
        LIST_Q,
        Shape::None,
        200,
        Shape::List("zones", r::<zones::ZoneView>)
    ),
    op!(
        route!(zones::get),
        "get",
        "/zones/{name}",
        "zone_get",
        "Get a zone",
        &[],
        Shape::None,
        200,
        Shape::Object(r::<zones::ZoneView>)
    ),
    op!(
        route!(zones::save),
        "put",
        "/zones/{name}",
        "zone_save",
        "Create or update a zone (partial: is_dedicated)",
        &[],
        Shape::Any,
        200,
        Shape::Object(r::<zones::ZoneView>)
    ),
    op!(
        route!(zones::delete),
        "delete",
        "/zones/{name}",
        "zone_delete",
        "Delete a zone (409 naming the streams and presets whose layout_rules still name it)",
        &[],
        Shape::None,
        204,
        Shape::None
    ),
    op!(
        on_streams!(bulk::multiedit),
        "post",
        "/streams/multiedit",
        "streams_multiedit",
        "Bulk-edit streams (dvr, layout_rules, preset_id), all or nothing: every item is dry-run first; a failure midway reverts the items written",
        &[],
        Shape::Object(r::<bulk::BulkRequest<bulk::MultieditItem>>),
        204,
        Shape::None
    ),
    op!(
        stream!(Auth, streams::call::auth_get),
        "get",
        "/streams/{name}/auth",
        "camera_auth_get",
        "Read the camera credentials (login, port; the password is write-only)",
        &[],
        Shape::None,
        200,
        Shape::Object(r::<access::Auth>)
    ),
    op!(
        stream!(Auth, streams::call::auth_save),
        "put",
        "/streams/{name}/auth",
        "camera_auth_save",
        "Save the camera credentials (empty members keep the stored ones); 409 when a manifest's Secret holds them",
        &[],
        Shape::Object(r::<access::Auth>),
        200,
        Shape::Object(r::<access::Auth>)
    ),
    op!(
        route!(access::shares_list),
        "get",
        "/shares",
        "shared_tokens_list",
        "List shared (link) tokens, keys included",
        LIST_Q,
        Shape::None,
        200,
        Shape::List("shared_tokens", r::<access::SharedToken>)
    ),
    op!(
        route!(access::shares_create),
        "post",
        "/shares",
        "shared_token_create",
        "Create a shared token for one stream (`media`); an empty `key` is generated",
        &[],
        Shape::Object(r::<access::SharedToken>),
        200,
        Shape::Object(r::<access::SharedToken>)
    ),
    op!(
        route!(access::shares_delete),
        "delete",
        "/shares/{key}",
        "shared_token_delete",
        "Delete a shared token (nodes stop honouring it within 30 s)",
        &[],
        Shape::None,
        204,
        Shape::None
    ),
    op!(
        own!(access::apikey_get),
        "get",
        "/users/{user_id}/apikey",
        "users_apikey_get",
        "Read a user's API key, masked but for its last 4 characters (the user themself or an admin)",
        &[],
        Shape::None,
        200,
        Shape::Object(r::<access::Apikey>)
    ),
    op!(
        own!(access::apikey_create),
        "post",
        "/users/{user_id}/apikey",
        "users_apikey_create",
        "Create (rotate) a user's API key, returned in clear only here; usable as the password of POST /login (no body: the SDK sends null, like for POST /login)",
        &[],
        Shape::None,
        200,
        Shape::Object(r::<access::Apikey>)
    ),
    plumbing!("get", "/play_auth", "play_auth", access::play_auth),
    op!(
        on_streams!(bulk::zones),
        "post",
        "/streams/zones",
        "streams_zones_settings",
        "Bulk-set the zone rules of streams ({streams: [{name, layout_rules}]}), all or nothing like multiedit",
        &[],
        Shape::Object(r::<bulk::BulkRequest<bulk::ZonesItem>>),
        204,
        Shape::None
    ),
    plumbing!(
        "get",
        "/openapi.json",
        "openapi_document",
        openapi::document
    ),
    plumbing!("get", "/docs", "docs_page", openapi::docs_page),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

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
        assert_eq!(id(Method::GET, "/streams/layouts"), Some("stream_get"));
        assert_eq!(id(Method::POST, "/streams/a"), None);
        assert_eq!(
            id(Method::POST, "/streams/multiedit"),
            Some("streams_multiedit")
        );
        assert_eq!(id(Method::GET, "/streams/zones"), Some("stream_get"));
        assert_eq!(
            id(Method::POST, "/streams/zones/preview_layout_change"),
            Some("preview_layout_change_for_stream_config")
        );
        assert_eq!(id(Method::PUT, "/users/3"), Some("user_save"));
        assert_eq!(
            id(Method::DELETE, "/organizations/1/presets/2"),
            Some("delete_organization_preset")
        );
        assert_eq!(
            id(Method::GET, "/monitoring/liveness"),
            Some("liveness_probe")
        );
        assert_eq!(id(Method::GET, "/openapi.json"), None);
    }

    /// The router is built from this table and the document from the same table: walk both
    /// ways, so neither can list a route the other lacks.
    #[test]
    fn router_and_document_list_the_same_operations() {
        let doc = openapi::build();
        let in_doc: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| {
                let path = path.strip_prefix(BASE).unwrap().to_string();
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| (m.clone(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let served: BTreeSet<(String, String)> = documented()
            .map(|o| (o.method.to_string(), o.path.to_string()))
            .collect();
        assert_eq!(in_doc, served);
        assert_eq!(served.len(), 53);
        let unique: BTreeSet<(&str, &str)> =
            OPERATIONS.iter().map(|o| (o.method, o.path)).collect();
        assert_eq!(unique.len(), OPERATIONS.len(), "a route declared twice");
        let ids: BTreeSet<&str> = OPERATIONS.iter().map(|o| o.id).collect();
        assert_eq!(ids.len(), OPERATIONS.len(), "an operationId used twice");
    }

    /// Stream operations are reached through `/streams/{*rest}`: the sub-resource each names
    /// is the one its path ends in, and every other route stays out of that wildcard.
    #[test]
    fn stream_operations_match_their_paths() {
        for o in OPERATIONS {
            o.filter();
            match o.serve {
                Serve::Stream(sub, _) => {
                    let rest = o.path.strip_prefix("/streams/").expect(o.id);
                    let (_, got) = split_stream_path(rest).expect(o.id);
                    assert_eq!(got, sub, "{}", o.id);
                    assert_eq!(o.access, Access::Admin, "{}", o.id);
                    let full = format!("{BASE}/streams/a/b{}", &rest["{name}".len()..]);
                    let method: Method = o.method.to_uppercase().parse().unwrap();
                    assert_eq!(operation_id(&method, &full), Some(o.id));
                }
                // Only the bulk edits' fixed `POST` paths share the prefix (their other
                // methods fall through to the stream operations).
                Serve::Route(_) => assert!(
                    !o.path.starts_with("/streams/")
                        || (o.method == "post"
                            && !o.path["/streams/".len()..].contains(['/', '{'])),
                    "{}",
                    o.id
                ),
            }
        }
    }
}
