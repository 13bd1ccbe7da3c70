//! What a source's objects become: resources (with Watcher ids pinned and Watcher names kept
//! in the spec), the Secrets their credentials move to, and a report per object of what did
//! not map. Pure: the same snapshot always gives the same plan, byte for byte once written.
//!
//! The conversions are the facade's own (a save body and an import read the same wire
//! members the same way): `presets::spec_from`, `users::spec_from_view`,
//! `streamers::{take_node_credentials, spec_from}`, the stream's credential extraction.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::api::body::decode;
use crate::api::error::ApiError;
use crate::api::routes::{presets, streamers, streams, users};
use crate::domain::accounts::PASSWORD_RESET_ANNOTATION;
use crate::domain::adoption;
use crate::domain::credentials;
use crate::domain::names::{free_object_name, object_name};
use crate::domain::validate;
use crate::resources::common::{GROUP, VERSION};
use crate::resources::organization::OrganizationSpec;
use crate::resources::stream::{CameraCredentials, PushCredentials};
use crate::resources::streamer::StreamerCredentials;
use crate::resources::user::Membership;
use crate::resources::wire::StreamConfigSpec;
use crate::resources::{PresetSpec, StreamSpec};

/// Everything read from the source, as its list operations answered.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// `GET /streamers`.
    pub streamers: Vec<Value>,
    /// `GET /streams`.
    pub streams: Vec<Value>,
    /// `GET /presets`.
    pub presets: Vec<Value>,
    /// `GET /users`.
    pub users: Vec<Value>,
    /// Per organization id, the preset ids `GET /presets?organization_id=` answers.
    pub organization_presets: BTreeMap<i64, Vec<i64>>,
    /// `GET /domain_config`, when the source has one.
    pub domain_config: Option<Value>,
}

/// The kinds an import writes, in the order they are applied (what is referenced first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Credentials (written under `secrets/`).
    Secret,
    /// `Preset`.
    Preset,
    /// `Organization`.
    Organization,
    /// `User`.
    User,
    /// `Streamer`.
    Streamer,
    /// `Stream`.
    Stream,
    /// The domain settings ConfigMap (system namespace; see [`super::settings`]).
    Settings,
}

impl Kind {
    /// The Kubernetes kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Secret => "Secret",
            Kind::Preset => "Preset",
            Kind::Organization => "Organization",
            Kind::User => "User",
            Kind::Streamer => "Streamer",
            Kind::Stream => "Stream",
            Kind::Settings => "Settings",
        }
    }

    /// Every kind the apply writes, in apply order (the settings belong to the system
    /// namespace: written to `settings/`, never applied with the objects).
    pub const ALL: [Kind; 6] = [
        Kind::Secret,
        Kind::Preset,
        Kind::Organization,
        Kind::User,
        Kind::Streamer,
        Kind::Stream,
    ];
}

/// One object to write or apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    /// Its kind.
    pub kind: Kind,
    /// Object name.
    pub name: String,
    /// File, relative to the output directory.
    pub file: String,
    /// The whole manifest (no namespace: the kustomization or `--namespace` gives it).
    pub manifest: Value,
    /// The source object it comes from (`stream Front_Door`), as findings name it.
    pub source: String,
}

/// How bad a finding is: errors fail the import (nothing is applied), warnings do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Imported, with something left out or changed.
    Warning,
    /// Not imported (or imported without a reference it needs).
    Error,
}

/// A finding about one source object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// `stream`, `preset`, … and the Watcher name or id.
    pub object: String,
    /// JSON pointer of the member in the source object, when one member is concerned.
    pub path: Option<String>,
    /// What happened.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        match &self.path {
            Some(p) => write!(f, "{level}: {} {p}: {}", self.object, self.message),
            None => write!(f, "{level}: {}: {}", self.object, self.message),
        }
    }
}

/// What to import.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Only this organization (its id, or its title), its streams, members and presets.
    pub organization: Option<String>,
}

/// The outcome of planning.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Resources and Secrets, in apply order (kind, then object name).
    pub objects: Vec<Object>,
    /// Findings, sorted.
    pub findings: Vec<Finding>,
    /// Logins of the Users that must get a new password before they can log in.
    pub reset_users: Vec<String>,
    /// The domain settings and their Secret (see [`super::settings`]).
    pub settings: Vec<Object>,
}

impl Plan {
    /// Whether any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// Objects per kind.
    pub fn counts(&self) -> BTreeMap<Kind, usize> {
        let mut counts = BTreeMap::new();
        for o in &self.objects {
            *counts.entry(o.kind).or_insert(0) += 1;
        }
        counts
    }
}

