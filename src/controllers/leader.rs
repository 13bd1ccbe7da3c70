//! Leader election over a `coordination.k8s.io/v1` Lease, so several replicas can run for
//! availability with one active set of reconcilers. Optimistic concurrency (the Lease's
//! `resourceVersion`) decides races; a holder that stops renewing loses the Lease after
//! `lease_duration`, and a holder that shuts down releases it at once.
//!
//! Expiry follows client-go's rule: a candidate records *when it observed* the Lease's
//! holder or `renewTime` change, on its own monotonic clock, and takes the Lease only once
//! that observation is older than the lease duration. The holder's `renewTime` is written
//! for people and never compared with this replica's wall clock, so a replica whose clock
//! runs ahead (or behind) neither steals a live Lease nor waits for a dead one longer than
//! `lease_duration` + `renew_every` after it last saw a renewal.
//!
//! The leader also publishes its peer address (the internal endpoint standbys read the live
//! view from, see `crate::peer`) as an annotation of the Lease: the one place standbys look.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// Annotation of the Lease holding the leader's peer address (`host:port`).
pub const PEER_ADDRESS_ANNOTATION: &str = "panoptes.dev/peer-address";

/// Annotation of the Lease holding the version the leader runs: during a rolling upgrade it
/// tells which of the two versions leads (`panoptes_build_info` tells it per replica).
pub const VERSION_ANNOTATION: &str = "panoptes.dev/leader-version";

/// Settings of the election.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity.
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews (and a candidate retries).
    pub renew_every: Duration,
    /// The peer address this replica publishes on the Lease while it leads (None: none).
    pub peer_address: Option<String>,
    /// The version this replica publishes on the Lease while it leads.
    pub version: String,
}

impl LeaderConfig {
    /// The defaults: 15 s leases renewed every 4 s; identity host + pid (`panoptes run`
    /// sets the pod's name instead).
    pub fn new(namespace: impl Into<String>) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "panoptes".into());
        let identity = format!("{host}-{}", std::process::id());
        Self {
            name: crate::domain::instance::Instance::default().leader_lease(None),
            namespace: namespace.into(),
            identity,
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(4),
            peer_address: None,
            version: crate::telemetry::VERSION.into(),
        }
    }
}

/// Where an elector reads time: the wall clock only for what it writes into the Lease, the
/// monotonic clock for every decision. Injected so tests can skew the wall clock.
pub trait Clock: Send + Sync {
    /// Wall-clock time (written as `acquireTime`/`renewTime`).
    fn wall(&self) -> Timestamp;
    /// Monotonic time (expiry and the watchdog).
    fn mono(&self) -> Instant;
}

/// The process clocks.
pub struct SystemClock;

impl Clock for SystemClock {
    fn wall(&self) -> Timestamp {
        Timestamp::now()
    }
    fn mono(&self) -> Instant {
        Instant::now()
    }
}

/// The Lease record as last observed, and when (on the monotonic clock).
#[derive(Clone, Debug)]
struct Observed {
    holder: Option<String>,
    renew: Option<Timestamp>,
    at: Instant,
}

/// Whether a Lease held by someone else may be taken: only once this candidate has seen the
/// same record (holder and renewTime) for longer than the lease's duration, timed locally.
/// `previous` is the last observation (None: never observed); returns the observation to
/// keep and whether the Lease is expired.
fn judge(
    previous: Option<&Observed>,
    holder: Option<&str>,
    renew: Option<Timestamp>,
    duration: Duration,
    now: Instant,
) -> (Observed, bool) {
    let same = previous.is_some_and(|p| p.holder.as_deref() == holder && p.renew == renew);
    match previous {
        Some(p) if same => (p.clone(), now.saturating_duration_since(p.at) > duration),
        _ => (
            Observed {
                holder: holder.map(str::to_string),
                renew,
                at: now,
            },
            false,
        ),
    }
}

/// The election's metrics: `panoptes_leader` (1 while this replica leads) and
/// `panoptes_leader_transitions_total` (changes of the Lease holder this replica observed,
/// its own takeovers included: a flapping leadership shows on every replica).
#[derive(Clone, Default)]
pub struct LeaderMetrics {
    leader: Gauge,
    transitions: Counter,
}

impl LeaderMetrics {
    /// Registers the families in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            self.leader.clone(),
        );
        registry.register(
            "leader_transitions",
            "Changes of the leader Lease holder observed by this replica",
            self.transitions.clone(),
        );
    }

    /// Sets `panoptes_leader` (for a replica that runs without election).
    pub fn set_leading(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Holder changes observed so far.
    pub fn transitions(&self) -> u64 {
        self.transitions.get()
    }
}

