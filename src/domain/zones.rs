//! Zones: named groups of streamers that placement rules refer to.
//!
//! A zone exists on its own (a `Zone` object: its name, `is_dedicated`, who made it and when);
//! a Streamer joins zones by listing their names in `spec.zones`, and a stream's (or a
//! preset's) `layout_rules` name the zones it requires or prefers. The rules here are the ones
//! every writer of `layout_rules` applies (stream save, preset save, the bulk edits), so they
//! all answer the same: each named zone must be a valid zone name and must exist.

use crate::resources::wire::stream::LayoutRules;

/// Longest zone name (bytes); the CRD's CEL rule uses the same number.
pub const ZONE_NAME_MAX: usize = 64;

/// What the facade says about a bad zone name (the reference's `unix_name`).
pub const ZONE_NAME_RULE: &str = "zone names are 1-64 characters of A-Z a-z 0-9 _ - .";

/// Whether `name` is a valid zone name (`unix_name`, 1-64 bytes).
pub fn is_zone_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= ZONE_NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Checks the zones `rules` name: every one must be a valid zone name for which `exists` is
/// true (e.g. `|z| zones.contains(z)`). The error names the member and the zone, ready for a
/// Watcher error (`layout_rules.required_zones: zone `nowhere` does not exist`).
pub fn check_rules(rules: &LayoutRules, exists: impl Fn(&str) -> bool) -> Result<(), String> {
    for (member, zones) in [
        ("required_zones", &rules.required_zones),
        ("preferred_zones", &rules.preferred_zones),
    ] {
        for zone in zones.iter().flatten() {
            if !is_zone_name(zone) {
                return Err(format!(
                    "layout_rules.{member}: `{zone}` is not a zone name ({ZONE_NAME_RULE})"
                ));
            }
            if !exists(zone) {
                return Err(format!(
                    "layout_rules.{member}: zone `{zone}` does not exist (create it with PUT /zones/{zone})"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(required: &[&str], preferred: &[&str]) -> LayoutRules {
        let v = |l: &[&str]| Some(l.iter().map(|s| s.to_string()).collect());
        LayoutRules {
            required_zones: v(required),
            preferred_zones: v(preferred),
        }
    }

    #[test]
    fn zone_names_are_unix_names() {
        for ok in ["a", "East_1", "z.one-2", &"x".repeat(ZONE_NAME_MAX)] {
            assert!(is_zone_name(ok), "{ok}");
        }
        for bad in ["", "a b", "a/b", "ä", &"x".repeat(ZONE_NAME_MAX + 1)] {
            assert!(!is_zone_name(bad), "{bad}");
        }
    }

    #[test]
    fn every_named_zone_must_exist() {
        let known = |z: &str| ["east", "west"].contains(&z);
        assert_eq!(check_rules(&LayoutRules::default(), known), Ok(()));
        assert_eq!(check_rules(&rules(&["east"], &["west"]), known), Ok(()));
        let err = check_rules(&rules(&["east", "nowhere"], &[]), known).unwrap_err();
        assert!(
            err.contains("required_zones") && err.contains("`nowhere` does not exist"),
            "{err}"
        );
        let err = check_rules(&rules(&[], &["gone"]), known).unwrap_err();
        assert!(err.contains("preferred_zones") && err.contains("`gone`"), "{err}");
        let err = check_rules(&rules(&["a b"], &[]), |_| true).unwrap_err();
        assert!(err.contains("not a zone name"), "{err}");
    }
}
