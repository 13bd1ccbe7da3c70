//! `panoptes export`: the import's writer ([`super::output`]) over the local cluster state,
//! for backups and moves between clusters. It reads the resources through the API server (one
//! namespace, or every namespace the context can list) and writes the same kustomize tree an
//! import writes: one file per object, Watcher ids pinned in the specs (an id Panoptes
//! assigned is taken from the status), the Secrets the objects reference under `secrets/`
//! behind the `.gitignore`.
//!
//! Passwords: a User's password Secret (its own, or the one the facade made when the password
//! was changed through the API) is exported and referenced as `passwordSecretRef`; a User that
//! only has a hash (nothing to export) is marked like an imported one
//! ([`PASSWORD_RESET_ANNOTATION`]) and listed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, ObjectMeta};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::plan::{Finding, Kind, Object, Plan, Severity};
use crate::domain::accounts::PASSWORD_RESET_ANNOTATION;
use crate::domain::credentials;
use crate::resources::common::GROUP;
use crate::resources::{Organization, Preset, Stream, Streamer, User};

/// `panoptes export` flags.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ExportArgs {
    /// Write the kustomize-ready tree here (credentials under `secrets/`, git-ignored).
    #[arg(long)]
    pub out: PathBuf,
    /// Export this namespace (the kustomization names it; edit that one line to restore
    /// elsewhere). Without it: every namespace the context can list, each manifest naming
    /// its own and each kind's directory split by namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Write Secret templates with empty values instead of the credentials.
    #[arg(long)]
    pub no_secrets: bool,
}

/// Annotations worth carrying to another installation: Panoptes's own (adoption, password
/// reset); the rest (`kubectl` bookkeeping, other tools') belongs to the source cluster.
fn kept_annotation(key: &str) -> bool {
    key.strip_prefix(GROUP)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// One exported object: its manifest (metadata reduced to what another cluster may take) and
/// its file.
struct Exporter {
    /// Whether manifests carry their namespace (every namespace exported).
    all: bool,
    objects: Vec<Object>,
    findings: Vec<Finding>,
    reset_users: Vec<String>,
    /// Secrets the objects reference, by namespace and name.
    secrets: BTreeSet<(String, String)>,
}

impl Exporter {
    fn metadata(&self, meta: &ObjectMeta, extra: Option<(&str, &str)>) -> Value {
        let mut m = json!({ "name": meta.name.clone().unwrap_or_default() });
        if self.all {
            m["namespace"] = json!(meta.namespace.clone().unwrap_or_default());
        }
        if let Some(labels) = meta.labels.as_ref().filter(|l| !l.is_empty()) {
            m["labels"] = json!(labels);
        }
        let mut annotations: BTreeMap<String, String> = meta
            .annotations
            .iter()
            .flatten()
            .filter(|(k, _)| kept_annotation(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some((k, v)) = extra {
            annotations.insert(k.to_string(), v.to_string());
        }
        if !annotations.is_empty() {
            m["annotations"] = json!(annotations);
        }
        m
    }

    /// `dir/[namespace/]rest`.
    fn file(&self, dir: &str, ns: &str, rest: &str) -> String {
        if self.all {
            format!("{dir}/{ns}/{rest}")
        } else {
            format!("{dir}/{rest}")
        }
    }

    fn add<K>(&mut self, kind: Kind, o: &K, rest: &str, spec: Value, extra: Option<(&str, &str)>)
    where
        K: Resource<DynamicType = ()>,
    {
        let ns = o.meta().namespace.clone().unwrap_or_default();
        let name = o.meta().name.clone().unwrap_or_default();
        let manifest = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "metadata": self.metadata(o.meta(), extra),
            "spec": spec,
        });
        let file = self.file(kind_dir(kind), &ns, rest);
        self.objects.push(Object {
            kind,
            name: name.clone(),
            file,
            manifest,
            source: format!("{} {ns}/{name}", kind.as_str()),
        });
    }

    fn reference(&mut self, ns: Option<&str>, secret: &str) {
        self.secrets
            .insert((ns.unwrap_or_default().to_string(), secret.to_string()));
    }
}

fn kind_dir(kind: Kind) -> &'static str {
    match kind {
        Kind::Secret => "secrets",
        Kind::Preset => "presets",
        Kind::Organization => "organizations",
        Kind::User => "users",
        Kind::Streamer => "streamers",
        Kind::Stream => "streams",
        Kind::Settings => super::settings::DIR,
    }
}

