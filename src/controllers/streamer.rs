//! Streamer controller: one reconcile per node every `node_resync`.
//!
//! Each reconcile probes the node (`GET /config/stats`), applies the Streamer's partial server
//! config when it changed or the node restarted, and lists the node's streams in one paged
//! list (not one request per stream). The list feeds the live stats cache and the fleet's view
//! of what the node holds; streams whose disk config changed, vanished or stopped matching are
//! handed to the Stream controller (drift repair), and managed streams no Stream owns any more
//! are removed (leftovers of deletions that happened while the node was away). Streams without
//! Panoptes' ownership label are never touched.
//!
//! Cordon and drain are placement inputs: a cordoned node keeps what it holds and takes
//! nothing new; a draining node gives up every stream (they move, make-before-break). Both
//! show in the `Ready` reason.
//!
//! Conditions: `Reachable`, `ConfigApplied`, `Ready`. Status is written on transitions only;
//! `lastProbeTime` is refreshed with those writes, not on every probe.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::runtime::controller::{Action, Config};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use rand::Rng;

use super::Context;
use super::conditions::{self, Desired};
use super::destinations::{self as dest, AllowListCache};
use super::fleet::{Disk, NodeCopy};
use super::kit::{self, Backoff, Error};
use super::refs::{self, Key, key_of};
use crate::domain::credentials::{self, OwnerKind};
use crate::domain::destinations::{self, Origin};
use crate::domain::health;
use crate::domain::tenancy::{hostname_owners, owns_hostname};
use crate::flussonic::{
    self, BuildError, Credentials, ListQuery, NodeClient, NodeClientConfig, is_managed,
};
use crate::resources::common::{CommonStatus, FINALIZER};
use crate::resources::streamer::{AuthScheme, CredentialBinding};
use crate::resources::wire::ServerStats;
use crate::resources::{Streamer, StreamerSpec, StreamerStatus};
use crate::state::{NodeLive, StreamLive};

/// Nodes reconciled at once.
const CONCURRENCY: u16 = 32;

/// What the controller remembers about a node between reconciles.
#[derive(Default)]
struct NodeMemory {
    /// URL, credentials and TLS settings the current client was built with.
    client_for: Option<ClientKey>,
    /// The credentials binding last decided (newer than the status until that is written).
    binding: Option<CredentialBinding>,
    /// Digest of the server config last applied, with the node instance it was applied to.
    applied: Option<(u64, Option<String>)>,
    /// When the node's streams were last listed successfully.
    listed_at: Option<std::time::Instant>,
    /// The stream counts last computed for its status, and since when they read so
    /// ([`health::counts_due`]).
    counts: Option<(Counts, std::time::Instant)>,
}

/// A node's (ingest, DVR backup) stream counts as its status shows them.
type Counts = (Option<i64>, Option<i64>);

/// What a node client is built from.
type ClientKey = (String, Credentials, bool, Option<String>);

/// State of the Streamer controller.
pub struct StreamerController {
    ctx: Arc<Context>,
    allow_list: AllowListCache,
    backoff: Backoff,
    memory: Mutex<HashMap<String, NodeMemory>>,
}

/// Runs the Streamer controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + 'static) {
    let shutdown = shutdown.shared();
    if !kit::stores_ready(&ctx, shutdown.clone()).await {
        return;
    }
    let Some(mut triggers) = ctx.fleet.take_streamer_triggers() else {
        tracing::error!("streamer controller started twice");
        return;
    };
    let ctl = Arc::new(StreamerController {
        ctx: ctx.clone(),
        allow_list: AllowListCache::default(),
        backoff: Backoff::capped(NODE_LOOP_CAP),
        memory: Mutex::default(),
    });
    let extra = futures::stream::poll_fn(move |cx| triggers.poll_recv(cx)).boxed();
    tracing::info!(
        shard = ctx.stores.shard().name(),
        "streamer controller started"
    );
    kit::controller_of::<Streamer>(&ctx.stores)
        .with_config(Config::default().concurrency(CONCURRENCY))
        .reconcile_on(extra)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctl)
        .for_each(|result| kit::report("Streamer", result))
        .await;
    tracing::info!("streamer controller stopped");
}

/// Unexpected errors back off per Streamer, but only briefly ([`NODE_LOOP_CAP`]).
///
/// A Streamer's reconcile is its node's probe and list: the liveness of every stream on the
/// node and the level-triggered repair of copies the node lost. A status write failing under
/// API-server load used to back the loop off for up to 5 minutes (or, rejected as invalid,
/// until the Streamer changed), leaving wiped streams unrepaired and `Ready=True` on stale
/// stats meanwhile (a long chaos run under CPU starvation ended with exactly that).
pub fn error_policy(s: Arc<Streamer>, error: &Error, ctl: Arc<StreamerController>) -> Action {
    let key = key_of(s.as_ref());
    let action = kit::error_action(&ctl.backoff, &key, "Streamer", error);
    if error.is_invalid_input() {
        Action::requeue(ctl.backoff.cap())
    } else {
        action
    }
}

