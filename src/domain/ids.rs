//! Stable integer Watcher ids for Presets, Organizations and Users.
//!
//! Requirements (DESIGN.md): unique per kind across the installation, stable across operator
//! restarts and across a backup/restore of the resources, assigned by the system for objects
//! created with kubectl, pinnable by GitOps (`spec.id`), collision-free with two replicas
//! racing.
//!
//! Design:
//! - **The id lives on the object**: annotation `panoptes.dev/id` (applied with field manager
//!   `panoptes`) mirrored in `status.id`. A backup of the resources carries the annotation, so a
//!   restore brings the same ids back.
//! - **Claims are Leases**: an id is taken by *creating* the `coordination.k8s.io/v1` Lease
//!   `<instance>-id-<kind>-<id>` in the system namespace (ids are per installation, see
//!   [`crate::domain::instance`]). Creation is atomic on the API server, so
//!   of two replicas racing for one id exactly one wins (the other gets 409 AlreadyExists and
//!   reads the claim: if it names the same object, i.e. the same kind and `namespace/name`, the
//!   id is ours; otherwise the next candidate is tried). The claim names its owner in
//!   `spec.holderIdentity` (`namespace/name`), annotations and labels (uid).
//! - **Which id an object wants**: `spec.id` (pinned) over the annotation over `status.id`;
//!   with none, a new id is allocated from *max known id + 1* (known = every id in the
//!   controller's store, pinned or held) upwards. An object that already claimed an id but died
//!   before writing the annotation finds its claim again by its uid label.
//! - **Conflicts**: a wanted id held by another object (its claim names another object, or no
//!   claim exists yet and the snapshot shows another object with a better right to it, e.g. a
//!   restored object whose claim is not re-created yet) is reported as `Ready=False`, reason
//!   `IdConflict`, with an Event. The object keeps what it had; it is never silently renumbered.
//! - **One allocator for both writers**: the controllers assign ids to objects created with
//!   kubectl ([`Ids::ensure`]); the facade claims an id *before* it creates the object and
//!   answers ([`claim_new`]), so two creates racing (or back to back, before the watch caught
//!   up) never get the same id. The facade's claim names the object it is about to create; the
//!   controller adopts it (relabels it with the object's uid) on its first reconcile.
//! - **Release**: the finalizer `panoptes.dev/cleanup` keeps a deleted object until its claims
//!   (every Lease labelled with its uid) are deleted, so the id can be reused. A claim whose
//!   object never appeared (the facade died between claim and create) is released by the
//!   leader's sweep once older than its grace period ([`claim_is_stale`]).
//!
//! The pure part (who has the better right to an id in a snapshot, which ids are wanted twice,
//! the next candidate) is plain functions, unit- and property-tested below.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::resources::common::Condition;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::instance::{INSTANCE_LABEL, Instance};
use crate::resources::{Organization, Preset, User};

/// Where id claims live: the API server and the system namespace. Implemented by the
/// controllers' context and by the facade's state.
pub trait ClaimSpace: Sync {
    /// A client allowed to create, read and delete Leases in [`Self::claim_namespace`].
    fn client(&self) -> &kube::Client;
    /// The namespace holding the claims.
    fn claim_namespace(&self) -> &str;
    /// The installation whose id space the claims are in.
    fn instance(&self) -> &Instance;
}

impl<T: ClaimSpace + Send> ClaimSpace for std::sync::Arc<T> {
    fn client(&self) -> &kube::Client {
        T::client(self)
    }
    fn claim_namespace(&self) -> &str {
        T::claim_namespace(self)
    }
    fn instance(&self) -> &Instance {
        T::instance(self)
    }
}

fn leases(ctx: &impl ClaimSpace) -> Api<Lease> {
    Api::namespaced(ctx.client().clone(), ctx.claim_namespace())
}

/// Errors of claiming ids.
#[derive(Debug, thiserror::Error)]
pub enum IdError {
    /// A call to the API server failed.
    #[error("{action} {what}: {source}")]
    Kube {
        /// What was attempted (`creating id claim`, …).
        action: &'static str,
        /// The object concerned.
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// No free id was found (the id space or the retry budget is exhausted).
    #[error("no free {kind} id found after {tries} candidates")]
    Exhausted {
        /// Kind of the ids.
        kind: &'static str,
        /// Candidates tried.
        tries: u32,
    },
}

impl IdError {
    fn kube(action: &'static str, what: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let what = what.into();
        move |source| IdError::Kube {
            action,
            what,
            source,
        }
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found())
}

/// Annotation holding an object's id.
pub const ID_ANNOTATION: &str = "panoptes.dev/id";
/// Largest id (the CRDs' `spec.id` maximum; Watcher ids are 32-bit).
pub const MAX_ID: i64 = 2_147_483_647;
/// Label on a claim: the kind it is for.
pub const CLAIM_KIND_LABEL: &str = "panoptes.dev/id-kind";
/// Label and annotation on a claim: uid of the owning object.
pub const CLAIM_UID: &str = "panoptes.dev/owner-uid";
/// Annotation on a claim: `namespace/name` of the owning object.
pub const CLAIM_OWNER: &str = "panoptes.dev/owner";
/// How many taken candidates one allocation walks past before giving up (and retrying later).
const MAX_TRIES: u32 = 1000;

/// The kinds that carry Watcher ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdKind {
    /// `Preset`.
    Preset,
    /// `Organization`.
    Organization,
    /// `User`.
    User,
}

