//! The names of an installation's own objects in its system namespace.
//!
//! Two Helm releases may share one system namespace (two teams, two namespace sets, one
//! `panoptes-system`). Every object the operator and the facade create or claim there is
//! therefore named after the installation (`--instance`, the chart's fullname), so neither
//! release reads the other's signing key, settings or leader Lease, nor takes the other's
//! Watcher ids. The default instance `panoptes` gives the names earlier versions used, so an
//! install upgraded with its release named `panoptes` finds its objects again.
//!
//! Ids are per installation, not per cluster: a Watcher facade numbers its own Users,
//! Presets and Organizations (two Watcher servers both have a user 1), each release sees only
//! the objects in its own scope, and a release's sweep of stale claims must never judge the
//! other's claims by objects it cannot see. Shards of one installation run as releases with
//! one instance name (the chart's `instanceName`): they share ids, keys and settings, and
//! each shard still elects its own leader (`<instance>-leader-<shard>`).

use std::fmt;

/// The installation name every system object's name derives from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Instance(String);

/// The instance of an installation that names none (and of every install before names
/// derived from the release).
pub const DEFAULT_INSTANCE: &str = "panoptes";

/// Label on an id claim: the instance whose id space it belongs to.
pub const INSTANCE_LABEL: &str = "panoptes.dev/instance";

/// Longest instance name: a DNS label, so it fits a label value and leaves every derived
/// name (`<instance>-id-organization-2147483647`) a valid object name.
const MAX_LEN: usize = 63;

impl Default for Instance {
    fn default() -> Self {
        Self(DEFAULT_INSTANCE.into())
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Instance {
    type Err = String;

    /// A DNS-1123 label (what Helm's fullname is): lower-case letters, digits and `-`,
    /// starting and ending with a letter or digit, at most 63 characters.
    fn from_str(s: &str) -> Result<Self, String> {
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if s.is_empty() || s.len() > MAX_LEN {
            return Err(format!("must be 1 to {MAX_LEN} characters"));
        }
        if !s.chars().all(ok_char) || s.starts_with('-') || s.ends_with('-') {
            return Err(
                "must be lower-case letters, digits and '-', starting and ending with a letter or digit"
                    .into(),
            );
        }
        Ok(Self(s.into()))
    }
}

impl Instance {
    /// The name itself.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Secret with the facade's JWT signing key and digest key.
    pub fn jwt_secret(&self) -> String {
        format!("{}-jwt", self.0)
    }

    /// ConfigMap (domain and system settings) and Secret (SMTP password) of the facade's
    /// settings.
    pub fn settings(&self) -> String {
        format!("{}-settings", self.0)
    }

    /// Secret with the key of the peer channel between replicas.
    pub fn peer_key(&self) -> String {
        format!("{}-peer-key", self.0)
    }

    /// The leader Lease; each shard elects its own.
    pub fn leader_lease(&self, shard: Option<&str>) -> String {
        match shard {
            Some(shard) => format!("{}-leader-{shard}", self.0),
            None => format!("{}-leader", self.0),
        }
    }

    /// Prefix of the id claims (`<prefix><kind>-<id>`).
    pub fn id_claim_prefix(&self) -> String {
        format!("{}-id-", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_instance_keeps_the_names_of_earlier_versions() {
        let i = Instance::default();
        assert_eq!(i.jwt_secret(), "panoptes-jwt");
        assert_eq!(i.settings(), "panoptes-settings");
        assert_eq!(i.peer_key(), "panoptes-peer-key");
        assert_eq!(i.leader_lease(None), "panoptes-leader");
        assert_eq!(i.leader_lease(Some("eu")), "panoptes-leader-eu");
        assert_eq!(i.id_claim_prefix(), "panoptes-id-");
    }

    #[test]
    fn two_instances_share_no_name() {
        let a: Instance = "team-a-panoptes".parse().unwrap();
        let b = Instance::default();
        for (x, y) in [
            (a.jwt_secret(), b.jwt_secret()),
            (a.settings(), b.settings()),
            (a.peer_key(), b.peer_key()),
            (a.leader_lease(None), b.leader_lease(None)),
            (a.id_claim_prefix(), b.id_claim_prefix()),
        ] {
            assert_ne!(x, y);
        }
    }

    #[test]
    fn instance_names_are_dns_labels() {
        for ok in ["panoptes", "a", "team-a-panoptes", &"x".repeat(63)] {
            assert!(ok.parse::<Instance>().is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"x".repeat(64)] {
            assert!(bad.parse::<Instance>().is_err(), "{bad:?}");
        }
    }
}
