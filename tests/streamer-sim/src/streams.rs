//! Stream operations of a node: effective view, save (merge / `$reset`), delete, stop, list,
//! and the test hooks that act on streams (hand edits, foreign streams, viewers, silence).

use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::node::{Node, NodeState};
use crate::options::ArrayMerge;
use crate::query::{self, Item};
use crate::runtime::{self, Foreign, StreamRt};
use crate::schema::{self, Ty, clean};
use crate::store::{merge, strip_nulls};

/// Defaults a node adds to the effective config that the stored stream does not have.
fn defaults() -> Value {
    json!({"segment_duration": 2000, "segment_count": 3, "clients_timeout": 360, "source_timeout": 60})
}

fn runtime_key(cfg: &Value) -> Value {
    json!([
        cfg.get("inputs"),
        cfg.get("static"),
        cfg.get("disabled"),
        cfg.get("template")
    ])
}

/// Members Flussonic treats as metadata: changing only these never restarts the stream (an
/// ownership label such as `managed-by`, a comment). Any other change to a stored stream
/// counts as a restart, even where the emulated runtime below resets only on
/// [`runtime_key`]: the counter is the conservative judge of "no outage".
pub const METADATA: &[&str] = &["labels", "comment"];

fn without_metadata(cfg: &Value) -> Value {
    let mut c = cfg.clone();
    if let Some(m) = c.as_object_mut() {
        for k in METADATA {
            m.remove(*k);
        }
    }
    c
}

fn config_external_error() -> ApiError {
    ApiError::new(
        400,
        "config_external",
        "streams are managed by config_external on this server; the API cannot change them",
    )
}

impl Node {
    /// Effective config (defaults + template + stored) of a configured stream, without the
    /// read-only members.
    pub fn effective_config(&self, st: &NodeState, name: &str) -> Option<Value> {
        let stored = st.disk.stream(name)?;
        let mut eff = defaults();
        if let Some(t) = stored.config.get("template").and_then(Value::as_str) {
            let template = st
                .disk
                .server
                .get("templates")
                .and_then(Value::as_array)
                .and_then(|ts| {
                    ts.iter()
                        .find(|x| x.get("name").and_then(Value::as_str) == Some(t))
                });
            if let Some(Value::Object(tm)) = template {
                let tm: Map<String, Value> = tm
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "name" | "prefixes" | "position"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                merge(&mut eff, &Value::Object(tm), ArrayMerge::Replace);
            }
        }
        merge(&mut eff, &stored.config, ArrayMerge::Replace);
        Some(eff)
    }

    fn view(
        &self,
        st: &NodeState,
        name: &str,
        position: i64,
        now: i64,
        with_stats: bool,
    ) -> Option<Value> {
        let stored = st.disk.stream(name)?;
        let mut eff = self.effective_config(st, name)?;
        let stats = with_stats
            .then(|| self.stats_of(st, name, &eff, now))
            .flatten();
        eff["named_by"] = json!(if Node::config_external(st) {
            "external"
        } else {
            "config"
        });
        eff["position"] = json!(position);
        eff["config_on_disk"] = stored.config.clone();
        if let Some(s) = stats {
            eff["stats"] = s;
        }
        Some(eff)
    }

    fn stats_of(&self, st: &NodeState, name: &str, eff: &Value, now: i64) -> Option<Value> {
        let ctx = runtime::Ctx {
            now,
            hostname: &self.hostname,
            beh: &st.beh,
        };
        runtime::stream_stats(name, eff, st.rt.streams.get(name), false, &ctx)
    }

    fn foreign_view(
        &self,
        st: &NodeState,
        name: &str,
        f: &Foreign,
        now: i64,
        with_stats: bool,
    ) -> Value {
        let mut v = f.config.clone();
        v["name"] = json!(name);
        v["named_by"] = json!(f.named_by);
        if with_stats {
            let ctx = runtime::Ctx {
                now,
                hostname: &self.hostname,
                beh: &st.beh,
            };
            if let Some(s) =
                runtime::stream_stats(name, &f.config, Some(&f.rt), f.named_by == "user", &ctx)
            {
                v["stats"] = s;
            }
        }
        v
    }

