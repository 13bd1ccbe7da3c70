//! The Stream rules shared by the controllers and the facade: what "moved" means (a node
//! outage restarts no camera that stays on its node), what a healthy stream is (an idle
//! on-demand stream is Ready and no outage), and which agent an input URL names.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use panoptes::resources::common::condition;
use panoptes::resources::{Stream, Streamer};
use serde_json::{Value, json};
use streamer_sim::Cluster;

use crate::api_support::{self, Facade};
use crate::support::operator::Operator;
use crate::support::scenario::{fleet, holdings, layouts, stream};
use crate::support::{TestNamespace, eventually};

const WAIT: Duration = Duration::from_secs(40);

fn ready(s: &Stream) -> Option<(String, String)> {
    let c = condition(&s.status.as_ref()?.common.conditions, "Ready")?;
    Some((c.status.to_string(), c.reason.to_string()))
}

/// Every Stream laid out, and every up node holding exactly what the layouts give it.
async fn settled(ns: &TestNamespace, sim: &Cluster, n: usize) -> BTreeMap<String, Vec<String>> {
    eventually(WAIT, "nodes hold exactly their layouts", || async {
        let l = layouts(ns).await;
        if l.len() != n || l.values().any(Vec::is_empty) {
            return None;
        }
        let up: Vec<&str> = sim
            .nodes()
            .iter()
            .filter(|n| n.is_up())
            .map(|n| n.hostname())
            .collect();
        let mut want: BTreeMap<String, BTreeSet<String>> = up
            .iter()
            .map(|h| (h.to_string(), BTreeSet::new()))
            .collect();
        for (s, nodes) in &l {
            for h in nodes.iter().filter(|h| up.contains(&h.as_str())) {
                want.entry(h.clone()).or_default().insert(s.clone());
            }
        }
        let mut have = holdings(sim);
        have.retain(|h, _| up.contains(&h.as_str()));
        (have == want).then_some(l)
    })
    .await
}

/// A node goes down and comes back. Streams pinned to it (they can run nowhere else) did not
/// move, and neither did the streams on the other node: none of them is deleted or pushed
/// again. Only the unpinned streams that moved away have their old copies removed.
#[tokio::test]
async fn a_short_node_outage_restarts_no_stream_that_did_not_move() {
    let (ns, sim) = fleet("dm-outage", 2).await;
    let (a, b) = (sim.node(0), sim.node(1));
    ns.api::<Streamer>()
        .patch(
            a.hostname(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "labels": { "site": "a" } } })),
        )
        .await
        .unwrap();
    let op = Operator::start(&ns);
    let pinned = ["pin0", "pin1"];
    for p in pinned {
        let pin = json!({ "placement": { "requiredNodeLabels": { "site": "a" } } });
        stream(&ns, p, pin).await;
    }
    for i in 0..4 {
        stream(&ns, &format!("free{i}"), json!({})).await;
    }
    let before = settled(&ns, &sim, 6).await;
    for p in pinned {
        assert_eq!(before[p], vec![a.hostname().to_string()], "{p} is pinned");
    }
    a.reset_counters();
    b.reset_counters();

    a.down().await;
    eventually(WAIT, "the pinned streams wait for their node", || async {
        let l = layouts(&ns).await;
        let waiting = pinned.iter().all(|p| l.get(*p).is_some_and(Vec::is_empty));
        let moved = l
            .iter()
            .filter(|(s, _)| !pinned.contains(&s.as_str()))
            .all(|(_, n)| n == &vec![b.hostname().to_string()]);
        let held = holdings(&sim)[b.hostname()].len() == 4;
        (waiting && moved && held).then_some(())
    })
    .await;

    a.up().await.unwrap();
    eventually(
        WAIT,
        "the pinned streams run on their node again",
        || async {
            let mut ok =
                holdings(&sim)[a.hostname()] == pinned.iter().map(|p| p.to_string()).collect();
            for p in pinned {
                let s = ns.api::<Stream>().get(p).await.unwrap();
                let on_a = s
                    .status
                    .as_ref()
                    .and_then(|st| st.layout.as_ref()?.ingest.clone());
                ok &= on_a.as_deref() == Some(a.hostname())
                    && ready(&s) == Some(("True".into(), "Alive".into()));
            }
            ok.then_some(())
        },
    )
    .await;
    // Whatever the operator was going to do after the node's return it did within a few
    // node resyncs (500 ms each).
    let resyncs = op.ctx.tunables.node_resync * 6;
    tokio::time::sleep(resyncs).await;

    let mut restarted = Vec::new();
    for p in pinned {
        for m in ["DELETE", "PUT"] {
            let n = a.stream_count(m, p);
            if n > 0 {
                restarted.push(format!("{m} {p} on the pinned node: {n}"));
            }
        }
    }
    for (s, nodes) in &before {
        if nodes == &vec![b.hostname().to_string()] {
            for m in ["DELETE", "PUT"] {
                let n = b.stream_count(m, s);
                if n > 0 {
                    restarted.push(format!("{m} {s} on the node that stayed up: {n}"));
                }
            }
        }
    }
    assert!(
        restarted.is_empty(),
        "streams that did not move were deleted or re-pushed: {restarted:?}\ncounters of the returning node: {:?}",
        a.counters().by_stream
    );
    // The streams that did move left their old node.
    let moved: Vec<&String> = before
        .iter()
        .filter(|(s, n)| !pinned.contains(&s.as_str()) && n[0] == a.hostname())
        .map(|(s, _)| s)
        .collect();
    for s in moved {
        assert!(!holdings(&sim)[a.hostname()].contains(s), "{s} left behind");
    }
    op.stop().await;
}

