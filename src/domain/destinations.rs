//! Default deny for destinations: a stored credential goes only to the destination (scheme,
//! host, port) it was entered for.
//!
//! Whoever may edit a Streamer's `apiUrl` or a camera's input URL — a facade admin, a kubectl
//! user, a GitOps commit — must not thereby gain a way to send the node's or the camera's
//! stored credentials to a place of their choosing. So every credential is bound to origins:
//!
//! - A Secret may say so itself: annotation [`ANNOTATION`] holds a JSON object
//!   `{"<secret key>": "scheme://host:port"}` (or a list of origins per key). The facade writes
//!   it for the Secrets it writes, with the destination the credentials were entered for.
//! - A Secret without the annotation (made by hand or by GitOps) is bound on first use: the
//!   controller records in the referring object's status which origins it sent the Secret to,
//!   together with the Secret's uid and resourceVersion. A later destination with the same
//!   resourceVersion is refused; writing the Secret again (a new resourceVersion, i.e. the
//!   credentials were entered again) binds them to the destinations of that moment.
//! - The cluster owner may list extra allowed origins in ConfigMap [`ALLOW_LIST_CONFIGMAP`] of
//!   the system namespace (key [`ALLOW_LIST_KEY`]); absent or empty by default.
//!
//! Everything here is pure; the controllers read the Secret and the ConfigMap and record the
//! binding this module returns.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::resources::streamer::CredentialBinding;

/// Annotation of a Secret naming, per key, the destination(s) its value was entered for.
pub const ANNOTATION: &str = "panoptes.dev/destinations";
/// ConfigMap (system namespace) with origins every credential may also go to.
pub const ALLOW_LIST_CONFIGMAP: &str = "panoptes-destinations";
/// Key of [`ALLOW_LIST_CONFIGMAP`] holding the origins (whitespace or comma separated).
pub const ALLOW_LIST_KEY: &str = "origins";

/// Where a credential is sent: scheme, host and port (the port defaulted by scheme).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// Default port of the schemes a camera, push or node URL uses (0: none known, so only an
/// explicit port matches it).
fn default_port(scheme: &str) -> u16 {
    match scheme {
        "http" | "ws" | "hls" | "tshttp" | "onvif" => 80,
        "https" | "wss" | "rtmps" => 443,
        "rtsp" => 554,
        "rtsps" => 322,
        "rtmp" => 1935,
        _ => 0,
    }
}

impl Origin {
    /// The origin of `url`, or `None` when it names no network host (`publish://`, `file://`,
    /// garbage). Scheme and host compare case-insensitively.
    pub fn of(url: &str) -> Option<Self> {
        let parsed = reqwest::Url::parse(url.trim()).ok()?;
        let scheme = parsed.scheme().to_ascii_lowercase();
        if scheme == "file" {
            return None;
        }
        let host = parsed.host_str().filter(|h| !h.is_empty())?;
        let port = parsed
            .port()
            .unwrap_or_else(|| default_port(scheme.as_str()));
        Some(Self {
            host: host.to_ascii_lowercase(),
            port,
            scheme,
        })
    }

    /// Whether the scheme is plain HTTP (credentials would travel in clear).
    pub fn is_plain_http(&self) -> bool {
        self.scheme == "http"
    }
}

/// Origins the cluster owner allows for every credential.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AllowList {
    origins: BTreeSet<Origin>,
}

impl AllowList {
    /// Parses the ConfigMap value: origins separated by whitespace or commas; entries that do
    /// not parse are returned as the second member (for a warning), never silently widened.
    pub fn parse(text: &str) -> (Self, Vec<String>) {
        let mut origins = BTreeSet::new();
        let mut bad = Vec::new();
        for entry in text
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|e| !e.is_empty())
        {
            match Origin::of(entry) {
                Some(o) => {
                    origins.insert(o);
                }
                None => bad.push(entry.to_string()),
            }
        }
        (Self { origins }, bad)
    }

    /// Whether `origin` is listed.
    pub fn allows(&self, origin: &Origin) -> bool {
        self.origins.contains(origin)
    }
}

/// What the controller knows about the Secret it is about to use.
#[derive(Clone, Copy, Debug)]
pub struct SecretFacts<'a> {
    /// Secret name.
    pub name: &'a str,
    /// `metadata.uid`.
    pub uid: &'a str,
    /// `metadata.resourceVersion`: changes whenever the Secret is written.
    pub resource_version: &'a str,
    /// Value of [`ANNOTATION`], if present.
    pub annotation: Option<&'a str>,
}

