//! Typed client for the Flussonic Media Server node API (`/streamer/api/v3`).
