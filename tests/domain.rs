//! Issue 15: one rule, one place. Each divergence between layers has a test here.
#[path = "api_support/mod.rs"]
mod api_support;
#[path = "domain/direction.rs"]
mod direction;
#[path = "support/mod.rs"]
mod support;
