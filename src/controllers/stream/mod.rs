//! Stream controller: turns a Stream and its placement into running streams on nodes.
//!
//! For each Stream it resolves the effective node config (preset ⊕ stream, secrets injected at
//! push time), pushes it to every node of its placement whose `config_on_disk` differs (the
//! fleet knows what nodes hold from the Streamer controller's lists and from earlier pushes,
//! so an in-sync stream costs no request), and then — make-before-break — removes the copies
//! on nodes the stream left, only once every node of the new placement holds the current
//! config; a stream waiting for a node (say its only node is down) left none
//! ([`domain::moves`](crate::domain::moves)). Conditions: `Scheduled`, `Synced`, `Ready`
//! (alive on its ingest node), decided by the pure `judge` from what `act` did.
//!
//! API-server writes are the scarce resource at 10,000 streams, so the status (conditions and
//! the layouter's placement together) is written once per settled state, not per step: a
//! stream just pushed reports `Ready=Starting` only if its node has not shown it running
//! within two of its lists ([`stream_health::starting_hold`]), and a node not listed yet
//! since start (its contents unknown) defers the push without a write instead of failing it.
//!
//! Deletion: the finalizer `panoptes.dev/cleanup` removes the stream from every node holding
//! it. A node that stays unreachable for `delete_grace` does not block deletion; the Streamer
//! controller removes the leftover when the node returns (no Stream owns the name any more).

use crate::domain::effective;
pub(crate) mod bodies;
mod judge;
mod slots;
pub mod status_writer;
pub(crate) mod sweep;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use kube::runtime::controller::{Action, Config};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::Value;

use super::Context;
use super::conditions::{self, Desired};
use super::destinations::{self as dest, AllowListCache};
use super::fleet::Blocked;
use super::ids;
use super::kit::{self, Backoff, Error};
use super::refs::{self, Key, RefIndex, key_of};
use crate::domain::adoption::{self, Takeover};
use crate::domain::credentials::{self, OwnerKind};
use crate::domain::destinations;
use crate::domain::layout_history;
use crate::domain::moves::{self, Wanted};
use crate::domain::refs::{MISSING_REFERENCE, RefKind, Reference, References, missing_message};
use crate::domain::rollout::{self, Budget, Turn};
use crate::domain::stream_health;
use crate::flussonic::StreamBody;
use crate::layout::{Placement, Unplaced};
use crate::resources::common::{CommonStatus, FINALIZER};
use crate::resources::streamer::CredentialBinding;
use crate::resources::text::Text;
use crate::resources::wire::StreamConfigSpec;
use crate::resources::{Organization, Preset, Stream, StreamStatus};
use crate::state::SecretError;
use bodies::{Bodies, Digest};
use effective::{BodyKey, Injected};
use judge::{Hold, Running, SyncReport, judge};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use status_writer::{Pending, StatusWriter};

/// Reconciles running at once (node I/O is bounded per node by the node clients).
const CONCURRENCY: u16 = 128;
/// A freshly pushed stream gets two of its node's lists to show up running before
/// `Ready=Starting` is written ([`stream_health::starting_hold`]), and never less than this:
/// a camera takes seconds to answer, and a `Starting` written and replaced by `Alive` a moment
/// later is two status writes per camera of a bulk apply where one would do (nodes listed
/// every 500 ms made that the rule).
const START_GRACE_FLOOR: Duration = Duration::from_secs(10);
/// After start, nodes not listed yet (or without a client yet) defer pushes this long before
/// that counts as a failure (the first probes and lists take a moment).
const FIRST_LIST_GRACE: Duration = Duration::from_secs(30);
/// How long the controller waits for the layouter's first run before it starts anyway (the
/// run itself waits at most 15 s for the nodes' first probes; this bounds a layouter that
/// never finishes one, whose streams then defer as before).
const FIRST_LAYOUT_WAIT: Duration = Duration::from_secs(60);

/// State of the Stream controller.
pub struct StreamController {
    ctx: Arc<Context>,
    /// Stream → its preset, so a preset change reconciles exactly its streams.
    presets: RefIndex,
    /// Stream → its organization, so creating (or deleting) an organization reconciles
    /// exactly the streams that name it (their `MissingReference` clears or appears).
    organizations: RefIndex,
    /// Stream → the Secrets its body carries, so a rotated password is pushed at once.
    secrets: RefIndex,
    allow_list: AllowListCache,
    /// Camera credentials bindings last decided (newer than the statuses until written).
    bindings: Mutex<HashMap<Key, CredentialBinding>>,
    backoff: Backoff,
    started: Instant,
    /// Streams whose `Ready=Starting` is not written yet: since when, and their ingest
    /// node's list count then.
    /// Hashed with foldhash as the fleet's maps are (see there): every push of a restart
    /// inserts here, and SipHash was most of what that cost.
    starting: Mutex<HashMap<Key, (Instant, u64), foldhash::fast::RandomState>>,
    /// Status writes, off the reconcile path.
    status: Arc<StatusWriter>,
    /// Node copies known to match each stream's body.
    bodies: Bodies,
    /// Cameras restarting per node because a preset change reached them.
    slots: slots::Slots,
}