    fn get_locked(&self, st: &NodeState, name: &str, now: i64) -> Option<Value> {
        if let Some(stored) = st.disk.stream(name) {
            return self.view(st, name, st.disk.position(stored.seq), now, true);
        }
        st.rt
            .foreign
            .get(name)
            .map(|f| self.foreign_view(st, name, f, now, true))
    }

    /// (Re)starts or stops the runtime of a configured stream after its config changed.
    fn reset_runtime(&self, st: &mut NodeState, name: &str, now: i64) {
        st.rt.streams.remove(name);
        if st.rt.broken.is_some() {
            return;
        }
        if self
            .effective_config(st, name)
            .is_some_and(|c| runtime::runs_by_itself(&c))
        {
            let at = now.max(st.rt.ready_at);
            st.rt.streams.insert(name.to_string(), StreamRt::open(at));
        }
    }

    fn write_stream(
        &self,
        st: &mut NodeState,
        name: &str,
        cleaned: &Value,
        reset: bool,
        now: i64,
    ) -> Result<(), ApiError> {
        let existing = st.disk.stream(name).map(|s| s.config.clone());
        if existing.is_none() && st.beh.max_streams.is_some_and(|max| st.disk.count() >= max) {
            return Err(ApiError::new(
                400,
                "stream_limit_reached",
                "this server cannot hold more streams",
            ));
        }
        let mut cfg = match (&existing, reset) {
            (Some(old), false) => {
                let mut c = old.clone();
                merge(&mut c, cleaned, st.beh.array_merge);
                c
            }
            _ => strip_nulls(cleaned),
        };
        cfg["name"] = json!(name);
        if existing.is_some() && !reset {
            // Element-wise array merges may leave an element incomplete.
            clean(&Ty::Obj(schema::STREAM), &cfg, "").map_err(ApiError::invalid)?;
        }
        let restart = existing.as_ref().is_none_or(|old| {
            runtime_key(old) != runtime_key(&cfg) || (st.beh.restart_on_any_change && *old != cfg)
        });
        if let Some(old) = &existing
            && *old != cfg
        {
            let mut c = self.counters.lock().expect("counters");
            let which = if without_metadata(old) == without_metadata(&cfg) {
                &mut c.metadata_writes
            } else {
                &mut c.restarts
            };
            *which.entry(name.to_string()).or_default() += 1;
        }
        st.disk.put(name, cfg);
        st.rt.foreign.remove(name);
        Node::bump(st);
        {
            let mut times = self.store_times.lock().expect("store times");
            if times.len() < crate::node::STORE_TIMES_CAP {
                times.push(std::time::Instant::now());
            }
        }
        if restart {
            self.reset_runtime(st, name, now);
            if existing.is_some()
                && let Some(rt) = st.rt.streams.get(name)
            {
                let running_at = rt.opened_at + runtime::start_delay(name, rt.opened_at, &st.beh);
                self.counters.lock().expect("counters").restart_log.push((
                    name.to_string(),
                    now,
                    running_at,
                ));
            }
        }
        Ok(())
    }

    /// `GET /streams/{name}`.
    pub fn stream_get(&self, name: &str) -> Result<Value, ApiError> {
        let now = self.now();
        let st = self.lock();
        self.get_locked(&st, name, now)
            .ok_or_else(|| ApiError::not_found(format!("stream {name}")))
    }

    /// `PUT /streams/{name}`: upsert; merge, or replace with `"$reset": true`.
    pub fn stream_save(&self, name: &str, body: &Value) -> Result<Value, ApiError> {
        let now = self.now();
        let mut st = self.lock();
        if Node::config_external(&st) {
            return Err(config_external_error());
        }
        let Some(obj) = body.as_object() else {
            return Err(ApiError::new(
                400,
                "validation_error",
                "body must be a JSON object",
            ));
        };
        let reset = obj.get("$reset") == Some(&Value::Bool(true));
        if let Some(n) = obj.get("name").filter(|n| !n.is_null())
            && n.as_str() != Some(name)
            && st.beh.reject_name_mismatch
        {
            return Err(ApiError {
                pointer: Some("/name".into()),
                ..ApiError::new(
                    400,
                    "validation_error",
                    "name in the body differs from the name in the path",
                )
            });
        }
        let by_index =
            st.beh.array_merge == ArrayMerge::ByIndex && !reset && st.disk.stream(name).is_some();
        let mut cleaned = schema::clean_with(&Ty::Obj(schema::STREAM), body, "", !by_index)
            .map_err(ApiError::invalid)?;
        if let Some(m) = cleaned.as_object_mut() {
            m.remove("name");
        }
        self.write_stream(&mut st, name, &cleaned, reset, now)?;
        Ok(self.get_locked(&st, name, now).expect("just written"))
    }

