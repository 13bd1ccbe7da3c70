//! The layouter loop: one for the whole installation. It watches for changes that matter to
//! placement (stream and streamer specs, presets, node health), runs the pure layouter over the
//! [`World`] (built exactly as the facade's previews build it) and installs the result in the shared [`Fleet`](super::fleet::Fleet): the Stream
//! controller pushes from there at once and records each changed layout with the rest of the
//! stream's status in one write. The layouter itself writes nothing.
//!
//! Only the first run and those after a node, its health, a Preset or a Zone changed build the
//! whole world; a run after Stream changes (the Streams' watch journals which) applies them to
//! the [`Tracked`] streams and the [`Incremental`] layout kept from the last run, at a cost
//! that grows with the change, not with the fleet, and the same result.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use kube::{Resource, ResourceExt};

use super::Context;
use super::fleet::LayoutUpdate;
use super::kit;
use super::refs::Key;
use crate::domain::adoption;
use crate::domain::health::node_placeable;
use crate::domain::world::{self, Tracked, World};
use crate::layout::{Incremental, Placement, Unplaced};

/// How often the inputs are checked for changes.
const POLL: Duration = Duration::from_millis(250);
/// The first run waits this long at most for every node's first probe.
const FIRST_PROBE_WAIT: Duration = Duration::from_secs(15);

/// What the layouter keeps between runs, so a run after Stream changes assembles and lays
/// out those streams alone (issue 21: a full run over 100,000 streams takes seconds).
struct Kept {
    /// [`inputs`] when the world was built: a change of them needs a full run.
    inputs: u64,
    streams: Tracked,
    layout: Incremental,
}

