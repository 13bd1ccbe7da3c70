//! Bytes per Stream held by each in-memory structure of the operator (issue 21: the operator's
//! RSS per stream was measured, never explained). N realistic objects go into the real
//! structures (the Stream store as the watch fills it, the fleet's node copies, the live
//! stats, the stream controller's body matches) and the allocator's own count of live bytes
//! is read around each: glibc's `mallinfo2` (the lib's tests run on the system allocator),
//! chunk headers and rounding included, which is what the process pays for each allocation.
//!
//! `make heap` prints the table BENCHMARKS.md quotes ("bytes per stream by structure");
//! `PANOPTES_HEAP_STREAMS` sets N (default 10,000, 100 streams per node).

use std::collections::HashMap;
use std::sync::Arc;

use crate::resources::common::Condition;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use serde_json::{Value, json};

use crate::controllers::fleet::{Disk, Fleet, NodeCopy};
use crate::controllers::refs::Key;
use crate::controllers::stream::bodies::Bodies;
use crate::domain::destinations::AllowList;
use crate::domain::effective::{self, BodyKey, Injected};
use crate::resources::Stream;
use crate::resources::common::CommonStatus;
use crate::resources::stream::{LayoutRecord, StreamStatus};
use crate::resources::wire::NodeStream;
use crate::resources::wire::stream::{
    ChangeReason, IngestHistoryItem, NodeLayoutDecision, Originator, StreamLayout,
};
use crate::state::{LiveStats, StreamLive};

/// Bytes the allocator holds for the program now.
pub(crate) fn live_bytes() -> usize {
    #[repr(C)]
    struct Mallinfo2 {
        arena: usize,
        ordblks: usize,
        smblks: usize,
        hblks: usize,
        hblkhd: usize,
        usmblks: usize,
        fsmblks: usize,
        uordblks: usize,
        fordblks: usize,
        keepcost: usize,
    }
    unsafe extern "C" {
        fn mallinfo2() -> Mallinfo2;
    }
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let m = unsafe { mallinfo2() };
    m.uordblks + m.hblkhd
}

fn host(i: usize) -> String {
    format!("streamer-{:04}.bench.example", i / 100)
}

fn name(i: usize) -> String {
    format!("cam-{i:06}")
}

const T: &str = "2026-12-06T12:00:00Z";

/// Stream `i` as the API server sends it once converged: created by a client, finalized and
/// status-patched by Panoptes (managed fields of the three writes), status as the Stream
/// controller writes it for a placed, synced, alive camera.
fn stream_wire(i: usize) -> String {
    let (n, h) = (name(i), host(i));
    let cond = |type_: &str, reason: &str, message: String| Condition {
        type_: type_.into(),
        status: "True".into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: Some(1),
        last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            T.parse().unwrap(),
        ),
    };
    // Hostnames read from the API server are pooled texts, shared by every Stream naming them.
    let ht = crate::resources::text::Text::new(&h);
    let status = StreamStatus {
        common: CommonStatus {
            conditions: vec![
                cond("Placed", "Placed", format!("ingest on {h}")),
                cond("Synced", "InSync", format!("the config is on {h}")),
                cond("Ready", "Alive", format!("receiving frames on {h}")),
            ],
            observed_generation: Some(1),
        },
        watcher_name: Some(n.clone()),
        layout: Some(StreamLayout {
            ingest: Some(ht.clone()),
            change_reason: Some(ChangeReason::RelayoutByApi),
            created_at: Some(1_765_000_000_000),
            originator: Some(Originator::Layouter),
            node_layout_decisions: vec![NodeLayoutDecision {
                hostname: ht.clone(),
                node_decision: true,
                ..Default::default()
            }],
            ingest_history: vec![IngestHistoryItem {
                created_at: 1_765_000_000_000,
                ingest: ht.clone(),
                originator: Originator::Layouter,
            }],
            ..Default::default()
        }),
        layout_history: vec![LayoutRecord {
            ingest: Some(ht.clone()),
            created_at: Some(1_765_000_000_000),
            originator: Some(Originator::Layouter),
            ..Default::default()
        }],
        alive: Some(true),
        synced_nodes: vec![ht.clone()],
        ..Default::default()
    };
    let managed = |manager: &str, sub: Option<&str>, fields: Value| {
        let mut m = json!({
            "manager": manager, "operation": "Update", "apiVersion": "panoptes.dev/v1alpha1",
            "time": T, "fieldsType": "FieldsV1", "fieldsV1": fields,
        });
        if let Some(s) = sub {
            m["subresource"] = json!(s);
        }
        m
    };
    json!({
        "apiVersion": "panoptes.dev/v1alpha1", "kind": "Stream",
        "metadata": {
            "name": n, "namespace": "bench-scale", "generation": 1,
            "uid": format!("6f1c2d3e-{:04x}-4a5b-8c9d-{i:012x}", i % 65536),
            "resourceVersion": format!("{}", 1_000_000 + i), "creationTimestamp": T,
            "finalizers": ["panoptes.dev/cleanup"],
            "managedFields": [
                managed("scale", None, json!({"f:spec": {".": {}, "f:inputs": {}}})),
                managed("panoptes", None, json!({"f:metadata": {"f:finalizers": {".": {}, "v:\"panoptes.dev/cleanup\"": {}}}})),
                managed("panoptes", Some("status"), json!({"f:status": {".": {}, "f:alive": {}, "f:conditions": {}, "f:layout": {".": {}, "f:ingest": {}, "f:created_at": {}, "f:change_reason": {}, "f:originator": {}, "f:node_layout_decisions": {}, "f:ingest_history": {}}, "f:layoutHistory": {}, "f:observedGeneration": {}, "f:syncedNodes": {}, "f:watcherName": {}}})),
            ],
        },
        "spec": {"inputs": [{"url": format!("fake://{n}")}]},
        "status": status,
    })
    .to_string()
}

