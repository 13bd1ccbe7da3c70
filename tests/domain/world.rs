//! The layout input world: the previews of the Watcher API run the real layouter over the same
//! world the layouter loop builds, so what a preview shows is where the operator then places
//! the stream. Each test previews through the facade first and then makes the change for real
//! on an in-process operator over simulated nodes.

use kube::api::{DeleteParams, Patch, PatchParams};
use panoptes::resources::Stream;
use serde_json::{Value, json};
use streamer_sim::Cluster;

use crate::api_support::{Facade, WAIT};
use crate::support::operator::Operator;
use crate::support::scenario::{apply, fleet, layouts, stream};
use crate::support::{TestNamespace, eventually};

/// Two facades over `ns` started before the operator (their admin logs in with the hand-made
/// hash before the User controller takes the User over): a standby, whose live cache stays
/// empty, and a leader, whose live cache is a copy of the operator's once every node answered.
async fn facades(ns: &TestNamespace, sim: &Cluster) -> (Operator, Facade, Facade) {
    let standby = Facade::start(ns).await;
    let leader = Facade::start_without_admin(ns).await;
    let op = Operator::start(ns);
    let live = eventually(WAIT, "every node probed ready", || async {
        let nodes = op.ctx.live.nodes();
        let ready = nodes.len() == sim.nodes().len() && nodes.iter().all(|(_, n)| n.ready);
        ready.then_some(nodes)
    })
    .await;
    for (host, node) in live {
        leader.live.update_node(&host, |n| *n = (*node).clone());
    }
    assert!(standby.live.nodes().is_empty(), "a standby probes nothing");
    (op, standby, leader)
}

/// Waits until `f`'s stores hold `streams` Streams and `presets` Presets.
async fn synced(f: &Facade, streams: usize, presets: usize) {
    eventually(WAIT, "the facade's stores", || async {
        let s = &f.state.stores;
        (s.streams.state().len() == streams && s.presets.state().len() == presets).then_some(())
    })
    .await;
}

/// `(ingest, dvr_backups)` the stream preview of `body` on `name` shows for `name`.
async fn previewed(f: &Facade, name: &str, body: Value) -> Value {
    let (s, v) = f
        .post(&format!("/streams/{name}/preview_layout_change"), body)
        .await;
    assert!(s.is_success(), "{s}: {v}");
    let change = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("the preview places no {name}: {v}"));
    json!([change["ingest"], change["dvr_backups"]])
}

/// Enables disabled Stream `name` for real and returns `(ingest, dvr_backups)` of its layout.
async fn placed_for_real(ns: &TestNamespace, name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["disabled"] = json!(false);
    stream(ns, name, spec).await;
    let layout = eventually(WAIT, "the real layout", || async {
        let s: Stream = ns.api().get(name).await.ok()?;
        let l = s.status?.layout?;
        l.ingest.is_some().then_some(l)
    })
    .await;
    json!([layout.ingest, layout.dvr_backups])
}

/// A locked preset (`isAdjustable: false`) wins over the stream's own DVR redundancy, in the
/// operator and in the preview alike.
#[tokio::test]
async fn a_preview_equals_the_real_placement_under_a_locked_preset() {
    let (ns, sim) = fleet("world-locked", 3).await;
    apply(
        &ns.api::<panoptes::resources::Preset>(),
        json!({"kind": "Preset", "metadata": {"name": "locked"}, "spec": {
            "title": "Locked", "isAdjustable": false,
            "dvr": {"root": "/dvr", "redundancy_factor": 2}}}),
    )
    .await;
    let spec = json!({"presetRef": "locked", "disabled": true,
        "dvr": {"root": "/dvr", "redundancy_factor": 1}});
    stream(&ns, "cam", spec.clone()).await;
    let (op, _standby, leader) = facades(&ns, &sim).await;
    synced(&leader, 1, 1).await;

    let preview = previewed(&leader, "cam", json!({"disabled": false})).await;
    let real = placed_for_real(&ns, "cam", spec).await;
    assert_eq!(
        real[1].as_array().unwrap().len(),
        2,
        "the preset's 2 backups"
    );
    assert_eq!(preview, real, "the preview shows the real placement");
    op.stop().await;
}