/// Runs the Stream controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + 'static) {
    let shutdown = shutdown.shared();
    if !kit::stores_ready(&ctx, shutdown.clone()).await {
        return;
    }
    let Some(mut triggers) = ctx.fleet.take_stream_triggers() else {
        tracing::error!("stream controller started twice");
        return;
    };
    // The Secrets are read while the layouter waits for the nodes' first probes and lists (at
    // 100,000 cameras with a Secret each that is 1,000 pages, not to be added to the start).
    let warm = async {
        tokio::select! {
            () = warm_secrets(&ctx) => {}
            () = shutdown.clone() => {}
        }
    };
    let (laid_out, ()) = tokio::join!(first_layout(&ctx, shutdown.clone()), warm);
    if !laid_out {
        return;
    }
    // The controller starts with every stream of the store: the touches queued until now
    // (the first layout run's, the nodes' first lists') would reconcile each a second time.
    while triggers.try_recv().is_ok() {}
    let ctl = Arc::new(StreamController {
        ctx: ctx.clone(),
        presets: RefIndex::default(),
        organizations: RefIndex::default(),
        secrets: RefIndex::default(),
        allow_list: AllowListCache::default(),
        bindings: Mutex::default(),
        backoff: Backoff::default(),
        started: Instant::now(),
        starting: Mutex::default(),
        status: Arc::default(),
        bodies: Bodies::default(),
        slots: slots::Slots::default(),
    });
    let writer = tokio::spawn(ctl.status.clone().run(ctx.clone()));
    let sweeper = tokio::spawn(sweep::run(ctx.clone(), ctx.tunables.stream_resync));
    let on_preset = {
        let ctl = ctl.clone();
        move |p: Arc<Preset>| ctl.presets.referrers::<_, Stream>(p.as_ref())
    };
    let on_organization = {
        let ctl = ctl.clone();
        move |o: Arc<Organization>| ctl.organizations.referrers::<_, Stream>(o.as_ref())
    };
    let on_secret = {
        let ctl = ctl.clone();
        move |s: Arc<PartialObjectMeta<Secret>>| ctl.secrets.referrers::<_, Stream>(s.as_ref())
    };
    let extra = futures::stream::poll_fn(move |cx| triggers.poll_recv(cx)).boxed();
    tracing::info!(
        shard = ctx.stores.shard().name(),
        "stream controller started"
    );
    let stores = &ctx.stores;
    kit::controller_of::<Stream>(stores)
        .with_config(Config::default().concurrency(CONCURRENCY))
        .watches_shared_stream(stores.subscribe::<Preset>(), on_preset)
        .watches_shared_stream(stores.subscribe::<Organization>(), on_organization)
        .watches_shared_stream(stores.subscribe::<PartialObjectMeta<Secret>>(), on_secret)
        .reconcile_on(extra)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctl.clone())
        .for_each(|result| kit::report("Stream", result))
        .await;
    // Let queued statuses land, briefly: shutdown must not hang on a slow API server, and
    // whatever is left is recomputed by the next leader's first reconcile of each stream.
    let deadline = Instant::now() + Duration::from_secs(3);
    while ctl.status.queued() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    writer.abort();
    sweeper.abort();
    tracing::info!("stream controller stopped");
}

/// Waits for the layouter's first run, at most [`FIRST_LAYOUT_WAIT`]; false on shutdown.
///
/// A reconcile before it finds no placement and only defers, and the run (which waits for
/// every node's first probe and list) then touches each stream again: at a restart over
/// 100,000 streams that was two reconciles per stream, the first for nothing (issue 21's push
/// pace). After it, a stream's first reconcile is its push.
async fn first_layout(ctx: &Context, shutdown: impl Future<Output = ()>) -> bool {
    let wait = async {
        let deadline = Instant::now() + FIRST_LAYOUT_WAIT;
        while !ctx.fleet.laid_out() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        _ = wait => true,
        _ = shutdown => false,
    }
}

/// Reads the Secrets the Streams reference with paged lists per namespace where that is
/// cheaper than a GET per Secret ([`worth_listing`]), before the first reconciles ask for them:
/// first the credentials Secrets the facade wrote (in large pages), then, for the names still
/// unread, every Secret of the namespace.
async fn warm_secrets(ctx: &Context) {
    let mut referenced: HashMap<String, HashSet<String>> = HashMap::new();
    for stream in ctx.stores.streams.state() {
        let names = effective::secret_refs(&stream);
        if !names.is_empty() {
            referenced
                .entry(stream.namespace().unwrap_or_default())
                .or_default()
                .extend(names);
        }
    }
    let mut stored: HashMap<String, usize> = HashMap::new();
    for secret in ctx.stores.secrets.state() {
        *stored
            .entry(secret.namespace().unwrap_or_default())
            .or_default() += 1;
    }
    for (ns, names) in referenced {
        let all = stored.get(&ns).copied().unwrap_or(0);
        let started = Instant::now();
        let mut names: HashSet<&str> = names.iter().map(String::as_str).collect();
        let wanted = names.len();
        let mut lists = Vec::new();
        // The facade's own Secrets are each referenced by the object they were written for,
        // so their list reads little else.
        if worth_listing(names.len(), names.len())
            && let Some((kept, count)) = listed(
                ctx.secrets.warm_facade_created(&ns, &names).await,
                &ns,
                "the facade's credentials Secrets",
            )
        {
            names.retain(|n| !kept.contains(*n));
            lists.push(("facade-created", count));
        }
        let rest = all.saturating_sub(lists.first().map_or(0, |l| l.1));
        if worth_listing(names.len(), rest)
            && let Some(kept) = listed(
                ctx.secrets.warm(&ns, &names).await,
                &ns,
                "the Streams' Secrets",
            )
        {
            names.retain(|n| !kept.contains(*n));
            lists.push(("all", all));
        }
        if !lists.is_empty() {
            tracing::info!(
                namespace = %ns,
                secrets = wanted - names.len(),
                unread = names.len(),
                lists = ?lists,
                ms = started.elapsed().as_millis() as u64,
                "read the Streams' Secrets with paged lists"
            );
        }
    }
}

/// A warm-up list's result, its failure logged: what it did not read is left to the next
/// list or to per-name reads.
fn listed<T>(result: Result<T, kube::Error>, ns: &str, what: &str) -> Option<T> {
    result
        .map_err(|e| {
            tracing::warn!(
                namespace = %ns,
                error = %e,
                "listing {what} failed; they are read by the next list or by name"
            )
        })
        .ok()
}

/// Whether reading a namespace's `all` Secrets in pages beats `referenced` GETs: a few
/// GETs cost less than a list, and a list reading mostly other people's Secrets (a namespace
/// full of Helm releases) costs more than it saves and holds values nobody needs.
fn worth_listing(referenced: usize, all: usize) -> bool {
    referenced >= 50 && referenced.saturating_mul(4) >= all
}

