//! In-memory indexes over the cluster: one reflector store per kind, fed by watches.
//! Controllers and the facade read from here; nothing here writes to the API server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
use crate::telemetry::Metrics;

pub(crate) mod live;
pub(crate) mod nodes;
pub(crate) mod secrets;
pub(crate) mod tap;

pub use live::{LiveDelta, LiveStats, NodeLive, StreamLive};
pub use nodes::NodeClients;
pub use secrets::{SecretEntry, SecretError, Secrets};
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

    /// Whether an object with `labels` belongs to this shard (what a sharded watch lists).
    pub fn holds(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        self.0
            .as_deref()
            .is_none_or(|name| labels.get(SHARD_LABEL).map(String::as_str) == Some(name))
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

/// A kind with a store (and the [`Tap`] of its one watch) in [`Stores`].
pub(crate) trait Watched:
    Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static
{
    /// Its store.
    fn store(stores: &Stores) -> &Store<Self>;
    /// The events of that store.
    fn tap(stores: &Stores) -> &Tap<Self>;
}

macro_rules! watched {
    ($($kind:ty => $field:ident),* $(,)?) => {$(
        impl Watched for $kind {
            fn store(stores: &Stores) -> &Store<Self> {
                &stores.$field
            }
            fn tap(stores: &Stores) -> &Tap<Self> {
                &stores.taps.$field
            }
        }
    )*};
}

watched!(
    Streamer => streamers,
    Stream => streams,
    Preset => presets,
    Organization => organizations,
    User => users,
    Zone => zones,
    PartialObjectMeta<Secret> => secrets,
);

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

    /// Every `K` in its store once, then every `K` its one watch touches, after the store
    /// applied it (see [`Tap::subscribe`]): what a controller's triggers run on.
    pub(crate) fn subscribe<K: Watched>(
        &self,
    ) -> impl futures::Stream<Item = Arc<K>> + Send + 'static {
        K::tap(self).subscribe(K::store(self))
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

/// A kind with a store in [`Stores`], found by type: generic code (a facade save waiting
/// until its own store shows the write) reaches the store of the kind it wrote.
pub trait Stored: Resource<DynamicType = ()> + Clone + 'static {
    /// The store that holds `obj`, None when this instance's store never will (a Stream or
    /// Streamer of another shard).
    fn store_of<'a>(stores: &'a Stores, obj: &Self) -> Option<&'a Store<Self>>;
}

macro_rules! stored {
    ($kind:ty, $field:ident, sharded) => {
        impl Stored for $kind {
            fn store_of<'a>(stores: &'a Stores, obj: &Self) -> Option<&'a Store<Self>> {
                stores.shard.holds(obj.labels()).then_some(&stores.$field)
            }
        }
    };
    ($kind:ty, $field:ident) => {
        impl Stored for $kind {
            fn store_of<'a>(stores: &'a Stores, _: &Self) -> Option<&'a Store<Self>> {
                Some(&stores.$field)
            }
        }
    };
}
stored!(Stream, streams, sharded);
stored!(Streamer, streamers, sharded);
stored!(Preset, presets);
stored!(Organization, organizations);
stored!(User, users);
stored!(Zone, zones);

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

/// Which objects of a store its watch touched since the one reader last asked, for a reader
/// that keeps something derived per object and would otherwise walk every object to find
/// the few that changed (the facade's rendered streams: 100,000 of them). Bounded: past
/// [`Journal::MAX`] unread entries, or on a relist (objects can vanish without an event), it
/// only remembers that anything may have changed.
#[derive(Clone, Debug, Default)]
pub(crate) struct Journal(Arc<Mutex<JournalInner>>);

#[derive(Debug, Default)]
struct JournalInner {
    /// (namespace, name) of each touched object, repeats included.
    touched: Vec<(String, String)>,
    overflowed: bool,
}

impl Journal {
    /// Unread entries kept before giving up on them (a reader that never asks, e.g. an
    /// operator whose facade nobody uses, costs at most this).
    pub const MAX: usize = 16_384;

