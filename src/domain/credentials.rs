//! Credentials Secrets the facade writes: how they are marked, who owns them, which object
//! fields reference them, and where each value may be sent.
//!
//! Rules (the facade, the controllers' finalizers and the leader's sweep all follow them):
//! - The facade never writes into a Secret it did not create. Every credential entered through
//!   the Watcher API goes to a new Secret created with `generateName` (so a name can never
//!   collide with, or adopt, an existing Secret), labelled [`COMPONENT_LABEL`] =
//!   [`FACADE_CREDENTIALS`] and owned (owner reference with `controller: true`) by the one object
//!   it belongs to. A change of credentials writes a new Secret and deletes the old one if it is
//!   facade-created and owned by the same object.
//! - The annotation [`FOR_ANNOTATION`] (`<Kind>/<name>`) names the intended owner of a Secret
//!   written before that object existed (a create); the owner reference follows the create.
//! - The annotation [`DESTINATIONS_ANNOTATION`] records, per Secret key, the origin
//!   (`scheme://host:port`) the value was entered for, as a JSON object.
//! - Finalizers delete the facade-created Secrets an object references; the sweep deletes the
//!   rest that a crash or a failed write left (owner gone, never owned, or no longer referenced).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use sha1::Digest;

use crate::resources::common::{GROUP, VERSION};
use crate::resources::stream::CameraCredentials;
#[cfg(test)]
use crate::resources::{Stream, Streamer, User};
use crate::resources::{StreamSpec, StreamerSpec, UserSpec};

/// Standard label naming the tool that manages an object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`] on everything Panoptes writes.
pub const MANAGED_BY: &str = "panoptes";
/// Standard label naming the role of an object.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// Value of [`COMPONENT_LABEL`] on credentials Secrets the facade created.
pub const FACADE_CREDENTIALS: &str = "facade-credentials";
/// Annotation: `<Kind>/<name>` of the object a facade credentials Secret was written for.
pub const FOR_ANNOTATION: &str = "panoptes.dev/credentials-for";
/// Annotation: JSON object `{"<secret key>": "scheme://host:port"}`, the destination each value
/// was entered for.
pub const DESTINATIONS_ANNOTATION: &str = "panoptes.dev/destinations";

/// Kinds whose credentials the facade writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerKind {
    /// A User's password.
    User,
    /// A Streamer's node API credentials.
    Streamer,
    /// A Stream's camera and push credentials.
    Stream,
}

impl OwnerKind {
    /// The Kubernetes kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Streamer => "Streamer",
            Self::Stream => "Stream",
        }
    }

    /// Parses a Kubernetes kind.
    pub fn parse(kind: &str) -> Option<Self> {
        match kind {
            "User" => Some(Self::User),
            "Streamer" => Some(Self::Streamer),
            "Stream" => Some(Self::Stream),
            _ => None,
        }
    }
}

/// The label selector of the credentials Secrets the facade created.
pub fn facade_created_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY},{COMPONENT_LABEL}={FACADE_CREDENTIALS}")
}

/// Whether the facade created `secret` (so it may replace or delete it).
pub fn is_facade_created(secret: &Secret) -> bool {
    let labels = secret.labels();
    labels.get(COMPONENT_LABEL).map(String::as_str) == Some(FACADE_CREDENTIALS)
        && labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
}

/// The Panoptes object owning `secret`: kind, name and uid of its first panoptes.dev owner.
pub fn owner_of(secret: &Secret) -> Option<(OwnerKind, String, String)> {
    secret.owner_references().iter().find_map(|o| {
        if !o.api_version.starts_with(GROUP) {
            return None;
        }
        Some((OwnerKind::parse(&o.kind)?, o.name.clone(), o.uid.clone()))
    })
}

/// Whether `secret` is facade-created and owned by the object of `kind` with `uid`.
pub fn owned_by(secret: &Secret, kind: OwnerKind, uid: &str) -> bool {
    is_facade_created(secret)
        && owner_of(secret).is_some_and(|(k, _, u)| k == kind && !uid.is_empty() && u == uid)
}

