//! References between resources: which objects each kind names (by name, in its own
//! namespace), and one rule for the ones that do not resolve.
//!
//! Every kind and every reference is checked alike: a reference to an object that does not
//! exist makes the referring object `Ready=False` with reason [`MISSING_REFERENCE`] and the
//! message of [`missing_message`], with a Warning Event when it appears. What else it means
//! depends on what the reference is for, and each controller says so after the shared message:
//! a Stream's missing preset keeps it off the nodes (its config depends on the preset), a
//! Stream's missing organization does not (the camera keeps recording; no organization's users
//! see it until the reference is fixed), a User or Organization works without the missing
//! object.
//!
//! The rule is pure: [`missing_references`] takes the lookup as a function, so the controllers
//! can answer from their caches (and confirm an absence on the API server) and tests from a
//! table.

use std::collections::BTreeSet;

use crate::resources::{Organization, Preset, Stream, User};

/// The condition reason of an object with a missing reference (every kind).
pub const MISSING_REFERENCE: &str = "MissingReference";

/// The kinds a reference can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefKind {
    /// `Preset`.
    Preset,
    /// `Organization`.
    Organization,
    /// `User`.
    User,
}

impl RefKind {
    /// The Kubernetes kind.
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::Preset => "Preset",
            RefKind::Organization => "Organization",
            RefKind::User => "User",
        }
    }
}

/// One reference an object makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// Kind of the named object.
    pub kind: RefKind,
    /// Its name (same namespace as the referring object).
    pub name: String,
    /// Where the reference is written (`spec.presetRef`, …), for the message.
    pub field: &'static str,
}

impl Reference {
    fn new(kind: RefKind, field: &'static str, name: &str) -> Option<Self> {
        (!name.is_empty()).then(|| Self {
            kind,
            name: name.to_string(),
            field,
        })
    }
}

/// A kind that names other objects.
pub trait References {
    /// Every non-empty reference, in field order (a name may repeat).
    fn references(&self) -> Vec<Reference>;

    /// The names of the `kind` objects this one references (each once, sorted): what a
    /// controller indexes to re-check the object when one of them appears or goes.
    fn referenced(&self, kind: RefKind) -> Vec<String> {
        let mut names: Vec<String> = self
            .references()
            .into_iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.name)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Whether this object references `kind` `name`.
    fn refers_to(&self, kind: RefKind, name: &str) -> bool {
        self.references()
            .iter()
            .any(|r| r.kind == kind && r.name == name)
    }
}

impl References for Stream {
    fn references(&self) -> Vec<Reference> {
        let spec = &self.spec;
        [
            (
                RefKind::Organization,
                "spec.organizationRef",
                &spec.organization_ref,
            ),
            (RefKind::Preset, "spec.presetRef", &spec.preset_ref),
        ]
        .into_iter()
        .filter_map(|(kind, field, name)| Reference::new(kind, field, name.as_deref()?))
        .collect()
    }
}

impl References for Organization {
    fn references(&self) -> Vec<Reference> {
        let spec = &self.spec;
        let presets = spec.preset_refs.iter().flatten();
        presets
            .filter_map(|p| Reference::new(RefKind::Preset, "spec.presetRefs", p))
            .chain(
                spec.default_preset_ref
                    .as_deref()
                    .and_then(|p| Reference::new(RefKind::Preset, "spec.defaultPresetRef", p)),
            )
            .chain(
                spec.owner_ref
                    .as_deref()
                    .and_then(|u| Reference::new(RefKind::User, "spec.ownerRef", u)),
            )
            .collect()
    }
}

impl References for User {
    fn references(&self) -> Vec<Reference> {
        self.spec
            .organizations
            .iter()
            .flatten()
            .filter_map(|m| {
                Reference::new(
                    RefKind::Organization,
                    "spec.organizations[].organizationRef",
                    &m.organization_ref,
                )
            })
            .collect()
    }
}

impl References for Preset {
    /// A Preset names nothing (Organizations and Streams name it).
    fn references(&self) -> Vec<Reference> {
        vec![]
    }
}