    /// `DELETE /streams/{name}`.
    pub fn stream_delete(&self, name: &str) -> Result<Value, ApiError> {
        let mut st = self.lock();
        if Node::config_external(&st) {
            return Err(config_external_error());
        }
        if st.disk.remove(name).is_some() {
            st.rt.streams.remove(name);
            Node::bump(&mut st);
        } else if st.rt.foreign.remove(name).is_none() {
            if st.beh.delete_unknown_status == 404 {
                return Err(ApiError::not_found(format!("stream {name}")));
            }
            return Ok(json!({}));
        }
        Ok(json!({}))
    }

    /// `POST /streams/{name}/stop`: static streams restart, others stop.
    pub fn stream_stop(&self, name: &str) -> Result<Value, ApiError> {
        let now = self.now();
        let mut st = self.lock();
        if st.disk.stream(name).is_some() {
            let runs = self
                .effective_config(&st, name)
                .is_some_and(|c| runtime::runs_by_itself(&c));
            st.rt.streams.remove(name);
            *self
                .counters
                .lock()
                .expect("counters")
                .restarts
                .entry(name.to_string())
                .or_default() += 1;
            if runs && st.rt.broken.is_none() {
                let at = now.max(st.rt.ready_at);
                st.rt.streams.insert(name.to_string(), StreamRt::open(at));
            }
            return Ok(json!({}));
        }
        if st.rt.foreign.remove(name).is_some() {
            return Ok(json!({}));
        }
        Err(ApiError::not_found(format!("stream {name}")))
    }

    /// `GET /streams`.
    pub fn streams_list(&self, params: &[(String, String)]) -> Result<Value, ApiError> {
        let started = std::time::Instant::now();
        let q = query::parse(params)?;
        let now = self.now();
        let st = self.lock();
        let all_stats = q.orders_or_filters_on_stats();
        let mut seqs: Vec<u64> = st.disk.streams().map(|(_, s)| s.seq).collect();
        seqs.sort_unstable();
        let mut items = Vec::with_capacity(st.disk.count() + st.rt.foreign.len());
        for (name, stored) in st.disk.streams() {
            let position = seqs.binary_search(&stored.seq).unwrap_or(0) as i64 + 1;
            if let Some(value) = self.view(&st, name, position, now, all_stats) {
                items.push(Item {
                    name: name.clone(),
                    rank: 0,
                    seq: Some(stored.seq),
                    value,
                });
            }
        }
        for (name, f) in &st.rt.foreign {
            let rank = if f.named_by == "user" { 1 } else { 2 };
            items.push(Item {
                name: name.clone(),
                rank,
                seq: None,
                value: self.foreign_view(&st, name, f, now, all_stats),
            });
        }
        let page = query::page(items, &q);
        let streams: Vec<Value> = page
            .items
            .into_iter()
            .map(|mut item| {
                if !all_stats && q.selects_stats() {
                    let eff = if item.rank == 0 {
                        self.effective_config(&st, &item.name)
                    } else {
                        st.rt.foreign.get(&item.name).map(|f| f.config.clone())
                    };
                    let stats = match st.rt.foreign.get(&item.name) {
                        Some(f) if item.rank > 0 => {
                            let ctx = runtime::Ctx {
                                now,
                                hostname: &self.hostname,
                                beh: &st.beh,
                            };
                            runtime::stream_stats(
                                &item.name,
                                &f.config,
                                Some(&f.rt),
                                f.named_by == "user",
                                &ctx,
                            )
                        }
                        _ => eff.and_then(|e| self.stats_of(&st, &item.name, &e, now)),
                    };
                    if let Some(s) = stats {
                        item.value["stats"] = s;
                    }
                }
                query::project(&item.value, &q.select)
            })
            .collect();
        let mut out = json!({
            "streams": streams,
            "estimated_count": page.total,
            "server_id": self.server_id,
            "timing": {"total_us": started.elapsed().as_micros() as u64},
        });
        if let Some(n) = page.next {
            out["next"] = json!(n);
        }
        if let Some(p) = page.prev {
            out["prev"] = json!(p);
        }
        Ok(out)
    }

