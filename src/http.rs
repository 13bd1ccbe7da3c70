//! The operational HTTP endpoints: `/healthz`, `/readyz`, `/metrics`.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::controllers::leader::LeaderStatus;
use crate::state::Stores;
use crate::telemetry::Metrics;

#[derive(Clone)]
struct Probes {
    stores: Stores,
    metrics: Metrics,
    leader: Option<LeaderStatus>,
}

/// Router for the probe and metrics port. With `leader`, `/healthz` is also the lease-loss
/// watchdog.
pub fn router(stores: Stores, metrics: Metrics, leader: Option<LeaderStatus>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Probes {
            stores,
            metrics,
            leader,
        })
}

/// Unhealthy while this replica believes it leads but has not renewed the Lease within the
/// lease duration: another replica may already lead, so the kubelet restarts this one.
async fn healthz(State(p): State<Probes>) -> impl IntoResponse {
    if p.leader.as_ref().is_none_or(LeaderStatus::healthy) {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "leads but has not renewed the leader Lease within its duration",
        )
    }
}

async fn readyz(State(p): State<Probes>) -> impl IntoResponse {
    if p.stores.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches are still syncing")
    }
}

async fn metrics_text(State(p): State<Probes>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        p.metrics.encode(),
    )
}
