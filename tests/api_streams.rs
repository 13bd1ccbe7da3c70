//! Facade stream operations on a real API server: save (create, merge, `$reset`, name rules,
//! references, credentials to Secrets), get, delete with `part`, names with `/`, list query
//! semantics through HTTP (select, sort, q, cursors while items are added, the last page
//! without `next`), layouts, both previews (real layouter, nothing written), camera config
//! and firmware upload to a simulated node.

mod api_support;
mod support;

use api_support::{Facade, assert_error, example, org, preset, set_status, stream, streamer};
use k8s_openapi::api::core::v1::Secret;
use panoptes::flussonic::{
    Credentials, NodeClient, NodeClientConfig, NodeMetrics, node_stream_body,
};
use panoptes::resources::Stream;
use panoptes::resources::wire::{ServerStats, StreamStats};
use panoptes::state::StreamLive;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{TestNamespace, eventually};

fn fake_input() -> Value {
    json!([{"url": "fake://fake"}])
}

#[tokio::test]
async fn stream_save_get_delete() {
    let ns = TestNamespace::new("api-streams").await;
    let f = Facade::start(&ns).await;
    org(&ns, "acme", 9, "Acme", &[]).await;
    preset(&ns, "basic", 3, "Basic", 0).await;
    f.get_until("/presets/3", "preset visible", |_| true).await;
    eventually(api_support::WAIT, "org in store", || async {
        (f.state.stores.organizations.state().len() == 1).then_some(())
    })
    .await;

    // The reference's example request creates the stream (read-only `layout` ignored).
    let (s, v) = f
        .put("/streams/cam1", example("16_stream_save_request.json"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "cam1");
    assert_eq!(v["title"], "Hockey channel");
    assert_eq!(v["organization_id"], 9);
    assert_eq!(v["organization"], json!({"id": 9, "title": "Acme"}));
    assert!(v.get("preset_id").is_none(), "preset_id 0 means none: {v}");
    assert!(v.get("layout").is_none(), "layout is read-only: {v}");
    assert_eq!(v["inputs"][0]["url"], "fake://fake");
    f.get_until("/streams/cam1", "stream visible", |v| {
        v["title"] == "Hockey channel"
    })
    .await;

    // Partial update: members not sent are kept; references by id.
    let (s, v) = f
        .put("/streams/cam1", json!({"title": "Gate", "preset_id": 3}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["title"], "Gate");
    assert_eq!(v["comment"], "This is a test stream");
    assert_eq!(v["preset"], json!({"id": 3, "title": "Basic"}));
    assert_eq!(v["inputs"][0]["url"], "fake://fake");

    // `$reset`: exactly the body.
    let (s, v) = f
        .put(
            "/streams/cam1",
            json!({"$reset": true, "inputs": [{"url": "fake://other"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        v.get("title").is_none() && v.get("comment").is_none() && v.get("dvr").is_none(),
        "{v}"
    );
    assert_eq!(v["inputs"], json!([{"url": "fake://other"}]));

    // Errors: name mismatch, bad name, unknown organization, enabled stream without input.
    let (s, v) = f.put("/streams/cam1", json!({"name": "other"})).await;
    assert_error(s, &v, 400);
    assert_eq!(v["errors"][0]["source"]["pointer"], "/name");
    let (s, v) = f
        .put("/streams/a%20b", json!({"inputs": fake_input()}))
        .await;
    assert_error(s, &v, 400);
    let (s, v) = f
        .put(
            "/streams/cam2",
            json!({"inputs": fake_input(), "organization_id": 77}),
        )
        .await;
    assert_error(s, &v, 422);
    let (s, v) = f.put("/streams/cam2", json!({"title": "no input"})).await;
    assert_error(s, &v, 422);
    let (s, v) = f.put("/streams/cam2", json!({"inputs": "nope"})).await;
    assert_error(s, &v, 400);

    // Names with `/`: raw segments and %2F address the same stream.
    let (s, v) = f
        .put(
            "/streams/mylive/bunny",
            json!({"inputs": fake_input(), "title": "Bunny"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "mylive/bunny");
    let v = f
        .get_until("/streams/mylive%2Fbunny", "slash stream", |_| true)
        .await;
    assert_eq!(v["title"], "Bunny");
    let (s, v) = f.get("/streams/mylive/bunny/layouts").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["layouts"], json!([]));
    assert!(v.get("next").is_none());

    // Camera credentials in URLs go to a Secret and never come back.
    let (s, v) = f
        .put(
            "/streams/cam3",
            json!({"inputs": [{"url": "rtsp://admin:hunter2@10.0.0.5/live"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["inputs"][0]["url"], "rtsp://10.0.0.5/live");
    assert!(!v.to_string().contains("hunter2"));
    let stored: Stream = ns.api::<Stream>().get("cam3").await.unwrap();
    let secret_name = stored.spec.facade_credentials.unwrap().secret_name;
    let secret = ns.api::<Secret>().get(&secret_name).await.unwrap();
    assert_eq!(secret.data.unwrap()["password"].0, b"hunter2");
    let (_, list) = f.get("/streams").await;
    assert!(!list.to_string().contains("hunter2"));

    // Delete: `config_override` keeps the stream (Panoptes has no override layer).
    let (s, _) = f.delete("/streams/cam1?part=config_override").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(ns.api::<Stream>().get_opt("cam1").await.unwrap().is_some());
    let (s, v) = f.delete("/streams/cam1?part=bogus").await;
    assert_error(s, &v, 400);
    let (s, _) = f.delete("/streams/cam1").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    eventually(api_support::WAIT, "stream gone", || async {
        let (s, _) = f.get("/streams/cam1").await;
        (s == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    let (s, v) = f.delete("/streams/cam1").await;
    assert_error(s, &v, 404);
}

#[tokio::test]
async fn list_query_semantics_over_http() {
    let ns = TestNamespace::new("api-streams").await;
    let f = Facade::start(&ns).await;
    for i in 0..25 {
        let title = if i % 5 == 0 {
            format!("Gate {i}")
        } else {
            format!("Hall {i}")
        };
        stream(
            &ns,
            &format!("cam{i:02}"),
            json!({"inputs": [{"url": format!("fake://{i}")}], "title": title}),
        )
        .await;
    }
    eventually(api_support::WAIT, "25 streams", || async {
        (f.state.stores.streams.state().len() == 25).then_some(())
    })
    .await;

    // Default order: name; pages of 10; the last page has no `next` member at all.
    let mut seen = Vec::new();
    let (s, first) = f.get("/streams?limit=10&select=name,title").await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(first["estimated_count"], 25);
    assert!(first.get("prev").is_none());
    assert_eq!(
        first["streams"][0],
        json!({"name": "cam00", "title": "Gate 0"})
    );
    seen.extend(
        first["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string()),
    );
    // Items added before and after the cursor between pages: no repeats, no skips of
    // pre-existing items.
    stream(&ns, "cam00a", json!({"inputs": fake_input()})).await;
    stream(&ns, "cam99", json!({"inputs": fake_input()})).await;
    eventually(api_support::WAIT, "27 streams", || async {
        (f.state.stores.streams.state().len() == 27).then_some(())
    })
    .await;
    let mut next = first["next"].as_str().unwrap().to_string();
    let last;
    loop {
        let (s, page) = f
            .get(&format!(
                "/streams?limit=10&select=name,title&cursor={next}"
            ))
            .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        assert!(page["prev"].is_string(), "later pages link back");
        seen.extend(
            page["streams"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["name"].as_str().unwrap().to_string()),
        );
        match page.get("next") {
            Some(n) => {
                next = n
                    .as_str()
                    .expect("next is a string, never empty")
                    .to_string()
            }
            None => {
                last = page;
                break;
            }
        }
    }
    assert!(last.get("next").is_none());
    let mut dedup = seen.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), seen.len(), "no repeats: {seen:?}");
    for i in 0..25 {
        assert!(seen.contains(&format!("cam{i:02}")), "cam{i:02} skipped");
    }
    assert!(seen.contains(&"cam99".to_string()) && !seen.contains(&"cam00a".to_string()));

    // Sort descending, q search, filters, select of nested paths.
    let (_, v) = f.get("/streams?sort=-name&limit=2&select=name").await;
    assert_eq!(v["streams"], json!([{"name": "cam99"}, {"name": "cam24"}]));
    let (_, v) = f.get("/streams?q=gate&select=name").await;
    assert_eq!(v["estimated_count"], 5);
    let (_, v) = f.get("/streams?title_like=hall&select=name").await;
    assert_eq!(v["estimated_count"], 20);
    let (_, v) = f.get("/streams?name=cam03&select=inputs.url").await;
    assert_eq!(v["streams"], json!([{"inputs": [{"url": "fake://3"}]}]));
    let (s, v) = f.get("/streams?bogus=1").await;
    assert_error(s, &v, 400);
    assert_eq!(v["errors"][0]["source"]["parameter"], "bogus");
    let (s, v) = f.get("/streams?cursor=garbage").await;
    assert_error(s, &v, 400);
}

/// Two healthy streamers, `n1` ingesting `cam`.
async fn placed(ns: &TestNamespace, f: &Facade) {
    for h in ["n1", "n2"] {
        streamer(ns, h, json!({"hostname": h})).await;
        f.live.update_node(h, |n| {
            n.reachable = true;
            n.ready = true;
            n.server = Some(ServerStats {
                cpu_usage: Some(12),
                memory_usage: Some(30),
                input_kbit: Some(1000),
                output_kbit: Some(500),
                uptime: Some(60),
                ..Default::default()
            });
        });
    }
    stream(ns, "cam", json!({"inputs": fake_input(), "title": "Cam"})).await;
    stream(ns, "off", json!({"disabled": true})).await;
    set_status::<Stream>(ns, "cam", json!({"layout": {"ingest": "n1", "dvr_backups": [], "created_at": 1000, "originator": "layouter", "change_reason": "not_distributed", "node_layout_decisions": [], "ingest_history": [{"created_at": 1000, "ingest": "n1", "originator": "layouter"}]}})).await;
    f.live.update_node("n1", |n| {
        n.streams.insert(
            "cam".into(),
            StreamLive {
                stats: Some(StreamStats {
                    alive: Some(true),
                    bitrate: Some(900),
                    ..Default::default()
                }),
                managed: true,
            },
        );
    });
    eventually(api_support::WAIT, "placement in store", || async {
        let ok = f.state.stores.streamers.state().len() == 2
            && f.state
                .stores
                .streams
                .state()
                .iter()
                .any(|s| s.status.as_ref().is_some_and(|st| st.layout.is_some()));
        ok.then_some(())
    })
    .await;
}

#[tokio::test]
async fn layouts_previews_stats_and_health() {
    let ns = TestNamespace::new("api-streams").await;
    let f = Facade::start(&ns).await;
    placed(&ns, &f).await;

    // Live stats from the ingest node.
    let (_, v) = f.get("/streams/cam").await;
    assert_eq!(v["stats"]["alive"], true);
    assert_eq!(v["stats"]["bitrate"], 900);
    let (_, v) = f.get("/streams?stats.alive=true&select=name").await;
    assert_eq!(v["streams"], json!([{"name": "cam"}]));

    // Layouts: the current record; history only on request.
    let (s, v) = f.get("/streams/cam/layouts").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["layouts"][0]["ingest"], "n1");
    assert!(v["layouts"][0].get("ingest_history").is_none());
    let (_, v) = f
        .get("/streams/cam/layouts?include_ingest_history=true")
        .await;
    assert_eq!(v["layouts"][0]["ingest_history"][0]["ingest"], "n1");
    let (_, v) = f.get("/streams/cam/layouts?created_at_gt=5000").await;
    assert_eq!(v["layouts"], json!([]));

    // Stream preview: one DVR backup more would land on n2. No cursor, nothing written.
    let (s, v) = f
        .post(
            "/streams/cam/preview_layout_change",
            json!({"dvr": {"redundancy_factor": 1}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v.get("next").is_none() && v.get("prev").is_none());
    assert_eq!(v["changes"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["changes"][0]["name"], "cam");
    assert_eq!(v["changes"][0]["ingest"], "n1");
    assert_eq!(v["changes"][0]["dvr_backups"], json!(["n2"]));
    let (_, v) = f
        .post(
            "/streams/cam/preview_layout_change",
            json!({"title": "only a title"}),
        )
        .await;
    assert_eq!(v["changes"], json!([]));
    // The reference's example body: its organization id must exist, as for a save.
    let body = example("19_preview_layout_change_for_stream_config_request.json");
    let (s, v) = f
        .post("/streams/cam/preview_layout_change", body.clone())
        .await;
    assert_error(s, &v, 422);
    org(&ns, "acme", 9, "Acme", &[]).await;
    eventually(api_support::WAIT, "org in store", || async {
        (f.state.stores.organizations.state().len() == 1).then_some(())
    })
    .await;
    let (s, v) = f.post("/streams/cam/preview_layout_change", body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["changes"][0]["dvr_backups"], json!(["n2"]), "{v}");
    let stored: Stream = ns.api::<Stream>().get("cam").await.unwrap();
    assert!(stored.spec.config.dvr.is_none(), "a preview writes nothing");

    // Streamer preview: n1 turning into an inference node hands its stream to n2.
    let (s, v) = f
        .post(
            "/streamers/n1/preview_layout_change",
            json!({"role": "inference"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["changes"],
        json!([
            {"hostname": "n1", "role": "ingest", "before": 1, "after": 0, "delta": -1},
            {"hostname": "n2", "role": "ingest", "before": 0, "after": 1, "delta": 1},
        ])
    );
    let (_, v) = f
        .post(
            "/streamers/n1/preview_layout_change",
            example("07_preview_layout_change_for_streamer_config_request.json"),
        )
        .await;
    assert!(v["changes"].is_array(), "{v}");

    // Cluster health, JSON and OpenMetrics.
    let (s, v) = f.get("/cluster/stats").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["stream_metrics_total"],
        json!({"operational": 1, "degradated": 0, "partial_outage": 0, "outage": 0, "disabled": 1, "total": 2})
    );
    assert_eq!(v["streamer_metrics_total"]["operational"], 2);
    assert_eq!(
        v["streamer_bitrate_metrics_total"],
        json!({"input_kbit": 2000, "output_kbit": 1000})
    );
    let n1 = &v["streamer_metrics"][0];
    assert_eq!(n1["hostname"], "n1");
    assert_eq!(n1["stream_metrics"]["operational"], 1);
    assert_eq!(n1["cpu"], json!({"usage": 12, "status": "operational"}));
    f.live.update_node("n2", |n| n.ready = false);
    let (_, v) = f.get("/cluster/stats").await;
    assert_eq!(v["streamer_metrics"][1]["status"], "partial_outage");
    f.live.update_node("n1", |n| {
        n.streams
            .get_mut("cam")
            .unwrap()
            .stats
            .as_mut()
            .unwrap()
            .alive = Some(false);
    });
    // A stream's live numbers may lag the node report by up to a second (the facade's
    // snapshot refreshes live stats at most once a second).
    let v = eventually(api_support::WAIT, "the outage shows", || async {
        let (_, v) = f.get("/cluster/stats").await;
        (v["stream_metrics_total"]["outage"] == 1).then_some(v)
    })
    .await;
    assert_eq!(v["stream_metrics_total"]["outage"], 1);
    assert_eq!(
        v["streamer_metrics"][0]["stream_metrics"]["status"],
        "outage"
    );
    let resp = f
        .http
        .get(f.url("/cluster/stats?format=openmetrics"))
        .bearer_auth(&f.token)
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = resp.text().await.unwrap();
    assert!(text.contains("watcher_stream_outage_count 1"), "{text}");
    assert!(
        text.contains("watcher_streamer_cpu_usage{hostname=\"n1\"} 12"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));
    let (s, v) = f.get("/cluster/stats?format=xml").await;
    assert_error(s, &v, 400);
}

#[tokio::test]
async fn camera_config_and_firmware_upload() {
    let ns = TestNamespace::new("api-streams").await;
    let f = Facade::start(&ns).await;
    let cluster = streamer_sim::Cluster::start(1).await.unwrap();
    let node = cluster.node(0);
    let host = node.hostname().to_string();
    let client = NodeClient::new(
        NodeClientConfig::new(
            &host,
            node.base_url(),
            Credentials::basic("flussonic", "letmein!"),
        )
        .allow_insecure(true),
        NodeMetrics::new(),
    )
    .unwrap();
    client
        .stream_save(&node_stream_body(
            "cam",
            &serde_json::from_value(json!({"inputs": fake_input()})).unwrap(),
        ))
        .await
        .unwrap();
    f.nodes.insert(client);
    streamer(
        &ns,
        "node",
        json!({"hostname": host, "apiUrl": node.base_url()}),
    )
    .await;
    stream(&ns, "cam", json!({"inputs": fake_input()})).await;
    stream(&ns, "unplaced", json!({"inputs": fake_input()})).await;
    set_status::<Stream>(
        &ns,
        "cam",
        json!({"layout": {"ingest": host, "dvr_backups": []}}),
    )
    .await;
    f.get_until("/streams/cam", "placed stream", |v| {
        v["layout"]["ingest"].is_string()
    })
    .await;
    f.get_until("/streams/unplaced", "unplaced stream", |_| true)
        .await;

    // Camera config: empty, saved (the example), read back; partial saves merge.
    let (s, v) = f.get("/streams/cam/camera_config").await;
    assert_eq!((s, v), (StatusCode::OK, json!({})));
    let body = example("21_camera_config_save_request.json");
    let (s, v) = f.put("/streams/cam/camera_config", body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, example("21_camera_config_save_response.json"));
    f.get_until("/streams/cam/camera_config", "camera config", |v| {
        *v == body
    })
    .await;
    let (_, v) = f
        .put(
            "/streams/cam/camera_config",
            json!({"media_quality": "high"}),
        )
        .await;
    assert_eq!(v["media_quality"], "high");
    assert_eq!(v["sensor"]["brightness_correction"], 100);
    let (s, v) = f
        .put(
            "/streams/cam/camera_config",
            json!({"sensor": {"sharpness": 500}}),
        )
        .await;
    assert_error(s, &v, 422);
    let (s, v) = f
        .put(
            "/streams/cam/camera_config",
            json!({"media_quality": "ultra"}),
        )
        .await;
    assert_error(s, &v, 400);
    let (s, v) = f.get("/streams/nope/camera_config").await;
    assert_error(s, &v, 404);

    // Firmware: JSON with a base64 image, the reference's example, and a raw upload.
    let (s, v) = f
        .put(
            "/streams/cam/firmware_update",
            json!({"image": "RklSTVdBUkU=", "proto": "isapi"}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, v) = f
        .put(
            "/streams/cam/firmware_update",
            example("22_stream_firmware_update_request.json"),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let resp = f
        .http
        .put(f.url("/streams/cam/firmware_update?proto=xm"))
        .bearer_auth(&f.token)
        .header("content-type", "application/octet-stream")
        .body(vec![0u8, 1, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let mut form = b"--XB\r\nContent-Disposition: form-data; name=\"proto\"\r\n\r\nsputnik\r\n--XB\r\nContent-Disposition: form-data; name=\"image\"; filename=\"fw.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
    form.extend_from_slice(&[9, 8, 7]);
    form.extend_from_slice(b"\r\n--XB--\r\n");
    let resp = f
        .http
        .put(f.url("/streams/cam/firmware_update"))
        .bearer_auth(&f.token)
        .header("content-type", "multipart/form-data; boundary=XB")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::NO_CONTENT,
        "{}",
        resp.text().await.unwrap()
    );
    let uploads = node.firmware_uploads();
    assert_eq!(uploads.len(), 4);
    assert_eq!(
        (uploads[3].proto.as_str(), uploads[3].image.as_slice()),
        ("sputnik", &[9u8, 8, 7][..])
    );
    assert_eq!(
        (
            uploads[0].stream.as_str(),
            uploads[0].proto.as_str(),
            uploads[0].image.as_slice()
        ),
        ("cam", "isapi", &b"FIRMWARE"[..])
    );
    assert_eq!(uploads[1].proto, "iris");
    assert_eq!(uploads[2].image, vec![0, 1, 2, 3]);
    let (s, v) = f
        .put(
            "/streams/cam/firmware_update",
            json!({"image": "AAAA", "proto": "telnet"}),
        )
        .await;
    assert_error(s, &v, 400);
    let (s, v) = f
        .put("/streams/cam/firmware_update", json!({"proto": "iris"}))
        .await;
    assert_error(s, &v, 400);
    let (s, v) = f
        .put(
            "/streams/unplaced/firmware_update",
            json!({"image": "AAAA"}),
        )
        .await;
    assert_error(s, &v, 409);
    node.down().await;
    let (s, v) = f
        .put("/streams/cam/firmware_update", json!({"image": "AAAA"}))
        .await;
    assert_error(s, &v, 502);
}

/// Live stats that move (a node list every few seconds moves most streams' bitrates) are
/// patched into the renderings the lists keep, not rendered again: at 100,000 streams a
/// re-render of thousands of streams per refresh made every list wait. The lists still
/// show the new stats, filter and sort by them, and match a single read.
#[tokio::test]
async fn moved_live_stats_re_render_no_stream_and_lists_show_them() {
    let ns = TestNamespace::new("api-streams").await;
    let f = Facade::start(&ns).await;
    streamer(&ns, "n1", json!({"hostname": "n1"})).await;
    f.live.update_node("n1", |n| {
        n.reachable = true;
        n.ready = true;
    });
    let names: Vec<String> = (0..6).map(|i| format!("cam{i}")).collect();
    for name in &names {
        stream(&ns, name, json!({"inputs": fake_input(), "title": name})).await;
        set_status::<Stream>(&ns, name, json!({"layout": {"ingest": "n1", "dvr_backups": [], "created_at": 1000, "originator": "layouter", "change_reason": "not_distributed", "node_layout_decisions": []}})).await;
    }
    let report = |bitrates: &[(usize, Option<i64>)]| {
        let bitrates = bitrates.to_vec();
        f.live.update_node("n1", move |n| {
            for (i, bitrate) in bitrates {
                n.streams.insert(
                    format!("cam{i}"),
                    StreamLive {
                        stats: bitrate.map(|b| StreamStats {
                            alive: Some(true),
                            bitrate: Some(b),
                            ..Default::default()
                        }),
                        managed: true,
                    },
                );
            }
        });
    };
    report(
        &(0..6)
            .map(|i| (i, Some(100 * i as i64)))
            .collect::<Vec<_>>(),
    );
    let sorted = "/streams?sort=-stats.bitrate&select=name,stats.bitrate";
    let order = |v: &Value| -> Vec<(String, Value)> {
        v["streams"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (
                    s["name"].as_str().unwrap_or("").to_string(),
                    s["stats"]["bitrate"].clone(),
                )
            })
            .collect()
    };
    let expect = |pairs: &[(usize, Value)]| -> Vec<(String, Value)> {
        pairs
            .iter()
            .map(|(i, b)| (format!("cam{i}"), b.clone()))
            .collect()
    };
    let first = expect(&[
        (5, json!(500)),
        (4, json!(400)),
        (3, json!(300)),
        (2, json!(200)),
        (1, json!(100)),
        (0, json!(0)),
    ]);
    eventually(
        api_support::WAIT,
        "every stream placed and reporting",
        || async {
            let (_, v) = f.get(sorted).await;
            (order(&v) == first).then_some(())
        },
    )
    .await;
    let renders = f.state.metrics.stream_renders.get();

    // Only the live report moves: new bitrates, one stream's stats gone.
    report(&[(0, Some(900)), (1, Some(50)), (2, None), (4, Some(450))]);
    let moved = expect(&[
        (0, json!(900)),
        (5, json!(500)),
        (4, json!(450)),
        (3, json!(300)),
        (1, json!(50)),
    ]);
    eventually(
        api_support::WAIT,
        "the lists show the moved stats",
        || async {
            let (_, v) = f.get(sorted).await;
            let mut o = order(&v);
            o.retain(|(_, b)| !b.is_null());
            (v["estimated_count"] == 6 && o == moved).then_some(())
        },
    )
    .await;
    assert_eq!(
        f.state.metrics.stream_renders.get(),
        renders,
        "live stats alone re-render no stream"
    );
    let (_, v) = f.get("/streams?stats.bitrate_gte=400&select=name").await;
    assert_eq!(
        v["streams"],
        json!([{"name": "cam0"}, {"name": "cam4"}, {"name": "cam5"}])
    );
    let (_, patched) = f.get("/streams").await;
    assert!(
        patched["streams"][2].get("stats").is_none(),
        "{}",
        patched["streams"][2]
    );
    assert_eq!(patched["streams"][0]["stats"]["bitrate"], 900);

    // A patched item is what a full render gives: touch every Stream (a store change renders
    // them again) and compare, `stats` member included or left out.
    let api: kube::Api<Stream> = kube::Api::namespaced(ns.client.clone(), &ns.name);
    for name in &names {
        let touch = json!({"metadata": {"annotations": {"test/touched": "1"}}});
        api.patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&touch),
        )
        .await
        .unwrap();
    }
    let rendered = eventually(api_support::WAIT, "every stream rendered again", || async {
        // A list builds the renderings.
        let (_, v) = f.get("/streams").await;
        (f.state.metrics.stream_renders.get() >= renders + names.len() as u64).then_some(v)
    })
    .await;
    assert_eq!(rendered["streams"], patched["streams"]);
}
