//! Cross-kind references of the Preset, Organization and User controllers, and the plumbing
//! the three share (errors, per-object backoff, status writes, Events).
//!
//! # Why the freshness check
//!
//! A controller learns about other kinds through its own `.watches(...)` stream, but reads
//! them from the shared reflector stores in [`Stores`]: two watches of the same resource that
//! see each event at slightly different moments. A reconcile triggered by a Stream event could
//! therefore read a store that has not seen that event yet, conclude nothing changed, and never
//! be triggered again. [`Pending`] closes that gap: each mapper records the `resourceVersion`
//! of the object it saw, and the reconcile first waits (a short requeue) until the store holds
//! that version; an object the store still lacks after a moment is looked up once on the API
//! server (a create the store has not seen, or a delete).
//!
//! # Why the index
//!
//! [`RefIndex`] is fed by the same trigger stream: source object → the names it references. It
//! answers "which targets did this source reference before" (so a Stream that moves from preset
//! A to preset B re-reconciles both) and "how many sources reference this target" without
//! scanning every Stream per reconcile.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use rand::Rng;
use serde::Serialize;

use super::Context;
use super::conditions::{self, Desired};
use crate::domain::refs::{RefKind, Reference, References};
use crate::resources::common::CONTROLLER_MANAGER;
use crate::resources::{Organization, Preset, Stream, User};
use crate::state::Stores;

/// `namespace` and `name` of an object.
pub type Key = crate::domain::key::ObjectKey;

/// The key of `obj`.
pub fn key_of<K: ResourceExt>(obj: &K) -> Key {
    Key::of(obj)
}

/// Errors of the Preset, Organization and User reconcilers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("{action} {what}: {source}")]
    Kube {
        /// What was attempted (`applying status of`, `creating id claim`, …).
        action: &'static str,
        /// The object concerned (`Preset ns/name`, `Lease ns/name`).
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Hashing or verifying a password failed for a reason other than a wrong password.
    #[error("password hashing for User {user} failed: {reason}")]
    Hash {
        /// `namespace/name` of the User.
        user: String,
        /// The hasher's error (never contains the password).
        reason: String,
    },
    /// No free id was found (the id space or the retry budget is exhausted).
    #[error("no free {kind} id found after {tries} candidates")]
    IdsExhausted {
        /// Kind of the ids.
        kind: &'static str,
        /// Candidates tried.
        tries: u32,
    },
}

impl Error {
    /// Wraps a kube error with what was attempted on which object.
    pub fn kube(action: &'static str, what: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let what = what.into();
        move |source| Error::Kube {
            action,
            what,
            source,
        }
    }

    /// A bounded label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube {
                source: kube::Error::Api(s),
                ..
            } if s.is_conflict() => "conflict",
            Error::Kube {
                source: kube::Error::Api(s),
                ..
            } if s.is_invalid() || s.code == 400 => "invalid",
            Error::Kube {
                source: kube::Error::Api(s),
                ..
            } if s.is_forbidden() => "forbidden",
            Error::Kube { .. } => "kube",
            Error::Hash { .. } => "hash",
            Error::IdsExhausted { .. } => "ids_exhausted",
        }
    }

    /// True when retrying without a change to the object cannot help (the API server rejected
    /// what we wrote as invalid): such errors wait for the next change instead of backing off.
    pub(crate) fn is_invalid_input(&self) -> bool {
        matches!(self, Error::Kube { source: kube::Error::Api(s), .. } if s.is_invalid() || s.code == 400)
    }
}

/// True for a 404 from the API server.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found())
}

/// Exponential backoff with jitter, per object: 1 s, 2 s, 4 s … capped at 5 min, each delay
/// drawn from [d/2, d]. Reset when the object reconciles cleanly.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<Key, u32>>,
}

impl Backoff {
    const BASE: Duration = Duration::from_secs(1);
    const CAP: Duration = Duration::from_secs(300);