/// Runs until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + 'static) {
    let shutdown = shutdown.shared();
    if !kit::stores_ready(&ctx, shutdown.clone()).await {
        return;
    }
    wait_first_probes(&ctx, shutdown.clone()).await;
    tracing::info!("layouter started");
    let mut kept: Option<Kept> = None;
    loop {
        let started = tokio::time::Instant::now();
        if step(&ctx, &mut kept) {
            // At most half of a core: during a bulk apply the inputs change every few
            // milliseconds, and a full run over 10,000 streams takes 50-200 ms that the
            // pushes, the facade and (on a small machine) the API server need too.
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

/// One look at the inputs: a full run first and whenever anything but Streams changed (or
/// the journal of Stream changes lost track), else a run over the Streams that changed.
/// Returns whether it ran.
fn step(ctx: &Arc<Context>, kept: &mut Option<Kept>) -> bool {
    let inputs = inputs(ctx);
    // Taken before the stores are read: whatever changes after is in the next take.
    let touched = ctx.stores.changes.layout_journal.take();
    if let (Some(k), Some(touched)) = (kept.as_mut(), touched)
        && k.inputs == inputs
    {
        if touched.is_empty() {
            return false;
        }
        if let Some(ran) = run_incremental(ctx, k, touched) {
            return ran;
        }
    }
    *kept = Some(run_full(ctx, inputs));
    true
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
                    // A reachable node's first list tells which streams already run there, so
                    // the first run keeps them in place (see `domain::adoption`).
                    let listed = !n.reachable || ctx.fleet.list_tried(&s.spec.hostname);
                    n.last_probe_ms > 0 && !(n.reachable && starting) && listed
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

/// A cheap digest of what placement depends on besides Streams (nodes, their health,
/// Presets, Zones: a few thousand objects at most); equal digests mean only Streams may have
/// changed since the last run.
fn inputs(ctx: &Context) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for s in ctx.stores.streamers.state() {
        (s.uid(), s.meta().generation).hash(&mut h);
        node_placeable(ctx.live.node(&s.spec.hostname).as_deref()).hash(&mut h);
    }
    for p in ctx.stores.presets.state() {
        (p.uid(), p.meta().generation).hash(&mut h);
    }
    // A zone turning dedicated (or going) changes which nodes take which streams.
    for z in ctx.stores.zones.state() {
        (z.uid(), z.meta().generation).hash(&mut h);
    }
    h.finish()
}

/// The current placements: the fleet's after the first run, else what the streams' statuses
/// recorded (a restart resumes where the last instance was).
fn previous(ctx: &Context, world: &mut World) -> BTreeMap<Arc<str>, Placement> {
    if !ctx.fleet.laid_out() {
        return std::mem::take(&mut world.previous);
    }
    ctx.fleet
        .placements()
        .iter()
        .map(|(k, p)| (k.as_arc().clone(), p.clone()))
        .collect()
}

/// A run over the whole world, kept for the Stream changes that follow.
fn run_full(ctx: &Arc<Context>, inputs: u64) -> Kept {
    let started = std::time::Instant::now();
    let (mut world, streams) = World::build_tracked(&ctx.stores, &ctx.live);
    forget_removed_nodes(ctx, &world.streamers);
    let mut previous = previous(ctx, &mut world);
    let unplaced_yet = world
        .names
        .iter()
        .filter(|(_, key)| !previous.contains_key(key.as_arc()))
        .map(|(name, key)| (name.as_str(), key));
    let running = running_copies(ctx, unplaced_yet);
    let seeded = adoption::seed(&mut previous, running);
    let computing = std::time::Instant::now();
    let mut result = world.layout(&previous);
    adoption::record(&mut result, &seeded, chrono::Utc::now().timestamp_millis());
    let layout = Incremental::kept(&world.snapshot, &result);
    let m = &ctx.controller_metrics;
    m.layout_runs.inc();
    m.layout_full_runs.inc();
    m.layout_streams.inc_by(world.snapshot.streams.len() as u64);
    m.layout_seconds.observe(computing.elapsed().as_secs_f64());
    m.streams_unplaced.set(result.unplaced.len() as i64);
    let placements: HashMap<Key, Placement> = result
        .placements
        .iter()
        .map(|(k, p)| (Key::from_layout(k), p.clone()))
        .collect();
    let unplaced: HashMap<Key, Unplaced> = result
        .unplaced
        .iter()
        .map(|(k, u)| (Key::from_layout(k), u.clone()))
        .collect();
    // Streams whose unplaced verdict changed need their Scheduled condition refreshed too.
    let mut touched: HashSet<Key> = unplaced
        .iter()
        .filter(|(k, u)| ctx.fleet.unplaced(k).as_ref() != Some(*u))
        .map(|(k, _)| k.clone())
        .collect();
    let before: HashSet<Key> = ctx.fleet.blocked_keys();
    let now: HashSet<Key> = world.blocked.keys().cloned().collect();
    touched.extend(before.symmetric_difference(&now).cloned());
    for k in result.changes.keys() {
        touched.insert(Key::from_layout(k));
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
        world.names,
        world.blocked,
        world.streamers,
        result
            .changes
            .into_iter()
            .map(|(k, l)| (Key::from_layout(&k), l))
            .collect(),
    );
    notify(ctx, &touched, &nodes_changed);
    if changed > 0 {
        tracing::info!(
            changed,
            streams = world.snapshot.streams.len(),
            nodes = world.snapshot.nodes.len(),
            unplaced = result.unplaced.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "layout changed"
        );
    }
    Kept {
        inputs,
        streams,
        layout,
    }
}

/// A run over the Streams `touched` names (namespace, name) alone: what changed for the
/// world, laid out from the kept placements. `Some(ran)`, or `None` when it needs a full run
/// instead: a new stream already runs on a node and starts from there (`domain::adoption`),
/// which a full run decides with every other placement.
fn run_incremental(
    ctx: &Arc<Context>,
    kept: &mut Kept,
    touched: Vec<(String, String)>,
) -> Option<bool> {
    let started = std::time::Instant::now();
    let keys = touched.iter().map(|(ns, name)| Key::new(ns, name));
    let delta = kept.streams.update(&ctx.stores, keys);
    if delta.is_empty() {
        return Some(false);
    }
    let new: Vec<(&str, Key)> = delta
        .upserts
        .iter()
        .filter(|v| !kept.layout.contains(&v.key))
        .filter_map(|v| {
            let key = Key::from_layout(&v.key);
            Some((kept.streams.name_of(&key)?, key))
        })
        .collect();
    if !running_copies(ctx, new.iter().map(|(n, k)| (*n, k))).is_empty() {
        return None;
    }
    let computing = std::time::Instant::now();
    let result = kept
        .layout
        .update(delta.upserts, &delta.removed, &world::options());
    let m = &ctx.controller_metrics;
    m.layout_runs.inc();
    m.layout_streams.inc_by(result.placements.len() as u64);
    m.layout_seconds.observe(computing.elapsed().as_secs_f64());
    m.streams_unplaced.set(kept.layout.unplaced() as i64);
    // As in a full run: a changed unplaced verdict, block or layout needs the stream's status.
    let mut touched: HashSet<Key> = result
        .unplaced
        .iter()
        .map(|(k, u)| (Key::from_layout(k), u))
        .filter(|(k, u)| ctx.fleet.unplaced(k).as_ref() != Some(*u))
        .map(|(k, _)| k)
        .collect();
    touched.extend(delta.blocked.iter().map(|(k, _)| k.clone()));
    touched.extend(result.changes.keys().map(Key::from_layout));
    let changed = result.changes.len();
    let update = LayoutUpdate {
        placed: result
            .placements
            .iter()
            .map(|(k, p)| {
                (
                    Key::from_layout(k),
                    p.clone(),
                    result.unplaced.get(k).cloned(),
                )
            })
            .collect(),
        removed: delta.removed.iter().map(Key::from_layout).collect(),
        owners: delta.owners,
        blocked: delta.blocked,
        gone: delta.gone,
        changes: result
            .changes
            .into_iter()
            .map(|(k, l)| (Key::from_layout(&k), l))
            .collect(),
    };
    let nodes_changed = ctx.fleet.amend_layout(update);
    notify(ctx, &touched, &nodes_changed);
    if changed > 0 {
        tracing::debug!(
            changed,
            considered = result.placements.len(),
            streams = kept.layout.len(),
            unplaced = kept.layout.unplaced(),
            took_ms = started.elapsed().as_millis() as u64,
            "layout changed"
        );
    }
    Some(true)
}

/// Has the Stream controller look at `streams` and the Streamer controller at `nodes`.
fn notify(ctx: &Context, streams: &HashSet<Key>, nodes: &HashSet<String>) {
    for k in streams {
        ctx.fleet.touch_stream(k);
    }
    for h in nodes {
        ctx.fleet.touch_node(h);
    }
}

/// Of `candidates` (Watcher name, Stream) with no placement yet, those a node already runs a
/// copy of they may keep, with those nodes: their own (managed) copies, and foreign copies
/// of Streams that opt in to adoption.
fn running_copies<'a>(
    ctx: &Context,
    candidates: impl Iterator<Item = (&'a str, &'a Key)>,
) -> Vec<(Arc<str>, Vec<String>)> {
    candidates
        .filter_map(|(name, key)| {
            let copies = ctx.fleet.configured_on(name);
            if copies.is_empty() {
                return None;
            }
            let adopts = ctx
                .stores
                .streams
                .get(&kube::runtime::reflector::ObjectRef::new(key.name()).within(key.namespace()))
                .is_some_and(|s| adoption::adopts(s.annotations()));
            let nodes: Vec<String> = copies
                .into_iter()
                .filter(|(_, managed)| *managed || adopts)
                .map(|(h, _)| h)
                .collect();
            (!nodes.is_empty()).then(|| (key.as_arc().clone(), nodes))
        })
        .collect()
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
