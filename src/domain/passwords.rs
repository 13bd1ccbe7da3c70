//! The password store: how a User's password is hashed, where the hash lives, and how a login
//! is checked against it. The User controller writes hashes with [`hash_password`]; the facade
//! checks logins with [`Passwords::check`]; the tests write hashes with [`hash_password`] too,
//! so all three agree on the format by construction.
//!
//! The hash (a salted argon2id PHC string) lives in a Secret owned by the User (key
//! [`HASH_KEY`]) named in `status.passwordHashSecret`; a Secret that is not owned by that very
//! User (by uid) is never trusted, so nobody who can merely write Secrets or Users can point a
//! User at a hash of their choosing.
//!
//! A login must not tell whether the login exists: every check runs exactly one argon2
//! verification with the same parameters, against the User's hash when it has a usable one and
//! against a process-wide dummy hash otherwise (unknown login, no password, a hash Secret that
//! is missing, foreign or malformed). [`Passwords::verifications`] counts them, so tests can
//! assert "one per path" without timing anything. The facade's checks also make the same API
//! round trip on every path (a read of a Secret that does not exist when there is no hash
//! Secret to read).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, PasswordHash};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::Api;
use kube::{Client, ResourceExt};

use crate::resources::User;
use crate::resources::common::GROUP;

/// Key of the hash in the hash Secret.
pub const HASH_KEY: &str = "hash";

/// A salted argon2id hash of `password` as a PHC string (`$argon2id$v=19$...`).
pub fn hash_password(password: &[u8]) -> Result<String, String> {
    Argon2::default()
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string `phc` (false for a malformed hash, which costs no
/// verification: callers that must not leak timing go through [`Passwords::check`]).
pub fn verify_hash(phc: &str, password: &[u8]) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

/// The hash in `secret` if it is owned by the User with `uid`.
pub fn owned_hash(secret: &Secret, uid: Option<&str>) -> Option<String> {
    let hash = secret.data.as_ref()?.get(HASH_KEY)?;
    hash_owned_by(secret.owner_references(), &hash.0, uid)
}

/// [`owned_hash`] of a Secret known by its owner references and the bytes under [`HASH_KEY`].
pub fn hash_owned_by(owners: &[OwnerReference], hash: &[u8], uid: Option<&str>) -> Option<String> {
    let uid = uid?;
    let owned = owners
        .iter()
        .any(|o| o.kind == "User" && o.uid == uid && o.api_version.starts_with(GROUP));
    if !owned {
        return None;
    }
    String::from_utf8(hash.to_vec()).ok()
}

/// The hash compared against when there is no real one: made once per process with the same
/// parameters as every stored hash, from random bytes nobody knows.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_password(&rand::random::<[u8; 32]>()).expect("argon2 hashes 32 bytes with defaults")
    })
}

/// The PHC string of `user`'s hash in effect, read from the hash Secret named in its status
/// and owned by this very User; None when it has none (no password, Secret missing, not
/// reconciled yet) or on a read error.
pub async fn stored_hash(client: &Client, user: &User) -> Option<String> {
    stored_hash_and_generation(client, user)
        .await
        .map(|(phc, _)| phc)
}

/// [`stored_hash`] with the token generation recorded on the hash Secret.
async fn stored_hash_and_generation(client: &Client, user: &User) -> Option<(String, Option<i64>)> {
    let name = user.status.as_ref()?.password_hash_secret.clone()?;
    let ns = user.namespace().unwrap_or_default();
    match Api::<Secret>::namespaced(client.clone(), &ns)
        .get_opt(&name)
        .await
    {
        Ok(Some(secret)) => {
            let generation = secret
                .annotations()
                .get(GENERATION_ANNOTATION)
                .and_then(|g| g.parse().ok());
            owned_hash(&secret, user.uid().as_deref()).map(|phc| (phc, generation))
        }
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(%error, namespace = %ns, user = %user.name_any(), "reading the password hash failed");
            None
        }
    }
}

/// Annotation on the hash Secret: the token generation of the hash in it. The User's status
/// records the same generation a moment later; a login verified against this hash issues
/// tokens of this generation, so a token taken in between is not revoked by the status write
/// that follows.
pub const GENERATION_ANNOTATION: &str = "panoptes.dev/token-generation";

