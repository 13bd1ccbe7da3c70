//! The Preset, Organization and User controllers on a real kube-apiserver: Watcher ids (assigned,
//! unique, pinned, conflicting, stable across a restart and across racing replicas), preset
//! soft delete, organization references, user password hashing, and zero writes in steady
//! state.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use panoptes::controllers::ids::{ID_ANNOTATION, IdKind, lease_name};
use panoptes::controllers::user;
use panoptes::resources::common::{FINALIZER, condition};
use panoptes::resources::{Organization, Preset, Stream, User};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::{TestNamespace, events_with_reason, eventually};

const WAIT: Duration = Duration::from_secs(25);

/// One operator instance (every controller) against a test namespace.
use support::operator::Operator as Instance;

fn obj<K: DeserializeOwned>(kind: &str, name: &str, spec: Value) -> K {
    serde_json::from_value(json!({
        "apiVersion": "panoptes.dev/v1alpha1", "kind": kind, "metadata": { "name": name }, "spec": spec
    }))
    .unwrap()
}

async fn create<K>(api: &Api<K>, o: &K) -> K
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), o)
        .await
        .unwrap_or_else(|e| panic!("creating {}: {e}", o.name_any()))
}

fn ready(conds: &[panoptes::resources::common::Condition]) -> Option<(String, String, String)> {
    condition(conds, "Ready").map(|c| {
        (
            c.status.to_string(),
            c.reason.to_string(),
            c.message.to_string(),
        )
    })
}

fn preset_ready(p: &Preset) -> Option<(String, String, String)> {
    ready(&p.status.as_ref()?.common.conditions)
}

/// Waits until `name` satisfies `pred`, returning it.
async fn wait_for<K>(api: &Api<K>, name: &str, what: &str, pred: impl Fn(&K) -> bool) -> K
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    eventually(WAIT, &format!("{name}: {what}"), || async {
        api.get_opt(name).await.unwrap().filter(|o| pred(o))
    })
    .await
}

/// Settled id: annotation and status agree, Ready=True.
fn preset_settled(p: &Preset) -> bool {
    let id = p.status.as_ref().and_then(|s| s.id);
    id.is_some()
        && p.annotations().get(ID_ANNOTATION).map(String::as_str)
            == id.map(|i| i.to_string()).as_deref()
        && preset_ready(p).is_some_and(|r| r.0 == "True")
}

