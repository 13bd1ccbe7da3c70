//! Who belongs to whom when one installation watches many namespaces (cluster mode).
//!
//! Two rules, each applied by the controllers and the facade alike:
//! - **Identities.** Only Users in the facade's namespace are logins, plus the namespaces the
//!   cluster owner lists explicitly (`--identity-namespaces`). A User anywhere else is nobody:
//!   it cannot log in, hold a login, or show in `GET /users`. Among identities a login is
//!   someone's only while exactly one User claims it; two claimants lock each other out
//!   (`Ready=False LoginConflict` on both) until one is renamed or removed, because
//!   preferring either would let whoever creates the second one choose who wins.
//! - **Placement.** A Streamer serves the Streams of its own namespace, plus those of the
//!   namespaces its `spec.admitNamespaces` lists (`"*"`: every namespace). Otherwise anyone
//!   allowed to create a Stream in one namespace would get cameras ingested (and URLs of their
//!   choosing fetched) by another namespace's nodes.
//!
//! - **Hostnames.** Nodes are addressed by hostname (one client, one placement target per
//!   hostname), so a hostname belongs to one Streamer: the oldest claimant. A later Streamer
//!   naming the same hostname, e.g. from another namespace with its own `apiUrl` and
//!   credentials, gets no client and no streams; otherwise the owner's streams, with their
//!   camera passwords, could be pushed through the newcomer's client to its URL.
//!
//! Secret references never carry a namespace: they resolve in the referring object's own
//! namespace (see `resources::common::SecretKeyRef`), so no rule is needed for them here.

use super::key::ObjectKey;
use std::collections::BTreeSet;
use std::sync::Arc;

use kube::ResourceExt;

use crate::resources::{Streamer, User};

/// The namespaces whose Users are identities of the facade.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identities {
    namespaces: BTreeSet<String>,
}

impl Identities {
    /// The facade's own namespace plus `extra` (empty entries are ignored).
    pub fn new(api_namespace: &str, extra: &[String]) -> Self {
        let namespaces = std::iter::once(api_namespace)
            .chain(extra.iter().map(String::as_str))
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        Self { namespaces }
    }

    /// Whether Users of `namespace` are identities.
    pub fn includes(&self, namespace: &str) -> bool {
        self.namespaces.contains(namespace)
    }

    /// Whether `user` is an identity (its namespace is one of ours).
    pub fn is_identity(&self, user: &User) -> bool {
        user.namespace().is_some_and(|ns| self.includes(&ns))
    }

    /// The namespaces, sorted.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces.iter().map(String::as_str)
    }
}

/// Who holds a login among identities.
#[derive(Clone, Debug, PartialEq)]
pub enum LoginHolder<U> {
    /// Nobody claims it.
    Nobody,
    /// Exactly one User claims it.
    One(U),
    /// Several Users claim it (`namespace/name` of each, sorted): it is nobody's.
    Conflict(Vec<String>),
}

/// The holder of `login` among `users` that are identities and not being deleted.
pub fn login_holder<U: AsRef<User> + Clone>(
    identities: &Identities,
    users: &[U],
    login: &str,
) -> LoginHolder<U> {
    let mut claimants = users.iter().filter(|u| {
        let u = u.as_ref();
        u.spec.name == login && u.metadata.deletion_timestamp.is_none() && identities.is_identity(u)
    });
    let Some(first) = claimants.next() else {
        return LoginHolder::Nobody;
    };
    let rest: Vec<&U> = claimants.collect();
    if rest.is_empty() {
        return LoginHolder::One(first.clone());
    }
    let mut keys: Vec<String> = std::iter::once(first)
        .chain(rest)
        .map(|u| ObjectKey::of(u.as_ref()).to_string())
        .collect();
    keys.sort();
    LoginHolder::Conflict(keys)
}

/// Which namespaces' Streams a Streamer serves: its own and the admitted ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// The Streamer's namespace.
    pub namespace: Arc<str>,
    /// `spec.admitNamespaces`: further namespace names, or `*` for every namespace.
    pub admitted: Arc<[String]>,
}

/// The entry of `admitNamespaces` that admits every namespace.
pub const ADMIT_ALL: &str = "*";

impl Admission {
    /// The admission of a Streamer in `namespace` with `admitNamespaces: admitted`.
    pub fn new(namespace: &str, admitted: Option<&[String]>) -> Self {
        Self {
            namespace: namespace.into(),
            admitted: admitted.unwrap_or_default().into(),
        }
    }

    /// Whether the Streamer may hold a Stream of `stream_namespace`.
    pub fn admits(&self, stream_namespace: &str) -> bool {
        *self.namespace == *stream_namespace
            || self
                .admitted
                .iter()
                .any(|a| a == ADMIT_ALL || a == stream_namespace)
    }
}

/// The owner (`namespace/name`) of every hostname among `streamers`: the oldest claimant
/// not being deleted (creation time, then `namespace/name`).
pub fn hostname_owners<'a>(
    streamers: impl IntoIterator<Item = &'a Streamer>,
) -> std::collections::HashMap<&'a str, ObjectKey> {
    let mut live: Vec<&Streamer> = streamers
        .into_iter()
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .collect();
    live.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
            .then_with(|| ObjectKey::of(*a).cmp(&ObjectKey::of(*b)))
    });
    let mut owners = std::collections::HashMap::new();
    for s in live {
        owners
            .entry(s.spec.hostname.as_str())
            .or_insert_with(|| ObjectKey::of(s));
    }
    owners
}

