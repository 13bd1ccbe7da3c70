//! The domain settings (`GET /domain_config`: mail transport, branding) as Panoptes stores
//! them (see `crate::api::settings`): the document in the ConfigMap `panoptes-settings` of the
//! system namespace, the SMTP password (`mail.password`) in the Secret of the same name.
//!
//! Both are written to their own directories (`settings/`, `secrets/settings/`) with
//! kustomizations naming no namespace: they belong to the system namespace, not to the
//! imported objects' (`kubectl apply -n <system namespace> -k settings/`). Members Panoptes does
//! not store (top-level members besides `mail` and `appearance`) and credentials other than
//! the SMTP password (a SendGrid API key, …) are left out and reported with their path.

use serde_json::{Map, Value, json};

use super::plan::{Finding, Kind, Object, Severity};
use crate::api::settings::{DOMAIN_KEY, SMTP_PASSWORD_KEY};
use crate::domain::instance::Instance;

/// Directory of the settings ConfigMap.
pub const DIR: &str = "settings";
/// Directory of the settings Secret.
pub const SECRETS_DIR: &str = "secrets/settings";
/// The members of the domain settings Panoptes stores.
const STORED: [&str; 2] = ["mail", "appearance"];

fn finding(path: String, message: &str) -> Finding {
    Finding {
        severity: Severity::Warning,
        object: "domain settings".into(),
        path: Some(path),
        message: message.into(),
    }
}

/// Removes members named like a credential under `at`, reporting each.
fn strip(v: &mut Value, at: &str, out: &mut Vec<Finding>) {
    if let Value::Object(m) = v {
        let secret: Vec<String> = m
            .keys()
            .filter(|k| super::plan::sensitive(k))
            .cloned()
            .collect();
        for k in secret {
            m.remove(&k);
            out.push(finding(
                format!("{at}/{k}"),
                "a credential Panoptes does not store (only mail.password is kept): left out",
            ));
        }
        for (k, v) in m.iter_mut() {
            strip(v, &format!("{at}/{k}"), out);
        }
    }
}

/// The settings objects (the ConfigMap, and the Secret when there is an SMTP password) and
/// what did not map.
pub fn plan(domain: &Value) -> (Vec<Object>, Vec<Finding>) {
    let mut findings = Vec::new();
    let Some(source) = domain.as_object() else {
        return (Vec::new(), findings);
    };
    let mut doc = Map::new();
    for (k, v) in source {
        if STORED.contains(&k.as_str()) {
            doc.insert(k.clone(), v.clone());
        } else if !v.is_null() {
            findings.push(finding(format!("/{k}"), "not stored by Panoptes: left out"));
        }
    }
    let password = doc
        .get_mut("mail")
        .and_then(Value::as_object_mut)
        .and_then(|m| m.remove("password"))
        .and_then(|p| p.as_str().map(str::to_string));
    let mut doc = Value::Object(doc);
    strip(&mut doc, "", &mut findings);
    // The default installation's names (`panoptes-settings`); a release with another
    // `instanceName` renames the two files' objects to `<instance>-settings`.
    let name = Instance::default().settings();
    let mut objects = vec![Object {
        kind: Kind::Settings,
        name: name.clone(),
        file: format!("{DIR}/{name}.yaml"),
        manifest: json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "panoptes"}},
            // Compact JSON, as the facade stores it; keys sorted, so a re-import is stable.
            "data": {DOMAIN_KEY: serde_json::to_string(&doc).unwrap_or_default()},
        }),
        source: "domain settings".into(),
    }];
    if let Some(p) = password.filter(|p| !p.is_empty()) {
        objects.push(Object {
            kind: Kind::Secret,
            name: name.clone(),
            file: format!("{SECRETS_DIR}/{name}.yaml"),
            manifest: json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "panoptes"}},
                "type": "Opaque",
                "stringData": {SMTP_PASSWORD_KEY: p},
            }),
            source: "domain settings".into(),
        });
    }
    (objects, findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smtp_password_goes_to_the_secret_and_the_rest_is_reported() {
        let (objects, findings) = plan(&json!({
            "mail": {"sending_method": "SMTP", "host": "smtp.example", "login": "w",
                     "password": "smtp-pw", "sendgrid_api_key": "sg-key"},
            "appearance": {"title": "Video"},
            "sso": {"provider": "x"},
        }));
        let text: String = objects
            .iter()
            .filter(|o| o.kind != Kind::Secret)
            .map(|o| o.manifest.to_string())
            .collect();
        assert!(
            !text.contains("smtp-pw") && !text.contains("sg-key"),
            "{text}"
        );
        assert!(text.contains("smtp.example") && text.contains("Video"));
        let secret = objects.iter().find(|o| o.kind == Kind::Secret).unwrap();
        assert_eq!(secret.manifest["stringData"][SMTP_PASSWORD_KEY], "smtp-pw");
        assert!(secret.file.starts_with("secrets/settings/"));
        let paths: Vec<&str> = findings.iter().filter_map(|f| f.path.as_deref()).collect();
        assert_eq!(paths, vec!["/sso", "/mail/sendgrid_api_key"]);
        assert!(plan(&Value::Null).0.is_empty());
    }
}
