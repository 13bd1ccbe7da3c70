//! The product's rules that both the controllers and the facade apply, each written once.
//!
//! The facade never imports `controllers`; both import this module. Decisions here are pure
//! where they can be (table- and property-tested); the few that must touch the API server
//! (claiming an id, reading a password hash) take the client as an argument and keep the
//! decision itself in a pure function beside them.

pub mod access;
pub mod accounts;
pub mod adoption;
pub mod agents;
pub mod bulk;
pub mod credentials;
pub mod decommission;
pub mod destinations;
pub mod effective;
pub mod health;
pub mod ids;
pub mod instance;
pub mod key;
pub mod layout_history;
pub mod merge_patch;
pub mod moves;
pub mod names;
pub mod passwords;
pub mod refs;
pub mod rollout;
pub mod stream_health;
pub mod tenancy;
pub mod validate;
pub mod world;
pub mod zones;
