//! Health rules of nodes (stream health is `domain::stream_health`): one rule for the
//! layouter, its change detection and the facade's previews.

// ---------------------------------------------------------------------------------------
// Node health for placement
// ---------------------------------------------------------------------------------------

use crate::state::NodeLive;

/// Whether the layouter may place streams on a node, from what this replica last learnt
/// about it (`None`: nothing yet).
///
/// A node never probed counts as placeable: the layouter's first run waits for every node's
/// first probe, a node added later is probed before a push to it matters, and a standby
/// replica (whose live cache stays empty until it leads) must preview what the leader lays
/// out. Once probed, the readiness probe decides (it implies the node answered).
pub fn node_placeable(live: Option<&NodeLive>) -> bool {
    live.is_none_or(|n| n.last_probe_ms == 0 || n.ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_placeable_until_a_probe_says_otherwise() {
        let probed = |reachable, ready| NodeLive {
            reachable,
            ready,
            last_probe_ms: 1,
            ..NodeLive::default()
        };
        let cases = [
            (None, true),
            (Some(NodeLive::default()), true),
            (Some(probed(true, true)), true),
            (Some(probed(true, false)), false),
            (Some(probed(false, false)), false),
        ];
        for (live, want) in cases {
            assert_eq!(node_placeable(live.as_ref()), want, "{live:?}");
        }
    }
}
