//! The Watcher admin API facade (`/watcher/admin-api/v3/...`) over the cluster state.
//!
//! Reads come from the reflector stores ([`Stores`]) and the live stats cache ([`LiveStats`]),
//! rendered once per object version ([`cache`]) and run through the shared [`query`] engine.
//! Writes are server-side applies of the custom resources with field manager `panoptes-api`;
//! secrets that arrive through the API land in Kubernetes Secrets and are never returned.
//! Every route but the probes, `/login` and the OpenAPI document needs a Bearer JWT of a
//! User with `accessLevel: admin` ([`auth`]). Every failure is the Watcher error envelope
//! ([`error`]).

pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod body;
pub(crate) mod cache;
pub(crate) mod conn;
pub(crate) mod deleted;
pub(crate) mod error;
pub(crate) mod members;
pub(crate) mod metrics;
pub(crate) mod names;
pub mod openapi;
pub(crate) mod operations;
pub mod query;
pub(crate) mod rendered_streams;
pub(crate) mod routes;
pub(crate) mod settings;
pub(crate) mod views;
pub(crate) mod write;

/// The member specs of the lists, for the conformance tests outside the crate (they check
/// that `select`, `sort` and save bodies accept exactly ours plus the reference's members).
pub mod collections {
    pub use super::routes::access::SHARES;
    pub use super::routes::presets::PRESETS;
    pub use super::routes::streamers::STREAMERS;
    pub use super::routes::streams::{LAYOUTS, STREAMS};
    pub use super::routes::users::USERS;
    pub use super::routes::zones::ZONES;
}

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::any;
use kube::Client;
use tokio::task::JoinSet;

use crate::state::{LiveStats, NodeClients, Stores};
use error::ApiError;
use operations::{Access, OPERATIONS, Serve};

/// Base path of every facade route.
pub const BASE: &str = "/watcher/admin-api/v3";

/// Settings of the facade.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Namespace where resources created through the facade go.
    pub namespace: String,
    /// Namespace of the JWT key Secret and the settings ConfigMap/Secret.
    pub system_namespace: String,
    /// The installation their names (and the id claims') derive from.
    pub instance: crate::domain::instance::Instance,
    /// Lifetime of access tokens.
    pub(crate) access_ttl: std::time::Duration,
    /// Lifetime of refresh tokens.
    pub(crate) refresh_ttl: std::time::Duration,
    /// Failed logins of one login from one client address before that pair is throttled.
    pub(crate) max_failed_logins: u32,
    /// Namespaces besides `namespace` whose Users are identities (`--identity-namespaces`);
    /// Users anywhere else cannot log in or show in `GET /users`.
    pub identity_namespaces: Vec<String>,
    /// Peers whose `X-Forwarded-For` names the client (ingress, load balancers); the client
    /// address of anyone else is the peer address.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Caps of the stores unauthenticated requests reach, and of request headers.
    pub limits: Limits,
    /// Where `/events` reads Panoptes' Events (the operator's scope; `None`: `namespace`).
    pub events_scope: Option<crate::state::Scope>,
    /// This replica's name in events (`POD_NAME`, read once by `panoptes run`'s flags; None:
    /// `HOSTNAME`, else `panoptes`).
    pub pod_name: Option<String>,
}

/// Caps of everything a request can make the facade keep or buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Events `/events` keeps in memory (the newest).
    pub audit_max_entries: usize,
    /// Bytes of the events `/events` keeps in memory.
    pub audit_max_bytes: usize,
    /// Entries of the failed-login table.
    pub login_failures_max_entries: usize,
    /// Bytes of the failed-login table.
    pub login_failures_max_bytes: usize,
    /// Bytes of a request's headers (names, values and the request target); larger requests
    /// get 431 in the error envelope. Keep it below hyper's own ~400 KB buffer, beyond which
    /// hyper refuses the request itself ([`conn`] puts that answer in the envelope too).
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            audit_max_entries: audit::CAPACITY,
            audit_max_bytes: audit::MAX_BYTES,
            login_failures_max_entries: auth::FAILURES_MAX_ENTRIES,
            login_failures_max_bytes: auth::FAILURES_MAX_BYTES,
            max_header_bytes: MAX_HEADER_BYTES,
        }
    }
}

