//! Typed client for the Flussonic Media Server node API (`/streamer/api/v3`).
//!
//! One [`NodeClient`] per node: a connection pool, a bounded number of requests in flight,
//! per-request timeouts, retries with exponential backoff and full jitter for transient
//! failures only (transport errors, timeouts, 5xx; never 4xx), typed [`Error`]s with a bounded
//! [`Error::category`], a tracing span per call and per-node [`NodeMetrics`].
//!
//! Bodies are the shared wire types of [`crate::resources::wire`]. Streams Panoptes owns are
//! written whole ([`node_stream_body`], `"$reset": true`) and compared with the node's
//! `config_on_disk` ([`drift`]), never with the effective config the node reports.

mod body;
mod client;
mod credentials;
mod error;
mod metrics;
mod retry;

pub use body::{Drift, READ_ONLY, StreamBody, WATCHER_ONLY, drift, is_managed, node_stream_body};
pub use client::{
    API_PREFIX, BuildError, ListQuery, NodeClient, NodeClientConfig, NodeServerConfig, POLL_SELECT,
    ProbePolicy, StreamsPage, with_trace_id,
};
pub use credentials::{Credentials, CredentialsError, cluster_digest};
pub use error::{Error, ErrorBody, Target, from_status, parse_error_body};
pub use metrics::{NodeLabels, NodeMetrics, RequestLabels};
pub use retry::RetryPolicy;
