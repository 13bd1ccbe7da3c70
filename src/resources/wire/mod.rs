//! Wire objects: one Rust type per object that travels verbatim to a node or through the
//! Watcher API. Member names are the wire names (snake_case).

pub mod camera;
pub mod server;
pub mod stats;
pub mod stream;

pub use camera::CameraConfig;
pub use server::{AdminCredentials, ServerConfig};
pub use stats::{ServerStats, ServerWhoami, StreamStats};
pub use stream::{
    ChangeReason, DecisionReason, NodeLayoutDecision, NodeRole, NodeStream, StreamConfigSpec,
    StreamDvrSpec, StreamInput, StreamLayout, StreamPush, VisionSpec,
};
