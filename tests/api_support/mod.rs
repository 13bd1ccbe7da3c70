//! A facade on the test control plane: stores scoped to the test namespace, an `ApiState`
//! with that namespace as both the facade and the system namespace, served on 127.0.0.1:0,
//! and an admin user whose password hash is written the way the User controller writes it.
#![allow(dead_code)] // each api test binary uses a different part of this module

pub mod conform;

use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use panoptes::api::{ApiConfig, ApiState, BASE};
use panoptes::resources::{Organization, Preset, Stream, Streamer, User};
use panoptes::state::{LiveStats, NodeClients};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::support::{TestNamespace, eventually};

pub const ADMIN_LOGIN: &str = "root";
pub const ADMIN_PASSWORD: &str = "s3cret-admin";
pub const WAIT: Duration = Duration::from_secs(20);

/// A running facade.
pub struct Facade {
    pub base: String,
    pub http: reqwest::Client,
    pub state: ApiState,
    pub live: LiveStats,
    pub nodes: NodeClients,
    pub token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _watches: JoinSet<()>,
}

impl Drop for Facade {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Creates User `object` with `login`, pinned id, and a hash Secret as the User controller
/// would write it (owned by the User, named in `status.passwordHashSecret`).
pub async fn make_user(
    ns: &TestNamespace,
    object: &str,
    login: &str,
    password: &str,
    admin: bool,
    id: i64,
) -> User {
    let users: Api<User> = ns.api();
    let user: User = serde_json::from_value(json!({
        "apiVersion": "panoptes.dev/v1alpha1", "kind": "User",
        "metadata": {"name": object},
        "spec": {"id": id, "name": login, "accessLevel": if admin { "admin" } else { "generic" }},
    }))
    .unwrap();
    let user = users.create(&PostParams::default(), &user).await.unwrap();
    give_password(ns, &user, password, id).await
}

/// Gives the existing User `user` (Watcher id `id`) the password `password` the way the User
/// controller would: a hash Secret owned by it, named in `status.passwordHashSecret`.
pub async fn give_password(ns: &TestNamespace, user: &User, password: &str, id: i64) -> User {
    let object = user.name_any();
    let hash_name = format!("{object}-hash");
    let phc = panoptes::domain::passwords::hash_password(password.as_bytes()).unwrap();
    let mut secret = Secret::default();
    secret.metadata.name = Some(hash_name.clone());
    secret.metadata.owner_references = Some(vec![user.controller_owner_ref(&()).unwrap()]);
    secret.data = Some(
        [(
            panoptes::domain::passwords::HASH_KEY.to_string(),
            ByteString(phc.into_bytes()),
        )]
        .into(),
    );
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    set_status::<User>(
        ns,
        &object,
        json!({"id": id, "passwordHashSecret": hash_name}),
    )
    .await
}

/// Writes `status` of a custom resource (what the controllers would write).
pub async fn set_status<K>(ns: &TestNamespace, name: &str, status: Value) -> K
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = ns.api();
    let body = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply("panoptes-tests").force(),
        &Patch::Apply(&body),
    )
    .await
    .unwrap_or_else(|e| panic!("status of {name}: {e}"))
}

/// Applies an object given as JSON (apiVersion/kind/metadata.name/spec).
pub async fn apply<K>(ns: &TestNamespace, obj: Value) -> K
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = ns.api();
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    api.patch(
        &name,
        &PatchParams::apply("panoptes-tests").force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {name}: {e}"))
}

pub fn stream_json(object: &str, spec: Value) -> Value {
    json!({"apiVersion": "panoptes.dev/v1alpha1", "kind": "Stream", "metadata": {"name": object}, "spec": spec})
}

pub fn streamer_json(object: &str, spec: Value) -> Value {
    json!({"apiVersion": "panoptes.dev/v1alpha1", "kind": "Streamer", "metadata": {"name": object}, "spec": spec})
}

pub async fn org(
    ns: &TestNamespace,
    object: &str,
    id: i64,
    title: &str,
    presets: &[&str],
) -> Organization {
    let o: Organization = apply(
        ns,
        json!({"apiVersion": "panoptes.dev/v1alpha1", "kind": "Organization",
        "metadata": {"name": object}, "spec": {"id": id, "title": title, "presetRefs": presets}}),
    )
    .await;
    set_status::<Organization>(ns, object, json!({"id": id})).await;
    o
}

pub async fn preset(
    ns: &TestNamespace,
    object: &str,
    id: i64,
    title: &str,
    redundancy: i64,
) -> Preset {
    let p: Preset = apply(ns, json!({"apiVersion": "panoptes.dev/v1alpha1", "kind": "Preset",
        "metadata": {"name": object}, "spec": {"id": id, "title": title, "dvr": {"redundancy_factor": redundancy}}})).await;
    set_status::<Preset>(ns, object, json!({"id": id})).await;
    p
}

pub async fn stream(ns: &TestNamespace, object: &str, spec: Value) -> Stream {
    apply(ns, stream_json(object, spec)).await
}

pub async fn streamer(ns: &TestNamespace, object: &str, spec: Value) -> Streamer {
    apply(ns, streamer_json(object, spec)).await
}