/// Default cap on the bytes of a request's headers.
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;

impl ApiConfig {
    /// Defaults: 15 min access tokens, 24 h refresh tokens, 5 failures before throttling, no
    /// trusted proxies, the default [`Limits`].
    pub fn new(namespace: impl Into<String>, system_namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            system_namespace: system_namespace.into(),
            instance: Default::default(),
            access_ttl: std::time::Duration::from_secs(15 * 60),
            refresh_ttl: std::time::Duration::from_secs(24 * 3600),
            max_failed_logins: 5,
            identity_namespaces: Vec::new(),
            trusted_proxies: Vec::new(),
            limits: Limits::default(),
            events_scope: None,
            pod_name: None,
        }
    }

    /// The namespaces whose Users are logins.
    pub fn identities(&self) -> crate::domain::tenancy::Identities {
        crate::domain::tenancy::Identities::new(&self.namespace, &self.identity_namespaces)
    }
}

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ApiState(Arc<Inner>);

/// Shared facade state (behind [`ApiState`]).
pub struct Inner {
    /// Kube client for writes (and Secret reads at login).
    pub client: Client,
    /// The reflector stores.
    pub stores: Stores,
    /// Live stats of nodes and streams.
    pub live: LiveStats,
    /// Node clients (firmware upload).
    pub nodes: NodeClients,
    /// Settings.
    pub config: ApiConfig,
    /// Token keys and login throttling.
    pub auth: auth::Auth,
    /// Domain and system settings.
    pub settings: settings::Settings,
    /// The event log (`GET /events`): Panoptes' Kubernetes Events, watched.
    pub(crate) events: Arc<crate::events::log::EventLog>,
    /// This replica's name in events (`ApiConfig::pod_name`).
    pub(crate) replica: String,
    /// Rendered objects by version.
    pub(crate) cache: cache::Caches,
    /// Request metrics; register them with `state.metrics.register(registry)`.
    pub metrics: metrics::ApiMetrics,
    /// When this facade started (UTC seconds), for the probes' `started_at`.
    pub(crate) started_at: i64,
    /// Background tasks (settings watch, key refresh); aborted when the state is dropped.
    _tasks: std::sync::Mutex<JoinSet<()>>,
}

impl std::ops::Deref for ApiState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl ApiState {
    /// Builds the state: loads (or creates) the JWT signing key Secret and starts the
    /// settings watch and the key refresher.
    pub async fn new(
        shared: &crate::state::Shared,
        config: ApiConfig,
    ) -> Result<Self, kube::Error> {
        let crate::state::Shared {
            client,
            stores,
            live,
            nodes,
            ..
        } = shared.clone();
        let mut tasks = JoinSet::new();
        let metrics = metrics::ApiMetrics::default();
        let auth = auth::Auth::load(&client, &config, &metrics, &mut tasks).await?;
        let events = Arc::new(crate::events::log::EventLog::new(
            config.limits.audit_max_entries,
            config.limits.audit_max_bytes,
            metrics.audit_entries.clone(),
            metrics.audit_bytes.clone(),
        ));
        let scope = config
            .events_scope
            .clone()
            .unwrap_or_else(|| crate::state::Scope::Namespace(config.namespace.clone()));
        tasks.spawn(events.clone().follow(scope.api(client.clone())));
        let replica = config
            .pod_name
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "panoptes".into());
        let settings = settings::Settings::start(
            &client,
            &config.system_namespace,
            &config.instance.settings(),
            &mut tasks,
        );
        Ok(Self(Arc::new(Inner {
            client,
            stores,
            live,
            nodes,
            config,
            auth,
            settings,
            events,
            replica,
            cache: cache::Caches::default(),
            metrics,
            started_at: chrono::Utc::now().timestamp(),
            _tasks: std::sync::Mutex::new(tasks),
        })))
    }
}

