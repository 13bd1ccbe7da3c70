//! The facade's view of the event log: a watch of Panoptes' Events (field selector
//! `reportingController=panoptes`) turned into Watcher `Event`s, the same on every replica
//! because every replica reads the API server. Memory is bounded twice, by entries and by
//! bytes (the oldest go first, so every replica keeps the same newest ones); the gauges show
//! the fill.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::Api;
use kube::runtime::watcher;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::{Value, json};

use super::{CONTROLLER, WATCHER_EVENT_ANNOTATION, policy, stable_hash};

/// Bounded, ordered by `event_id`.
pub struct EventLog {
    cache: Mutex<Cache>,
    max_entries: usize,
    max_bytes: usize,
    entries_gauge: Gauge,
    bytes_gauge: Gauge,
    ready: tokio::sync::watch::Sender<bool>,
}

#[derive(Default)]
struct Cache {
    /// (event_id, uid) → (Watcher event, its bytes).
    items: BTreeMap<(i64, String), (Value, usize)>,
    /// uid → event_id.
    ids: HashMap<String, i64>,
    bytes: usize,
    /// uids seen since the watch (re)started listing.
    relist: Option<HashSet<String>>,
}

impl Cache {
    fn remove(&mut self, uid: &str) {
        if let Some(id) = self.ids.remove(uid)
            && let Some((_, size)) = self.items.remove(&(id, uid.to_string()))
        {
            self.bytes -= size;
        }
    }
}

impl EventLog {
    /// An empty log keeping at most `max_entries` events and `max_bytes` bytes of them.
    pub fn new(max_entries: usize, max_bytes: usize, entries: Gauge, bytes: Gauge) -> Self {
        Self {
            cache: Mutex::new(Cache::default()),
            max_entries,
            max_bytes,
            entries_gauge: entries,
            bytes_gauge: bytes,
            ready: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Watches `api` until the task is aborted.
    pub async fn follow(self: Arc<Self>, api: Api<K8sEvent>) {
        let config =
            watcher::Config::default().fields(&format!("reportingController={CONTROLLER}"));
        let mut stream = watcher(api, config).boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(e) => self.handle(e),
                Err(error) => tracing::warn!(%error, "watching Events for /events failed"),
            }
        }
    }

    /// Waits until the first list is in.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    fn handle(&self, event: watcher::Event<K8sEvent>) {
        let mut cache = self.lock();
        match event {
            watcher::Event::Init => cache.relist = Some(HashSet::new()),
            watcher::Event::InitApply(e) => {
                if let (Some(seen), Some(uid)) = (cache.relist.as_mut(), e.metadata.uid.clone()) {
                    seen.insert(uid);
                }
                self.upsert(&mut cache, &e);
            }
            watcher::Event::InitDone => {
                if let Some(seen) = cache.relist.take() {
                    let gone: Vec<String> = cache
                        .ids
                        .keys()
                        .filter(|u| !seen.contains(*u))
                        .cloned()
                        .collect();
                    for uid in gone {
                        cache.remove(&uid);
                    }
                }
                self.ready.send_replace(true);
            }
            watcher::Event::Apply(e) => self.upsert(&mut cache, &e),
            watcher::Event::Delete(e) => {
                if let Some(uid) = &e.metadata.uid {
                    cache.remove(uid);
                }
            }
        }
        self.entries_gauge.set(cache.items.len() as i64);
        self.bytes_gauge.set(cache.bytes as i64);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn upsert(&self, cache: &mut Cache, e: &K8sEvent) {
        let (Some(uid), Some(value)) = (e.metadata.uid.clone(), watcher_event(e)) else {
            return;
        };
        cache.remove(&uid);
        let id = value["event_id"].as_i64().unwrap_or_default();
        let size = serde_json::to_vec(&value).map_or(0, |v| v.len());
        if size > self.max_bytes || self.max_entries == 0 {
            return;
        }
        cache.ids.insert(uid.clone(), id);
        cache.items.insert((id, uid), (value, size));
        cache.bytes += size;
        while cache.items.len() > self.max_entries || cache.bytes > self.max_bytes {
            let Some(((_, uid), (_, size))) = cache.items.pop_first() else {
                break;
            };
            cache.ids.remove(&uid);
            cache.bytes -= size;
        }
    }

