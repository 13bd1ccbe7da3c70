//! What an unauthenticated caller can do to the facade's memory, the audit trail, the login
//! throttle and the tokens of others: bounded stores, an audit of authenticated calls only,
//! oversized headers in the error envelope, a lockout per login and client address, one
//! password verification on every login path, and tokens that die with the password.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use panoptes::api::{ApiConfig, ApiState};
use panoptes::resources::User;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::api_support::{
    ADMIN_LOGIN, ADMIN_PASSWORD, Facade, WAIT, assert_error, make_user, serve_facade,
};
use crate::support::binary::{Binary, free_port};
use crate::support::operator::Operator;
use crate::support::scenario::user_with_password;
use crate::support::{TestNamespace, control_plane, eventually};

/// A client whose connections come from `ip` (any 127.x address is loopback on Linux).
fn client_from(ip: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(ip))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn login_status(
    http: &reqwest::Client,
    base: &str,
    login: &str,
    password: &str,
    forwarded_for: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = http
        .post(format!("{base}/login"))
        .basic_auth(login, Some(password))
        .header("content-type", "application/json")
        .body("null");
    if let Some(f) = forwarded_for {
        req = req.header("x-forwarded-for", f);
    }
    let resp = req.send().await.unwrap();
    let s = resp.status();
    (s, resp.json().await.unwrap_or(Value::Null))
}

/// The payload of a JWT (unverified: the test reads what the facade issued).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Finding 7: five wrong passwords lock that login from that address only; the right password
/// from elsewhere still logs in. Unknown logins keep no state at all.
#[tokio::test]
async fn failed_logins_lock_one_login_from_one_address_only() {
    let ns = TestNamespace::new("api-sec-lockout").await;
    let f = Facade::start(&ns).await;
    make_user(&ns, "victim", "victim", "Victim-pass-1", true, 2).await;
    let a = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let b = client_from(Ipv4Addr::new(127, 0, 0, 3));
    // The store follows the new user through its watch.
    eventually(WAIT, "victim can log in", || async {
        let (s, _) = login_status(&b, &f.base, "victim", "Victim-pass-1", None).await;
        (s == StatusCode::OK).then_some(())
    })
    .await;
    for _ in 0..5 {
        let (s, body) = login_status(&a, &f.base, "victim", "wrong", None).await;
        assert_error(s, &body, 401);
    }
    let (s, body) = login_status(&a, &f.base, "victim", "Victim-pass-1", None).await;
    assert_error(s, &body, 429);
    let (s, body) = login_status(&b, &f.base, "victim", "Victim-pass-1", None).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "another address is not locked out: {body}"
    );
}

/// A facade over `ns` with `config` (the admin `root` must exist), for the settings the
/// shared fixture does not vary. Stops when the returned sender drops.
async fn facade_with(
    ns: &TestNamespace,
    config: ApiConfig,
) -> (
    String,
    ApiState,
    tokio::sync::oneshot::Sender<()>,
    JoinSet<()>,
) {
    let mut watches = JoinSet::new();
    let shared = crate::support::shared(ns, &mut watches);
    shared.stores.wait_ready().await;
    let state = ApiState::new(&shared, config).await.expect("facade state");
    state.settings.wait_ready().await;
    let (base, tx) = serve_facade(state.clone()).await;
    (base, state, tx, watches)
}

