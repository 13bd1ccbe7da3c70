//! Presets: list (optionally those allowed in an organization), create (with a new,
//! pinned id), get, update (existing only; partial).

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use kube::ResourceExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{envelope, int_param, pairs, param};
use crate::api::ApiState;
use crate::api::body::{JsonBody, decode, merge};
use crate::api::error::{ApiError, ApiResult};
use crate::api::query::{CollectionSpec, Field};
use crate::api::views::{self, to_json};
use crate::api::write::save_with;
use crate::domain::ids::Identified;
use crate::domain::ids::{self, IdKind};
use crate::domain::validate;
use crate::resources::preset::PresetVision;
use crate::resources::wire::StreamDvrSpec;
use crate::resources::wire::stream::LayoutRules;
use crate::resources::{Organization, Preset, PresetSpec};

/// `GET /presets`: by id.
pub const PRESETS: CollectionSpec<'static> = CollectionSpec {
    default_sort: "id",
    tiebreak: "title",
    default_limit: 100,
    max_limit: 1000,
    search: &["title"],
    filters: &[
        Field::integer("id"),
        Field::new("title"),
        Field::boolean("is_default"),
        Field::boolean("is_adjustable"),
        Field::integer("deleted_at"),
    ],
    passthrough: &["organization_id"],
    // Ours and the reference's, so a client selecting a reference member is not refused.
    members: &[
        "deleted_at",
        "dvr",
        "id",
        "is_adjustable",
        "is_default",
        "last_change",
        "layout_rules",
        "stats",
        "title",
        "vision",
    ],
};

/// Writable preset members (wire names).
#[derive(Debug, Default, Serialize, Deserialize)]
struct PresetWrite {
    title: Option<String>,
    is_adjustable: Option<bool>,
    is_default: Option<bool>,
    dvr: Option<StreamDvrSpec>,
    vision: Option<PresetVision>,
    layout_rules: Option<LayoutRules>,
}

/// `GET /presets`.
pub async fn list(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<crate::api::query::Envelope>> {
    let started = Instant::now();
    let pairs = pairs(&raw);
    // Soft-deleted presets (`deleted_at`) stay listed, per the reference; a Preset object
    // being deleted from the cluster does not.
    let mut presets = crate::api::deleted::objects(&state.stores.presets);
    if let Some(raw_org) = param(&pairs, "organization_id") {
        let id = int_param("organization_id", raw_org)?;
        // Unknown organization: nothing is allowed there.
        let org = crate::api::deleted::objects(&state.stores.organizations)
            .into_iter()
            .find(|o| o.watcher_id() == Some(id));
        let allowed: Vec<String> = org
            .as_deref()
            .map(Organization::offered_presets)
            .unwrap_or_default();
        let ns = org.as_ref().and_then(|o| o.namespace());
        presets.retain(|p| {
            org.is_some()
                && p.namespace() == ns
                && (p.spec.is_default.unwrap_or(false) || allowed.contains(&p.name_any()))
        });
    }
    let items: Vec<Value> = presets.iter().map(|p| to_json(&views::preset(p))).collect();
    envelope(&items, &pairs, &PRESETS, "presets", started)
}

/// The preset with Watcher id `id`.
pub fn find(state: &ApiState, id: i64) -> Option<Arc<Preset>> {
    crate::api::deleted::objects(&state.stores.presets)
        .into_iter()
        .find(|p| p.watcher_id() == Some(id))
}

/// `GET /presets/{id}`.
pub async fn get(State(state): State<ApiState>, Path(raw): Path<String>) -> ApiResult<Json<Value>> {
    let id = int_param("id", &raw)?;
    let p = find(&state, id).ok_or_else(|| ApiError::not_found("preset", id))?;
    Ok(Json(to_json(&views::preset(&p))))
}

/// `spec` with the members of a preset body merged on (pure: saves and `panoptes import`).
pub(crate) fn spec_from(mut spec: PresetSpec, body: Value) -> ApiResult<PresetSpec> {
    let mut body = match body {
        Value::Object(m) => m,
        _ => return Err(ApiError::invalid_body("", "the body must be a JSON object")),
    };
    for ro in ["id", "deleted_at", "last_change", "stats"] {
        body.remove(ro);
    }
    let mut current = serde_json::to_value(PresetWrite {
        title: Some(spec.title.clone()).filter(|t| !t.is_empty()),
        is_adjustable: spec.is_adjustable,
        is_default: spec.is_default,
        dvr: spec.dvr.clone(),
        vision: spec.vision.clone(),
        layout_rules: spec.layout_rules.clone(),
    })
    .unwrap_or_default();
    if let Value::Object(m) = &mut current {
        m.retain(|_, v| !v.is_null());
    }
    merge(&mut current, Value::Object(body));
    let w: PresetWrite = decode(current, "")?;
    spec.title = w
        .title
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::invalid_body("/title", "`title` is required"))?;
    validate::line("/title", &spec.title, validate::NAME_MAX)
        .map_err(|e| ApiError::invalid_body(e.pointer, e.message))?;
    spec.is_adjustable = w.is_adjustable;
    spec.is_default = w.is_default;
    spec.dvr = w.dvr;
    spec.vision = w.vision;
    spec.layout_rules = w.layout_rules;
    Ok(spec)
}