    /// Records a failure of `key` and returns how long to wait.
    pub fn failed(&self, key: &Key) -> Duration {
        let n = {
            let mut f = self.failures.lock().expect("backoff poisoned");
            let n = f.entry(key.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let full = Self::BASE
            .saturating_mul(1u32 << (n - 1).min(16))
            .min(Self::CAP);
        let half = full / 2;
        half + Duration::from_millis(rand::rng().random_range(0..=half.as_millis() as u64))
    }

    /// Forgets the failures of `key`.
    pub(crate) fn succeeded(&self, key: &Key) {
        self.failures.lock().expect("backoff poisoned").remove(key);
    }
}

/// The shared `error_policy`: invalid input waits for a change, anything else backs off.
pub(crate) fn error_action(backoff: &Backoff, key: &Key, kind: &str, error: &Error) -> Action {
    tracing::warn!(kind, namespace = %key.namespace(), name = %key.name(), category = error.category(), %error, "reconcile failed");
    if error.is_invalid_input() {
        Action::await_change()
    } else {
        Action::requeue(backoff.failed(key))
    }
}

/// Waits until every shared store has its initial list, or `shutdown` resolves (then false).
///
/// `Stores::wait_ready` cannot be awaited by several tasks at once: kube-runtime's
/// `Store::wait_until_ready` parks only the most recent waiter (a oneshot's single waker), so
/// concurrent callers may sleep forever. Re-polling with a short timeout sidesteps that; once
/// one poll sees the store ready, every later poll returns at once.
pub(crate) async fn stores_ready(ctx: &Context, shutdown: impl Future<Output = ()>) -> bool {
    let wait = async {
        while tokio::time::timeout(Duration::from_millis(200), ctx.stores.wait_ready())
            .await
            .is_err()
        {}
    };
    tokio::select! {
        _ = wait => true,
        _ = shutdown => false,
    }
}

/// Server-side applies `body` (a partial object of kind `K`, `apiVersion`/`kind` added here)
/// to `ns/name` with field manager `manager`, forcing ownership. An object deleted meanwhile
/// needs nothing, so 404 is success.
pub(crate) async fn server_side_apply<K>(
    ctx: &Context,
    (ns, name): (&str, &str),
    manager: &str,
    mut body: serde_json::Value,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    body["apiVersion"] = serde_json::json!(K::api_version(&()));
    body["kind"] = serde_json::json!(K::kind(&()));
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let params = PatchParams::apply(manager).force();
    let patch = Patch::Apply(&body);
    match api.patch(name, &params, &patch).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Replaces the status subresource of `obj` with `status` (field manager `panoptes`), pinned to
/// its uid. An object deleted (or replaced by a namesake) meanwhile needs nothing.
///
/// One JSON patch (`test` the uid, `add` the whole status) rather than a server-side apply: the
/// controllers own their kinds' status outright, and on the API server an apply costs a YAML
/// decode and a structured merge on top of the update (a third of its CPU time at 10,000
/// Streams in the `make bench` profile).
pub(crate) async fn apply_status<K, S>(ctx: &Context, obj: &K, status: &S) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: Serialize,
{
    let key = key_of(obj);
    replace_status::<K, S>(ctx, &key, obj.uid().as_deref().unwrap_or_default(), status).await
}

/// [`apply_status`] by key and uid, for writers that no longer hold the object.
pub(crate) async fn replace_status<K, S>(
    ctx: &Context,
    key: &Key,
    uid: &str,
    status: &S,
) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: Serialize,
{
    let (ns, name) = (key.namespace(), key.name());
    let failed = Error::kube("writing status of", format!("{} {ns}/{name}", K::kind(&())));
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        { "op": "test", "path": "/metadata/uid", "value": uid },
        { "op": "add", "path": "/status", "value": status },
    ]))
    .expect("a well-formed JSON patch");
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let params = PatchParams {
        field_manager: Some(CONTROLLER_MANAGER.into()),
        ..PatchParams::default()
    };
    match api
        .patch_status(name, &params, &Patch::Json::<()>(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) || is_failed_test(&e) => Ok(()),
        Err(e) => Err(failed(e)),
    }
}

