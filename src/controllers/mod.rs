//! Reconcilers, one module per kind, sharing a [`Context`].

pub mod conditions;
pub mod context;
pub mod credentials;
pub mod destinations;
pub mod fleet;
pub mod ids;
pub mod kit;
pub mod layouter;
pub mod leader;
pub mod metrics;
pub mod organization;
pub mod preset;
pub mod refs;
pub mod stream;
pub mod streamer;
pub mod user;

pub use context::{Context, Tunables};

use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinSet;

/// Spawns every reconciler of one operator instance into `tasks`, each stopping when its
/// `shutdown()` future resolves: the Preset, Organization and User controllers when
/// `shared` (in a sharded installation exactly one shard runs them), then the Streamer and
/// Stream controllers and the layouter. `panoptes run` and the tests' in-process operator
/// start the same set.
pub fn spawn_all<S>(
    ctx: &Arc<Context>,
    shutdown: impl Fn() -> S,
    shared: bool,
    tasks: &mut JoinSet<()>,
) where
    S: Future<Output = ()> + Send + 'static,
{
    if shared {
        tasks.spawn(preset::run(ctx.clone(), shutdown()));
        tasks.spawn(organization::run(ctx.clone(), shutdown()));
        tasks.spawn(user::run(ctx.clone(), shutdown()));
    }
    tasks.spawn(streamer::run(ctx.clone(), shutdown()));
    tasks.spawn(stream::run(ctx.clone(), shutdown()));
    tasks.spawn(layouter::run(ctx.clone(), shutdown()));
}
