//! Panoptes: a Kubernetes operator that runs a Flussonic Watcher-style video surveillance
//! system from declarative cluster state.

pub mod api;
pub mod controllers;
pub mod domain;
pub mod events;
pub mod flussonic;
pub mod heap;
pub mod http;
pub mod import;
pub mod layout;
pub mod peer;
pub mod resources;
pub mod run;
pub mod state;
pub mod telemetry;

#[cfg(test)]
mod footprint;
