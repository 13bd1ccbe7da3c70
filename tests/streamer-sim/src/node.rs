//! One simulated node: disk config, runtime, credentials, behaviour switches, faults and
//! counters, and the server-level operations (config, stats, probes, peers, sources).
//! Stream operations are in `streams.rs`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::auth::hash_password;
use crate::clock::SimClock;
use crate::cluster::Registry;
use crate::error::ApiError;
use crate::faults::{Counters, Faults};
use crate::options::{Behaviour, ConfigPut, NodeOptions};
use crate::runtime::{self, Runtime, StreamRt};
use crate::schema::{self, Ty, clean};
use crate::store::{Disk, merge, strip_nulls};

/// Mutable state of a node, behind one lock.
#[derive(Debug)]
pub struct NodeState {
    /// Disk config (survives restart).
    pub disk: Disk,
    /// Runtime (wiped by restart).
    pub rt: Runtime,
    /// Behaviour switches.
    pub beh: Behaviour,
    /// API tokens accepted as Bearer.
    pub tokens: Vec<String>,
}

/// One simulated node.
#[derive(Debug)]
pub struct Node {
    /// Hostname the node reports.
    pub hostname: String,
    /// Persistent `server_id`.
    pub server_id: String,
    /// Listen address.
    pub addr: SocketAddr,
    /// `server_version`.
    pub version: String,
    /// Shared clock.
    pub clock: SimClock,
    /// Config, runtime, switches.
    pub state: Mutex<NodeState>,
    /// Fault switches.
    pub faults: Mutex<Faults>,
    /// Request counters.
    pub counters: Mutex<Counters>,
    /// When each stream write was stored, since the counters were last reset: a bench's push
    /// window is measured from these, not sampled by polling (a 10,000-stream push takes
    /// ~0.7 s; 50 ms polls on each end were ±15 % of it). At most [`STORE_TIMES_CAP`].
    pub store_times: Mutex<Vec<std::time::Instant>>,
    /// Firmware images received (simulator assumption: see `firmware.rs`).
    pub firmware: Mutex<Vec<crate::firmware::FirmwareUpload>>,
    gate: Mutex<Option<(usize, Arc<Semaphore>)>>,
    pub(crate) up: AtomicBool,
    pub(crate) accept_task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    pub(crate) registry: Weak<Registry>,
}

/// Store times kept per node between resets: a node of a 100,000-stream bench stores ~1,000
/// per push of its share; a test that never resets stops recording here instead of growing.
pub const STORE_TIMES_CAP: usize = 1 << 20;

fn creds(login: &str, password: &str) -> Value {
    json!({"login": login, "password": password})
}

impl Node {
    pub(crate) fn new(
        hostname: String,
        addr: SocketAddr,
        opts: &NodeOptions,
        clock: SimClock,
        registry: Weak<Registry>,
    ) -> Self {
        let now = clock.now_ms();
        let mut server = Map::new();
        if let Some((l, p)) = &opts.edit_auth {
            server.insert("edit_auth".into(), creds(l, p));
        }
        if let Some((l, p)) = &opts.view_auth {
            server.insert("view_auth".into(), creds(l, p));
        }
        if let Some(k) = &opts.cluster_key {
            server.insert("cluster_key".into(), json!(k));
        }
        server.insert("listeners".into(), json!({"http": [{"port": addr.port()}]}));
        let mut disk = Disk::default();
        disk.server = server;
        Self {
            hostname,
            server_id: uuid::Uuid::new_v4().to_string(),
            addr,
            version: opts.server_version.clone(),
            state: Mutex::new(NodeState {
                disk,
                rt: Runtime::boot(now, opts.behaviour.starting_ms),
                beh: opts.behaviour.clone(),
                tokens: opts.tokens.clone(),
            }),
            clock,
            faults: Mutex::new(Faults::default()),
            counters: Mutex::new(Counters::default()),
            store_times: Mutex::new(Vec::new()),
            firmware: Mutex::new(Vec::new()),
            gate: Mutex::new(None),
            up: AtomicBool::new(false),
            accept_task: tokio::sync::Mutex::new(None),
            registry,
        }
    }

