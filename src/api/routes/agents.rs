//! `GET /agents`: Panoptes runs no agent server, so agents are derived from streams whose
//! inputs are agent connections (`agent://ID` URLs, or `via: agent://ID`); an agent's
//! stats come from the ingest node's report of those streams. Since every listed agent is
//! referenced by a stream, `stream_is=null` yields an empty page.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use serde_json::{Value, json};

use super::{envelope, pairs};
use crate::api::ApiState;
use crate::api::error::{ApiError, ApiResult};
use crate::api::query::{CollectionSpec, Field};
use crate::api::rendered_streams::RenderedStreams;
use crate::domain::agents::agents_of;

/// `GET /agents`: by id.
pub const AGENTS: CollectionSpec<'static> = CollectionSpec {
    default_sort: "id",
    tiebreak: "id",
    default_limit: 100,
    max_limit: 1000,
    search: &["id", "streams.name", "streams.title"],
    filters: &[
        Field::new("id"),
        Field::alias("stream", "streams"),
        Field::alias("organization_id", "streams.organization.id"),
        Field::alias("title", "streams.title"),
    ],
    passthrough: &[],
    // Ours and the reference's, so a client selecting a reference member is not refused.
    members: &["id", "key", "model", "serial", "stats", "streams"],
};

/// `GET /agents`.
pub async fn list(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<crate::api::query::Envelope>> {
    let started = Instant::now();
    let items = agents(&state);
    envelope(&items, &pairs(&raw), &AGENTS, "agents", started)
}

/// `GET /agents/{id}`: the item `GET /agents` lists for that id.
pub async fn get(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    agents(&state)
        .into_iter()
        .find(|a| a["id"] == id.as_str())
        .map(Json)
        .ok_or_else(|| ApiError::not_found("agent", id))
}

/// Every agent the streams name, by id.
fn agents(state: &ApiState) -> Vec<Value> {
    let mut agents: BTreeMap<String, (Vec<Value>, bool, Option<String>)> = BTreeMap::new();
    for s in RenderedStreams::all(state) {
        let Some(inputs) = s.get("inputs").and_then(Value::as_array) else {
            continue;
        };
        let ids = agents_of(
            inputs
                .iter()
                .flat_map(|i| [i.get("url"), i.get("via")])
                .flatten()
                .filter_map(Value::as_str),
        );
        let alive = s
            .pointer("/stats/alive")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let ingest = s
            .pointer("/layout/ingest")
            .and_then(Value::as_str)
            .map(str::to_string);
        for id in ids {
            let entry = agents.entry(id.to_string()).or_default();
            entry.0.push(json!({
                "name": s.get("name"),
                "title": s.get("title"),
                "comment": s.get("comment"),
                "organization": s.get("organization"),
            }));
            entry.1 |= alive;
            if entry.2.is_none() {
                entry.2 = ingest.clone();
            }
        }
    }
    agents
        .into_iter()
        .map(|(id, (streams, alive, ingest))| {
            json!({
                "id": id,
                "stats": {
                    "agent_type": if streams.len() > 1 { "multi" } else { "single" },
                    "endpoint_connection": { "hostname": ingest, "alive": alive },
                },
                "streams": streams,
            })
        })
        .collect()
}
