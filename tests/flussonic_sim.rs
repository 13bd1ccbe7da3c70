//! The streamer simulator's own fidelity tests: raw HTTP against §5.1 / §5.2 of
//! `shared/reference/streamer-node-api.md`, for behaviour the node client does not exercise.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use streamer_sim::{ArrayMerge, Cluster, ConfigPut, SERVER_HEADER, SimNode, cluster_digest};

struct Http {
    http: reqwest::Client,
    base: String,
    auth: Option<String>,
}

struct Resp {
    status: StatusCode,
    server: String,
    body: Value,
    text: String,
}

impl Http {
    fn new(node: &SimNode) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            // Simulated restarts close connections; a pooled keep-alive connection the node has
            // just closed would fail the next request with IncompleteMessage, so never reuse one.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            base: node.base_url(),
            auth: Some(format!("Basic {}", STANDARD.encode("flussonic:letmein!"))),
        }
    }

    fn with_auth(&self, auth: Option<String>) -> Self {
        Self {
            http: self.http.clone(),
            base: self.base.clone(),
            auth,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let url = if path.starts_with("/_sim") || path.starts_with("/flussonic") {
            format!("{}{path}", self.base)
        } else {
            format!("{}/streamer/api/v3{path}", self.base)
        };
        let mut req = self.http.request(method, url);
        if let Some(a) = &self.auth {
            req = req.header("authorization", a);
        }
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let server = resp
            .headers()
            .get("server")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = resp.text().await.unwrap_or_default();
        Resp {
            status,
            server,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }

    async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }
    async fn put(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(body)).await
    }
    async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body)).await
    }
    async fn delete(&self, path: &str) -> Resp {
        self.call(Method::DELETE, path, None).await
    }
}

