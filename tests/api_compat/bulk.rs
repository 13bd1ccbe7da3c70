//! `POST /streams/multiedit` and `POST /streams/zones` (reference §10): all or nothing. Every
//! item is dry-run on the API server first (one bad item: zero writes, 422 naming it); the
//! writes carry resourceVersion preconditions (a concurrent change: 409 naming the item); a
//! failure midway reverts what was written, and the answer says so.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_support::{Facade, WAIT, assert_error, preset, stream};
use crate::support::{TestNamespace, eventually};
use panoptes::resources::{Stream, StreamSpec};

const N: usize = 100;

fn cam(i: usize) -> String {
    format!("cam-{i:03}")
}

/// `N` disabled streams `cam-000`… and a facade that lists them all.
async fn fleet(prefix: &str) -> (TestNamespace, Facade) {
    let ns = TestNamespace::new(prefix).await;
    let f = Facade::start(&ns).await;
    let creates = (0..N).map(|i| {
        let ns = &ns;
        async move {
            stream(
                ns,
                &cam(i),
                json!({"disabled": true, "dvr": {"expiration": 3600}}),
            )
            .await
        }
    });
    futures::future::join_all(creates).await;
    // The zones the items name: a rule naming a zone that does not exist is refused.
    for zone in ["north", "south", "east"] {
        let (s, v) = f.put(&format!("/zones/{zone}"), json!({})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    f.get_until("/zones", "three zones", |v| {
        v["zones"].as_array().is_some_and(|z| z.len() == 3)
    })
    .await;
    f.get_until("/streams?limit=1000", "all streams", |v| {
        v["streams"].as_array().is_some_and(|s| s.len() == N)
    })
    .await;
    (ns, f)
}

/// Every stream's spec and resourceVersion, by object name.
async fn snapshot(ns: &TestNamespace) -> BTreeMap<String, (StreamSpec, String)> {
    ns.api::<Stream>()
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| {
            let rv = s.resource_version().unwrap_or_default();
            (s.name_any(), (s.spec, rv))
        })
        .collect()
}

fn items(f: impl Fn(usize) -> Value) -> Value {
    json!({"streams": (0..N).map(f).collect::<Vec<_>>()})
}

#[tokio::test]
async fn bulk_edits_apply_every_item() {
    let (ns, f) = fleet("compat-bulk-ok").await;
    preset(&ns, "gold", 7, "Gold", 1).await;
    f.get_until("/presets/7", "preset", |_| true).await;
    let (s, v) = f
        .post(
            "/streams/multiedit",
            items(|i| {
                json!({"name": cam(i), "dvr": {"expiration": 60 + i}, "preset_id": 7,
                       "layout_rules": {"required_zones": ["north"]}})
            }),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    // Read-your-writes: the facade answers once its own store shows the edit.
    let (_, got) = f.get("/streams/cam-042").await;
    assert_eq!(got["dvr"]["expiration"], 102, "{got}");
    assert_eq!(got["preset_id"], 7, "{got}");
    assert_eq!(
        got["layout_rules"]["required_zones"],
        json!(["north"]),
        "{got}"
    );
    let after = snapshot(&ns).await;
    for i in 0..N {
        let spec = &after[&cam(i)].0;
        assert_eq!(
            spec.config.dvr.as_ref().unwrap().expiration,
            Some(60 + i as i64)
        );
        assert_eq!(spec.preset_ref.as_deref(), Some("gold"));
        // Members the item did not carry are kept.
        assert_eq!(spec.config.disabled, Some(true));
    }

    // The zones operation: the item shape Panoptes takes, merged member-wise.
    let (s, v) = f
        .post(
            "/streams/zones",
            json!({"streams": [
                {"name": "cam-000", "layout_rules": {"preferred_zones": ["south"]}},
                {"name": "cam-001", "layout_rules": null},
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (_, got) = f.get("/streams/cam-000").await;
    assert_eq!(
        got["layout_rules"],
        json!({"required_zones": ["north"], "preferred_zones": ["south"]}),
        "{got}"
    );
    let (_, got) = f.get("/streams/cam-001").await;
    assert!(got.get("layout_rules").is_none(), "{got}");
    // A stream named like the operation stays a stream for every other method.
    let (s, v) = f.put("/streams/zones", json!({"disabled": true})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let v = f
        .get_until("/streams/zones", "stream zones", |_| true)
        .await;
    assert_eq!(v["name"], "zones", "{v}");
    // A method neither the bulk edit nor a stream takes: 405 allowing both.
    let resp = f
        .http
        .patch(f.url("/streams/multiedit"))
        .bearer_auth(&f.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = resp.headers()["allow"].to_str().unwrap().to_string();
    assert!(allow.contains("POST") && allow.contains("GET"), "{allow}");
    // A repeated edit changes nothing and writes nothing.
    let before = snapshot(&ns).await;
    let (s, _) = f
        .post(
            "/streams/zones",
            json!({"streams": [{"name": "cam-000", "layout_rules": {"preferred_zones": ["south"]}}]}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(snapshot(&ns).await, before);
}

#[tokio::test]
async fn one_bad_item_among_100_writes_nothing() {
    let (ns, f) = fleet("compat-bulk-bad").await;
    let before = snapshot(&ns).await;
    let good = |i: usize| json!({"name": cam(i), "dvr": {"expiration": 10}});
    // Each refusal: status, pointer, and the item named in `meta`.
    let cases: Vec<(Value, u16, &str)> = vec![
        // The API server's own rule (the CRD's maximum), found by the dry run.
        (
            items(|i| {
                if i == 37 {
                    json!({"name": cam(i), "dvr": {"redundancy_factor": 9}})
                } else {
                    good(i)
                }
            }),
            422,
            "/streams/37/dvr/redundancy_factor",
        ),
        (
            items(|i| {
                if i == 60 {
                    json!({"name": "nowhere", "dvr": {"expiration": 10}})
                } else {
                    good(i)
                }
            }),
            422,
            "/streams/60/name",
        ),
        (
            items(|i| {
                if i == 5 {
                    json!({"name": cam(i), "preset_id": 999})
                } else {
                    good(i)
                }
            }),
            422,
            "/streams/5/preset_id",
        ),
        (
            items(|i| {
                if i == 8 {
                    json!({"name": cam(i), "layout_rules": {"required_zones": ["no such/zone"]}})
                } else {
                    good(i)
                }
            }),
            422,
            "/streams/8/layout_rules/required_zones/0",
        ),
        (
            items(|i| {
                if i == 9 {
                    json!({"name": cam(i), "layout_rules": {"preferred_zones": ["nowhere"]}})
                } else {
                    good(i)
                }
            }),
            422,
            "/streams/9/layout_rules/preferred_zones/0",
        ),
        (
            items(|i| if i == 99 { good(0) } else { good(i) }),
            422,
            "/streams/99/name",
        ),
        // Typos, at any depth, and bodies of another shape.
        (
            items(|i| {
                if i == 3 {
                    json!({"name": cam(i), "dvr": {"expiraton": 1}})
                } else {
                    good(i)
                }
            }),
            400,
            "/streams/3/dvr/expiraton",
        ),
        (
            json!({"streams": [{"name": "cam-000", "titel": "x"}]}),
            400,
            "/streams/0/titel",
        ),
        (json!({"streams": {"name": "cam-000"}}), 400, "/streams"),
        (json!([1]), 400, ""),
        (
            json!({"streams": vec![json!({"name": "cam-000"}); 1001]}),
            413,
            "/streams",
        ),
    ];
    for (body, status, pointer) in cases {
        let (s, v) = f.post("/streams/multiedit", body).await;
        assert_error(s, &v, status);
        assert_eq!(v["errors"][0]["source"]["pointer"], pointer, "{v}");
        if status == 422 {
            let index = pointer.split('/').nth(2).unwrap();
            assert_eq!(v["errors"][0]["meta"]["item"], index, "{v}");
        }
    }
    let (s, v) = f
        .post(
            "/streams/zones",
            json!({"streams": [{"name": "cam-000", "dvr": {"expiration": 1}}]}),
        )
        .await;
    assert_error(s, &v, 400);
    assert_eq!(
        snapshot(&ns).await,
        before,
        "a refused bulk edit wrote something"
    );
}

/// A ValidatingAdmissionPolicy refusing item 50 of 100 (`cam-049`) only when the request is
/// not a dry run: every dry run passes, the 50th write fails, the 49 before it are reverted.
#[tokio::test]
async fn a_failure_midway_reverts_what_was_written() {
    let (ns, f) = fleet("compat-bulk-midway").await;
    stream(&ns, "probe", json!({"disabled": true})).await;
    let name = format!("{}-bulk", ns.name);
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["panoptes.dev"], "apiVersions": ["*"],
                "operations": ["UPDATE"], "resources": ["streams"]
            }]},
            "validations": [{
                "expression": "(has(request.dryRun) && request.dryRun) || !(object.metadata.name in ['cam-049', 'probe'])",
                "message": "refused outside dry runs (test policy)"
            }]
        }
    }))
    .unwrap();
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns.name}}}
        }
    }))
    .unwrap();
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(ns.client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(ns.client.clone());
    policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    // The policy is in force once a real write of the probe is refused (and a dry run is not).
    let streams = ns.api::<Stream>();
    let mut n = 0;
    eventually(WAIT, "the test policy in force", || {
        n += 1;
        let streams = streams.clone();
        async move {
            let p = json!({"metadata": {"labels": {"probe": n.to_string()}}});
            let dry = streams
                .patch(
                    "probe",
                    &PatchParams::default().dry_run(),
                    &Patch::Merge(&p),
                )
                .await;
            let real = streams
                .patch("probe", &PatchParams::default(), &Patch::Merge(&p))
                .await;
            (dry.is_ok() && real.is_err()).then_some(())
        }
    })
    .await;
    let before = snapshot(&ns).await;

    let (s, v) = f
        .post(
            "/streams/multiedit",
            items(|i| json!({"name": cam(i), "dvr": {"expiration": 5}, "layout_rules": {"preferred_zones": ["east"]}})),
        )
        .await;
    let _ = bindings.delete(&name, &DeleteParams::default()).await;
    let _ = policies.delete(&name, &DeleteParams::default()).await;
    assert_error(s, &v, 422);
    let e = &v["errors"][0];
    assert_eq!(e["source"]["pointer"], "/streams/49", "{v}");
    assert_eq!(e["meta"]["item"], "49", "{v}");
    assert_eq!(e["meta"]["name"], "cam-049", "{v}");
    let first_49: Vec<String> = (0..49).map(cam).collect();
    assert_eq!(e["meta"]["applied"], first_49.join(","), "{v}");
    assert_eq!(e["meta"]["reverted"], first_49.join(","), "{v}");
    assert_eq!(e["meta"]["unrevertable"], "", "{v}");
    // Every object is back to its before-state; the ones after the failure were never touched.
    let after = snapshot(&ns).await;
    for i in 0..N {
        let (spec, rv) = &after[&cam(i)];
        assert_eq!(spec, &before[&cam(i)].0, "{}", cam(i));
        if i >= 49 {
            assert_eq!(rv, &before[&cam(i)].1, "{} was written", cam(i));
        }
    }
}