/// Reconciles one Stream.
///
/// No span of its own: kube-runtime's "reconciling object" span already names the object, and
/// a second one was formatted, entered and left on every poll of every reconcile.
pub async fn reconcile(stream: Arc<Stream>, ctl: Arc<StreamController>) -> Result<Action, Error> {
    let started = Instant::now();
    let key = key_of(stream.as_ref());
    ctl.presets
        .observe(&key, stream.referenced(RefKind::Preset));
    ctl.organizations
        .observe(&key, stream.referenced(RefKind::Organization));
    ctl.secrets.observe(&key, effective::secret_refs(&stream));
    // Boxed: the converge state machine is large, and kube-runtime moves the reconcile future
    // through several wrappers into a spawned task; a box makes each of those moves a pointer.
    let result = if stream.meta().deletion_timestamp.is_some() {
        Box::pin(finalize(&stream, &ctl, &key)).await
    } else {
        Box::pin(converge(&stream, &ctl, &key)).await
    };
    ctl.ctx
        .controller_metrics
        .reconciled("Stream", started, &result);
    result
}

/// Invalid input waits for a change; anything else backs off per stream with jitter.
pub fn error_policy(stream: Arc<Stream>, error: &Error, ctl: Arc<StreamController>) -> Action {
    kit::error_action(&ctl.backoff, &key_of(stream.as_ref()), "Stream", error)
}

/// What one reconcile concluded, turned into status and an action at the end.
struct Outcome {
    conditions: Vec<Desired>,
    /// Interned only when a status is written: most reconciles of a restart end in
    /// [`starting_grace`] and write nothing.
    synced_nodes: Vec<String>,
    alive: Option<bool>,
    retry: bool,
    /// Something is not known yet (a node's first list, an object not in the cache): look
    /// again later without writing a status that would be stale in a moment.
    deferred: Option<Defer>,
    /// The camera credentials binding to record (`None` keeps the recorded one).
    binding: Option<Option<CredentialBinding>>,
    /// Some node waits for the preset's rollout: `Some(paused)`.
    held: Option<bool>,
}

/// Why a reconcile looks again later without deciding anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Defer {
    /// An object the API server has is not in the operator's cache yet: moments away, and
    /// nothing else would trigger the stream when it lands.
    Cache,
    /// A node of the placement was not listed yet (or has no client yet), or the first
    /// layout has not run: the node's first list (and the first layout run) touches every
    /// stream placed there, so the look again is only a floor. Polling every 500 ms instead
    /// made the streams of the nodes not listed yet most of the Stream reconciles of a bulk
    /// apply on 1,000 nodes (3,000 a second, issue 21).
    Node,
}

impl Defer {
    /// When to look again, with the Streamer controller's resync `node_resync`.
    fn look_again(self, node_resync: Duration) -> Duration {
        let moments = Duration::from_millis(500);
        match self {
            Defer::Cache => moments,
            Defer::Node => node_resync.max(moments),
        }
    }
}

/// What [`plan`] decided to push.
struct Planned {
    /// The digest of what it was computed from.
    digest: Digest,
    /// `None`: the stream runs nowhere (disabled).
    body: Option<LazyBody>,
    /// The body holds a secret (camera credentials, publish password).
    carries_secrets: bool,
    /// The camera credentials binding to record.
    binding: Option<CredentialBinding>,
    /// `CredentialsBound`, for a stream with camera credentials.
    condition: Option<Desired>,
    /// The preset's rollout budget (`None`: no preset).
    rollout: Option<Budget>,
}

async fn converge(stream: &Stream, ctl: &StreamController, key: &Key) -> Result<Action, Error> {
    let ctx = &ctl.ctx;
    if !stream.finalizers().iter().any(|f| f == FINALIZER) {
        add_finalizer(ctx, stream).await?;
        ctx.fleet.request_layout();
    }
    let view = ctx.fleet.stream_view(key, stream.watcher_name());
    if !view.laid_out {
        // The first layout run touches every stream it places: this is only a floor. At
        // 500 ms, 100,000 streams waiting for it after a restart were 200,000 reconciles a
        // second competing with the node probes and lists that run waits for.
        return Ok(Action::requeue(
            Defer::Node.look_again(ctx.tunables.node_resync),
        ));
    }
    let name = stream.watcher_name().to_string();
    if !view.owned && stream.status.is_none() {
        // New since the last layout run: the layouter places it within moments and touches
        // it then. Writing a "Pending" status first would cost an API write per new stream
        // (10,000 on a bulk apply) for a state that lasts a fraction of a second. The short
        // requeue covers streams the layouter does not touch (disabled, waiting for a preset).
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let missing = refs::missing_references(ctx, stream);
    let placement = view.placement.unwrap_or_default();
    let outcome = match plan(stream, ctl, key, &name, &missing, view.blocked).await {
        Ok(planned) => {
            let running = match planned.body {
                None => Running::Disabled,
                Some(_) => Running::Enabled {
                    on_demand: stream_health::on_demand(&stream.spec.config),
                },
            };
            // The stream's own spec changed since its status was written: its owner asked for
            // this change now, so it is not paced like a preset's.
            let own_edit = stream
                .status
                .as_ref()
                .and_then(|s| s.common.observed_generation)
                != stream.meta().generation;
            let mut outcome = sync(
                running,
                Push {
                    carries_secrets: planned.carries_secrets,
                    adopts: adoption::adopts(stream.annotations()),
                },
                ctl,
                stream,
                (key, &name),
                (&placement, view.unplaced),
                planned.body.as_ref().map(|b| Body {
                    body: b,
                    digest: planned.digest,
                    rollout: planned.rollout.filter(|_| !own_edit),
                }),
            )
            .await;
            outcome.conditions.extend(planned.condition);
            outcome.binding = Some(planned.binding);
            report_missing(&mut outcome, &missing);
            outcome
        }
        Err(blocked) => blocked,
    };
    if let Some(defer) = outcome.deferred {
        return Ok(Action::requeue(defer.look_again(ctx.tunables.node_resync)));
    }
    if let Some(wait) = starting_grace(ctl, key, placement.ingest.as_deref(), &outcome) {
        return Ok(Action::requeue(wait));
    }
    let retry = outcome.retry;
    let alive = outcome.alive;
    let held = outcome.held;
    // A missing reference turns Stalled when its grace ends, whether or not anything changes.
    let recheck = conditions::recheck(&outcome.conditions).unwrap_or(Duration::MAX);
    write_status(ctl, stream, &name, outcome).await;
    Ok(if retry {
        Action::requeue(ctl.backoff.failed(key))
    } else if held == Some(false) {
        // Its turn comes when a restart on the node is over, which a node list shows.
        ctl.backoff.succeeded(key);
        Action::requeue(ctx.tunables.node_resync)
    } else {
        ctl.backoff.succeeded(key);
        if alive == Some(true) {
            // Looked at again by the paced walk ([`sweep`]), which holds nothing per stream.
            Action::await_change()
        } else {
            // Aliveness flips also trigger a reconcile from the node lists; this is a floor.
            Action::requeue(Duration::from_secs(30).min(recheck))
        }
    })
}

/// How long to hold back a `Ready=Starting` status, if at all: a stream the node has not
/// listed yet is usually running by the node's next list, and writing the transient state
/// would double the writes of a bulk apply ([`stream_health::starting_hold`]).
fn starting_grace(
    ctl: &StreamController,
    key: &Key,
    ingest: Option<&str>,
    outcome: &Outcome,
) -> Option<Duration> {
    let starting = outcome
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.reason == "Starting");
    let mut since = ctl.starting.lock().unwrap_or_else(|e| e.into_inner());
    if !starting {
        since.remove(key);
        return None;
    }
    let ctx = &ctl.ctx;
    let (listed_now, node_list_period) = match ingest {
        Some(host) => ctx.fleet.list_pace(host),
        None => (0, None),
    };
    let (first, lists_then) = match since.get(key) {
        Some(&s) => s,
        None => {
            let s = (Instant::now(), listed_now);
            since.insert(key.clone(), s);
            s
        }
    };
    stream_health::starting_hold(
        stream_health::Unconfirmed {
            held_for: first.elapsed(),
            lists_since: listed_now.saturating_sub(lists_then),
            list_interval: ctx.list_interval(),
            node_list_period,
        },
        START_GRACE_FLOOR,
    )
}