impl IdKind {
    /// Lower-case name used in claim names and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::Preset => "preset",
            IdKind::Organization => "organization",
            IdKind::User => "user",
        }
    }
}

/// Name of the Lease that claims `id` of `kind` in `instance`'s id space.
pub fn claim_name(instance: &Instance, kind: IdKind, id: i64) -> String {
    format!("{}{}-{id}", instance.id_claim_prefix(), kind.as_str())
}

/// Name of the Lease that claims `id` of `kind` for the default instance.
pub fn lease_name(kind: IdKind, id: i64) -> String {
    claim_name(&Instance::default(), kind, id)
}

/// Whether `lease` is a claim in `instance`'s id space: labelled with it, or (a claim made
/// before claims carried the label) unlabelled and named as `instance` names that kind and
/// id. The name alone would not do: instance `panoptes`'s claims start with what instance
/// `panoptes-id`'s would.
pub fn claim_in(instance: &Instance, lease: &Lease) -> bool {
    if let Some(label) = lease.labels().get(INSTANCE_LABEL) {
        return label == instance.as_str();
    }
    let id = lease
        .annotations()
        .get(ID_ANNOTATION)
        .and_then(|v| v.parse::<i64>().ok());
    match (claim_kind(lease), id) {
        (Some(kind), Some(id)) => lease.name_any() == claim_name(instance, kind, id),
        _ => false,
    }
}

/// A kind with a Watcher id.
pub trait Identified:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// Which id space.
    const ID_KIND: IdKind;
    /// `spec.id`.
    fn pinned_id(&self) -> Option<i64>;
    /// `status.id`.
    fn status_id(&self) -> Option<i64>;
    /// `status.conditions`.
    fn conditions(&self) -> &[Condition];

    /// The object's Watcher id, the one the controllers and the facade know it by: the id it
    /// wants ([`wanted_id`]: pinned, else annotated, else its status), which it holds or is
    /// about to (right after a pin the status still names the old id for a moment). Once the
    /// controller found the wanted id held by another object (`Ready=False IdConflict`), the
    /// object keeps the id in its status instead: it is never renumbered silently, and two
    /// objects never answer to one id.
    fn watcher_id(&self) -> Option<i64> {
        let assigned = self.status_id().filter(|id| valid(*id));
        if crate::resources::common::condition(self.conditions(), "Ready")
            .is_some_and(|c| c.status == "False" && c.reason == ID_CONFLICT)
        {
            return assigned;
        }
        wanted_id(
            self.pinned_id().filter(|id| valid(*id)),
            annotated_id(self),
            assigned,
        )
    }
}

/// The condition reason of an object whose wanted id another object holds.
pub const ID_CONFLICT: &str = "IdConflict";

/// Which id an object wants, from what it says: pinned (`spec.id`) over the annotation over
/// `status.id`. A pin is GitOps' explicit wish; the annotation survives a backup/restore that
/// drops the status; the status may lag both.
pub fn wanted_id(
    pinned: Option<i64>,
    annotated: Option<i64>,
    assigned: Option<i64>,
) -> Option<i64> {
    pinned.or(annotated).or(assigned)
}

impl Identified for Preset {
    const ID_KIND: IdKind = IdKind::Preset;
    fn pinned_id(&self) -> Option<i64> {
        self.spec.id
    }
    fn status_id(&self) -> Option<i64> {
        self.status.as_ref().and_then(|s| s.id)
    }
    fn conditions(&self) -> &[Condition] {
        self.status
            .as_ref()
            .map_or(&[], |s| s.common.conditions.as_slice())
    }
}

impl Identified for Organization {
    const ID_KIND: IdKind = IdKind::Organization;
    fn pinned_id(&self) -> Option<i64> {
        self.spec.id
    }
    fn status_id(&self) -> Option<i64> {
        self.status.as_ref().and_then(|s| s.id)
    }
    fn conditions(&self) -> &[Condition] {
        self.status
            .as_ref()
            .map_or(&[], |s| s.common.conditions.as_slice())
    }
}

impl Identified for User {
    const ID_KIND: IdKind = IdKind::User;
    fn pinned_id(&self) -> Option<i64> {
        self.spec.id
    }
    fn status_id(&self) -> Option<i64> {
        self.status.as_ref().and_then(|s| s.id)
    }
    fn conditions(&self) -> &[Condition] {
        self.status
            .as_ref()
            .map_or(&[], |s| s.common.conditions.as_slice())
    }
}

/// The id in an object's `panoptes.dev/id` annotation, if it is a valid id.
pub fn annotated_id<K: ResourceExt>(obj: &K) -> Option<i64> {
    obj.annotations()
        .get(ID_ANNOTATION)
        .and_then(|v| v.trim().parse().ok())
        .filter(|id| valid(*id))
}

fn valid(id: i64) -> bool {
    (1..=MAX_ID).contains(&id)
}