/// The uid `test` of a JSON patch failed: the object was replaced by one of the same name.
/// The API server answers that with a bare 422 (no field causes, unlike a status the schema
/// refuses, whose message names the object and the field).
fn is_failed_test(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 422
        && s.message == "the server rejected our request due to an error in our request")
}

/// Server-side applies `metadata` (finalizers, annotations; field manager `panoptes`) to `obj`,
/// pinned to its uid. An object deleted meanwhile needs nothing.
pub(crate) async fn apply_metadata<K>(
    ctx: &Context,
    obj: &K,
    mut metadata: serde_json::Value,
) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let (ns, name) = key_of(obj).into_parts();
    metadata["name"] = serde_json::json!(name);
    metadata["namespace"] = serde_json::json!(ns);
    metadata["uid"] = serde_json::json!(obj.uid());
    let body = serde_json::json!({ "metadata": metadata });
    server_side_apply::<K>(ctx, (&ns, &name), CONTROLLER_MANAGER, body)
        .await
        .map_err(Error::kube(
            "applying metadata of",
            format!("{} {ns}/{name}", K::kind(&())),
        ))
}

/// Publishes an Event about `obj` as the Event policy ([`crate::events::policy`]) says;
/// failures are logged, never fatal.
pub async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    reason: &str,
    note: String,
) {
    ctx.events.publish(&obj.object_ref(&()), reason, note).await;
}

/// The `Ready` condition's (status, reason) of a condition list.
pub(crate) fn ready_of(conditions: &[Condition]) -> Option<(String, String)> {
    crate::resources::common::condition(conditions, "Ready")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// The `Ready` condition `ready` merged over `existing` (transition times kept), and whether
/// Ready's status or reason changed (a transition worth an Event).
pub(crate) fn next_conditions(
    existing: &[Condition],
    ready: &Desired,
    generation: Option<i64>,
) -> (Vec<Condition>, bool) {
    let now = k8s_openapi::jiff::Timestamp::now();
    let flipped = ready_of(existing)
        != Some((
            if ready.status { "True" } else { "False" }.to_string(),
            ready.reason.to_string(),
        ));
    let conditions = conditions::update(existing, std::slice::from_ref(ready), generation, now)
        .unwrap_or_else(|| existing.to_vec());
    (conditions, flipped)
}

/// Like [`next_conditions`], with conditions besides `Ready` (`extra`) kept in step.
pub(crate) fn next_conditions_with(
    existing: &[Condition],
    ready: &Desired,
    extra: &[Desired],
    generation: Option<i64>,
) -> (Vec<Condition>, bool) {
    if extra.is_empty() {
        return next_conditions(existing, ready, generation);
    }
    let (_, flipped) = next_conditions(existing, ready, generation);
    let all: Vec<Desired> = std::iter::once(ready.clone())
        .chain(extra.iter().cloned())
        .collect();
    let now = k8s_openapi::jiff::Timestamp::now();
    let conditions =
        conditions::update(existing, &all, generation, now).unwrap_or_else(|| existing.to_vec());
    (conditions, flipped)
}

/// Which reflector store a reference source lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// `Stream`.
    Stream,
    /// `Preset`.
    Preset,
    /// `Organization`.
    Organization,
    /// `User`.
    User,
}

impl SourceKind {
    fn store_rv(self, stores: &Stores, ns: &str, name: &str) -> Option<Option<String>> {
        fn rv<K>(
            store: &kube::runtime::reflector::Store<K>,
            ns: &str,
            name: &str,
        ) -> Option<Option<String>>
        where
            K: Resource<DynamicType = ()> + Clone + 'static,
        {
            store
                .get(&ObjectRef::new(name).within(ns))
                .map(|o| o.resource_version())
        }
        match self {
            SourceKind::Stream => rv(&stores.streams, ns, name),
            SourceKind::Preset => rv(&stores.presets, ns, name),
            SourceKind::Organization => rv(&stores.organizations, ns, name),
            SourceKind::User => rv(&stores.users, ns, name),
        }
    }

