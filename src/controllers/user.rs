//! User controller: keeps each User's Watcher id, checks its organization memberships, and
//! turns the password in `spec.passwordSecretRef` into an argon2id hash for the facade's login.
//!
//! The hash (a salted argon2id PHC string) lives only in the operator-owned Secret
//! `panoptes-user-<name>-hash` (type Opaque, key `hash`, label
//! `app.kubernetes.io/managed-by=panoptes`, owner reference to the User), named in
//! `status.passwordHashSecret`. No fast hash or fingerprint of the password is kept anywhere:
//! to know whether the password changed, the controller verifies the current password against
//! the stored hash (argon2 verify) and re-hashes only when that fails. The hash Secret records
//! in the annotation `panoptes.dev/password-source` the uid and resourceVersion of the password
//! Secret it was last checked against (metadata, nothing derived from the password), so an
//! unchanged password Secret is not verified again, not even after an operator restart.
//! Passwords and hashes are never logged, nor put in status or Events. When a hash of another
//! password replaces the hash, the token generation moves on (annotation
//! `panoptes.dev/token-generation` on the hash Secret, copied to `status.passwordGeneration`),
//! and the facade refuses every token issued before; so does removing the password.
//!
//! Only identities are reconciled: Users of the facade's namespace and of
//! `--identity-namespaces` (`domain::tenancy`). A User elsewhere gets no id, no hash and no
//! status (in cluster mode it is nobody; only its deletion is still cleaned up if it carries
//! the finalizer from a time its namespace was listed). Two identities claiming one login both
//! get `Ready=False LoginConflict` (and an Event); the facade lets neither log in.
//!
//! A password changed through the Watcher API is in `spec.facadePasswordSecretRef`, which wins
//! over `spec.passwordSecretRef`.
//!
//! The finalizer `panoptes.dev/cleanup` releases the id claim and deletes the hash Secret and
//! the facade-created password Secret on deletion (its owner reference lets a cluster's garbage
//! collector do the same; the explicit
//! delete does not depend on one).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use sha1::Digest;

use super::Context;
use super::conditions::Desired;
use super::ids::IdState;
use super::kit::identified::{self, Common, Hook, Verdict, id_ready};
use super::kit::{Error, is_not_found};
use super::refs::{self, key_of};
use crate::domain::accounts;
use crate::domain::credentials::{self, OwnerKind};
use crate::domain::passwords::hash_owned_by;
use crate::domain::refs::{MISSING_REFERENCE, RefKind, Reference, References, missing_message};
use crate::state::SecretEntry;
// The password store is a domain rule (the facade checks logins with it); re-exported here
// because the controller is where hashes are written.
pub use crate::domain::passwords::{HASH_KEY, hash_password, verify_hash, verify_password};
use crate::domain::tenancy::{LoginHolder, login_holder};
use crate::resources::common::{CONTROLLER_MANAGER, FINALIZER, GROUP, SecretKeyRef};
use crate::resources::{Organization, User, UserStatus};

/// Reconciles running at once (hashing is CPU-bound and runs on the blocking pool).
const CONCURRENCY: u16 = 2;
/// How often a missing reference or an id conflict is re-checked besides the watch triggers.
const RECHECK: Duration = Duration::from_secs(30);
/// Annotation on the hash Secret: `<uid>/<resourceVersion>` of the password Secret the hash was
/// last checked against.
pub const SOURCE_ANNOTATION: &str = "panoptes.dev/password-source";
pub use crate::domain::passwords::GENERATION_ANNOTATION;

/// Name of the Secret holding the password hash of User `user`: `panoptes-user-<user>-hash`,
/// shortened with a digest of the name when that would exceed 253 characters.
pub fn hash_secret_name(user: &str) -> String {
    let full = format!("panoptes-user-{user}-hash");
    if full.len() <= 253 {
        return full;
    }
    let digest = hex::encode(&sha1::Sha1::digest(user.as_bytes())[..8]);
    let keep: String = user
        .chars()
        .take(253 - "panoptes-user--hash".len() - digest.len() - 1)
        .collect();
    format!(
        "panoptes-user-{}-{digest}-hash",
        keep.trim_end_matches(['-', '.'])
    )
}

/// State of the User controller, shared by its reconciles and mappers.
pub struct UserController {
    common: Common,
}

impl UserController {
    fn organization_changed(&self, org: &Organization) -> Vec<ObjectRef<User>> {
        let (ns, name) = key_of(org).into_parts();
        self.users_where(&ns, |u| u.refers_to(RefKind::Organization, &name))
    }

