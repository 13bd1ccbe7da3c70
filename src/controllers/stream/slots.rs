//! The rollout slots each node has: which cameras restart there now because a preset change
//! reached them ([`crate::domain::rollout`] decides; this holds the state).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::controllers::Context;
use crate::domain::rollout::{self, Budget, Restarting, Turn};

struct Slot {
    at: Instant,
    /// The node's list count when the slot was taken.
    lists: u64,
}

/// hostname → node stream name → its slot.
#[derive(Default)]
pub struct Slots {
    nodes: Mutex<HashMap<String, HashMap<String, Slot>>>,
}

impl Slots {
    /// `name`'s turn on `host` under `budget`, taking a slot when it is its turn. Restarts
    /// found over are released first.
    pub fn take(&self, ctx: &Context, host: &str, name: &str, budget: Budget) -> Turn {
        let lists = ctx.fleet.lists(host);
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let slots = nodes.entry(host.to_string()).or_default();
        slots.retain(|n, s| {
            let shown = ctx
                .live
                .stream(host, n)
                .map(|l| (l.alive(), l.connecting()));
            !rollout::restart_over(&Restarting {
                lists_since_push: lists.saturating_sub(s.lists),
                shown,
                held_for: s.at.elapsed(),
            })
        });
        let holds = slots.contains_key(name);
        let others = slots.len() - usize::from(holds);
        let turn = rollout::turn(budget, others, holds);
        if turn == Turn::Go {
            slots.insert(
                name.to_string(),
                Slot {
                    at: Instant::now(),
                    lists,
                },
            );
        }
        turn
    }

    /// Frees `name`'s slot on `host` (its push failed: nothing restarts).
    pub fn release(&self, host: &str, name: &str) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slots) = nodes.get_mut(host) {
            slots.remove(name);
        }
    }
}
