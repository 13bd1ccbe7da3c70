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

/// Streamer status writes per second across all nodes that only update the stream counts
/// (`assignedStreams`, `dvrBackupStreams`), at most ([`counts_due`]).
pub const COUNT_WRITES_PER_SECOND: u32 = 10;

/// How long a node's count-only status change may wait after its last status write: every
/// `resync` in a small fleet, longer once `nodes` written every resync exceed `per_second`.
/// During a bulk apply of 100,000 cameras every node's counts change at every resync: at
/// 1,000 nodes that was 57,000 Streamer status patches in the apply (one per 1.7 cameras
/// created), a third of the API server's writes, taken from the creates, and each held one
/// of the Streamer controller's reconcile slots for the patch's latency, so node lists fell
/// behind their interval.
pub fn counts_period(resync: Duration, nodes: usize, per_second: u32) -> Duration {
    let budgeted = Duration::from_secs_f64(nodes as f64 / f64::from(per_second.max(1)));
    resync.max(budgeted)
}

/// Resyncs a node's stream counts stay the same before a deferred count is written anyway
/// ([`counts_due`]).
pub const COUNTS_SETTLE_RESYNCS: u32 = 2;

/// Whether a Streamer status change that only moves its stream counts is written now.
/// `since_written`: time since the status was last written (`None`: unknown or never);
/// `stable_for`: how long the counts have read as they do now; `period`: [`counts_period`].
///
/// Any other change is written at once and carries the counts with it. A count-only change
/// is written once the last write is a `period` old, or once the counts settled for
/// [`COUNTS_SETTLE_RESYNCS`] resyncs: so while a bulk apply moves every node's counts at
/// every resync a node's status is written once per period, and the final counts follow
/// within a few resyncs of the apply's end instead of a period later (the API server is
/// quiet soon after the last create). A reconcile comes every `resync`, jittered up to
/// 10 % early, so a write due within that tenth is taken now rather than a resync later.
pub fn counts_due(
    since_written: Option<Duration>,
    stable_for: Duration,
    period: Duration,
    resync: Duration,
) -> bool {
    let reached = |elapsed: Duration, wanted: Duration| elapsed + resync / 10 >= wanted;
    since_written.is_none_or(|t| reached(t, period))
        || reached(stable_for, resync * COUNTS_SETTLE_RESYNCS)
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

    #[test]
    fn count_only_writes_wait_for_their_period() {
        let s = Duration::from_secs;
        // (resync, nodes) → period, with the default budget
        let periods = [
            (s(5), 0, s(5)),
            (s(5), 10, s(5)),
            (s(5), 50, s(5)),
            (s(5), 100, s(10)),
            (s(5), 1_000, s(100)),
            (Duration::from_millis(500), 3, Duration::from_millis(500)),
        ];
        for (resync, nodes, want) in periods {
            assert_eq!(
                counts_period(resync, nodes, COUNT_WRITES_PER_SECOND),
                want,
                "{nodes}"
            );
        }
        assert_eq!(
            counts_period(s(5), 100, 0),
            s(100),
            "a zero budget is one per second"
        );
        // (time since the last write, counts stable for, period) → write now; resync 5 s
        let due = [
            (None, s(0), s(100), true),
            (Some(s(0)), s(0), s(100), false),
            (Some(s(89)), s(5), s(100), false),
            (Some(s(99)), s(5), s(100), false),
            (Some(Duration::from_millis(99_500)), s(0), s(100), true),
            (Some(s(400)), s(0), s(100), true),
            // Settled for two resyncs (one jittered early): written before the period.
            (Some(s(20)), Duration::from_millis(9_500), s(100), true),
            (Some(s(20)), s(9), s(100), false),
            // Within the budget the period is the resync: every reconcile may write.
            (Some(s(4)), s(0), s(5), false),
            (Some(Duration::from_millis(4_500)), s(0), s(5), true),
        ];
        for (since, stable, period, want) in due {
            assert_eq!(
                counts_due(since, stable, period, s(5)),
                want,
                "{since:?} {stable:?} {period:?}"
            );
        }
    }
}