    /// The hash Secret's owner, and every user whose password is in this Secret. The watch
    /// carries metadata only: values are read by name in the reconcile.
    fn secret_changed(&self, secret: &PartialObjectMeta<Secret>) -> Vec<ObjectRef<User>> {
        let (ns, name) = key_of(secret).into_parts();
        let mut users: Vec<String> = self
            .users_where(&ns, |u| password_ref(u).is_some_and(|r| r.name == name))
            .into_iter()
            .map(|u| u.name)
            .collect();
        users.extend(
            secret
                .owner_references()
                .iter()
                .filter(|o| o.kind == "User" && o.api_version.starts_with(GROUP))
                .map(|o| o.name.clone()),
        );
        users.sort();
        users.dedup();
        users
            .into_iter()
            .map(|u| ObjectRef::new(&u).within(&ns))
            .collect()
    }

    /// Other identities claiming the changed User's login, and every User now flagged
    /// `LoginConflict` (the change may have resolved it).
    fn user_changed(&self, changed: &User) -> Vec<ObjectRef<User>> {
        let identities = &self.common.ctx.identities;
        let me = key_of(changed);
        self.users_matching(|u| {
            identities.is_identity(u)
                && key_of(u) != me
                && (u.spec.name == changed.spec.name
                    || u.status.as_ref().is_some_and(|s| {
                        s.common
                            .conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.reason == "LoginConflict")
                    }))
        })
    }

    fn users_where(&self, ns: &str, f: impl Fn(&User) -> bool) -> Vec<ObjectRef<User>> {
        self.users_matching(|u| u.namespace().as_deref() == Some(ns) && f(u))
    }

    fn users_matching(&self, f: impl Fn(&User) -> bool) -> Vec<ObjectRef<User>> {
        self.common
            .ctx
            .stores
            .users
            .state()
            .iter()
            .filter(|u| f(u))
            .map(|u| ObjectRef::from_obj(u.as_ref()))
            .collect()
    }
}

/// Runs the User controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + 'static) {
    let shutdown = shutdown.shared();
    let Some(controller) = identified::controller::<User>(&ctx, shutdown.clone()).await else {
        return;
    };
    let ctl = Arc::new(UserController {
        common: Common::new::<User>(ctx.clone()),
    });
    let on_org = {
        let ctl = ctl.clone();
        move |o: Arc<Organization>| ctl.organization_changed(&o)
    };
    let on_secret = {
        let ctl = ctl.clone();
        move |s: Arc<PartialObjectMeta<Secret>>| ctl.secret_changed(&s)
    };
    let on_user = {
        let ctl = ctl.clone();
        move |u: Arc<User>| ctl.user_changed(&u)
    };
    let stores = &ctx.stores;
    let controller = controller
        .watches_shared_stream(stores.subscribe::<Organization>(), on_org)
        .watches_shared_stream(stores.subscribe::<PartialObjectMeta<Secret>>(), on_secret)
        .watches_shared_stream(stores.subscribe::<User>(), on_user);
    identified::run(controller, ctl, CONCURRENCY, shutdown).await;
}

/// Where the password stands.
enum Password {
    /// No `passwordSecretRef`: the user cannot log in with a password.
    None,
    /// The hash Secret holds a hash of the current password.
    Hashed(String),
    /// The referenced Secret or key does not exist (message says which).
    Missing(String),
}

impl Hook for UserController {
    type Kind = User;

    fn common(&self) -> &Common {
        &self.common
    }

    /// Only logins of this installation are numbered, hashed and reported; a User that
    /// stopped being one still has its deletion cleaned up if it carries the finalizer.
    fn applies(&self, user: &User) -> bool {
        let ours = user.finalizers().iter().any(|f| f == FINALIZER);
        self.common.ctx.identities.is_identity(user)
            || (ours && user.meta().deletion_timestamp.is_some())
    }

    async fn cleanup(&self, user: &User) -> Result<(), Error> {
        let ns = user.namespace().unwrap_or_default();
        delete_hash_secret(
            &self.common.ctx,
            &Api::namespaced(self.common.ctx.client.clone(), &ns),
            user,
        )
        .await?;
        super::credentials::delete_facade_credentials(
            &self.common.ctx,
            &ns,
            &[
                credentials::user_refs(&user.spec),
                credentials::annotated_refs(user.annotations()),
            ]
            .concat(),
            OwnerKind::User,
            user,
        )
        .await;
        Ok(())
    }