    // ---- hooks ------------------------------------------------------------------------

    /// A human edits a stream on the node (merge patch; creates it when absent).
    pub fn drift_stream(&self, name: &str, patch: &Value) -> Result<(), ApiError> {
        let now = self.now();
        let mut st = self.lock();
        let cleaned = clean(&Ty::Obj(schema::STREAM), patch, "").map_err(ApiError::invalid)?;
        self.write_stream(&mut st, name, &cleaned, false, now)
    }

    /// A human deletes a stream on the node. Returns whether it existed.
    pub fn drift_delete_stream(&self, name: &str) -> bool {
        let mut st = self.lock();
        let existed = st.disk.remove(name).is_some();
        if existed {
            st.rt.streams.remove(name);
            Node::bump(&mut st);
        }
        existed
    }

    /// A stream that exists only at run time: `named_by` `user` (published) or `remote`.
    pub fn add_foreign(&self, name: &str, named_by: &str, config: &Value) -> Result<(), ApiError> {
        let now = self.now();
        let mut st = self.lock();
        if st.disk.stream(name).is_some() {
            return Err(ApiError::new(
                409,
                "conflict",
                format!("stream {name} is configured"),
            ));
        }
        let mut cfg = clean(&Ty::Obj(schema::STREAM), config, "")
            .map_err(ApiError::invalid)
            .map(|c| strip_nulls(&c))?;
        if cfg.get("inputs").is_none() && named_by == "user" {
            cfg["inputs"] = json!([{"url": "publish://"}]);
        }
        st.rt.foreign.insert(
            name.to_string(),
            Foreign {
                named_by: named_by.to_string(),
                config: cfg,
                rt: StreamRt::open(now),
            },
        );
        Ok(())
    }

    /// Adds (or with a negative number removes) viewers; starts an on-demand stream.
    pub fn play(&self, name: &str, clients: i64) -> Result<(), ApiError> {
        let now = self.now();
        let mut st = self.lock();
        let rt = if st.disk.stream(name).is_some() {
            let eff = self.effective_config(&st, name).unwrap_or_default();
            if eff.get("disabled").and_then(Value::as_bool) == Some(true) {
                return Err(ApiError::new(
                    403,
                    "disabled",
                    format!("stream {name} is disabled"),
                ));
            }
            let on_demand = !runtime::runs_by_itself(&eff);
            let expired = st
                .rt
                .streams
                .get(name)
                .is_none_or(|rt| on_demand && runtime::on_demand_expired(&eff, rt, now));
            if expired {
                if !on_demand || st.rt.broken.is_some() {
                    return Err(ApiError::new(
                        404,
                        "not_running",
                        format!("stream {name} is not running"),
                    ));
                }
                st.rt.streams.insert(name.to_string(), StreamRt::open(now));
            }
            st.rt.streams.get_mut(name).expect("present")
        } else if let Some(f) = st.rt.foreign.get_mut(name) {
            &mut f.rt
        } else {
            return Err(ApiError::not_found(format!("stream {name}")));
        };
        rt.clients = (rt.clients + clients).max(0);
        if rt.clients == 0 {
            rt.last_left = Some(now);
        }
        Ok(())
    }

    /// The input of a running stream goes silent (or comes back).
    pub fn silence(&self, name: &str, silent: bool) -> Result<(), ApiError> {
        let now = self.now();
        let mut st = self.lock();
        let rt = match st.rt.streams.get_mut(name) {
            Some(rt) => rt,
            None => {
                &mut st
                    .rt
                    .foreign
                    .get_mut(name)
                    .ok_or_else(|| ApiError::not_found(format!("running stream {name}")))?
                    .rt
            }
        };
        rt.silent_since = silent.then_some(now);
        Ok(())
    }
}
