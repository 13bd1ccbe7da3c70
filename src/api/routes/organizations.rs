//! Organization presets: attach (`PUT /organizations/{id}/presets` with `{preset_id}`) and
//! detach (`DELETE /organizations/{id}/presets/{preset_id}`), editing the Organization's
//! `spec.presetRefs` with server-side apply.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use kube::ResourceExt;
use serde_json::Value;

use super::int_param;
use crate::api::ApiState;
use crate::api::body::JsonBody;
use crate::api::error::{ApiError, ApiResult};
use crate::api::views::{self, to_json};
use crate::api::write::save_with;
use crate::domain::ids::Identified;
use crate::resources::{Organization, Preset};

fn org(state: &ApiState, id: i64) -> ApiResult<Arc<Organization>> {
    crate::api::deleted::objects(&state.stores.organizations)
        .into_iter()
        .find(|o| o.watcher_id() == Some(id))
        .ok_or_else(|| ApiError::not_found("organization", id))
}

fn preset_in(state: &ApiState, o: &Organization, id: i64) -> Option<Arc<Preset>> {
    crate::api::deleted::objects(&state.stores.presets)
        .into_iter()
        .find(|p| p.namespace() == o.namespace() && p.watcher_id() == Some(id))
}

/// `PUT /organizations/{organization_id}/presets`.
pub async fn preset_save(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    let oid = int_param("organization_id", &raw)?;
    let mut body = body.object()?;
    let pid = match body.remove("preset_id") {
        Some(Value::Number(n)) if n.as_i64().is_some_and(|i| i > 0) => n.as_i64().unwrap_or(0),
        _ => {
            return Err(ApiError::invalid_body(
                "/preset_id",
                "`preset_id` (a positive integer) is required",
            ));
        }
    };
    let o = org(&state, oid)?;
    let p = preset_in(&state, &o, pid).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_preset",
            format!("preset {pid} not found"),
        )
        .pointer("/preset_id")
    })?;
    let preset = p.name_any();
    save_with(
        &state,
        &o.namespace().unwrap_or_default(),
        &o.name_any(),
        |current: Option<&Organization>| {
            let current = current.ok_or_else(|| ApiError::not_found("organization", oid))?;
            let mut spec = current.spec.clone();
            let refs = spec.preset_refs.get_or_insert_with(Vec::new);
            if !refs.contains(&preset) {
                refs.push(preset.clone());
            }
            Ok(Organization::new(&current.name_any(), spec))
        },
    )
    .await?;
    Ok(Json(to_json(&views::preset(&p))))
}

/// `DELETE /organizations/{organization_id}/presets/{preset_id}`.
pub async fn preset_delete(
    State(state): State<ApiState>,
    Path((raw_org, raw_preset)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let oid = int_param("organization_id", &raw_org)?;
    let pid = int_param("preset_id", &raw_preset)?;
    let o = org(&state, oid)?;
    let p = preset_in(&state, &o, pid).ok_or_else(|| ApiError::not_found("preset", pid))?;
    let name = p.name_any();
    save_with(
        &state,
        &o.namespace().unwrap_or_default(),
        &o.name_any(),
        |current: Option<&Organization>| {
            let current = current.ok_or_else(|| ApiError::not_found("organization", oid))?;
            let mut spec = current.spec.clone();
            let attached = spec.preset_refs.as_ref().is_some_and(|r| r.contains(&name))
                || spec.default_preset_ref.as_deref() == Some(name.as_str());
            if !attached {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_attached",
                    format!("preset {pid} is not attached to organization {oid}"),
                ));
            }
            if let Some(refs) = spec.preset_refs.as_mut() {
                refs.retain(|r| *r != name);
            }
            // The default must be one of the attached presets (a CEL rule of the CRD).
            if spec.default_preset_ref.as_deref() == Some(name.as_str()) {
                spec.default_preset_ref = None;
            }
            Ok(Organization::new(&current.name_any(), spec))
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