    async fn judge(
        &self,
        user: &User,
        state: &IdState,
        held: Option<i64>,
        old: &UserStatus,
    ) -> Result<Verdict<UserStatus>, Error> {
        let ctx = &self.common.ctx;
        let secrets: Api<Secret> =
            Api::namespaced(ctx.client.clone(), &user.namespace().unwrap_or_default());
        let missing = refs::missing_references(ctx, user);
        let (password, mut token_generation) =
            password(self, &secrets, user, old.password_generation).await?;
        if matches!(password, Password::None) && old.password_hash_secret.is_some() {
            delete_hash_secret(ctx, &secrets, user).await?;
            // Removing the password revokes its tokens. Computed from the old status, so a
            // failed status write repeats the same step rather than skipping it.
            if old.password_hash_secret.as_deref()
                == Some(hash_secret_name(&user.name_any()).as_str())
            {
                token_generation = Some(old.password_generation.unwrap_or(0) + 1);
            }
        }
        let users = ctx.stores.users.state();
        let login_conflict = match login_holder(&ctx.identities, &users, &user.spec.name) {
            LoginHolder::Conflict(holders) => Some(holders),
            LoginHolder::Nobody | LoginHolder::One(_) => None,
        };
        let password_missing = match &password {
            Password::Missing(message) => Some(message.as_str()),
            Password::None | Password::Hashed(_) => None,
        };
        let ready = judge(
            id_ready(state),
            &user.spec.name,
            login_conflict.as_deref(),
            password_missing,
            &missing,
        );
        let reset = password_reset(user, matches!(password, Password::Hashed(_)));
        let mut verdict = Verdict::recheck_unless_ready(
            ready,
            UserStatus {
                id: held.or(old.id),
                password_hash_secret: match password {
                    Password::Hashed(secret) => Some(secret),
                    Password::None | Password::Missing(_) => None,
                },
                password_generation: token_generation,
                ..Default::default()
            },
            RECHECK,
        );
        verdict.extra.extend(reset);
        Ok(verdict)
    }
}

/// `PasswordResetRequired` of an imported user (no password could be exported): it may not
/// log in until one is set. `None` for users that were never imported without one.
fn password_reset(user: &User, hashed: bool) -> Option<Desired> {
    accounts::password_reset_required(
        user.annotations()
            .contains_key(accounts::PASSWORD_RESET_ANNOTATION),
        hashed,
    )
    .map(|required| {
        if required {
            Desired::yes(
                accounts::PASSWORD_RESET_REQUIRED,
                "ImportedWithoutPassword",
                "imported without a password (a Watcher does not export them): this user \
                 cannot log in until a password is set (PUT /users/{id} with `password`, or \
                 spec.passwordSecretRef)",
            )
        } else {
            Desired::no(
                accounts::PASSWORD_RESET_REQUIRED,
                "PasswordSet",
                "a password has been set",
            )
        }
    })
}

/// A User's `Ready`, by precedence: the id, then a login several identities claim, then the
/// password Secret, then the other references.
fn judge(
    id: Desired,
    login: &str,
    login_conflict: Option<&[String]>,
    password_missing: Option<&str>,
    missing: &[Reference],
) -> Desired {
    if !id.status {
        return id;
    }
    if let Some(holders) = login_conflict {
        return Desired::no(
            "Ready",
            "LoginConflict",
            format!(
                "login {login:?} is claimed by several users ({}): none of them can log in until \
                 all but one are renamed or removed",
                holders.join(", ")
            ),
        );
    }
    if let Some(message) = password_missing {
        return Desired::no("Ready", "PasswordSecretMissing", message);
    }
    if !missing.is_empty() {
        return Desired::no("Ready", MISSING_REFERENCE, missing_message(missing));
    }
    id
}

/// The password in effect: one changed through the Watcher API (a facade-owned Secret) wins
/// over the manifest's `passwordSecretRef`.
fn password_ref(user: &User) -> Option<&SecretKeyRef> {
    user.spec
        .facade_password_secret_ref
        .as_ref()
        .or(user.spec.password_secret_ref.as_ref())
}

/// The token generation recorded on a hash Secret.
fn recorded_generation(secret: &SecretEntry) -> Option<i64> {
    secret.annotation(GENERATION_ANNOTATION)?.parse().ok()
}

/// The hash a hash Secret holds for the User with `uid` (None: not that User's).
fn owned_hash(secret: &SecretEntry, uid: Option<&str>) -> Option<String> {
    hash_owned_by(&secret.owners, secret.data.get(HASH_KEY)?, uid)
}

/// Secret `ns/name` through the Secret cache: read once, then again only when the metadata
/// watch shows another version (a User reconciled again reads nothing).
async fn read_secret(
    ctx: &Context,
    ns: &str,
    name: &str,
    action: &'static str,
) -> Result<Option<Arc<SecretEntry>>, Error> {
    ctx.secrets
        .entry_opt(ns, name)
        .await
        .map_err(Error::kube(action, format!("{ns}/{name}")))
}

