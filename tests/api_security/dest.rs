//! Default deny for destinations (issue 14, findings 3 and 13): whoever may edit a Streamer's
//! `apiUrl` or a camera URL — through the facade or straight on the API server — gains no way
//! to send the stored node or camera credentials elsewhere, and credentials never travel over
//! plain `http://` unless the Streamer says `allowInsecure: true`.
//!
//! The "elsewhere" is a plain TCP listener that records every request it gets and answers `{}`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use panoptes::resources::common::condition;
use panoptes::resources::{Stream, Streamer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api_support::{ADMIN_LOGIN, ADMIN_PASSWORD, Facade};
use crate::support::operator::Operator;
use crate::support::scenario::{apply, fleet};
use crate::support::{TestNamespace, eventually};

const WAIT: Duration = Duration::from_secs(30);
const CAMERA_PASSWORD: &str = "Cam-Secret-42";
/// `scenario::fleet`'s node password.
const NODE_PASSWORD: &str = "letmein!";

/// A listener that keeps every request (head and body, as text) and answers `200 {}`.
#[derive(Clone)]
struct Listener {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Listener {
    async fn start() -> Self {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", tcp.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let keep = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = tcp.accept().await {
                let keep = keep.clone();
                tokio::spawn(async move {
                    while let Some(request) = read_request(&mut sock).await {
                        keep.lock().unwrap().push(request);
                        let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                        if sock.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { url, seen }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests that carried an `Authorization` header or a known secret.
    fn leaks(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| {
                r.to_ascii_lowercase().contains("\r\nauthorization:")
                    || r.contains(CAMERA_PASSWORD)
                    || r.contains(NODE_PASSWORD)
            })
            .collect()
    }
}

/// One HTTP/1.1 request (head and a `content-length` body) as text; `None` at the end.
async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Some(String::from_utf8_lossy(&buf).into_owned());
            }
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                return (!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).into_owned());
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn secret(ns: &TestNamespace, name: &str, data: &[(&str, &str)]) {
    let s = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    ns.api::<Secret>()
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
}

/// The operator and a facade over `ns`, with an admin whose hash the User controller makes
/// (a hand-made hash would be undone by that controller).
async fn operator_and_facade(ns: &TestNamespace) -> (Operator, Facade) {
    secret(ns, "root-password", &[("password", ADMIN_PASSWORD)]).await;
    apply(
        &ns.api::<panoptes::resources::User>(),
        json!({ "kind": "User", "metadata": { "name": "root" }, "spec": {
            "name": ADMIN_LOGIN, "accessLevel": "admin",
            "passwordSecretRef": { "name": "root-password", "key": "password" } } }),
    )
    .await;
    let op = Operator::start(ns);
    // Logging in before the hash exists would count as failed logins (and lock the login).
    eventually(WAIT, "the admin's password hash", || async {
        let u = ns
            .api::<panoptes::resources::User>()
            .get("root")
            .await
            .ok()?;
        u.status?.password_hash_secret.map(|_| ())
    })
    .await;
    (op, Facade::start_without_admin(ns).await)
}

/// `(status, reason, message)` of condition `type_` of Streamer `name`.
async fn streamer_condition(
    ns: &TestNamespace,
    name: &str,
    type_: &str,
) -> Option<(String, String, String)> {
    let s = ns.api::<Streamer>().get(name).await.ok()?;
    let c = condition(&s.status.as_ref()?.common.conditions, type_)?;
    Some((
        c.status.to_string(),
        c.reason.to_string(),
        c.message.to_string(),
    ))
}

async fn stream_condition(
    ns: &TestNamespace,
    name: &str,
    type_: &str,
) -> Option<(String, String, String)> {
    let s = ns.api::<Stream>().get(name).await.ok()?;
    let c = condition(&s.status.as_ref()?.common.conditions, type_)?;
    Some((
        c.status.to_string(),
        c.reason.to_string(),
        c.message.to_string(),
    ))
}

/// Waits until the Streamer refuses its destination or the listener got a request, then gives
/// the operator a few more resyncs (500 ms each in tests) to send anything it would send.
async fn settle(ns: &TestNamespace, name: &str, reason: &str, listener: &Listener) {
    eventually(
        WAIT,
        "the Streamer to refuse its destination, or a request to the listener",
        || async {
            let refused = streamer_condition(ns, name, "Ready")
                .await
                .is_some_and(|(_, r, _)| r == reason);
            (refused || !listener.requests().is_empty()).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn node_and_camera_credentials_never_follow_a_new_api_url() {
    let (ns, sim) = fleet("sec-dest-url", 1).await;
    let host = sim.node(0).hostname().to_string();
    secret(
        &ns,
        "cam",
        &[("username", "camuser"), ("password", CAMERA_PASSWORD)],
    )
    .await;
    apply(
        &ns.api::<Stream>(),
        json!({ "kind": "Stream", "metadata": { "name": "gate" }, "spec": {
            "inputs": [{ "url": "rtsp://10.9.8.7/live" }],
            "credentials": { "secretName": "cam" } } }),
    )
    .await;
    let (_op, f) = operator_and_facade(&ns).await;
    eventually(
        WAIT,
        "the camera is on the node with its password",
        || async {
            let on_node = sim.node(0).stored_stream("gate")?;
            on_node.to_string().contains(CAMERA_PASSWORD).then_some(())
        },
    )
    .await;

    // kubectl-style: a raw merge patch of spec.apiUrl on the API server.
    let raw = Listener::start().await;
    ns.api::<Streamer>()
        .patch(
            &host,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "apiUrl": raw.url } })),
        )
        .await
        .unwrap();
    settle(&ns, &host, "CredentialsNotBound", &raw).await;
    assert!(
        raw.leaks().is_empty(),
        "after a raw apiUrl patch the new destination received credentials: {:#?}",
        raw.leaks()
    );
    let (status, _, message) = streamer_condition(&ns, &host, "Ready").await.unwrap();
    assert_eq!(status, "False");
    assert!(
        message.contains("node-creds") && message.contains("again"),
        "the condition says how to re-enter the credentials: {message}"
    );

    // The facade: PUT /streamers/{hostname} with only a new api_url.
    let via_facade = Listener::start().await;
    let (s, body) = f
        .put(
            &format!("/streamers/{host}"),
            json!({ "api_url": via_facade.url }),
        )
        .await;
    assert!(s.is_success(), "{s} {body}");
    eventually(WAIT, "the facade's api_url on the Streamer", || async {
        let st = ns.api::<Streamer>().get(&host).await.ok()?;
        (st.spec.api_url.as_deref() == Some(via_facade.url.as_str())).then_some(())
    })
    .await;
    settle(&ns, &host, "CredentialsNotBound", &via_facade).await;
    assert!(
        via_facade.leaks().is_empty() && raw.leaks().is_empty(),
        "after a facade api_url change a new destination received credentials: {:#?}",
        via_facade.leaks()
    );

    // Entering the credentials again (writing the Secret) binds them to the new destination:
    // the refusal is about who chose the destination, not a dead end.
    ns.api::<Secret>()
        .patch(
            "node-creds",
            &PatchParams::default(),
            &Patch::Merge(json!({ "stringData": { "login": "flussonic", "password": NODE_PASSWORD } , "metadata": { "labels": { "re-entered": "yes" } } })),
        )
        .await
        .unwrap();
    eventually(
        WAIT,
        "the re-entered credentials to reach the new destination",
        || async {
            via_facade
                .requests()
                .iter()
                .any(|r| r.to_ascii_lowercase().contains("\r\nauthorization:"))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_camera_password_is_not_resent_to_a_new_camera_host() {
    let (ns, sim) = fleet("sec-dest-cam", 1).await;
    let (_op, f) = operator_and_facade(&ns).await;
    let (s, body) = f
        .put(
            "/streams/credcam",
            json!({ "title": "c", "inputs": [{ "url": format!("rtsp://camuser:{CAMERA_PASSWORD}@127.0.0.1:36554/live") }] }),
        )
        .await;
    assert!(s.is_success(), "{s} {body}");
    let node = sim.node(0);
    let input_on_node = || {
        node.stored_stream("credcam")
            .and_then(|v| v["inputs"][0]["url"].as_str().map(String::from))
    };
    eventually(WAIT, "the camera with its password on the node", || async {
        input_on_node().filter(|u| u.contains(CAMERA_PASSWORD))
    })
    .await;

    // The facade: only the host of the camera URL changes.
    let (s, body) = f
        .put(
            "/streams/credcam",
            json!({ "inputs": [{ "url": "rtsp://127.0.0.1:36901/attacker" }] }),
        )
        .await;
    assert!(s.is_success(), "{s} {body}");
    let url = eventually(WAIT, "the new camera URL on the node", || async {
        input_on_node().filter(|u| u.contains("36901"))
    })
    .await;
    assert_eq!(
        url, "rtsp://127.0.0.1:36901/attacker",
        "the stored camera password was sent to a host it was not entered for"
    );
    let (status, reason, message) = eventually(WAIT, "a CredentialsBound condition", || {
        stream_condition(&ns, "credcam", "CredentialsBound")
    })
    .await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "CredentialsNotBound"),
        "{message}"
    );
    assert!(message.contains("rtsp://127.0.0.1:36901"), "{message}");

    // kubectl-style: a raw merge patch of the inputs.
    ns.api::<Stream>()
        .patch(
            "credcam",
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "spec": { "inputs": [{ "url": "rtsp://127.0.0.1:36902/other" }] } }),
            ),
        )
        .await
        .unwrap();
    let url = eventually(WAIT, "the patched camera URL on the node", || async {
        input_on_node().filter(|u| u.contains("36902"))
    })
    .await;
    assert_eq!(url, "rtsp://127.0.0.1:36902/other");
}

