//! Every stream rendered as the facade shows it, kept between requests: a list of 10,000
//! streams reuses the renderings of the streams, organizations and presets that did not change
//! (a [`Versioned`] value, see [`crate::api::cache`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::ApiState;
use super::cache::{Lenient, Stamp, Versioned, digest};
use super::query::Index;
use super::routes::live_nodes;
use super::routes::streams::STREAMS;
use super::views::{self, to_json};
use crate::state::NodeLive;

/// One stream's rendering and what it was rendered from.
pub(crate) struct Rendered {
    /// Digest of the resourceVersions of the stream, its organization and its preset.
    versions: u64,
    /// The ingest node's live report the rendering read its stats from.
    node: Option<Arc<NodeLive>>,
    value: Arc<Value>,
}

/// The rendered streams, indexed for list queries; rebuilt when the Stream, Organization
/// or Preset store or the live stats changed (see [`crate::api::cache`]). The working
/// state keeps each stream's rendering by uid, so a rebuild renders only what changed.
pub(crate) type Cache = Versioned<RenderedStreams, HashMap<String, Rendered>, 4>;

/// Every stream, rendered: indexed for lists, and by Watcher name for single reads.
pub(crate) struct RenderedStreams {
    /// For list queries.
    pub(crate) index: Index,
    /// Position in the index by Watcher name (the facade namespace's stream when several
    /// namespaces have one of that name, as [`find`](super::routes::streams::find) picks).
    by_name: HashMap<String, usize>,
}

impl RenderedStreams {
    /// The rendering of the stream [`find`](super::routes::streams::find) would return.
    pub(crate) fn get(&self, name: &str) -> Option<&Arc<Value>> {
        self.by_name.get(name).map(|&i| &self.index.items()[i])
    }

    /// Every stream rendered (shared renderings).
    pub(crate) fn all(state: &ApiState) -> Vec<Arc<Value>> {
        Self::current(state).index.items().to_vec()
    }

    /// The renderings as of now (at most [`STATS_MAX_AGE`] behind the live stats).
    pub(crate) fn current(state: &ApiState) -> Arc<Self> {
        let c = &state.stores.changes;
        // Read before the data: see `Versioned::get`.
        let stamp = Stamp([
            c.streams.get(),
            c.organizations.get(),
            c.presets.get(),
            state.live.changes(),
        ]);
        // The request handed the refresh rebuilds (the others are served the current renderings
        // meanwhile), so live numbers are at most a second behind the node reports.
        let _refreshing = match state.cache.streams.lenient(&stamp, LIVE, STATS_MAX_AGE) {
            Lenient::Serve(v) => return v,
            Lenient::ServeAndRefresh(guard) => Some(guard),
            Lenient::Build => None,
        };
        state
            .cache
            .streams
            .get(stamp, |rendered| build(state, rendered))
    }
}

/// Position of the live stats counter in the stamp.
const LIVE: usize = 3;
/// Live numbers in lists may lag the node reports by this much (they are a node resync old
/// anyway); store changes never lag. A rebuild walks every stream, so rebuilding on each of
/// the 20 node reports a second of a 100-node fleet would make list latency that of a
/// rebuild; this way one request a second pays for it.
const STATS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// Renders the streams whose inputs changed since `rendered` was filled, reuses the rest.
fn build(state: &ApiState, rendered: &mut HashMap<String, Rendered>) -> RenderedStreams {
    let nodes = live_nodes(state);
    let (orgs, presets) = (
        state.stores.organizations.state(),
        state.stores.presets.state(),
    );
    // resourceVersions by (namespace, name), borrowed: no allocation per stream.
    fn versions<K: kube::Resource>(objs: &[Arc<K>]) -> HashMap<(&str, &str), &str> {
        objs.iter()
            .filter_map(|o| {
                let m = o.meta();
                Some((
                    (m.namespace.as_deref().unwrap_or(""), m.name.as_deref()?),
                    m.resource_version.as_deref().unwrap_or(""),
                ))
            })
            .collect()
    }
    let (org_versions, preset_versions) = (versions(&orgs), versions(&presets));
    let streams = super::deleted::objects(&state.stores.streams);
    let mut items = Vec::with_capacity(streams.len());
    let mut by_name: HashMap<String, (usize, bool)> = HashMap::with_capacity(streams.len());
    for s in &streams {
        let ns = s.metadata.namespace.as_deref().unwrap_or("");
        let preferred = ns == state.config.namespace;
        match by_name.get_mut(s.watcher_name()) {
            Some(at) if preferred && !at.1 => *at = (items.len(), true),
            Some(_) => {}
            None => {
                by_name.insert(s.watcher_name().to_string(), (items.len(), preferred));
            }
        }
        let org = s.spec.organization_ref.as_deref();
        let preset = s.spec.preset_ref.as_deref();
        let versions = digest([
            s.metadata.resource_version.as_deref(),
            org.and_then(|r| org_versions.get(&(ns, r)).copied()),
            preset.and_then(|r| preset_versions.get(&(ns, r)).copied()),
        ]);
        let node = s
            .status
            .as_ref()
            .and_then(|st| st.layout.as_ref()?.ingest.as_deref())
            .and_then(|h| nodes.get(h));
        let uid = s.metadata.uid.as_deref().unwrap_or("");
        match rendered.get_mut(uid) {
            Some(r)
                if r.versions == versions
                    && same_stats(r.node.as_ref(), node, s.watcher_name()) =>
            {
                // Hold the newest report, so older ones are freed.
                r.node = node.cloned();
                items.push(r.value.clone());
            }
            _ => {
                let value = Arc::new(to_json(&views::stream(state, s, &nodes)));
                items.push(value.clone());
                rendered.insert(
                    uid.to_string(),
                    Rendered {
                        versions,
                        node: node.cloned(),
                        value,
                    },
                );
            }
        }
    }
    // More entries than streams means some streams are gone: only then pay for a set.
    if rendered.len() > streams.len() {
        let seen: HashSet<&str> = streams
            .iter()
            .map(|s| s.metadata.uid.as_deref().unwrap_or(""))
            .collect();
        rendered.retain(|k, _| seen.contains(k.as_str()));
    }
    RenderedStreams {
        index: Index::new(items, STREAMS.search),
        by_name: by_name.into_iter().map(|(k, (i, _))| (k, i)).collect(),
    }
}

/// Whether two live reports give a stream the same stats (all a rendering reads from them).
fn same_stats(a: Option<&Arc<NodeLive>>, b: Option<&Arc<NodeLive>>, name: &str) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            Arc::ptr_eq(a, b)
                || a.streams.get(name).map(|l| &l.stats) == b.streams.get(name).map(|l| &l.stats)
        }
        _ => false,
    }
}