async fn versions<K>(api: &Api<K>) -> BTreeMap<String, String>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|o| (o.name_any(), o.resource_version().unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn ids_are_assigned_pinned_conflicting_and_stable_across_a_restart_with_no_steady_state_writes()
 {
    let ns = TestNamespace::new("meta-ids").await;
    let presets: Api<Preset> = ns.api();
    let orgs: Api<Organization> = ns.api();
    let users: Api<User> = ns.api();
    for n in ["p1", "p2", "p3"] {
        create(&presets, &obj("Preset", n, json!({ "title": n }))).await;
    }
    create(
        &presets,
        &obj("Preset", "pinned", json!({ "title": "pinned", "id": 100 })),
    )
    .await;
    create(&orgs, &obj("Organization", "o1", json!({ "title": "o1" }))).await;
    create(&users, &obj("User", "u1", json!({ "name": "u1" }))).await;

    let instance = Instance::start(&ns);
    let mut ids = BTreeMap::new();
    for n in ["p1", "p2", "p3", "pinned"] {
        let p = wait_for(&presets, n, "id assigned and Ready", preset_settled).await;
        assert!(p.finalizers().iter().any(|f| f == FINALIZER));
        ids.insert(n, p.status.unwrap().id.unwrap());
    }
    assert_eq!(ids["pinned"], 100, "pinned id honoured");
    let distinct: BTreeSet<i64> = ids.values().copied().collect();
    assert_eq!(distinct.len(), 4, "ids unique: {ids:?}");
    let o1 = wait_for(&orgs, "o1", "id", |o| {
        o.status.as_ref().and_then(|s| s.id).is_some()
    })
    .await;
    let u1 = wait_for(&users, "u1", "id", |u| {
        u.status.as_ref().and_then(|s| s.id).is_some()
    })
    .await;
    assert!(o1.status.unwrap().id.unwrap() >= 1 && u1.status.unwrap().id.unwrap() >= 1);
    // Claims are Leases naming their owner.
    let leases: Api<Lease> = ns.api();
    let claim = leases.get(&lease_name(IdKind::Preset, 100)).await.unwrap();
    assert_eq!(
        claim.spec.unwrap().holder_identity.unwrap(),
        format!("{}/pinned", ns.name)
    );

    // A second object pinning a held id: IdConflict, an Event, no id.
    create(
        &presets,
        &obj("Preset", "dup", json!({ "title": "dup", "id": 100 })),
    )
    .await;
    let dup = wait_for(&presets, "dup", "IdConflict", |p| {
        preset_ready(p).is_some_and(|r| r.1 == "IdConflict")
    })
    .await;
    let (status, _, message) = preset_ready(&dup).unwrap();
    assert_eq!(status, "False");
    assert!(
        message.contains(&format!("{}/pinned", ns.name)),
        "{message}"
    );
    assert_eq!(dup.status.unwrap().id, None);
    eventually(WAIT, "IdConflict event", || async {
        events_with_reason(&ns, "IdConflict", "dup")
            .await
            .then_some(())
    })
    .await;
    assert_eq!(
        presets.get("pinned").await.unwrap().status.unwrap().id,
        Some(100),
        "holder unchanged"
    );

    // Steady state: no writes at all.
    let before = (
        versions(&presets).await,
        versions(&orgs).await,
        versions(&users).await,
        versions(&leases).await,
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = (
        versions(&presets).await,
        versions(&orgs).await,
        versions(&users).await,
        versions(&leases).await,
    );
    assert_eq!(before, after, "steady state made writes");

    // Restart: same ids, and the new instance writes nothing either.
    instance.stop().await;
    let instance = Instance::start(&ns);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (n, id) in &ids {
        let p = presets.get(n).await.unwrap();
        assert_eq!(
            p.status.as_ref().and_then(|s| s.id),
            Some(*id),
            "{n} kept its id"
        );
    }
    let restarted = (
        versions(&presets).await,
        versions(&orgs).await,
        versions(&users).await,
        versions(&leases).await,
    );
    assert_eq!(before, restarted, "a restart rewrote objects");
    // A new preset gets max known id + 1 (pinned ids count as known).
    create(&presets, &obj("Preset", "p4", json!({ "title": "p4" }))).await;
    let p4 = wait_for(&presets, "p4", "id assigned", preset_settled).await;
    assert_eq!(p4.status.unwrap().id, Some(ids.values().max().unwrap() + 1));
    instance.stop().await;
}

#[tokio::test]
async fn two_racing_instances_never_hand_out_an_id_twice() {
    let ns = TestNamespace::new("meta-race").await;
    let presets: Api<Preset> = ns.api();
    for i in 0..20 {
        let n = format!("race-{i}");
        create(&presets, &obj("Preset", &n, json!({ "title": n }))).await;
    }
    let a = Instance::start(&ns);
    let b = Instance::start(&ns);
    let all = eventually(WAIT, "20 presets with settled ids", || async {
        let items = presets.list(&ListParams::default()).await.unwrap().items;
        (items.len() == 20 && items.iter().all(preset_settled)).then_some(items)
    })
    .await;
    let ids: BTreeSet<i64> = all
        .iter()
        .map(|p| p.status.as_ref().unwrap().id.unwrap())
        .collect();
    assert_eq!(ids.len(), 20, "duplicate ids: {ids:?}");
    let leases: Api<Lease> = ns.api();
    for p in &all {
        let claim = leases
            .get(&lease_name(
                IdKind::Preset,
                p.status.as_ref().unwrap().id.unwrap(),
            ))
            .await
            .unwrap();
        assert_eq!(
            claim.spec.unwrap().holder_identity.unwrap(),
            format!("{}/{}", ns.name, p.name_any())
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_used_preset_is_soft_deleted_and_goes_once_unused() {
    let ns = TestNamespace::new("meta-soft").await;
    let presets: Api<Preset> = ns.api();
    let streams: Api<Stream> = ns.api();
    let orgs: Api<Organization> = ns.api();
    create(&presets, &obj("Preset", "p", json!({ "title": "p" }))).await;
    create(
        &streams,
        &obj(
            "Stream",
            "s1",
            json!({ "presetRef": "p", "disabled": true }),
        ),
    )
    .await;
    create(
        &orgs,
        &obj(
            "Organization",
            "o",
            json!({ "title": "o", "presetRefs": ["p"] }),
        ),
    )
    .await;
    let instance = Instance::start(&ns);
    let counted = |n: i64| {
        move |p: &Preset| {
            preset_settled(p)
                && p.status
                    .as_ref()
                    .is_some_and(|s| s.streams_count == Some(n))
        }
    };
    // The organization's watch event may reach the Preset controller after its first count
    // (both objects existed before it started): wait for the count, not only a settled status.
    wait_for(&presets, "p", "1 stream, 1 organization", |p: &Preset| {
        counted(1)(p) && p.status.as_ref().and_then(|s| s.organizations_count) == Some(1)
    })
    .await;
    // A second stream is counted; moving it away is counted too (old target re-reconciled).
    create(
        &streams,
        &obj(
            "Stream",
            "s2",
            json!({ "presetRef": "p", "disabled": true }),
        ),
    )
    .await;
    wait_for(&presets, "p", "2 streams", counted(2)).await;
    let pp = PatchParams::default();
    streams
        .patch(
            "s2",
            &pp,
            &Patch::Merge(json!({ "spec": { "presetRef": null } })),
        )
        .await
        .unwrap();
    let p = wait_for(&presets, "p", "1 stream again", counted(1)).await;
    let id = p.status.unwrap().id.unwrap();

    // Deleting while s1 uses it: marked deleted, kept.
    presets.delete("p", &DeleteParams::default()).await.unwrap();
    let marked = wait_for(&presets, "p", "MarkedDeleted", |p| {
        preset_ready(p).is_some_and(|r| r.1 == "MarkedDeleted")
    })
    .await;
    let status = marked.status.unwrap();
    assert!(
        status.deleted_at.is_some_and(|t| t > 1_600_000_000_000),
        "deletedAt in UTC ms"
    );
    assert_eq!(status.id, Some(id));
    assert_eq!(
        condition(&status.common.conditions, "Ready")
            .unwrap()
            .status,
        "False"
    );
    eventually(WAIT, "MarkedDeleted event", || async {
        events_with_reason(&ns, "MarkedDeleted", "p")
            .await
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        presets.get_opt("p").await.unwrap().is_some(),
        "still used: kept"
    );

    // The last user goes: the preset goes, and its id claim is released.
    streams
        .delete("s1", &DeleteParams::default())
        .await
        .unwrap();
    eventually(WAIT, "preset gone", || async {
        presets.get_opt("p").await.unwrap().is_none().then_some(())
    })
    .await;
    let leases: Api<Lease> = ns.api();
    assert!(
        leases
            .get_opt(&lease_name(IdKind::Preset, id))
            .await
            .unwrap()
            .is_none(),
        "claim released"
    );
    instance.stop().await;
}

#[tokio::test]
async fn an_organization_reports_missing_references_until_they_exist() {
    let ns = TestNamespace::new("meta-org").await;
    let presets: Api<Preset> = ns.api();
    let orgs: Api<Organization> = ns.api();
    let users: Api<User> = ns.api();
    let streams: Api<Stream> = ns.api();
    create(
        &orgs,
        &obj("Organization", "o", json!({ "title": "o", "presetRefs": ["gold"], "defaultPresetRef": "gold", "ownerRef": "boss" })),
    )
    .await;
    create(
        &streams,
        &obj(
            "Stream",
            "cam",
            json!({ "organizationRef": "o", "disabled": true }),
        ),
    )
    .await;
    let instance = Instance::start(&ns);
    let org_ready = |o: &Organization| o.status.as_ref().and_then(|s| ready(&s.common.conditions));
    let o = wait_for(&orgs, "o", "MissingReference", |o| {
        org_ready(o).is_some_and(|r| r.1 == "MissingReference")
    })
    .await;
    let (status, _, message) = org_ready(&o).unwrap();
    assert_eq!(status, "False");
    assert!(
        message.contains("gold") && message.contains("boss"),
        "{message}"
    );
    assert_eq!(o.status.as_ref().unwrap().streams_count, Some(1));
    eventually(WAIT, "MissingReference event", || async {
        events_with_reason(&ns, "MissingReference", "o")
            .await
            .then_some(())
    })
    .await;

    create(&presets, &obj("Preset", "gold", json!({ "title": "gold" }))).await;
    let o = wait_for(&orgs, "o", "only the owner missing", |o| {
        org_ready(o).is_some_and(|r| r.1 == "MissingReference" && !r.2.contains("gold"))
    })
    .await;
    assert!(org_ready(&o).unwrap().2.contains("boss"));
    create(&users, &obj("User", "boss", json!({ "name": "boss" }))).await;
    wait_for(&orgs, "o", "Ready", |o| {
        org_ready(o).is_some_and(|r| r.0 == "True")
    })
    .await;
    instance.stop().await;
}

#[tokio::test]
async fn user_passwords_are_stored_only_as_argon2_hashes() {
    let ns = TestNamespace::new("meta-user").await;
    let users: Api<User> = ns.api();
    let orgs: Api<Organization> = ns.api();
    let secrets: Api<Secret> = ns.api();
    let password_secret = |pw: &str| -> Secret {
        serde_json::from_value(
            json!({ "metadata": { "name": "alice-pw" }, "stringData": { "password": pw } }),
        )
        .unwrap()
    };
    secrets
        .create(&PostParams::default(), &password_secret("first-Secret-1"))
        .await
        .unwrap();
    create(
        &orgs,
        &obj("Organization", "acme", json!({ "title": "acme" })),
    )
    .await;
    // Distinct logins: two identities claiming one login are both `LoginConflict`.
    let spec = |login: &str, secret: &str| {
        json!({ "name": login, "passwordSecretRef": { "name": secret, "key": "password" },
                "organizations": [{ "organizationRef": "acme" }] })
    };
    create(&users, &obj("User", "alice", spec("alice", "alice-pw"))).await;
    create(&users, &obj("User", "bob", spec("bob", "bob-pw"))).await;
    create(
        &users,
        &obj(
            "User",
            "carol",
            json!({ "name": "carol", "organizations": [{ "organizationRef": "nope" }] }),
        ),
    )
    .await;
    let instance = Instance::start(&ns);
    let user_ready = |u: &User| u.status.as_ref().and_then(|s| ready(&s.common.conditions));

    let alice = wait_for(&users, "alice", "hashed and Ready", |u| {
        user_ready(u).is_some_and(|r| r.0 == "True")
            && u.status.as_ref().unwrap().password_hash_secret.is_some()
    })
    .await;
    assert_eq!(
        alice
            .status
            .as_ref()
            .unwrap()
            .password_hash_secret
            .as_deref(),
        Some("panoptes-user-alice-hash")
    );
    let hash_secret = secrets.get("panoptes-user-alice-hash").await.unwrap();
    assert_eq!(hash_secret.type_.as_deref(), Some("Opaque"));
    assert_eq!(
        hash_secret
            .labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("panoptes")
    );
    let owner = &hash_secret.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), Some(owner.uid.clone())),
        ("User", alice.uid())
    );
    let hash = |s: &Secret| String::from_utf8(s.data.as_ref().unwrap()["hash"].0.clone()).unwrap();
    let first_hash = hash(&hash_secret);
    assert!(first_hash.starts_with("$argon2id$"), "a PHC string");
    assert!(!first_hash.contains("first-Secret-1"));
    assert!(
        !serde_json::to_string(&alice.status)
            .unwrap()
            .contains("argon2"),
        "no hash in status"
    );
    assert!(user::verify_password(&ns.client, &alice, "first-Secret-1").await);
    assert!(!user::verify_password(&ns.client, &alice, "wrong").await);

    // Missing password Secret, missing organization.
    let bob = wait_for(&users, "bob", "PasswordSecretMissing", |u| {
        user_ready(u).is_some_and(|r| r.1 == "PasswordSecretMissing")
    })
    .await;
    assert!(user_ready(&bob).unwrap().2.contains("bob-pw"));
    assert!(!user::verify_password(&ns.client, &bob, "anything").await);
    let carol = wait_for(&users, "carol", "MissingReference", |u| {
        user_ready(u).is_some_and(|r| r.1 == "MissingReference")
    })
    .await;
    assert!(user_ready(&carol).unwrap().2.contains("nope"));

    // Steady state: neither the user nor its hash Secret is rewritten.
    let before = (
        users.get("alice").await.unwrap().resource_version(),
        secrets
            .get("panoptes-user-alice-hash")
            .await
            .unwrap()
            .resource_version(),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = (
        users.get("alice").await.unwrap().resource_version(),
        secrets
            .get("panoptes-user-alice-hash")
            .await
            .unwrap()
            .resource_version(),
    );
    assert_eq!(before, after);

    // Touching the password Secret without changing the password: verified, not re-hashed.
    let label = json!({ "metadata": { "labels": { "touched": "yes" } } });
    secrets
        .patch("alice-pw", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    let source = secrets.get("alice-pw").await.unwrap();
    let source_version = format!(
        "{}/{}",
        source.uid().unwrap(),
        source.resource_version().unwrap()
    );
    let checked = wait_for(&secrets, "panoptes-user-alice-hash", "re-checked", |s| {
        s.annotations().get(user::SOURCE_ANNOTATION) == Some(&source_version)
    })
    .await;
    assert_eq!(hash(&checked), first_hash, "same password: same hash");

    // A password change re-hashes.
    let data = json!({ "data": { "password": ByteString(b"second-Secret-2".to_vec()) } });
    secrets
        .patch("alice-pw", &PatchParams::default(), &Patch::Merge(&data))
        .await
        .unwrap();
    let rehashed = wait_for(&secrets, "panoptes-user-alice-hash", "re-hashed", |s| {
        hash(s) != first_hash
    })
    .await;
    assert!(hash(&rehashed).starts_with("$argon2id$"));
    assert!(user::verify_password(&ns.client, &alice, "second-Secret-2").await);
    assert!(!user::verify_password(&ns.client, &alice, "first-Secret-1").await);

    // Bob's Secret appears: bob becomes Ready.
    let mut bob_pw = password_secret("bob-Secret-3");
    bob_pw.metadata.name = Some("bob-pw".into());
    secrets
        .create(&PostParams::default(), &bob_pw)
        .await
        .unwrap();
    let bob = wait_for(&users, "bob", "Ready", |u| {
        user_ready(u).is_some_and(|r| r.0 == "True")
    })
    .await;
    assert!(user::verify_password(&ns.client, &bob, "bob-Secret-3").await);
    instance.stop().await;
}