/// A write by someone else between the facade's read and its write: 409 naming the item,
/// nothing applied.
#[tokio::test]
async fn a_concurrent_edit_answers_409_and_applies_nothing() {
    let (ns, f) = fleet("compat-bulk-race").await;
    let before = snapshot(&ns).await;
    let streams = ns.api::<Stream>();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Someone keeps editing the last item's labels (not its spec) while the bulk edit runs.
    let racer = tokio::spawn({
        let (streams, stop) = (streams.clone(), stop.clone());
        async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let p = json!({"metadata": {"labels": {"racer": n.to_string()}}});
                streams
                    .patch(&cam(N - 1), &PatchParams::default(), &Patch::Merge(&p))
                    .await
                    .unwrap();
            }
            n
        }
    });
    let (s, v) = f
        .post(
            "/streams/multiedit",
            items(|i| json!({"name": cam(i), "dvr": {"expiration": 7}})),
        )
        .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(racer.await.unwrap() > 0);
    assert_error(s, &v, 409);
    assert_eq!(v["errors"][0]["source"]["pointer"], "/streams/99", "{v}");
    assert_eq!(v["errors"][0]["meta"]["name"], cam(N - 1), "{v}");
    let after = snapshot(&ns).await;
    for i in 0..N {
        assert_eq!(after[&cam(i)].0, before[&cam(i)].0, "{}", cam(i));
    }
}