/// Whether `streamer` owns its hostname among `all` (see [`hostname_owners`]).
pub fn owns_hostname(
    owners: &std::collections::HashMap<&str, ObjectKey>,
    streamer: &Streamer,
) -> bool {
    owners.get(streamer.spec.hostname.as_str()) == Some(&ObjectKey::of(streamer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::UserSpec;

    fn user(ns: &str, name: &str, login: &str) -> Arc<User> {
        let mut u = User::new(
            name,
            UserSpec {
                name: login.into(),
                ..Default::default()
            },
        );
        u.metadata.namespace = Some(ns.into());
        Arc::new(u)
    }

    #[test]
    fn identities_are_the_api_namespace_plus_listed_ones() {
        let only = Identities::new("video", &[]);
        let wide = Identities::new("video", &["ops".into(), " ".into(), "".into()]);
        for (ids, ns, want) in [
            (&only, "video", true),
            (&only, "tenant-a", false),
            (&only, "", false),
            (&wide, "ops", true),
            (&wide, "video", true),
            (&wide, "tenant-a", false),
            (&wide, " ", false),
        ] {
            assert_eq!(ids.includes(ns), want, "{ns:?} in {ids:?}");
        }
        assert_eq!(wide.namespaces().collect::<Vec<_>>(), ["ops", "video"]);
    }

    #[test]
    fn a_login_is_held_by_exactly_one_identity_or_nobody() {
        let ids = Identities::new("video", &["ops".into()]);
        let admin = user("video", "admin", "admin");
        let tenant_admin = user("tenant-a", "fake", "admin");
        let ops_admin = user("ops", "admin2", "admin");
        let mut deleting = (*user("video", "old", "admin")).clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        let deleting = Arc::new(deleting);
        type Case<'a> = (&'a [Arc<User>], &'a str, LoginHolder<&'a str>);
        let cases: [Case; 6] = [
            (&[], "admin", LoginHolder::Nobody),
            (
                std::slice::from_ref(&admin),
                "admin",
                LoginHolder::One("video/admin"),
            ),
            (std::slice::from_ref(&admin), "root", LoginHolder::Nobody),
            // Another namespace's User is nobody, whatever login it claims.
            (
                &[tenant_admin.clone(), admin.clone()],
                "admin",
                LoginHolder::One("video/admin"),
            ),
            (
                &[ops_admin.clone(), admin.clone(), tenant_admin.clone()],
                "admin",
                LoginHolder::Conflict(vec!["ops/admin2".into(), "video/admin".into()]),
            ),
            // A User being deleted no longer claims its login.
            (
                &[deleting.clone(), admin.clone()],
                "admin",
                LoginHolder::One("video/admin"),
            ),
        ];
        for (users, login, want) in cases {
            let got = match login_holder(&ids, users, login) {
                LoginHolder::Nobody => LoginHolder::Nobody,
                LoginHolder::One(u) => LoginHolder::One(ObjectKey::of(u.as_ref()).to_string()),
                LoginHolder::Conflict(k) => LoginHolder::Conflict(k),
            };
            let want = match want {
                LoginHolder::One(k) => LoginHolder::One(k.to_string()),
                LoginHolder::Nobody => LoginHolder::Nobody,
                LoginHolder::Conflict(k) => LoginHolder::Conflict(k),
            };
            assert_eq!(got, want, "{login} among {}", users.len());
        }
    }

    #[test]
    fn the_oldest_streamer_owns_a_hostname() {
        use crate::resources::StreamerSpec;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let at = |ns: &str, name: &str, host: &str, t: i64, deleting: bool| {
            let mut s = Streamer::new(
                name,
                StreamerSpec {
                    hostname: host.into(),
                    ..Default::default()
                },
            );
            s.metadata.namespace = Some(ns.into());
            s.metadata.creation_timestamp =
                Some(Time(k8s_openapi::jiff::Timestamp::from_second(t).unwrap()));
            if deleting {
                s.metadata.deletion_timestamp = s.metadata.creation_timestamp.clone();
            }
            s
        };
        let owner = at("nodes", "n1", "node-1", 10, false);
        let squatter = at("tenant", "evil", "node-1", 20, false);
        let same_time = at("aaa", "twin", "node-2", 10, false);
        let twin = at("zzz", "twin", "node-2", 10, false);
        let gone = at("nodes", "old", "node-3", 1, true);
        let heir = at("tenant", "new", "node-3", 30, false);
        let all = [&squatter, &owner, &twin, &same_time, &gone, &heir];
        let owners = hostname_owners(all);
        for (s, want) in [
            (&owner, true),
            (&squatter, false),
            (&same_time, true),
            (&twin, false),
            (&gone, false),
            (&heir, true),
        ] {
            assert_eq!(owns_hostname(&owners, s), want, "{}", ObjectKey::of(s));
        }
    }

    #[test]
    fn a_streamer_serves_its_namespace_and_the_admitted_ones() {
        let cases: [(&str, &[&str], &str, bool); 7] = [
            ("nodes", &[], "nodes", true),
            ("nodes", &[], "cams", false),
            ("nodes", &["cams"], "cams", true),
            ("nodes", &["cams"], "other", false),
            ("nodes", &["*"], "other", true),
            // Names are exact: no prefixes or patterns besides `*`.
            ("nodes", &["cam"], "cams", false),
            ("nodes", &["cams*"], "cams", false),
        ];
        for (ns, admitted, stream_ns, want) in cases {
            let admitted: Vec<String> = admitted.iter().map(|s| s.to_string()).collect();
            let a = Admission::new(ns, Some(&admitted));
            assert_eq!(a.admits(stream_ns), want, "{a:?} admits {stream_ns}?");
        }
        assert!(Admission::default().admits(""), "the pure-layout default");
    }
}