impl Facade {
    /// Starts a facade over `ns` with an admin user (`root`) logged in.
    pub async fn start(ns: &TestNamespace) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("PANOPTES_TEST_LOG")
                    .unwrap_or_else(|_| "off".into()),
            )
            .with_test_writer()
            .try_init();
        make_user(ns, "root", ADMIN_LOGIN, ADMIN_PASSWORD, true, 1).await;
        Self::start_without_admin(ns).await
    }

    /// Starts a facade over `ns` and logs in as `root` (which must exist).
    pub async fn start_without_admin(ns: &TestNamespace) -> Self {
        let mut watches = JoinSet::new();
        let shared = crate::support::shared(ns, &mut watches);
        shared.stores.wait_ready().await;
        let (live, nodes) = (shared.live.clone(), shared.nodes.clone());
        let state = ApiState::new(&shared, ApiConfig::new(&ns.name, &ns.name))
            .await
            .expect("facade state");
        state.settings.wait_ready().await;
        let (base, tx) = serve_facade(state.clone()).await;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let mut f = Self {
            base,
            http,
            state,
            live,
            nodes,
            token: String::new(),
            stop: Some(tx),
            _watches: watches,
        };
        f.token = eventually(WAIT, "admin login", || {
            let f = &f;
            async move { f.login(ADMIN_LOGIN, ADMIN_PASSWORD).await.ok() }
        })
        .await;
        f
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /login` with Basic credentials and a JSON `null` body, as the SDK sends it.
    pub async fn login(&self, login: &str, password: &str) -> Result<String, (StatusCode, Value)> {
        let resp = self
            .http
            .post(self.url("/login"))
            .basic_auth(login, Some(password))
            .header("content-type", "application/json")
            .body("null")
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status == StatusCode::OK {
            Ok(body["access_token"].as_str().unwrap().to_string())
        } else {
            Err((status, body))
        }
    }

    /// A request with the admin token; returns status and JSON body (Null when empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_as(&self.token, method, path, body).await
    }

    /// A request with access token `token`; as [`Facade::call`].
    pub async fn call_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method.clone(), self.url(path))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() && value.is_object() && !path.contains("select=") {
            let full = format!("{BASE}{}", path.split('?').next().unwrap_or(path));
            if let Some(id) = panoptes::api::openapi::operation_id(&method, &full) {
                let errs = conform::types_only(id, &value);
                assert!(
                    errs.is_empty(),
                    "{id}: {}\nbody: {value}",
                    errs.join("\n  ")
                );
            }
        }
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// Polls `GET path` until `check` accepts the body (the stores follow writes through
    /// watches, so a write is visible to reads a moment later).
    pub async fn get_until(&self, path: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        eventually(WAIT, what, || async {
            let (s, v) = self.get(path).await;
            (s == StatusCode::OK && check(&v)).then_some(v)
        })
        .await
    }
}

/// Asserts the Watcher error envelope with `status`.
pub fn assert_error(status: StatusCode, body: &Value, want: u16) {
    assert_eq!(status.as_u16(), want, "status; body {body}");
    let e = &body["errors"][0];
    assert_eq!(
        e["status"],
        json!(want.to_string()),
        "envelope status is a string: {body}"
    );
    assert!(
        e["code"].is_string() && e["title"].is_string(),
        "envelope: {body}"
    );
}

/// Example body from the reference (copied into the repo from
/// `shared/reference/watcher-admin-examples/`, so a clean clone has them).
pub fn example(name: &str) -> Value {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/watcher-admin-examples");
    let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Panoptes' own Secrets that have no owner by design.
const SINGLETONS: &[&str] = &["panoptes-settings", "panoptes-jwt"];

/// Asserts that every `app.kubernetes.io/managed-by: panoptes` Secret in `ns` has an owner that
/// exists (Panoptes' singletons aside): nothing a write, a failure or a deletion left behind.
pub async fn assert_no_unowned_credentials(ns: &TestNamespace) {
    let list = ns
        .api::<Secret>()
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=panoptes"))
        .await
        .unwrap();
    let mut unowned = Vec::new();
    for s in &list.items {
        let name = s.name_any();
        if SINGLETONS.contains(&name.as_str()) {
            continue;
        }
        let owner = s
            .owner_references()
            .iter()
            .find(|o| o.api_version.starts_with("panoptes.dev/"));
        let alive = match owner {
            None => false,
            Some(o) => {
                let uid = match o.kind.as_str() {
                    "User" => ns
                        .api::<User>()
                        .get_opt(&o.name)
                        .await
                        .unwrap()
                        .and_then(|x| x.uid()),
                    "Streamer" => ns
                        .api::<Streamer>()
                        .get_opt(&o.name)
                        .await
                        .unwrap()
                        .and_then(|x| x.uid()),
                    "Stream" => ns
                        .api::<Stream>()
                        .get_opt(&o.name)
                        .await
                        .unwrap()
                        .and_then(|x| x.uid()),
                    _ => None,
                };
                uid.as_deref() == Some(o.uid.as_str())
            }
        };
        if !alive {
            unowned.push(name);
        }
    }
    assert!(
        unowned.is_empty(),
        "unowned managed-by=panoptes Secrets left in {}: {unowned:?}",
        ns.name
    );
}

/// Serves `state` on a free loopback port until the returned sender fires (or is dropped);
/// returns the facade's base URL.
pub async fn serve_facade(state: ApiState) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(panoptes::api::serve(state, listener, async {
        let _ = rx.await;
    }));
    (format!("http://{addr}{BASE}"), tx)
}