/// The intended owner named by [`FOR_ANNOTATION`].
pub fn intended_owner(secret: &Secret) -> Option<(OwnerKind, String)> {
    let (kind, name) = secret.annotations().get(FOR_ANNOTATION)?.split_once('/')?;
    Some((OwnerKind::parse(kind)?, name.to_string()))
}

/// Secrets the facade's fields of a User reference (the only ones the facade may own).
pub fn user_refs(spec: &UserSpec) -> Vec<String> {
    spec.facade_password_secret_ref
        .iter()
        .map(|r| r.name.clone())
        .collect()
}

/// Secrets the facade's field of a Streamer references.
pub fn streamer_refs(spec: &StreamerSpec) -> Vec<String> {
    spec.facade_credentials
        .iter()
        .map(|c| c.secret_name.clone())
        .collect()
}

/// Secrets a Stream references for camera and push credentials. `spec.credentials` counts
/// too: the facade wrote camera credentials there before `spec.facadeCredentials` existed,
/// and a Secret a manifest references there is never facade-created (so never deleted).
pub fn stream_refs(spec: &StreamSpec) -> Vec<String> {
    spec.facade_credentials
        .iter()
        .chain(spec.credentials.iter())
        .map(|c| c.secret_name.clone())
        .chain(spec.push_credentials.iter().map(|c| c.secret_name.clone()))
        .collect()
}

/// The camera credentials a Stream's inputs get: those entered through the Watcher API
/// (`spec.facadeCredentials`) win over the manifest's (`spec.credentials`), so a GitOps
/// re-apply never takes back a camera password changed through the API.
pub fn camera_credentials(spec: &StreamSpec) -> Option<&CameraCredentials> {
    spec.facade_credentials
        .as_deref()
        .or(spec.credentials.as_deref())
}

/// Secrets an object of `kind` references, from its JSON form (used by the sweep, which
/// reads objects of every kind the same way).
pub fn refs_of(kind: OwnerKind, obj: &serde_json::Value) -> Vec<String> {
    let spec = obj.get("spec").cloned().unwrap_or_default();
    match kind {
        OwnerKind::User => serde_json::from_value::<UserSpec>(spec)
            .map(|s| user_refs(&s))
            .unwrap_or_default(),
        OwnerKind::Streamer => serde_json::from_value::<StreamerSpec>(spec)
            .map(|s| streamer_refs(&s))
            .unwrap_or_default(),
        OwnerKind::Stream => serde_json::from_value::<StreamSpec>(spec)
            .map(|s| stream_refs(&s))
            .unwrap_or_default(),
    }
}

/// Secrets an object's annotations reference (a User's API key, a Stream's shared tokens:
/// [`crate::domain::access`]); the finalizers and the sweep count them with the spec's.
pub fn annotated_refs(annotations: &BTreeMap<String, String>) -> Vec<String> {
    annotations
        .get(crate::domain::access::APIKEY_ANNOTATION)
        .cloned()
        .into_iter()
        .chain(
            crate::domain::access::shares(annotations)
                .into_iter()
                .map(|(_, r)| r.secret),
        )
        .collect()
}

/// `scheme://host:port` of `url` (the port made explicit where the scheme has a well-known
/// one), or `None` when `url` has no host.
pub fn origin(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    let host = u.host_str()?;
    let scheme = u.scheme().to_ascii_lowercase();
    let port = u.port().or_else(|| default_port(&scheme));
    Some(match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

fn default_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "http" | "onvif" | "hls" | "tshttp" => 80,
        "https" | "rtmps" => 443,
        "rtsp" => 554,
        "rtsps" => 322,
        "rtmp" => 1935,
        _ => return None,
    })
}

/// The `user:password` of `url` (percent-decoded) and `url` without them; `None` when the URL
/// carries no password.
pub fn split_userinfo(url: &str) -> Option<((String, String), String)> {
    let mut u = reqwest::Url::parse(url).ok()?;
    let pw = u.password()?.to_string();
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let creds = (decode(u.username()), decode(&pw));
    let _ = u.set_username("");
    let _ = u.set_password(None);
    Some((creds, u.to_string()))
}

