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
pub mod secrets;
pub mod stream;
pub mod streamer;
pub mod user;

pub use context::{Context, Tunables};
