//! Reconcilers, one module per kind, sharing a [`Context`].

pub mod conditions;
pub mod context;
pub mod ids;
pub mod organization;
pub mod preset;
pub mod refs;
pub mod user;

pub use context::{Context, Tunables};