/// What one object says about its id (the pure input of the id functions).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holding {
    /// `namespace/name`.
    pub owner: String,
    /// Creation time (ms since the epoch), for tie-breaking.
    pub created_ms: i64,
    /// `spec.id`.
    pub pinned: Option<i64>,
    /// The annotation.
    pub annotated: Option<i64>,
    /// `status.id`.
    pub assigned: Option<i64>,
}

impl Holding {
    /// The facts of `obj`.
    pub fn of<K: Identified>(obj: &K) -> Self {
        let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
        Self {
            owner: format!("{ns}/{name}"),
            created_ms: obj
                .meta()
                .creation_timestamp
                .as_ref()
                .map_or(i64::MAX, |t| t.0.as_millisecond()),
            pinned: obj.pinned_id().filter(|id| valid(*id)),
            annotated: annotated_id(obj),
            assigned: obj.status_id().filter(|id| valid(*id)),
        }
    }

    /// The id the object should have: pinned, else annotated, else the one in its status.
    pub fn wanted(&self) -> Option<i64> {
        wanted_id(self.pinned, self.annotated, self.assigned)
    }

    /// How strong this object's right to `id` is: established (annotation and status agree) >
    /// annotation only (restored or copied) > status only > pinned only > none.
    fn right_to(&self, id: i64) -> u8 {
        match (
            self.annotated == Some(id),
            self.assigned == Some(id),
            self.pinned == Some(id),
        ) {
            (true, true, _) => 4,
            (true, false, _) => 3,
            (false, true, _) => 2,
            (false, false, true) => 1,
            _ => 0,
        }
    }
}

/// Of the objects in `snapshot` that claim `id` in any way, the one with the best right to it:
/// the strongest claim, then the oldest object, then the smaller `namespace/name`. Independent
/// of the order of the snapshot, so every replica picks the same one.
pub fn rightful_holder(snapshot: &[Holding], id: i64) -> Option<&Holding> {
    snapshot
        .iter()
        .filter(|h| h.right_to(id) > 0)
        .min_by(|a, b| {
            b.right_to(id)
                .cmp(&a.right_to(id))
                .then(a.created_ms.cmp(&b.created_ms))
                .then(a.owner.cmp(&b.owner))
        })
}

/// Every id that more than one object of the snapshot wants, with those objects (sorted).
pub fn conflicts(snapshot: &[Holding]) -> BTreeMap<i64, Vec<String>> {
    let mut by_id: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for h in snapshot {
        if let Some(id) = h.wanted() {
            by_id.entry(id).or_default().push(h.owner.clone());
        }
    }
    by_id.retain(|_, owners| owners.len() > 1);
    for owners in by_id.values_mut() {
        owners.sort();
    }
    by_id
}

/// First candidate for a new id: above every id the snapshot mentions and at least `floor`;
/// None when the id space is exhausted.
pub fn next_candidate(snapshot: &[Holding], floor: i64) -> Option<i64> {
    let max_known = snapshot
        .iter()
        .flat_map(|h| [h.pinned, h.annotated, h.assigned])
        .flatten()
        .max()
        .unwrap_or(0);
    let c = (max_known + 1).max(floor).max(1);
    valid(c).then_some(c)
}

/// The message of an `IdConflict` condition: which id, where it came from, who holds it and
/// how to resolve it (the same for every kind with an id).
pub fn conflict_message(id: i64, holder: &str, pinned: bool) -> String {
    let source = if pinned {
        "spec.id"
    } else {
        "the panoptes.dev/id annotation"
    };
    let fix = if pinned {
        "pin another id or remove spec.id"
    } else {
        "remove the annotation to have a new id assigned, or pin another id in spec.id"
    };
    format!("id {id} from {source} is held by {holder}; {fix}")
}

/// Who wants which id, for every object of a store (what the allocator decides over).
pub fn holdings<K: Identified>(store: &Store<K>) -> Vec<Holding> {
    store
        .state()
        .iter()
        .map(|o| Holding::of(o.as_ref()))
        .collect()
}

/// Outcome of [`Ids::ensure`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdState {
    /// The object holds this id (its claim exists and names it).
    Held(i64),
    /// The id the object wants is held by `holder` (`namespace/name`).
    Conflict {
        /// The wanted id.
        id: i64,
        /// Who holds it.
        holder: String,
        /// Whether the id was pinned in `spec.id` (else it came from the annotation or status).
        pinned: bool,
    },
}

enum Claim {
    Ours,
    Theirs(String),
}

/// Id claims of one kind, for one controller. Remembers the claims it confirmed in this
/// process (so a steady-state reconcile makes no API call) and where the last allocation
/// ended (so a burst of new objects does not re-probe the same taken ids).
pub struct Ids {
    kind: IdKind,
    hint: AtomicI64,
    confirmed: Mutex<HashMap<String, i64>>,
}

impl Ids {
    /// Claims of `kind`.
    pub fn new(kind: IdKind) -> Self {
        Self {
            kind,
            hint: AtomicI64::new(1),
            confirmed: Mutex::new(HashMap::new()),
        }
    }

    fn leases(&self, ctx: &impl ClaimSpace) -> Api<Lease> {
        leases(ctx)
    }