    fn lock(&self) -> std::sync::MutexGuard<'_, JournalInner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn note<K: Resource>(&self, event: &watcher::Event<K>) {
        let mut j = self.lock();
        match event {
            watcher::Event::Apply(o) | watcher::Event::Delete(o) if !j.overflowed => {
                if j.touched.len() >= Self::MAX {
                    j.overflowed = true;
                    j.touched = Vec::new();
                } else {
                    let m = o.meta();
                    j.touched.push((
                        m.namespace.clone().unwrap_or_default(),
                        m.name.clone().unwrap_or_default(),
                    ));
                }
            }
            watcher::Event::Apply(_) | watcher::Event::Delete(_) => {}
            // A relist replaces the whole store when it is done.
            watcher::Event::Init | watcher::Event::InitApply(_) | watcher::Event::InitDone => {
                j.overflowed = true;
                j.touched = Vec::new();
            }
        }
    }

    /// The objects touched since the last call (each (namespace, name) once at most is not
    /// promised), or `None` when anything may have changed.
    pub fn take(&self) -> Option<Vec<(String, String)>> {
        let mut j = self.lock();
        let touched = std::mem::take(&mut j.touched);
        (!std::mem::take(&mut j.overflowed)).then_some(touched)
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
    /// The Streams touched, for the facade's rendered streams.
    pub stream_journal: Journal,
    /// The Streams touched, for the layouter (a journal has one reader).
    pub layout_journal: Journal,
    /// Presets.
    pub presets: Changes,
    /// Organizations.
    pub organizations: Changes,
    /// Users.
    pub users: Changes,
    /// Zones.
    pub zones: Changes,
}

/// What the reconcilers and the facade of one instance share: the stores (and their taps), the
/// live stats, the node clients, the Secret cache and the metrics registry. `panoptes run`
/// (the composition root) builds it once and hands it to both sides; neither builds a piece
/// of it for the other, and the tests build it with the same [`Shared::start`].
#[derive(Clone)]
pub struct Shared {
    /// API client.
    pub client: Client,
    /// Namespaces watched.
    pub scope: Scope,
    /// The stores of every kind, fed by one watch each.
    pub stores: Stores,
    /// Live stats of nodes and streams (fed by the Streamer controller or, on a standby, by
    /// the leader's copy; read by the facade).
    pub live: LiveStats,
    /// One client per node (kept by the Streamer controller; the facade uploads through them).
    pub nodes: NodeClients,
    /// Values of the Secrets objects reference, read by name.
    pub secrets: Arc<Secrets>,
    /// The registry `/metrics` serves.
    pub metrics: Metrics,
}