/// The body to push, or the outcome explaining why there is none. A body of `None` = the
/// stream runs nowhere (disabled): copies are removed.
async fn plan(
    stream: &Stream,
    ctl: &StreamController,
    key: &Key,
    name: &str,
    missing: &[Reference],
    blocked_by: Option<Blocked>,
) -> Result<Planned, Outcome> {
    let ctx = &ctl.ctx;
    let blocked = |reason: &'static str, message: String, retry: bool| Outcome {
        conditions: vec![
            Desired::no("Scheduled", reason, message.clone()),
            Desired::no("Synced", reason, message.clone()),
            Desired::no("Ready", reason, message),
        ],
        synced_nodes: vec![],
        alive: None,
        retry,
        deferred: None,
        binding: None,
        held: None,
    };
    if let Some(Blocked::NameConflict(owner)) = blocked_by {
        return Err(blocked(
            "NameConflict",
            format!(
                "the Watcher name {name:?} is already used by Stream {}/{}; set a different spec.name",
                owner.namespace(),
                owner.name()
            ),
            false,
        ));
    }
    if missing.iter().any(|r| r.kind == RefKind::Preset) {
        return Err(blocked(
            MISSING_REFERENCE,
            format!(
                "{}; the stream is not pushed until its preset exists (its config depends on it)",
                missing_message(missing)
            ),
            false,
        ));
    }
    let preset = match &stream.spec.preset_ref {
        None => None,
        Some(p) => match ctx
            .stores
            .presets
            .get(&ObjectRef::new(p).within(key.namespace()))
        {
            Some(preset) => Some(preset),
            // The API server has it, the cache not yet: look again shortly, writing nothing.
            None => {
                return Err(Outcome {
                    deferred: Some(Defer::Cache),
                    ..blocked(
                        MISSING_REFERENCE,
                        format!("Preset {p} is not in the operator's cache yet"),
                        false,
                    )
                });
            }
        },
    };
    let recorded = recorded_binding(ctl, stream, key);
    let allow = match credentials::camera_credentials(&stream.spec) {
        Some(_) => ctl.allow_list.get(ctx).await,
        None => destinations::AllowList::default(),
    };
    let body_key = BodyKey::of(
        stream,
        preset.as_deref(),
        recorded.as_ref(),
        &allow,
        |secret| {
            ctx.stores
                .secrets
                .get(&ObjectRef::new(secret).within(key.namespace()))
                .and_then(|m| m.resource_version())
        },
    );
    let digest = ctl.bodies.digest(&body_key);
    let rollout = preset
        .as_deref()
        .map(|p| Budget::of(p.spec.rollout.as_ref(), ctx.tunables.rollout_per_node));
    let config = effective::merge_preset(&stream.spec.config, preset.as_deref().map(|p| &p.spec));
    if config.disabled == Some(true) {
        let planned = Planned {
            digest,
            body: None,
            carries_secrets: false,
            binding: recorded,
            condition: None,
            rollout,
        };
        return Ok(planned);
    }
    match injected(ctl, stream, key, &config).await {
        Ok((secrets, binding, condition)) => {
            let planned = Planned {
                digest,
                carries_secrets: secrets.carried_in(&config),
                body: Some(LazyBody::new(
                    name,
                    config,
                    secrets,
                    ctl.ctx.tunables.play_auth_url.clone(),
                )),
                binding,
                condition,
                rollout,
            };
            Ok(planned)
        }
        Err(e) => Err(blocked(
            "SecretUnavailable",
            format!("{e}; the stream is not pushed until its credentials can be read"),
            matches!(e, SecretError::Api { .. }),
        )),
    }
}

/// A missing organization is reported like every kind's missing reference, `Ready=False
/// MissingReference` with an Event, but does not stop the camera: it keeps recording where the
/// layouter placed it (Scheduled, Synced and `status.alive` say how it runs), while no
/// organization's users see it until the reference is fixed.
fn report_missing(outcome: &mut Outcome, missing: &[Reference]) {
    if missing.is_empty() {
        return;
    }
    let message = format!(
        "{}; the stream still runs where it is placed, but no organization's users see it \
         until the reference is fixed",
        missing_message(missing)
    );
    outcome.conditions.retain(|c| c.type_ != "Ready");
    outcome
        .conditions
        .push(Desired::no("Ready", MISSING_REFERENCE, message));
}