    fn lease_for(&self, ctx: &impl ClaimSpace, id: i64, owner: &str, uid: &str) -> Lease {
        let labels = [
            (
                "app.kubernetes.io/managed-by".to_string(),
                "panoptes".to_string(),
            ),
            (CLAIM_KIND_LABEL.to_string(), self.kind.as_str().to_string()),
            (CLAIM_UID.to_string(), uid.to_string()),
            (INSTANCE_LABEL.to_string(), ctx.instance().to_string()),
        ];
        let annotations = [
            (CLAIM_OWNER.to_string(), owner.to_string()),
            (CLAIM_UID.to_string(), uid.to_string()),
            (ID_ANNOTATION.to_string(), id.to_string()),
        ];
        Lease {
            metadata: ObjectMeta {
                name: Some(claim_name(ctx.instance(), self.kind, id)),
                namespace: Some(ctx.claim_namespace().to_string()),
                labels: Some(labels.into_iter().collect()),
                annotations: Some(annotations.into_iter().collect()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(owner.to_string()),
                ..Default::default()
            }),
        }
    }

    /// Makes sure `obj` holds an id, claiming one if needed. `snapshot` is called only when
    /// the store must be consulted (a new allocation or an unconfirmed claim).
    pub async fn ensure<K: Identified>(
        &self,
        ctx: &impl ClaimSpace,
        obj: &K,
        snapshot: impl Fn() -> Vec<Holding>,
    ) -> Result<IdState, IdError> {
        let me = Holding::of(obj);
        let uid = obj.uid().unwrap_or_default();
        if let Some(want) = me.wanted() {
            if self.confirmed.lock().expect("ids poisoned").get(&uid) == Some(&want) {
                return Ok(IdState::Held(want));
            }
            return match self.claim(ctx, want, &me, &uid, &snapshot()).await? {
                Claim::Ours => {
                    self.confirmed
                        .lock()
                        .expect("ids poisoned")
                        .insert(uid.clone(), want);
                    // A newly pinned id replaces an assigned one: free the old claim.
                    if let Some(old) = me.annotated.filter(|old| *old != want) {
                        self.release_one(ctx, old, &me.owner).await?;
                    }
                    Ok(IdState::Held(want))
                }
                Claim::Theirs(holder) => Ok(IdState::Conflict {
                    id: want,
                    holder,
                    pinned: me.pinned == Some(want),
                }),
            };
        }
        // No id yet: a claim made by an earlier attempt (this or another replica) wins.
        let selector = format!(
            "{CLAIM_KIND_LABEL}={},{CLAIM_UID}={uid}",
            self.kind.as_str()
        );
        let existing = self
            .leases(ctx)
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(IdError::kube("listing id claims of", me.owner.clone()))?;
        let adopted = existing
            .items
            .iter()
            .filter(|l| names(l, &me.owner))
            .filter_map(|l| {
                l.annotations()
                    .get(ID_ANNOTATION)
                    .and_then(|v| v.parse::<i64>().ok())
            })
            .min();
        if let Some(id) = adopted {
            self.confirmed.lock().expect("ids poisoned").insert(uid, id);
            return Ok(IdState::Held(id));
        }
        let snap = snapshot();
        let mut candidate =
            next_candidate(&snap, self.hint.load(Ordering::Relaxed)).ok_or(IdError::Exhausted {
                kind: self.kind.as_str(),
                tries: 0,
            })?;
        for _ in 0..MAX_TRIES {
            match self.create_or_read(ctx, candidate, &me.owner, &uid).await? {
                Some(Claim::Ours) => {
                    self.hint.fetch_max(candidate + 1, Ordering::Relaxed);
                    self.confirmed
                        .lock()
                        .expect("ids poisoned")
                        .insert(uid, candidate);
                    tracing::info!(kind = self.kind.as_str(), owner = %me.owner, id = candidate, "id assigned");
                    return Ok(IdState::Held(candidate));
                }
                Some(Claim::Theirs(_)) | None => {
                    self.hint.fetch_max(candidate + 1, Ordering::Relaxed);
                    candidate += 1;
                    if !valid(candidate) {
                        break;
                    }
                }
            }
        }
        Err(IdError::Exhausted {
            kind: self.kind.as_str(),
            tries: MAX_TRIES,
        })
    }

    /// Claims a specific id for `me`.
    async fn claim(
        &self,
        ctx: &impl ClaimSpace,
        id: i64,
        me: &Holding,
        uid: &str,
        snapshot: &[Holding],
    ) -> Result<Claim, IdError> {
        let name = claim_name(ctx.instance(), self.kind, id);
        for _ in 0..3 {
            let lease = self
                .leases(ctx)
                .get_opt(&name)
                .await
                .map_err(IdError::kube("reading id claim", name.clone()))?;
            match lease {
                Some(lease) => return self.judge(ctx, lease, &me.owner, uid).await,
                None => {
                    // No claim yet (a restore, or an id only pinned so far): the snapshot
                    // decides who has the better right before anyone claims it.
                    if let Some(h) = rightful_holder(snapshot, id).filter(|h| h.owner != me.owner) {
                        return Ok(Claim::Theirs(h.owner.clone()));
                    }
                    if let Some(claim) = self.create_or_read(ctx, id, &me.owner, uid).await? {
                        return Ok(claim);
                    }
                }
            }
        }
        // The claim appeared and vanished repeatedly under us: treat as transient.
        Err(IdError::Exhausted {
            kind: self.kind.as_str(),
            tries: 3,
        })
    }

