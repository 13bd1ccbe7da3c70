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
    /// Disabled: on no node.
    Nowhere,
    /// Where the layouter put it (perhaps nowhere yet).
    At(&'a Placement),
}

/// Whether `host` is a node of the placement (ingest or DVR backup).
fn on(placement: &Placement, host: &str) -> bool {
    placement.ingest.as_deref() == Some(host) || placement.dvr_backups.iter().any(|b| &**b == host)
}

/// Whether a copy of a stream on `host` stays there. `None`: the stream has no placement at
/// all (deleted, disabled, or not placeable as declared), so no node keeps it on its account.
pub fn keeps(placement: Option<&Placement>, host: &str) -> bool {
    placement.is_some_and(|p| p.ingest.is_none() || on(p, host))
}

/// The holders whose copies are removed now. `new_home_ready`: every node of the placement
/// holds the current config (copies go only after that, so the stream is never on no node).
pub fn copies_to_remove<'h>(
    wanted: Wanted<'_>,
    holders: &'h [String],
    new_home_ready: bool,
) -> Vec<&'h str> {
    match wanted {
        Wanted::Nowhere => holders.iter().map(String::as_str).collect(),
        Wanted::At(_) if !new_home_ready => vec![],
        Wanted::At(p) => holders
            .iter()
            .map(String::as_str)
            .filter(|h| !keeps(Some(p), h))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ingest: Option<&str>, backups: &[&str]) -> Placement {
        Placement {
            ingest: ingest.map(Into::into),
            dvr_backups: backups.iter().map(|b| (*b).into()).collect(),
            ..Placement::default()
        }
    }

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
        assert!(keeps(Some(&on_b), "b"));
        assert!(keeps(Some(&on_b), "c"));
        assert!(!keeps(Some(&on_b), "a"));
        assert!(keeps(Some(&waiting), "a"));
        assert!(
            !keeps(None, "a"),
            "no placement at all: gone, disabled or blocked"
        );
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
                    let stays = holders.iter().filter(|h| keeps(Some(&p), h)).count();
                    prop_assert_eq!(gone.len() + stays, holders.len());
                }
            }
        }
    }
}