/// The camera credentials binding recorded for `key` (memory first: it is newer).
fn recorded_binding(
    ctl: &StreamController,
    stream: &Stream,
    key: &Key,
) -> Option<CredentialBinding> {
    ctl.bindings
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(key)
        .cloned()
        .or_else(|| {
            stream
                .status
                .as_ref()
                .and_then(|s| s.credential_binding.as_deref().cloned())
        })
}

/// The secrets to inject, the camera credentials binding to record and the
/// `CredentialsBound` condition. Default deny for destinations: an input host the camera
/// credentials were not entered for gets none.
async fn injected(
    ctl: &StreamController,
    stream: &Stream,
    key: &Key,
    config: &StreamConfigSpec,
) -> Result<(Injected, Option<CredentialBinding>, Option<Desired>), SecretError> {
    let ctx = &ctl.ctx;
    let ns = key.namespace();
    let mut out = Injected::default();
    let mut binding = recorded_binding(ctl, stream, key);
    let mut condition = None;
    if let Some(c) = credentials::camera_credentials(&stream.spec) {
        let entry = ctl.ctx.secrets.entry(ns, &c.secret_name).await?;
        let user_key = c.username_key.as_deref().unwrap_or("username");
        let pass_key = c.password_key.as_deref().unwrap_or("password");
        let user = entry.text(&c.secret_name, user_key)?;
        let pass = entry.text(&c.secret_name, pass_key)?;
        let origins = effective::camera_origins(config);
        let allow = ctl.allow_list.get(ctx).await;
        let decision = destinations::decide(
            &dest::facts(&c.secret_name, &entry),
            &[user_key, pass_key],
            &origins,
            binding.as_ref(),
            &allow,
        );
        binding = decision.binding.clone();
        {
            let mut memory = ctl.bindings.lock().unwrap_or_else(|e| e.into_inner());
            match &binding {
                Some(b) => memory.insert(key.clone(), b.clone()),
                None => memory.remove(key),
            };
        }
        condition = Some(match decision.first_denial() {
            Some(why) => {
                let hosts: Vec<String> = decision.denied.keys().map(ToString::to_string).collect();
                Desired::no(
                    "CredentialsBound",
                    "CredentialsNotBound",
                    format!(
                        "the camera credentials are not sent to {}: {why}",
                        hosts.join(", ")
                    ),
                )
            }
            None => Desired::yes(
                "CredentialsBound",
                "Bound",
                "the camera credentials go only to the hosts they were entered for",
            ),
        });
        out.camera_withheld = decision.denied.into_keys().collect();
        out.camera = Some((user, pass));
    }
    if let Some(r) = &stream.spec.publish_password {
        out.publish_password = Some(ctl.ctx.secrets.text(ns, &r.name, &r.key).await?);
    }
    // Push credentials are per push URL: a push whose URL has none stored gets none.
    if let Some(c) = &stream.spec.push_credentials {
        for push in stream.spec.config.pushes.iter().flatten() {
            let user_key = credentials::push_username_key(&push.url);
            let pass_key = credentials::push_password_key(&push.url);
            let user = ctl.ctx.secrets.text(ns, &c.secret_name, &user_key).await;
            let pass = ctl.ctx.secrets.text(ns, &c.secret_name, &pass_key).await;
            match (user, pass) {
                (Ok(u), Ok(p)) => {
                    out.pushes.insert(push.url.clone(), (u, p));
                }
                (Err(e @ SecretError::MissingKey { .. }), _)
                | (_, Err(e @ SecretError::MissingKey { .. })) => {
                    tracing::debug!(error = %e, "push without stored credentials");
                }
                (Err(e), _) | (_, Err(e)) => return Err(e),
            }
        }
    }
    Ok((out, binding, condition))
}

/// Pushes `body` to the placement, removes the copies of a stream that moved (or is
/// disabled), and judges the result.
async fn sync(
    running: Running,
    how: Push,
    ctl: &StreamController,
    stream: &Stream,
    (key, name): (&Key, &str),
    (placement, unplaced): (&Placement, Option<Unplaced>),
    body: Option<Body<'_>>,
) -> Outcome {
    let ctx = &ctl.ctx;
    let mut report = act(ctl, key, placement, how, name, body).await;
    // Someone changed the node behind Panoptes' back and that change is gone now: whoever
    // made it reads why in the Stream's Events, not only in a counter.
    for host in &report.repaired {
        refs::publish(
            ctx,
            stream,
            crate::events::policy::DRIFT_REPAIRED,
            format!(
                "the stream's config on node {host} was changed or removed outside Panoptes; Panoptes wrote the Stream's config back"
            ),
        )
        .await;
    }
    let live = placement
        .ingest
        .as_deref()
        .and_then(|i| ctx.live.stream(i, name));
    let gaps = unplaced
        .as_ref()
        .map(|_| label_gaps(ctx, key))
        .unwrap_or_default();
    let verdict = judge(
        &report,
        placement,
        unplaced.as_ref(),
        live.as_ref(),
        running,
        &gaps,
    );
    Outcome {
        conditions: verdict.conditions.into(),
        synced_nodes: std::mem::take(&mut report.synced),
        alive: verdict.alive,
        retry: !report.failed.is_empty(),
        deferred: report.deferred.then_some(Defer::Node),
        binding: None,
        held: (!report.held.is_empty())
            .then(|| report.held.iter().any(|(_, h)| *h == Hold::Paused)),
    }
}

