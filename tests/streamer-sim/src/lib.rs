//! **streamer-sim — a SIMULATOR of Flussonic Media Server nodes** (test infrastructure; not
//! part of the Panoptes product). It serves the subset of the node HTTP API v3 described in
//! `shared/reference/streamer-node-api.md` (§5) with fault switches (§5.2), hosting many
//! virtual nodes in one process, each on its own loopback port.
//!
//! In-process use:
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let cluster = streamer_sim::Cluster::start(3).await?;
//! let node = cluster.node(0);
//! node.fail_next(2, 503);                 // the next two requests answer 503
//! node.set_latency(std::time::Duration::from_millis(200));
//! node.restart().await?;                  // runtime lost, disk kept, new instance id
//! cluster.advance(std::time::Duration::from_secs(5)); // move the simulated clock
//! assert!(node.requests() == 0);
//! # Ok(()) }
//! ```
//! Every response carries `Server: streamer-sim (SIMULATOR of Flussonic Media Server)`.

mod api;
mod auth;
mod clock;
mod cluster;
mod control;
mod error;
mod faults;
mod firmware;
mod net;
mod node;
mod options;
mod play;
mod query;
mod runtime;
mod schema;
mod store;
mod streams;

pub use auth::cluster_digest;
pub use clock::SimClock;
pub use cluster::{Cluster, ClusterOptions, SimNode};
pub use error::ApiError;
pub use faults::{Counters, ErrorBody, Faults};
pub use firmware::FirmwareUpload;
pub use options::{ArrayMerge, Behaviour, ConfigPut, NodeOptions};
pub use play::PlayOutcome;

/// `Server` header of every response.
pub const SERVER_HEADER: &str = "streamer-sim (SIMULATOR of Flussonic Media Server)";