/// The verdict for one use of a Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Destinations the credential may be sent to (a subset of those asked about).
    pub allowed: BTreeSet<Origin>,
    /// Destinations it must not be sent to, with a message saying how to allow them.
    pub denied: BTreeMap<Origin, String>,
    /// What the referring object's status records from now on (`None`: nothing; an annotated
    /// Secret carries its own record).
    pub binding: Option<CredentialBinding>,
}

impl Decision {
    /// The message of the first refusal, if any.
    pub fn first_denial(&self) -> Option<&str> {
        self.denied.values().next().map(String::as_str)
    }
}

/// Decides which of `destinations` may receive the values of `keys` of `secret`, given the
/// binding the referring object recorded before (`prior`, for first-use binding) and the
/// cluster owner's allow-list.
pub fn decide(
    secret: &SecretFacts<'_>,
    keys: &[&str],
    destinations: &BTreeSet<Origin>,
    prior: Option<&CredentialBinding>,
    allow: &AllowList,
) -> Decision {
    let mut allowed = BTreeSet::new();
    let mut denied = BTreeMap::new();
    let how = |dest: &Origin| {
        format!(
            "enter the credentials again for {dest} (write Secret {} again, e.g. re-apply it or save them through the facade), or have the cluster owner list {dest} in ConfigMap {ALLOW_LIST_CONFIGMAP}",
            secret.name
        )
    };
    if let Some(text) = secret.annotation {
        let declared = match parse_annotation(text) {
            Ok(d) => d,
            Err(e) => {
                for dest in destinations {
                    if allow.allows(dest) {
                        allowed.insert(dest.clone());
                    } else {
                        denied.insert(
                            dest.clone(),
                            format!(
                                "Secret {} has an unreadable {ANNOTATION} annotation ({e}); nothing is sent to {dest} until it is fixed or the cluster owner lists {dest} in ConfigMap {ALLOW_LIST_CONFIGMAP}",
                                secret.name
                            ),
                        );
                    }
                }
                return Decision {
                    allowed,
                    denied,
                    binding: None,
                };
            }
        };
        for dest in destinations {
            let entered_for = keys
                .iter()
                .all(|k| declared.get(*k).is_some_and(|o| o.contains(dest)));
            if entered_for || allow.allows(dest) {
                allowed.insert(dest.clone());
            } else {
                let bound: BTreeSet<String> = keys
                    .iter()
                    .flat_map(|k| declared.get(*k).into_iter().flatten())
                    .map(ToString::to_string)
                    .collect();
                denied.insert(
                    dest.clone(),
                    format!(
                        "the credentials in Secret {} were entered for {}, not for {dest}; {}",
                        secret.name,
                        list_or_nothing(&bound),
                        how(dest)
                    ),
                );
            }
        }
        return Decision {
            allowed,
            denied,
            binding: None,
        };
    }
    let same_entry = prior.is_some_and(|b| {
        b.secret_name == secret.name
            && b.secret_uid == secret.uid
            && b.resource_version == secret.resource_version
    });
    if !same_entry && destinations.is_empty() {
        // Nothing is sent, so nothing is bound yet.
        return Decision {
            allowed,
            denied,
            binding: prior.cloned(),
        };
    }
    if !same_entry {
        // First use of this Secret (or of a version of it written since): bind it to where it
        // goes now.
        return Decision {
            allowed: destinations.clone(),
            denied,
            binding: Some(CredentialBinding {
                secret_name: secret.name.to_string(),
                secret_uid: secret.uid.to_string(),
                resource_version: secret.resource_version.to_string(),
                destinations: destinations.iter().map(ToString::to_string).collect(),
            }),
        };
    }
    let prior = prior.expect("same_entry implies a prior binding");
    let bound: BTreeSet<Origin> = prior
        .destinations
        .iter()
        .filter_map(|d| Origin::of(d))
        .collect();
    for dest in destinations {
        if bound.contains(dest) || allow.allows(dest) {
            allowed.insert(dest.clone());
        } else {
            let names: BTreeSet<String> = bound.iter().map(ToString::to_string).collect();
            denied.insert(
                dest.clone(),
                format!(
                    "the credentials in Secret {} were first used for {}, not for {dest}; {}",
                    secret.name,
                    list_or_nothing(&names),
                    how(dest)
                ),
            );
        }
    }
    Decision {
        allowed,
        denied,
        binding: Some(prior.clone()),
    }
}