#[tokio::test]
async fn credentials_never_travel_over_plain_http_without_allow_insecure() {
    let ns = TestNamespace::new("sec-dest-http").await;
    secret(
        &ns,
        "node-creds",
        &[("login", "flussonic"), ("password", NODE_PASSWORD)],
    )
    .await;
    secret(
        &ns,
        "cam",
        &[("username", "camuser"), ("password", CAMERA_PASSWORD)],
    )
    .await;
    // A node with credentials at an http:// URL, and a credential-less one (which would still
    // receive camera passwords inside stream configs).
    let with_creds = Listener::start().await;
    let without = Listener::start().await;
    for (name, url, creds) in [
        ("node-a", &with_creds.url, Some("node-creds")),
        ("node-b", &without.url, None),
    ] {
        let mut spec = json!({ "hostname": name, "apiUrl": url });
        if let Some(c) = creds {
            spec["credentials"] = json!({ "secretName": c });
        }
        apply(
            &ns.api::<Streamer>(),
            json!({ "kind": "Streamer", "metadata": { "name": name }, "spec": spec }),
        )
        .await;
    }
    apply(
        &ns.api::<Stream>(),
        json!({ "kind": "Stream", "metadata": { "name": "gate" }, "spec": {
            "inputs": [{ "url": "rtsp://10.9.8.7/live" }],
            "credentials": { "secretName": "cam" } } }),
    )
    .await;
    let _op = Operator::start(&ns);
    settle(&ns, "node-a", "InsecureTransport", &with_creds).await;
    eventually(WAIT, "the stream to be pushed or refused", || async {
        let pushed = [&with_creds, &without]
            .iter()
            .any(|l| l.requests().iter().any(|r| r.starts_with("PUT ")));
        let refused = stream_condition(&ns, "gate", "Synced")
            .await
            .is_some_and(|(_, _, m)| m.contains("allowInsecure"));
        (pushed || refused).then_some(())
    })
    .await;
    assert!(
        with_creds.leaks().is_empty(),
        "node credentials went over plain http: {:#?}",
        with_creds.leaks()
    );
    assert!(
        without.leaks().is_empty(),
        "a camera password went over plain http: {:#?}",
        without.leaks()
    );
    let (_, reason, message) = streamer_condition(&ns, "node-a", "Ready").await.unwrap();
    assert_eq!(reason, "InsecureTransport", "{message}");
    assert!(message.contains("allowInsecure"), "{message}");
}

