//! Zones: named groups of streamers that placement rules refer to.
//!
//! A zone exists on its own (a `Zone` object: its name, `is_dedicated`, who made it and when);
//! a Streamer joins zones by listing their names in `spec.zones`, and a stream's (or a
//! preset's) `layout_rules` name the zones it requires or prefers. The rules here are the ones
//! every writer of `layout_rules` applies (stream save, preset save, the bulk edits), so they
//! all answer the same: each named zone must be a valid zone name and must exist.

use std::collections::BTreeMap;

use crate::resources::wire::stream::LayoutRules;
use crate::resources::{StreamSpec, StreamerSpec};

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

/// Who uses one zone (Watcher's `ZoneStats`, before rendering).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Hostnames of the streamers serving the zone, sorted.
    pub streamers: Vec<String>,
    /// Streams requiring the zone.
    pub required_streams: u32,
    /// Streams preferring the zone.
    pub preferred_streams: u32,
}

/// The usage of every zone named by `streamers` or `streams`, by zone name: one pass over
/// each (a zone list costs O(streams + streamers), not that per zone).
pub fn usage<'a>(
    streamers: impl IntoIterator<Item = &'a StreamerSpec>,
    streams: impl IntoIterator<Item = &'a StreamSpec>,
) -> BTreeMap<String, Usage> {
    let mut out: BTreeMap<String, Usage> = BTreeMap::new();
    for s in streamers {
        for z in s.zones.iter().flatten() {
            out.entry(z.clone())
                .or_default()
                .streamers
                .push(s.hostname.clone());
        }
    }
    for s in streams {
        let Some(rules) = &s.config.layout_rules else {
            continue;
        };
        for z in rules.required_zones.iter().flatten() {
            out.entry(z.clone()).or_default().required_streams += 1;
        }
        for z in rules.preferred_zones.iter().flatten() {
            out.entry(z.clone()).or_default().preferred_streams += 1;
        }
    }
    for u in out.values_mut() {
        u.streamers.sort();
        u.streamers.dedup();
    }
    out
}

/// Whether `rules` name `zone` (required or preferred).
pub fn names(rules: Option<&LayoutRules>, zone: &str) -> bool {
    rules.is_some_and(|r| {
        [&r.required_zones, &r.preferred_zones]
            .into_iter()
            .flatten()
            .flatten()
            .any(|z| z == zone)
    })
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
    fn usage_counts_members_and_rules_once_per_object() {
        let node = |h: &str, z: &[&str]| StreamerSpec {
            hostname: h.into(),
            zones: Some(z.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        let cam = |req: &[&str], pref: &[&str]| {
            let mut s = StreamSpec::default();
            s.config.layout_rules = Some(Box::new(rules(req, pref)));
            s
        };
        let nodes = [node("n2", &["east"]), node("n1", &["east", "west"])];
        let cams = [
            cam(&["east"], &["west"]),
            cam(&["east"], &[]),
            StreamSpec::default(),
        ];
        let u = usage(&nodes, &cams);
        assert_eq!(u["east"].streamers, ["n1", "n2"]);
        assert_eq!(
            (u["east"].required_streams, u["east"].preferred_streams),
            (2, 0)
        );
        assert_eq!(
            (u["west"].required_streams, u["west"].preferred_streams),
            (0, 1)
        );
        assert!(names(cams[0].config.layout_rules.as_deref(), "west"));
        assert!(!names(cams[2].config.layout_rules.as_deref(), "east"));
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
        assert!(
            err.contains("preferred_zones") && err.contains("`gone`"),
            "{err}"
        );
        let err = check_rules(&rules(&["a b"], &[]), |_| true).unwrap_err();
        assert!(err.contains("not a zone name"), "{err}");
    }
}