    /// Locks the state.
    pub fn lock(&self) -> MutexGuard<'_, NodeState> {
        self.state.lock().expect("node state")
    }

    /// Simulated now, ms.
    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Whether the node accepts connections.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// The slow-accept semaphore matching the current faults.
    pub(crate) fn gate(&self) -> Option<Arc<Semaphore>> {
        let want = self.faults.lock().expect("faults").max_concurrency;
        let mut gate = self.gate.lock().expect("gate");
        match (want, gate.as_ref()) {
            (None, _) => {
                *gate = None;
                None
            }
            (Some(n), Some((have, sem))) if *have == n => Some(sem.clone()),
            (Some(n), _) => {
                let sem = Arc::new(Semaphore::new(n.max(1)));
                *gate = Some((n, sem.clone()));
                Some(sem)
            }
        }
    }

    fn skew(&self) -> i64 {
        self.faults.lock().expect("faults").clock_skew_ms
    }

    /// `streamer_status` now.
    pub fn status(st: &NodeState, now: i64) -> &'static str {
        if st.rt.broken.is_some() {
            "broken_config"
        } else if now < st.rt.ready_at {
            "starting"
        } else {
            "running"
        }
    }

    /// Whether `config_external` is set.
    pub fn config_external(st: &NodeState) -> bool {
        st.disk
            .server
            .get("config_external")
            .is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty()))
    }

    /// Bumps `config_version[1]`.
    pub fn bump(st: &mut NodeState) {
        st.rt.rev += 1;
    }

    /// Reboots: runtime wiped, disk kept, static streams start after `starting_ms`.
    pub fn reboot(&self, broken: Option<Value>) {
        let now = self.now();
        let mut st = self.lock();
        st.rt = Runtime::boot(now, st.beh.starting_ms);
        st.rt.broken = broken;
        if st.rt.broken.is_none() {
            let ready = st.rt.ready_at;
            let names: Vec<String> = st.disk.streams().map(|(n, _)| n.clone()).collect();
            for name in names {
                if self
                    .effective_config(&st, &name)
                    .is_some_and(|c| runtime::runs_by_itself(&c))
                {
                    st.rt.streams.insert(name, StreamRt::open(ready));
                }
            }
        }
    }

    /// `ServerStats`.
    pub fn server_stats(&self, st: &NodeState, now: i64) -> Value {
        let ctx = runtime::Ctx {
            now,
            hostname: &self.hostname,
            beh: &st.beh,
        };
        let (mut online, mut input_kbit, mut output_kbit, mut clients, mut total) =
            (0i64, 0i64, 0i64, 0i64, 0i64);
        let mut add = |stats: Option<Value>| {
            total += 1;
            if let Some(s) = stats {
                let b = s.get("bitrate").and_then(Value::as_i64).unwrap_or(0);
                let c = s.get("online_clients").and_then(Value::as_i64).unwrap_or(0);
                if s.get("alive").and_then(Value::as_bool) == Some(true) {
                    online += 1;
                }
                input_kbit += b;
                output_kbit += b * c;
                clients += c;
            }
        };
        for (name, _) in st.disk.streams() {
            let cfg = self.effective_config(st, name).unwrap_or_default();
            add(runtime::stream_stats(
                name,
                &cfg,
                st.rt.streams.get(name),
                false,
                &ctx,
            ));
        }
        for (name, f) in &st.rt.foreign {
            add(runtime::stream_stats(
                name,
                &f.config,
                Some(&f.rt),
                f.named_by == "user",
                &ctx,
            ));
        }
        let total_bw = st
            .disk
            .server
            .get("total_bandwidth")
            .and_then(Value::as_i64)
            .filter(|b| *b > 0);
        let mut s = json!({
            "streamer_status": Self::status(st, now),
            "server_version": self.version,
            "build": 1,
            "hostname": self.hostname,
            "id": st.rt.id,
            "started_at": st.rt.started_at / 1000,
            "uptime": (now - st.rt.started_at).max(0) / 1000,
            "now": now + self.skew(),
            "config_version": [st.rt.started_at / 1000, st.rt.rev],
            "cpu_usage": (3 + online * 2 / 5 + total / 50).min(100),
            "memory_usage": (8 + total / 20).min(100),
            "scheduler_load": (2 + online / 4).min(100),
            "bandwidth_usage": total_bw.map(|bw| (output_kbit * 100 / bw).min(100)).unwrap_or(0),
            "input_kbit": input_kbit,
            "output_kbit": output_kbit,
            "total_clients": clients,
            "total_streams": total,
            "online_streams": online,
            "opened_files": total * 2,
            "transcoder": false,
            "text_alerts": {},
        });
        if let Some(err) = &st.rt.broken {
            s["config_error"] = err.clone();
            s["text_alerts"] = json!({"config_error": format!("config file has errors: {}", err.get("detail").and_then(Value::as_str).unwrap_or("parse error"))});
        }
        if Self::config_external(st) {
            s["config_external_status"] = json!({"status": "loaded"});
        }
        s
    }

    /// `ServerStatsWhoami`.
    pub fn whoami(&self) -> Value {
        let now = self.now();
        let st = self.lock();
        json!({"server_version": self.version, "build": 1, "started_at": st.rt.started_at / 1000, "now": now + self.skew()})
    }

    /// Readiness: 503 while starting or broken (switchable).
    pub fn readiness(&self) -> Result<Value, ApiError> {
        let now = self.now();
        {
            let st = self.lock();
            let status = Self::status(&st, now);
            if st.beh.readiness_fails_while_starting && status != "running" {
                return Err(ApiError::new(
                    503,
                    "not_ready",
                    format!("streamer_status is {status}"),
                ));
            }
        }
        Ok(self.whoami())
    }

    /// `GET /config`.
    pub fn config_get(&self) -> Value {
        let now = self.now();
        let st = self.lock();
        let mut c = Value::Object(st.disk.server.clone());
        c["server_id"] = json!(self.server_id);
        c["stats"] = self.server_stats(&st, now);
        c
    }

    fn hash_credentials(cfg: &mut Value) {
        for key in ["edit_auth", "view_auth"] {
            if let Some(c) = cfg
                .get_mut(key)
                .filter(|c| c.get("hash") == Some(&Value::Bool(true)))
                && let Some(p) = c.get("password").and_then(Value::as_str)
            {
                c["password"] = json!(hash_password(p));
            }
        }
    }

    /// `PUT /config`: validate, merge (or replace), bump.
    pub fn config_put(&self, body: &Value) -> Result<Value, ApiError> {
        let mut cleaned = clean(&Ty::Obj(schema::SERVER), body, "").map_err(ApiError::invalid)?;
        Self::hash_credentials(&mut cleaned);
        {
            let mut st = self.lock();
            let mut server = Value::Object(st.disk.server.clone());
            match st.beh.config_put {
                ConfigPut::Merge => merge(&mut server, &cleaned, st.beh.array_merge),
                ConfigPut::Replace => server = strip_nulls(&cleaned),
            }
            st.disk.server = server.as_object().cloned().unwrap_or_default();
            Self::bump(&mut st);
        }
        Ok(self.config_get())
    }

    /// `POST /config`: validate only. Answers 200 with the cleaned config, or with the
    /// validation error fields (`error`, `path`, `detail`) added (§2.1; assumption).
    pub fn config_validate(&self, body: &Value) -> Value {
        match clean(&Ty::Obj(schema::SERVER), body, "") {
            Ok(v) => v,
            Err(inv) => {
                let path: Vec<Value> = inv
                    .pointer
                    .split('/')
                    .skip(1)
                    .map(|p| {
                        p.parse::<u64>()
                            .map(Value::from)
                            .unwrap_or_else(|_| json!(p.replace("~1", "/").replace("~0", "~")))
                    })
                    .collect();
                json!({"error": "validation_error", "path": path, "detail": inv.title, "config": body})
            }
        }
    }

    // ---- peers and sources -------------------------------------------------------------

    fn collection(kind: &str) -> Result<(&'static str, &'static [schema::F]), ApiError> {
        match kind {
            "peers" => Ok(("hostname", schema::PEER)),
            "sources" => Ok(("url", schema::SOURCE)),
            _ => Err(ApiError::not_found(kind)),
        }
    }

    fn peer_stats(&self, kind: &str, key: &str) -> Value {
        let Some(reg) = self.registry.upgrade() else {
            return json!({"error": "unknown"});
        };
        let target = if kind == "peers" {
            reg.find(key)
        } else {
            reg.find(key.split_once("://").map(|(_, h)| h).unwrap_or(key))
        };
        match target {
            Some(n) if n.is_up() => {
                let now = n.now();
                let st = n.lock();
                n.server_stats(&st, now)
            }
            Some(_) => json!({"error": "econnrefused"}),
            None => json!({"error": "unknown"}),
        }
    }

    fn with_stats(&self, kind: &str, key_field: &str, mut item: Value) -> Value {
        let key = item
            .get(key_field)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        item["stats"] = self.peer_stats(kind, &key);
        item
    }

    /// `GET /cluster/{kind}`.
    pub fn collection_list(&self, kind: &str) -> Result<Value, ApiError> {
        let (key_field, _) = Self::collection(kind)?;
        let items: Vec<Value> = {
            let st = self.lock();
            st.disk
                .server
                .get(kind)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let items: Vec<Value> = items
            .into_iter()
            .map(|i| self.with_stats(kind, key_field, i))
            .collect();
        Ok(
            json!({kind: items.clone(), "estimated_count": items.len(), "server_id": self.server_id}),
        )
    }

    /// `GET /cluster/{kind}/{key}`.
    pub fn collection_get(&self, kind: &str, key: &str) -> Result<Value, ApiError> {
        let (key_field, _) = Self::collection(kind)?;
        let item = {
            let st = self.lock();
            st.disk
                .server
                .get(kind)
                .and_then(Value::as_array)
                .and_then(|a| {
                    a.iter()
                        .find(|i| i.get(key_field).and_then(Value::as_str) == Some(key))
                        .cloned()
                })
        };
        let item =
            item.ok_or_else(|| ApiError::not_found(format!("{} {key}", &kind[..kind.len() - 1])))?;
        Ok(self.with_stats(kind, key_field, item))
    }

    /// `PUT /cluster/{kind}/{key}`: upsert with the stream merge rules.
    pub fn collection_put(&self, kind: &str, key: &str, body: &Value) -> Result<Value, ApiError> {
        let (key_field, fields) = Self::collection(kind)?;
        let cleaned = clean(&Ty::Obj(fields), body, "").map_err(ApiError::invalid)?;
        if let Some(k) = cleaned
            .get(key_field)
            .and_then(Value::as_str)
            .filter(|k| *k != key)
        {
            return Err(ApiError {
                pointer: Some(format!("/{key_field}")),
                ..ApiError::new(
                    400,
                    "validation_error",
                    format!("{key_field} {k} differs from the path"),
                )
            });
        }
        let item = {
            let mut st = self.lock();
            let arrays = st.beh.array_merge;
            let list = st
                .disk
                .server
                .entry(kind.to_string())
                .or_insert_with(|| json!([]));
            if !list.is_array() {
                *list = json!([]);
            }
            let list = list.as_array_mut().expect("array");
            let item = match list
                .iter_mut()
                .find(|i| i.get(key_field).and_then(Value::as_str) == Some(key))
            {
                Some(existing) => {
                    merge(existing, &cleaned, arrays);
                    existing.clone()
                }
                None => {
                    let mut item = strip_nulls(&cleaned);
                    item[key_field] = json!(key);
                    list.push(item.clone());
                    item
                }
            };
            Self::bump(&mut st);
            item
        };
        Ok(self.with_stats(kind, key_field, item))
    }

    /// `DELETE /cluster/{kind}/{key}`.
    pub fn collection_delete(&self, kind: &str, key: &str) -> Result<Value, ApiError> {
        let (key_field, _) = Self::collection(kind)?;
        let mut st = self.lock();
        let list = st.disk.server.get_mut(kind).and_then(Value::as_array_mut);
        let Some(list) = list else {
            return Err(ApiError::not_found(key));
        };
        let before = list.len();
        list.retain(|i| i.get(key_field).and_then(Value::as_str) != Some(key));
        if list.len() == before {
            return Err(ApiError::not_found(format!(
                "{} {key}",
                &kind[..kind.len() - 1]
            )));
        }
        Self::bump(&mut st);
        Ok(json!({}))
    }

    /// `GET /api_tokens` (names only; keys are secrets).
    pub fn tokens_list(&self) -> Value {
        let st = self.lock();
        let tokens: Vec<Value> = st.tokens.iter().enumerate().map(|(i, _)| json!({"name": format!("token-{i}"), "permissions": [{"scopes": ["*"], "read": true, "list": true, "write": true, "execute": true}]})).collect();
        json!({"api_tokens": tokens, "estimated_count": tokens.len()})
    }

    // ---- hooks for a human on the node -------------------------------------------------

    /// Hand edit of the server config (merge patch, `null` deletes).
    pub fn drift_config(&self, patch: &Value) {
        let mut st = self.lock();
        let mut server = Value::Object(st.disk.server.clone());
        merge(&mut server, patch, st.beh.array_merge);
        st.disk.server = server.as_object().cloned().unwrap_or_default();
        Self::bump(&mut st);
    }
}