/// Runtime members a source renders that are not configuration.
fn runtime(segment: &str) -> bool {
    segment == "stats"
}

/// Members of `source` that `kept` does not have, as JSON pointers (into arrays by index;
/// values that changed form are not reported, members that vanished are).
pub fn lost_members(source: &Value, kept: &Value) -> Vec<String> {
    fn walk(source: &Value, kept: &Value, at: &str, out: &mut Vec<String>) {
        match (source, kept) {
            (Value::Object(s), Value::Object(k)) => {
                for (key, v) in s {
                    if v.is_null() || runtime(key) {
                        continue;
                    }
                    let path = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                    match k.get(key) {
                        Some(kv) => walk(v, kv, &path, out),
                        None if empty(v) => {}
                        None => out.push(path),
                    }
                }
            }
            (Value::Array(s), Value::Array(k)) => {
                for (i, v) in s.iter().enumerate() {
                    if let Some(kv) = k.get(i) {
                        walk(v, kv, &format!("{at}/{i}"), out);
                    }
                }
            }
            _ => {}
        }
    }
    fn empty(v: &Value) -> bool {
        match v {
            Value::Object(m) => m.values().all(empty),
            Value::Array(a) => a.is_empty(),
            Value::Null => true,
            _ => false,
        }
    }
    let mut out = Vec::new();
    walk(source, kept, "", &mut out);
    out
}

/// Builds the plan.
pub fn plan(snapshot: &Snapshot, options: &Options) -> Plan {
    let mut p = Planner::default();
    p.plan(snapshot, options);
    let mut plan = p.finish();
    if let Some(domain) = &snapshot.domain_config {
        let (objects, findings) = super::settings::plan(domain);
        plan.settings = objects;
        plan.findings.extend(findings);
        plan.findings.sort();
    }
    plan
}

#[derive(Default)]
struct Planner {
    objects: Vec<Object>,
    findings: Vec<Finding>,
    reset_users: Vec<String>,
    /// Object names taken per kind (Secrets included).
    taken: BTreeMap<Kind, BTreeSet<String>>,
}

fn manifest(kind: Kind, name: &str, annotations: Option<Value>, spec: Value) -> Value {
    let mut metadata = json!({ "name": name });
    if let Some(a) = annotations {
        metadata["annotations"] = a;
    }
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": kind.as_str(),
        "metadata": metadata,
        "spec": spec,
    })
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn message(e: ApiError) -> (Option<String>, String) {
    let pointer = e
        .object
        .source
        .as_ref()
        .and_then(|s| s.pointer.clone())
        .filter(|p| !p.is_empty());
    (pointer, e.object.title.clone())
}

fn id_of(v: &Value) -> Option<i64> {
    v.get("id").and_then(Value::as_i64).filter(|i| *i > 0)
}

impl Planner {
    fn finding(&mut self, severity: Severity, object: String, path: Option<String>, msg: String) {
        self.findings.push(Finding {
            severity,
            object,
            path,
            message: msg,
        });
    }

    fn unmapped(&mut self, object: &str, source: &Value, kept: &Value) {
        for path in lost_members(source, kept) {
            self.finding(
                Severity::Warning,
                object.to_string(),
                Some(path),
                "not imported: Panoptes has no such member (unknown or not implemented)".into(),
            );
        }
    }

    fn take(&mut self, kind: Kind, name: &str) -> bool {
        self.taken.entry(kind).or_default().insert(name.to_string())
    }

    fn push(&mut self, source: &str, kind: Kind, name: String, file: String, manifest: Value) {
        self.objects.push(Object {
            kind,
            name,
            file,
            manifest,
            source: source.to_string(),
        });
    }