impl Shared {
    /// Starts the watches of `scope` (Streams and Streamers of `shard` only) into `tasks`
    /// and builds the rest around them, empty.
    pub fn start(client: Client, scope: Scope, shard: Shard, tasks: &mut JoinSet<()>) -> Self {
        let stores = start_sharded(client.clone(), &scope, shard, tasks);
        Self {
            secrets: Arc::new(Secrets::new(client.clone(), stores.secrets.clone())),
            client,
            scope,
            stores,
            live: LiveStats::new(),
            nodes: NodeClients::new(),
            metrics: Metrics::new(),
        }
    }
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
            strip,
            &c.streamers,
            &[],
            &t.streamers,
            r,
            tasks,
        ),
        streams: reflect(
            watcher::watcher(scope.api(api()), shard.watch_config()),
            strip,
            &c.streams,
            &[&c.stream_journal, &c.layout_journal],
            &t.streams,
            r,
            tasks,
        ),
        presets: reflect(
            watcher::watcher(scope.api(api()), all()),
            strip,
            &c.presets,
            &[],
            &t.presets,
            r,
            tasks,
        ),
        organizations: reflect(
            watcher::watcher(scope.api(api()), all()),
            strip,
            &c.organizations,
            &[],
            &t.organizations,
            r,
            tasks,
        ),
        users: reflect(
            watcher::watcher(scope.api(api()), all()),
            strip,
            &c.users,
            &[],
            &t.users,
            r,
            tasks,
        ),
        zones: reflect(
            watcher::watcher(scope.api(api()), all()),
            strip,
            &c.zones,
            &[],
            &t.zones,
            r,
            tasks,
        ),
        // kube 5's `Api<PartialObjectMeta<_>>` asks for PartialObjectMetadata: Secret data
        // never crosses the wire, not only never stays in memory.
        secrets: reflect(
            watcher::watcher(scope.api::<PartialObjectMeta<Secret>>(api()), all()),
            strip_secret_meta,
            &Changes::default(),
            &[],
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

/// Annotation `kubectl apply` (client-side) keeps a second copy of the whole object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what nothing here reads from an object before the store keeps it: at 100,000
/// Streams every byte per object is ~100 KB of operator memory. managedFields are a large
/// share of every object; a kubectl-applied object carries itself again as an annotation.
pub(crate) fn strip<K: Resource>(obj: &mut K) {
    obj.managed_fields_mut().clear();
    let meta = obj.meta_mut();
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
        if a.is_empty() {
            meta.annotations = None;
        }
    }
    if meta.managed_fields.as_ref().is_some_and(Vec::is_empty) {
        meta.managed_fields = None;
    }
}

/// What the metadata watch of Secrets keeps of each: its name, namespace, uid and
/// resourceVersion (whether a cached read is current, [`Secrets`]) and the owner references
/// of this API group (the User controller maps a hash Secret to its User by them). Labels and
/// annotations go: with a Secret per camera they were ~1 KiB of every camera's memory in each
/// replica (two small maps), and a namespace's Helm release Secrets carry several labels each.
/// The credentials sweep lists Secrets from the API server, not from this store.
pub(crate) fn strip_secret_meta(obj: &mut PartialObjectMeta<Secret>) {
    strip(obj);
    let meta = &mut obj.metadata;
    meta.labels = None;
    meta.annotations = None;
    meta.generate_name = None;
    meta.creation_timestamp = None;
    meta.finalizers = None;
    if let Some(owners) = meta.owner_references.as_mut() {
        owners.retain(|o| {
            o.api_version
                .strip_prefix(crate::resources::common::GROUP)
                .is_some_and(|rest| rest.starts_with('/'))
        });
        if owners.is_empty() {
            meta.owner_references = None;
        }
    }
}

