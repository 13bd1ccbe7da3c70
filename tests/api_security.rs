//! Hostile callers of the facade: forged, expired, tampered, wrong-key and `alg=none` tokens,
//! oversized and deeply nested bodies, hostile path and query parameters, and the headers
//! every response carries (no CORS, no sniffing, no caching, no framing).

mod api_support;
#[path = "api_security/creds.rs"]
mod creds;
#[path = "api_security/dest.rs"]
mod dest;
#[path = "api_security/ids.rs"]
mod ids;
mod support;
#[path = "api_security/tenancy.rs"]
mod tenancy;

#[path = "api_security/auth.rs"]
mod auth;

use api_support::{Facade, assert_error};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::api::core::v1::Secret;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::TestNamespace;

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// Claims of the admin token, re-signed with `key` after `edit`.
fn forge(token: &str, key: &[u8], edit: impl FnOnce(&mut Value)) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    edit(&mut claims);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .unwrap()
}

async fn status_with(f: &Facade, token: &str) -> (StatusCode, Value) {
    let r = f
        .http
        .get(f.url("/streams"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn forged_expired_tampered_and_unsigned_tokens_are_refused() {
    let ns = TestNamespace::new("api-sec-tokens").await;
    let f = Facade::start(&ns).await;
    let (ok, _) = status_with(&f, &f.token).await;
    assert_eq!(ok, StatusCode::OK, "the genuine token works");
    let secret = ns.api::<Secret>().get("panoptes-jwt").await;
    let key = match secret {
        Ok(s) => s.data.unwrap()["signing-key"].0.clone(),
        // The facade keeps its key Secret in the system namespace of the fixture.
        Err(_) => panic!("the signing key Secret exists in the test namespace"),
    };
    let now = chrono::Utc::now().timestamp();
    let expired = forge(&f.token, &key, |c| {
        c["iat"] = json!(now - 7200);
        c["exp"] = json!(now - 3600);
    });
    let resigned_ok = forge(&f.token, &key, |_| {});
    let (s, _) = status_with(&f, &resigned_ok).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "forging with the real key works, so the cases below test what they say"
    );
    let wrong_key = forge(&f.token, b"not-the-key-not-the-key-not-the-key", |_| {});
    let other_user = forge(&f.token, b"not-the-key-not-the-key-not-the-key", |c| {
        c["name"] = json!("mallory")
    });
    let mut parts: Vec<String> = f.token.split('.').map(String::from).collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    claims["exp"] = json!(now + 10 * 365 * 86400);
    parts[1] = b64(&claims);
    let tampered = parts.join(".");
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "typ": "JWT" })),
        parts[1]
    );
    let refresh_as_access = forge(&f.token, &key, |c| c["typ"] = json!("refresh"));
    for (what, token) in [
        ("expired", expired.as_str()),
        ("wrong key", wrong_key.as_str()),
        ("wrong key, other user", other_user.as_str()),
        ("tampered payload", tampered.as_str()),
        ("alg=none", alg_none.as_str()),
        ("a refresh token used as access", refresh_as_access.as_str()),
        ("garbage", "a.b.c"),
        ("empty", ""),
    ] {
        let (s, body) = status_with(&f, token).await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "{what} token must be refused: {body}"
        );
        assert_error(s, &body, 401);
    }
}

#[tokio::test]
async fn hostile_bodies_paths_and_queries_get_clear_4xx() {
    let ns = TestNamespace::new("api-sec-input").await;
    let f = Facade::start(&ns).await;
    let send = |method: reqwest::Method, path: &str, body: Option<Vec<u8>>| {
        let mut r = f
            .http
            .request(method, format!("{}{}", f.base, path))
            .bearer_auth(&f.token);
        if let Some(b) = body {
            r = r.header("content-type", "application/json").body(b);
        }
        async move {
            let r = r.send().await.unwrap();
            let s = r.status();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // A body over the limit and a JSON nesting bomb.
    let huge = vec![b' '; 17 * 1024 * 1024];
    let (s, body) = send(reqwest::Method::PUT, "/streams/big", Some(huge)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let deep = format!("{{\"title\":{}1{}}}", "[".repeat(5000), "]".repeat(5000));
    let (s, body) = send(
        reqwest::Method::PUT,
        "/streams/deep",
        Some(deep.into_bytes()),
    )
    .await;
    assert!(s.is_client_error(), "deep JSON: {s} {body}");
    assert_error(s, &body, s.as_u16());
    let (s, body) = send(
        reqwest::Method::PUT,
        "/streams/bad",
        Some(b"{not json".to_vec()),
    )
    .await;
    assert_error(s, &body, 400);

    // Hostile paths and queries: a 4xx in the error envelope, never a 5xx.
    for path in [
        "/streams/..%2F..%2Fetc%2Fpasswd",
        "/streams/%2e%2e/%2e%2e/secrets",
        "/streams/a%00b",
        "/streams/%FF%FE",
        "/users/99999999999999999999999999",
        "/users/-1",
        "/users/1;DROP%20TABLE%20users",
        "/presets/NaN",
        "/streams?limit=99999999999999999999",
        "/streams?limit=-5",
        "/streams?cursor=%FF%FE%00",
        "/streams?sort=name;rm%20-rf",
        "/streams?select=../../x",
        "/streams?q=%27%20OR%201%3D1%20--",
        "/streams?organization_id=1%20OR%201%3D1",
        "/streams?stats.bitrate_gt=1e999999",
        "/cluster/stats?format=../../etc",
    ] {
        let (s, body) = send(reqwest::Method::GET, path, None).await;
        assert!(
            s.is_client_error() || s == StatusCode::OK,
            "{path}: {s} {body}"
        );
        assert!(!s.is_server_error(), "{path}: {s} {body}");
        if s.is_client_error() {
            assert_error(s, &body, s.as_u16());
        } else {
            // Accepted as plain data (e.g. a search text): nothing leaked, nothing ran.
            assert!(
                body.get("estimated_count").is_some() || body.is_object(),
                "{path}: {body}"
            );
        }
    }
}

#[tokio::test]
async fn responses_carry_deliberate_security_headers_and_no_cors() {
    let ns = TestNamespace::new("api-sec-headers").await;
    let f = Facade::start(&ns).await;
    for (method, path, auth) in [
        (reqwest::Method::GET, "/streams", true),
        (reqwest::Method::GET, "/streams", false),
        (reqwest::Method::GET, "/openapi.json", false),
        (reqwest::Method::GET, "/no/such/route", true),
    ] {
        let mut r = f
            .http
            .request(method, f.url(path))
            .header("origin", "https://evil.example");
        if auth {
            r = r.bearer_auth(&f.token);
        }
        let resp = r.send().await.unwrap();
        let h = resp.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["cache-control"], "no-store", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert!(h.get("content-security-policy").is_some(), "{path}");
        assert!(
            h.get("access-control-allow-origin").is_none(),
            "no CORS on {path}"
        );
    }
    // A CORS preflight is not honoured either.
    let pre = f
        .http
        .request(reqwest::Method::OPTIONS, f.url("/streams"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(pre.headers().get("access-control-allow-origin").is_none());
    assert!(pre.status().is_client_error());
}
