//! Whether a stream is healthy: one verdict that the Stream controller turns into its `Ready`
//! condition and the facade into the stream's status in `/cluster/stats`, so kubectl and the
//! Watcher API never disagree about a camera.
//!
//! The verdict is read from the ingest node's last report of the stream. An on-demand stream
//! (`static: false`) that the node lists but that is not receiving frames is idle — it starts
//! when a viewer connects — and idle is healthy: `Ready=True (OnDemand)`, `operational`.

use std::time::Duration;

use crate::resources::wire::StreamConfigSpec;
use crate::state::StreamLive;

/// The stream runs only while someone watches it. Only the stream's own `static: false`
/// asks for that (presets do not set it; an absent `static` is pushed as `true`).
pub fn on_demand(config: &StreamConfigSpec) -> bool {
    config.static_ == Some(false)
}

/// What is known about one stream when it is judged.
#[derive(Clone, Copy, Debug, Default)]
pub struct Facts<'a> {
    /// The stream is disabled: it should run nowhere.
    pub disabled: bool,
    /// Its ingest node, if placed.
    pub ingest: Option<&'a str>,
    /// The current config is on the ingest node. The controller knows this from its pushes;
    /// the facade, which pushes nothing, takes the node's listing of the stream as the fact.
    pub synced: bool,
    /// The ingest node's last report of the stream (`None`: not listed there).
    pub live: Option<&'a StreamLive>,
    /// See [`on_demand`].
    pub on_demand: bool,
}

/// The verdict, most decisive first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamHealth<'a> {
    /// Switched off on purpose.
    Disabled,
    /// No ingest node.
    NotScheduled,
    /// The ingest node does not hold the current config yet.
    NotSynced,
    /// Pushed, but the ingest node has not listed the stream yet, or lists it still connecting
    /// (`status: waiting`, no source error): a camera takes a second or two to answer.
    Starting,
    /// Receiving frames (perhaps with a source error the node still reports).
    Alive { source_error: Option<&'a str> },
    /// On demand and idle: it starts when a viewer connects.
    OnDemand,
    /// Listed but receiving no frames.
    NotAlive { source_error: Option<&'a str> },
}

impl StreamHealth<'_> {
    /// Healthy: the stream does what was asked of it (`Ready=True`).
    pub fn ready(&self) -> bool {
        matches!(self, Self::Alive { .. } | Self::OnDemand)
    }

    /// What the node says about frames, when it said anything (`status.alive`).
    pub fn alive(&self) -> Option<bool> {
        match self {
            Self::Alive { .. } => Some(true),
            Self::OnDemand | Self::NotAlive { .. } => Some(false),
            _ => None,
        }
    }
}

/// Judges one stream.
pub fn judge<'a>(f: &Facts<'a>) -> StreamHealth<'a> {
    if f.disabled {
        return StreamHealth::Disabled;
    }
    if f.ingest.is_none() {
        return StreamHealth::NotScheduled;
    }
    if !f.synced {
        return StreamHealth::NotSynced;
    }
    let Some(live) = f.live else {
        return StreamHealth::Starting;
    };
    let source_error = live.stats.as_ref().and_then(|s| s.source_error.as_deref());
    if live.alive() {
        StreamHealth::Alive { source_error }
    } else if f.on_demand {
        StreamHealth::OnDemand
    } else if source_error.is_none() && live.connecting() {
        // Judging this NotAlive made every new camera write NotAlive, then Alive a moment
        // later: two status writes and a Warning per camera of a bulk apply.
        StreamHealth::Starting
    } else {
        StreamHealth::NotAlive { source_error }
    }
}

/// Lists of the ingest node that must finish after a push before `Ready=Starting` is worth
/// writing: the first may have been requested before the push.
pub const STARTING_LISTS: u64 = 2;

/// A freshly pushed stream its ingest node has not shown running yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unconfirmed {
    /// Time since the stream was first judged `Starting` (about its push).
    pub held_for: Duration,
    /// Lists of the ingest node finished since then.
    pub lists_since: u64,
    /// How often the node is listed now ([`crate::domain::health::list_interval`]).
    pub list_interval: Duration,
    /// How far apart the node's lists actually are (`None`: not known yet).
    pub node_list_period: Option<Duration>,
}

