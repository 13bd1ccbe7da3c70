//! Health rules of nodes (stream health is `domain::stream_health`): one rule for the
//! layouter, its change detection and the facade's previews.

// ---------------------------------------------------------------------------------------
// Node health for placement
// ---------------------------------------------------------------------------------------

use std::time::Duration;

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

/// How often each node's streams are listed: every `resync` (with its probe) until the
/// fleet's streams exceed what `per_second` streams listed per second allows, then as often
/// as that budget allows. A list is every stream's config and stats parsed: at 100,000
/// streams on 1,000 nodes a list per node every 5 s was 20,000 streams parsed per second,
/// most of the operator's CPU at rest, and the Streamer controller fell so far behind that
/// 400 nodes never got a client (`make bench-100k`). Probes, which detect a dead node, stay
/// at `resync`; what slows is the liveness of single streams and drift repair.
pub fn list_interval(resync: Duration, streams: usize, per_second: u32) -> Duration {
    let budgeted = Duration::from_secs_f64(streams as f64 / f64::from(per_second.max(1)));
    resync.max(budgeted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_slow_down_only_past_the_budget() {
        let s = Duration::from_secs;
        let cases = [
            (0, s(5)),
            (10_000, s(5)),
            (25_000, s(5)),
            (50_000, s(10)),
            (100_000, s(20)),
            (1_000_000, s(200)),
        ];
        for (streams, want) in cases {
            assert_eq!(list_interval(s(5), streams, 5_000), want, "{streams}");
        }
        assert_eq!(
            list_interval(s(5), 100, 0),
            s(100),
            "a zero budget is one per second"
        );
    }

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