/// A test CA and a certificate for 127.0.0.1 it signed (test material, trusted nowhere else).
const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBjTCCATOgAwIBAgIUBGaOAY+VVgY/6+0iffpy04X4eFswCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQcGFub3B0ZXMgdGVzdCBDQTAgFw0yNjEyMDUyMzU2MThaGA8y
MTI2MTExMTIzNTYxOFowGzEZMBcGA1UEAwwQcGFub3B0ZXMgdGVzdCBDQTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABI+AkYWYT909A/EYMCYaROoRklAws7zmo/g+
Pwgect4Kpu3Jz23HXhGcS80pWYKGjJPpWyh7XZQHIBfPjN6RDXqjUzBRMB0GA1Ud
DgQWBBQKxIryQIz1TlK30h2eRb4+xGp/ATAfBgNVHSMEGDAWgBQKxIryQIz1TlK3
0h2eRb4+xGp/ATAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIFL/
pG08kTAx6AcSgr24gCnsKAaA9G3YPIpfZuhaWZZLAiEAt3gOBAZH+1SzXrfH7/ft
RjtYluxiqag56G1OdK82NcM=
-----END CERTIFICATE-----
";
const TEST_NODE_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBtDCCAVqgAwIBAgIUfLAsoCH5EA6zlJ80YVemUdDrhogwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQcGFub3B0ZXMgdGVzdCBDQTAgFw0yNjEyMDYwMDI4MTlaGA8y
MTI2MTExMjAwMjgxOVowFDESMBAGA1UEAwwJMTI3LjAuMC4xMFkwEwYHKoZIzj0C
AQYIKoZIzj0DAQcDQgAEEsM1q9jQ+0g2BqkpBN0EoiGNdzfjHfoCfOKdUmyhEcxA
j0gIfQFNAOhcYHZozbNyPBzzSZtLgUBi/jWI2OiHWKOBgDB+MA8GA1UdEQQIMAaH
BH8AAAEwCQYDVR0TBAIwADALBgNVHQ8EBAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUH
AwEwHQYDVR0OBBYEFHl5ut47SWDDibH44Cl7SLx3tZg8MB8GA1UdIwQYMBaAFArE
ivJAjPVOUrfSHZ5Fvj7Ean8BMAoGCCqGSM49BAMCA0gAMEUCICLksSC/2r+AqbQL
UKLlL+40+jpoPNeYjYr+C1TLLOqaAiEAhJ8LJ+Eo2RrsVm+350eW2D8Nj7/uDI/1
jwK0vRVHEJg=
-----END CERTIFICATE-----
";
const TEST_NODE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgHRxfXKIU6TWSLt49
Tr6ixkyCsuGxqP+ivDzr5LcNyeOhRANCAAQSwzWr2ND7SDYGqSkE3QSiIY13N+Md
+gJ84p1SbKERzECPSAh9AU0A6FxgdmjNs3I8HPNJm0uBQGL+NYjY6IdY
-----END PRIVATE KEY-----
";

