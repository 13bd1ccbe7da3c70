//! Whether a stream is healthy: one verdict that the Stream controller turns into its `Ready`
//! condition and the facade into the stream's status in `/cluster/stats`, so kubectl and the
//! Watcher API never disagree about a camera.
//!
//! The verdict is read from the ingest node's last report of the stream. An on-demand stream
//! (`static: false`) that the node lists but that is not receiving frames is idle — it starts
//! when a viewer connects — and idle is healthy: `Ready=True (OnDemand)`, `operational`.

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::wire::StreamStats;

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