/// The longest a node's probe loop pauses after failed reconciles.
const NODE_LOOP_CAP: Duration = Duration::from_secs(10);

/// Reconciles one Streamer.
#[tracing::instrument(skip_all, fields(namespace = s.namespace(), name = s.name_any()))]
pub async fn reconcile(s: Arc<Streamer>, ctl: Arc<StreamerController>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile_inner(&s, &ctl).await;
    ctl.ctx
        .controller_metrics
        .reconciled("Streamer", started, &result);
    result
}

async fn reconcile_inner(
    s: &Arc<Streamer>,
    ctl: &Arc<StreamerController>,
) -> Result<Action, Error> {
    let ctx = &ctl.ctx;
    let s = s.clone();
    let key = key_of(s.as_ref());
    if s.meta().deletion_timestamp.is_some() {
        // Only the facade's own node credentials need the finalizer (see below).
        super::credentials::delete_facade_credentials(
            ctx,
            key.namespace(),
            &credentials::streamer_refs(&s.spec),
            OwnerKind::Streamer,
            s.as_ref(),
        )
        .await;
        super::ids::remove_finalizer(ctx, s.as_ref()).await?;
        return Ok(Action::await_change());
    }
    // A Streamer holding facade-created node credentials keeps them until its deletion is
    // cleaned up (the test control plane, like some clusters, has no garbage collector).
    if s.spec.facade_credentials.is_some() && !s.finalizers().iter().any(|f| f == FINALIZER) {
        kit::apply_metadata(
            ctx,
            s.as_ref(),
            serde_json::json!({ "finalizers": [FINALIZER] }),
        )
        .await?;
    }
    let host = s.spec.hostname.clone();
    let url = s.spec.effective_api_url();
    let resync = jittered(ctx.tunables.node_resync);

    // One Streamer per hostname (the oldest): a second one, say from another namespace with
    // its own URL and credentials, must not replace the owner's client, or the owner's
    // streams and their camera passwords would be pushed to the newcomer's URL.
    // Only the Streamers naming this hostname decide who owns it: ranking all of them (a sort
    // of 1,000 with keys built per comparison) on every probe was O(nodes) per reconcile.
    let streamers = ctx.stores.streamers.state();
    let namesakes = streamers
        .iter()
        .map(|o| o.as_ref())
        .filter(|o| o.spec.hostname == host);
    let owners = hostname_owners(namesakes.chain([s.as_ref()]));
    if !owns_hostname(&owners, &s) {
        let owner = owners
            .get(host.as_str())
            .map(ToString::to_string)
            .unwrap_or_default();
        let message = format!(
            "hostname {host} belongs to the older Streamer {owner}: this one is not probed and \
             holds no streams while it names the same hostname"
        );
        let conds = judge(
            Observed::Withheld {
                reason: "HostnameConflict",
                message: &message,
            },
            &s.spec,
        )
        .into();
        // The binding stays as it was: this Streamer used no credentials meanwhile.
        let binding = s
            .status
            .as_ref()
            .and_then(|st| st.credential_binding.as_ref());
        write_status(ctl, &s, &url, conds, None, binding).await?;
        return Ok(Action::requeue(Duration::from_secs(30)));
    }

    let (client, binding) = client_for(ctl, &s, &key, &host, &url).await;
    ctx.fleet.record_seen(&host);
    let binding = binding.as_ref();
    let client = match client {
        Ok(c) => c,
        Err(Refused {
            reason,
            message,
            withdraw,
        }) => {
            if withdraw {
                withdraw_client(ctl, &host, &message);
            }
            let conds = judge(
                Observed::Withheld {
                    reason,
                    message: &message,
                },
                &s.spec,
            )
            .into();
            write_status(ctl, &s, &url, conds, None, binding).await?;
            return Ok(Action::requeue(Duration::from_secs(if withdraw {
                5
            } else {
                30
            })));
        }
    };

    let now_ms = chrono::Utc::now().timestamp_millis();
    // Probe timing is its own (`Tunables::probe`): a hung node is Unreachable within the
    // probe budget instead of after every list-sized timeout and retry.
    let probe = client.probe().await;
    // Only these two facts of the last report are needed; holding the report itself across
    // `update_node` below would make it copy the node's whole stream map on every probe.
    let (reachable_before, healthy_before, answered_before) = match ctx.live.node(&host) {
        Some(b) => (
            Some(b.reachable),
            Some(b.reachable && b.ready),
            (b.last_probe_ms != 0).then_some(b.reachable),
        ),
        None => (None, None, None),
    };
    let (reachable, running, error) = match &probe {
        Ok(stats) => (
            true,
            stats
                .streamer_status
                .as_deref()
                .is_none_or(|st| st == "running"),
            None,
        ),
        Err(e) => (false, false, Some(e.to_string())),
    };
    // A node's first probe counts too: a starved probe loop fails it as surely as a later one.
    if answered_before != Some(false) && !reachable {
        ctx.controller_metrics.node_unreachable_marks.inc();
    }
    if healthy_before != Some(reachable && running) {
        if healthy_before.is_some() {
            tracing::info!(node = %host, healthy = reachable && running, "node health changed");
        }
        ctx.fleet.request_layout();
    }
    let m = super::metrics::node(&host);
    ctx.controller_metrics
        .node_up
        .get_or_create(&m)
        .set(i64::from(reachable && running));
    if let Ok(stats) = &probe {
        ctx.controller_metrics
            .node_input_bytes
            .get_or_create(&m)
            .set(stats.input_kbit.unwrap_or(0).saturating_mul(1000 / 8));
    }
    ctx.live.update_node(&host, |n: &mut NodeLive| {
        n.reachable = reachable;
        n.ready = reachable && running;
        n.last_probe_ms = now_ms;
        n.last_error = error.clone();
        if let Ok(stats) = &probe {
            n.server = Some(stats.clone());
        }
    });

    let stats = match probe {
        Ok(stats) => stats,
        Err(e) => {
            let error = e.to_string();
            let rejected = matches!(
                e,
                flussonic::Error::Unauthorized { .. } | flussonic::Error::Forbidden { .. }
            );
            let conds = judge(
                Observed::Unreachable {
                    error: &error,
                    rejected,
                },
                &s.spec,
            )
            .into();
            if reachable_before != Some(false) {
                let note = format!("node {host}: {e}");
                refs::publish(ctx, s.as_ref(), crate::events::policy::UNREACHABLE, note).await;
            }
            write_status(ctl, &s, &url, conds, None, binding).await?;
            return Ok(Action::requeue(resync));
        }
    };

    let was_down = reachable_before != Some(true);
    if reachable_before == Some(false) {
        let note = format!("node {host} answers again");
        refs::publish(ctx, s.as_ref(), crate::events::policy::REACHABLE, note).await;
    }
    let config = apply_config(ctl, &s, &host, &client, &stats).await;
    // A node that was down is listed at once: what it holds after a restart is unknown.
    let listed = if list_due(ctl, &host, was_down) {
        let listed = list(ctx, &host, &client).await.map_err(|e| e.to_string());
        let mut memory = ctl.memory.lock().unwrap_or_else(|e| e.into_inner());
        let mem = memory.entry(host.clone()).or_default();
        if let (Ok(()), Some(before)) = (&listed, mem.listed_at) {
            ctx.controller_metrics
                .node_list_period
                .observe(before.elapsed().as_secs_f64());
        }
        mem.listed_at = listed.is_ok().then(std::time::Instant::now);
        listed
    } else {
        // The last list succeeded (a failed one leaves the node due).
        Ok(())
    };
    if listed.is_err() {
        ctx.fleet.record_list_failure(&host);
    }
    let observed = Observed::Answered {
        stats: &stats,
        config,
        listed: listed.as_ref().map(|_| ()).map_err(String::as_str),
    };
    let conds = judge(observed, &s.spec).into();
    write_status(ctl, &s, &url, conds, Some(&stats), binding).await?;
    ctl.backoff.succeeded(&key);
    Ok(Action::requeue(resync))
}