    /// A Secret holding `data` (keys → values), with the origins the values are for.
    fn secret(
        &mut self,
        owner: &str,
        name: &str,
        data: BTreeMap<String, String>,
        destinations: &BTreeMap<String, String>,
    ) {
        if !self.take(Kind::Secret, name) {
            self.finding(
                Severity::Error,
                owner.to_string(),
                None,
                format!("its credentials Secret {name} would have the name of another's"),
            );
            return;
        }
        let mut annotations = Map::new();
        annotations.insert(
            "panoptes.dev/imported-for".into(),
            Value::String(owner.to_string()),
        );
        if !destinations.is_empty() {
            annotations.insert(
                credentials::DESTINATIONS_ANNOTATION.into(),
                Value::String(credentials::destinations_json(destinations)),
            );
        }
        let manifest = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": name, "annotations": annotations },
            "type": "Opaque",
            "stringData": data,
        });
        self.push(
            owner,
            Kind::Secret,
            name.to_string(),
            format!("secrets/{name}.yaml"),
            manifest,
        );
    }

    fn plan(&mut self, s: &Snapshot, options: &Options) {
        // Organizations are not listed by the admin API: they are found where they are used.
        let mut orgs: BTreeMap<i64, (String, Option<i64>)> = BTreeMap::new();
        for u in &s.users {
            for m in u["organizations"].as_array().into_iter().flatten() {
                if let Some(id) = id_of(m) {
                    let title = m["title"].as_str().unwrap_or_default().to_string();
                    let owner = m.get("owner").and_then(id_of);
                    let e = orgs.entry(id).or_insert((title, None));
                    e.1 = e.1.or(owner);
                }
            }
        }
        let stream_org = |st: &Value| {
            st.get("organization")
                .and_then(id_of)
                .or_else(|| st["organization_id"].as_i64().filter(|i| *i > 0))
        };
        let mut untitled = BTreeSet::new();
        for st in &s.streams {
            if let Some(id) = stream_org(st) {
                match st["organization"]["title"].as_str() {
                    Some(title) => {
                        orgs.entry(id).or_insert((title.to_string(), None));
                    }
                    None => {
                        untitled.insert(id);
                    }
                }
            }
        }
        for id in untitled {
            if let std::collections::btree_map::Entry::Vacant(e) = orgs.entry(id) {
                // Only the deprecated `organization_id` names it: the title is unknown.
                e.insert((format!("Organization {id}"), None));
                self.finding(
                    Severity::Warning,
                    format!("organization {id}"),
                    None,
                    format!("the source names it by id only: titled \"Organization {id}\", rename it in organizations/"),
                );
            }
        }
        let only: Option<i64> = options.organization.as_deref().map(|want| {
            want.parse::<i64>().ok().unwrap_or_else(|| {
                orgs.iter()
                    .find(|(_, (t, _))| t == want)
                    .map_or(-1, |(id, _)| *id)
            })
        });
        if let (Some(id), Some(raw)) = (only, &options.organization)
            && !orgs.contains_key(&id)
        {
            self.finding(
                Severity::Error,
                format!("organization {raw}"),
                None,
                "no such organization in the source".into(),
            );
            return;
        }
        let in_scope = |org: Option<i64>| only.is_none() || org == only;

        // Presets: all of them, or those the organization offers or its streams use.
        let mut wanted_presets: Option<BTreeSet<i64>> = only.map(|id| {
            let mut set: BTreeSet<i64> = s
                .organization_presets
                .get(&id)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect();
            for st in s.streams.iter().filter(|st| stream_org(st) == Some(id)) {
                set.extend(
                    st.get("preset")
                        .and_then(id_of)
                        .or_else(|| st["preset_id"].as_i64()),
                );
            }
            set
        });
        let mut presets: BTreeMap<i64, String> = BTreeMap::new();
        let mut default_presets = BTreeSet::new();
        for v in &s.presets {
            let label = format!("preset {}", v["id"]);
            let Some(id) = id_of(v) else {
                self.finding(Severity::Error, label, Some("/id".into()), "no id".into());
                continue;
            };
            if v["is_default"].as_bool() == Some(true) {
                default_presets.insert(id);
            }
            if let Some(w) = wanted_presets.as_mut()
                && !w.contains(&id)
                && v["is_default"].as_bool() != Some(true)
            {
                continue;
            }
            let object = format!("preset-{id}");
            if !self.take(Kind::Preset, &object) {
                self.finding(Severity::Error, label, None, "duplicate preset id".into());
                continue;
            }
            let mut spec = match presets::spec_from(PresetSpec::default(), v.clone()) {
                Ok(spec) => spec,
                Err(e) => {
                    let (path, m) = message(e);
                    self.finding(Severity::Error, label, path, m);
                    continue;
                }
            };
            spec.id = Some(id);
            if v["deleted_at"].as_i64().is_some() {
                self.finding(
                    Severity::Warning,
                    label.clone(),
                    Some("/deleted_at".into()),
                    "marked deleted in the source; imported as a live preset".into(),
                );
            }
            let kept = json!({
                "id": id, "title": spec.title, "is_adjustable": spec.is_adjustable,
                "is_default": spec.is_default, "dvr": spec.dvr, "vision": spec.vision,
                "layout_rules": spec.layout_rules,
                "deleted_at": null, "streams_count": null, "organizations_count": null,
                "last_change": null,
            });
            self.unmapped(&label, v, &kept);
            presets.insert(id, object.clone());
            self.push(
                &label,
                Kind::Preset,
                object.clone(),
                format!("presets/{object}.yaml"),
                manifest(Kind::Preset, &object, None, to_value(&spec)),
            );
        }

        // Users (before organizations: owners are named by their object).
        let mut users_by_id: BTreeMap<i64, String> = BTreeMap::new();
        let mut logins = BTreeSet::new();
        let mut user_list: Vec<&Value> = s.users.iter().collect();
        user_list.sort_by_key(|u| (id_of(u), u["name"].as_str().map(str::to_string)));
        for v in user_list {
            let login = v["name"].as_str().unwrap_or_default().to_string();
            let label = format!("user {login}");
            let memberships: Vec<&Value> = v["organizations"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| in_scope(id_of(m)))
                .collect();
            if only.is_some() && memberships.is_empty() {
                continue;
            }
            let Some(id) = id_of(v) else {
                self.finding(Severity::Error, label, Some("/id".into()), "no id".into());
                continue;
            };
            if !logins.insert(login.clone()) || users_by_id.contains_key(&id) {
                self.finding(
                    Severity::Error,
                    label,
                    None,
                    format!(
                        "login or id {id} appears twice in the source: not merged, not imported"
                    ),
                );
                continue;
            }
            let mut spec = match users::spec_from_view(v.clone()) {
                Ok(spec) if !spec.name.is_empty() => spec,
                Ok(_) => {
                    self.finding(
                        Severity::Error,
                        label,
                        Some("/name".into()),
                        "no login".into(),
                    );
                    continue;
                }
                Err(e) => {
                    let (path, m) = message(e);
                    self.finding(Severity::Error, label, path, m);
                    continue;
                }
            };
            spec.id = Some(id);
            let taken = self.taken.entry(Kind::User).or_default();
            let object = free_object_name("user-", &login, |o| taken.contains(o));
            self.take(Kind::User, &object);
            let mut ms: Vec<Membership> = Vec::new();
            for m in &memberships {
                if let Some(oid) = id_of(m) {
                    ms.push(Membership {
                        organization_ref: format!("org-{oid}"),
                        permissions: serde_json::from_value(m["permissions"].clone()).ok(),
                    });
                }
            }
            ms.sort_by(|a, b| a.organization_ref.cmp(&b.organization_ref));
            spec.organizations = (!ms.is_empty()).then_some(ms);
            let kept = json!({
                "id": id, "name": spec.name, "fullname": spec.fullname, "email": spec.email,
                "phone": spec.phone, "locale": spec.locale, "note": spec.note,
                "max_sessions": spec.max_sessions, "disabled": spec.disabled,
                "readonly": spec.readonly, "access_level": spec.access_level,
                "organizations": v["organizations"], "created_at": null,
            });
            self.unmapped(&label, v, &kept);
            users_by_id.insert(id, object.clone());
            self.reset_users.push(login);
            self.push(
                &label,
                Kind::User,
                object.clone(),
                format!("users/{object}.yaml"),
                manifest(
                    Kind::User,
                    &object,
                    Some(json!({ PASSWORD_RESET_ANNOTATION: "true" })),
                    to_value(&spec),
                ),
            );
        }

        // Organizations.
        for (id, (title, owner)) in &orgs {
            if !in_scope(Some(*id)) {
                continue;
            }
            let object = format!("org-{id}");
            self.take(Kind::Organization, &object);
            let mut refs: Vec<String> = Vec::new();
            for pid in s.organization_presets.get(id).into_iter().flatten() {
                // Default presets are offered everywhere without a reference.
                if default_presets.contains(pid) {
                    continue;
                }
                match presets.get(pid) {
                    Some(o) if !refs.contains(o) => refs.push(o.clone()),
                    Some(_) => {}
                    None => self.finding(
                        Severity::Error,
                        format!("organization {id}"),
                        None,
                        format!("offers preset {pid}, which the source does not list"),
                    ),
                }
            }
            refs.sort();
            let owner_ref = owner.and_then(|o| users_by_id.get(&o).cloned());
            if owner.is_some() && owner_ref.is_none() {
                self.finding(
                    Severity::Warning,
                    format!("organization {id}"),
                    Some("/owner".into()),
                    format!("owner user {} is not imported", owner.unwrap_or(0)),
                );
            }
            let spec = OrganizationSpec {
                id: Some(*id),
                title: title.clone(),
                owner_ref,
                preset_refs: (!refs.is_empty()).then_some(refs),
                default_preset_ref: None,
            };
            self.push(
                &format!("organization {id}"),
                Kind::Organization,
                object.clone(),
                format!("organizations/{object}.yaml"),
                manifest(Kind::Organization, &object, None, to_value(&spec)),
            );
        }

        // Streamers.
        let mut hosts: Vec<&Value> = s.streamers.iter().collect();
        hosts.sort_by(|a, b| a["hostname"].as_str().cmp(&b["hostname"].as_str()));
        for v in hosts {
            let hostname = v["hostname"].as_str().unwrap_or_default().to_string();
            let label = format!("streamer {hostname}");
            if hostname.is_empty() || hostname.len() > 253 {
                self.finding(
                    Severity::Error,
                    label,
                    Some("/hostname".into()),
                    "hostname must be 1-253 characters".into(),
                );
                continue;
            }
            let plain = object_name("", &hostname);
            if self
                .taken
                .get(&Kind::Streamer)
                .is_some_and(|t| t.contains(&plain))
            {
                self.finding(
                    Severity::Error,
                    label,
                    None,
                    "appears twice in the source: not merged, not imported".into(),
                );
                continue;
            }
            let mut body = v.as_object().cloned().unwrap_or_default();
            for ro in ["hostname", "stats", "dvrs"] {
                body.remove(ro);
            }
            let creds = streamers::take_node_credentials(&mut body);
            let spec = creds.and_then(|c| {
                streamers::spec_from(Default::default(), &hostname, body.clone()).map(|s| (c, s))
            });
            let ((cluster_key, admin), mut spec) = match spec {
                Ok(x) => x,
                Err(e) => {
                    let (path, m) = message(e);
                    self.finding(Severity::Error, label, path, m);
                    continue;
                }
            };
            self.take(Kind::Streamer, &plain);
            let mut kept = json!({
                "hostname": hostname, "role": spec.role, "channel_limit": spec.channel_limit,
                "total_bandwidth": spec.total_bandwidth, "labels": v["labels"],
                "api_url": spec.api_url, "private_payload_url": spec.private_payload_url,
                "public_payload_url": spec.public_payload_url, "zones": spec.zones,
                "config": spec.config, "dvrs": v["dvrs"], "cluster_key": null,
            });
            // The node credentials moved to a Secret: they are imported, not lost.
            for k in ["cluster_key", "edit_auth", "view_auth"] {
                if let Some(c) = v["config"].get(k) {
                    if kept["config"].is_null() {
                        kept["config"] = json!({});
                    }
                    kept["config"][k] = c.clone();
                }
            }
            if v["config"].get("view_auth").is_some() {
                self.finding(
                    Severity::Warning,
                    label.clone(),
                    Some("/config/view_auth".into()),
                    "read-only node credentials are not kept (Panoptes uses edit_auth or the cluster key)".into(),
                );
            }
            self.unmapped(&label, v, &kept);
            let mut data = BTreeMap::new();
            if let Some(k) = cluster_key {
                data.insert("clusterKey".to_string(), k);
            }
            if let Some((l, p)) = admin {
                data.insert("login".to_string(), l);
                data.insert("password".to_string(), p);
            }
            if !data.is_empty() {
                let secret = secret_name(&plain, "node-credentials");
                let origin = credentials::origin(&spec.effective_api_url());
                let destinations = origin
                    .map(|o| data.keys().map(|k| (k.clone(), o.clone())).collect())
                    .unwrap_or_default();
                self.secret(&label, &secret, data, &destinations);
                spec.credentials = Some(StreamerCredentials {
                    secret_name: secret,
                    scheme: None,
                });
                if !spec.effective_api_url().starts_with("https://") {
                    self.finding(
                        Severity::Warning,
                        label.clone(),
                        Some("/api_url".into()),
                        "reached over plain http: Panoptes sends it no credentials until apiUrl is https:// or spec.allowInsecure is set".into(),
                    );
                }
            }
            self.push(
                &label,
                Kind::Streamer,
                plain.clone(),
                format!("streamers/{plain}.yaml"),
                manifest(Kind::Streamer, &plain, None, to_value(&spec)),
            );
        }

        // Streams.
        let mut list: Vec<&Value> = s.streams.iter().collect();
        list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let mut names = BTreeSet::new();
        for v in list {
            let org = stream_org(v);
            if !in_scope(org) {
                continue;
            }
            self.stream(v, org, &presets, &mut names);
        }
    }

    fn stream(
        &mut self,
        v: &Value,
        org: Option<i64>,
        presets: &BTreeMap<i64, String>,
        names: &mut BTreeSet<String>,
    ) {
        let name = v["name"].as_str().unwrap_or_default().to_string();
        let label = format!("stream {name}");
        if !validate::stream_name(&name) {
            self.finding(
                Severity::Error,
                label,
                Some("/name".into()),
                crate::domain::validate::STREAM_NAME_RULE.to_string(),
            );
            return;
        }
        if !names.insert(name.clone()) {
            self.finding(
                Severity::Error,
                label,
                None,
                "appears twice in the source: not merged, not imported".into(),
            );
            return;
        }
        let mut body = v.as_object().cloned().unwrap_or_default();
        for ro in streams::READ_ONLY {
            body.remove(*ro);
        }
        for r in [
            "name",
            "organization",
            "organization_id",
            "preset",
            "preset_id",
        ] {
            body.remove(r);
        }
        let mut config: StreamConfigSpec = match decode(Value::Object(body), "") {
            Ok(c) => c,
            Err(e) => {
                let (path, m) = message(e);
                self.finding(Severity::Error, label, path, m);
                return;
            }
        };
        if let Err(e) = streams::check_text(&config) {
            let (path, m) = message(e);
            self.finding(Severity::Error, label, path, m);
            return;
        }
        let mut kept = to_value(&config);
        for k in [
            "name",
            "organization",
            "organization_id",
            "preset",
            "preset_id",
        ] {
            kept[k] = v[k].clone();
        }
        for ro in streams::READ_ONLY {
            kept[*ro] = v[*ro].clone();
        }
        self.unmapped(&label, v, &kept);
        let camera = streams::extract_credentials(&mut config);
        let pushes = streams::extract_push_credentials(&mut config);
        let taken = self.taken.entry(Kind::Stream).or_default();
        let object = free_object_name("", &name, |o| taken.contains(o));
        self.take(Kind::Stream, &object);
        let preset_id = v
            .get("preset")
            .and_then(id_of)
            .or_else(|| v["preset_id"].as_i64().filter(|i| *i > 0));
        let preset_ref = preset_id.and_then(|p| match presets.get(&p) {
            Some(o) => Some(o.clone()),
            None => {
                self.finding(
                    Severity::Error,
                    label.clone(),
                    Some("/preset".into()),
                    format!("preset {p} is not in the source's preset list"),
                );
                None
            }
        });
        let mut spec = StreamSpec {
            name: Some(name.clone()),
            organization_ref: org.map(|o| format!("org-{o}")),
            preset_ref,
            config,
            ..Default::default()
        };
        if let Some(((user, password), origin)) = camera {
            let secret = secret_name(&object, "camera-credentials");
            let destinations = origin
                .map(|o| BTreeMap::from([("username".into(), o.clone()), ("password".into(), o)]))
                .unwrap_or_default();
            let data = BTreeMap::from([("username".into(), user), ("password".into(), password)]);
            self.secret(&label, &secret, data, &destinations);
            spec.credentials = Some(Box::new(CameraCredentials {
                secret_name: secret,
                username_key: None,
                password_key: None,
            }));
        }
        if !pushes.is_empty() {
            let secret = secret_name(&object, "push-credentials");
            let mut data = BTreeMap::new();
            let mut destinations = BTreeMap::new();
            for (url, (user, password)) in pushes {
                let (uk, pk) = (
                    credentials::push_username_key(&url),
                    credentials::push_password_key(&url),
                );
                if let Some(o) = credentials::origin(&url) {
                    destinations.insert(uk.clone(), o.clone());
                    destinations.insert(pk.clone(), o);
                }
                data.insert(uk, user);
                data.insert(pk, password);
            }
            self.secret(&label, &secret, data, &destinations);
            spec.push_credentials = Some(PushCredentials {
                secret_name: secret,
            });
        }
        let dir = org.map_or_else(|| "no-organization".to_string(), |o| format!("org-{o}"));
        self.push(
            &label,
            Kind::Stream,
            object.clone(),
            format!("streams/{dir}/{object}.yaml"),
            // The nodes may run this stream already (a Watcher put it there): let the
            // operator adopt that copy without restarting it.
            manifest(
                Kind::Stream,
                &object,
                Some(json!({ adoption::ADOPT_ANNOTATION: "true" })),
                to_value(&spec),
            ),
        );
    }

    /// The safety net: a member named like a credential (`password`, `cluster_key`,
    /// `auth_token`, an `Authorization` header, …) or a `user:password@` in a URL, left in any
    /// spec (a node config's peers and sources, an input's headers, which have no Secret
    /// reference), is cut out and reported, so no credential reaches the main files whatever
    /// member it hides in.
    fn strip_stray_credentials(&mut self) {
        fn walk(v: &mut Value, at: &str, out: &mut Vec<(String, &'static str)>) {
            match v {
                Value::String(s) if s.contains('@') => {
                    if let Some((_, rest)) = credentials::split_userinfo(s) {
                        *s = rest;
                        out.push((at.to_string(), "a password in this URL was removed"));
                    }
                }
                Value::Object(m) => {
                    let secret: Vec<String> = m.keys().filter(|k| sensitive(k)).cloned().collect();
                    for k in secret {
                        m.remove(&k);
                        out.push((format!("{at}/{k}"), "a credential was removed"));
                    }
                    for (k, v) in m.iter_mut() {
                        walk(v, &format!("{at}/{k}"), out);
                    }
                }
                Value::Array(a) => {
                    for (i, v) in a.iter_mut().enumerate() {
                        walk(v, &format!("{at}/{i}"), out);
                    }
                }
                _ => {}
            }
        }
        let mut found = Vec::new();
        for o in self.objects.iter_mut().filter(|o| o.kind != Kind::Secret) {
            let mut paths = Vec::new();
            walk(&mut o.manifest["spec"], "", &mut paths);
            found.extend(
                paths
                    .into_iter()
                    .map(|(p, what)| (o.source.clone(), p, what)),
            );
        }
        for (source, path, what) in found {
            self.finding(
                Severity::Warning,
                source,
                Some(path),
                format!(
                    "{what} (Panoptes has no Secret reference for it here): set it again on the node or camera"
                ),
            );
        }
    }

    fn finish(mut self) -> Plan {
        self.strip_stray_credentials();
        self.objects
            .sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        self.findings.sort();
        self.findings.dedup();
        self.reset_users.sort();
        Plan {
            objects: self.objects,
            findings: self.findings,
            reset_users: self.reset_users,
            settings: Vec::new(),
        }
    }
}