    /// Every event kept (oldest first).
    pub fn all(&self) -> Vec<Value> {
        self.lock().items.values().map(|(v, _)| v.clone()).collect()
    }
}

/// The Watcher `Event` of a Kubernetes Event written by Panoptes (`None` for anyone else's).
/// An audit Event carries its own; an operator Event is described by reason, note, object
/// and series. Its `event_id` is derived from the Event alone (first time and uid), so every
/// replica gives the same one.
pub fn watcher_event(e: &K8sEvent) -> Option<Value> {
    if e.reporting_controller.as_deref() != Some(CONTROLLER) {
        return None;
    }
    if let Some(json) = e
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(WATCHER_EVENT_ANNOTATION))
    {
        return serde_json::from_str(json).ok();
    }
    let first = e
        .event_time
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))?;
    let last = e.series.as_ref().map_or(first, |s| s.last_observed_time.0);
    let uid = e.metadata.uid.as_deref().unwrap_or_default();
    let first_ms = first.as_millisecond();
    let reason = e.reason.as_deref().unwrap_or_default();
    let object = e.regarding.as_ref().map(|r| {
        format!(
            "{}/{}",
            r.kind.as_deref().unwrap_or_default(),
            match &r.namespace {
                Some(ns) => format!("{ns}/{}", r.name.as_deref().unwrap_or_default()),
                None => r.name.clone().unwrap_or_default(),
            }
        )
    });
    Some(json!({
        "event": policy::event_name(reason),
        "created_at": chrono::DateTime::from_timestamp_millis(first_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "utc_ms": last.as_millisecond(),
        "event_id": event_id(first_ms, uid),
        "server": e.reporting_instance,
        "reason": reason,
        "type": e.type_,
        "note": e.note,
        "object": object,
        "count": e.series.as_ref().map_or(1, |s| i64::from(s.count)),
    }))
}

/// Increasing with time (ms), unique enough within one ms, the same on every replica.
pub fn event_id(utc_ms: i64, uid: &str) -> i64 {
    utc_ms * 1000 + (stable_hash(uid) % 1000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

    fn k8s(uid: &str, ms: i64, note: &str) -> K8sEvent {
        K8sEvent {
            metadata: ObjectMeta {
                uid: Some(uid.into()),
                ..Default::default()
            },
            event_time: Some(MicroTime(
                k8s_openapi::jiff::Timestamp::from_millisecond(ms).unwrap(),
            )),
            reason: Some("NotAlive".into()),
            note: Some(note.into()),
            reporting_controller: Some(CONTROLLER.into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_log_stays_within_entries_and_bytes_and_keeps_the_newest() {
        let log = EventLog::new(5, 3_000, Gauge::default(), Gauge::default());
        for i in 0..50 {
            let e = k8s(&format!("u{i}"), 1_000 + i, &"é".repeat(i as usize * 10));
            log.handle(watcher::Event::Apply(e));
            let c = log.lock();
            assert!(c.items.len() <= 5 && c.bytes <= 3_000, "{i}");
        }
        let all = log.all();
        assert_eq!(all.last().unwrap()["utc_ms"], 1_049);
        assert_eq!(all.last().unwrap()["event"], "stream_offline");
        assert!(log.entries_gauge.get() <= 5 && log.bytes_gauge.get() <= 3_000);
    }

    #[test]
    fn a_relist_drops_what_expired_and_others_events_are_ignored() {
        let log = EventLog::new(100, 1 << 20, Gauge::default(), Gauge::default());
        log.handle(watcher::Event::Apply(k8s("a", 1, "")));
        log.handle(watcher::Event::Apply(k8s("b", 2, "")));
        let mut theirs = k8s("c", 3, "");
        theirs.reporting_controller = Some("kubelet".into());
        log.handle(watcher::Event::Apply(theirs));
        assert_eq!(log.all().len(), 2);
        log.handle(watcher::Event::Init);
        log.handle(watcher::Event::InitApply(k8s("b", 2, "")));
        log.handle(watcher::Event::InitDone);
        assert_eq!(log.all().len(), 1);
        log.handle(watcher::Event::Delete(k8s("b", 2, "")));
        assert!(log.all().is_empty());
    }
}