/// Reads the password and makes sure the hash Secret holds a hash of it. Also returns the
/// token generation (`current`: the one in status): it moves on when a hash of another
/// password replaces the user's hash, so the facade refuses every token issued before. It is
/// recorded on the hash Secret with the new hash, so a status write that fails afterwards
/// cannot lose it. A first hash keeps it (the tokens of the first login survive the status
/// write that follows), and so does a password Secret missing for a while.
async fn password(
    ctl: &UserController,
    secrets: &Api<Secret>,
    user: &User,
    current: Option<i64>,
) -> Result<(Password, Option<i64>), Error> {
    let Some(r) = password_ref(user) else {
        return Ok((Password::None, current));
    };
    let ctx = &ctl.common.ctx;
    let (ns, name) = key_of(user).into_parts();
    let source = read_secret(ctx, &ns, &r.name, "reading password Secret").await?;
    let Some(source) = source else {
        return Ok((
            Password::Missing(format!("Secret {} not found", r.name)),
            current,
        ));
    };
    let Some(password) = source.data.get(&r.key).cloned() else {
        return Ok((
            Password::Missing(format!("Secret {} has no key {}", r.name, r.key)),
            current,
        ));
    };
    let uid = user.uid().unwrap_or_default();
    let source_version = format!("{}/{}", source.uid, source.resource_version);
    let hash_name = hash_secret_name(&name);
    let who = format!("{ns}/{name}");
    let existing = read_secret(ctx, &ns, &hash_name, "reading password hash Secret").await?;
    let mut generation = current;
    // The hash in place, when it is still a hash of the password in the Secret.
    let mut still = None;
    if let Some(existing) = &existing
        && let Some(phc) = owned_hash(existing, Some(&uid))
    {
        generation = generation.max(recorded_generation(existing));
        if existing.annotation(SOURCE_ANNOTATION) == Some(source_version.as_str()) {
            return Ok((Password::Hashed(hash_name), generation));
        }
        // The password Secret changed since the hash was checked: is it still the same password?
        let (pw, stored) = (password.clone(), phc.clone());
        let matches = tokio::task::spawn_blocking(move || verify_hash(&stored, &pw))
            .await
            .map_err(|e| Error::Hash {
                user: who.clone(),
                reason: e.to_string(),
            })?;
        if matches {
            still = Some(phc);
        } else {
            generation = Some(generation.unwrap_or(0) + 1);
        }
    }
    let rehashed = still.is_none();
    let phc = match still {
        Some(phc) => phc,
        None => tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| Error::Hash {
                user: who.clone(),
                reason: e.to_string(),
            })?
            .map_err(|reason| Error::Hash {
                user: who.clone(),
                reason,
            })?,
    };
    let hash = HashSecret {
        name: &hash_name,
        phc: &phc,
        source_version: &source_version,
        generation,
    };
    apply_hash_secret(ctx, secrets, user, hash).await?;
    if rehashed {
        refs::publish(
            ctx,
            user,
            "PasswordHashed",
            format!("password hash stored in Secret {hash_name}"),
        )
        .await;
        tracing::info!(secret = %hash_name, "password hashed");
    }
    Ok((Password::Hashed(hash_name), generation))
}

/// What a hash Secret holds: the hash, and what it was checked against.
struct HashSecret<'a> {
    name: &'a str,
    phc: &'a str,
    /// `<uid>/<resourceVersion>` of the password Secret ([`SOURCE_ANNOTATION`]).
    source_version: &'a str,
    /// The token generation of the hash ([`GENERATION_ANNOTATION`]).
    generation: Option<i64>,
}

