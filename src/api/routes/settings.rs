//! `GET/PUT /domain_config`, `GET /system_config` (see [`crate::api::settings`]).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::api::ApiState;
use crate::api::body::{JsonBody, merge};
use crate::api::error::{ApiError, ApiResult};
use crate::api::settings::{DOMAIN_KEY, SETTINGS_NAME, SMTP_PASSWORD_KEY};
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
    match password {
        Some(Value::String(p)) => {
            put_secret(
                &state,
                &ns,
                SETTINGS_NAME,
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
    let mut doc = Value::Object(state.settings.domain());
    merge(&mut doc, Value::Object(body));
    let text = serde_json::to_string(&doc).unwrap_or_default();
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": SETTINGS_NAME,
            "labels": { "app.kubernetes.io/managed-by": "panoptes" },
        },
        "data": { DOMAIN_KEY: text },
    });
    Api::<ConfigMap>::namespaced(state.client.clone(), &ns)
        .patch(
            SETTINGS_NAME,
            &PatchParams::apply(API_MANAGER).force(),
            &Patch::Apply(&cm),
        )
        .await
        .map_err(|e| ApiError::from_kube("saving the domain settings", e))?;
    Ok(Json(doc))
}

/// `GET /system_config` (read-only through the API).
pub async fn system_get(State(state): State<ApiState>) -> Json<Value> {
    Json(Value::Object(state.settings.system()))
}