/// Longest a `Ready=Starting` is held back, however late the node's lists are.
pub const STARTING_HOLD_CAP: Duration = Duration::from_secs(300);

/// How much longer to hold back a `Ready=Starting` status, `None`: write it now.
///
/// The node's next list usually shows a new camera alive, and the status written then says it
/// all in one write; writing `Starting` first is a second status patch per camera of a bulk
/// apply, for a state that lasts one list. So `Starting` waits for [`STARTING_LISTS`] lists
/// of the node and at least `floor` (a camera takes seconds to answer). Past the list budget
/// a node is listed every 20 s at 100,000 streams: a grace counted in probe resyncs (10 s)
/// ran out before the first list, and most cameras were written twice. The two lists may
/// take longer than the interval says: a node whose lists lag behind it (1.3 % of lists came
/// more than 80 s apart during a 100,000-camera apply, when twice the grace was the bound
/// and a quarter of the cameras were written twice) holds it for twice the grace its own
/// pace gives, and at most [`STARTING_HOLD_CAP`], so a camera that never answers still reads
/// `Starting` in bounded time.
pub fn starting_hold(u: Unconfirmed, floor: Duration) -> Option<Duration> {
    let grace = floor.max(u.list_interval * STARTING_LISTS as u32);
    if let Some(left) = grace.checked_sub(u.held_for).filter(|d| !d.is_zero()) {
        return Some(left);
    }
    let pace = u.list_interval.max(u.node_list_period.unwrap_or_default());
    let ceiling = (grace.max(pace * STARTING_LISTS as u32) * 2).min(STARTING_HOLD_CAP.max(grace));
    if u.lists_since >= STARTING_LISTS || u.held_for >= ceiling {
        return None;
    }
    Some(pace.min(ceiling - u.held_for))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::wire::StreamStats;

    #[test]
    fn starting_waits_for_two_lists_of_the_node_and_the_floor() {
        let s = Duration::from_secs;
        let floor = s(10);
        // (held for, lists since, list interval) → hold, the node listed on time
        let rows = [
            // Lists every 5 s (within the budget): the floor decides.
            (s(0), 0, s(5), Some(s(10))),
            (s(4), 2, s(5), Some(s(6))),
            (s(10), 2, s(5), None),
            // One list done, the second late: one more interval, not more.
            (s(10), 1, s(5), Some(s(5))),
            (s(18), 1, s(5), Some(s(2))),
            (s(20), 1, s(5), None),
            // Listed every 20 s (100,000 streams): the grace is two lists, not 10 s.
            (s(10), 0, s(20), Some(s(30))),
            (s(39), 1, s(20), Some(s(1))),
            (s(40), 2, s(20), None),
            (s(40), 1, s(20), Some(s(20))),
            (s(70), 0, s(20), Some(s(10))),
            (s(80), 0, s(20), None),
        ];
        for (held_for, lists_since, list_interval, want) in rows {
            for node_list_period in [None, Some(list_interval)] {
                let u = Unconfirmed {
                    held_for,
                    lists_since,
                    list_interval,
                    node_list_period,
                };
                assert_eq!(starting_hold(u, floor), want, "{u:?}");
            }
        }
        // (held for, lists since, the node's list period) → hold; lists due every 20 s
        let late = [
            // Lists 60 s apart: the grace its pace gives is 120 s, held twice that.
            (s(80), 1, s(60), Some(s(60))),
            (s(200), 1, s(60), Some(s(40))),
            (s(240), 1, s(60), None),
            (s(100), 2, s(60), None),
            // Stalled lists: never past the cap.
            (s(290), 0, s(600), Some(s(10))),
            (s(300), 0, s(600), None),
        ];
        for (held_for, lists_since, period, want) in late {
            let u = Unconfirmed {
                held_for,
                lists_since,
                list_interval: s(20),
                node_list_period: Some(period),
            };
            assert_eq!(starting_hold(u, floor), want, "{u:?}");
        }
    }

    fn live(alive: Option<bool>, error: Option<&str>) -> StreamLive {
        StreamLive {
            stats: Some(StreamStats {
                alive,
                source_error: error.map(String::from),
                ..StreamStats::default()
            }),
            managed: true,
        }
    }

    #[test]
    fn verdicts() {
        let alive = live(Some(true), None);
        let erring = live(Some(true), Some("timeout"));
        let dead = live(Some(false), Some("404"));
        let never_ran = StreamLive::default();
        let with_status = |status: &str, error: Option<&str>| {
            let mut l = live(Some(false), error);
            if let Some(s) = l.stats.as_mut() {
                s.status = Some(status.into());
            }
            l
        };
        let connecting = with_status("waiting", None);
        let failing = with_status("waiting", Some("econnrefused"));
        let base = Facts {
            disabled: false,
            ingest: Some("n1"),
            synced: true,
            live: Some(&alive),
            on_demand: false,
        };
        use StreamHealth::*;
        let rows: Vec<(Facts, StreamHealth, bool)> = vec![
            (base, Alive { source_error: None }, true),
            (
                Facts {
                    live: Some(&erring),
                    ..base
                },
                Alive {
                    source_error: Some("timeout"),
                },
                true,
            ),
            (
                Facts {
                    on_demand: true,
                    ..base
                },
                Alive { source_error: None },
                true,
            ),
            // The divergence this module closes: idle on demand is healthy.
            (
                Facts {
                    live: Some(&dead),
                    on_demand: true,
                    ..base
                },
                OnDemand,
                true,
            ),
            (
                Facts {
                    live: Some(&never_ran),
                    on_demand: true,
                    ..base
                },
                OnDemand,
                true,
            ),
            (
                Facts {
                    live: Some(&dead),
                    ..base
                },
                NotAlive {
                    source_error: Some("404"),
                },
                false,
            ),
            (
                Facts {
                    live: Some(&never_ran),
                    ..base
                },
                NotAlive { source_error: None },
                false,
            ),
            (
                Facts {
                    live: None,
                    on_demand: true,
                    ..base
                },
                Starting,
                false,
            ),
            (
                Facts {
                    live: Some(&connecting),
                    ..base
                },
                Starting,
                false,
            ),
            (
                Facts {
                    live: Some(&connecting),
                    on_demand: true,
                    ..base
                },
                OnDemand,
                true,
            ),
            (
                Facts {
                    live: Some(&failing),
                    ..base
                },
                NotAlive {
                    source_error: Some("econnrefused"),
                },
                false,
            ),
            (
                Facts {
                    synced: false,
                    ..base
                },
                NotSynced,
                false,
            ),
            (
                Facts {
                    ingest: None,
                    ..base
                },
                NotScheduled,
                false,
            ),
            (
                Facts {
                    disabled: true,
                    ingest: None,
                    live: None,
                    ..base
                },
                Disabled,
                false,
            ),
            (
                Facts {
                    disabled: true,
                    ..base
                },
                Disabled,
                false,
            ),
        ];
        for (facts, want, ready) in rows {
            let got = judge(&facts);
            assert_eq!(got, want, "{facts:?}");
            assert_eq!(got.ready(), ready, "{facts:?}");
        }
    }

    #[test]
    fn alive_is_what_the_node_said() {
        let dead = live(Some(false), None);
        let f = Facts {
            ingest: Some("n1"),
            synced: true,
            live: Some(&dead),
            ..Facts::default()
        };
        assert_eq!(judge(&f).alive(), Some(false));
        assert_eq!(
            judge(&Facts {
                on_demand: true,
                ..f
            })
            .alive(),
            Some(false)
        );
        assert_eq!(judge(&Facts { live: None, ..f }).alive(), None);
    }

    #[test]
    fn only_an_explicit_static_false_is_on_demand() {
        let mut c = StreamConfigSpec::default();
        assert!(!on_demand(&c));
        c.static_ = Some(true);
        assert!(!on_demand(&c));
        c.static_ = Some(false);
        assert!(on_demand(&c));
    }
}
