//! `--apply`: a pre-flight against the target namespace, a server-side dry run of every
//! object, and only when both pass, the server-side apply (field manager
//! [`IMPORT_MANAGER`]), kind by kind in reference order. Nothing is written when any check
//! fails; applying the same plan again changes nothing.

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::plan::{Kind, Object, Plan};
use super::source::Progress;
use crate::domain::ids::Identified;
use crate::resources::common::IMPORT_MANAGER;
use crate::resources::{Organization, Preset, Stream, Streamer, User};

/// Requests in flight while applying one kind.
const PARALLEL: usize = 16;

fn spec_str<'a>(o: &'a Object, member: &str) -> Option<&'a str> {
    o.manifest["spec"][member].as_str()
}

/// What in the target stands in the way: a pinned id or login another object holds, or an
/// object name that holds another Watcher name. Checked in `ns`, the namespace the import
/// writes to (the installation's ids and logins live there).
pub async fn preflight(client: &Client, ns: &str, plan: &Plan) -> Result<Vec<String>, String> {
    async fn list<K>(client: &Client, ns: &str) -> Result<Vec<K>, String>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        Api::<K>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .map_err(|e| format!("listing {} in {ns}: {e}", K::kind(&())))
    }
    fn ids<K: Identified>(plan: &Plan, kind: Kind, have: &[K], label: &str, out: &mut Vec<String>) {
        for o in plan.objects.iter().filter(|o| o.kind == kind) {
            let Some(id) = o.manifest["spec"]["id"].as_i64() else {
                continue;
            };
            for h in have {
                if h.watcher_id() == Some(id) && h.name_any() != o.name {
                    out.push(format!(
                        "{label} id {id} ({}): already held by {} in the target",
                        o.name,
                        h.name_any()
                    ));
                }
            }
        }
    }
    let mut out = Vec::new();
    let presets: Vec<Preset> = list(client, ns).await?;
    ids(plan, Kind::Preset, &presets, "preset", &mut out);
    let orgs: Vec<Organization> = list(client, ns).await?;
    ids(plan, Kind::Organization, &orgs, "organization", &mut out);
    let users: Vec<User> = list(client, ns).await?;
    ids(plan, Kind::User, &users, "user", &mut out);
    for o in plan.objects.iter().filter(|o| o.kind == Kind::User) {
        let login = spec_str(o, "name").unwrap_or_default();
        for u in users.iter().filter(|u| u.spec.name == login) {
            if u.name_any() != o.name {
                out.push(format!(
                    "login {login:?} ({}): already held by {} in the target",
                    o.name,
                    u.name_any()
                ));
            }
        }
    }
    let streams: Vec<Stream> = list(client, ns).await?;
    for o in plan.objects.iter().filter(|o| o.kind == Kind::Stream) {
        let name = spec_str(o, "name").unwrap_or_default();
        for s in &streams {
            let same_object = s.name_any() == o.name;
            if same_object != (s.watcher_name() == name) {
                out.push(format!(
                    "stream {name:?} ({}): the target's {} holds stream {:?}",
                    o.name,
                    s.name_any(),
                    s.watcher_name()
                ));
            }
        }
    }
    let streamers: Vec<Streamer> = list(client, ns).await?;
    for o in plan.objects.iter().filter(|o| o.kind == Kind::Streamer) {
        let host = spec_str(o, "hostname").unwrap_or_default();
        for s in &streamers {
            if (s.name_any() == o.name) != (s.spec.hostname == host) {
                out.push(format!(
                    "streamer {host:?} ({}): the target's {} holds streamer {:?}",
                    o.name,
                    s.name_any(),
                    s.spec.hostname
                ));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

async fn patch_one(client: &Client, ns: &str, o: &Object, dry_run: bool) -> Result<(), String> {
    let mut pp = PatchParams::apply(IMPORT_MANAGER).force();
    if dry_run {
        pp = pp.dry_run();
    }
    async fn go<K>(api: Api<K>, name: &str, pp: &PatchParams, m: &Value) -> Result<(), kube::Error>
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    {
        api.patch(name, pp, &Patch::Apply(m)).await.map(|_| ())
    }
    let c = client.clone();
    let m = &o.manifest;
    let result = match o.kind {
        Kind::Secret => go(Api::<Secret>::namespaced(c, ns), &o.name, &pp, m).await,
        Kind::Preset => go(Api::<Preset>::namespaced(c, ns), &o.name, &pp, m).await,
        Kind::Organization => go(Api::<Organization>::namespaced(c, ns), &o.name, &pp, m).await,
        Kind::User => go(Api::<User>::namespaced(c, ns), &o.name, &pp, m).await,
        Kind::Streamer => go(Api::<Streamer>::namespaced(c, ns), &o.name, &pp, m).await,
        Kind::Stream => go(Api::<Stream>::namespaced(c, ns), &o.name, &pp, m).await,
        Kind::Settings => go(Api::<ConfigMap>::namespaced(c, ns), &o.name, &pp, m).await,
    };
    result.map_err(|e| {
        // A Secret's refusal could quote its value: name the object only.
        let why = match (&e, o.kind) {
            (_, Kind::Secret) => "refused by the API server".to_string(),
            (kube::Error::Api(s), _) => s.message.clone(),
            _ => e.to_string(),
        };
        format!("{} {}: {why}", o.kind.as_str(), o.name)
    })
}

async fn patch_all(client: &Client, ns: &str, objects: &[&Object], dry_run: bool) -> Vec<String> {
    let mut failures = Vec::new();
    let mut progress = Progress::new();
    let what = if dry_run { "dry run" } else { "applied" };
    let mut done = 0;
    for kind in Kind::ALL {
        let of_kind: Vec<&&Object> = objects.iter().filter(|o| o.kind == kind).collect();
        let mut results = futures::stream::iter(of_kind)
            .map(|o| patch_one(client, ns, o, dry_run))
            .buffer_unordered(PARALLEL);
        while let Some(r) = results.next().await {
            done += 1;
            progress.report(what, done, Some(objects.len() as u64));
            if let Err(e) = r {
                failures.push(e);
            }
        }
        // Later kinds reference earlier ones: stop at the first kind that failed.
        if !dry_run && !failures.is_empty() {
            break;
        }
    }
    progress.done(what, done);
    failures.sort();
    failures
}

/// Why an apply stopped.
#[derive(Debug)]
pub enum Refused {
    /// Something in the target holds an imported id, login or name (nothing applied).
    Collisions(Vec<String>),
    /// The dry run refused these objects (nothing applied).
    DryRun(Vec<String>),
    /// The apply itself failed part-way (kinds before the failing one are applied).
    Apply(Vec<String>),
    /// The target could not be read.
    Target(String),
}

/// Pre-flight, dry run, apply. `secrets`: apply the Secrets too (not for templates).
pub async fn apply(client: &Client, ns: &str, plan: &Plan, secrets: bool) -> Result<(), Refused> {
    let collisions = preflight(client, ns, plan).await.map_err(Refused::Target)?;
    if !collisions.is_empty() {
        return Err(Refused::Collisions(collisions));
    }
    let objects: Vec<&Object> = plan
        .objects
        .iter()
        .filter(|o| secrets || o.kind != Kind::Secret)
        .collect();
    let failed = patch_all(client, ns, &objects, true).await;
    if !failed.is_empty() {
        return Err(Refused::DryRun(failed));
    }
    let failed = patch_all(client, ns, &objects, false).await;
    if !failed.is_empty() {
        return Err(Refused::Apply(failed));
    }
    Ok(())
}