/// Whether a member name says its value is a credential (compared in lower case).
pub(super) fn sensitive(member: &str) -> bool {
    const EXACT: [&str; 9] = [
        "password",
        "passwd",
        "secret",
        "token",
        "authorization",
        "apikey",
        "api_key",
        "cluster_key",
        "auth_token",
    ];
    const SUFFIXES: [&str; 5] = ["_password", "_secret", "_token", "_tokens", "_key"];
    let m = member.to_ascii_lowercase();
    EXACT.contains(&m.as_str()) || SUFFIXES.iter().any(|s| m.ends_with(s))
}

/// The name of the Secret holding `what` for `object` (deterministic, a valid name).
fn secret_name(object: &str, what: &str) -> String {
    credentials::generate_name(object, what)
        .trim_end_matches('-')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            streamers: vec![json!({
                "hostname": "Node_1.example", "api_url": "http://node1",
                "config": {"cluster_key": "ck-secret", "edit_auth": {"login": "a", "password": "node-pw"}},
                "stats": {"cpu_usage": 3}, "fancy": 1,
            })],
            streams: vec![
                json!({"name": "Cam/01", "inputs": [{"url": "rtsp://u:cam-pw@cam1/x", "stats": {}}],
                       "organization": {"id": 7, "title": "Seven"}, "preset": {"id": 3, "title": "p"},
                       "stats": {"alive": true}, "mystery": {"deep": 1}}),
                json!({"name": "cam-02", "inputs": [{"url": "fake://x", "oddity": true}], "preset_id": 9}),
            ],
            presets: vec![json!({"id": 3, "title": "p", "dvr": {"expiration": 3600}})],
            users: vec![json!({"id": 2, "name": "Ops", "access_level": "admin",
                "organizations": [{"id": 7, "title": "Seven", "owner": {"id": 2, "name": "Ops"},
                "permissions": {"can_view_streams": true}}]})],
            organization_presets: BTreeMap::from([(7, vec![3])]),
            domain_config: None,
        }
    }

    #[test]
    fn objects_pin_ids_keep_watcher_names_and_move_credentials() {
        let p = plan(&snapshot(), &Options::default());
        let text = serde_json::to_string(
            &p.objects
                .iter()
                .filter(|o| o.kind != Kind::Secret)
                .map(|o| &o.manifest)
                .collect::<Vec<_>>(),
        )
        .unwrap();
        for secret in ["ck-secret", "node-pw", "cam-pw"] {
            assert!(!text.contains(secret), "{secret} in {text}");
            assert!(
                p.objects
                    .iter()
                    .any(|o| o.kind == Kind::Secret && o.manifest.to_string().contains(secret))
            );
        }
        let stream = p
            .objects
            .iter()
            .find(|o| o.kind == Kind::Stream && o.manifest["spec"]["name"] == "Cam/01")
            .unwrap();
        assert!(stream.name.starts_with("cam-01--"), "{}", stream.name);
        assert_eq!(stream.file, format!("streams/org-7/{}.yaml", stream.name));
        assert_eq!(stream.manifest["spec"]["presetRef"], "preset-3");
        assert_eq!(stream.manifest["spec"]["organizationRef"], "org-7");
        let org = p
            .objects
            .iter()
            .find(|o| o.kind == Kind::Organization)
            .unwrap();
        let user = p.objects.iter().find(|o| o.kind == Kind::User).unwrap();
        assert!(user.name.starts_with("user-ops--"), "{}", user.name);
        assert_eq!(
            org.manifest["spec"],
            json!({"id": 7, "title": "Seven", "ownerRef": user.name, "presetRefs": ["preset-3"]})
        );
        assert_eq!(p.reset_users, vec!["Ops".to_string()]);
    }

    #[test]
    fn unmapped_members_and_bad_references_are_reported_with_their_path() {
        let p = plan(&snapshot(), &Options::default());
        let has = |object: &str, path: &str, severity: Severity| {
            p.findings.iter().any(|f| {
                f.object == object && f.path.as_deref() == Some(path) && f.severity == severity
            })
        };
        assert!(
            has("stream Cam/01", "/mystery", Severity::Warning),
            "{:#?}",
            p.findings
        );
        assert!(has("stream cam-02", "/inputs/0/oddity", Severity::Warning));
        assert!(has("streamer Node_1.example", "/fancy", Severity::Warning));
        assert!(has("stream cam-02", "/preset", Severity::Error));
        assert!(
            !p.findings
                .iter()
                .any(|f| f.path.as_deref().is_some_and(|x| x.contains("stats")))
        );
        assert!(p.has_errors());
    }

    #[test]
    fn duplicates_and_invalid_names_are_reported_never_merged() {
        let mut s = snapshot();
        s.streams.push(s.streams[0].clone());
        s.streams
            .push(json!({"name": "has space", "inputs": [{"url": "fake://x"}]}));
        s.users.push(json!({"id": 2, "name": "other"}));
        let p = plan(&s, &Options::default());
        assert_eq!(
            p.objects.iter().filter(|o| o.kind == Kind::Stream).count(),
            2
        );
        assert!(
            p.findings
                .iter()
                .any(|f| f.object == "stream Cam/01" && f.message.contains("twice"))
        );
    }

    #[test]
    fn the_organization_filter_keeps_its_streams_members_and_presets() {
        let p = plan(
            &snapshot(),
            &Options {
                organization: Some("Seven".into()),
            },
        );
        let streams: Vec<_> = p
            .objects
            .iter()
            .filter(|o| o.kind == Kind::Stream)
            .collect();
        assert_eq!(streams.len(), 1);
        assert_eq!(p.counts().get(&Kind::Preset), Some(&1));
        assert_eq!(p.counts().get(&Kind::User), Some(&1));
    }

    #[test]
    fn the_same_snapshot_gives_the_same_plan_in_any_order() {
        let a = plan(&snapshot(), &Options::default());
        let mut s = snapshot();
        s.streams.reverse();
        let b = plan(&s, &Options::default());
        assert_eq!(a.objects, b.objects);
        assert_eq!(a.findings, b.findings);
    }

    #[test]
    fn credentials_hidden_in_any_member_are_cut_out_and_reported() {
        let mut s = snapshot();
        s.streams[1]["inputs"][0]["headers"] =
            json!({"Authorization": "Basic c2VjcmV0", "X-Ok": "1"});
        s.streamers[0]["config"]["peers"] =
            json!([{"hostname": "p", "cluster_key": "peer-key", "url": "http://a:peer-pw@p"}]);
        s.streamers[0]["config"]["auth_token"] = json!("tok-123");
        let p = plan(&s, &Options::default());
        let main: String = p
            .objects
            .iter()
            .filter(|o| o.kind != Kind::Secret)
            .map(|o| o.manifest.to_string())
            .collect();
        for secret in ["c2VjcmV0", "peer-key", "peer-pw", "tok-123"] {
            assert!(!main.contains(secret), "{secret} in {main}");
        }
        assert!(main.contains("X-Ok"));
        assert!(
            p.findings
                .iter()
                .any(|f| f.path.as_deref() == Some("/inputs/0/headers/Authorization")),
            "{:#?}",
            p.findings
        );
        assert!(
            p.findings
                .iter()
                .any(|f| f.path.as_deref() == Some("/config/peers/0/url"))
        );
        assert!(
            sensitive("Streampoint_Key")
                && !sensitive("session_keys")
                && !sensitive("hls_ext_x_key_iv")
        );
    }

    #[test]
    fn lost_members_walk_objects_and_arrays() {
        let lost = lost_members(
            &json!({"a": 1, "b": {"c": 1, "d": null}, "e": [{"f": 1, "g": 2}], "stats": {"x": 1}, "h~/": 1}),
            &json!({"a": 2, "b": {}, "e": [{"f": 1}]}),
        );
        assert_eq!(lost, vec!["/b/c", "/e/0/g", "/h~0~1"]);
    }
}