/// For an unplaced stream's message: the required node labels each Streamer lacks.
fn label_gaps(ctx: &Context, key: &Key) -> judge::LabelGaps {
    let Some(stream) = ctx
        .stores
        .streams
        .get(&ObjectRef::new(key.name()).within(key.namespace()))
    else {
        return judge::LabelGaps::new();
    };
    let required = stream
        .spec
        .placement
        .as_ref()
        .and_then(|p| p.required_node_labels.clone())
        .unwrap_or_default();
    ctx.stores
        .streamers
        .state()
        .iter()
        .map(|s| {
            let have = s.spec.labels.clone().unwrap_or_default();
            let missing = required
                .iter()
                .filter(|(k, v)| have.get(*k) != Some(*v))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            (s.spec.hostname.clone(), missing)
        })
        .collect()
}

/// The I/O of a sync: pushes `body` to every node of the placement that lacks it, then —
/// make-before-break — removes the copies [`moves`] says go.
async fn act(
    ctl: &StreamController,
    key: &Key,
    placement: &Placement,
    how: Push,
    name: &str,
    body: Option<Body<'_>>,
) -> SyncReport {
    let ctx = &ctl.ctx;
    let targets: Vec<&str> = match body {
        None => vec![],
        Some(_) => placement
            .ingest
            .iter()
            .chain(placement.dvr_backups.iter())
            .map(|h| &**h)
            .collect(),
    };
    let pushes = match (targets.as_slice(), body) {
        // Most streams have no DVR backup: awaited in place, the one push needs no vector of
        // futures (a push future is large and over-aligned, so that vector was an allocation
        // on mimalloc's slow aligned path per reconcile, 1.5 % of a restart's CPU).
        ([one], Some(body)) => vec![push(ctl, key, one, name, body, how).await],
        (_, Some(body)) => {
            futures::future::join_all(targets.iter().map(|h| push(ctl, key, h, name, body, how)))
                .await
        }
        (_, None) => vec![],
    };
    let mut report = SyncReport::default();
    for (&h, r) in targets.iter().zip(pushes) {
        match r {
            Ok(repaired) => {
                if repaired {
                    report.repaired.push(h.to_string());
                }
                report.synced.push(h.to_string());
            }
            // A node whose Streamer was not reconciled yet (a thousand nodes take a while
            // after a start) has no client to fail with; the grace covers its first list.
            Err(PushError::NotKnownYet(_))
                if ctl.started.elapsed() < FIRST_LIST_GRACE || !ctx.fleet.seen(h) =>
            {
                report.deferred = true;
            }
            Err(PushError::Held(hold)) => report.held.push((h.to_string(), hold)),
            Err(e) => report.failed.push(format!("{h}: {e}")),
        }
    }
    let wanted = match body {
        None => Wanted::Nowhere,
        Some(_) => Wanted::At(placement),
    };
    let new_home_ready = report.failed.is_empty() && !report.deferred && report.held.is_empty();
    let holders = ctx.fleet.holders(name);
    if body.is_some() && placement.ingest.is_none() {
        report.kept.clone_from(&holders);
    }
    for h in moves::copies_to_remove(wanted, &holders, new_home_ready) {
        if let Err(msg) = remove(ctx, h, name).await {
            report.stale_left.push(format!("{h}: {msg}"));
        } else {
            let why = match wanted {
                Wanted::Nowhere => "removed the copy of a disabled stream",
                Wanted::At(_) => "removed the copy of a moved stream",
            };
            tracing::info!(node = %h, stream = name, "{why}");
        }
    }
    report
}

/// Why a push did not happen.
#[derive(Debug, thiserror::Error)]
enum PushError {
    /// What the node holds is not known yet; normal for a moment after start.
    #[error("{0}")]
    NotKnownYet(&'static str),
    #[error("{0}")]
    Failed(String),
    /// The preset's rollout holds it back on this node.
    #[error("waiting for the preset's rollout")]
    Held(Hold),
}

/// A stream's node body, built on first use. Most reconciles (a node list's touch after an
/// aliveness flip, a resync, a status echo) find every copy in sync by digest and push
/// nothing, and building the body clones the config into a JSON tree (twice with an
/// `on_play` URL): at 100,000 streams on 1,000 nodes, the nodes' lists during a restart
/// touch tens of thousands of streams already pushed, each paying for a body it dropped.
struct LazyBody {
    name: String,
    config: StreamConfigSpec,
    secrets: Injected,
    play_auth_url: Option<String>,
    built: OnceLock<StreamBody>,
}

impl LazyBody {
    fn new(
        name: &str,
        config: StreamConfigSpec,
        secrets: Injected,
        play_auth_url: Option<String>,
    ) -> Self {
        LazyBody {
            name: name.to_string(),
            config,
            secrets,
            play_auth_url,
            built: OnceLock::new(),
        }
    }

    /// The body, built once.
    fn get(&self) -> &StreamBody {
        self.built.get_or_init(|| {
            effective::with_on_play(
                effective::node_body(&self.name, &self.config, &self.secrets),
                self.play_auth_url.as_deref(),
            )
        })
    }

    /// Whether [`LazyBody::get`] was called.
    #[cfg(test)]
    fn built(&self) -> bool {
        self.built.get().is_some()
    }
}

/// A body to push and what decides its pace.
#[derive(Clone, Copy)]
struct Body<'a> {
    body: &'a LazyBody,
    digest: Digest,
    /// The preset's rollout budget, when a change to a running camera is paced by it.
    rollout: Option<Budget>,
}

impl From<String> for PushError {
    fn from(s: String) -> Self {
        PushError::Failed(s)
    }
}

/// How a stream's body may be pushed.
#[derive(Clone, Copy, Debug)]
struct Push {
    /// The body holds credentials (only over TLS, or where the Streamer allows plain http).
    carries_secrets: bool,
    /// The Stream opts in to adopting a foreign copy of its name (`domain::adoption`).
    adopts: bool,
}