    /// Creates the claim; on 409 reads it. None when it vanished between the two.
    async fn create_or_read(
        &self,
        ctx: &impl ClaimSpace,
        id: i64,
        owner: &str,
        uid: &str,
    ) -> Result<Option<Claim>, IdError> {
        let name = claim_name(ctx.instance(), self.kind, id);
        match self
            .leases(ctx)
            .create(&PostParams::default(), &self.lease_for(ctx, id, owner, uid))
            .await
        {
            Ok(_) => Ok(Some(Claim::Ours)),
            Err(kube::Error::Api(s)) if s.is_already_exists() => {
                match self
                    .leases(ctx)
                    .get_opt(&name)
                    .await
                    .map_err(IdError::kube("reading id claim", name.clone()))?
                {
                    Some(lease) => self.judge(ctx, lease, owner, uid).await.map(Some),
                    None => Ok(None),
                }
            }
            Err(e) => Err(IdError::kube("creating id claim", name)(e)),
        }
    }

    /// Whether an existing claim is ours; adopts a claim of an earlier incarnation of the same
    /// object (a restore gives the object a new uid) by relabelling it.
    async fn judge(
        &self,
        ctx: &impl ClaimSpace,
        lease: Lease,
        owner: &str,
        uid: &str,
    ) -> Result<Claim, IdError> {
        if !names(&lease, owner) {
            return Ok(Claim::Theirs(claim_owner(&lease)));
        }
        if lease.labels().get(CLAIM_UID).map(String::as_str) != Some(uid) {
            let patch = serde_json::json!({
                "metadata": { "labels": { CLAIM_UID: uid }, "annotations": { CLAIM_UID: uid } }
            });
            let name = lease.name_any();
            self.leases(ctx)
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(IdError::kube("adopting id claim", name))?;
        }
        Ok(Claim::Ours)
    }

    /// Deletes the claim on `id` if it names `owner`.
    async fn release_one(
        &self,
        ctx: &impl ClaimSpace,
        id: i64,
        owner: &str,
    ) -> Result<(), IdError> {
        let name = claim_name(ctx.instance(), self.kind, id);
        let api = self.leases(ctx);
        if let Some(lease) = api
            .get_opt(&name)
            .await
            .map_err(IdError::kube("reading id claim", name.clone()))?
            && names(&lease, owner)
        {
            delete_lease(&api, &lease).await?;
        }
        Ok(())
    }

    /// Releases every claim of `obj` (it is being deleted).
    pub async fn release<K: Identified>(
        &self,
        ctx: &impl ClaimSpace,
        obj: &K,
    ) -> Result<(), IdError> {
        let uid = obj.uid().unwrap_or_default();
        let owner = Holding::of(obj).owner;
        let api = self.leases(ctx);
        let selector = format!(
            "{CLAIM_KIND_LABEL}={},{CLAIM_UID}={uid}",
            self.kind.as_str()
        );
        let leases = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(IdError::kube("listing id claims of", owner.clone()))?;
        for lease in leases.items.iter().filter(|l| names(l, &owner)) {
            delete_lease(&api, lease).await?;
        }
        // The annotated id's claim may still carry a previous uid (not adopted yet).
        if let Some(id) = annotated_id(obj) {
            self.release_one(ctx, id, &owner).await?;
        }
        self.confirmed.lock().expect("ids poisoned").remove(&uid);
        Ok(())
    }
}

async fn delete_lease(api: &Api<Lease>, lease: &Lease) -> Result<(), IdError> {
    let name = lease.name_any();
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: lease.uid(),
            resource_version: lease.resource_version(),
        }),
        ..Default::default()
    };
    match api.delete(&name, &dp).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        // Changed meanwhile (adopted by a restored object): leave it.
        Err(kube::Error::Api(s)) if s.is_conflict() => Ok(()),
        Err(e) => Err(IdError::kube("releasing id claim", name)(e)),
    }
}

fn names(lease: &Lease, owner: &str) -> bool {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        == Some(owner)
}

fn claim_owner(lease: &Lease) -> String {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .or_else(|| lease.annotations().get(CLAIM_OWNER).cloned())
        .unwrap_or_else(|| format!("the claim {}", lease.name_any()))
}

/// The kind a claim is for (its kind label), if it is an id claim.
pub fn claim_kind(lease: &Lease) -> Option<IdKind> {
    match lease.labels().get(CLAIM_KIND_LABEL).map(String::as_str) {
        Some("preset") => Some(IdKind::Preset),
        Some("organization") => Some(IdKind::Organization),
        Some("user") => Some(IdKind::User),
        _ => None,
    }
}

/// The object a claim names, as `(namespace, name)`; None when it names none readable.
pub fn claim_holder(lease: &Lease) -> Option<(String, String)> {
    let owner = lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .or_else(|| lease.annotations().get(CLAIM_OWNER).cloned())?;
    let (ns, name) = owner.split_once('/')?;
    (!ns.is_empty() && !name.is_empty()).then(|| (ns.to_string(), name.to_string()))
}