/// `POST /presets`.
pub async fn create(State(state): State<ApiState>, body: JsonBody) -> ApiResult<Json<Value>> {
    let body = body.object()?;
    crate::api::members::reject_unknown(&body, "presets_create", &[], None)?;
    let body = Value::Object(body);
    let mut spec = spec_from(PresetSpec::default(), body)?;
    let ns = state.config.namespace.clone();
    super::zones::check_rules(&state, &ns, spec.layout_rules.as_ref())?;
    let mut claimed = ids::claim_new(
        &state,
        IdKind::Preset,
        |id| format!("{ns}/preset-{id}"),
        &ids::holdings(&state.stores.presets),
    )
    .await
    .map_err(|e| ApiError::internal("allocating a preset id", e))?;
    let id = claimed.id;
    spec.id = Some(id);
    let api: kube::Api<Preset> = kube::Api::namespaced(state.client.clone(), &ns);
    let pp = kube::api::PostParams {
        field_manager: Some(crate::resources::common::API_MANAGER.into()),
        ..Default::default()
    };
    // `preset-<id>` reads well, but any kubectl object may already carry that name: then a
    // random suffix. The claim is pointed at the name before the object exists, so the
    // controller finds its own claim on the first reconcile.
    let mut created = None;
    let mut last_error = None;
    for attempt in 0..3 {
        let object = if attempt == 0 {
            format!("preset-{id}")
        } else {
            let object = format!("preset-{id}-{:05x}", rand::random::<u32>() & 0xf_ffff);
            let bound = claimed
                .rebind(&state, &format!("{ns}/{object}"))
                .await
                .map_err(|e| ApiError::internal("allocating a preset id", e));
            if let Err(e) = bound {
                last_error = Some(e);
                break;
            }
            object
        };
        match api.create(&pp, &Preset::new(&object, spec.clone())).await {
            Ok(p) => {
                created = Some(p);
                break;
            }
            Err(kube::Error::Api(s)) if s.is_already_exists() => {}
            Err(e) => {
                last_error = Some(ApiError::from_kube("creating the preset", e));
                break;
            }
        }
    }
    let Some(created) = created else {
        if let Err(re) = claimed.release(&state).await {
            tracing::warn!(error = %re, "releasing the id claim of a failed preset create");
        }
        return Err(last_error
            .unwrap_or_else(|| ApiError::internal("creating the preset", "no free object name")));
    };
    Ok(Json(to_json(&views::preset(&created))))
}

/// `PUT /presets/{id}`.
pub async fn save(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    let id = int_param("id", &raw)?;
    let p = find(&state, id).ok_or_else(|| ApiError::not_found("preset", id))?;
    let mut body = body.object()?;
    crate::api::members::reject_unknown(&body, "preset_save", &[], None)?;
    crate::api::body::take_identity(&mut body, "id", &id.to_string())?;
    // Required by the vendor's schema, so a generated client's partial save sends it empty.
    crate::api::body::drop_empty(&mut body, "title");
    let body = Value::Object(body);
    let mut stored = save_with(
        &state,
        &p.namespace().unwrap_or_default(),
        &p.name_any(),
        |current: Option<&Preset>| {
            let current = current.ok_or_else(|| ApiError::not_found("preset", id))?;
            let spec = spec_from(current.spec.clone(), body.clone())?;
            // Only rules this save changes: a zone deleted with kubectl does not lock the
            // rest of the preset.
            if spec.layout_rules != current.spec.layout_rules {
                let ns = current.namespace().unwrap_or_default();
                super::zones::check_rules(&state, &ns, spec.layout_rules.as_ref())?;
            }
            Ok(Preset::new(&current.name_any(), spec))
        },
    )
    .await?;
    if stored.status.is_none() {
        stored.status = p.status.clone();
    }
    Ok(Json(to_json(&views::preset(&stored))))
}