/// Writes the hash Secret, and keeps what the API server answered in the Secret cache.
async fn apply_hash_secret(
    ctx: &Context,
    secrets: &Api<Secret>,
    user: &User,
    hash: HashSecret<'_>,
) -> Result<(), Error> {
    use base64::Engine;
    let HashSecret {
        name,
        phc,
        source_version,
        generation,
    } = hash;
    let (ns, user_name) = key_of(user).into_parts();
    let mut annotations = serde_json::json!({ SOURCE_ANNOTATION: source_version });
    if let Some(g) = generation {
        annotations[GENERATION_ANNOTATION] = serde_json::json!(g.to_string());
    }
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {
                "app.kubernetes.io/managed-by": "panoptes",
                "app.kubernetes.io/component": "user-password-hash",
            },
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": User::api_version(&()),
                "kind": User::kind(&()),
                "name": user_name,
                "uid": user.uid(),
                "controller": true,
            }],
        },
        "type": "Opaque",
        "data": { HASH_KEY: base64::engine::general_purpose::STANDARD.encode(phc) },
    });
    let written = secrets
        .patch(
            name,
            &PatchParams::apply(CONTROLLER_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(Error::kube(
            "applying password hash Secret",
            format!("{ns}/{name}"),
        ))?;
    ctx.secrets.remember(written);
    Ok(())
}

/// Deletes the hash Secret of `user` if it is this user's (owner reference uid).
async fn delete_hash_secret(
    ctx: &Context,
    secrets: &Api<Secret>,
    user: &User,
) -> Result<(), Error> {
    let name = hash_secret_name(&user.name_any());
    let ns = user.namespace().unwrap_or_default();
    let Some(secret) = read_secret(ctx, &ns, &name, "reading password hash Secret").await? else {
        return Ok(());
    };
    if owned_hash(&secret, user.uid().as_deref()).is_none() {
        return Ok(());
    }
    // The uid precondition also guards a cached read: a Secret recreated since is not deleted.
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(secret.uid.clone()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match secrets.delete(&name, &dp).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::kube("deleting password hash Secret", name)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_by_precedence_for_every_reason() {
        let held = id_ready(&IdState::Held(3));
        let conflict = identified::conflict();
        let claimants = ["ns/a".to_string(), "ns/b".to_string()];
        let gone = [Reference {
            kind: RefKind::Organization,
            name: "acme".into(),
            field: "spec.organizations",
        }];
        let none: &[Reference] = &[];
        for (what, id, login, password, missing, reason) in [
            ("all well", &held, None, None, none, "Reconciled"),
            (
                "organization missing",
                &held,
                None,
                None,
                &gone[..],
                MISSING_REFERENCE,
            ),
            (
                "password Secret missing",
                &held,
                None,
                Some("Secret pw not found"),
                &gone[..],
                "PasswordSecretMissing",
            ),
            (
                "login claimed twice",
                &held,
                Some(&claimants[..]),
                Some("Secret pw not found"),
                &gone[..],
                "LoginConflict",
            ),
            (
                "id taken wins",
                &conflict,
                Some(&claimants[..]),
                Some("Secret pw not found"),
                &gone[..],
                "IdConflict",
            ),
        ] {
            let ready = judge(id.clone(), "alice", login, password, missing);
            assert_eq!(ready.reason, reason, "{what}");
            assert_eq!(ready.status, reason == "Reconciled", "{what}");
        }
    }

    #[test]
    fn password_reset_required_for_every_reason() {
        let user = |imported: bool| {
            let mut u = User::new(
                "u",
                serde_json::from_value(serde_json::json!({"name": "u"})).unwrap(),
            );
            if imported {
                u.metadata.annotations = Some(
                    [(
                        accounts::PASSWORD_RESET_ANNOTATION.to_string(),
                        String::new(),
                    )]
                    .into(),
                );
            }
            u
        };
        for (what, imported, hashed, want) in [
            ("never imported", false, false, None),
            ("never imported, hashed", false, true, None),
            (
                "imported, no password yet",
                true,
                false,
                Some((true, "ImportedWithoutPassword")),
            ),
            (
                "imported, password set",
                true,
                true,
                Some((false, "PasswordSet")),
            ),
        ] {
            let got = password_reset(&user(imported), hashed);
            assert_eq!(
                got.as_ref().map(|d| d.type_),
                want.map(|_| accounts::PASSWORD_RESET_REQUIRED),
                "{what}"
            );
            assert_eq!(got.map(|d| (d.status, d.reason)), want, "{what}");
        }
    }

    #[test]
    fn the_generation_recorded_on_a_hash_secret() {
        let mut s = Secret::default();
        assert_eq!(recorded_generation(&s.clone().into()), None);
        s.metadata.annotations =
            Some([(GENERATION_ANNOTATION.to_string(), "7".to_string())].into());
        assert_eq!(recorded_generation(&s.into()), Some(7));
        assert!(
            Some(7) > None,
            "Option::max keeps a recorded generation over none"
        );
    }

    #[test]
    fn hash_secret_names_fit() {
        assert_eq!(hash_secret_name("alice"), "panoptes-user-alice-hash");
        let long = "a".repeat(253);
        let n = hash_secret_name(&long);
        assert!(n.len() <= 253, "{}", n.len());
        assert!(n.starts_with("panoptes-user-a") && n.ends_with("-hash"));
        assert_ne!(n, hash_secret_name(&format!("{}b", "a".repeat(252))));
    }
}
