//! Reconcilers, one module per kind, sharing a [`Context`].

pub mod conditions;
pub mod context;

pub use context::{Context, Tunables};