/// Whether the leader's sweep may release a claim: the object it names does not exist (on
/// the API server, not only in a store that may lag) and the claim is older than `grace_ms`.
/// The grace covers a facade create in flight, which claims the id before it creates the
/// object; a claim with no creation time is as old as can be. A claim whose holder exists is
/// always kept: a deleted holder's finalizer releases it, a restored one adopts it.
pub fn claim_is_stale(
    claim_created_ms: Option<i64>,
    holder_exists: bool,
    now_ms: i64,
    grace_ms: i64,
) -> bool {
    !holder_exists && claim_created_ms.is_none_or(|c| now_ms.saturating_sub(c) >= grace_ms)
}

/// Deletes `lease` only if it is still this version of this claim (uid and resourceVersion
/// preconditions). True when deleted; false when it was gone or changed meanwhile (re-pointed
/// or adopted, so no longer the stale claim that was judged).
pub async fn release_stale_claim(api: &Api<Lease>, lease: &Lease) -> Result<bool, kube::Error> {
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: lease.uid(),
            resource_version: lease.resource_version(),
        }),
        ..Default::default()
    };
    match api.delete(&lease.name_any(), &dp).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => Ok(false),
        Err(e) => Err(e),
    }
}

/// An id the facade claimed for an object it is about to create.
#[derive(Clone, Debug)]
pub struct Claimed {
    /// The id.
    pub id: i64,
    lease: Lease,
}

/// Claims a fresh id of `kind` for the object `owner(id)` (`namespace/name`) that is about to
/// be created:
/// creates the claim for the first candidate above everything `snapshot` knows and, when that
/// claim exists already (whoever holds it — another create racing this one, an object the
/// watch has not delivered yet, a leftover), tries the next. Never adopts an existing claim:
/// two creates of the same object name must not both think they hold an id.
pub async fn claim_new(
    ctx: &impl ClaimSpace,
    kind: IdKind,
    owner: impl Fn(i64) -> String,
    snapshot: &[Holding],
) -> Result<Claimed, IdError> {
    let api = leases(ctx);
    let mut candidate = next_candidate(snapshot, 1).ok_or(IdError::Exhausted {
        kind: kind.as_str(),
        tries: 0,
    })?;
    // A label value unique to this attempt; the controller replaces it with the object's uid.
    let nonce = format!("pending-{:016x}", rand::random::<u64>());
    let ids = Ids::new(kind);
    for _ in 0..MAX_TRIES {
        let holder = owner(candidate);
        let lease = ids.lease_for(ctx, candidate, &holder, &nonce);
        match api.create(&PostParams::default(), &lease).await {
            Ok(lease) => {
                tracing::info!(kind = kind.as_str(), owner = %holder, id = candidate, "id claimed for a create");
                return Ok(Claimed {
                    id: candidate,
                    lease,
                });
            }
            Err(kube::Error::Api(s)) if s.is_already_exists() => {
                candidate += 1;
                if !valid(candidate) {
                    break;
                }
            }
            Err(e) => {
                return Err(IdError::kube(
                    "creating id claim",
                    claim_name(ctx.instance(), kind, candidate),
                )(e));
            }
        }
    }
    Err(IdError::Exhausted {
        kind: kind.as_str(),
        tries: MAX_TRIES,
    })
}

impl Claimed {
    /// Points the claim at another object name (the one the create will use after its first
    /// choice was taken). Guarded by the claim's resourceVersion.
    pub async fn rebind(&mut self, ctx: &impl ClaimSpace, owner: &str) -> Result<(), IdError> {
        let name = self.lease.name_any();
        let patch = serde_json::json!({
            "metadata": {
                "resourceVersion": self.lease.resource_version(),
                "annotations": { CLAIM_OWNER: owner },
            },
            "spec": { "holderIdentity": owner },
        });
        self.lease = leases(ctx)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(IdError::kube("rebinding id claim", name))?;
        Ok(())
    }