/// An on-demand stream the node lists but nobody watches is idle, not broken: `Ready=True`
/// (`OnDemand`) on the Stream, and no outage in `/cluster/stats` — one rule for both.
#[tokio::test]
async fn an_idle_on_demand_stream_is_ready_and_no_outage() {
    let (ns, sim) = fleet("dm-ondemand", 1).await;
    let host = sim.node(0).hostname().to_string();
    // The facade logs in before the operator's User controller looks at its admin.
    let f = Facade::start(&ns).await;
    let op = Operator::start(&ns);
    stream(&ns, "idle", json!({ "static": false })).await;
    stream(&ns, "live", json!({})).await;
    let s = eventually(WAIT, "the on-demand stream is judged", || async {
        let s = ns.api::<Stream>().get("idle").await.unwrap();
        let live = ns.api::<Stream>().get("live").await.unwrap();
        let both = ready(&s).is_some() && ready(&live).map(|r| r.1) == Some("Alive".into());
        (both && ready(&s).is_some_and(|r| r.1 != "Starting")).then_some(s)
    })
    .await;
    assert_eq!(ready(&s), Some(("True".into(), "OnDemand".into())));

    // The facade reads the same node report the operator judged.
    let report = op.ctx.live.node(&host).expect("the node was reported");
    f.live.update_node(&host, |n| *n = (*report).clone());
    let v = eventually(
        api_support::WAIT,
        "both streams in /cluster/stats",
        || async {
            let (_, v) = f.get("/cluster/stats").await;
            (v["stream_metrics_total"]["total"] == 2).then_some(v)
        },
    )
    .await;
    assert_eq!(
        v["stream_metrics_total"],
        json!({"operational": 2, "degradated": 0, "partial_outage": 0, "outage": 0, "disabled": 0, "total": 2}),
        "an idle on-demand stream is Ready, so it is no outage"
    );
    drop(f);
    op.stop().await;
}

/// `agent://a1/x` and `agent://a1?k=v` name agent `a1` for `/agents` and `/cluster/stats` alike.
#[tokio::test]
async fn agents_and_cluster_stats_read_the_same_agent_from_a_url() {
    let ns = TestNamespace::new("dm-agents").await;
    let f = Facade::start(&ns).await;
    for (name, url) in [
        ("cam-a", "agent://a1/x"),
        ("cam-b", "agent://a1?k=v"),
        ("cam-c", "agent://a2"),
    ] {
        api_support::stream(&ns, name, json!({ "inputs": [{ "url": url }] })).await;
    }
    let v = f
        .get_until("/agents", "three streams' agents", |v| {
            v["agents"].as_array().is_some_and(|a| {
                let streams = a
                    .iter()
                    .map(|i| i["streams"].as_array().map_or(0, Vec::len));
                streams.sum::<usize>() == 3
            })
        })
        .await;
    let ids: Vec<&Value> = v["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["id"])
        .collect();
    assert_eq!(ids, [&json!("a1"), &json!("a2")]);
    let (_, v) = f.get("/cluster/stats").await;
    assert_eq!(
        v["agent_metrics_total"]["total"], 2,
        "/cluster/stats counts the agents /agents lists: {v}"
    );
}