/// What one reconcile found out about a node.
#[derive(Debug)]
enum Observed<'a> {
    /// The node was not contacted: another Streamer owns its hostname, or the Streamer's
    /// destination or credentials are refused before anything is sent (`reason`).
    Withheld {
        reason: &'static str,
        message: &'a str,
    },
    /// The probe failed (nothing else was tried); `rejected`: the node refused the
    /// credentials (401/403), which no retry fixes.
    Unreachable { error: &'a str, rejected: bool },
    /// The probe answered; `config` is the `ConfigApplied` verdict of the config apply and
    /// `listed` how the list of its streams went.
    Answered {
        stats: &'a ServerStats,
        config: Desired,
        listed: Result<(), &'a str>,
    },
}

/// `Reachable`, `ConfigApplied` and `Ready` of a node that cannot be talked to, for `reason`.
fn unreachable(reason: &'static str, message: String, applied: &'static str) -> [Desired; 3] {
    [
        Desired::no("Reachable", reason, message.clone()),
        Desired::no("ConfigApplied", reason, applied),
        Desired::no("Ready", reason, message),
    ]
}

/// The Streamer's `Reachable`, `ConfigApplied` and `Ready` from what a reconcile observed.
/// Pure: the precedence of `Ready`'s reasons is the table in the tests below.
fn judge(observed: Observed<'_>, spec: &StreamerSpec) -> [Desired; 3] {
    let (stats, config, listed) = match observed {
        Observed::Withheld { reason, message } => {
            return ["Reachable", "ConfigApplied", "Ready"]
                .map(|t| Desired::no(t, reason, message));
        }
        Observed::Unreachable {
            error,
            rejected: true,
        } => {
            return unreachable(
                "CredentialsRejected",
                format!(
                    "the node rejected the Streamer's credentials: {error}; fix \
                     spec.credentials (or the Secret it names)"
                ),
                "unknown while the node rejects the credentials",
            );
        }
        Observed::Unreachable {
            error,
            rejected: false,
        } => {
            return unreachable(
                "Unreachable",
                format!("the node did not answer its probe: {error}"),
                "unknown while the node is unreachable",
            );
        }
        Observed::Answered {
            stats,
            config,
            listed,
        } => (stats, config, listed),
    };
    let running = stats
        .streamer_status
        .as_deref()
        .is_none_or(|st| st == "running");
    let reachable = Desired::yes(
        "Reachable",
        "Probed",
        format!(
            "the node answers (version {}, status {})",
            stats.server_version.as_deref().unwrap_or("unknown"),
            stats.streamer_status.as_deref().unwrap_or("unknown")
        ),
    );
    // A config problem explains a node that does not run better than "not running" does.
    let ready = if !config.status {
        Desired::no("Ready", config.reason, config.message.clone())
    } else if !running {
        Desired::no(
            "Ready",
            "NotRunning",
            format!(
                "the node reports status {}",
                stats.streamer_status.as_deref().unwrap_or("unknown")
            ),
        )
    } else if let Err(e) = listed {
        Desired::no(
            "Ready",
            "ListFailed",
            format!("listing the node's streams failed: {e}"),
        )
    } else if spec.drain == Some(true) {
        Desired::yes(
            "Ready",
            "Draining",
            "the node is draining: its streams move to other nodes",
        )
    } else if spec.cordon == Some(true) {
        Desired::yes(
            "Ready",
            "Cordoned",
            "the node is cordoned: it keeps its streams and takes no new ones",
        )
    } else {
        Desired::yes(
            "Ready",
            "Serving",
            "the node is reachable, configured and serving its streams",
        )
    };
    [reachable, config, ready]
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.9..1.1))
}