/// An HTTPS listener with [`TEST_NODE_CERT`], recording decrypted requests (blocking threads:
/// rustls is already a dependency, its async wrapper is not).
fn tls_listener() -> Listener {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::{Read, Write};
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from_pem_slice(TEST_NODE_CERT.as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(TEST_NODE_KEY.as_bytes()).unwrap(),
    )
    .unwrap();
    let config = Arc::new(config);
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", tcp.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    std::thread::spawn(move || {
        for sock in tcp.incoming().flatten() {
            let (config, keep) = (config.clone(), keep.clone());
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, sock);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 16 * 1024];
                loop {
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            let rest = buf.split_off(end + 4 + len);
                            keep.lock()
                                .unwrap()
                                .push(String::from_utf8_lossy(&buf).into_owned());
                            buf = rest;
                            let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                            if tls.write_all(reply.as_bytes()).is_err() {
                                return;
                            }
                            continue;
                        }
                    }
                    match tls.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    Listener { url, seen }
}

#[tokio::test]
async fn https_nodes_are_trusted_through_their_own_ca_bundle_only() {
    let ns = TestNamespace::new("sec-dest-tls").await;
    secret(
        &ns,
        "node-creds",
        &[("login", "flussonic"), ("password", NODE_PASSWORD)],
    )
    .await;
    let pinned = tls_listener();
    let unpinned = tls_listener();
    for (name, url, ca) in [
        ("node-pinned", &pinned.url, Some(TEST_CA)),
        ("node-unpinned", &unpinned.url, None),
    ] {
        let mut spec = json!({ "hostname": name, "apiUrl": url,
            "credentials": { "secretName": "node-creds" } });
        if let Some(ca) = ca {
            spec["caBundle"] = json!(ca);
        }
        apply(
            &ns.api::<Streamer>(),
            json!({ "kind": "Streamer", "metadata": { "name": name }, "spec": spec }),
        )
        .await;
    }
    let _op = Operator::start(&ns);
    // Over HTTPS with its CA, no allowInsecure is needed and the credentials arrive.
    eventually(
        WAIT,
        "the pinned node to be probed with its credentials",
        || async {
            let ok = streamer_condition(&ns, "node-pinned", "Reachable")
                .await
                .is_some_and(|(s, _, _)| s == "True");
            let authed = pinned
                .requests()
                .iter()
                .any(|r| r.to_ascii_lowercase().contains("\r\nauthorization: basic"));
            (ok && authed).then_some(())
        },
    )
    .await;
    // Without the CA the node's certificate is not trusted: nothing is sent.
    let (status, reason, message) = eventually(WAIT, "the unpinned node to be refused", || async {
        streamer_condition(&ns, "node-unpinned", "Reachable")
            .await
            .filter(|(s, _, _)| s == "False")
    })
    .await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "Unreachable"),
        "{message}"
    );
    assert!(unpinned.requests().is_empty(), "{:#?}", unpinned.requests());
}