fn names(list: &Value) -> Vec<String> {
    list["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_says_simulator_and_errors_use_the_envelope() {
    let cluster = Cluster::start(1).await.unwrap();
    let h = Http::new(cluster.node(0));
    for r in [
        h.get("/config/stats").await,
        h.with_auth(None).get("/config/stats").await,
        h.get("/no/such/path").await,
        h.get("/_sim/state").await,
        h.get("/flussonic/api/v3/config/stats").await,
    ] {
        assert_eq!(r.server, SERVER_HEADER);
    }
    let r = h.with_auth(None).get("/streams").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["errors"][0]["status"], "401");
    let r = h.get("/streams/missing").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["errors"][0]["code"], "not_found");
    let r = h.put("/streams/x", json!("not an object")).await;
    assert_eq!(r.status, 400);
    let r = h.call(Method::PUT, "/streams/x", None).await;
    assert_eq!(r.status, 200, "an empty body is an empty (partial) stream");
    let r = h
        .with_auth(None)
        .call(Method::PUT, "/streams/x", None)
        .await;
    assert_eq!(r.status, 401);
    let bad_json = h
        .http
        .put(format!("{}/streamer/api/v3/streams/y", h.base))
        .header("authorization", h.auth.clone().unwrap())
        .body("{bad")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_json.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_merges_resets_and_validates() {
    let cluster = Cluster::start(1).await.unwrap();
    let node = cluster.node(0);
    let h = Http::new(node);
    let r = h
        .put("/streams/a", json!({"static": true, "title": "t", "bogus": 1, "stats": {"x": 1}, "position": 9, "inputs": [{"url": "fake://a", "zzz": 1}, {"url": "fake://b"}], "dvr": {"root": "/r", "expiration": 5, "redundancy_factor": 2}}))
        .await;
    assert_eq!(r.status, 200);
    let disk = &r.body["config_on_disk"];
    assert_eq!(
        disk,
        &json!({"name": "a", "static": true, "title": "t", "inputs": [{"url": "fake://a"}, {"url": "fake://b"}], "dvr": {"root": "/r", "expiration": 5}})
    );
    assert!(r.body.get("bogus").is_none());
    assert_eq!(r.body["position"], 1);
    assert_eq!(r.body["named_by"], "config");
    assert_eq!(
        r.body["segment_duration"], 2000,
        "effective config carries defaults"
    );

    // Merge: nested objects merge, null deletes a nested key, arrays replace.
    let r = h.put("/streams/a", json!({"dvr": {"expiration": null, "storage_limit": 10}, "inputs": [{"url": "fake://c"}], "title": null})).await;
    assert_eq!(
        r.body["config_on_disk"],
        json!({"name": "a", "static": true, "inputs": [{"url": "fake://c"}], "dvr": {"root": "/r", "storage_limit": 10}})
    );
    // $reset replaces.
    let r = h
        .put(
            "/streams/a",
            json!({"$reset": true, "name": "a", "comment": "only"}),
        )
        .await;
    assert_eq!(
        r.body["config_on_disk"],
        json!({"name": "a", "comment": "only"})
    );
    // Arrays by index (switch for §7 Q2).
    node.update_behaviour(|b| b.array_merge = ArrayMerge::ByIndex);
    h.put(
        "/streams/a",
        json!({"inputs": [{"url": "fake://1", "priority": 1}, {"url": "fake://2"}]}),
    )
    .await;
    let r = h
        .put("/streams/a", json!({"inputs": [{"priority": 2}]}))
        .await;
    assert_eq!(
        r.body["config_on_disk"]["inputs"],
        json!([{"url": "fake://1", "priority": 2}])
    );

    // Validation: pointers, enums, bounds, name mismatch.
    for (body, pointer) in [
        (json!({"pushes": [{"comment": "no url"}]}), "/pushes/0/url"),
        (json!({"segment_count": "3"}), "/segment_count"),
        (json!({"output_audio": "mp3"}), "/output_audio"),
        (
            json!({"inputs": [{"url": "srt://x", "passphrase": "short"}]}),
            "/inputs/0/passphrase",
        ),
        (
            json!({"inputs": [{"url": "x", "max_retry_timeout": 0}]}),
            "/inputs/0/max_retry_timeout",
        ),
        (
            json!({"dvr": {"disk_usage_limit": 150}}),
            "/dvr/disk_usage_limit",
        ),
        (json!({"labels": {"k": ""}}), "/labels/k"),
        (json!({"name": "other"}), "/name"),
    ] {
        let r = h.put("/streams/a", body.clone()).await;
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(
            r.body["errors"][0]["source"]["pointer"], pointer,
            "{body}: {}",
            r.text
        );
    }
    // Capacity limit.
    node.update_behaviour(|b| b.max_streams = Some(1));
    assert_eq!(h.put("/streams/b", json!({})).await.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_positions_and_delete() {
    let cluster = Cluster::start(1).await.unwrap();
    let node = cluster.node(0);
    let h = Http::new(node);
    h.put("/config", json!({"templates": [{"name": "tpl", "prefixes": ["x/"], "dvr": {"root": "/tpl", "expiration": 99}}]})).await;
    h.put("/streams/s1", json!({})).await;
    let r = h
        .put(
            "/streams/s2",
            json!({"template": "tpl", "dvr": {"expiration": 1}}),
        )
        .await;
    assert_eq!(r.body["position"], 2);
    assert_eq!(
        r.body["dvr"],
        json!({"root": "/tpl", "expiration": 1}),
        "template values under the stored ones"
    );
    assert_eq!(r.body["config_on_disk"]["dvr"], json!({"expiration": 1}));

    let (_, rev) = node.config_version();
    assert_eq!(h.delete("/streams/s1").await.status, 200);
    assert_eq!(node.config_version().1, rev + 1);
    assert_eq!(h.get("/streams/s2").await.body["position"], 1);
    assert_eq!(h.delete("/streams/s1").await.status, 404);
    node.update_behaviour(|b| b.delete_unknown_status = 200);
    assert_eq!(h.delete("/streams/s1").await.status, 200);
    assert_eq!(h.post("/streams/s1/stop", json!(null)).await.status, 404);

    // Names: %2F always, raw slash only while the switch allows it.
    assert_eq!(h.put("/streams/live%2Fcam", json!({})).await.status, 200);
    assert_eq!(h.get("/streams/live/cam").await.status, 200);
    node.update_behaviour(|b| b.raw_slash_names = false);
    assert_eq!(h.get("/streams/live/cam").await.status, 404);
    assert_eq!(h.get("/streams/live%2Fcam").await.body["name"], "live/cam");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_life_cycle_is_clock_driven() {
    let cluster = Cluster::start(1).await.unwrap();
    let node = cluster.node(0);
    node.update_behaviour(|b| b.healthy_urls.push("rtsp://*.lan/*".into()));
    let h = Http::new(node);
    cluster.advance(Duration::from_secs(1));
    h.put(
        "/streams/ok",
        json!({"static": true, "inputs": [{"url": "rtsp://cam1.lan/main", "bitrate": 0}]}),
    )
    .await;
    h.put(
        "/streams/bad",
        json!({"static": true, "inputs": [{"url": "rtsp://10.9.9.9/main"}]}),
    )
    .await;
    h.put(
        "/streams/ondemand",
        json!({"inputs": [{"url": "fake://od"}]}),
    )
    .await;
    h.put(
        "/streams/off",
        json!({"static": true, "disabled": true, "inputs": [{"url": "fake://off"}]}),
    )
    .await;
    let s = h.get("/streams/ok").await.body;
    assert_eq!(s["stats"]["status"], "waiting");
    assert_eq!(s["stats"]["alive"], false);

    cluster.advance(Duration::from_millis(2500));
    let s = h.get("/streams/ok").await.body["stats"].clone();
    assert_eq!(s["status"], "running");
    assert_eq!(s["alive"], true);
    assert!(s["bitrate"].as_i64().unwrap() > 0);
    assert!(s["start_running_at"].as_i64().is_some());
    assert_eq!(s["inputs"][0]["active"], true);
    assert!(!s["media_info"]["tracks"].as_array().unwrap().is_empty());
    let lifetime = s["lifetime"].as_f64().unwrap();

    let bad = h.get("/streams/bad").await.body["stats"].clone();
    assert_eq!(bad["alive"], false);
    assert_eq!(bad["status"], "error");
    assert!(bad["source_error"].is_string());
    let retries = bad["inputs"][0]["retries"].as_i64().unwrap();
    assert!(retries >= 2);
    assert_eq!(
        h.get("/streams/ondemand").await.body["stats"]["status"],
        "waiting"
    );
    assert!(h.get("/streams/off").await.body.get("stats").is_none());

    cluster.advance(Duration::from_secs(3));
    assert!(
        h.get("/streams/ok").await.body["stats"]["lifetime"]
            .as_f64()
            .unwrap()
            > lifetime
    );
    assert!(
        h.get("/streams/bad").await.body["stats"]["inputs"][0]["retries"]
            .as_i64()
            .unwrap()
            > retries
    );

    // Viewers through the hook; on-demand starts when played, stops on stop.
    let r = h.post("/_sim/play/ondemand", json!({"clients": 3})).await;
    assert_eq!(r.status, 200);
    cluster.advance(Duration::from_secs(3));
    let od = h.get("/streams/ondemand").await.body["stats"].clone();
    assert_eq!(od["status"], "running");
    assert_eq!(od["online_clients"], 3);
    h.post("/streams/ondemand/stop", json!(null)).await;
    assert_eq!(
        h.get("/streams/ondemand").await.body["stats"]["status"],
        "waiting"
    );

    // Silence: alive turns false once ts_delay passes 12 s.
    h.post("/_sim/silence/ok", json!({"silent": true})).await;
    cluster.advance(Duration::from_secs(5));
    assert_eq!(h.get("/streams/ok").await.body["stats"]["alive"], true);
    cluster.advance(Duration::from_secs(8));
    let s = h.get("/streams/ok").await.body["stats"].clone();
    assert_eq!(s["alive"], false);
    assert!(s["ts_delay"].as_i64().unwrap() > 12_000);
    let stats = h.get("/config/stats").await.body;
    assert_eq!(stats["online_streams"], 0);
    assert_eq!(stats["total_streams"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_select_sort_filter_search_and_cursors() {
    let cluster = Cluster::start(1).await.unwrap();
    let node = cluster.node(0);
    let h = Http::new(node);
    for (name, title, bitrate) in [("c", "Lobby", 100), ("a", "Gate", 300), ("b", "Yard", 200)] {
        h.put(&format!("/streams/{name}"), json!({"static": true, "title": title, "labels": {"zone": if name == "b" { "z2" } else { "z1" }}, "inputs": [{"url": format!("fake://{name}"), "bitrate": bitrate}]})).await;
    }
    node.add_foreign_stream("pub", "user", json!({})).unwrap();
    cluster.advance(Duration::from_secs(3));

    assert_eq!(
        names(&h.get("/streams").await.body),
        ["c", "a", "b", "pub"],
        "named_by, then position"
    );
    assert_eq!(
        names(&h.get("/streams?sort=-name").await.body),
        ["pub", "c", "b", "a"]
    );
    assert_eq!(
        names(
            &h.get("/streams?sort=named_by,-stats.bitrate&named_by=config")
                .await
                .body
        ),
        ["a", "b", "c"]
    );
    assert_eq!(names(&h.get("/streams?q=gate").await.body), ["a"]);
    assert_eq!(names(&h.get("/streams?q=fake://b").await.body), ["b"]);
    assert_eq!(
        names(&h.get("/streams?labels.zone=z1").await.body),
        ["c", "a"]
    );
    assert_eq!(
        names(&h.get("/streams?stats.alive=true&static=true").await.body),
        ["c", "a", "b"]
    );
    assert_eq!(names(&h.get("/streams?named_by=user").await.body), ["pub"]);

    let r = h
        .get("/streams?select=name,stats.alive,inputs.url&limit=2")
        .await
        .body;
    assert_eq!(
        r["streams"][0],
        json!({"name": "c", "stats": {"alive": true}, "inputs": [{"url": "fake://c"}]})
    );
    assert_eq!(r["estimated_count"], 4);
    assert!(r.get("prev").is_none());
    let next = r["next"].as_str().unwrap().to_string();
    let p2 = h.get(&format!("/streams?limit=2&cursor={next}")).await.body;
    assert_eq!(names(&p2), ["b", "pub"]);
    assert!(p2.get("next").is_none());
    let back = h
        .get(&format!(
            "/streams?limit=2&cursor={}",
            p2["prev"].as_str().unwrap()
        ))
        .await
        .body;
    assert_eq!(names(&back), ["c", "a"]);

    let r = h.get("/streams?cursor=garbage!").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["errors"][0]["source"]["parameter"], "cursor");
    assert_eq!(
        h.get("/streams?limit=0").await.body["errors"][0]["source"]["parameter"],
        "limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_config_validation_hashing_and_config_external() {
    let cluster = Cluster::start(1).await.unwrap();
    let node = cluster.node(0);
    let h = Http::new(node);
    let r = h.get("/config").await.body;
    assert_eq!(r["server_id"], node.server_id());
    assert!(r["stats"]["streamer_status"].is_string());

    // POST validates only.
    let r = h.post("/config", json!({"loglevel": "loud"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["error"], "validation_error");
    assert_eq!(r.body["path"], json!(["loglevel"]));
    assert_eq!(
        h.post("/config", json!({"loglevel": "debug", "x": 1}))
            .await
            .body,
        json!({"loglevel": "debug"})
    );
    assert!(node.server_config().get("loglevel").is_none());
    assert_eq!(
        h.put("/config", json!({"loglevel": "loud"})).await.body["errors"][0]["source"]["pointer"],
        "/loglevel"
    );

    // PUT merges (switchable to replace); hashed passwords are stored hashed and still work.
    h.put("/config", json!({"loglevel": "info", "edit_auth": {"login": "flussonic", "password": "letmein!", "hash": true}})).await;
    let cfg = node.server_config();
    assert_eq!(cfg["loglevel"], "info");
    assert_ne!(cfg["edit_auth"]["password"], "letmein!");
    assert_eq!(
        h.get("/config/stats").await.status,
        200,
        "hashed credentials authenticate"
    );
    h.put(
        "/config",
        json!({"edit_auth": {"login": "flussonic", "password": "letmein!", "hash": true}}),
    )
    .await;
    assert_eq!(
        node.server_config()["edit_auth"],
        cfg["edit_auth"],
        "re-sending the same password is no change"
    );
    node.update_behaviour(|b| b.config_put = ConfigPut::Replace);
    h.put(
        "/config",
        json!({"edit_auth": {"login": "flussonic", "password": "letmein!"}, "total_bandwidth": 5}),
    )
    .await;
    assert!(node.server_config().get("loglevel").is_none());

    // config_external: stream writes are refused with 400, streams are named_by external.
    h.put("/streams/s", json!({})).await;
    h.put("/config", json!({"edit_auth": {"login": "flussonic", "password": "letmein!"}, "config_external": "http://backend/"})).await;
    let r = h.put("/streams/s", json!({"title": "x"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["errors"][0]["code"], "config_external");
    assert_eq!(h.delete("/streams/s").await.status, 400);
    assert_eq!(h.get("/streams/s").await.body["named_by"], "external");

    // Probes: no auth needed; readiness fails while starting.
    node.restart().await.unwrap();
    let anon = h.with_auth(None);
    assert_eq!(anon.get("/monitoring/liveness").await.status, 200);
    assert_eq!(anon.get("/monitoring/readiness").await.status, 503);
    cluster.advance(Duration::from_secs(1));
    let r = anon.get("/monitoring/readiness").await;
    assert_eq!(r.status, 200);
    assert!(r.body["now"].as_i64().is_some() && r.body["server_version"].is_string());
    // Clock skew shows in `now`.
    node.update_faults(|f| f.clock_skew_ms = 600_000);
    let skewed = anon.get("/monitoring/liveness").await.body["now"]
        .as_i64()
        .unwrap();
    assert!(skewed - cluster.clock().now_ms() > 500_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_variants_and_switches() {
    let cluster = Cluster::start(1).await.unwrap();
    let node = cluster.node(0);
    let h = Http::new(node);
    let now = cluster.clock().now_ms() / 1000;
    let cluster_auth = |ts: i64, key: &str| {
        Some(format!(
            "Cluster {ts}:{}",
            cluster_digest(&ts.to_string(), key)
        ))
    };
    assert_eq!(
        h.with_auth(cluster_auth(now, "sim-cluster-key"))
            .get("/config/stats")
            .await
            .status,
        200
    );
    assert_eq!(
        h.with_auth(cluster_auth(now - 3600, "sim-cluster-key"))
            .get("/config/stats")
            .await
            .status,
        401,
        "outside the window"
    );
    node.update_behaviour(|b| b.cluster_auth_window_s = None);
    assert_eq!(
        h.with_auth(cluster_auth(now - 3600, "sim-cluster-key"))
            .get("/config/stats")
            .await
            .status,
        200
    );

    let bearer_key = h.with_auth(Some("Bearer sim-cluster-key".into()));
    assert_eq!(bearer_key.get("/config/stats").await.status, 401);
    node.update_behaviour(|b| b.bearer_accepts_cluster_key = true);
    assert_eq!(bearer_key.get("/config/stats").await.status, 200);

    let viewer = h.with_auth(Some(format!(
        "Bearer {}",
        STANDARD.encode("viewer:viewonly")
    )));
    assert_eq!(viewer.get("/streams").await.status, 200);
    assert_eq!(viewer.put("/streams/x", json!({})).await.status, 403);
    node.update_behaviour(|b| b.forbidden_status = 401);
    assert_eq!(viewer.put("/streams/x", json!({})).await.status, 401);

    node.update_behaviour(|b| b.probes_require_auth = true);
    assert_eq!(
        h.with_auth(None).get("/monitoring/liveness").await.status,
        401
    );
    node.set_tokens(&["t1"]);
    assert_eq!(
        h.get("/api_tokens").await.body["api_tokens"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_and_sources_crud_with_simulated_stats() {
    let cluster = Cluster::start(2).await.unwrap();
    let (a, b) = (cluster.node(0), cluster.node(1));
    let h = Http::new(a);
    let peer = b.hostname().to_string();
    let r = h
        .put(
            &format!("/cluster/peers/{peer}"),
            json!({"api_url": b.base_url(), "cluster_key": "k", "junk": 1}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["hostname"], peer);
    assert_eq!(
        r.body["stats"]["hostname"], peer,
        "stats from the simulated peer"
    );
    assert!(r.body.get("junk").is_none());
    let r = h
        .put(
            &format!("/cluster/peers/{peer}"),
            json!({"channel_limit": 10, "cluster_key": null}),
        )
        .await;
    assert_eq!(r.body["channel_limit"], 10);
    assert!(r.body.get("cluster_key").is_none());
    assert_eq!(
        h.get("/cluster/peers").await.body["peers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        a.server_config()["peers"][0]["hostname"],
        peer,
        "peers live in the server config"
    );
    b.down().await;
    assert_eq!(
        h.get(&format!("/cluster/peers/{peer}")).await.body["stats"]["error"],
        "econnrefused"
    );
    b.up().await.unwrap();
    assert_eq!(
        h.put(&format!("/cluster/peers/{peer}"), json!({"cpu_limit": 101}))
            .await
            .status,
        400
    );
    assert_eq!(
        h.delete(&format!("/cluster/peers/{peer}")).await.status,
        200
    );
    assert_eq!(h.get(&format!("/cluster/peers/{peer}")).await.status, 404);

    // Sources are keyed by URL: raw or percent-encoded.
    let url = format!("m4f://{}", b.addr());
    let r = h
        .put(
            &format!("/cluster/sources/{url}"),
            json!({"only": ["cam*"], "cluster_key": "k"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["url"], url);
    assert_eq!(r.body["stats"]["hostname"], b.hostname());
    let encoded = url.replace(':', "%3A").replace('/', "%2F");
    assert_eq!(
        h.get(&format!("/cluster/sources/{encoded}")).await.body["only"],
        json!(["cam*"])
    );
    assert_eq!(
        h.delete(&format!("/cluster/sources/{encoded}"))
            .await
            .status,
        200
    );
    assert_eq!(h.get("/cluster/sources").await.body["sources"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_endpoint_drives_faults_over_http() {
    let mut cluster = Cluster::start(2).await.unwrap();
    let ctl_addr = cluster
        .serve_control("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let node = cluster.node(1);
    let h = Http::new(node);
    let ctl = reqwest::Client::new();
    let nodes: Value = ctl
        .get(format!("http://{ctl_addr}/_sim/nodes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(nodes["nodes"].as_array().unwrap().len(), 2);
    let n1 = format!("http://{ctl_addr}/_sim/nodes/{}", node.hostname());

    let r: Value = ctl
        .put(format!("{n1}/faults"))
        .body(r#"{"fail_next":1,"fail_next_status":502}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["fail_next"], 1);
    assert_eq!(h.get("/config/stats").await.status, 502);
    assert_eq!(h.get("/config/stats").await.status, 200);

    let r = ctl.post(format!("{n1}/down")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        reqwest::get(format!("{}/streamer/api/v3/config/stats", node.base_url()))
            .await
            .is_err(),
        "connection refused"
    );
    ctl.post(format!("{n1}/up")).send().await.unwrap();
    assert_eq!(h.get("/config/stats").await.status, 200);

    // Drift and foreign streams through the node's own /_sim.
    h.put("/streams/cam", json!({"title": "mine"})).await;
    let (_, rev) = node.config_version();
    assert_eq!(
        h.put("/_sim/drift/streams/cam", json!({"title": "theirs"}))
            .await
            .status,
        200
    );
    assert_eq!(node.config_version().1, rev + 1);
    assert_eq!(
        h.get("/streams/cam").await.body["config_on_disk"]["title"],
        "theirs"
    );
    assert_eq!(
        h.post("/_sim/foreign/remote1", json!({"named_by": "remote"}))
            .await
            .status,
        200
    );
    assert_eq!(h.get("/streams/remote1").await.body["named_by"], "remote");
    assert_eq!(h.delete("/_sim/drift/streams/cam").await.status, 200);
    assert_eq!(h.get("/streams/cam").await.status, 404);

    // Credentials rotated over the control endpoint.
    h.put(
        "/_sim/auth",
        json!({"edit_auth": {"login": "new", "password": "pw"}}),
    )
    .await;
    assert_eq!(h.get("/config/stats").await.status, 401);
    assert_eq!(
        h.with_auth(Some(format!("Basic {}", STANDARD.encode("new:pw"))))
            .get("/config/stats")
            .await
            .status,
        200
    );

    // Restart on the node's own port answers first, then drops connections.
    let before = node.instance_id();
    assert_eq!(h.post("/_sim/restart", json!({})).await.status, 202);
    for _ in 0..100 {
        if node.instance_id() != before && node.is_up() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_ne!(node.instance_id(), before);
    let counters = h.get("/_sim/counters").await.body;
    assert!(counters["total"].as_u64().unwrap() >= 5);
}

/// The restart counter judges "no outage": a save that changes a stored stream only in its
/// metadata (an ownership label, a comment) is a metadata write, any other change (an input, a
/// DVR setting) and a stop are restarts; creating a stream and a no-op save are neither.
#[tokio::test]
async fn restarts_are_counted_apart_from_metadata_writes() {
    let cluster = Cluster::start(1).await.unwrap();
    let node = cluster.node(0);
    let h = Http::new(node);
    let cam = json!({"$reset": true, "name": "cam", "static": true, "title": "Gate",
                     "inputs": [{"url": "fake://cam"}], "dvr": {"root": "/r", "expiration": 60}});
    assert_eq!(h.put("/streams/cam", cam.clone()).await.status, 200);
    assert_eq!(h.put("/streams/cam", cam.clone()).await.status, 200);
    assert_eq!(node.restarts_total(), 0, "a create and a no-op save");
    let mut labelled = cam.clone();
    labelled["labels"] = json!({"managed-by": "panoptes"});
    labelled["comment"] = json!("adopted");
    h.put("/streams/cam", labelled.clone()).await;
    let c = node.counters();
    assert_eq!(c.metadata_writes.get("cam"), Some(&1));
    assert_eq!(node.restarts("cam"), 0);
    let mut dvr = labelled.clone();
    dvr["dvr"]["expiration"] = json!(120);
    h.put("/streams/cam", dvr.clone()).await;
    assert_eq!(node.restarts("cam"), 1, "a DVR change restarts");
    dvr["inputs"] = json!([{"url": "fake://other"}]);
    h.put("/streams/cam", dvr).await;
    assert_eq!(node.restarts("cam"), 2, "an input change restarts");
    h.post("/streams/cam/stop", json!({})).await;
    assert_eq!(node.restarts("cam"), 3, "a stop is a restart");
    h.delete("/streams/cam").await;
    assert_eq!(node.restarts("cam"), 3);
    assert_eq!(node.counters().metadata_writes.get("cam"), Some(&1));
}