    /// Gives the id back (the create it was claimed for failed). Only this claim is deleted:
    /// the delete is guarded by its uid and resourceVersion.
    pub async fn release(self, ctx: &impl ClaimSpace) -> Result<(), IdError> {
        delete_lease(&leases(ctx), &self.lease).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn h(
        owner: &str,
        created: i64,
        pinned: Option<i64>,
        annotated: Option<i64>,
        assigned: Option<i64>,
    ) -> Holding {
        Holding {
            owner: owner.into(),
            created_ms: created,
            pinned,
            annotated,
            assigned,
        }
    }

    #[test]
    fn stale_claims_are_old_and_holderless() {
        let grace = 600_000;
        let now = 10_000_000;
        // (created, holder exists, stale)
        let table = [
            (Some(now - grace - 1), false, true),
            (Some(now - grace), false, true),
            (Some(now - grace + 1), false, false),
            (Some(now), false, false),
            (Some(now - grace - 1), true, false),
            (Some(0), true, false),
            (None, false, true),
            (None, true, false),
            // A creation time in the future (clock skew) is young.
            (Some(now + 1), false, false),
        ];
        for (created, exists, stale) in table {
            assert_eq!(
                claim_is_stale(created, exists, now, grace),
                stale,
                "created {created:?}, holder exists {exists}"
            );
        }
        // Zero grace: any holderless claim.
        assert!(claim_is_stale(Some(now), false, now, 0));
        assert!(!claim_is_stale(Some(now), true, now, 0));
    }

    #[test]
    fn claims_name_their_kind_and_holder() {
        let lease = {
            let labels = [(CLAIM_KIND_LABEL.to_string(), "user".to_string())];
            Lease {
                metadata: ObjectMeta {
                    labels: Some(labels.into_iter().collect()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some("ns/user-a".into()),
                    ..Default::default()
                }),
            }
        };
        assert_eq!(claim_kind(&lease), Some(IdKind::User));
        assert_eq!(
            claim_holder(&lease),
            Some(("ns".to_string(), "user-a".to_string()))
        );
        let mut bare = lease.clone();
        bare.spec = None;
        bare.metadata.labels = None;
        assert_eq!(claim_kind(&bare), None);
        assert_eq!(claim_holder(&bare), None);
        bare.spec = Some(LeaseSpec {
            holder_identity: Some("no-slash".into()),
            ..Default::default()
        });
        assert_eq!(claim_holder(&bare), None);
    }

    #[test]
    fn conflict_messages_say_what_to_do() {
        assert!(conflict_message(7, "ns/a", true).contains("spec.id"));
        assert!(conflict_message(7, "ns/a", false).contains("remove the annotation"));
    }

    #[test]
    fn lease_names() {
        assert_eq!(lease_name(IdKind::Preset, 7), "panoptes-id-preset-7");
        assert_eq!(
            lease_name(IdKind::Organization, 1),
            "panoptes-id-organization-1"
        );
    }

    #[test]
    fn a_claim_belongs_to_one_instance() {
        let panoptes = Instance::default();
        let team: Instance = "panoptes-id".parse().unwrap();
        let claim = |name: &str, label: Option<&str>| {
            let mut labels = BTreeMap::from([(CLAIM_KIND_LABEL.to_string(), "user".to_string())]);
            if let Some(l) = label {
                labels.insert(INSTANCE_LABEL.to_string(), l.to_string());
            }
            Lease {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([(
                        ID_ANNOTATION.to_string(),
                        "7".to_string(),
                    )])),
                    ..Default::default()
                },
                spec: None,
            }
        };
        // (claim name, instance label, in `panoptes`, in `panoptes-id`)
        let table = [
            ("panoptes-id-user-7", Some("panoptes"), true, false),
            ("panoptes-id-id-user-7", Some("panoptes-id"), false, true),
            // Made before claims carried the label: the exact name decides, never a prefix
            // (`panoptes-id-id-user-7` starts with `panoptes-id-`).
            ("panoptes-id-user-7", None, true, false),
            ("panoptes-id-id-user-7", None, false, true),
            ("panoptes-id-user-8", None, false, false),
        ];
        for (name, label, in_default, in_team) in table {
            let lease = claim(name, label);
            assert_eq!(claim_in(&panoptes, &lease), in_default, "{name} {label:?}");
            assert_eq!(claim_in(&team, &lease), in_team, "{name} {label:?}");
        }
        assert_eq!(
            claim_name(&team, IdKind::Preset, 3),
            "panoptes-id-id-preset-3"
        );
    }

    #[test]
    fn wanted_prefers_pin_then_annotation_then_status() {
        assert_eq!(h("a", 0, Some(5), Some(3), Some(2)).wanted(), Some(5));
        assert_eq!(h("a", 0, None, Some(3), Some(2)).wanted(), Some(3));
        assert_eq!(h("a", 0, None, None, Some(2)).wanted(), Some(2));
        assert_eq!(h("a", 0, None, None, None).wanted(), None);
    }

    #[test]
    fn next_candidate_is_above_everything_known() {
        assert_eq!(next_candidate(&[], 1), Some(1));
        let snap = [
            h("a", 0, Some(40), None, None),
            h("b", 0, None, Some(7), Some(7)),
        ];
        assert_eq!(next_candidate(&snap, 1), Some(41));
        assert_eq!(next_candidate(&snap, 100), Some(100));
        assert_eq!(
            next_candidate(&[h("a", 0, None, Some(MAX_ID), None)], 1),
            None
        );
    }

    #[test]
    fn established_holder_beats_a_pin_and_a_copy() {
        let owner = h("ns/owner", 50, None, Some(9), Some(9));
        let copy = h("ns/copy", 10, None, Some(9), None);
        let pin = h("ns/pin", 1, Some(9), None, None);
        let snap = [pin.clone(), copy.clone(), owner.clone()];
        assert_eq!(rightful_holder(&snap, 9), Some(&owner));
        // Without the established owner, the copied annotation beats the bare pin.
        assert_eq!(
            rightful_holder(&[pin.clone(), copy.clone()], 9),
            Some(&copy)
        );
        // Two bare pins: the older object wins.
        let young = h("ns/young", 99, Some(9), None, None);
        assert_eq!(rightful_holder(&[young, pin.clone()], 9), Some(&pin));
        assert_eq!(rightful_holder(&snap, 10), None);
    }

    #[test]
    fn conflicts_list_ids_wanted_twice() {
        let snap = [
            h("ns/a", 0, Some(3), None, None),
            h("ns/b", 0, None, Some(3), Some(3)),
            h("ns/c", 0, None, Some(4), None),
        ];
        let c = conflicts(&snap);
        assert_eq!(c.len(), 1);
        assert_eq!(c[&3], vec!["ns/a".to_string(), "ns/b".to_string()]);
    }

    fn holding() -> impl Strategy<Value = Holding> {
        let id = proptest::option::of(1i64..50);
        (0u8..20, 0i64..5, id.clone(), id.clone(), id)
            .prop_map(|(o, c, p, a, s)| h(&format!("ns/o{o}"), c, p, a, s))
    }

    proptest! {
        #[test]
        fn candidate_is_fresh_and_bounded(snap in proptest::collection::vec(holding(), 0..30), floor in 0i64..100) {
            let c = next_candidate(&snap, floor).unwrap();
            prop_assert!(c >= floor && (1..=MAX_ID).contains(&c));
            for x in &snap {
                prop_assert!([x.pinned, x.annotated, x.assigned].iter().flatten().all(|id| *id < c));
            }
        }

        #[test]
        fn rightful_holder_ignores_order_and_has_the_strongest_claim(
            snap in proptest::collection::vec(holding(), 0..30), id in 1i64..50, seed in any::<u64>()
        ) {
            // One holding per owner, as in a real snapshot.
            let mut seen = BTreeSet::new();
            let snap: Vec<Holding> = snap.into_iter().filter(|h| seen.insert(h.owner.clone())).collect();
            let mut shuffled = snap.clone();
            let n = shuffled.len();
            for i in 0..n {
                let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) % n as u64) as usize;
                shuffled.swap(i, j);
            }
            let a = rightful_holder(&snap, id).map(|h| h.owner.clone());
            let b = rightful_holder(&shuffled, id).map(|h| h.owner.clone());
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(a.is_some(), snap.iter().any(|h| h.right_to(id) > 0));
            if let Some(holder) = rightful_holder(&snap, id) {
                for other in &snap {
                    prop_assert!(other.right_to(id) <= holder.right_to(id));
                }
            }
        }

        /// The id the facade shows is the id the controllers claim, whatever the object says.
        #[test]
        fn watcher_id_is_the_id_the_controllers_want(
            pinned in proptest::option::of(-2i64..12), annotated in proptest::option::of("[ 0-9a-z-]{0,3}"),
            assigned in proptest::option::of(-2i64..12),
        ) {
            let mut p = Preset::new("p", Default::default());
            p.spec.id = pinned;
            p.metadata.annotations = annotated.map(|a| [(ID_ANNOTATION.to_string(), a)].into());
            p.status = assigned.map(|id| crate::resources::PresetStatus { id: Some(id), ..Default::default() });
            prop_assert_eq!(p.watcher_id(), Holding::of(&p).wanted());
        }

        /// In an `IdConflict` the object answers to the id it keeps, not the one it asks for.
        #[test]
        fn a_conflicted_object_keeps_its_assigned_id(
            pinned in proptest::option::of(1i64..12), assigned in proptest::option::of(1i64..12),
        ) {
            let mut p = Preset::new("p", Default::default());
            p.spec.id = pinned;
            let mut status = crate::resources::PresetStatus { id: assigned, ..Default::default() };
            status.common.conditions.push(Condition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: ID_CONFLICT.into(),
                message: conflict_message(pinned.unwrap_or(1), "ns/other", true).into(),
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ),
                observed_generation: None,
            });
            p.status = Some(status);
            prop_assert_eq!(p.watcher_id(), assigned);
        }

        #[test]
        fn conflicts_are_exactly_the_ids_wanted_twice(snap in proptest::collection::vec(holding(), 0..30)) {
            let c = conflicts(&snap);
            for (id, owners) in &c {
                prop_assert!(owners.len() > 1);
                prop_assert_eq!(owners.len(), snap.iter().filter(|h| h.wanted() == Some(*id)).count());
            }
            for x in &snap {
                if let Some(id) = x.wanted() {
                    let n = snap.iter().filter(|h| h.wanted() == Some(id)).count();
                    prop_assert_eq!(n > 1, c.contains_key(&id));
                }
            }
        }

        /// Two allocators racing over the same new objects with the create-or-next rule never
        /// hand out one id twice, whatever the interleaving.
        #[test]
        fn racing_allocation_is_collision_free(order in proptest::collection::vec((0usize..2, 0usize..10), 1..60)) {
            let mut leases: BTreeMap<i64, usize> = BTreeMap::new();
            let mut assigned: BTreeMap<usize, i64> = BTreeMap::new();
            let mut hints = [1i64, 1i64];
            for (replica, obj) in order {
                if assigned.contains_key(&obj) {
                    continue;
                }
                let snap: Vec<Holding> = assigned.iter().map(|(o, id)| h(&format!("ns/{o}"), 0, None, Some(*id), Some(*id))).collect();
                let mut c = next_candidate(&snap, hints[replica]).unwrap();
                loop {
                    match leases.get(&c) {
                        None => { leases.insert(c, obj); break; }
                        Some(owner) if *owner == obj => break,
                        Some(_) => c += 1,
                    }
                }
                hints[replica] = hints[replica].max(c + 1);
                assigned.insert(obj, c);
            }
            let ids: BTreeSet<i64> = assigned.values().copied().collect();
            prop_assert_eq!(ids.len(), assigned.len());
        }
    }
}
