//! Reporting follows one policy for every kind: `reconciles_total{kind,outcome}`, which the
//! README documents for every kind, is counted for every kind.

use std::time::Duration;

use kube::api::{Api, PostParams};
use panoptes::resources::{Organization, Preset, User};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::support::operator::Operator;
use crate::support::{TestNamespace, eventually};

fn obj<K: DeserializeOwned>(kind: &str, name: &str, spec: Value) -> K {
    serde_json::from_value(json!({
        "apiVersion": "panoptes.dev/v1alpha1", "kind": kind, "metadata": { "name": name }, "spec": spec
    }))
    .unwrap()
}

#[tokio::test]
async fn every_kind_counts_its_reconciles() {
    let ns = TestNamespace::new("direction-metrics").await;
    let pp = PostParams::default();
    let presets: Api<Preset> = ns.api();
    presets
        .create(&pp, &obj("Preset", "p1", json!({ "title": "p1" })))
        .await
        .unwrap();
    let orgs: Api<Organization> = ns.api();
    orgs.create(&pp, &obj("Organization", "o1", json!({ "title": "o1" })))
        .await
        .unwrap();
    let users: Api<User> = ns.api();
    users
        .create(&pp, &obj("User", "u1", json!({ "name": "u1" })))
        .await
        .unwrap();
    let operator = Operator::start(&ns);
    let metrics = operator.ctx.metrics.clone();
    eventually(
        Duration::from_secs(25),
        "a reconcile counted for Preset, Organization and User",
        || {
            let text = metrics.encode();
            async move {
                ["Preset", "Organization", "User"]
                    .iter()
                    .all(|kind| {
                        text.lines().any(|l| {
                            l.starts_with("panoptes_reconciles_total{")
                                && l.contains(&format!("kind=\"{kind}\""))
                        })
                    })
                    .then_some(())
            }
        },
    )
    .await;
    operator.stop().await;
}