/// Whether this replica leads and when it last renewed: the `/healthz` watchdog reads it.
#[derive(Clone)]
pub struct LeaderStatus {
    leading: Arc<AtomicBool>,
    last_renew: Arc<Mutex<Option<Instant>>>,
    lease_duration: Duration,
    clock: Arc<dyn Clock>,
}

impl LeaderStatus {
    /// This replica holds the Lease (as far as it knows).
    pub fn leading(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// False when this replica believes it leads but has not renewed within the lease
    /// duration: another replica may lead by now, so this one must be restarted (a renewal
    /// stuck on a hung connection never reaches `hold`'s own deadline).
    pub fn healthy(&self) -> bool {
        if !self.leading() {
            return true;
        }
        let last = *self.last_renew.lock().unwrap_or_else(|e| e.into_inner());
        last.is_some_and(|t| self.clock.mono().saturating_duration_since(t) <= self.lease_duration)
    }
}

/// An election candidate.
pub struct Elector {
    api: Api<Lease>,
    cfg: LeaderConfig,
    clock: Arc<dyn Clock>,
    observed: Mutex<Option<Observed>>,
    metrics: LeaderMetrics,
    status: LeaderStatus,
    leader_peer: watch::Sender<Option<String>>,
}

fn micro(t: Timestamp) -> MicroTime {
    MicroTime(t)
}

impl Elector {
    /// A candidate for `cfg`.
    pub fn new(client: Client, cfg: LeaderConfig) -> Self {
        Self::with_clock(client, cfg, Arc::new(SystemClock))
    }

    /// A candidate for `cfg` reading time from `clock`.
    pub fn with_clock(client: Client, cfg: LeaderConfig, clock: Arc<dyn Clock>) -> Self {
        let status = LeaderStatus {
            leading: Arc::default(),
            last_renew: Arc::default(),
            lease_duration: cfg.lease_duration,
            clock: clock.clone(),
        };
        Self {
            api: Api::namespaced(client, &cfg.namespace),
            clock,
            observed: Mutex::new(None),
            metrics: LeaderMetrics::default(),
            status,
            leader_peer: watch::Sender::new(None),
            cfg,
        }
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.cfg.identity
    }

    /// The peer address this candidate publishes while it leads.
    pub fn peer_address(&self) -> Option<&str> {
        self.cfg.peer_address.as_deref()
    }

    /// The election's metrics.
    pub fn metrics(&self) -> &LeaderMetrics {
        &self.metrics
    }

    /// Leadership and renewal state, for the `/healthz` watchdog.
    pub fn status(&self) -> LeaderStatus {
        self.status.clone()
    }

    /// The peer address the current holder published on the Lease, as of this candidate's
    /// last read (None: no holder, or it published none).
    pub fn leader_peer(&self) -> watch::Receiver<Option<String>> {
        self.leader_peer.subscribe()
    }

    fn set_leading(&self, leading: bool) {
        self.status.leading.store(leading, Ordering::Release);
        self.metrics.leader.set(i64::from(leading));
        if leading {
            *self
                .status
                .last_renew
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(self.clock.mono());
        }
    }

    /// Tries once to take or renew the Lease; true when this candidate holds it afterwards.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let got = self.try_acquire_once().await;
        // An error says nothing new: leading stays as it was, and the watchdog times it.
        if let Ok(leading) = &got {
            self.set_leading(*leading);
        }
        got
    }