/// Why no client is used for a node.
struct Refused {
    reason: &'static str,
    message: String,
    /// Stop talking to the node at all (nothing may reach the destination in the spec).
    withdraw: bool,
}

impl Refused {
    fn invalid(message: String) -> Self {
        Self {
            reason: "CredentialsInvalid",
            message,
            withdraw: false,
        }
    }
}

/// The credentials Secret the node client uses: its name, the scheme asked for, and the
/// spec field that names it (for messages).
fn chosen_credentials(s: &Streamer) -> Option<(&str, Option<AuthScheme>, &'static str)> {
    // Credentials changed through the Watcher API win (scheme: theirs, else the manifest's).
    match (&s.spec.facade_credentials, &s.spec.credentials) {
        (Some(f), c) => Some((
            f.secret_name.as_str(),
            f.scheme.or(c.as_ref().and_then(|c| c.scheme)),
            "spec.facadeCredentials.secretName",
        )),
        (None, Some(c)) => Some((
            c.secret_name.as_str(),
            c.scheme,
            "spec.credentials.secretName",
        )),
        (None, None) => None,
    }
}

/// The node's client, rebuilt when its URL, credentials or TLS settings change, with the
/// credentials binding to record. Default deny for destinations: credentials go only over
/// HTTPS (or where `allowInsecure` says so) and only to the origin they were entered for.
async fn client_for(
    ctl: &StreamerController,
    s: &Streamer,
    key: &Key,
    host: &str,
    url: &str,
) -> (Result<NodeClient, Refused>, Option<CredentialBinding>) {
    let ctx = &ctl.ctx;
    let prior = {
        let memory = ctl.memory.lock().unwrap_or_else(|e| e.into_inner());
        memory
            .get(host)
            .and_then(|m| m.binding.clone())
            .or_else(|| {
                s.status
                    .as_ref()
                    .and_then(|st| st.credential_binding.clone())
            })
    };
    let allow_insecure = s.spec.allow_insecure == Some(true);
    let mut binding = None;
    let creds = match chosen_credentials(s) {
        None => Credentials::None,
        Some((secret_name, scheme, field)) => {
            let entry = match ctl.ctx.secrets.entry(key.namespace(), secret_name).await {
                Ok(e) => e,
                Err(e) => {
                    return (Err(Refused::invalid(format!("{e}; fix {field}"))), prior);
                }
            };
            let creds = match Credentials::from_secret_data(|k| entry.value(k), scheme) {
                Ok(c) => c,
                Err(e) => {
                    return (
                        Err(Refused::invalid(format!("Secret {secret_name}: {e}"))),
                        prior,
                    );
                }
            };
            let Some(origin) = Origin::of(url) else {
                return (
                    Err(Refused::invalid(format!(
                        "spec.apiUrl {url:?} names no host; fix spec.apiUrl"
                    ))),
                    prior,
                );
            };
            if origin.is_plain_http() && !allow_insecure {
                return (
                    Err(Refused {
                        reason: "InsecureTransport",
                        message: format!(
                            "the node's credentials are not sent over plain http:// ({origin}); use an https:// apiUrl (with spec.caBundle for a private CA) or set spec.allowInsecure: true"
                        ),
                        withdraw: true,
                    }),
                    prior,
                );
            }
            let allow = ctl.allow_list.get(ctx).await;
            let decision = destinations::decide(
                &dest::facts(secret_name, &entry),
                creds.secret_keys(),
                &[origin].into(),
                prior.as_ref(),
                &allow,
            );
            if let Some(message) = decision.first_denial() {
                return (
                    Err(Refused {
                        reason: "CredentialsNotBound",
                        message: format!("no credentials are sent to the new apiUrl: {message}"),
                        withdraw: true,
                    }),
                    decision.binding,
                );
            }
            binding = decision.binding;
            creds
        }
    };
    let want: ClientKey = (
        url.to_string(),
        creds.clone(),
        allow_insecure,
        s.spec.ca_bundle.clone(),
    );
    let mut memory = ctl.memory.lock().unwrap_or_else(|e| e.into_inner());
    let mem = memory.entry(host.to_string()).or_default();
    mem.binding = binding.clone();
    if mem.client_for.as_ref() == Some(&want)
        && let Some(c) = ctx.nodes.get(host)
    {
        return (Ok(c), binding);
    }
    let client = NodeClient::new(
        NodeClientConfig {
            probe: ctx.tunables.probe.clone(),
            ..NodeClientConfig::new(host, url, creds)
        }
        .allow_insecure(allow_insecure)
        .ca_bundle(s.spec.ca_bundle.clone()),
        ctx.node_metrics.clone(),
    )
    .map_err(|e| match e {
        BuildError::CaBundle(_) => Refused {
            reason: "CaBundleInvalid",
            message: format!("{e}; fix spec.caBundle"),
            withdraw: true,
        },
        e => Refused::invalid(format!("{e}; fix spec.apiUrl")),
    });
    let client = match client {
        Ok(c) => c,
        Err(r) => return (Err(r), binding),
    };
    ctx.nodes.insert(client.clone());
    mem.client_for = Some(want);
    // A new client may talk to a different node: apply the server config again.
    mem.applied = None;
    (Ok(client), binding)
}

