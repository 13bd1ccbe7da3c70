//! In-memory indexes over the cluster: one reflector store per kind, fed by watches.
//! Controllers and the facade read from here; nothing here writes to the API server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Config};
use kube::runtime::{WatchStreamExt, reflector::store::Writer};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::hash::Hash;
use tokio::task::JoinSet;

use crate::resources::{Organization, Preset, Stream, Streamer, User, Zone};

pub(crate) mod live;
pub(crate) mod nodes;
pub(crate) mod tap;

pub use live::{LiveDelta, LiveStats, NodeLive, StreamLive};
pub use nodes::NodeClients;
pub(crate) use tap::Tap;

/// Which namespaces Panoptes watches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace.
    #[default]
    Cluster,
    /// One namespace only (needs no cluster-wide permissions).
    Namespace(String),
}

impl Scope {
    /// An `Api` for `K` in this scope.
    pub fn api<K>(&self, client: Client) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        match self {
            Scope::Cluster => Api::all(client),
            Scope::Namespace(ns) => Api::namespaced(client, ns),
        }
    }
}

/// Label that assigns a Stream or a Streamer to a shard (`panoptes run --shard NAME`).
pub const SHARD_LABEL: &str = "panoptes.dev/shard";

/// Which part of the installation one operator instance reconciles. Streams and Streamers
/// are split by [`SHARD_LABEL`]: a sharded instance watches only the ones labelled with its
/// shard, so its caches, node clients and pushes cover that share alone. Presets,
/// Organizations and Users are small and shared; every instance watches all of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shard(Option<String>);

impl Shard {
    /// No sharding: this instance reconciles every Stream and Streamer.
    pub fn all() -> Self {
        Self(None)
    }

    /// Only the Streams and Streamers labelled `panoptes.dev/shard=<name>`.
    pub fn named(name: impl Into<String>) -> Self {
        Self(Some(name.into()))
    }

    /// The shard name, if sharded.
    pub fn name(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// The watch config of the sharded kinds (Streams, Streamers).
    pub(crate) fn watch_config(&self) -> Config {
        let config = Config::default().any_semantic();
        match &self.0 {
            None => config,
            Some(name) => config.labels(&format!("{SHARD_LABEL}={name}")),
        }
    }
}

/// Read-only views of the five kinds.
#[derive(Clone)]
pub struct Stores {
    /// Streamers.
    pub streamers: Store<Streamer>,
    /// Streams.
    pub streams: Store<Stream>,
    /// Presets.
    pub presets: Store<Preset>,
    /// Organizations.
    pub organizations: Store<Organization>,
    /// Users.
    pub users: Store<User>,
    /// Zones.
    pub zones: Store<Zone>,
    /// Applied Streams, for the Stream controller (one watch and one cache for both).
    pub(crate) stream_events: Tap<Stream>,
    /// How many watch events each store has applied, for readers that cache what they
    /// derive from a store (the facade's rendered streams).
    pub(crate) changes: StoreChanges,
    shard: Shard,
    ready: Arc<AtomicBool>,
}

impl Stores {
    /// The shard these stores (and the controllers reading them) cover.
    pub fn shard(&self) -> &Shard {
        &self.shard
    }

    /// True once every store has seen its initial list.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Waits until every store has seen its initial list.
    pub async fn wait_ready(&self) {
        // Errors here only mean the writer was dropped, i.e. we are shutting down.
        let _ = self.streamers.wait_until_ready().await;
        let _ = self.streams.wait_until_ready().await;
        let _ = self.presets.wait_until_ready().await;
        let _ = self.organizations.wait_until_ready().await;
        let _ = self.users.wait_until_ready().await;
        let _ = self.zones.wait_until_ready().await;
        self.ready.store(true, Ordering::Relaxed);
    }
}

/// A counter of the watch events a store has applied. It is bumped after the store is
/// updated, so a reader that reads the counter first and the store second sees data at
/// least as new as that count: anything derived may be tagged with the count and reused
/// while the counter stays the same.
#[derive(Clone, Debug, Default)]
pub(crate) struct Changes(Arc<AtomicU64>);

impl Changes {
    /// The current count (only ever grows).
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

/// [`Changes`] of each store.
#[derive(Clone, Debug, Default)]
pub(crate) struct StoreChanges {
    /// Streamers.
    pub streamers: Changes,
    /// Streams.
    pub streams: Changes,
    /// Presets.
    pub presets: Changes,
    /// Organizations.
    pub organizations: Changes,
    /// Users.
    pub users: Changes,
    /// Zones.
    pub zones: Changes,
}

/// Starts one watch per kind feeding its store. Watch tasks run in `tasks` until aborted.
pub fn start(client: Client, scope: &Scope, tasks: &mut JoinSet<()>) -> Stores {
    start_sharded(client, scope, Shard::all(), tasks)
}

/// Like [`start`], with Streams and Streamers restricted to one shard.
pub fn start_sharded(
    client: Client,
    scope: &Scope,
    shard: Shard,
    tasks: &mut JoinSet<()>,
) -> Stores {
    let all = Config::default().any_semantic();
    let stream_events = Tap::default();
    let changes = StoreChanges::default();
    let c = &changes;
    Stores {
        streamers: watch(
            scope.api(client.clone()),
            shard.watch_config(),
            &c.streamers,
            None,
            tasks,
        ),
        streams: watch(
            scope.api(client.clone()),
            shard.watch_config(),
            &c.streams,
            Some(stream_events.clone()),
            tasks,
        ),
        presets: watch(
            scope.api(client.clone()),
            all.clone(),
            &c.presets,
            None,
            tasks,
        ),
        organizations: watch(
            scope.api(client.clone()),
            all.clone(),
            &c.organizations,
            None,
            tasks,
        ),
        users: watch(
            scope.api(client.clone()),
            all.clone(),
            &c.users,
            None,
            tasks,
        ),
        zones: watch(scope.api(client), all, &c.zones, None, tasks),
        stream_events,
        changes,
        shard,
        ready: Arc::new(AtomicBool::new(false)),
    }
}

fn watch<K>(
    api: Api<K>,
    config: Config,
    changes: &Changes,
    tap: Option<Tap<K>>,
    tasks: &mut JoinSet<()>,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer): (Store<K>, Writer<K>) = reflector::store();
    let stream = watcher::watcher(api, config)
        .default_backoff()
        // managedFields are a large share of every object and nothing here reads them.
        .modify(|obj| obj.managed_fields_mut().clear())
        .reflect(writer)
        // Every event, deletes and relists included, after the store applied it.
        .inspect({
            let changes = changes.clone();
            move |_| changes.bump()
        })
        .applied_objects();
    tasks.spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(obj) => {
                    if let Some(tap) = &tap {
                        tap.send(obj);
                    }
                }
                // A malformed object or a dropped connection degrades to a warning; the
                // watcher's backoff re-establishes the watch.
                Err(error) => {
                    tracing::warn!(kind = %K::kind(&Default::default()), %error, "watch error")
                }
            }
        }
    });
    reader
}