/// Secret key prefix of the credentials of the push to `url` (a URL without user info): a
/// digest of the URL, so a push keeps its credentials while its URL stays the same, wherever
/// it is in the list, and a changed URL (a new destination) gets none until entered again.
pub fn push_key(url: &str) -> String {
    let digest = sha1::Sha1::digest(url.as_bytes());
    format!("push-{}", &hex::encode(digest)[..16])
}

/// Key of a push's login in the push credentials Secret.
pub fn push_username_key(url: &str) -> String {
    format!("{}-username", push_key(url))
}

/// Key of a push's password in the push credentials Secret.
pub fn push_password_key(url: &str) -> String {
    format!("{}-password", push_key(url))
}

/// The [`DESTINATIONS_ANNOTATION`] value of `destinations`.
pub fn destinations_json(destinations: &BTreeMap<String, String>) -> String {
    serde_json::to_string(destinations).unwrap_or_else(|_| "{}".into())
}

/// The destinations recorded on `secret`.
pub fn destinations(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .annotations()
        .get(DESTINATIONS_ANNOTATION)
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

/// `generateName` prefix for a credentials Secret of object `object`: short enough that the
/// API server's random suffix keeps the name within 253 characters.
pub fn generate_name(object: &str, what: &str) -> String {
    let mut base = format!("{object}-{what}");
    if base.len() > 200 {
        let digest = hex::encode(sha1::Sha1::digest(base.as_bytes()));
        base.truncate(180);
        base = format!("{}-{}", base.trim_end_matches(['-', '.']), &digest[..8]);
    }
    format!("{base}-")
}

/// Whether `secret` has a name the facade could have generated for `object` of `kind`. Not a
/// trust signal (ownership is checked on the Secret itself): it spares a deletion the read of
/// Secrets a manifest references, which the facade never creates.
pub fn may_be_facade_named(kind: OwnerKind, object: &str, secret: &str) -> bool {
    let whats: &[&str] = match kind {
        OwnerKind::User => &["password", "api-key"],
        OwnerKind::Streamer => &["credentials"],
        OwnerKind::Stream => &["camera-credentials", "push-credentials", "shared-token"],
    };
    whats
        .iter()
        .any(|w| secret.starts_with(&generate_name(object, w)))
}

/// `apiVersion` of the owners' kinds.
pub fn api_version() -> String {
    format!("{GROUP}/{VERSION}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_make_the_port_explicit() {
        assert_eq!(
            origin("http://node-1/streamer").as_deref(),
            Some("http://node-1:80")
        );
        assert_eq!(
            origin("rtsp://cam:8554/x").as_deref(),
            Some("rtsp://cam:8554")
        );
        assert_eq!(
            origin("rtmp://u:p@push.example/live").as_deref(),
            Some("rtmp://push.example:1935")
        );
        assert_eq!(origin("publish://"), None);
    }

    #[test]
    fn userinfo_is_split_off() {
        let ((u, p), rest) = split_userinfo("rtmp://us%40er:p%3Ass@h:1935/live").unwrap();
        assert_eq!((u.as_str(), p.as_str()), ("us@er", "p:ss"));
        assert_eq!(rest, "rtmp://h:1935/live");
        assert!(split_userinfo("rtmp://h/live").is_none());
    }

    #[test]
    fn push_keys_are_valid_secret_keys_and_follow_the_url() {
        let k = push_password_key("rtmp://h/live");
        assert!(
            k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        );
        assert_ne!(k, push_password_key("rtmp://other/live"));
    }

    #[test]
    fn generated_names_fit() {
        assert_eq!(generate_name("cam", "camera"), "cam-camera-");
        assert!(may_be_facade_named(
            OwnerKind::Stream,
            "cam",
            "cam-push-credentials-x7k2p"
        ));
        assert!(!may_be_facade_named(OwnerKind::Stream, "cam", "cams"));
        assert!(generate_name(&"x".repeat(253), "password").len() <= 200);
        use kube::Resource;
        assert_eq!(OwnerKind::User.as_str(), User::kind(&()));
        assert_eq!(OwnerKind::Streamer.as_str(), Streamer::kind(&()));
        assert_eq!(OwnerKind::Stream.as_str(), Stream::kind(&()));
    }
}
