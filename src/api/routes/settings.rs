//! `GET/PUT /domain_config`, `GET /system_config` (see [`crate::api::settings`]).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::api::ApiState;
use crate::api::body::{JsonBody, merge};
use crate::api::error::{ApiError, ApiResult};
use crate::api::settings::{DOMAIN_KEY, SMTP_PASSWORD_KEY};
use crate::api::write::put_secret;
use crate::resources::common::API_MANAGER;

/// `GET /domain_config`.
pub async fn domain_get(State(state): State<ApiState>) -> Json<Value> {
    Json(Value::Object(state.settings.domain()))
}

/// `PUT /domain_config`: merged into the stored document; the SMTP password goes to the
/// settings Secret.
pub async fn domain_save(State(state): State<ApiState>, body: JsonBody) -> ApiResult<Json<Value>> {
    let mut body = body.object()?;
    for (key, kind) in [("mail", "an object"), ("appearance", "an object")] {
        if body
            .get(key)
            .is_some_and(|v| !v.is_object() && !v.is_null())
        {
            return Err(ApiError::invalid_body(
                &format!("/{key}"),
                format!("`{key}` must be {kind}"),
            ));
        }
    }
    let password = body
        .get_mut("mail")
        .and_then(Value::as_object_mut)
        .and_then(|m| m.remove("password"));
    let ns = state.config.system_namespace.clone();
    let settings_name = state.config.instance.settings();
    match password {
        Some(Value::String(p)) => {
            put_secret(
                &state,
                &ns,
                &settings_name,
                BTreeMap::from([(SMTP_PASSWORD_KEY.to_string(), p)]),
            )
            .await?;
        }
        None | Some(Value::Null) => {}
        Some(_) => {
            return Err(ApiError::invalid_body(
                "/mail/password",
                "`password` must be a string",
            ));
        }
    }
    // Merged onto the ConfigMap as the API server has it, written only if it is still that
    // version: two saves racing (or an edit with kubectl) are never reverted.
    let api = Api::<ConfigMap>::namespaced(state.client.clone(), &ns);
    let mut saved = None;
    for _ in 0..12 {
        let current = api
            .get_opt(&settings_name)
            .await
            .map_err(|e| ApiError::internal("reading the domain settings", e))?;
        let stored = current
            .as_ref()
            .and_then(|cm| cm.data.as_ref()?.get(DOMAIN_KEY))
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        let mut doc = stored;
        merge(&mut doc, Value::Object(body.clone()));
        let text = serde_json::to_string(&doc).unwrap_or_default();
        let mut cm = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": settings_name,
                "labels": { "app.kubernetes.io/managed-by": "panoptes" },
            },
            "data": { DOMAIN_KEY: text },
        });
        let written = match current
            .as_ref()
            .and_then(|c| c.metadata.resource_version.clone())
        {
            Some(rv) => {
                cm["metadata"]["resourceVersion"] = json!(rv);
                api.patch(
                    &settings_name,
                    &PatchParams::apply(API_MANAGER).force(),
                    &Patch::Apply(&cm),
                )
                .await
            }
            None => match serde_json::from_value::<ConfigMap>(cm) {
                Ok(cm) => {
                    let pp = PostParams {
                        field_manager: Some(API_MANAGER.to_string()),
                        ..Default::default()
                    };
                    api.create(&pp, &cm).await
                }
                Err(e) => return Err(ApiError::internal("saving the domain settings", e)),
            },
        };
        match written {
            Ok(_) => {
                saved = Some(doc);
                break;
            }
            Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => {}
            Err(e) => return Err(ApiError::from_kube("saving the domain settings", e)),
        }
    }
    let doc = saved.ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "conflict",
            "the settings kept changing while they were being saved; send the save again",
        )
    })?;
    Ok(Json(doc))
}

/// `GET /system_config` (read-only through the API).
pub async fn system_get(State(state): State<ApiState>) -> Json<Value> {
    Json(Value::Object(state.settings.system()))
}
