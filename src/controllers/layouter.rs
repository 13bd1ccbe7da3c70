//! The layouter loop: one for the whole installation. It watches for changes that matter to
//! placement (stream and streamer specs, presets, node health), runs the pure layouter over a
//! snapshot and installs the result in the shared [`Fleet`](super::fleet::Fleet): the Stream
//! controller pushes from there at once and records each changed layout with the rest of the
//! stream's status in one write. The layouter itself writes nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use kube::{Resource, ResourceExt};

use super::Context;
use super::fleet::Blocked;
use super::refs::{self, Key, key_of};
use super::stream::effective;
use crate::domain::tenancy::{hostname_owners, owns_hostname};
use crate::layout::{self, LayoutOptions, NodeView, Placement, Snapshot, StreamView, Unplaced};
use crate::resources::Preset;

/// How often the inputs are checked for changes.
const POLL: Duration = Duration::from_millis(250);
/// The first run waits this long at most for every node's first probe.
const FIRST_PROBE_WAIT: Duration = Duration::from_secs(15);

fn skey(key: &Key) -> Arc<str> {
    format!("{}/{}", key.0, key.1).into()
}

fn unkey(k: &str) -> Key {
    let (ns, name) = k.split_once('/').unwrap_or(("", k));
    (ns.to_string(), name.to_string())
}

/// Runs until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + 'static) {
    let shutdown = shutdown.shared();
    if !refs::stores_ready(&ctx, shutdown.clone()).await {
        return;
    }
    wait_first_probes(&ctx, shutdown.clone()).await;
    tracing::info!("layouter started");
    let mut last: Option<u64> = None;
    loop {
        let fp = fingerprint(&ctx);
        if last != Some(fp) {
            last = Some(fp);
            let started = tokio::time::Instant::now();
            run_once(&ctx);
            // At most half of a core: during a bulk apply the inputs change every few
            // milliseconds, and a run over 10,000 streams takes 50-200 ms that the pushes, the
            // facade and (on a small machine) the API server need too.
            tokio::time::sleep(started.elapsed()).await;
        }
        tokio::select! {
            _ = ctx.fleet.layout_requested() => {
                // Let a burst of changes (an apply of many objects) land in one run.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.clone() => break,
        }
    }
    tracing::info!("layouter stopped");
}

/// Until every declared node was probed once (bounded), so the first run does not place
/// streams on nodes that turn out dead, nor move streams off nodes not probed yet.
async fn wait_first_probes(ctx: &Context, shutdown: impl Future<Output = ()>) {
    let wait = async {
        let deadline = tokio::time::Instant::now() + FIRST_PROBE_WAIT;
        while tokio::time::Instant::now() < deadline {
            // A node still `starting` will be ready in a moment; placing before that would
            // pile every stream on the nodes that happened to start first.
            let all = ctx.stores.streamers.state().iter().all(|s| {
                ctx.live.node(&s.spec.hostname).is_some_and(|n| {
                    let starting = n
                        .server
                        .as_ref()
                        .and_then(|st| st.streamer_status.as_deref())
                        == Some("starting");
                    n.last_probe_ms > 0 && !(n.reachable && starting)
                })
            });
            if all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::warn!("some nodes were not probed in time; laying out without them");
    };
    tokio::select! { _ = wait => {}, _ = shutdown => {} }
}

/// A cheap digest of everything placement depends on; equal digests mean nothing to do.
fn fingerprint(ctx: &Context) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for s in ctx.stores.streams.state() {
        (
            s.uid(),
            s.meta().generation,
            s.meta().deletion_timestamp.is_some(),
        )
            .hash(&mut h);
    }
    for s in ctx.stores.streamers.state() {
        (s.uid(), s.meta().generation).hash(&mut h);
        healthy(ctx, &s.spec.hostname).hash(&mut h);
    }
    for p in ctx.stores.presets.state() {
        (p.uid(), p.meta().generation).hash(&mut h);
    }
    h.finish()
}

/// Unknown (never probed) counts as healthy: the first run waited for probes, and a node
/// added later gets its first probe before anything is placed on it matters little.
fn healthy(ctx: &Context, hostname: &str) -> bool {
    ctx.live
        .node(hostname)
        .is_none_or(|n| n.last_probe_ms == 0 || n.ready)
}

/// Inputs of one run, built from the stores.
pub struct Inputs {
    /// The snapshot handed to the layouter.
    pub snapshot: Snapshot,
    /// Watcher name → owner.
    pub names: HashMap<String, Key>,
    /// Streams that may not be placed.
    pub blocked: HashMap<Key, Blocked>,
    /// hostname → Streamer.
    pub streamers: HashMap<String, Key>,
}

