//! What "moved" means, for the three places that act on it: the fleet (which nodes lost
//! streams when a layout is installed), the Streamer controller (which copies a node list
//! shows out of place) and the Stream controller (which copies it removes).
//!
//! A stream moved off a node when it has a new home — an ingest node — that does not include
//! the node. A stream with no ingest node moved nowhere: it waits for a node (its only one is
//! down, or none fits), and a copy it still has keeps running until it has somewhere else to
//! run (make-before-break, with nothing made yet). So a short outage of the node a stream is
//! pinned to restarts nothing when the node returns; only disabling or deleting a stream
//! removes copies without a new home.

use crate::layout::Placement;

/// Where a stream should run.
#[derive(Clone, Copy, Debug)]
pub enum Wanted<'a> {
    /// Nowhere: disabled, deleted, or not placeable as declared (a name conflict, a missing
    /// preset). No node keeps a copy on its account.
    Nowhere,
    /// Where the layouter put it; with no ingest node, waiting for one.
    At(&'a Placement),
}

impl<'a> Wanted<'a> {
    /// Read from the layouter's output: its placement (every stream it was given has one)
    /// and whether it is unplaced. An enabled stream without an ingest node is always
    /// unplaced, so one that is not is disabled.
    pub fn from_layout(placement: Option<&'a Placement>, unplaced: bool) -> Self {
        match placement {
            Some(p) if p.ingest.is_some() || unplaced => Wanted::At(p),
            _ => Wanted::Nowhere,
        }
    }

    /// Whether a copy on `host` stays there: `host` is a node of the placement, or the
    /// stream is waiting for a node and has moved nowhere.
    pub fn keeps(&self, host: &str) -> bool {
        match self {
            Wanted::Nowhere => false,
            Wanted::At(p) => p.ingest.is_none() || on(p, host),
        }
    }
}

/// Whether `host` is a node of the placement (ingest or DVR backup).
fn on(placement: &Placement, host: &str) -> bool {
    placement.ingest.as_deref() == Some(host) || placement.dvr_backups.iter().any(|b| &**b == host)
}

/// The holders whose copies are removed now. `new_home_ready`: every node of the placement
/// holds the current config (copies go only after that, so the stream is never on no node).
pub fn copies_to_remove<'h>(
    wanted: Wanted<'_>,
    holders: &'h [String],
    new_home_ready: bool,
) -> Vec<&'h str> {
    if matches!(wanted, Wanted::At(_)) && !new_home_ready {
        return vec![];
    }
    holders
        .iter()
        .map(String::as_str)
        .filter(|h| !wanted.keeps(h))
        .collect()
}

/// A placement on these nodes, for tables of placements.
#[cfg(test)]
pub(crate) fn at(ingest: Option<&str>, backups: &[&str]) -> Placement {
    Placement {
        ingest: ingest.map(Into::into),
        dvr_backups: backups.iter().map(|b| (*b).into()).collect(),
        ..Placement::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_copies_go() {
        let holders = |hs: &[&str]| hs.iter().map(|h| h.to_string()).collect::<Vec<_>>();
        let on_a = at(Some("a"), &[]);
        let on_b = at(Some("b"), &[]);
        let on_b_backup_a = at(Some("b"), &["a"]);
        let waiting = at(None, &[]);
        // (what, wanted, holders, new home ready, removed)
        type Row<'a> = (&'a str, Wanted<'a>, &'a [&'a str], bool, &'a [&'a str]);
        let rows: Vec<Row> = vec![
            ("stays", Wanted::At(&on_a), &["a"], true, &[]),
            (
                "moved, new home ready",
                Wanted::At(&on_b),
                &["a", "b"],
                true,
                &["a"],
            ),
            (
                "moved, new home not ready",
                Wanted::At(&on_b),
                &["a", "b"],
                false,
                &[],
            ),
            (
                "demoted to a backup",
                Wanted::At(&on_b_backup_a),
                &["a", "b"],
                true,
                &[],
            ),
            // The outage of a pinned stream's only node: it waits, nothing moved.
            (
                "waiting for a node",
                Wanted::At(&waiting),
                &["a"],
                true,
                &[],
            ),
            (
                "waiting, copies on two nodes",
                Wanted::At(&waiting),
                &["a", "c"],
                true,
                &[],
            ),
            ("disabled", Wanted::Nowhere, &["a", "b"], false, &["a", "b"]),
            ("nobody holds it", Wanted::At(&on_b), &[], true, &[]),
        ];
        for (what, wanted, held, ready, want) in rows {
            let held = holders(held);
            assert_eq!(copies_to_remove(wanted, &held, ready), want, "{what}");
        }
    }

    #[test]
    fn a_node_keeps_what_did_not_move() {
        let on_b = at(Some("b"), &["c"]);
        let waiting = at(None, &[]);
        let placed = Wanted::from_layout(Some(&on_b), false);
        assert!(placed.keeps("b") && placed.keeps("c") && !placed.keeps("a"));
        let short = Wanted::from_layout(Some(&on_b), true);
        assert!(short.keeps("b") && !short.keeps("a"), "missing a backup");
        assert!(
            Wanted::from_layout(Some(&waiting), true).keeps("a"),
            "waiting"
        );
        assert!(
            !Wanted::from_layout(Some(&waiting), false).keeps("a"),
            "disabled"
        );
        assert!(
            !Wanted::from_layout(None, false).keeps("a"),
            "gone or blocked"
        );
        assert!(!Wanted::Nowhere.keeps("a"));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;
        use proptest::test_runner::FileFailurePersistence;

        const HOSTS: [&str; 5] = ["a", "b", "c", "d", "e"];

        fn host() -> impl Strategy<Value = &'static str> {
            proptest::sample::select(HOSTS.to_vec())
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
                ..ProptestConfig::default()
            })]

            /// Make-before-break and "a stream that stays is never removed", for any holders.
            #[test]
            fn a_node_of_the_placement_never_loses_its_copy(
                ingest in proptest::option::of(host()),
                backups in proptest::sample::subsequence(HOSTS.to_vec(), 0..3),
                holders in proptest::sample::subsequence(HOSTS.to_vec(), 0..5),
                ready: bool,
            ) {
                let p = at(ingest, &backups);
                let holders: Vec<String> = holders.iter().map(|h| h.to_string()).collect();
                let gone = copies_to_remove(Wanted::At(&p), &holders, ready);
                for h in &gone {
                    prop_assert!(ingest != Some(*h) && !backups.contains(h), "{h} is in {p:?}");
                }
                if ingest.is_none() || !ready {
                    prop_assert!(gone.is_empty(), "nothing moved, or the new home is not ready");
                } else {
                    let stays = holders.iter().filter(|h| Wanted::At(&p).keeps(h)).count();
                    prop_assert_eq!(gone.len() + stays, holders.len());
                }
            }
        }
    }
}
