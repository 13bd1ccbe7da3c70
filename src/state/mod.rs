//! In-memory indexes over the cluster: one reflector store per kind, fed by watches.
//! Controllers and the facade read from here; nothing here writes to the API server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Config};
use kube::runtime::{WatchStreamExt, reflector::store::Writer};
use kube::{Api, Client, Resource, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::hash::Hash;
use tokio::sync::watch;
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

/// Read-only views of the six kinds (and the metadata of Secrets), each fed by the one watch
/// of its kind in this process.
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
    /// Metadata of the Secrets in scope (never their data: a cluster's Secrets include every
    /// Helm release, up to 1 MiB each). It triggers the User controller and tells the Secret
    /// cache when a Secret changed; values are read by name when a reconcile needs them.
    pub(crate) secrets: Store<PartialObjectMeta<Secret>>,
    /// Every store's events, after the store applied them, for the controllers.
    pub(crate) taps: Taps,
    /// How many watch events each store has applied, for readers that cache what they
    /// derive from a store (the facade's rendered streams).
    pub(crate) changes: StoreChanges,
    /// Full lists per kind (export with [`Relists::register`]).
    pub relists: Relists,
    shard: Shard,
    /// Flips to true once, when every store has seen its initial list.
    ready: watch::Receiver<bool>,
}

/// The [`Tap`] of each store.
#[derive(Clone, Default)]
pub(crate) struct Taps {
    /// Streamers.
    pub streamers: Tap<Streamer>,
    /// Streams.
    pub streams: Tap<Stream>,
    /// Presets.
    pub presets: Tap<Preset>,
    /// Organizations.
    pub organizations: Tap<Organization>,
    /// Users.
    pub users: Tap<User>,
    /// Zones.
    pub zones: Tap<Zone>,
    /// Secrets (metadata).
    pub secrets: Tap<PartialObjectMeta<Secret>>,
}

impl Stores {
    /// The shard these stores (and the controllers reading them) cover.
    pub fn shard(&self) -> &Shard {
        &self.shard
    }

    /// True once every store has seen its initial list.
    pub(crate) fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until every store has seen its initial list (any number of tasks may wait; it
    /// also returns when the watches are stopped).
    pub async fn wait_ready(&self) {
        let _ = self.ready.clone().wait_for(|ready| *ready).await;
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

/// Full lists each watch made: one at start, then one whenever a watch could not resume from
/// where it was (410 Gone after etcd compacted past it, an API server that lost its watch
/// cache). A count that keeps climbing is an API server dropping this operator's watches.
#[derive(Clone, Debug, Default)]
pub struct Relists(Family<KindLabel, Counter>);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

impl Relists {
    /// Registers `panoptes_watch_relists_total{kind}`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "watch_relists",
            "Full lists by watched kind (the first, and each after a watch could not resume)",
            self.0.clone(),
        );
    }

    /// Relists of `kind` so far.
    pub fn get(&self, kind: &str) -> u64 {
        self.0.get_or_create(&KindLabel { kind: kind.into() }).get()
    }

    fn count(&self, kind: String) {
        self.0.get_or_create(&KindLabel { kind }).inc();
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
    let all = || Config::default().any_semantic();
    let taps = Taps::default();
    let changes = StoreChanges::default();
    let relists = Relists::default();
    let (c, t, r) = (&changes, &taps, &relists);
    let api = || client.clone();
    let (ready_tx, ready) = watch::channel(false);
    let stores = Stores {
        streamers: reflect(
            watcher::watcher(scope.api(api()), shard.watch_config()),
            &c.streamers,
            &t.streamers,
            r,
            tasks,
        ),
        streams: reflect(
            watcher::watcher(scope.api(api()), shard.watch_config()),
            &c.streams,
            &t.streams,
            r,
            tasks,
        ),
        presets: reflect(
            watcher::watcher(scope.api(api()), all()),
            &c.presets,
            &t.presets,
            r,
            tasks,
        ),
        organizations: reflect(
            watcher::watcher(scope.api(api()), all()),
            &c.organizations,
            &t.organizations,
            r,
            tasks,
        ),
        users: reflect(
            watcher::watcher(scope.api(api()), all()),
            &c.users,
            &t.users,
            r,
            tasks,
        ),
        zones: reflect(
            watcher::watcher(scope.api(api()), all()),
            &c.zones,
            &t.zones,
            r,
            tasks,
        ),
        // kube 5's `Api<PartialObjectMeta<_>>` asks for PartialObjectMetadata: Secret data
        // never crosses the wire, not only never stays in memory.
        secrets: reflect(
            watcher::watcher(scope.api::<PartialObjectMeta<Secret>>(api()), all()),
            &Changes::default(),
            &t.secrets,
            r,
            tasks,
        ),
        taps,
        changes,
        relists,
        shard,
        ready,
    };
    let s = stores.clone();
    tasks.spawn(async move {
        // The only waiter of each store: kube-runtime's `Store::wait_until_ready` wakes just
        // the most recent one, so every other reader waits on `ready` instead.
        let _ = s.streamers.wait_until_ready().await;
        let _ = s.streams.wait_until_ready().await;
        let _ = s.presets.wait_until_ready().await;
        let _ = s.organizations.wait_until_ready().await;
        let _ = s.users.wait_until_ready().await;
        let _ = s.zones.wait_until_ready().await;
        let _ = s.secrets.wait_until_ready().await;
        let _ = ready_tx.send(true);
    });
    stores
}

/// Runs one watch into a new store, and passes every event the store applied on to `tap`.
fn reflect<K>(
    events: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    changes: &Changes,
    tap: &Tap<K>,
    relists: &Relists,
    tasks: &mut JoinSet<()>,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer): (Store<K>, Writer<K>) = reflector::store();
    let stream = events
        .default_backoff()
        // managedFields are a large share of every object and nothing here reads them.
        .modify(|obj| obj.managed_fields_mut().clear())
        .reflect(writer)
        // Every event, deletes and relists included, after the store applied it.
        .inspect({
            let (changes, relists) = (changes.clone(), relists.clone());
            move |event| {
                if let Ok(watcher::Event::Init) = event {
                    relists.count(K::kind(&Default::default()).into_owned());
                }
                changes.bump()
            }
        });
    let tap = tap.clone();
    tasks.spawn(async move {
        futures::pin_mut!(stream);
        // A relist's objects reach the store only at its end (InitDone swaps them in): a
        // controller woken by each one as it arrives read the old object from the store and
        // was not woken again, so a change made while the watch was down (API-server restart,
        // 410) was never reconciled. They are passed on once the store holds them.
        let mut relisted = Vec::new();
        while let Some(event) = stream.next().await {
            match event {
                // Deletes too: a mapper must learn that a referencing object is gone.
                Ok(watcher::Event::Apply(obj) | watcher::Event::Delete(obj)) => tap.send(obj),
                Ok(watcher::Event::Init) => relisted.clear(),
                Ok(watcher::Event::InitApply(obj)) => relisted.push(obj),
                Ok(watcher::Event::InitDone) => relisted.drain(..).for_each(|obj| tap.send(obj)),
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
