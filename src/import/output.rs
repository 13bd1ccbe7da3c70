//! The kustomize-ready directory an import writes: one YAML file per object, a
//! `kustomization.yaml` listing them, and the credentials apart under `secrets/` (with its own
//! kustomization) behind a `.gitignore`. Files are rewritten only when their text changes and
//! files of objects no longer imported are removed, so a re-import of an unchanged source
//! leaves the tree (and `git status`) untouched.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::plan::{Kind, Object, Plan};
use super::settings;

/// The directories an import owns inside the output directory.
pub const OWNED_DIRS: [&str; 7] = [
    "settings",
    "streamers",
    "streams",
    "presets",
    "organizations",
    "users",
    "secrets",
];

const SECRETS_NOTE: &str = "# Credentials imported by `panoptes import`. Never commit this file: apply it with\n# `kubectl apply -k secrets/` (or move the values to your secret store) and delete it.\n";
const TEMPLATE_NOTE: &str = "# Template written by `panoptes import --no-secrets`: fill in every value (the source's\n# values were not written), then `kubectl apply -k secrets/`. Never commit the filled file.\n";

/// Text of one manifest.
pub fn yaml(manifest: &Value) -> String {
    serde_yaml::to_string(manifest).expect("a JSON value always serializes")
}

/// A Secret with every value emptied, for `--no-secrets`.
fn template(secret: &Value) -> Value {
    let mut t = secret.clone();
    if let Some(Value::Object(data)) = t.get_mut("stringData") {
        for v in data.values_mut() {
            *v = Value::String(String::new());
        }
    }
    t
}

fn kustomization(namespace: Option<&str>, resources: &[String]) -> String {
    let mut k = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
    });
    if let Some(ns) = namespace {
        k["namespace"] = Value::String(ns.to_string());
    }
    yaml(&k)
}

/// Writes `text` to `path` unless it already holds exactly that.
fn write(path: &Path, text: &str, written: &mut BTreeSet<PathBuf>) -> std::io::Result<()> {
    written.insert(path.to_path_buf());
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)
}

/// Removes the YAML files under the owned directories that this import did not write.
fn prune(dir: &Path, written: &BTreeSet<PathBuf>) -> std::io::Result<()> {
    fn walk(d: &Path, written: &BTreeSet<PathBuf>) -> std::io::Result<()> {
        let Ok(entries) = std::fs::read_dir(d) else {
            return Ok(());
        };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, written)?;
                if std::fs::read_dir(&path)?.next().is_none() {
                    std::fs::remove_dir(&path)?;
                }
            } else if path.extension().is_some_and(|e| e == "yaml") && !written.contains(&path) {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    }
    for owned in OWNED_DIRS {
        walk(&dir.join(owned), written)?;
    }
    Ok(())
}

/// Writes the plan under `dir`. `secrets`: write the values (else templates).
pub fn write_tree(
    dir: &Path,
    plan: &Plan,
    namespace: Option<&str>,
    secrets: bool,
) -> std::io::Result<()> {
    let mut written = BTreeSet::new();
    let (creds, objects): (Vec<&Object>, Vec<&Object>) =
        plan.objects.iter().partition(|o| o.kind == Kind::Secret);
    for o in &objects {
        write(&dir.join(&o.file), &yaml(&o.manifest), &mut written)?;
    }
    let mut resources: Vec<String> = objects.iter().map(|o| o.file.clone()).collect();
    resources.sort();
    write(
        &dir.join("kustomization.yaml"),
        &kustomization(namespace, &resources),
        &mut written,
    )?;
    write(
        &dir.join(".gitignore"),
        "# Credentials: never commit them (see secrets/*.yaml).\nsecrets/\n",
        &mut written,
    )?;
    if !creds.is_empty() {
        let mut names = Vec::new();
        for o in &creds {
            let text = if secrets {
                format!("{SECRETS_NOTE}{}", yaml(&o.manifest))
            } else {
                format!("{TEMPLATE_NOTE}{}", yaml(&template(&o.manifest)))
            };
            write(&dir.join(&o.file), &text, &mut written)?;
            names.push(o.file.trim_start_matches("secrets/").to_string());
        }
        names.sort();
        write(
            &dir.join("secrets/kustomization.yaml"),
            &kustomization(namespace, &names),
            &mut written,
        )?;
    }
    write_settings(dir, plan, secrets, &mut written)?;
    prune(dir, &written)
}

/// The domain settings and their Secret, each directory with a kustomization naming no
/// namespace (they go to the system namespace: `kubectl apply -n <it> -k settings/`).
fn write_settings(
    dir: &Path,
    plan: &Plan,
    secrets: bool,
    written: &mut BTreeSet<PathBuf>,
) -> std::io::Result<()> {
    for (sub, secret) in [(settings::DIR, false), (settings::SECRETS_DIR, true)] {
        let mut names = Vec::new();
        for o in plan
            .settings
            .iter()
            .filter(|o| (o.kind == Kind::Secret) == secret)
        {
            let text = match (secret, secrets) {
                (false, _) => yaml(&o.manifest),
                (true, true) => format!("{SECRETS_NOTE}{}", yaml(&o.manifest)),
                (true, false) => format!("{TEMPLATE_NOTE}{}", yaml(&template(&o.manifest))),
            };
            write(&dir.join(&o.file), &text, written)?;
            names.push(o.file.trim_start_matches(&format!("{sub}/")).to_string());
        }
        if !names.is_empty() {
            names.sort();
            write(
                &dir.join(sub).join("kustomization.yaml"),
                &kustomization(None, &names),
                written,
            )?;
        }
    }
    Ok(())
}