/// Finding 7, behind a proxy: `X-Forwarded-For` names the client only when the peer is a
/// trusted proxy; otherwise the peer is the client, whatever the header says.
#[tokio::test]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    let ns = TestNamespace::new("api-sec-proxy").await;
    make_user(&ns, "root", ADMIN_LOGIN, ADMIN_PASSWORD, true, 1).await;
    let mut config = ApiConfig::new(&ns.name, &ns.name);
    config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let (base, state, _stop, _watches) = facade_with(&ns, config).await;
    let proxy = client_from(Ipv4Addr::new(127, 0, 0, 1));
    let stranger = client_from(Ipv4Addr::new(127, 0, 0, 2));
    eventually(WAIT, "root can log in", || async {
        let (s, _) = login_status(&proxy, &base, ADMIN_LOGIN, ADMIN_PASSWORD, None).await;
        (s == StatusCode::OK).then_some(())
    })
    .await;
    // Client A behind the proxy locks itself out, and only itself.
    for _ in 0..5 {
        let (s, _) = login_status(&proxy, &base, ADMIN_LOGIN, "wrong", Some("203.0.113.5")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, body) = login_status(
        &proxy,
        &base,
        ADMIN_LOGIN,
        ADMIN_PASSWORD,
        Some("203.0.113.5"),
    )
    .await;
    assert_error(s, &body, 429);
    let (s, body) = login_status(
        &proxy,
        &base,
        ADMIN_LOGIN,
        ADMIN_PASSWORD,
        Some("198.51.100.7, 203.0.113.9"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "client B behind the proxy: {body}");
    // A peer that is no proxy cannot pin its failures on someone else.
    for _ in 0..5 {
        let (s, _) =
            login_status(&stranger, &base, ADMIN_LOGIN, "wrong", Some("198.51.100.7")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, body) = login_status(
        &proxy,
        &base,
        ADMIN_LOGIN,
        ADMIN_PASSWORD,
        Some("198.51.100.7"),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "198.51.100.7 was never the client: {body}"
    );
    let (s, body) = login_status(&stranger, &base, ADMIN_LOGIN, ADMIN_PASSWORD, None).await;
    assert_error(s, &body, 429);
    // Unknown logins keep no state.
    let entries = state.metrics.login_failures_entries.get();
    for i in 0..10 {
        let (s, _) = login_status(&stranger, &base, &format!("ghost-{i}"), "x", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(state.metrics.login_failures_entries.get(), entries);
}

/// Finding 8: every login path runs exactly one password verification (with the same
/// parameters), so its duration does not tell whether the login exists.
#[tokio::test]
async fn every_login_path_runs_exactly_one_verification() {
    let ns = TestNamespace::new("api-sec-timing").await;
    let f = Facade::start(&ns).await;
    make_user(&ns, "known", "known", "Known-pass-1", true, 2).await;
    // A user without a hash (no password yet): the store holds it, but nothing to verify.
    let nohash: User = serde_json::from_value(json!({
        "apiVersion": "panoptes.dev/v1alpha1", "kind": "User",
        "metadata": {"name": "nohash"},
        "spec": {"id": 3, "name": "nohash", "accessLevel": "admin"},
    }))
    .unwrap();
    ns.api::<User>()
        .create(&Default::default(), &nohash)
        .await
        .unwrap();
    eventually(WAIT, "the users are in the store", || async {
        let users = f.state.stores.users.state();
        (users.iter().any(|u| u.spec.name == "nohash")
            && users.iter().any(|u| u.spec.name == "known"))
        .then_some(())
    })
    .await;
    let count = || f.state.auth.password_verifications();
    for (what, login, password, want) in [
        ("known login, wrong password", "known", "wrong", 401),
        ("unknown login", "nobody-by-this-name", "wrong", 401),
        ("known login without a hash", "nohash", "anything", 401),
        ("known login, right password", "known", "Known-pass-1", 200),
    ] {
        let before = count();
        let (s, body) = login_status(&f.http, &f.base, login, password, None).await;
        assert_eq!(s.as_u16(), want, "{what}: {body}");
        assert_eq!(count() - before, 1, "{what}: exactly one verification");
    }
}

/// Finding 10: unauthenticated requests never enter the audit, so they cannot evict the
/// record of an authenticated write.
#[tokio::test]
async fn unauthenticated_requests_never_enter_the_audit() {
    let ns = TestNamespace::new("api-sec-audit").await;
    let f = Facade::start(&ns).await;
    let marker = format!("AUDIT-MARKER-{}", rand::random::<u32>());
    let resp = f
        .http
        .put(f.url("/streams/audited"))
        .bearer_auth(&f.token)
        .header("x-trace-id", &marker)
        .json(&json!({"title": "audited", "inputs": [{"url": "fake://a"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let flood = futures::stream::iter(0..300)
        .map(|i| {
            let req = if i % 2 == 0 {
                f.http.get(f.url("/monitoring/liveness"))
            } else {
                f.http.get(f.url("/streams")).bearer_auth("not-a-token")
            };
            async move { req.send().await.unwrap().status() }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    assert!(
        flood
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::UNAUTHORIZED)
    );
    let (s, events) = f.get("/events?limit=1000").await;
    assert_eq!(s, StatusCode::OK, "{events}");
    let events = events["events"].as_array().unwrap();
    let anonymous: Vec<&Value> = events.iter().filter(|e| e.get("user").is_none()).collect();
    assert!(
        anonymous.is_empty(),
        "{} unauthenticated calls in the audit, e.g. {}",
        anonymous.len(),
        anonymous[0]
    );
    assert!(
        events.iter().any(|e| e["trace_id"] == json!(marker)),
        "the audited write is still there"
    );
}

/// Finding 21: headers too large for the facade are refused in the Watcher error envelope;
/// and the class: a login body (read before authentication) is small.
#[tokio::test]
async fn oversized_headers_get_the_error_envelope() {
    let ns = TestNamespace::new("api-sec-bighead").await;
    let f = Facade::start(&ns).await;
    // Well under hyper's own ~400 KB buffer, which would answer without the envelope.
    let big = "h".repeat(300 * 1024);
    for (method, path) in [
        (reqwest::Method::GET, "/monitoring/liveness"),
        (reqwest::Method::POST, "/login"),
        (reqwest::Method::GET, "/streams"),
    ] {
        let resp = f
            .http
            .request(method, f.url(path))
            .header("x-originator", &big)
            .send()
            .await
            .unwrap();
        let s = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_error(s, &body, 431);
    }
    // Beyond hyper's own buffer (~400 KB) and its 100 header fields hyper refuses the request
    // before any service runs; the connection layer puts that answer in the envelope too.
    let huge = "h".repeat(600 * 1024);
    let resp = f
        .http
        .get(f.url("/monitoring/liveness"))
        .header("x-originator", &huge)
        .send()
        .await
        .unwrap();
    let s = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_error(s, &body, 431);
    let mut many = f.http.get(f.url("/monitoring/liveness"));
    for i in 0..150 {
        many = many.header(format!("x-h{i}"), "v");
    }
    let resp = many.send().await.unwrap();
    let s = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_error(s, &body, 431);
    // The one body read before authentication is small too (the SDK sends `null`).
    let resp = f
        .http
        .post(f.url("/login"))
        .basic_auth("nobody", Some("x"))
        .body(vec![b' '; 8 * 1024])
        .send()
        .await
        .unwrap();
    let s = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_error(s, &body, 413);
}

/// Finding 9: a password change revokes the tokens issued before it, and refreshing never
/// moves the end of the refresh chain.
#[tokio::test]
async fn a_password_change_revokes_tokens_and_refresh_keeps_the_chain_end() {
    let ns = TestNamespace::new("api-sec-revoke").await;
    // The User controller hashes the passwords (and owns the hash of the admin too).
    let _operator = Operator::start(&ns);
    user_with_password(&ns, "root", ADMIN_LOGIN, ADMIN_PASSWORD).await;
    user_with_password(&ns, "mallory", "mallory", "Initial-pass-1").await;
    let f = Facade::start_without_admin(&ns).await;
    let first: Value = eventually(WAIT, "mallory logs in", || async {
        let (s, body) = login_status(&f.http, &f.base, "mallory", "Initial-pass-1", None).await;
        (s == StatusCode::OK).then_some(body)
    })
    .await;
    let access = first["access_token"].as_str().unwrap().to_string();
    let refresh = first["refresh_token"].as_str().unwrap().to_string();
    let chain_end = claims(&refresh)["exp"].as_i64().unwrap();

    // Token times are whole seconds: let one pass so a sliding expiry would show.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let refresh_with = |token: String| {
        let http = f.http.clone();
        let url = f.url("/login");
        async move {
            let resp = http
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body("null")
                .send()
                .await
                .unwrap();
            let s = resp.status();
            (s, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, second) = refresh_with(refresh.clone()).await;
    assert_eq!(s, StatusCode::OK, "{second}");
    let second_refresh = second["refresh_token"].as_str().unwrap().to_string();
    assert!(
        claims(&second_refresh)["exp"].as_i64().unwrap() <= chain_end,
        "a refresh must not extend the chain: {} > {chain_end}",
        claims(&second_refresh)["exp"]
    );
    let second_access = second["access_token"].as_str().unwrap().to_string();
    assert!(claims(&second_access)["exp"].as_i64().unwrap() <= chain_end);

    // Change the password the way kubectl/GitOps do (the facade writes the same Secret).
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "mallory-password"},
        "stringData": {"password": "Changed-pass-2"},
    });
    ns.api::<Secret>()
        .patch(
            "mallory-password",
            &PatchParams::apply("panoptes-tests").force(),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
    eventually(WAIT, "the new password works", || async {
        let (s, _) = login_status(&f.http, &f.base, "mallory", "Changed-pass-2", None).await;
        (s == StatusCode::OK).then_some(())
    })
    .await;
    for (what, token) in [("access", &access), ("refreshed access", &second_access)] {
        eventually(
            WAIT,
            &format!("the old {what} token is refused"),
            || async {
                let resp = f
                    .http
                    .get(f.url("/streams"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                (resp.status() == StatusCode::UNAUTHORIZED).then_some(())
            },
        )
        .await;
    }
    for token in [refresh, second_refresh] {
        let (s, body) = refresh_with(token).await;
        assert_error(s, &body, 401);
    }
}

/// Finding 1: a flood of large unauthenticated requests and failed logins keeps every store
/// within its configured caps, and the process's memory with them.
#[tokio::test]
async fn unauthenticated_floods_stay_within_the_store_caps() {
    let ns = TestNamespace::new("api-sec-flood").await;
    let probe = format!("127.0.0.1:{}", free_port());
    let api = format!("127.0.0.1:{}", free_port());
    let log = std::env::temp_dir().join(format!("panoptes-{}.log", ns.name));
    let out = std::fs::File::create(&log).unwrap();
    // Small enough that the flood hits each: 200 audited calls against 50 entries, 100
    // failing (login, address) pairs against 4 KiB.
    let caps = [
        ("--audit-max-entries", 50u64),
        ("--audit-max-bytes", 128 * 1024),
        ("--login-failures-max-entries", 200),
        ("--login-failures-max-bytes", 4096),
    ];
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_panoptes"));
    cmd.args([
        "run",
        "--namespace",
        &ns.name,
        "--system-namespace",
        &ns.name,
    ])
    .args(["--probe-addr", &probe, "--api-addr", &api])
    .args(["--peer-addr", &format!("127.0.0.1:{}", free_port())])
    .args(["--trusted-proxies", "127.0.0.1/32"])
    .args(["--max-header-bytes", "262144"]);
    for (flag, value) in caps {
        cmd.args([flag, &value.to_string()]);
    }
    let child = cmd
        .env("KUBECONFIG", &control_plane().kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::from(out.try_clone().unwrap()))
        .stderr(std::process::Stdio::from(out))
        .spawn()
        .expect("panoptes starts");
    let bin = Binary {
        child,
        probe,
        api,
        peer: String::new(),
        log,
    };
    user_with_password(&ns, "root", ADMIN_LOGIN, ADMIN_PASSWORD).await;
    let base = format!("http://{}{}", bin.api, panoptes::api::BASE);
    let http = reqwest::Client::new();
    let token: String = eventually(Duration::from_secs(60), "admin logs in", || async {
        let resp = http
            .post(format!("{base}/login"))
            .basic_auth(ADMIN_LOGIN, Some(ADMIN_PASSWORD))
            .body("null")
            .send()
            .await
            .ok()?;
        let v: Value = resp.json().await.ok()?;
        v["access_token"].as_str().map(str::to_string)
    })
    .await;
    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", bin.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    };
    // 64 KiB of headers per request, different in every request.
    let filler = |i: usize, tag: &str| format!("{tag}{i}-{}", "x".repeat(21 * 1024));
    let send = |i: usize| {
        let http = http.clone();
        let base = base.clone();
        let token = token.clone();
        async move {
            let mut req = match i % 20 {
                // Distinct unknown logins with long names.
                7 => http
                    .post(format!("{base}/login"))
                    .basic_auth(filler(i, "login"), Some("x")),
                // Wrong passwords for a login that exists, from many forwarded addresses.
                8 => http
                    .post(format!("{base}/login"))
                    .basic_auth(ADMIN_LOGIN, Some("wrong"))
                    .header(
                        "x-forwarded-for",
                        format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256),
                    ),
                // Authenticated writes are audited (failed ones too), with their headers cut
                // to size.
                9 | 19 => http
                    .delete(format!("{base}/streams/nothing-{i}"))
                    .bearer_auth(&token),
                10..=12 => http.get(format!("{base}/streams")).bearer_auth("bogus"),
                _ => http.get(format!("{base}/monitoring/liveness")),
            };
            req = req
                .header("user-agent", filler(i, "ua"))
                .header("x-originator", filler(i, "orig"))
                .header("x-trace-id", filler(i, "trace"));
            req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
        }
    };
    // Warm up allocator pools, the argon2 path and the connection handling first.
    futures::stream::iter(0..100)
        .map(send)
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let before = rss();
    let started = Instant::now();
    let statuses = futures::stream::iter(100..2100)
        .map(send)
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let after = rss();
    let growth = after.saturating_sub(before);
    let failed = statuses.iter().filter(|s| **s == 0 || **s >= 500).count();
    eprintln!(
        "flood: 2000 requests in {:?}, RSS {} -> {} KiB (+{} KiB), {failed} failed/5xx",
        started.elapsed(),
        before / 1024,
        after / 1024,
        growth / 1024
    );
    let metrics = reqwest::get(format!("http://{}/metrics", bin.probe))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let gauge = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("gauge {name} in /metrics"))
    };
    for (name, cap) in [
        ("panoptes_api_audit_entries", 50.0),
        ("panoptes_api_audit_bytes", 128.0 * 1024.0),
        ("panoptes_api_login_failures_entries", 200.0),
        ("panoptes_api_login_failures_bytes", 4096.0),
    ] {
        let v = gauge(name);
        assert!(v <= cap, "{name} = {v} > cap {cap}");
    }
    // Both caps were reached, not just respected by a quiet store. The audit log is read back
    // from Kubernetes Events through a watch, which may trail the last writes a moment.
    eventually(
        Duration::from_secs(30),
        "the audit log full at its cap",
        || async {
            let metrics = reqwest::get(format!("http://{}/metrics", bin.probe))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            metrics
                .lines()
                .any(|l| l == "panoptes_api_audit_entries 50")
                .then_some(())
        },
    )
    .await;
    let failures = gauge("panoptes_api_login_failures_entries");
    assert!(
        failures > 0.0 && failures < 100.0,
        "the byte cap bounds the 100 failing pairs: {failures}"
    );
    assert!(
        growth <= 32 * 1024 * 1024,
        "RSS grew by {} KiB (from {} KiB)",
        growth / 1024,
        before / 1024
    );
}