/// Pushes `body` to `host` unless it already holds it. `Ok(true)`: the push wrote back a copy
/// someone had changed or removed on the node.
async fn push(
    ctl: &StreamController,
    key: &Key,
    host: &str,
    name: &str,
    Body {
        body,
        digest,
        rollout,
    }: Body<'_>,
    how: Push,
) -> Result<bool, PushError> {
    let ctx = &ctl.ctx;
    let carries_secrets = how.carries_secrets;
    let Some(client) = ctx.nodes.get(host) else {
        return Err(PushError::NotKnownYet(
            "the node's client is not ready (credentials or URL of its Streamer not resolved)",
        ));
    };
    if carries_secrets && !client.may_carry_secrets() {
        return Err(PushError::Failed(format!(
            "node {host} is reached over plain http:// and its Streamer does not set allowInsecure: true, so the stream's credentials are not sent to it"
        )));
    }
    let Some((copy, drifted)) = ctx.fleet.push_view(host, name) else {
        return Err(PushError::NotKnownYet(
            "waiting for the first list of the node",
        ));
    };
    if let Some(c) = &copy
        && !c.managed
    {
        if !how.adopts {
            return Err(PushError::Failed(format!(
                "the node has a stream named {name:?} that Panoptes does not manage; it is left alone (annotate the Stream {}=true to adopt it)",
                adoption::ADOPT_ANNOTATION
            )));
        }
        // Adoption writes metadata (the ownership label) at most: anything else would
        // restart a stream that runs today.
        if let Takeover::WouldRestart(paths) = adoption::takeover(
            &body
                .get()
                .drift(c.config_on_disk.as_ref().map(|d| d.value()).as_ref()),
        ) {
            return Err(PushError::Failed(format!(
                "the node runs a stream named {name:?} that differs at {}: adopting it would restart it, so it is left alone until the Stream matches it",
                paths.join(", ")
            )));
        }
        tracing::info!(
            node = host,
            stream = name,
            "adopting a running stream (metadata only)"
        );
    }
    let disk = copy.as_ref().and_then(|c| c.config_on_disk.as_ref());
    if let Some(disk) = disk {
        if ctl.bodies.matched(key, digest, host, disk) {
            return Ok(false);
        }
        if !body.get().drift(Some(&disk.value())).needs_write() {
            ctl.bodies.record_match(key, digest, host, disk);
            return Ok(false);
        }
    }
    if ctx
        .live
        .node(host)
        .is_some_and(|n| n.last_probe_ms > 0 && !n.reachable)
    {
        return Err(PushError::Failed("the node is unreachable".into()));
    }
    let paced = rollout.filter(|_| rollout::budgeted(true, disk.is_some(), false, drifted));
    if let Some(budget) = paced {
        match ctl.slots.take(ctx, host, name, budget) {
            Turn::Go => {}
            Turn::Wait { restarting, budget } => {
                return Err(PushError::Held(Hold::Waiting { restarting, budget }));
            }
            Turn::Paused => return Err(PushError::Held(Hold::Paused)),
        }
    }
    let result = client.stream_save_config(body.get()).await;
    if result.is_err() && paced.is_some() {
        ctl.slots.release(host, name);
    }
    match result {
        Ok(saved) => {
            if drifted {
                tracing::info!(
                    node = host,
                    stream = name,
                    "repaired a hand edit on the node"
                );
                ctx.controller_metrics
                    .stream_drift_repairs
                    .get_or_create(&super::metrics::node(host))
                    .inc();
            }
            let disk = saved.unwrap_or_else(|| {
                let mut m = body.get().as_json().clone();
                m.remove("$reset");
                Value::Object(m)
            });
            ctx.fleet.record_push(host, name, disk);
            ctx.controller_metrics
                .stream_pushes
                .get_or_create(&super::metrics::node(host))
                .inc();
            Ok(drifted)
        }
        Err(e) => Err(PushError::Failed(e.to_string())),
    }
}