/// Stops every request to `host` (probes, lists, pushes of stream configs): its Streamer
/// names a destination nothing may be sent to. The node counts as down, so its streams move.
fn withdraw_client(ctl: &StreamerController, host: &str, message: &str) {
    let ctx = &ctl.ctx;
    ctx.nodes.remove(host);
    {
        let mut memory = ctl.memory.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = memory.get_mut(host) {
            m.client_for = None;
            m.applied = None;
        }
    }
    let was_healthy = ctx.live.node(host).is_some_and(|n| n.reachable && n.ready);
    ctx.live.update_node(host, |n: &mut NodeLive| {
        n.reachable = false;
        n.ready = false;
        n.last_probe_ms = chrono::Utc::now().timestamp_millis();
        n.last_error = Some(message.to_string());
    });
    if was_healthy {
        tracing::info!(node = %host, "node withdrawn: its Streamer names a destination its credentials are not sent to");
        ctx.fleet.request_layout();
    }
}

/// Applies `spec.config` when it changed since the last apply or the node restarted.
async fn apply_config(
    ctl: &StreamerController,
    s: &Streamer,
    host: &str,
    client: &NodeClient,
    stats: &ServerStats,
) -> Desired {
    if stats.config_external_status.is_some() {
        return Desired::no(
            "ConfigApplied",
            "ConfigExternal",
            "the node takes its config from config_external and refuses pushes; unset config_external on the node to let Panoptes manage it",
        );
    }
    let Some(cfg) = &s.spec.config else {
        return Desired::yes("ConfigApplied", "NothingToApply", "spec.config is empty");
    };
    let digest = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        serde_json::to_string(cfg).unwrap_or_default().hash(&mut h);
        h.finish()
    };
    let instance = stats.id.clone();
    let want = Some((digest, instance));
    {
        let memory = ctl.memory.lock().unwrap_or_else(|e| e.into_inner());
        if memory.get(host).is_some_and(|m| m.applied == want) {
            return Desired::yes("ConfigApplied", "Applied", "spec.config is applied");
        }
    }
    match client.config_save(cfg).await {
        Ok(_) => {
            let mut memory = ctl.memory.lock().unwrap_or_else(|e| e.into_inner());
            memory.entry(host.to_string()).or_default().applied = want;
            tracing::info!(node = host, "server config applied");
            Desired::yes("ConfigApplied", "Applied", "spec.config is applied")
        }
        Err(flussonic::Error::ConfigExternal { .. }) => Desired::no(
            "ConfigApplied",
            "ConfigExternal",
            "the node takes its config from config_external and refuses pushes; unset config_external on the node",
        ),
        // A 4xx other than auth: the node refuses this config as it is, retries cannot help.
        Err(e @ flussonic::Error::Rejected { .. }) => Desired::no(
            "ConfigApplied",
            "ConfigRejected",
            format!("the node refuses spec.config: {e}; fix spec.config"),
        ),
        Err(e) => Desired::no(
            "ConfigApplied",
            "ApplyFailed",
            format!("applying spec.config failed: {e}"),
        ),
    }
}

