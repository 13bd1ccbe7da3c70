//! Issue 15: one rule, one place. Each divergence between layers has a test here.
#[path = "api_support/mod.rs"]
mod api_support;
#[path = "domain/direction.rs"]
mod direction;
#[path = "domain/names.rs"]
mod names;
#[path = "domain/stream.rs"]
mod stream;
#[path = "support/mod.rs"]
mod support;
#[path = "domain/world.rs"]
mod world;