/// Removes `name` from `host` (gone already counts as removed).
async fn remove(ctx: &Context, host: &str, name: &str) -> Result<(), String> {
    let Some(client) = ctx.nodes.get(host) else {
        return Err("the node's client is not ready".into());
    };
    if ctx
        .live
        .node(host)
        .is_some_and(|n| n.last_probe_ms > 0 && !n.reachable)
    {
        return Err("the node is unreachable".into());
    }
    match client.stream_delete(name).await {
        Ok(()) => {
            ctx.fleet.record_delete(host, name);
            ctx.controller_metrics
                .stream_removals
                .get_or_create(&super::metrics::node(host))
                .inc();
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

async fn finalize(stream: &Stream, ctl: &StreamController, key: &Key) -> Result<Action, Error> {
    let ctx = &ctl.ctx;
    ctl.starting
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(key);
    ctl.bodies.forget(key);
    // A Stream created again under this name binds its credentials afresh.
    ctl.bindings
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(key);
    if !stream.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let name = stream.watcher_name().to_string();
    let mut failures = Vec::new();
    // A Stream that lost a name conflict never owned the copies on the nodes.
    if ctx.fleet.owner_of(&name).is_none_or(|o| &o == key) {
        let mut hosts: BTreeSet<String> = ctx.fleet.holders(&name).into_iter().collect();
        if let Some(p) = ctx.fleet.placement(key) {
            hosts.extend(
                p.ingest
                    .iter()
                    .chain(p.dvr_backups.iter())
                    .map(|h| h.to_string()),
            );
        }
        for h in hosts {
            if let Err(msg) = remove(ctx, &h, &name).await {
                failures.push(format!("{h}: {msg}"));
            }
        }
    }
    if !failures.is_empty() {
        let requested = stream
            .meta()
            .deletion_timestamp
            .as_ref()
            .map(|t| t.0.as_millisecond())
            .unwrap_or_default();
        let waited = chrono::Utc::now().timestamp_millis() - requested;
        let grace = ctx.tunables.delete_grace.as_millis() as i64;
        if waited < grace {
            let outcome = Outcome {
                conditions: vec![
                    Desired::no("Scheduled", "Deleting", "the stream is being deleted"),
                    Desired::no(
                        "Synced",
                        "RemovalPending",
                        format!(
                            "deleting: the stream is still on {}; retrying for up to {}s before leaving it to be collected when the node returns",
                            failures.join("; "),
                            grace / 1000
                        ),
                    ),
                    Desired::no("Ready", "Deleting", "the stream is being deleted"),
                ],
                synced_nodes: vec![],
                alive: None,
                retry: true,
                deferred: None,
                binding: None,
                held: None,
            };
            write_status(ctl, stream, &name, outcome).await;
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        refs::publish(
            ctx,
            stream,
            "LeftOnNode",
            format!("deleted while {} did not answer; the copies there are removed when the nodes return", failures.join("; ")),
        )
        .await;
    }
    ctl.status.forget(key);
    super::credentials::delete_facade_credentials(
        ctx,
        key.namespace(),
        &[
            credentials::stream_refs(&stream.spec),
            credentials::annotated_refs(stream.annotations()),
        ]
        .concat(),
        OwnerKind::Stream,
        stream,
    )
    .await;
    ids::remove_finalizer(ctx, stream).await?;
    ctx.fleet.request_layout();
    tracing::info!(stream = %name, "stream removed from its nodes");
    Ok(Action::await_change())
}

async fn add_finalizer(ctx: &Context, stream: &Stream) -> Result<(), Error> {
    kit::apply_metadata(
        ctx,
        stream,
        serde_json::json!({ "finalizers": [FINALIZER] }),
    )
    .await
}

/// Queues the status when anything in it changed, with Events on meaningful transitions.
async fn write_status(ctl: &StreamController, stream: &Stream, name: &str, outcome: Outcome) {
    let ctx = &ctl.ctx;
    let key = key_of(stream);
    let uid = stream.meta().uid.clone().unwrap_or_default();
    // A status queued or in flight is what the object is about to show: judged against the
    // object alone, every reconcile during a write queued the same status again (a second
    // patch per stream when a deep queue drains behind a bulk apply).
    let old = match ctl.status.newest(&key) {
        Some(p) if p.uid == uid => p.status,
        _ => stream.status.clone().unwrap_or_default(),
    };
    let generation = stream.meta().generation;
    let now = k8s_openapi::jiff::Timestamp::now();
    let conditions =
        conditions::update(&old.common.conditions, &outcome.conditions, generation, now);
    // What the object shows, not the queued status: the fleet keeps the layouter's layout
    // until the object shows it, so a reconcile of a stale copy cannot write it away.
    let shown = stream.status.as_ref().and_then(|s| s.layout.as_ref());
    let layout = ctx.fleet.layout_to_record(&key, shown);
    let same_fields = old.watcher_name.as_deref() == Some(name)
        && old.layout == layout
        && old.alive == outcome.alive
        && old
            .synced_nodes
            .iter()
            .map(Text::as_str)
            .eq(outcome.synced_nodes.iter().map(String::as_str))
        && outcome
            .binding
            .as_ref()
            .is_none_or(|b| b.as_ref() == old.credential_binding.as_deref())
        && old.common.observed_generation == generation;
    if conditions.is_none() && same_fields {
        return;
    }
    // Transitions worth telling: a condition gone bad, the config applied, the camera up or
    // down, a move. The Event policy decides which are written and how they aggregate.
    for d in &outcome.conditions {
        let before = crate::resources::common::condition(&old.common.conditions, d.type_);
        let flipped = before.is_none_or(|c| c.reason != d.reason);
        if flipped && (!d.status || matches!(d.type_, "Synced" | "Ready")) {
            refs::publish(ctx, stream, d.reason, d.message.clone()).await;
        }
    }
    if let Some(note) = layout_history::moved_note(old.layout.as_ref(), layout.as_ref()) {
        refs::publish(ctx, stream, crate::events::policy::MOVED, note).await;
    }
    let layout_history =
        layout_history::next(&old.layout_history, old.layout.as_ref(), layout.as_ref())
            .unwrap_or_else(|| old.layout_history.clone());
    let status = StreamStatus {
        common: CommonStatus {
            conditions: conditions.unwrap_or_else(|| old.common.conditions.clone()),
            observed_generation: generation,
        },
        watcher_name: Some(name.to_string()),
        layout,
        layout_history,
        alive: outcome.alive,
        synced_nodes: outcome.synced_nodes.iter().map(|h| Text::new(h)).collect(),
        credential_binding: outcome
            .binding
            .map(|b| b.map(Box::new))
            .unwrap_or_else(|| old.credential_binding.clone()),
    };
    ctx.controller_metrics
        .status_changed("Stream", &status_writer::changed_parts(&old, &status));
    ctl.status.submit(key, Pending { uid, status });
}

#[cfg(test)]
mod tests {
    use super::worth_listing;

    #[test]
    fn a_namespace_is_listed_when_most_of_what_it_reads_is_wanted() {
        for (referenced, all, list) in [
            (10_000, 10_000, true),
            (10_000, 40_000, true),
            (10_000, 40_001, false),
            (49, 49, false),
            (50, 50, true),
            (50, 10_000, false),
            (0, 0, false),
        ] {
            assert_eq!(
                worth_listing(referenced, all),
                list,
                "{referenced} of {all}"
            );
        }
    }

    use super::*;

    #[test]
    fn a_body_is_built_only_when_asked_and_then_once_equal_to_the_eager_one() {
        let config: StreamConfigSpec = serde_json::from_value(serde_json::json!({
            "inputs": [{ "url": "rtsp://cam-1.example/live" }],
        }))
        .expect("a stream config");
        let play = Some("http://auth.example/play".to_string());
        let lazy = LazyBody::new("cam-1", config.clone(), Injected::default(), play.clone());
        // A reconcile finding every copy in sync by digest asks for nothing: no tree is built.
        assert!(!lazy.built());
        let eager = effective::with_on_play(
            effective::node_body("cam-1", &config, &Injected::default()),
            play.as_deref(),
        );
        assert_eq!(lazy.get().as_json(), eager.as_json());
        assert!(lazy.built());
        assert!(std::ptr::eq(lazy.get(), lazy.get()), "built once");
    }

    #[test]
    fn streams_waiting_for_a_node_look_again_at_the_node_pace_not_every_moment() {
        let ms = Duration::from_millis;
        let cases = [
            (Defer::Cache, ms(5_000), ms(500)),
            (Defer::Node, ms(5_000), ms(5_000)),
            (Defer::Node, ms(100), ms(500)),
        ];
        for (defer, resync, want) in cases {
            assert_eq!(defer.look_again(resync), want, "{defer:?} {resync:?}");
        }
    }
}