    async fn exists(self, ctx: &Context, ns: &str, name: &str) -> Result<bool, Error> {
        async fn get<K>(ctx: &Context, ns: &str, name: &str) -> Result<bool, Error>
        where
            K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
                + Clone
                + serde::de::DeserializeOwned
                + std::fmt::Debug,
        {
            let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
            api.get_metadata_opt(name)
                .await
                .map(|o| o.is_some())
                .map_err(Error::kube(
                    "looking up",
                    format!("{} {ns}/{name}", K::kind(&())),
                ))
        }
        match self {
            SourceKind::Stream => get::<Stream>(ctx, ns, name).await,
            SourceKind::Preset => get::<Preset>(ctx, ns, name).await,
            SourceKind::Organization => get::<Organization>(ctx, ns, name).await,
            SourceKind::User => get::<User>(ctx, ns, name).await,
        }
    }
}

#[derive(Clone, Debug)]
struct Seen {
    rv: Option<String>,
    at: Instant,
}

/// The latest version seen of each source (kind and name in the target's namespace).
type SeenSources = HashMap<(SourceKind, String), Seen>;

/// Events a mapper saw for a target, not yet known to be reflected in the shared stores.
#[derive(Default)]
pub struct Pending {
    by_target: Mutex<HashMap<Key, SeenSources>>,
}

/// What settling the pending events of a target learned from the API server, overriding the
/// (lagging) store for this reconcile.
#[derive(Debug, Default)]
pub struct Facts {
    /// Sources that no longer exist.
    pub gone: HashSet<(SourceKind, String)>,
    /// Sources that exist though the store does not hold them yet.
    pub present: HashSet<(SourceKind, String)>,
}

impl Facts {
    /// Whether `name` of `kind` exists, by these facts or else by `in_store`.
    pub fn exists(&self, kind: SourceKind, name: &str, in_store: bool) -> bool {
        let k = (kind, name.to_string());
        if self.gone.contains(&k) {
            false
        } else {
            in_store || self.present.contains(&k)
        }
    }
}

/// Outcome of [`Pending::settle`].
#[derive(Debug)]
pub enum Settle {
    /// Every event seen for the target is reflected; facts learned on the way.
    Done(Facts),
    /// The store is still behind: requeue after this long.
    Wait(Duration),
}

impl Pending {
    /// How long a store may lag before the API server is asked directly.
    const GRACE: Duration = Duration::from_millis(400);
    /// Size of the map above which stale targets are dropped.
    const PRUNE_ABOVE: usize = 4096;
    /// Age after which an unreconciled target's entries are dropped.
    const STALE: Duration = Duration::from_secs(600);

    /// Records that `source` (in the target's namespace) was seen at `rv`, affecting `target`.
    pub fn record(&self, target: Key, kind: SourceKind, source: &str, rv: Option<String>) {
        let mut map = self.by_target.lock().expect("pending poisoned");
        // Targets that are never reconciled (a reference to an object that does not exist)
        // would keep their entries; drop old ones once the map grows.
        if map.len() > Self::PRUNE_ABOVE {
            map.retain(|_, seen| seen.values().any(|s| s.at.elapsed() < Self::STALE));
        }
        map.entry(target).or_default().insert(
            (kind, source.to_string()),
            Seen {
                rv,
                at: Instant::now(),
            },
        );
    }