/// The spec as JSON, with the Watcher id of the status pinned when the spec leaves it to
/// Panoptes (the other installation must answer the same ids).
fn pinned_spec<K: Serialize>(object: &K) -> Value {
    let whole = serde_json::to_value(object).unwrap_or(Value::Null);
    let mut spec = whole["spec"].clone();
    if spec.get("id").is_none_or(Value::is_null)
        && let Some(id) = whole["status"]["id"].as_i64()
        && let Some(m) = spec.as_object_mut()
    {
        m.insert("id".into(), json!(id));
    }
    spec
}

async fn list<K>(client: &Client, ns: Option<&str>) -> Result<Vec<K>, String>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api = match ns {
        Some(ns) => Api::<K>::namespaced(client.clone(), ns),
        None => Api::<K>::all(client.clone()),
    };
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|e| format!("listing {}: {e}", K::kind(&())))
}

/// Reads `namespace` (or every namespace) into a plan the import's writer takes.
pub async fn plan(client: &Client, namespace: Option<&str>) -> Result<Plan, String> {
    let mut x = Exporter {
        all: namespace.is_none(),
        objects: Vec::new(),
        findings: Vec::new(),
        reset_users: Vec::new(),
        secrets: BTreeSet::new(),
    };
    for p in list::<Preset>(client, namespace).await? {
        let rest = format!("{}.yaml", p.name_any());
        x.add(Kind::Preset, &p, &rest, pinned_spec(&p), None);
    }
    for o in list::<Organization>(client, namespace).await? {
        let rest = format!("{}.yaml", o.name_any());
        x.add(Kind::Organization, &o, &rest, pinned_spec(&o), None);
    }
    for u in list::<User>(client, namespace).await? {
        let ns = u.namespace();
        let mut spec = pinned_spec(&u);
        let m = spec.as_object_mut().expect("a spec is an object");
        // The facade's password Secret wins over the manifest's (see UserSpec): export the
        // password in effect, as the manifest's own reference.
        if let Some(r) = m.remove("facadePasswordSecretRef").filter(|r| !r.is_null()) {
            m.insert("passwordSecretRef".into(), r);
        }
        let reference = m
            .get("passwordSecretRef")
            .and_then(|r| r["name"].as_str())
            .map(str::to_string);
        let hash_only = reference.is_none()
            && u.status
                .as_ref()
                .is_some_and(|s| s.password_hash_secret.is_some());
        let extra = hash_only.then_some((PASSWORD_RESET_ANNOTATION, "true"));
        match reference {
            Some(r) => x.reference(ns.as_deref(), &r),
            None if hash_only => x.reset_users.push(u.spec.name.clone()),
            None => {}
        }
        let rest = format!("{}.yaml", u.name_any());
        x.add(Kind::User, &u, &rest, spec, extra);
    }
    for s in list::<Streamer>(client, namespace).await? {
        if let Some(c) = &s.spec.credentials {
            x.reference(s.namespace().as_deref(), &c.secret_name);
        }
        let rest = format!("{}.yaml", s.name_any());
        x.add(Kind::Streamer, &s, &rest, pinned_spec(&s), None);
    }
    for s in list::<Stream>(client, namespace).await? {
        let ns = s.namespace();
        for secret in [
            s.spec.credentials.as_ref().map(|c| &c.secret_name),
            s.spec.push_credentials.as_ref().map(|c| &c.secret_name),
        ]
        .into_iter()
        .flatten()
        {
            x.reference(ns.as_deref(), secret);
        }
        let org = s
            .spec
            .organization_ref
            .clone()
            .unwrap_or_else(|| "no-organization".into());
        let rest = format!("{org}/{}.yaml", s.name_any());
        x.add(Kind::Stream, &s, &rest, pinned_spec(&s), None);
    }
    for (ns, name) in std::mem::take(&mut x.secrets) {
        let got = Api::<Secret>::namespaced(client.clone(), &ns)
            .get_opt(&name)
            .await
            .map_err(|e| format!("reading Secret {ns}/{name}: {e}"))?;
        let Some(secret) = got else {
            x.findings.push(Finding {
                severity: Severity::Warning,
                object: format!("Secret {ns}/{name}"),
                path: None,
                message: "referenced but missing: not exported".into(),
            });
            continue;
        };
        let mut string_data = Map::new();
        for (k, v) in secret.data.iter().flatten() {
            match String::from_utf8(v.0.clone()) {
                Ok(text) => {
                    string_data.insert(k.clone(), Value::String(text));
                }
                // Never quote the value: name the key only.
                Err(_) => x.findings.push(Finding {
                    severity: Severity::Warning,
                    object: format!("Secret {ns}/{name}"),
                    path: Some(format!("/data/{k}")),
                    message: "not text: not exported, copy it by hand".into(),
                }),
            }
        }
        let mut metadata = json!({ "name": name });
        if x.all {
            metadata["namespace"] = json!(ns);
        }
        // Where the credentials may be sent travels with them; the facade's bookkeeping
        // (owner, claim labels) belongs to the source cluster.
        if let Some(d) = secret
            .annotations()
            .get(credentials::DESTINATIONS_ANNOTATION)
        {
            metadata["annotations"] = json!({ credentials::DESTINATIONS_ANNOTATION: d });
        }
        let mut manifest = json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": metadata, "stringData": string_data,
        });
        if let Some(t) = &secret.type_ {
            manifest["type"] = json!(t);
        }
        let file = x.file("secrets", &ns, &format!("{name}.yaml"));
        x.objects.push(Object {
            kind: Kind::Secret,
            name: name.clone(),
            file,
            manifest,
            source: format!("Secret {ns}/{name}"),
        });
    }
    x.objects
        .sort_by(|a, b| (a.kind, &a.file).cmp(&(b.kind, &b.file)));
    x.findings.sort();
    x.reset_users.sort();
    Ok(Plan {
        objects: x.objects,
        findings: x.findings,
        reset_users: x.reset_users,
        settings: Vec::new(),
    })
}

