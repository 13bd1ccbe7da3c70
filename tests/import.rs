//! `panoptes import` (issue 20): a Panoptes facade (or a vendor-shaped fixture server) as the
//! source, a kustomize tree and a second namespace as the target.
//!
//! - round trip: source facade → `--out` twice (byte-identical) → `--apply` into another
//!   namespace → that namespace's facade lists the same streams, presets, users and streamers
//!   (same Watcher names and ids); a target holding the first admin's id and login is refused
//!   with nothing applied; imported users cannot log in until a password is set;
//! - a vendor-shaped source (the reference's list examples with passwords where a Watcher
//!   returns them, paged): no credential in the main files, each in `secrets/`, unknown
//!   members reported with their path, an unreachable page fails the import with nothing
//!   written.

mod api_support;
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use api_support::{
    ADMIN_LOGIN, ADMIN_PASSWORD, Facade, example, give_password, make_user, org, preset,
};
use axum::extract::{Query, State};
use axum::routing::{get, post};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::ListParams;
use panoptes::controllers::{Context, Tunables, user};
use panoptes::import::apply::Refused;
use panoptes::import::export::{self, ExportArgs};
use panoptes::import::plan::{Kind, Object, Plan, Severity};
use panoptes::import::{ImportArgs, execute};
use panoptes::resources::{Preset, Stream, User};
use panoptes::run::Shutdown;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{TestNamespace, eventually};
use tokio::task::JoinSet;

/// Every file under `dir` (relative path → text).
fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "panoptes-import-{name}-{:08x}",
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn args(from: &str) -> ImportArgs {
    ImportArgs {
        from: from.to_string(),
        login: ADMIN_LOGIN.to_string(),
        ..Default::default()
    }
}

/// A list as a comparable value: every page, runtime members dropped.
async fn listed(f: &Facade, path: &str, key: &str) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let (s, body) = f.get(&format!("{path}{sep}limit=1000")).await;
    assert_eq!(s, StatusCode::OK, "{path}: {body}");
    assert!(body.get("next").is_none(), "{path}: one page expected");
    let mut items: Vec<Value> = body[key].as_array().unwrap().clone();
    for i in &mut items {
        for runtime in ["created_at", "stats", "layout"] {
            i.as_object_mut().unwrap().remove(runtime);
        }
    }
    items
}

const STREAMS: usize = 60;

/// Waits until the source facade's stores hold everything the test created (each kind is
/// watched on its own, so one store may lag behind another).
async fn settled(source: &Facade) {
    source
        .get_until("/presets?limit=1000", "every preset listed", |v| {
            v["presets"].as_array().is_some_and(|p| p.len() == 3)
        })
        .await;
    source
        .get_until(
            "/users?limit=1000",
            "every user listed with its organization",
            |v| {
                v["users_list"].as_array().is_some_and(|u| {
                    u.len() == 3
                        && u.iter()
                            .filter(|u| u["name"] != ADMIN_LOGIN)
                            .all(|u| u["organizations"][0]["id"].is_i64())
                })
            },
        )
        .await;
    source
        .get_until(
            "/streams?limit=1000",
            "every stream listed with its references",
            |v| {
                v["estimated_count"] == json!(STREAMS)
                    && v["streams"].as_array().is_some_and(|s| {
                        s.iter()
                            .all(|s| s["organization"]["id"].is_i64() && s["preset"]["id"].is_i64())
                    })
            },
        )
        .await;
    source
        .get_until("/streamers", "the streamer listed", |v| {
            v["streamers"].as_array().is_some_and(|s| s.len() == 1)
        })
        .await;
}