    /// Checks that the shared stores reflect every event seen for `target`. A source the store
    /// does not hold at the seen version after [`Self::GRACE`] is looked up on the API server;
    /// a source found gone is forgotten by `indexes` of the same kind.
    pub async fn settle(
        &self,
        ctx: &Context,
        target: &Key,
        indexes: &[(SourceKind, &RefIndex)],
    ) -> Result<Settle, Error> {
        let entries = match self
            .by_target
            .lock()
            .expect("pending poisoned")
            .remove(target)
        {
            Some(e) => e,
            None => return Ok(Settle::Done(Facts::default())),
        };
        let ns = target.namespace();
        let mut facts = Facts::default();
        let mut waiting = HashMap::new();
        let mut result: Result<(), Error> = Ok(());
        for ((kind, name), seen) in entries {
            if result.is_err() {
                waiting.insert((kind, name), seen);
                continue;
            }
            let in_store = kind.store_rv(&ctx.stores, ns, &name);
            if in_store.as_ref().is_some_and(|rv| *rv == seen.rv) {
                continue;
            }
            if seen.at.elapsed() < Self::GRACE {
                waiting.insert((kind, name), seen);
                continue;
            }
            match kind.exists(ctx, ns, &name).await {
                Ok(true) => {
                    facts.present.insert((kind, name));
                }
                Ok(false) => {
                    for (k, index) in indexes {
                        if *k == kind {
                            index.forget(ns, &name);
                        }
                    }
                    facts.gone.insert((kind, name));
                }
                Err(e) => {
                    result = Err(e);
                    waiting.insert((kind, name), seen);
                }
            }
        }
        let wait = !waiting.is_empty();
        if wait {
            let mut map = self.by_target.lock().expect("pending poisoned");
            let slot = map.entry(target.clone()).or_default();
            for (k, seen) in waiting {
                // A newer record made while we looked wins.
                slot.entry(k).or_insert(seen);
            }
        }
        result?;
        Ok(if wait {
            Settle::Wait(Duration::from_millis(100))
        } else {
            Settle::Done(facts)
        })
    }
}

/// Source object → names of the targets it references (same namespace), and the reverse.
/// Fed by a controller's trigger stream, so it is exactly as fresh as the triggers.
#[derive(Default)]
pub struct RefIndex {
    inner: Mutex<RefIndexInner>,
}

#[derive(Default)]
struct RefIndexInner {
    by_source: HashMap<Key, Vec<String>>,
    by_target: HashMap<Key, BTreeSet<String>>,
}

impl RefIndex {
    /// Records that `ns/source` now references `targets`; returns every target whose set of
    /// sources may have changed (the old and the new ones, deduplicated, sorted).
    pub(crate) fn observe(&self, ns: &str, source: &str, targets: Vec<String>) -> Vec<String> {
        let mut targets = targets;
        targets.sort();
        targets.dedup();
        let mut inner = self.inner.lock().expect("ref index poisoned");
        let old = inner
            .by_source
            .insert(Key::new(ns, source), targets.clone())
            .unwrap_or_default();
        for t in &old {
            if let Some(set) = inner.by_target.get_mut(&Key::new(ns, t)) {
                set.remove(source);
                if set.is_empty() {
                    inner.by_target.remove(&Key::new(ns, t));
                }
            }
        }
        for t in &targets {
            inner
                .by_target
                .entry(Key::new(ns, t))
                .or_default()
                .insert(source.to_string());
        }
        let mut affected: Vec<String> = old.into_iter().chain(targets).collect();
        affected.sort();
        affected.dedup();
        affected
    }

    /// Forgets `ns/source` (it was deleted); returns the targets it referenced.
    pub(crate) fn forget(&self, ns: &str, source: &str) -> Vec<String> {
        let mut inner = self.inner.lock().expect("ref index poisoned");
        let old = inner
            .by_source
            .remove(&Key::new(ns, source))
            .unwrap_or_default();
        for t in &old {
            if let Some(set) = inner.by_target.get_mut(&Key::new(ns, t)) {
                set.remove(source);
                if set.is_empty() {
                    inner.by_target.remove(&Key::new(ns, t));
                }
            }
        }
        old
    }

    /// How many sources reference `ns/target`.
    pub fn count(&self, ns: &str, target: &str) -> i64 {
        let inner = self.inner.lock().expect("ref index poisoned");
        inner
            .by_target
            .get(&Key::new(ns, target))
            .map_or(0, |s| s.len() as i64)
    }

    /// The sources referencing `target` (a watch mapper's answer: what to reconcile).
    pub fn referrers<T: ResourceExt, S: Resource<DynamicType = ()>>(
        &self,
        target: &T,
    ) -> Vec<ObjectRef<S>> {
        let ns = target.namespace().unwrap_or_default();
        self.sources(&ns, &target.name_any())
            .into_iter()
            .map(|s| ObjectRef::new(&s).within(&ns))
            .collect()
    }

