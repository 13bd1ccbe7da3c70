//! The pace of a preset change over running cameras. A node restarts a camera whose config
//! changes, so a preset change that reaches 10,000 cameras would restart them all at once; it
//! restarts at most a budget per node at a time instead (the Preset's
//! `spec.rollout.maxRestartingPerNode`, else the operator's `--rollout-per-node`), and
//! `spec.rollout.paused` holds it. Pure: the Stream controller brings the facts.
//!
//! A camera's restart is over once a list of its node taken wholly after the push shows it
//! running again, or failing (a broken camera must not hold the rollout up), or no longer
//! shows it (deleted, disabled or moved: nothing restarts there), and after [`MAX_HOLD`] in
//! any case.

use std::time::Duration;

use crate::resources::PresetRollout;

/// A restart holds its node's slot at most this long.
pub const MAX_HOLD: Duration = Duration::from_secs(60);

/// A preset's rollout budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Cameras restarting at once on one node.
    pub per_node: usize,
    /// The change is held.
    pub paused: bool,
}

impl Budget {
    /// The budget `rollout` sets, with the operator's `default` per node.
    pub fn of(rollout: Option<&PresetRollout>, default: u32) -> Self {
        let per_node = rollout
            .and_then(|r| r.max_restarting_per_node)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(default as usize)
            .max(1);
        Self {
            per_node,
            paused: rollout.and_then(|r| r.paused).unwrap_or(false),
        }
    }
}

/// Whether a push to a node counts against the rollout budget: a preset's change reaching a
/// camera the node runs. A new camera, a camera whose own spec changed (its owner asked for
/// that change now) and the repair of a hand edit on the node go at once.
pub fn budgeted(has_preset: bool, node_runs_it: bool, own_edit: bool, repair: bool) -> bool {
    has_preset && node_runs_it && !own_edit && !repair
}

/// What a node says of one camera holding a slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restarting {
    /// Lists of the node finished since the push (the first may have been under way).
    pub lists_since_push: u64,
    /// How the last list showed the camera: `None` not listed, else (alive, connecting).
    pub shown: Option<(bool, bool)>,
    /// Time since the push.
    pub held_for: Duration,
}

/// Whether the restart is over and its slot free.
pub fn restart_over(r: &Restarting) -> bool {
    if r.held_for >= MAX_HOLD {
        return true;
    }
    // The first list to finish after the push may have been sent before it. A node lists
    // every stream it is configured with, restarting or not: one a later list lacks left the
    // node, and holding its slot until MAX_HOLD stalled the node's rollout for a minute.
    r.lists_since_push >= 2
        && r.shown
            .is_none_or(|(alive, connecting)| alive || !connecting)
}

/// A camera's turn on its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// Push now (it holds a slot until its restart is over).
    Go,
    /// Every slot is taken: `restarting` cameras restart there now.
    Wait { restarting: usize, budget: usize },
    /// The preset's rollout is paused.
    Paused,
}

/// The turn of a camera on a node where `restarting` cameras (not counting it) hold slots;
/// `holds` = it holds one already (a retried push keeps its slot).
pub fn turn(budget: Budget, restarting: usize, holds: bool) -> Turn {
    if budget.paused {
        // Even for a camera holding a slot: its slot was for an earlier change.
        Turn::Paused
    } else if holds || restarting < budget.per_node {
        Turn::Go
    } else {
        Turn::Wait {
            restarting,
            budget: budget.per_node,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preset_sets_the_budget_else_the_operator() {
        let r = |n: Option<i32>, paused: Option<bool>| PresetRollout {
            max_restarting_per_node: n,
            paused,
        };
        assert_eq!(
            Budget::of(None, 10),
            Budget {
                per_node: 10,
                paused: false
            }
        );
        assert_eq!(Budget::of(Some(&r(Some(3), None)), 10).per_node, 3);
        assert_eq!(Budget::of(Some(&r(None, Some(true))), 10).per_node, 10);
        assert!(Budget::of(Some(&r(None, Some(true))), 10).paused);
        assert_eq!(Budget::of(Some(&r(Some(0), None)), 10).per_node, 1);
        assert_eq!(Budget::of(Some(&r(Some(-4), None)), 7).per_node, 7);
    }

    #[test]
    fn only_a_preset_change_over_a_running_camera_is_budgeted() {
        #[rustfmt::skip]
        let rows = [
            // has_preset, node_runs_it, own_edit, repair → budgeted
            ((true, true, false, false), true),
            ((false, true, false, false), false),
            ((true, false, false, false), false),
            ((true, true, true, false), false),
            ((true, true, false, true), false),
        ];
        for ((p, r, e, d), want) in rows {
            assert_eq!(budgeted(p, r, e, d), want, "{p} {r} {e} {d}");
        }
    }

    #[test]
    fn a_restart_is_over_when_a_later_list_shows_it_running_or_failing() {
        let at = |lists, shown, secs| Restarting {
            lists_since_push: lists,
            shown,
            held_for: Duration::from_secs(secs),
        };
        #[rustfmt::skip]
        let rows = [
            ("no list yet", at(0, Some((true, false)), 1), false),
            ("the list under way at the push", at(1, Some((true, false)), 1), false),
            ("running again", at(2, Some((true, false)), 1), true),
            ("still connecting", at(2, Some((false, true)), 1), false),
            ("failing: no frames, not connecting", at(2, Some((false, false)), 1), true),
            ("not listed yet", at(1, None, 1), false),
            ("gone from the node: deleted, disabled or moved", at(2, None, 1), true),
            ("held too long", at(0, None, 60), true),
        ];
        for (what, r, over) in rows {
            assert_eq!(restart_over(&r), over, "{what}");
        }
    }

    #[test]
    fn turns() {
        let b = |per_node, paused| Budget { per_node, paused };
        assert_eq!(turn(b(2, false), 0, false), Turn::Go);
        assert_eq!(turn(b(2, false), 1, false), Turn::Go);
        assert_eq!(
            turn(b(2, false), 2, false),
            Turn::Wait {
                restarting: 2,
                budget: 2
            }
        );
        assert_eq!(turn(b(2, false), 2, true), Turn::Go, "a slot held is kept");
        assert_eq!(turn(b(2, true), 0, false), Turn::Paused);
        assert_eq!(turn(b(2, true), 0, true), Turn::Paused);
    }
}