/// The source installation of the round trips: three presets, two organizations, two users
/// besides the admin, a streamer, and [`STREAMS`] streams (a third with Watcher names Kubernetes
/// does not accept).
async fn populate(src: &TestNamespace) {
    preset(src, "gold", 11, "Gold", 2).await;
    preset(src, "silver", 12, "Silver", 1).await;
    api_support::apply::<Preset>(
        src,
        json!({"apiVersion": "panoptes.dev/v1alpha1", "kind": "Preset", "metadata": {"name": "everyone"},
               "spec": {"id": 13, "title": "Everyone", "isDefault": true}}),
    )
    .await;
    org(src, "acme", 21, "Acme", &["gold"]).await;
    org(src, "globex", 22, "Globex", &["gold", "silver"]).await;
    for (object, login, id, org_ref) in [
        ("ops", "Ops_Lead", 31, "acme"),
        ("viewer", "viewer", 32, "globex"),
    ] {
        api_support::apply::<User>(
            src,
            json!({"apiVersion": "panoptes.dev/v1alpha1", "kind": "User", "metadata": {"name": object},
                   "spec": {"id": id, "name": login, "email": format!("{object}@example.com"),
                            "organizations": [{"organizationRef": org_ref, "permissions": {"can_view_streams": true}}]}}),
        )
        .await;
    }
    api_support::streamer(
        src,
        "node-a",
        json!({"hostname": "node-a.example", "apiUrl": "http://node-a:8080", "labels": {"zone": "east"}, "channelLimit": 50}),
    )
    .await;
    for i in 0..STREAMS {
        // Watcher names Kubernetes does not accept (uppercase, `_`, `/`) among plain ones.
        let name = match i % 3 {
            0 => format!("cam-{i:03}"),
            1 => format!("Lobby_Cam/{i:03}"),
            _ => format!("east/CAM{i:03}"),
        };
        let (org_ref, preset_ref) = if i % 2 == 0 {
            ("acme", "gold")
        } else {
            ("globex", "silver")
        };
        api_support::stream(
            src,
            &format!("s{i}"),
            json!({"name": name, "organizationRef": org_ref, "presetRef": preset_ref,
                   "title": format!("Camera {i}"), "inputs": [{"url": format!("rtsp://cam{i}.lan/main")}],
                   "labels": {"floor": (i % 4).to_string()}}),
        )
        .await;
    }
}

