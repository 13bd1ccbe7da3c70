//! Which Presets an Organization offers: read by the controllers (to requeue an organization
//! when a preset it lists changes) and by the facade (to list only the presets a user's
//! organization may use), so both agree on one rule.

use crate::resources::Organization;

/// Presets an organization offers (its `presetRefs` and `defaultPresetRef`; empty refs are
/// ignored, duplicates kept).
pub fn organization_presets(org: &Organization) -> Vec<String> {
    org.spec
        .preset_refs
        .iter()
        .flatten()
        .chain(org.spec.default_preset_ref.iter())
        .filter(|r| !r.is_empty())
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::OrganizationSpec;

    #[test]
    fn organization_presets_include_the_default_once_listed() {
        let org = Organization::new(
            "o",
            OrganizationSpec {
                title: "o".into(),
                preset_refs: Some(vec!["a".into(), "".into(), "b".into()]),
                default_preset_ref: Some("a".into()),
                ..Default::default()
            },
        );
        let mut p = organization_presets(&org);
        p.sort();
        p.dedup();
        assert_eq!(p, vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn an_organization_without_refs_offers_nothing() {
        let org = Organization::new("o", OrganizationSpec::default());
        assert!(organization_presets(&org).is_empty());
    }
}