    async fn try_acquire_once(&self) -> Result<bool, kube::Error> {
        let now = self.clock.wall();
        let mono = self.clock.mono();
        let secs = i32::try_from(self.cfg.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    annotations: self.annotations(None),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.cfg.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(micro(now)),
                    renew_time: Some(micro(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => {
                    self.metrics.transitions.inc();
                    self.observe(Some(&self.cfg.identity), Some(now), mono);
                    self.leader_peer.send_replace(self.cfg.peer_address.clone());
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(false),
                Err(e) => Err(e),
            };
        };
        let peer = lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PEER_ADDRESS_ANNOTATION))
            .cloned();
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let mine = holder.as_deref() == Some(self.cfg.identity.as_str());
        let duration = Duration::from_secs(
            spec.lease_duration_seconds
                .unwrap_or(secs)
                .max(1)
                .unsigned_abs()
                .into(),
        );
        let renew = spec.renew_time.as_ref().map(|t| t.0);
        let expired = {
            let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
            let (now_observed, expired) =
                judge(observed.as_ref(), holder.as_deref(), renew, duration, mono);
            let changed_holder = observed
                .as_ref()
                .is_some_and(|o| o.holder != now_observed.holder);
            *observed = Some(now_observed);
            drop(observed);
            if changed_holder && holder.is_some() && !mine {
                self.metrics.transitions.inc();
            }
            expired
        };
        self.leader_peer.send_if_modified(|p| {
            let next = holder.as_ref().and(peer.clone());
            let modified = *p != next;
            *p = next;
            modified
        });
        if !mine && holder.is_some() && !expired {
            return Ok(false);
        }
        if !mine {
            spec.holder_identity = Some(self.cfg.identity.clone());
            spec.acquire_time = Some(micro(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(secs);
        spec.renew_time = Some(micro(now));
        lease.metadata.annotations = self.annotations(lease.metadata.annotations.take());
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                if !mine {
                    self.metrics.transitions.inc();
                }
                self.observe(Some(&self.cfg.identity), Some(now), mono);
                self.leader_peer.send_replace(self.cfg.peer_address.clone());
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Remembers the record this candidate wrote, so its own renewals count as observed.
    fn observe(&self, holder: Option<&str>, renew: Option<Timestamp>, at: Instant) {
        *self.observed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Observed {
            holder: holder.map(str::to_string),
            renew,
            at,
        });
    }

    /// The Lease's annotations with this replica's version and peer address set (or the
    /// address removed).
    fn annotations(
        &self,
        current: Option<std::collections::BTreeMap<String, String>>,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        let mut a = current.unwrap_or_default();
        a.insert(VERSION_ANNOTATION.into(), self.cfg.version.clone());
        match &self.cfg.peer_address {
            Some(addr) => a.insert(PEER_ADDRESS_ANNOTATION.into(), addr.clone()),
            None => a.remove(PEER_ADDRESS_ANNOTATION),
        };
        (!a.is_empty()).then_some(a)
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire().await {
                Ok(true) => {
                    tracing::info!(identity = %self.cfg.identity, lease = %self.cfg.name, version = %self.cfg.version, "became the leader");
                    return;
                }
                Ok(false) => tracing::debug!("another replica leads; waiting"),
                Err(error) => tracing::warn!(%error, "leader election failed; retrying"),
            }
            tokio::time::sleep(self.cfg.renew_every).await;
        }
    }

    /// Renews the Lease until renewal fails for longer than the lease lasts (or another
    /// replica took it); resolves then.
    pub async fn hold(&self) {
        let mut last_ok = self.clock.mono();
        loop {
            tokio::time::sleep(self.cfg.renew_every).await;
            match self.try_acquire().await {
                Ok(true) => last_ok = self.clock.mono(),
                Ok(false) => {
                    tracing::error!("another replica took the leader Lease");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "renewing the leader Lease failed");
                    // Stop a little before the Lease can expire, so two leaders never overlap.
                    let since = self.clock.mono().saturating_duration_since(last_ok);
                    if since + self.cfg.renew_every >= self.cfg.lease_duration {
                        self.set_leading(false);
                        return;
                    }
                }
            }
        }
    }

    /// Gives the Lease up so a standby takes over without waiting for expiry.
    pub async fn release(&self) {
        self.set_leading(false);
        let Ok(Some(mut lease)) = self.api.get_opt(&self.cfg.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        if let Some(a) = lease.metadata.annotations.as_mut() {
            a.remove(PEER_ADDRESS_ANNOTATION);
            a.remove(VERSION_ANNOTATION);
        }
        if let Err(error) = self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(%error, "releasing the leader Lease failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_timed_from_the_local_observation_not_the_renew_time() {
        let t0 = Instant::now();
        let d = Duration::from_secs(15);
        let renew = Some(Timestamp::UNIX_EPOCH); // ancient by any wall clock
        // First sight: never expired, however old renewTime looks.
        let (seen, expired) = judge(None, Some("a"), renew, d, t0);
        assert!(!expired);
        // Same record, observed for less than the duration: still valid.
        let (seen, expired) = judge(Some(&seen), Some("a"), renew, d, t0 + d);
        assert!(!expired);
        assert_eq!(
            seen.at, t0,
            "an unchanged record keeps its first observation time"
        );
        // Same record for longer than the duration: expired.
        let (_, expired) = judge(
            Some(&seen),
            Some("a"),
            renew,
            d,
            t0 + d + Duration::from_millis(1),
        );
        assert!(expired);
        // A renewal (new renewTime) or a new holder restarts the clock.
        let later = Some(Timestamp::UNIX_EPOCH + Duration::from_secs(1));
        let (renewed, expired) = judge(Some(&seen), Some("a"), later, d, t0 + 2 * d);
        assert!(!expired);
        assert_eq!(renewed.at, t0 + 2 * d);
        let (_, expired) = judge(Some(&seen), Some("b"), renew, d, t0 + 2 * d);
        assert!(!expired);
    }
}