/// Waits until `target` lists what `source` lists: streams, presets (also per organization),
/// users and streamers, runtime members aside.
async fn assert_same_lists(source: &Facade, target: &Facade) {
    // The target's stores fill kind by kind: compare once each has caught up.
    let mut lists: Vec<(String, &str)> = vec![
        ("/streams".into(), "streams"),
        ("/presets".into(), "presets"),
        ("/users".into(), "users_list"),
        ("/streamers".into(), "streamers"),
    ];
    for id in [21, 22] {
        lists.push((format!("/presets?organization_id={id}"), "presets"));
    }
    for (path, key) in &lists {
        let want = listed(source, path, key).await;
        assert!(!want.is_empty(), "{path}");
        let mut last = Vec::new();
        let same = tokio::time::timeout(api_support::WAIT, async {
            loop {
                last = listed(target, path, key).await;
                if last == want {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(
            same.is_ok(),
            "{path} differs:\n{last:#?}\nvs the source's\n{want:#?}"
        );
    }
}

#[tokio::test]
async fn a_facade_round_trips_through_import_and_apply() {
    let src = TestNamespace::new("import-src").await;
    let source = Facade::start(&src).await;
    populate(&src).await;
    source
        .get_until(
            "/streams?limit=1000",
            "every stream listed with its organization",
            |v| {
                v["estimated_count"] == json!(STREAMS)
                    && v["streams"]
                        .as_array()
                        .is_some_and(|s| s.iter().all(|s| s["organization"]["id"].is_i64()))
            },
        )
        .await;

    // Two imports of the unchanged source write the same bytes.
    let dst = TestNamespace::new("import-dst").await;
    let (one, two) = (tempdir("one"), tempdir("two"));
    let mut a = args(&source.base);
    a.namespace = Some(dst.name.clone());
    for dir in [&one, &two] {
        settled(&source).await;
        a.out = Some(dir.clone());
        let outcome = execute(&a, ADMIN_PASSWORD, None).await.unwrap();
        assert!(!outcome.failed(), "{:#?}", outcome.plan.findings);
    }
    let (t1, t2) = (tree(&one), tree(&two));
    let differing: Vec<_> = t1
        .keys()
        .chain(t2.keys())
        .filter(|k| t1.get(*k) != t2.get(*k))
        .collect();
    assert!(
        differing.is_empty(),
        "a re-import of an unchanged source differs: {differing:?}"
    );
    // And into the same directory: nothing changes.
    a.out = Some(one.clone());
    execute(&a, ADMIN_PASSWORD, None).await.unwrap();
    assert_eq!(tree(&one), t1);
    assert!(t1.contains_key("kustomization.yaml") && t1.contains_key(".gitignore"));
    assert!(t1.contains_key("presets/preset-11.yaml"), "{:?}", t1.keys());
    assert!(t1.contains_key("organizations/org-21.yaml"));
    assert!(t1.contains_key("streams/org-21/cam-000.yaml"));
    assert!(
        t1.keys()
            .any(|k| k.starts_with("streams/org-22/lobby-cam-001--"))
    );
    assert!(t1["users/user-viewer.yaml"].contains("panoptes.dev/password-reset-required"));

    // A target whose first admin holds id 1 and login `root` is refused, nothing applied.
    let taken = TestNamespace::new("import-taken").await;
    make_user(
        &taken,
        "first-admin",
        ADMIN_LOGIN,
        "chart-admin-pw",
        true,
        1,
    )
    .await;
    let mut apply = args(&source.base);
    apply.apply = true;
    apply.namespace = Some(taken.name.clone());
    let refused = execute(&apply, ADMIN_PASSWORD, Some(taken.client.clone()))
        .await
        .unwrap();
    match &refused.refused {
        Some(Refused::Collisions(c)) => {
            let text = c.join("\n");
            assert!(text.contains("login \"root\""), "{text}");
            assert!(text.contains("user id 1"), "{text}");
        }
        other => panic!("expected collisions, got {other:?}"),
    }
    assert!(refused.failed());
    assert!(
        taken
            .api::<Stream>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        taken
            .api::<Preset>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        taken
            .api::<User>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    // Apply into an empty namespace; its facade answers the same lists.
    apply.namespace = Some(dst.name.clone());
    let applied = execute(&apply, ADMIN_PASSWORD, Some(dst.client.clone()))
        .await
        .unwrap();
    assert!(
        applied.applied && !applied.failed(),
        "{:?}",
        applied.refused
    );
    // Applying again is a no-op (same objects, same manager).
    let again = execute(&apply, ADMIN_PASSWORD, Some(dst.client.clone()))
        .await
        .unwrap();
    assert!(again.refused.is_none(), "{:?}", again.refused);
    // The imported root has no password; give it one the way the User controller would, so
    // the target's facade can be read (the reset rule itself is checked below).
    let root: User = dst.api().get("user-root").await.unwrap();
    give_password(&dst, &root, ADMIN_PASSWORD, 1).await;
    let target = Facade::start_without_admin(&dst).await;
    target
        .get_until("/streams?limit=1", "every stream imported", |v| {
            v["estimated_count"] == json!(STREAMS)
        })
        .await;
    assert_same_lists(&source, &target).await;

    // Imported users cannot log in until a password is set.
    let mut watches = JoinSet::new();
    let ctx = Arc::new(Context::new(
        &support::shared(&dst, &mut watches),
        Tunables {
            system_namespace: dst.name.clone(),
            ..Default::default()
        },
    ));
    let (_stop, shutdown) = Shutdown::new();
    let controller = tokio::spawn(user::run(ctx, shutdown.wait()));
    let users = dst.api::<User>();
    let reset = |u: &User, want: &str| {
        u.status.as_ref().is_some_and(|s| {
            s.common
                .conditions
                .iter()
                .any(|c| c.type_ == "PasswordResetRequired" && c.status == want)
        })
    };
    let viewer: User = eventually(api_support::WAIT, "viewer must reset its password", || {
        let users = users.clone();
        async move {
            users
                .get("user-viewer")
                .await
                .ok()
                .filter(|u| reset(u, "True"))
        }
    })
    .await;
    assert!(target.login("viewer", "anything").await.is_err());
    let (s, v) = target
        .put(
            &format!("/users/{}", viewer.spec.id.unwrap()),
            json!({"password": "fresh-pass-1"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    eventually(api_support::WAIT, "viewer's reset is done", || {
        let users = users.clone();
        async move {
            users
                .get("user-viewer")
                .await
                .ok()
                .filter(|u| reset(u, "False"))
        }
    })
    .await;
    eventually(
        api_support::WAIT,
        "viewer logs in with its new password",
        || async { target.login("viewer", "fresh-pass-1").await.ok() },
    )
    .await;
    controller.abort();
    for d in [one, two] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A Watcher as the reference shows it, with passwords where a real one returns them, the
/// streams served two to a page; `broken` makes the second page of streams fail.
#[derive(Clone)]
struct Vendor {
    streams: Vec<Value>,
    streamers: Vec<Value>,
    presets: Vec<Value>,
    users: Vec<Value>,
    broken: Arc<AtomicBool>,
    per_page: usize,
    /// `GET /domain_config`.
    domain: Value,
}

/// What must never leave `secrets/`: the values put in, and the reference example's own
/// (a peer's cluster key, an input's Basic `Authorization` header).
const PASSWORDS: [&str; 8] = [
    "smtp-pass-6",
    "cam-pass-1",
    "push-pass-2",
    "cluster-key-3",
    "node-pass-4",
    "onvif-pass-5",
    "xS6i6Q3DCc5nEvnu",
    "dXNlcjpwYXNzd29yZA==",
];

fn vendor() -> Vendor {
    let mut stream = example("14_streams_list_response.json")["streams"][0].clone();
    stream["name"] = json!("Front_Door");
    stream["inputs"][0]["url"] = json!("rtsp://admin:cam-pass-1@10.0.0.5/ch1");
    stream["pushes"] = json!([{"url": "rtmp://pub:push-pass-2@cdn.example/live/front"}]);
    stream["onvif"] = json!({"url": "http://admin:onvif-pass-5@10.0.0.5/onvif/device_service"});
    stream["x_vendor_feature"] = json!({"mode": "fast"});
    stream["preset_id"] = json!(7);
    let mut streams = vec![stream];
    for i in 0..3 {
        streams.push(
            json!({"name": format!("plain-{i}"), "inputs": [{"url": format!("fake://{i}")}]}),
        );
    }
    let mut streamer = example("04_streamers_list_response.json")["streamers"][0].clone();
    streamer["api_url"] = json!("https://peer.example.com");
    streamer["cluster_key"] = json!("cluster-key-3");
    streamer["config"]["cluster_key"] = json!("cluster-key-3");
    streamer["config"]["edit_auth"] = json!({"login": "flussonic", "password": "node-pass-4"});
    streamer["config"]["view_auth"] = json!({"login": "viewer", "password": "node-pass-4"});
    Vendor {
        streams,
        streamers: vec![streamer],
        presets: example("23_presets_list_response.json")["presets"]
            .as_array()
            .unwrap()
            .clone(),
        users: example("10_users_list_response.json")["users_list"]
            .as_array()
            .unwrap()
            .clone(),
        broken: Arc::new(AtomicBool::new(false)),
        per_page: 2,
        domain: {
            let mut d = example("01_domain_config_get_response.json");
            d["mail"]["password"] = json!("smtp-pass-6");
            d["mail"]["host"] = json!("smtp.example.com");
            d
        },
    }
}

fn page(
    items: &[Value],
    key: &str,
    q: &BTreeMap<String, String>,
    per_page: usize,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let start: usize = q.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let end = (start + per_page).min(items.len());
    let mut body = json!({"estimated_count": items.len(), "timing": {}, key: items[start..end]});
    if end < items.len() {
        body["next"] = json!(end.to_string());
    }
    axum::Json(body).into_response()
}

async fn serve_vendor(v: Vendor) -> String {
    use axum::response::IntoResponse;
    type Q = Query<BTreeMap<String, String>>;
    let app = axum::Router::new()
        .route(
            "/watcher/admin-api/v3/login",
            post(|| async { axum::Json(json!({"access_token": "t", "refresh_token": "r"})) }),
        )
        .route(
            "/watcher/admin-api/v3/streams",
            get(|State(v): State<Vendor>, Query(q): Q| async move {
                if v.broken.load(Ordering::SeqCst) && q.contains_key("cursor") {
                    return StatusCode::BAD_GATEWAY.into_response();
                }
                page(&v.streams, "streams", &q, v.per_page)
            }),
        )
        .route(
            "/watcher/admin-api/v3/domain_config",
            get(|State(v): State<Vendor>| async move { axum::Json(v.domain) }),
        )
        .route(
            "/watcher/admin-api/v3/streamers",
            get(|State(v): State<Vendor>, Query(q): Q| async move {
                page(&v.streamers, "streamers", &q, v.per_page)
            }),
        )
        .route(
            "/watcher/admin-api/v3/presets",
            get(|State(v): State<Vendor>, Query(q): Q| async move {
                page(&v.presets, "presets", &q, v.per_page)
            }),
        )
        .route(
            "/watcher/admin-api/v3/users",
            get(|State(v): State<Vendor>, Query(q): Q| async move {
                page(&v.users, "users_list", &q, v.per_page)
            }),
        )
        .with_state(v);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_vendor_source_keeps_credentials_in_secrets_and_reports_what_does_not_map() {
    let v = vendor();
    let broken = v.broken.clone();
    let from = serve_vendor(v).await;
    let out = tempdir("vendor");
    let mut a = args(&from);
    a.out = Some(out.clone());
    let outcome = execute(&a, "whatever", None).await.unwrap();
    let files = tree(&out);
    if std::env::var("IMPORT_DEBUG").is_ok() {
        eprintln!("{}", panoptes::import::summary(&a, &outcome));
        for (k, v) in &files {
            eprintln!("==> {k}\n{v}");
        }
    }
    let (secrets, main): (Vec<_>, Vec<_>) =
        files.iter().partition(|(k, _)| k.starts_with("secrets/"));
    let main_text: String = main.iter().map(|(_, t)| t.as_str()).collect();
    let secret_text: String = secrets.iter().map(|(_, t)| t.as_str()).collect();
    for pw in PASSWORDS {
        assert!(!main_text.contains(pw), "{pw} outside secrets/");
    }
    for pw in [
        "cam-pass-1",
        "push-pass-2",
        "cluster-key-3",
        "node-pass-4",
        "smtp-pass-6",
    ] {
        assert!(
            secret_text.contains(pw),
            "{pw} missing from secrets/: {secret_text}"
        );
    }
    assert_eq!(files[".gitignore"].lines().last(), Some("secrets/"));
    // The domain settings: the document for the system namespace, its SMTP password apart.
    assert!(files["settings/panoptes-settings.yaml"].contains("smtp.example.com"));
    assert!(files["secrets/settings/panoptes-settings.yaml"].contains("smtp-pass-6"));
    assert!(files.contains_key("settings/kustomization.yaml"));
    // Every stream of both pages is there, under a valid object name.
    assert_eq!(
        files.keys().filter(|k| k.starts_with("streams/")).count(),
        4,
        "{:?}",
        files.keys()
    );
    let findings = &outcome.plan.findings;
    let at = |object: &str, path: &str| {
        findings
            .iter()
            .any(|f| f.object == object && f.path.as_deref() == Some(path))
    };
    assert!(
        at("stream Front_Door", "/x_vendor_feature"),
        "{findings:#?}"
    );
    assert!(
        at("streamer peer.example.com", "/config/view_auth"),
        "{findings:#?}"
    );
    assert!(
        findings
            .iter()
            .filter(|f| f.path.as_deref() == Some("/x_vendor_feature"))
            .all(|f| f.severity == Severity::Warning)
    );
    assert_eq!(outcome.plan.reset_users, vec!["string".to_string()]);

    // --no-secrets: templates only.
    let tpl = tempdir("vendor-tpl");
    a.out = Some(tpl.clone());
    a.no_secrets = true;
    execute(&a, "whatever", None).await.unwrap();
    let all: String = tree(&tpl).values().map(String::as_str).collect();
    for pw in PASSWORDS {
        assert!(!all.contains(pw), "{pw} written with --no-secrets");
    }

    // A page that stays unreachable fails the import; nothing is written.
    broken.store(true, Ordering::SeqCst);
    let empty = std::env::temp_dir().join(format!(
        "panoptes-import-none-{:08x}",
        rand::random::<u32>()
    ));
    a.out = Some(empty.clone());
    let err = execute(&a, "whatever", None).await.unwrap_err();
    assert!(err.contains("/streams page 2 unreachable"), "{err}");
    assert!(!empty.exists());
    for d in [out, tpl] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// The measurement behind BENCHMARKS.md ("Import"): 10,000 streams (a fifth with camera
/// credentials) from a vendor-shaped source, written to a tree. `cargo test --release --test
/// import -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn import_10000_streams() {
    let mut v = vendor();
    v.per_page = 1000;
    v.streams = (0..10_000)
        .map(|i| {
            let url = if i % 5 == 0 {
                format!("rtsp://admin:pw{i}@10.1.{}.{}/ch1", i / 250, i % 250)
            } else {
                format!("rtsp://10.1.{}.{}/ch1", i / 250, i % 250)
            };
            json!({"name": format!("Site_{:02}/cam-{i:05}", i % 40), "title": format!("Camera {i}"),
                   "inputs": [{"url": url}], "dvr": {"expiration": 604800},
                   "organization": {"id": 1 + i % 10, "title": format!("Org {}", 1 + i % 10)},
                   "preset_id": 7})
        })
        .collect();
    let from = serve_vendor(v).await;
    let out = tempdir("bench");
    let mut a = args(&from);
    a.out = Some(out.clone());
    let started = std::time::Instant::now();
    let outcome = execute(&a, "whatever", None).await.unwrap();
    let first = started.elapsed();
    let again = std::time::Instant::now();
    execute(&a, "whatever", None).await.unwrap();
    let second = again.elapsed();
    // Where the time goes: reading, planning, writing.
    let t = std::time::Instant::now();
    let mut src = panoptes::import::source::Source::login(&from, ADMIN_LOGIN, "x")
        .await
        .unwrap();
    let snapshot = src.snapshot().await.unwrap();
    let read = t.elapsed();
    let t = std::time::Instant::now();
    let plan = panoptes::import::plan::plan(&snapshot, &Default::default());
    let planned = t.elapsed();
    let t = std::time::Instant::now();
    panoptes::import::output::write_tree(&out, &plan, None, true).unwrap();
    eprintln!(
        "read {:.2}s, plan {:.2}s, write (unchanged) {:.2}s",
        read.as_secs_f64(),
        planned.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let peak = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: ?");
    eprintln!(
        "import of 10000 streams: {:.2}s (re-import {:.2}s), {} objects, {peak}",
        first.as_secs_f64(),
        second.as_secs_f64(),
        outcome.plan.objects.len()
    );
    assert_eq!(
        outcome.plan.counts()[&panoptes::import::plan::Kind::Stream],
        10_000
    );
    let _ = std::fs::remove_dir_all(out);
}

/// Takeover without outage (the README's "Adopting an existing Watcher"): two nodes run what
/// a Watcher left there, all of organization 1 on the second node (the layouter alone would
/// spread them over both). Import organization 1 with `--apply`, start the operator: it adopts
/// every stream where it runs with one metadata write (the ownership label) and zero
/// restarts; a stream whose running config differs from the source is left alone and says
/// where; organization 2's streams are never written or deleted. Only then does a spec change
/// reach the node (Panoptes owns placement and config from here).
#[tokio::test]
async fn a_running_installation_is_adopted_without_restarting_a_stream() {
    let sim = streamer_sim::Cluster::start(2).await.unwrap();
    let (n0, n1) = (sim.node(0), sim.node(1));
    let stream = |i: usize, org: i64| {
        json!({"name": format!("cam-{i}"), "title": format!("Camera {i}"), "static": true,
               "inputs": [{"url": format!("fake://cam-{i}")}],
               "dvr": {"root": "/storage", "expiration": 86400},
               "organization": {"id": org, "title": format!("Org {org}")}})
    };
    let mut streams = Vec::new();
    for i in 0..12 {
        let (org, node) = if i < 8 { (1, n1) } else { (2, [n0, n1][i % 2]) };
        let s = stream(i, org);
        let mut on_node = s.clone();
        on_node.as_object_mut().unwrap().remove("organization");
        if i == 7 {
            // Edited on the node behind the Watcher's back: adopting it would restart it.
            on_node["inputs"][0]["url"] = json!("fake://cam-7-by-hand");
        }
        node.drift_stream(&format!("cam-{i}"), on_node).unwrap();
        streams.push(s);
    }
    let untouched: Vec<(String, Value)> = (8..12)
        .map(|i| {
            let n = format!("cam-{i}");
            let node = [n0, n1][i % 2];
            (n.clone(), node.stored_stream(&n).unwrap())
        })
        .collect();
    let v = Vendor {
        streams,
        streamers: [n0, n1]
            .iter()
            .map(|n| {
                json!({"hostname": n.hostname(), "api_url": n.base_url(),
                       "config": {"edit_auth": {"login": "flussonic", "password": "letmein!"}}})
            })
            .collect(),
        presets: vec![],
        users: vec![],
        broken: Arc::new(AtomicBool::new(false)),
        per_page: 5,
        domain: json!({}),
    };
    let from = serve_vendor(v).await;
    let ns = TestNamespace::new("import-takeover").await;
    let mut a = args(&from);
    a.apply = true;
    a.namespace = Some(ns.name.clone());
    a.organization = Some("1".into());
    let outcome = execute(&a, "whatever", Some(ns.client.clone()))
        .await
        .unwrap();
    assert!(
        outcome.applied,
        "{}",
        panoptes::import::summary(&a, &outcome)
    );
    // The review step for nodes reached over plain http (the import warns about each).
    for n in [n0, n1] {
        let name = panoptes::domain::names::object_name("", n.hostname());
        ns.api::<panoptes::resources::Streamer>()
            .patch(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"spec": {"allowInsecure": true}})),
            )
            .await
            .unwrap();
    }
    sim.nodes().iter().for_each(|n| n.reset_counters());

    let op = support::operator::Operator::start(&ns);
    let synced = |s: &Stream| {
        s.status.as_ref().is_some_and(|st| {
            st.common
                .conditions
                .iter()
                .any(|c| c.type_ == "Synced" && c.status == "True")
        })
    };
    let stuck = |s: &Stream| {
        s.status.as_ref().and_then(|st| {
            st.common
                .conditions
                .iter()
                .find(|c| c.type_ == "Synced" && c.status == "False")
                .map(|c| c.message.to_string())
        })
    };
    let streams: Vec<Stream> = eventually(api_support::WAIT, "organization 1 adopted", || {
        let api = ns.api::<Stream>();
        async move {
            let all = api.list(&ListParams::default()).await.ok()?.items;
            let (bad, good): (Vec<&Stream>, Vec<&Stream>) = all
                .iter()
                .partition(|s| s.spec.name.as_deref() == Some("cam-7"));
            (all.len() == 8
                && good.iter().all(|s| synced(s))
                && bad.iter().all(|s| stuck(s).is_some()))
            .then_some(all)
        }
    })
    .await;
    for s in &streams {
        let layout = s.status.as_ref().unwrap().layout.as_ref();
        assert_eq!(
            layout.and_then(|l| l.ingest.as_deref()),
            Some(n1.hostname()),
            "{} stays on the node running it",
            s.watcher_name()
        );
    }
    let cam7 = streams
        .iter()
        .find(|s| s.watcher_name() == "cam-7")
        .unwrap();
    let why = stuck(cam7).unwrap();
    assert!(
        why.contains("/inputs/0/url") && why.contains("restart"),
        "{why}"
    );
    let c1 = n1.counters();
    assert_eq!(c1.restarts, BTreeMap::new(), "no stream restarted");
    assert_eq!(n0.restarts_total(), 0);
    for i in 0..7 {
        let name = format!("cam-{i}");
        assert_eq!(c1.metadata_writes.get(&name), Some(&1), "{name}");
        assert_eq!(
            n1.stored_stream(&name).unwrap()["labels"]["managed-by"],
            "panoptes"
        );
    }
    assert_eq!(n1.stream_count("PUT", "cam-7"), 0, "cam-7 is left alone");
    assert!(n1.stored_stream("cam-7").unwrap().get("labels").is_none());
    for n in [n0, n1] {
        assert_eq!(n.route_count("DELETE /streams/{name}"), 0);
    }
    assert!((0..8).all(|i| n0.stored_stream(&format!("cam-{i}")).is_none()));
    for (i, (name, before)) in (8..12).zip(&untouched) {
        let node = [n0, n1][i % 2];
        assert_eq!(
            &node.stored_stream(name).unwrap(),
            before,
            "{name} untouched"
        );
        assert_eq!(node.stream_count("PUT", name), 0);
    }

    // Adopted: from here a spec change is Panoptes's to push.
    let cam0 = streams
        .iter()
        .find(|s| s.watcher_name() == "cam-0")
        .unwrap();
    ns.api::<Stream>()
        .patch(
            &cam0.name_any(),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"inputs": [{"url": "fake://cam-0-hd"}]}})),
        )
        .await
        .unwrap();
    eventually(
        api_support::WAIT,
        "the new input reaches the node",
        || async {
            (n1.stored_stream("cam-0")?["inputs"][0]["url"] == "fake://cam-0-hd").then_some(())
        },
    )
    .await;
    op.stop().await;
}

/// The files of a tree as the plan they came from, to apply them as `kubectl apply -k
/// secrets/ && kubectl apply --server-side -k .` would (through the import's own apply:
/// pre-flight, dry run, then kind by kind).
fn plan_of_tree(dir: &Path) -> Plan {
    let mut objects = Vec::new();
    for (file, text) in tree(dir) {
        if !file.ends_with(".yaml") || file.ends_with("kustomization.yaml") {
            continue;
        }
        let manifest: Value = serde_yaml::from_str(&text).unwrap();
        let kind = Kind::ALL
            .into_iter()
            .find(|k| manifest["kind"] == k.as_str())
            .unwrap_or_else(|| panic!("{file}: unknown kind"));
        objects.push(Object {
            kind,
            name: manifest["metadata"]["name"].as_str().unwrap().to_string(),
            file,
            manifest,
            source: String::new(),
        });
    }
    Plan {
        objects,
        ..Default::default()
    }
}

/// `panoptes export`: the round trip's source, one stream with camera credentials, exported
/// twice (the same bytes), the credentials only under `secrets/`, the tree applied into
/// another namespace → its facade lists the same.
#[tokio::test]
async fn an_export_applied_into_another_namespace_lists_the_same() {
    let src = TestNamespace::new("export-src").await;
    let source = Facade::start(&src).await;
    populate(&src).await;
    src.api::<Secret>()
        .create(
            &Default::default(),
            &serde_json::from_value(json!({"metadata": {"name": "cams"},
                "stringData": {"username": "admin", "password": "cam-export-pw"}}))
            .unwrap(),
        )
        .await
        .unwrap();
    src.api::<Stream>()
        .patch(
            "s0",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"credentials": {"secretName": "cams"}}})),
        )
        .await
        .unwrap();
    settled(&source).await;
    let (one, two) = (tempdir("export-one"), tempdir("export-two"));
    let mut a = ExportArgs {
        out: one.clone(),
        namespace: Some(src.name.clone()),
        no_secrets: false,
    };
    let plan = export::execute(&a, &src.client).await.unwrap();
    assert!(plan.findings.is_empty(), "{:#?}", plan.findings);
    assert_eq!(plan.reset_users, vec![ADMIN_LOGIN.to_string()]);
    a.out = two.clone();
    export::execute(&a, &src.client).await.unwrap();
    let files = tree(&one);
    assert_eq!(
        files,
        tree(&two),
        "an unchanged namespace exports the same bytes"
    );
    let (secrets, main): (Vec<_>, Vec<_>) =
        files.iter().partition(|(k, _)| k.starts_with("secrets/"));
    assert!(main.iter().all(|(_, t)| !t.contains("cam-export-pw")));
    assert!(secrets.iter().any(|(_, t)| t.contains("cam-export-pw")));
    assert_eq!(files[".gitignore"].lines().last(), Some("secrets/"));
    assert!(files["streams/acme/s0.yaml"].contains("secretName: cams"));

    let dst = TestNamespace::new("export-dst").await;
    panoptes::import::apply::apply(&dst.client, &dst.name, &plan_of_tree(&one), true)
        .await
        .unwrap();
    let root: User = dst.api().get("root").await.unwrap();
    give_password(&dst, &root, ADMIN_PASSWORD, 1).await;
    let target = Facade::start_without_admin(&dst).await;
    assert_same_lists(&source, &target).await;
    for d in [one, two] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Bad input never half-applies: invalid and duplicate names and a missing preset are named
/// per object, and `--apply` then writes nothing; a page that stays unreachable fails the
/// import before anything is applied.
#[tokio::test]
async fn bad_input_is_reported_per_object_and_applies_nothing() {
    let mut v = vendor();
    v.streams = vec![
        json!({"name": "good", "inputs": [{"url": "fake://good"}]}),
        json!({"name": "bad name?", "inputs": [{"url": "fake://bad"}]}),
        json!({"name": "twice", "inputs": [{"url": "fake://a"}]}),
        json!({"name": "twice", "inputs": [{"url": "fake://b"}]}),
        json!({"name": "orphan", "preset_id": 999, "inputs": [{"url": "fake://o"}]}),
    ];
    let broken = v.broken.clone();
    let from = serve_vendor(v).await;
    let ns = TestNamespace::new("import-bad").await;
    let mut a = args(&from);
    a.apply = true;
    a.namespace = Some(ns.name.clone());
    let outcome = execute(&a, "whatever", Some(ns.client.clone()))
        .await
        .unwrap();
    assert!(outcome.failed() && !outcome.applied);
    let summary = panoptes::import::summary(&a, &outcome);
    for line in [
        "error: stream bad name? /name:",
        "error: stream twice: appears twice in the source",
        "error: stream orphan /preset: preset 999 is not in the source's preset list",
        "nothing applied: fix the errors above first",
    ] {
        assert!(summary.contains(line), "{line:?} not in\n{summary}");
    }
    let empty = |ns: &TestNamespace| {
        let (streams, presets, secrets) =
            (ns.api::<Stream>(), ns.api::<Preset>(), ns.api::<Secret>());
        async move {
            let lp = ListParams::default();
            streams.list(&lp).await.unwrap().items.is_empty()
                && presets.list(&lp).await.unwrap().items.is_empty()
                && secrets.list(&lp).await.unwrap().items.is_empty()
        }
    };
    assert!(empty(&ns).await, "nothing applied");
    broken.store(true, Ordering::SeqCst);
    let err = execute(&a, "whatever", Some(ns.client.clone()))
        .await
        .unwrap_err();
    assert!(err.contains("/streams page 2 unreachable"), "{err}");
    assert!(empty(&ns).await, "nothing applied");
}
