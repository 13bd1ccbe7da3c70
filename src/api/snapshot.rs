//! The layouter's input built from the stores and the live cache, as the layouter loop sees
//! it, with an optional hypothetical edit: the previews run the real layouter twice (as is,
//! and edited) and report the difference. Nothing is written.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kube::ResourceExt;

use super::ApiState;
use crate::domain::tenancy::{hostname_owners, owns_hostname};
use crate::layout::{LayoutOptions, LayoutResult, NodeView, Placement, Snapshot, StreamView};
use crate::resources::{Stream, StreamSpec, StreamerSpec};

/// A snapshot plus what the previews need to name things.
pub struct World {
    /// Layouter input.
    pub snapshot: Snapshot,
    /// Placements recorded in the streams' status.
    pub previous: BTreeMap<Arc<str>, Placement>,
    /// Watcher stream name by layouter key.
    pub names: HashMap<Arc<str>, String>,
}

/// Layouter key of a stream (`namespace/name`).
pub fn key(s: &Stream) -> Arc<str> {
    crate::state::key(s).into()
}

fn view(state: &ApiState, key: Arc<str>, ns: Option<&str>, spec: &StreamSpec) -> StreamView {
    // The namespace decides which nodes may hold it, exactly as in the layouter loop.
    let mut v = StreamView::from_spec(key, ns.unwrap_or_default(), spec);
    let own = spec.config.dvr.as_ref().and_then(|d| d.redundancy_factor);
    if own.is_none() {
        // The preset's redundancy applies when the stream does not set its own.
        let preset = spec.preset_ref.as_deref().and_then(|r| {
            let mut o = kube::runtime::reflector::ObjectRef::new(r);
            if let Some(ns) = ns {
                o = o.within(ns);
            }
            state.stores.presets.get(&o)
        });
        if let Some(r) = preset
            .as_ref()
            .and_then(|p| p.spec.dvr.as_ref()?.redundancy_factor)
        {
            v.dvr_redundancy = u32::try_from(r.max(0)).unwrap_or(0);
        }
    }
    v
}

/// The current world, with `stream` (key, namespace, spec) and/or `node` replacing or
/// adding their entries.
pub fn world(
    state: &ApiState,
    stream: Option<(Arc<str>, Option<String>, &StreamSpec)>,
    node: Option<&StreamerSpec>,
) -> World {
    let live: HashMap<String, _> = state.live.nodes().into_iter().collect();
    let streamers = state.stores.streamers.state();
    // As in the layouter: only the owner of a hostname is a node.
    let owners = hostname_owners(streamers.iter().map(|s| s.as_ref()));
    let mut nodes: Vec<NodeView> = streamers
        .iter()
        .filter(|s| owns_hostname(&owners, s))
        .filter(|s| node.is_none_or(|n| n.hostname != s.spec.hostname))
        .map(|s| {
            let healthy = live
                .get(&s.spec.hostname)
                .is_some_and(|n| n.reachable && n.ready);
            NodeView::from_spec(&s.namespace().unwrap_or_default(), &s.spec, healthy)
        })
        .collect();
    if let Some(n) = node {
        let existing = live.get(&n.hostname);
        // A node that is not probed yet is previewed as it would be once it is up.
        let healthy = existing.is_none_or(|l| l.reachable && l.ready);
        // An edited node keeps its namespace; a new one is created in the facade's.
        let ns = streamers
            .iter()
            .find(|s| s.spec.hostname == n.hostname)
            .and_then(|s| s.namespace())
            .unwrap_or_else(|| state.config.namespace.clone());
        nodes.push(NodeView::from_spec(&ns, n, healthy));
    }
    let mut streams = Vec::new();
    let mut previous = BTreeMap::new();
    let mut names = HashMap::new();
    for s in state.stores.streams.state() {
        let k = key(&s);
        if let Some(layout) = s.status.as_ref().and_then(|st| st.layout.as_ref()) {
            previous.insert(k.clone(), Placement::from(layout));
        }
        names.insert(k.clone(), s.watcher_name().to_string());
        if stream.as_ref().is_some_and(|(ek, _, _)| *ek == k) {
            continue;
        }
        streams.push(view(state, k, s.namespace().as_deref(), &s.spec));
    }
    if let Some((k, ns, spec)) = stream {
        names.insert(
            k.clone(),
            spec.name
                .clone()
                .unwrap_or_else(|| k.rsplit('/').next().unwrap_or("").to_string()),
        );
        streams.push(view(state, k, ns.as_deref(), spec));
    }
    World {
        snapshot: Snapshot { nodes, streams },
        previous,
        names,
    }
}

/// Runs the real layouter over a world.
pub fn run(world: &World) -> LayoutResult {
    let opts = LayoutOptions {
        now_ms: chrono::Utc::now().timestamp_millis(),
        ..Default::default()
    };
    crate::layout::layout(&world.snapshot, &world.previous, &opts)
}