/// The streams the layouter leaves out (the younger holder of a Watcher name, a stream whose
/// preset is missing, a stream being deleted) take no room in a preview either.
#[tokio::test]
async fn a_preview_counts_only_the_streams_the_layouter_places() {
    let (ns, sim) = fleet("world-skips", 2).await;
    stream(&ns, "solo", json!({})).await;
    stream(&ns, "first", json!({"name": "dup"})).await;
    stream(&ns, "second", json!({"name": "dup"})).await;
    stream(&ns, "orphan", json!({"presetRef": "ghost"})).await;
    // Held by a finalizer nobody removes until the end, so it stays "being deleted".
    let hold = json!(["panoptes.dev/test-hold"]);
    apply(
        &ns.api::<Stream>(),
        json!({"kind": "Stream", "metadata": {"name": "leaving", "finalizers": hold},
            "spec": {"inputs": [{"url": "fake://leaving"}]}}),
    )
    .await;
    ns.api::<Stream>()
        .delete("leaving", &DeleteParams::default())
        .await
        .unwrap();
    let (op, _standby, leader) = facades(&ns, &sim).await;
    let real = eventually(WAIT, "the two placeable streams laid out", || async {
        let l = layouts(&ns).await;
        (l.len() == 2 && l.values().all(|n| n.len() == 1)).then_some(l)
    })
    .await;
    assert!(
        real.contains_key("solo") && real.contains_key("first"),
        "{real:?}"
    );
    eventually(WAIT, "the facade sees the deletion", || async {
        let streams = leader.state.stores.streams.state();
        let leaving = streams
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some("leaving"));
        (streams.len() == 5 && leaving?.metadata.deletion_timestamp.is_some()).then_some(())
    })
    .await;

    // n0 stops ingesting: everything placed moves to n1, and nothing else counts.
    let (n0, n1) = (sim.node(0).hostname(), sim.node(1).hostname());
    let on = |h: &str| real.values().filter(|n| n[0] == h).count() as i64;
    let mut want = Vec::new();
    for (host, before, after) in [(n0, on(n0), 0), (n1, on(n1), 2)] {
        if before != after {
            want.push(json!({"hostname": host, "role": "ingest",
                "before": before, "after": after, "delta": after - before}));
        }
    }
    let (s, v) = leader
        .post(
            &format!("/streamers/{n0}/preview_layout_change"),
            json!({"role": "inference"}),
        )
        .await;
    assert!(s.is_success(), "{s}: {v}");
    assert_eq!(v["changes"], json!(want), "real layouts: {real:?}");

    op.stop().await;
    ns.api::<Stream>()
        .patch(
            "leaving",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
}

/// A standby replica's facade has no live stats: a node it never heard of is placeable, as
/// in the layouter, so with every node healthy its preview is the leader's.
#[tokio::test]
async fn a_standby_previews_what_the_leader_previews() {
    let (ns, sim) = fleet("world-standby", 2).await;
    let spec = json!({"disabled": true, "dvr": {"root": "/dvr", "redundancy_factor": 1}});
    stream(&ns, "cam", spec.clone()).await;
    let (op, standby, leader) = facades(&ns, &sim).await;
    synced(&standby, 1, 0).await;
    synced(&leader, 1, 0).await;

    let on_leader = previewed(&leader, "cam", json!({"disabled": false})).await;
    let on_standby = previewed(&standby, "cam", json!({"disabled": false})).await;
    assert_eq!(on_standby, on_leader, "standby and leader preview alike");
    let real = placed_for_real(&ns, "cam", spec).await;
    assert_eq!(on_standby, real, "and both show the real placement");
    op.stop().await;
}