/// Builds the layouter's snapshot from the stores and node health.
pub fn inputs(ctx: &Context) -> Inputs {
    let presets: HashMap<Key, Arc<Preset>> = ctx
        .stores
        .presets
        .state()
        .into_iter()
        .map(|p| (key_of(p.as_ref()), p))
        .collect();
    let mut streams = ctx.stores.streams.state();
    // Oldest first, so the first holder of a Watcher name keeps it.
    streams.sort_by(|a, b| {
        a.meta()
            .creation_timestamp
            .cmp(&b.meta().creation_timestamp)
            .then_with(|| key_of(a.as_ref()).cmp(&key_of(b.as_ref())))
    });
    let mut names: HashMap<String, Key> = HashMap::new();
    let mut blocked = HashMap::new();
    let mut views = Vec::with_capacity(streams.len());
    for s in &streams {
        let key = key_of(s.as_ref());
        let name = s.watcher_name().to_string();
        match names.get(&name) {
            Some(owner) => {
                blocked.insert(key, Blocked::NameConflict(owner.clone()));
                continue;
            }
            None => {
                names.insert(name, key.clone());
            }
        }
        if s.meta().deletion_timestamp.is_some() {
            continue;
        }
        let preset = match &s.spec.preset_ref {
            None => None,
            Some(p) => match presets.get(&(key.0.clone(), p.clone())) {
                Some(p) => Some(p),
                // Not pushed until its preset exists (the Stream says why): it takes no room.
                None => continue,
            },
        };
        let mut view = StreamView::from_spec(skey(&key), &key.0, &s.spec);
        view.dvr_redundancy = effective::dvr_redundancy(&s.spec.config, preset.map(|p| &p.spec));
        views.push(view);
    }
    let mut streamers = HashMap::new();
    let all = ctx.stores.streamers.state();
    // A Streamer naming a hostname an older one owns is no node (domain::tenancy).
    let owners = hostname_owners(all.iter().map(|s| s.as_ref()));
    let nodes = all
        .iter()
        .filter(|s| owns_hostname(&owners, s))
        .map(|s| {
            streamers.insert(s.spec.hostname.clone(), key_of(s.as_ref()));
            NodeView::from_spec(
                &s.namespace().unwrap_or_default(),
                &s.spec,
                healthy(ctx, &s.spec.hostname),
            )
        })
        .collect();
    Inputs {
        snapshot: Snapshot {
            nodes,
            streams: views,
        },
        names,
        blocked,
        streamers,
    }
}

/// The current placements in the layouter's form: the fleet's after the first run, else
/// what the streams' statuses recorded (a restart resumes where the last instance was).
pub fn previous(ctx: &Context) -> BTreeMap<Arc<str>, Placement> {
    if ctx.fleet.laid_out() {
        return ctx
            .fleet
            .placements()
            .iter()
            .map(|(k, p)| (skey(k), p.clone()))
            .collect();
    }
    ctx.stores
        .streams
        .state()
        .iter()
        .filter_map(|s| {
            let layout = s.status.as_ref()?.layout.as_ref()?;
            Some((skey(&key_of(s.as_ref())), Placement::from(layout)))
        })
        .collect()
}

fn run_once(ctx: &Arc<Context>) {
    let started = std::time::Instant::now();
    let inputs = inputs(ctx);
    forget_removed_nodes(ctx, &inputs.streamers);
    let previous = previous(ctx);
    let opts = LayoutOptions {
        now_ms: chrono::Utc::now().timestamp_millis(),
        ..LayoutOptions::default()
    };
    let computing = std::time::Instant::now();
    let result = layout::layout(&inputs.snapshot, &previous, &opts);
    let m = &ctx.controller_metrics;
    m.layout_runs.inc();
    m.layout_seconds.observe(computing.elapsed().as_secs_f64());
    m.streams_unplaced.set(result.unplaced.len() as i64);
    let placements: HashMap<Key, Placement> = result
        .placements
        .iter()
        .map(|(k, p)| (unkey(k), p.clone()))
        .collect();
    let unplaced: HashMap<Key, Unplaced> = result
        .unplaced
        .iter()
        .map(|(k, u)| (unkey(k), u.clone()))
        .collect();
    // Streams whose unplaced verdict changed need their Scheduled condition refreshed too.
    let mut touched: HashSet<Key> = unplaced
        .iter()
        .filter(|(k, u)| ctx.fleet.unplaced(k).as_ref() != Some(*u))
        .map(|(k, _)| k.clone())
        .collect();
    let before: HashSet<Key> = ctx.fleet.blocked_keys();
    let now: HashSet<Key> = inputs.blocked.keys().cloned().collect();
    touched.extend(before.symmetric_difference(&now).cloned());
    for k in result.changes.keys() {
        touched.insert(unkey(k));
    }
    if !ctx.fleet.laid_out() {
        // Streams reconciled before the first run were told to look again shortly; the
        // placements they wait for exist now (a restart resumes them with no change at all).
        touched.extend(placements.keys().cloned());
    }
    let changed = result.changes.len();
    let nodes_changed = ctx.fleet.install_layout(
        placements,
        unplaced,
        inputs.names,
        inputs.blocked,
        inputs.streamers,
        result
            .changes
            .into_iter()
            .map(|(k, l)| (unkey(&k), l))
            .collect(),
    );
    for k in &touched {
        ctx.fleet.touch_stream(k);
    }
    for h in &nodes_changed {
        ctx.fleet.touch_node(h);
    }
    if changed > 0 {
        tracing::info!(
            changed,
            streams = inputs.snapshot.streams.len(),
            nodes = inputs.snapshot.nodes.len(),
            unplaced = result.unplaced.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "layout changed"
        );
    }
}

/// Drops the client, live stats and known contents of nodes no Streamer declares any more.
fn forget_removed_nodes(ctx: &Context, declared: &HashMap<String, Key>) {
    for host in ctx.nodes.hostnames() {
        if !declared.contains_key(&host) {
            ctx.nodes.remove(&host);
            ctx.live.remove_node(&host);
            ctx.fleet.forget_node(&host);
            ctx.controller_metrics.forget_node(&host);
            tracing::info!(node = %host, "streamer removed; forgetting the node");
        }
    }
}