/// Whether the node's streams are to be listed in this reconcile ([`Context::list_interval`]).
fn list_due(ctl: &StreamerController, host: &str, was_down: bool) -> bool {
    let interval = ctl.ctx.list_interval();
    if was_down || interval <= ctl.ctx.tunables.node_resync {
        // Within the budget every reconcile lists, a triggered one too (a move's old copy is
        // found and removed at once).
        return true;
    }
    let memory = ctl.memory.lock().unwrap_or_else(|e| e.into_inner());
    // A reconcile comes every `resync` (jittered up to 10% early): a list due within the
    // jitter is taken now rather than a whole resync later.
    memory
        .get(host)
        .and_then(|m| m.listed_at)
        .is_none_or(|t| t.elapsed() + interval / 10 >= interval)
}

/// Lists the node's streams, refreshes the caches, hands drift to the Stream controller and
/// removes leftovers.
async fn list(ctx: &Context, host: &str, client: &NodeClient) -> Result<(), flussonic::Error> {
    let since = ctx.fleet.list_begins();
    let streams = client.streams_list(&ListQuery::poll()).await?;
    let before = ctx.live.node(host);
    let mut copies = HashMap::with_capacity(streams.len());
    let mut live = HashMap::with_capacity(streams.len());
    for st in streams {
        let managed = is_managed(&st);
        copies.insert(
            st.name.clone(),
            NodeCopy {
                config_on_disk: st.config_on_disk.as_ref().map(|v| Arc::new(Disk::of(v))),
                managed,
            },
        );
        live.insert(
            st.name,
            StreamLive {
                stats: st.stats,
                managed,
            },
        );
    }
    // Aliveness flips change a Stream's Ready condition.
    let mut touch: HashSet<String> = live
        .iter()
        .filter(|(n, l)| {
            before
                .as_ref()
                .and_then(|b| b.streams.get(*n))
                .map(StreamLive::alive)
                != Some(l.alive())
        })
        .map(|(n, _)| n.clone())
        .collect();
    // Held across `update_node`, the old report would be copied whole before being replaced.
    drop(before);
    let names: HashSet<String> = copies.keys().cloned().collect();
    let managed: Vec<String> = copies
        .iter()
        .filter(|(_, c)| c.managed)
        .map(|(n, _)| n.clone())
        .collect();
    let m = super::metrics::node(host);
    let alive = live.values().filter(|l| l.alive()).count();
    ctx.controller_metrics
        .node_streams
        .get_or_create(&m)
        .set(live.len() as i64);
    ctx.controller_metrics
        .node_streams_alive
        .get_or_create(&m)
        .set(alive as i64);
    ctx.live.update_node(host, |n| n.streams = live);
    let first = !ctx.fleet.listed(host);
    touch.extend(ctx.fleet.record_list_since(host, copies, since));
    if first {
        // Pushes to this node waited for its first list (what it holds was unknown).
        for key in ctx.fleet.assigned(host) {
            ctx.fleet.touch_stream(&key);
        }
    }
    for name in &touch {
        if let Some(owner) = ctx.fleet.owner_of(name) {
            ctx.fleet.touch_stream(&owner);
        }
    }
    if !ctx.fleet.laid_out() {
        return Ok(());
    }
    // Assigned here but absent: the Stream controller pushes it (after the first list every
    // assigned stream was touched above already).
    if !first {
        for key in ctx.fleet.assigned(host) {
            let stream = ctx
                .stores
                .streams
                .get(&ObjectRef::new(key.name()).within(key.namespace()));
            if stream.is_some_and(|s| !names.contains(s.watcher_name())) {
                ctx.fleet.touch_stream(&key);
            }
        }
    }
    for name in managed {
        match ctx.fleet.owner_of(&name) {
            Some(owner) => {
                if !ctx.fleet.keeps(&owner, host) {
                    // Moved away: the Stream controller removes it once the new nodes serve it.
                    ctx.fleet.touch_stream(&owner);
                }
            }
            None => match client.stream_delete(&name).await {
                Ok(()) => {
                    ctx.fleet.record_delete(host, &name);
                    tracing::info!(node = host, stream = %name, "removed a leftover stream no Stream owns");
                }
                Err(e) => {
                    tracing::warn!(node = host, stream = %name, error = %e, "removing a leftover failed")
                }
            },
        }
    }
    Ok(())
}