/// Name read instead of a hash Secret when there is none to read (it never exists).
const DECOY_SECRET: &str = "panoptes-login-decoy";

/// Login checks with a count of the verifications they ran (one instance per facade).
#[derive(Debug, Default)]
pub struct Passwords {
    verifications: AtomicU64,
    decoy_namespace: Option<String>,
}

impl Passwords {
    /// Checks that, when there is no hash Secret to read, read a Secret that does not exist in
    /// `namespace` instead, so the known and the unknown paths make the same API round trip
    /// (a read only: an unknown login never writes anything).
    pub fn with_decoy_reads(namespace: impl Into<String>) -> Self {
        Self {
            decoy_namespace: Some(namespace.into()),
            ..Self::default()
        }
    }

    /// Argon2 verifications run so far.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Whether `password` is the password of `user`. Runs exactly one verification whatever
    /// the outcome: against the dummy hash when `user` is None or has no usable hash.
    pub async fn check(&self, client: &Client, user: Option<&User>, password: &str) -> bool {
        self.check_with_generation(client, user, password)
            .await
            .is_some()
    }

    /// [`Passwords::check`]: `Some(the token generation recorded with the hash, 0 when none)`
    /// when the password matches, `None` when it does not.
    pub async fn check_with_generation(
        &self,
        client: &Client,
        user: Option<&User>,
        password: &str,
    ) -> Option<i64> {
        let named = user.is_some_and(|u| {
            u.status
                .as_ref()
                .is_some_and(|s| s.password_hash_secret.is_some())
        });
        let stored = match user {
            Some(u) if named => stored_hash_and_generation(client, u).await,
            _ => {
                if let Some(ns) = &self.decoy_namespace {
                    let _ = Api::<Secret>::namespaced(client.clone(), ns)
                        .get_opt(DECOY_SECRET)
                        .await;
                }
                None
            }
        };
        // A hash that does not parse would fail without the slow part: use the dummy instead.
        let (stored, generation) = match stored.filter(|(phc, _)| PasswordHash::new(phc).is_ok()) {
            Some((phc, generation)) => (Some(phc), generation),
            None => (None, None),
        };
        let real = stored.is_some();
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let password = password.as_bytes().to_vec();
        let matched = tokio::task::spawn_blocking(move || {
            let phc = stored.as_deref().unwrap_or_else(|| dummy_hash());
            verify_hash(phc, &password)
        })
        .await
        .unwrap_or(false);
        (matched && real).then_some(generation.unwrap_or(0))
    }

    /// Computes the dummy hash now, so the first unknown login does not pay for it.
    pub async fn warm_up() {
        let _ = tokio::task::spawn_blocking(dummy_hash).await;
    }
}

/// Whether `password` is the password of `user` (see [`Passwords::check`]).
pub async fn verify_password(client: &Client, user: &User, password: &str) -> bool {
    Passwords::default()
        .check(client, Some(user), password)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    #[test]
    fn hashes_are_salted_argon2id_and_verify() {
        let a = hash_password(b"correct horse").unwrap();
        let b = hash_password(b"correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "salted");
        assert!(!a.contains("correct horse"));
        assert!(verify_hash(&a, b"correct horse"));
        assert!(!verify_hash(&a, b"wrong"));
        assert!(!verify_hash("not a hash", b"correct horse"));
    }

    #[test]
    fn the_dummy_has_the_parameters_of_real_hashes() {
        let real = PasswordHash::new(&hash_password(b"x").unwrap())
            .unwrap()
            .params
            .to_string();
        let dummy = PasswordHash::new(dummy_hash()).unwrap().params.to_string();
        assert_eq!(real, dummy);
    }

    #[test]
    fn only_the_users_own_secret_counts() {
        let mut s = Secret {
            data: Some([(HASH_KEY.to_string(), ByteString(b"$argon2id$x".to_vec()))].into()),
            ..Default::default()
        };
        assert_eq!(owned_hash(&s, Some("u1")), None);
        s.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "panoptes.dev/v1alpha1".into(),
            kind: "User".into(),
            name: "alice".into(),
            uid: "u1".into(),
            ..Default::default()
        }]);
        assert_eq!(owned_hash(&s, Some("u1")).as_deref(), Some("$argon2id$x"));
        assert_eq!(owned_hash(&s, Some("u2")), None);
    }
}