/// Exports with `client`; returns the plan written.
pub async fn execute(args: &ExportArgs, client: &Client) -> Result<Plan, String> {
    let plan = plan(client, args.namespace.as_deref()).await?;
    super::output::write_tree(
        &args.out,
        &plan,
        args.namespace.as_deref(),
        !args.no_secrets,
    )
    .map_err(|e| format!("writing {}: {e}", args.out.display()))?;
    Ok(plan)
}

/// `panoptes export`.
pub async fn run(args: ExportArgs) -> ExitCode {
    let client = match Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("export: connecting to the cluster: {e}");
            return ExitCode::from(2);
        }
    };
    match execute(&args, &client).await {
        Ok(plan) => {
            println!("export summary ({}):", args.out.display());
            let counts = plan.counts();
            for kind in Kind::ALL {
                let n = counts.get(&kind).copied().unwrap_or(0);
                println!("  {:<13} {n}", kind.as_str());
            }
            for f in &plan.findings {
                println!("  {f}");
            }
            if !plan.reset_users.is_empty() {
                println!(
                    "users exported without a password (only its hash exists; they must get a new one): {}",
                    plan.reset_users.join(", ")
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("export: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assigned_id_is_pinned_and_only_panoptes_annotations_travel() {
        let mut p: Preset = serde_json::from_value(json!({
            "apiVersion": "panoptes.dev/v1alpha1", "kind": "Preset",
            "metadata": {"name": "gold"}, "spec": {"title": "Gold"}, "status": {"id": 42},
        }))
        .unwrap();
        assert_eq!(pinned_spec(&p)["id"], 42);
        p.spec.id = Some(7);
        assert_eq!(pinned_spec(&p)["id"], 7, "a pinned id stays");
        assert!(kept_annotation("panoptes.dev/adopt"));
        assert!(!kept_annotation("panoptes.dev.example/x"));
        assert!(!kept_annotation(
            "kubectl.kubernetes.io/last-applied-configuration"
        ));
    }
}