/// Runs one watch into a new store (each object trimmed by `trim` first), and passes every
/// event the store applied on to `tap`.
fn reflect<K>(
    events: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    trim: fn(&mut K),
    changes: &Changes,
    journals: &[&Journal],
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
        .modify(trim)
        .reflect(writer)
        // Every event, deletes and relists included, after the store applied it.
        .inspect({
            let (changes, relists) = (changes.clone(), relists.clone());
            let journals: Vec<Journal> = journals.iter().map(|j| (*j).clone()).collect();
            move |event| {
                if let Ok(event) = event {
                    journals.iter().for_each(|j| j.note(event));
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use kube::api::ObjectMeta;

    #[test]
    fn stored_objects_lose_what_nothing_reads_and_keep_the_rest() {
        let mut s: Stream = serde_json::from_value(serde_json::json!({
            "apiVersion": "panoptes.dev/v1alpha1", "kind": "Stream",
            "metadata": { "name": "cam", "namespace": "ns" },
            "spec": { "inputs": [{ "url": "rtsp://10.0.0.1/live" }] },
        }))
        .unwrap();
        s.metadata = ObjectMeta {
            annotations: Some(
                [
                    (
                        LAST_APPLIED.to_string(),
                        "{\"a huge\":\"copy\"}".to_string(),
                    ),
                    ("panoptes.dev/kept".to_string(), "1".to_string()),
                ]
                .into(),
            ),
            managed_fields: Some(vec![ManagedFieldsEntry::default()]),
            ..s.metadata
        };
        strip(&mut s);
        assert_eq!(s.metadata.managed_fields, None);
        assert_eq!(
            s.annotations().keys().collect::<Vec<_>>(),
            ["panoptes.dev/kept"]
        );
        assert_eq!(s.name_any(), "cam");
        s.metadata.annotations = Some([(LAST_APPLIED.to_string(), String::new())].into());
        strip(&mut s);
        assert_eq!(s.metadata.annotations, None, "no empty map left behind");
    }

    #[test]
    fn stored_secret_metadata_keeps_what_its_readers_read() {
        let mut m: PartialObjectMeta<Secret> = serde_json::from_value(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {
                "name": "cam-x7k2p", "namespace": "ns", "generateName": "cam-",
                "uid": "u-1", "resourceVersion": "42",
                "creationTimestamp": "2026-12-07T10:00:00Z",
                "labels": { "app.kubernetes.io/managed-by": "panoptes" },
                "annotations": { "panoptes.dev/destination": "rtsp://cam:554" },
                "finalizers": ["example.com/keep"],
                "ownerReferences": [
                    { "apiVersion": "panoptes.dev/v1alpha1", "kind": "User", "name": "ann", "uid": "u-2" },
                    { "apiVersion": "panoptes.devices/v1", "kind": "User", "name": "x", "uid": "u-3" },
                    { "apiVersion": "helm.sh/v1", "kind": "Release", "name": "r", "uid": "u-4" },
                ],
                "managedFields": [{ "manager": "kubectl" }],
            },
        }))
        .unwrap();
        strip_secret_meta(&mut m);
        let meta = &m.metadata;
        assert_eq!(m.name_any(), "cam-x7k2p");
        assert_eq!(meta.namespace.as_deref(), Some("ns"));
        assert_eq!(meta.uid.as_deref(), Some("u-1"));
        assert_eq!(meta.resource_version.as_deref(), Some("42"));
        let owners: Vec<&str> = m
            .owner_references()
            .iter()
            .map(|o| o.name.as_str())
            .collect();
        assert_eq!(owners, ["ann"], "only this API group's owners");
        assert_eq!(
            (
                &meta.labels,
                &meta.annotations,
                &meta.generate_name,
                &meta.creation_timestamp,
                &meta.finalizers,
                &meta.managed_fields,
            ),
            (&None, &None, &None, &None, &None, &None)
        );
        m.metadata.owner_references = Some(vec![Default::default()]);
        strip_secret_meta(&mut m);
        assert_eq!(
            m.metadata.owner_references, None,
            "no empty list left behind"
        );
    }

    fn stream(name: &str) -> Stream {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "panoptes.dev/v1alpha1", "kind": "Stream",
            "metadata": { "name": name, "namespace": "ns" },
            "spec": { "inputs": [{ "url": "rtsp://10.0.0.1/live" }] },
        }))
        .unwrap()
    }

    #[test]
    fn the_journal_names_what_changed_and_gives_up_when_it_cannot_know() {
        let j = Journal::default();
        j.note(&watcher::Event::Apply(stream("a")));
        j.note(&watcher::Event::Delete(stream("b")));
        assert_eq!(
            j.take(),
            Some(vec![("ns".into(), "a".into()), ("ns".into(), "b".into())])
        );
        assert_eq!(j.take(), Some(vec![]), "read once");
        // A relist can drop objects without an event: anything may have changed.
        j.note(&watcher::Event::<Stream>::Init);
        j.note(&watcher::Event::InitApply(stream("a")));
        j.note(&watcher::Event::<Stream>::InitDone);
        j.note(&watcher::Event::Apply(stream("c")));
        assert_eq!(j.take(), None);
        assert_eq!(j.take(), Some(vec![]));
        // Bounded when nobody reads.
        for _ in 0..=Journal::MAX {
            j.note(&watcher::Event::Apply(stream("a")));
        }
        assert_eq!(j.lock().touched.capacity(), 0);
        assert_eq!(j.take(), None);
    }
}