    /// The sources referencing `ns/target`, sorted.
    pub fn sources(&self, ns: &str, target: &str) -> Vec<String> {
        let inner = self.inner.lock().expect("ref index poisoned");
        inner
            .by_target
            .get(&Key::new(ns, target))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl From<RefKind> for SourceKind {
    fn from(kind: RefKind) -> Self {
        match kind {
            RefKind::Preset => SourceKind::Preset,
            RefKind::Organization => SourceKind::Organization,
            RefKind::User => SourceKind::User,
        }
    }
}

/// The references of `obj` that do not resolve ([`crate::domain::refs`], one rule for every
/// kind): not in the shared stores and not confirmed by `facts`. A name the store lacks is
/// confirmed with one API lookup (the store may lag the event that triggered this reconcile,
/// say the creation of the missing object), so only objects with a broken reference pay it.
pub async fn missing_references<K: References + ResourceExt>(
    ctx: &Context,
    obj: &K,
    facts: &Facts,
) -> Result<Vec<Reference>, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let absent = crate::domain::refs::missing_references(obj, |kind, name| {
        let kind = SourceKind::from(kind);
        facts.exists(kind, name, kind.store_rv(&ctx.stores, &ns, name).is_some())
    });
    let mut out = vec![];
    for r in absent {
        let kind = SourceKind::from(r.kind);
        if facts.gone.contains(&(kind, r.name.clone())) || !kind.exists(ctx, &ns, &r.name).await? {
            out.push(r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn observe_returns_old_and_new_targets() {
        let idx = RefIndex::default();
        assert_eq!(idx.observe("ns", "s1", names(&["a"])), names(&["a"]));
        assert_eq!(idx.observe("ns", "s2", names(&["a"])), names(&["a"]));
        assert_eq!(idx.count("ns", "a"), 2);
        // Moving s1 from a to b touches both.
        assert_eq!(idx.observe("ns", "s1", names(&["b"])), names(&["a", "b"]));
        assert_eq!(idx.count("ns", "a"), 1);
        assert_eq!(idx.count("ns", "b"), 1);
        assert_eq!(idx.sources("ns", "a"), names(&["s2"]));
        // Same name in another namespace is another target.
        assert_eq!(idx.count("other", "a"), 0);
        assert_eq!(idx.forget("ns", "s2"), names(&["a"]));
        assert_eq!(idx.count("ns", "a"), 0);
    }

    #[test]
    fn duplicates_count_once() {
        let idx = RefIndex::default();
        idx.observe("ns", "o", names(&["p", "p", "q"]));
        assert_eq!(idx.count("ns", "p"), 1);
        assert_eq!(idx.observe("ns", "o", vec![]), names(&["p", "q"]));
        assert_eq!(idx.count("ns", "q"), 0);
    }

    #[test]
    fn backoff_grows_with_jitter_and_resets() {
        let b = Backoff::default();
        let k = Key::new("ns", "x");
        let d1 = b.failed(&k);
        assert!(d1 >= Duration::from_millis(500) && d1 <= Duration::from_secs(1));
        let d2 = b.failed(&k);
        assert!(d2 >= Duration::from_secs(1) && d2 <= Duration::from_secs(2));
        for _ in 0..40 {
            assert!(b.failed(&k) <= Backoff::CAP);
        }
        b.succeeded(&k);
        assert!(b.failed(&k) <= Duration::from_secs(1));
    }

    #[test]
    fn facts_override_the_store() {
        let mut f = Facts::default();
        f.gone.insert((SourceKind::Preset, "a".into()));
        f.present.insert((SourceKind::Preset, "b".into()));
        assert!(!f.exists(SourceKind::Preset, "a", true));
        assert!(f.exists(SourceKind::Preset, "b", false));
        assert!(!f.exists(SourceKind::User, "b", false));
        assert!(f.exists(SourceKind::User, "c", true));
    }
}