fn list_or_nothing(s: &BTreeSet<String>) -> String {
    if s.is_empty() {
        "no destination".into()
    } else {
        s.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// `{"key": "origin"}` or `{"key": ["origin", ...]}`.
fn parse_annotation(text: &str) -> Result<BTreeMap<String, BTreeSet<Origin>>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let obj = value
        .as_object()
        .ok_or("not a JSON object of key to origin")?;
    let mut out = BTreeMap::new();
    for (key, v) in obj {
        let entries: Vec<&str> = match v {
            serde_json::Value::String(s) => vec![s.as_str()],
            serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect(),
            _ => {
                return Err(format!(
                    "key {key:?}: not an origin string or a list of them"
                ));
            }
        };
        let mut set = BTreeSet::new();
        for e in entries {
            set.insert(Origin::of(e).ok_or_else(|| format!("key {key:?}: {e:?} is no origin"))?);
        }
        out.insert(key.clone(), set);
    }
    Ok(out)
}

/// The annotation value binding each of `keys` to `origin` (what the facade writes when
/// credentials are entered for a destination).
pub fn annotation_for(keys: &[&str], origin: &Origin) -> String {
    let map: BTreeMap<&str, String> = keys.iter().map(|k| (*k, origin.to_string())).collect();
    serde_json::to_string(&map).expect("a map of strings serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(s: &str) -> Origin {
        Origin::of(s).unwrap()
    }

    fn set(items: &[&str]) -> BTreeSet<Origin> {
        items.iter().map(|s| o(s)).collect()
    }

    fn facts<'a>(rv: &'a str, annotation: Option<&'a str>) -> SecretFacts<'a> {
        SecretFacts {
            name: "creds",
            uid: "uid-1",
            resource_version: rv,
            annotation,
        }
    }

    fn bound(rv: &str, dests: &[&str]) -> CredentialBinding {
        CredentialBinding {
            secret_name: "creds".into(),
            secret_uid: "uid-1".into(),
            resource_version: rv.into(),
            destinations: dests.iter().map(|d| o(d).to_string()).collect(),
        }
    }

    #[test]
    fn origins_default_ports_and_case() {
        assert_eq!(
            o("http://Node-1.Example").to_string(),
            "http://node-1.example:80"
        );
        assert_eq!(o("HTTPS://n:8443/x?y").to_string(), "https://n:8443");
        assert_eq!(o("rtsp://u:p@cam/h264").to_string(), "rtsp://cam:554");
        assert_eq!(
            o("rtmp://10.0.0.1/live").to_string(),
            "rtmp://10.0.0.1:1935"
        );
        assert_eq!(o("http://[::1]:36000").to_string(), "http://[::1]:36000");
        assert_eq!(o("http://n"), o("http://n:80"));
        assert_ne!(o("http://n"), o("https://n"));
        assert_ne!(o("rtsp://cam"), o("rtsp://cam:8554"));
        for none in ["publish://", "file://vod/x.mp4", "garbage", "fake://"] {
            assert!(Origin::of(none).is_none(), "{none}");
        }
        assert!(o("http://n").is_plain_http());
        assert!(!o("https://n").is_plain_http());
    }

    #[test]
    fn allow_list_parses_and_reports_bad_entries() {
        let (list, bad) = AllowList::parse("https://a:443, rtsp://cam\n\n nope");
        assert!(list.allows(&o("https://a")));
        assert!(list.allows(&o("rtsp://cam:554")));
        assert!(!list.allows(&o("rtsp://cam:8554")));
        assert_eq!(bad, vec!["nope".to_string()]);
        assert_eq!(AllowList::parse("").0, AllowList::default());
    }

    /// The decision table: (case, annotation, secret rv, prior binding, destinations,
    /// allow-list, allowed destinations, records a binding for).
    #[test]
    fn decision_table() {
        type Row<'a> = (
            &'a str,
            Option<&'a str>,
            &'a str,
            Option<CredentialBinding>,
            &'a [&'a str],
            &'a str,
            &'a [&'a str],
            Option<&'a [&'a str]>,
        );
        const NODE: &str = "http://10.0.0.1:8080";
        const EVIL: &str = "http://127.0.0.1:36900";
        let rows: Vec<Row<'_>> = vec![
            (
                "first use binds",
                None,
                "1",
                None,
                &[NODE],
                "",
                &[NODE],
                Some(&[NODE]),
            ),
            (
                "same destination",
                None,
                "1",
                Some(bound("1", &[NODE])),
                &[NODE],
                "",
                &[NODE],
                Some(&[NODE]),
            ),
            (
                "new destination, same Secret version: refused",
                None,
                "1",
                Some(bound("1", &[NODE])),
                &[EVIL],
                "",
                &[],
                Some(&[NODE]),
            ),
            (
                "re-entered (new version): rebinds",
                None,
                "2",
                Some(bound("1", &[NODE])),
                &[EVIL],
                "",
                &[EVIL],
                Some(&[EVIL]),
            ),
            (
                "allow-listed destination",
                None,
                "1",
                Some(bound("1", &[NODE])),
                &[EVIL],
                EVIL,
                &[EVIL],
                Some(&[NODE]),
            ),
            (
                "one of two camera hosts is new",
                None,
                "1",
                Some(bound("1", &["rtsp://cam-a"])),
                &["rtsp://cam-a", "rtsp://cam-b"],
                "",
                &["rtsp://cam-a"],
                Some(&["rtsp://cam-a"]),
            ),
            (
                "annotation names the destination",
                Some(r#"{"login":"http://10.0.0.1:8080","password":["http://10.0.0.1:8080"]}"#),
                "1",
                None,
                &[NODE],
                "",
                &[NODE],
                None,
            ),
            (
                "annotation names another destination",
                Some(r#"{"login":"http://10.0.0.1:8080","password":"http://10.0.0.1:8080"}"#),
                "7",
                None,
                &[EVIL],
                "",
                &[],
                None,
            ),
            (
                "annotation misses a key in use",
                Some(r#"{"login":"http://10.0.0.1:8080"}"#),
                "1",
                None,
                &[NODE],
                "",
                &[],
                None,
            ),
            (
                "annotation wins over a binding",
                Some(r#"{"login":"http://127.0.0.1:36900","password":"http://127.0.0.1:36900"}"#),
                "1",
                Some(bound("1", &[NODE])),
                &[EVIL],
                "",
                &[EVIL],
                None,
            ),
            (
                "unreadable annotation denies",
                Some("{not json"),
                "1",
                None,
                &[NODE],
                "",
                &[],
                None,
            ),
            (
                "unreadable annotation, allow-listed",
                Some("[1]"),
                "1",
                None,
                &[NODE],
                NODE,
                &[NODE],
                None,
            ),
        ];
        for (case, annotation, rv, prior, dests, allow, want_allowed, want_binding) in rows {
            let (allow, _) = AllowList::parse(allow);
            let d = decide(
                &facts(rv, annotation),
                &["login", "password"],
                &set(dests),
                prior.as_ref(),
                &allow,
            );
            assert_eq!(d.allowed, set(want_allowed), "{case}: allowed");
            let denied: BTreeSet<Origin> = d.denied.keys().cloned().collect();
            let want_denied: BTreeSet<Origin> =
                set(dests).difference(&set(want_allowed)).cloned().collect();
            assert_eq!(denied, want_denied, "{case}: denied");
            assert_eq!(
                d.binding.map(|b| b.destinations),
                want_binding.map(|w| set(w).iter().map(ToString::to_string).collect::<Vec<_>>()),
                "{case}: binding"
            );
            for m in d.denied.values() {
                assert!(
                    m.contains("creds") && m.contains(ALLOW_LIST_CONFIGMAP),
                    "{case}: {m}"
                );
            }
        }
    }

    #[test]
    fn another_secret_or_a_recreated_one_is_a_first_use() {
        let prior = bound("1", &["http://a"]);
        let other = SecretFacts {
            name: "other",
            uid: "uid-2",
            resource_version: "1",
            annotation: None,
        };
        let d = decide(
            &other,
            &["token"],
            &set(&["http://b"]),
            Some(&prior),
            &AllowList::default(),
        );
        assert_eq!(d.allowed, set(&["http://b"]));
        let recreated = SecretFacts {
            name: "creds",
            uid: "uid-9",
            resource_version: "1",
            annotation: None,
        };
        let d = decide(
            &recreated,
            &["token"],
            &set(&["http://b"]),
            Some(&prior),
            &AllowList::default(),
        );
        assert_eq!(d.binding.unwrap().secret_uid, "uid-9");
    }

    #[test]
    fn annotation_round_trips() {
        let a = annotation_for(&["login", "password"], &o("https://n:8443"));
        let d = decide(
            &facts("1", Some(&a)),
            &["login", "password"],
            &set(&["https://n:8443"]),
            None,
            &AllowList::default(),
        );
        assert!(d.denied.is_empty());
    }
}
