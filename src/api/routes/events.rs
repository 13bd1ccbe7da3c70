//! `GET /events`: the installation's event log (operator Events and the audit of facade
//! writes, as the watch of Kubernetes Events holds them), newest first.

use std::time::Instant;

use axum::Json;
use axum::extract::{RawQuery, State};

use super::{envelope, pairs};
use crate::api::ApiState;
use crate::api::error::ApiResult;
use crate::api::query::{CollectionSpec, Field};

/// Newest first.
pub const EVENTS: CollectionSpec<'static> = CollectionSpec {
    default_sort: "-event_id",
    tiebreak: "event_id",
    default_limit: 100,
    max_limit: 1000,
    search: &["path", "operation_id", "user", "note", "object"],
    filters: &[
        Field::integer("event_id"),
        Field::integer("utc_ms"),
        Field::new("operation_id"),
        Field::integer("status"),
        Field::new("user"),
        Field::new("originator"),
        Field::new("trace_id"),
        Field::new("event"),
        Field::new("reason"),
        Field::new("type"),
        Field::new("object"),
    ],
    passthrough: &[],
    // Ours and the reference's, so a client selecting a reference member is not refused.
    members: &[
        "count",
        "created_at",
        "duration",
        "event",
        "event_id",
        "ip",
        "note",
        "object",
        "operation_id",
        "originator",
        "path",
        "payload",
        "qs",
        "reason",
        "request_id",
        "server",
        "status",
        "trace_id",
        "type",
        "user",
        "user_agent",
        "utc_ms",
    ],
};

/// `GET /events`.
pub async fn list(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<crate::api::query::Envelope>> {
    let started = Instant::now();
    let items = state.events.all();
    envelope(&items, &pairs(&raw), &EVENTS, "events", started)
}