/// The references of `obj` that `exists` does not find, each (kind, name) once (at its first
/// field), in field order.
pub fn missing_references<K: References>(
    obj: &K,
    exists: impl Fn(RefKind, &str) -> bool,
) -> Vec<Reference> {
    let mut seen = BTreeSet::new();
    obj.references()
        .into_iter()
        .filter(|r| seen.insert((r.kind, r.name.clone())))
        .filter(|r| !exists(r.kind, &r.name))
        .collect()
}

/// The message of a `MissingReference` condition and Event, the same for every kind:
/// `Preset a, b not found (spec.presetRefs); User boss not found (spec.ownerRef)`.
pub fn missing_message(missing: &[Reference]) -> String {
    let mut parts: Vec<(RefKind, &'static str, Vec<&str>)> = vec![];
    for r in missing {
        match parts.last_mut() {
            Some((kind, field, names)) if *kind == r.kind && *field == r.field => {
                names.push(&r.name)
            }
            _ => parts.push((r.kind, r.field, vec![&r.name])),
        }
    }
    parts
        .iter()
        .map(|(kind, field, names)| {
            format!("{} {} not found ({field})", kind.as_str(), names.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::user::Membership;
    use crate::resources::{OrganizationSpec, StreamSpec, UserSpec};

    fn names(refs: &[Reference]) -> Vec<(RefKind, &str)> {
        refs.iter().map(|r| (r.kind, r.name.as_str())).collect()
    }

    #[test]
    fn every_kind_lists_every_reference() {
        let stream = Stream::new(
            "cam",
            StreamSpec {
                organization_ref: Some("city".into()),
                preset_ref: Some("gold".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            names(&stream.references()),
            [(RefKind::Organization, "city"), (RefKind::Preset, "gold")]
        );
        let org = Organization::new(
            "o",
            OrganizationSpec {
                title: "o".into(),
                owner_ref: Some("boss".into()),
                preset_refs: Some(vec!["a".into(), "".into(), "b".into()]),
                default_preset_ref: Some("a".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            names(&org.references()),
            [
                (RefKind::Preset, "a"),
                (RefKind::Preset, "b"),
                (RefKind::Preset, "a"),
                (RefKind::User, "boss")
            ]
        );
        let user: User = User::new(
            "u",
            UserSpec {
                name: "u".into(),
                organizations: Some(vec![Membership {
                    organization_ref: "city".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
        );
        assert_eq!(names(&user.references()), [(RefKind::Organization, "city")]);
        assert_eq!(org.referenced(RefKind::Preset), ["a", "b"]);
        assert!(org.refers_to(RefKind::User, "boss") && !org.refers_to(RefKind::Preset, "boss"));
        assert!(Preset::new("p", Default::default()).references().is_empty());
        assert!(
            Stream::new("s", StreamSpec::default())
                .references()
                .is_empty()
        );
    }

    #[test]
    fn missing_references_are_each_named_once_with_one_wording() {
        let org = Organization::new(
            "o",
            OrganizationSpec {
                title: "o".into(),
                owner_ref: Some("boss".into()),
                preset_refs: Some(vec!["a".into(), "gold".into(), "b".into()]),
                default_preset_ref: Some("a".into()),
                ..Default::default()
            },
        );
        let missing =
            missing_references(&org, |kind, name| kind == RefKind::Preset && name == "gold");
        assert_eq!(
            names(&missing),
            [
                (RefKind::Preset, "a"),
                (RefKind::Preset, "b"),
                (RefKind::User, "boss")
            ]
        );
        assert_eq!(
            missing_message(&missing),
            "Preset a, b not found (spec.presetRefs); User boss not found (spec.ownerRef)"
        );
        let stream = Stream::new(
            "cam",
            StreamSpec {
                organization_ref: Some("city-secruity".into()),
                ..Default::default()
            },
        );
        let missing = missing_references(&stream, |_, _| false);
        assert_eq!(
            missing_message(&missing),
            "Organization city-secruity not found (spec.organizationRef)"
        );
        assert!(missing_references(&stream, |_, _| true).is_empty());
    }
}