/// The stream counts a Streamer's status shows: the fleet's (ingest, DVR backups) once it
/// laid out, else the ones recorded. Before the first layout the fleet holds no placement;
/// writing 0 for every node and the counts back a moment later cost two status writes per
/// node at every start (2,000 on 1,000 nodes, in the push window of a restart) and showed
/// 0 streams on every node meanwhile. A node never counted reads 0 until then.
fn shown_counts(fleet: Option<(i64, i64)>, old: &StreamerStatus) -> Counts {
    match fleet {
        Some((ingest, backups)) => (Some(ingest), Some(backups)),
        None => (
            old.assigned_streams.or(Some(0)),
            old.dvr_backup_streams.or(Some(0)),
        ),
    }
}

/// How long `host`'s stream counts have read `now` (noted on every status decision).
fn counts_stable_for(ctl: &StreamerController, host: &str, now: Counts) -> Duration {
    let mut memory = ctl.memory.lock().unwrap_or_else(|e| e.into_inner());
    let mem = memory.entry(host.to_string()).or_default();
    match mem.counts {
        Some((seen, since)) if seen == now => since.elapsed(),
        _ => {
            mem.counts = Some((now, std::time::Instant::now()));
            Duration::ZERO
        }
    }
}

/// Writes status when conditions or reported facts changed; a change of the stream counts
/// alone waits for [`health::counts_due`].
async fn write_status(
    ctl: &StreamerController,
    s: &Streamer,
    url: &str,
    desired: Vec<Desired>,
    stats: Option<&ServerStats>,
    binding: Option<&CredentialBinding>,
) -> Result<(), Error> {
    let ctx = &ctl.ctx;
    let old = s.status.clone().unwrap_or_default();
    let generation = s.meta().generation;
    let now = k8s_openapi::jiff::Timestamp::now();
    let conditions = conditions::update(&old.common.conditions, &desired, generation, now);
    let counts = shown_counts(
        ctx.fleet
            .laid_out()
            .then(|| ctx.fleet.assigned_counts(&s.spec.hostname)),
        &old,
    );
    let stable_for = counts_stable_for(ctl, &s.spec.hostname, counts);
    let mut next = StreamerStatus {
        common: CommonStatus {
            conditions: conditions
                .clone()
                .unwrap_or_else(|| old.common.conditions.clone()),
            observed_generation: generation,
        },
        api_url: Some(url.to_string()),
        version: stats
            .and_then(|s| s.server_version.clone())
            .or(old.version.clone()),
        server_id: stats.and_then(|s| s.id.clone()).or(old.server_id.clone()),
        started_at: stats.and_then(|s| s.started_at).or(old.started_at),
        assigned_streams: old.assigned_streams,
        dvr_backup_streams: old.dvr_backup_streams,
        last_probe_time: old.last_probe_time.clone(),
        credential_binding: binding.cloned(),
    };
    let others_changed = conditions.is_some() || next != old;
    (next.assigned_streams, next.dvr_backup_streams) = counts;
    if !others_changed {
        if next == old {
            return Ok(());
        }
        let since_written = old
            .last_probe_time
            .as_deref()
            .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
            .and_then(|t| Duration::try_from(now.duration_since(t)).ok());
        let (period, resync) = (ctx.counts_period(), ctx.tunables.node_resync);
        if !health::counts_due(since_written, stable_for, period, resync) {
            return Ok(());
        }
    }
    for d in &desired {
        let before = crate::resources::common::condition(&old.common.conditions, d.type_);
        if before.is_none_or(|c| c.reason != d.reason) && !d.status && d.type_ != "Reachable" {
            refs::publish(ctx, s, d.reason, d.message.clone()).await;
        }
    }
    next.last_probe_time = Some(now.to_string());
    kit::apply_status(ctx, s, &next).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nodes_stream_counts_wait_for_the_first_layout() {
        let recorded = StreamerStatus {
            assigned_streams: Some(100),
            dvr_backup_streams: Some(7),
            ..Default::default()
        };
        let fresh = StreamerStatus::default();
        for (fleet, old, shown) in [
            (None, &recorded, (Some(100), Some(7))),
            (None, &fresh, (Some(0), Some(0))),
            (Some((98, 9)), &recorded, (Some(98), Some(9))),
            (Some((0, 0)), &recorded, (Some(0), Some(0))),
            (Some((3, 1)), &fresh, (Some(3), Some(1))),
        ] {
            assert_eq!(shown_counts(fleet, old), shown, "{fleet:?} over {old:?}");
        }
    }

    fn stats(status: Option<&str>) -> ServerStats {
        ServerStats {
            streamer_status: status.map(String::from),
            server_version: Some("25.01".into()),
            ..ServerStats::default()
        }
    }

    fn spec(cordon: bool, drain: bool) -> StreamerSpec {
        serde_json::from_value(serde_json::json!({
            "hostname": "n1",
            "cordon": cordon,
            "drain": drain,
        }))
        .unwrap()
    }

    /// (Reachable, ConfigApplied, Ready) as `Reason` or `!Reason` for False.
    fn reasons(c: [Desired; 3]) -> [String; 3] {
        c.map(|d| format!("{}{}", if d.status { "" } else { "!" }, d.reason))
    }

    #[test]
    fn ready_by_case() {
        let applied = || Desired::yes("ConfigApplied", "Applied", "spec.config is applied");
        let failed = || Desired::no("ConfigApplied", "ApplyFailed", "500");
        let external = || Desired::no("ConfigApplied", "ConfigExternal", "external");
        let rejected = || Desired::no("ConfigApplied", "ConfigRejected", "400");
        let nothing = || Desired::yes("ConfigApplied", "NothingToApply", "no spec.config");
        let (running, starting, none) =
            (stats(Some("running")), stats(Some("starting")), stats(None));
        let (plain, draining, cordoned) = (spec(false, false), spec(true, true), spec(true, false));
        #[rustfmt::skip]
        let rows: Vec<(&str, Observed, &StreamerSpec, [&str; 3])> = vec![
            ("serving", Observed::Answered { stats: &running, config: applied(), listed: Ok(()) }, &plain, ["Probed", "Applied", "Serving"]),
            ("no status reported", Observed::Answered { stats: &none, config: applied(), listed: Ok(()) }, &plain, ["Probed", "Applied", "Serving"]),
            ("starting", Observed::Answered { stats: &starting, config: applied(), listed: Ok(()) }, &plain, ["Probed", "Applied", "!NotRunning"]),
            ("config failed while starting", Observed::Answered { stats: &starting, config: failed(), listed: Ok(()) }, &plain, ["Probed", "!ApplyFailed", "!ApplyFailed"]),
            ("config external", Observed::Answered { stats: &running, config: external(), listed: Ok(()) }, &plain, ["Probed", "!ConfigExternal", "!ConfigExternal"]),
            ("list failed", Observed::Answered { stats: &running, config: applied(), listed: Err("timeout") }, &plain, ["Probed", "Applied", "!ListFailed"]),
            ("list failed while draining", Observed::Answered { stats: &running, config: applied(), listed: Err("timeout") }, &draining, ["Probed", "Applied", "!ListFailed"]),
            ("draining", Observed::Answered { stats: &running, config: applied(), listed: Ok(()) }, &draining, ["Probed", "Applied", "Draining"]),
            ("cordoned", Observed::Answered { stats: &running, config: applied(), listed: Ok(()) }, &cordoned, ["Probed", "Applied", "Cordoned"]),
            ("unreachable", Observed::Unreachable { error: "connection refused", rejected: false }, &cordoned, ["!Unreachable", "!Unreachable", "!Unreachable"]),
            ("credentials rejected", Observed::Unreachable { error: "HTTP 401", rejected: true }, &plain, ["!CredentialsRejected", "!CredentialsRejected", "!CredentialsRejected"]),
            ("config rejected for good", Observed::Answered { stats: &running, config: rejected(), listed: Ok(()) }, &plain, ["Probed", "!ConfigRejected", "!ConfigRejected"]),
            ("nothing to apply", Observed::Answered { stats: &running, config: nothing(), listed: Ok(()) }, &plain, ["Probed", "NothingToApply", "Serving"]),
            ("hostname taken", Observed::Withheld { reason: "HostnameConflict", message: "older" }, &plain, ["!HostnameConflict", "!HostnameConflict", "!HostnameConflict"]),
            ("credentials unreadable", Observed::Withheld { reason: "CredentialsInvalid", message: "no key" }, &plain, ["!CredentialsInvalid", "!CredentialsInvalid", "!CredentialsInvalid"]),
            ("credentials over http", Observed::Withheld { reason: "InsecureTransport", message: "http" }, &plain, ["!InsecureTransport", "!InsecureTransport", "!InsecureTransport"]),
            ("destination not entered", Observed::Withheld { reason: "CredentialsNotBound", message: "moved" }, &plain, ["!CredentialsNotBound", "!CredentialsNotBound", "!CredentialsNotBound"]),
            ("bad CA bundle", Observed::Withheld { reason: "CaBundleInvalid", message: "pem" }, &plain, ["!CaBundleInvalid", "!CaBundleInvalid", "!CaBundleInvalid"]),
        ];
        for (what, observed, spec, want) in rows {
            assert_eq!(
                reasons(judge(observed, spec)),
                want.map(String::from),
                "{what}"
            );
        }
    }

    #[test]
    fn messages_carry_the_cause() {
        let [r, _, ready] = judge(
            Observed::Unreachable {
                error: "refused",
                rejected: false,
            },
            &spec(false, false),
        );
        assert_eq!(r.message, "the node did not answer its probe: refused");
        assert_eq!(ready.message, r.message);
        let running = stats(Some("running"));
        let [r, _, ready] = judge(
            Observed::Answered {
                stats: &running,
                config: Desired::yes("ConfigApplied", "Applied", "ok"),
                listed: Err("timeout"),
            },
            &spec(false, false),
        );
        assert_eq!(
            r.message,
            "the node answers (version 25.01, status running)"
        );
        assert!(ready.message.ends_with(": timeout"), "{}", ready.message);
    }
}