/// The facade's routes, all under [`BASE`]: every operation of the route table
/// ([`operations::OPERATIONS`]) on its path, the stream operations behind one
/// `/streams/{*rest}` route (stream names may contain `/`).
pub fn router(state: ApiState) -> Router {
    let (mut open, mut protected, mut own) = (Router::new(), Router::new(), Router::new());
    for op in OPERATIONS {
        let Serve::Route(handler) = op.serve else {
            continue;
        };
        let route = handler(op.filter());
        match op.access {
            Access::Admin => protected = protected.route(op.path, route),
            Access::Own => own = own.route(op.path, route),
            Access::Open | Access::Plumbing => open = open.route(op.path, route),
        }
    }
    // Every stream operation is an admin's (a test of the table holds it to that).
    if OPERATIONS
        .iter()
        .any(|o| matches!(o.serve, Serve::Stream(..)))
    {
        protected = protected.route("/streams/{*rest}", any(routes::streams::dispatch));
    }
    let protected = protected
        // Outermost last: credentials are checked before the query.
        .route_layer(axum::middleware::from_fn(openapi::validate_query))
        .route_layer(from_fn_with_state(state.clone(), auth::require_admin));
    let own = own
        .route_layer(axum::middleware::from_fn(openapi::validate_query))
        .route_layer(from_fn_with_state(state.clone(), auth::require_user));
    let api = open
        .merge(protected)
        .merge(own)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    Router::new()
        .nest(BASE, api)
        .fallback(not_found)
        .layer(from_fn_with_state(state.clone(), audit::record))
        .layer(DefaultBodyLimit::max(body::MAX_BODY_BYTES))
        .layer(from_fn_with_state(state.clone(), limit_headers))
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            live_freshness,
        ))
        .with_state(state)
}

/// On a standby whose copy of the leader's live view is stale (the leader cannot be
/// reached), every response says so with `Warning: 110` ("response is stale", RFC 7234):
/// its live fields are the last copy, never silently emptied.
async fn live_freshness(
    axum::extract::State(state): axum::extract::State<ApiState>,
    mut resp: axum::response::Response,
) -> axum::response::Response {
    if let Some(age) = state.live.stale_for() {
        let text = format!(
            "110 panoptes \"live stats are stale: no copy from the leader for {} s\"",
            age.as_secs()
        );
        if let Ok(v) = axum::http::HeaderValue::from_str(&text) {
            resp.headers_mut().insert(axum::http::header::WARNING, v);
        }
    }
    resp
}

/// Headers set on every response, deliberately. No CORS headers: the admin API is for
/// servers, scripts and same-origin UIs; a browser on another origin is refused by the
/// browser. Responses carry tokens and configuration, so nothing is cached, sniffed or framed.
async fn security_headers(mut resp: axum::response::Response) -> axum::response::Response {
    use axum::http::HeaderValue;
    use axum::http::header;
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let is_html = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if !is_html {
        // JSON and text never run code; the docs page is the only HTML and keeps its own.
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    resp
}

/// Refuses requests whose headers exceed `max_header_bytes`, before anything reads them, in
/// the error envelope (hyper's own limit, higher, is put in the envelope by [`conn`]).
async fn limit_headers(
    axum::extract::State(state): axum::extract::State<ApiState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let size = req.uri().to_string().len()
        + req
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    if size > state.config.limits.max_header_bytes {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "request headers of {size} bytes exceed the limit of {} bytes",
                state.config.limits.max_header_bytes
            ),
        )
        .into_response();
    }
    next.run(req).await
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// Serves the facade on `listener` until `shutdown` resolves.
pub async fn serve(
    state: ApiState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<conn::Peer>();
    axum::serve(conn::FacadeListener(listener), app)
        .with_graceful_shutdown(shutdown)
        .await
}