/// Stream `i` as its node lists it on a poll (`POLL_SELECT`), `config_on_disk` being the body
/// Panoptes pushed.
fn node_wire(i: usize, body: &Value) -> String {
    json!({
        "name": name(i), "named_by": "config", "labels": body["labels"], "config_on_disk": body,
        "stats": {"status": "running", "alive": true, "bitrate": 2000, "lifetime": 600_000,
                  "ts_delay": 40, "online_clients": 0},
    })
    .to_string()
}

fn body_of(s: &Stream) -> Value {
    let b = effective::node_body(&name(0), &s.spec.config, &Injected::default());
    Value::Object(b.as_json().clone())
}

/// One measured structure: its live bytes and what it is.
struct Row(&'static str, usize);

fn measure<T>(rows: &mut Vec<Row>, what: &'static str, build: impl FnOnce() -> T) -> T {
    let before = live_bytes();
    let kept = build();
    rows.push(Row(what, live_bytes().saturating_sub(before)));
    kept
}

#[test]
#[ignore = "a measurement: make heap"]
fn bytes_per_stream_by_structure() {
    let n: usize = std::env::var("PANOPTES_HEAP_STREAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let wire: Vec<String> = (0..n).map(stream_wire).collect();
    let parsed = |i: usize| serde_json::from_str::<Stream>(&wire[i]).unwrap();
    let mut rows = Vec::new();

    let (streams, mut writer) = reflector::store::<Stream>();
    measure(&mut rows, "Stream store (objects as cached)", || {
        writer.apply_watcher_event(&Event::Init);
        for i in 0..n {
            let mut s = parsed(i);
            crate::state::strip(&mut s);
            writer.apply_watcher_event(&Event::InitApply(s));
        }
        writer.apply_watcher_event(&Event::InitDone);
    });
    // Each part as a clone, as the store keeps them (kube's store writer clones every object
    // it applies): a clone's lists have no spare room, a parse's grow by doubling.
    let parts = {
        let mut parts = Vec::new();
        let metadata = measure(&mut parts, "  of which metadata", || {
            (0..n)
                .map(|i| {
                    let mut s = parsed(i);
                    crate::state::strip(&mut s);
                    s.metadata.clone()
                })
                .collect::<Vec<_>>()
        });
        let spec = measure(&mut parts, "  of which spec", || {
            (0..n).map(|i| parsed(i).spec.clone()).collect::<Vec<_>>()
        });
        let status = measure(&mut parts, "  of which status", || {
            (0..n).map(|i| parsed(i).status.clone()).collect::<Vec<_>>()
        });
        drop((metadata, spec, status));
        parts
    };
    rows.extend(parts);
    let mut unstripped_row = Vec::new();
    let unstripped = measure(&mut unstripped_row, "", || {
        (0..n).map(|i| Arc::new(parsed(i))).collect::<Vec<_>>()
    });
    drop(unstripped);

    let objs = streams.state();
    let bodies_json: Vec<Value> = objs.iter().map(|s| body_of(s)).collect();
    let fleet = Fleet::default();
    measure(&mut rows, "fleet: node copies (pushed + listed)", || {
        let mut by_host: HashMap<String, HashMap<String, NodeCopy>> = HashMap::new();
        for (i, body) in bodies_json.iter().enumerate() {
            fleet.record_push(&host(i), &name(i), body.clone());
            let listed: NodeStream = serde_json::from_str(&node_wire(i, body)).unwrap();
            by_host.entry(host(i)).or_default().insert(
                listed.name.clone(),
                NodeCopy {
                    config_on_disk: listed
                        .config_on_disk
                        .as_ref()
                        .map(|v| Arc::new(Disk::of(v))),
                    managed: true,
                },
            );
        }
        for (h, copies) in by_host {
            fleet.record_list(&h, copies);
        }
    });
    measure(&mut rows, "fleet: placements, owners, by node", || {
        let hosts: HashMap<String, Arc<str>> = (0..n).map(|i| (host(i), host(i).into())).collect();
        // One key per stream, shared by every map as the layouter's are.
        let keys: Vec<Key> = objs.iter().map(|s| Key::of(&**s)).collect();
        let placements = objs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let layout = s.status.as_ref().and_then(|s| s.layout.as_ref()).unwrap();
                let mut p = crate::layout::Placement::from(layout);
                p.ingest = Some(hosts[&host(i)].clone());
                (keys[i].clone(), p)
            })
            .collect();
        let names = objs
            .iter()
            .zip(&keys)
            .map(|(s, k)| (s.watcher_name().to_string(), k.clone()))
            .collect();
        fleet.install_layout(
            placements,
            HashMap::new(),
            names,
            HashMap::new(),
            HashMap::new(),
            HashMap::new(),
        );
    });
    let live = LiveStats::default();
    measure(&mut rows, "live stats (node lists)", || {
        let mut by_host: HashMap<String, HashMap<String, StreamLive>> = HashMap::new();
        for (i, body) in bodies_json.iter().enumerate() {
            let listed: NodeStream = serde_json::from_str(&node_wire(i, body)).unwrap();
            by_host.entry(host(i)).or_default().insert(
                listed.name,
                StreamLive {
                    stats: listed.stats,
                    managed: true,
                },
            );
        }
        for (h, streams) in by_host {
            live.update_node(&h, |l| l.streams = streams);
        }
    });
    let bodies = Bodies::default();
    measure(
        &mut rows,
        "stream controller: body digests + matches",
        || {
            for (i, s) in objs.iter().enumerate() {
                let key = Key::of(&**s);
                let d = bodies.digest(&BodyKey::of(s, None, None, &AllowList::default(), |_| None));
                let copy = fleet.copy_on(&host(i), &name(i)).unwrap();
                bodies.record_match(&key, d, &host(i), copy.config_on_disk.as_ref().unwrap());
            }
        },
    );

    // The layouter's state between runs: each Stream as the world last saw it, and the kept
    // layout (each stream's view, class, placement).
    let layouter = measure(
        &mut rows,
        "layouter: tracked streams + the kept layout",
        || {
            use crate::layout::{Incremental, LayoutOptions, NodeView, Snapshot, StreamView};
            let mut tracked = crate::domain::world::Tracked::default();
            let by_key: HashMap<Key, Arc<Stream>> =
                objs.iter().map(|s| (Key::of(&**s), s.clone())).collect();
            tracked.apply(
                by_key.keys().cloned(),
                |k| by_key.get(k).cloned(),
                |_, _| None,
            );
            let nodes = (0..n.div_ceil(100))
                .map(|i| {
                    let spec = serde_json::from_value(json!({"hostname": host(i * 100)})).unwrap();
                    NodeView::from_spec("bench-scale", &spec, true, |_| false)
                })
                .collect();
            let streams = objs
                .iter()
                .map(|s| {
                    let key = Key::of(&**s);
                    StreamView::from_spec(key.as_arc().clone(), key.namespace(), &s.spec)
                })
                .collect();
            let snapshot = Snapshot { nodes, streams };
            let (kept, result) =
                Incremental::new(&snapshot, &Default::default(), &LayoutOptions::default());
            drop((result, snapshot, by_key));
            (tracked, kept)
        },
    );
    let indexes: [crate::controllers::refs::RefIndex; 3] = Default::default();
    measure(
        &mut rows,
        "stream controller: reference indexes (preset, organization, Secrets)",
        || {
            use crate::domain::refs::{RefKind, References};
            for s in &objs {
                let key = Key::of(&**s);
                indexes[0].observe(&key, s.referenced(RefKind::Preset));
                indexes[1].observe(&key, s.referenced(RefKind::Organization));
                indexes[2].observe(&key, effective::secret_refs(s));
            }
        },
    );
    // The steady resync: a paced walk over a snapshot of the store (kube's scheduler held a
    // queued resync per stream before, ~540 bytes each, for as long as the stream existed).
    let walk = measure(
        &mut rows,
        "stream controller: the steady walk over the store, while it runs",
        || crate::controllers::stream::sweep::Walk::new(streams.state(), 600),
    );

    eprintln!("\n{n} Streams, 100 per node; bytes live per stream (glibc mallinfo2):\n");
    eprintln!("| structure | bytes per stream |\n|---|---|");
    for Row(what, bytes) in &rows {
        eprintln!("| {what} | {} |", bytes / n);
    }
    eprintln!(
        "| (Stream objects as sent, managedFields kept, for comparison) | {} |",
        unstripped_row.first().map_or(0, |r| r.1) / n
    );
    drop((
        fleet, live, bodies, layouter, indexes, streams, writer, walk,
    ));
}
