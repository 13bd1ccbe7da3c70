//! The Watcher admin API facade.
pub mod query;
