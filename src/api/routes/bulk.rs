//! `POST /streams/multiedit` and `POST /streams/zones`: bulk edits of streams, all or nothing.
//!
//! The plan is [`crate::domain::bulk`]'s; this is its I/O, in four steps:
//! 1. **Check** every item against what the facade knows (typos at any depth: 400; an item
//!    naming a stream the caller cannot see, a preset of another namespace, a bad zone: 422
//!    naming the item and the field). The caller sees what `GET /streams` shows: the streams
//!    of the facade's namespaces, terminating ones excepted; a preset resolves in its stream's
//!    namespace only, as on a single save.
//! 2. **Read** each stream from the API server (not the store, which may lag): its spec is the
//!    before-state, its `resourceVersion` the precondition of every later write.
//! 3. **Dry-run** every changed item on the API server (`dryRun=All`): schema, CEL, admission
//!    policies and webhooks judge each write exactly as they will judge it for real. Any
//!    refusal: nothing is written; 422 (409 for a concurrent change) naming the item.
//! 4. **Write** in item order, each conditional on the version read in step 2. If one fails,
//!    the written items are put back, newest first, each conditional on the version the facade
//!    wrote; the answer is the failure, naming the item, with `meta` listing the items
//!    `applied`, `reverted` and `unrevertable` (changed by someone else meanwhile: they keep
//!    the edit, and the status is 500 `bulk_partially_applied`).
//!
//! Success answers 204: the reference gives the operations no result type.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use schemars::JsonSchema;
use serde_json::Value;

use super::streams::{find, preset_in};
use crate::api::ApiState;
use crate::api::body::JsonBody;
use crate::api::error::{ApiError, ApiResult};
use crate::api::members::{self, Known};
use crate::domain::bulk::{self, Item, Kind, Outcome, Refusal, Written};
use crate::resources::common::API_MANAGER;
use crate::resources::wire::StreamDvrSpec;
use crate::resources::wire::stream::LayoutRules;
use crate::resources::{Stream, StreamSpec};

/// API-server calls of one request in flight at once (reads and dry runs; the writes go one
/// by one, so a failure has a well-defined set of items before it).
const IN_FLIGHT: usize = 8;

/// `POST /streams/multiedit`.
pub async fn multiedit(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    run(&state, Kind::Multiedit, body).await
}

/// `POST /streams/zones`.
pub async fn zones(State(state): State<ApiState>, JsonBody(body): JsonBody) -> ApiResult<Response> {
    run(&state, Kind::Zones, body).await
}

// The request types below are schemas only (the document, and the typo check): the items are
// parsed by the domain's plan, which names each failure by item and field.

/// The body of both bulk edits: `StreamsMultieditConfig` (items `StreamConfigMultiedit`) and
/// `StreamsZoneSettings`, whose items the reference leaves untyped.
#[allow(dead_code)]
#[derive(JsonSchema)]
pub struct BulkRequest<T> {
    /// At most 1000 items; each names a stream once.
    pub streams: Vec<T>,
}

/// One item of `POST /streams/multiedit`: members present are changed, absent ones kept.
#[allow(dead_code)]
#[derive(JsonSchema)]
pub struct MultieditItem {
    /// The stream.
    pub name: String,
    /// Merged into the stream's `dvr` (`null` members remove; `null` removes it).
    pub dvr: Option<StreamDvrSpec>,
    /// Merged into the stream's `layout_rules` (`null` removes them).
    pub layout_rules: Option<LayoutRules>,
    /// The preset to apply (`0` or `null`: none).
    pub preset_id: Option<i64>,
}

/// One item of `POST /streams/zones`: Panoptes takes `{name, layout_rules: {required_zones,
/// preferred_zones}}`, a multiedit item without `dvr` and `preset_id`.
#[allow(dead_code)]
#[derive(JsonSchema)]
pub struct ZonesItem {
    /// The stream.
    pub name: String,
    /// Merged into the stream's `layout_rules` (`null` removes them).
    pub layout_rules: Option<LayoutRules>,
}

/// Typos at any depth (400): against our request schema and the reference's item schema.
fn reject_unknown(body: Option<&Value>, kind: Kind) -> ApiResult<()> {
    let Some(body) = body else { return Ok(()) };
    let op = match kind {
        Kind::Multiedit => "streams_multiedit",
        Kind::Zones => "streams_zones_settings",
    };
    // The reference types the multiedit items apart from their envelope.
    let reference = serde_json::json!({"streams": "StreamConfigMultiedit"});
    let mut known: Vec<Known<'_>> = members::operation_schema(op, true)
        .map(Known::Ours)
        .into_iter()
        .collect();
    if kind == Kind::Multiedit {
        known.push(Known::Reference(&reference));
    }
    members::check(body, &known, "", "")
}

/// One item, resolved to its object and planned.
struct Planned {
    item: Item,
    ns: String,
    object: String,
    /// The preset change as an object name.
    preset_ref: Option<Option<String>>,
}

/// One item with its before-state and the spec it leads to.
struct Ready {
    planned: Planned,
    before: StreamSpec,
    after: StreamSpec,
    resource_version: String,
}

async fn run(state: &ApiState, kind: Kind, body: Option<Value>) -> ApiResult<Response> {
    reject_unknown(body.as_ref(), kind)?;
    let items = bulk::parse(body.as_ref(), kind).map_err(refusal)?;
    let planned = items
        .into_iter()
        .map(|item| resolve(state, item))
        .collect::<ApiResult<Vec<_>>>()?;
    let reads: Vec<_> = planned.into_iter().map(|p| read(state, p)).collect();
    let ready: Vec<Ready> = futures::stream::iter(reads)
        .buffered(IN_FLIGHT)
        .try_collect()
        .await?;
    // Items that change nothing are not written (zero writes for a no-op).
    let ready: Vec<Ready> = ready.into_iter().filter(|r| r.before != r.after).collect();
    // Boxed: an `async fn` borrowing the item is not general enough for axum's `Send` bound.
    let dry_runs: Vec<BoxFuture<'_, ApiResult<Written>>> = ready
        .iter()
        .map(|r| -> BoxFuture<'_, ApiResult<Written>> { Box::pin(write(state, r, true)) })
        .collect();
    futures::stream::iter(dry_runs)
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<_>>()
        .await?;
    let mut written: Vec<Written> = Vec::with_capacity(ready.len());
    for r in &ready {
        match write(state, r, false).await {
            Ok(w) => written.push(w),
            Err(failure) => return Err(undo(state, &ready, written, failure).await),
        }
    }
    until_seen(state, &ready, &written).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn refusal(r: Refusal) -> ApiError {
    match r {
        Refusal::Malformed { pointer, message } => ApiError::invalid_body(&pointer, message),
        Refusal::TooMany(n) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_items",
            format!(
                "{n} items; one request edits at most {} streams, send the rest in another",
                bulk::MAX_ITEMS
            ),
        )
        .pointer("/streams"),
        Refusal::Item {
            index,
            name,
            pointer,
            message,
        } => item_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_item",
            index,
            name.as_deref(),
            &pointer,
            &message,
        ),
    }
}

/// An error about item `index`: its title names the item, `meta` carries index and name.
fn item_error(
    status: StatusCode,
    code: &str,
    index: usize,
    name: Option<&str>,
    pointer: &str,
    message: &str,
) -> ApiError {
    let who = match name {
        Some(n) => format!("item {index} (stream {n})"),
        None => format!("item {index}"),
    };
    let mut e = ApiError::new(status, code, format!("{who}: {message}")).pointer(pointer);
    let mut meta = std::collections::BTreeMap::from([("item".to_string(), index.to_string())]);
    if let Some(n) = name {
        meta.insert("name".into(), n.to_string());
    }
    e.object.meta = Some(meta);
    e
}

/// The item's stream (as the caller sees it), its preset and its zones.
fn resolve(state: &ApiState, item: Item) -> ApiResult<Planned> {
    let (index, name) = (item.index, item.name.clone());
    let s = find(state, &name).ok_or_else(|| {
        item_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_stream",
            index,
            Some(&name),
            &format!("/streams/{index}/name"),
            "no such stream",
        )
    })?;
    let ns = s
        .namespace()
        .unwrap_or_else(|| state.config.namespace.clone());
    let preset_ref = match item.preset {
        None => None,
        Some(None) => Some(None),
        Some(Some(id)) => Some(Some(
            preset_in(state, &ns, id)
                .ok_or_else(|| {
                    item_error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "unknown_preset",
                        index,
                        Some(&name),
                        &format!("/streams/{index}/preset_id"),
                        &format!("preset {id} not found"),
                    )
                })?
                .name_any(),
        )),
    };
    zones_exist(state, &ns, &item)?;
    Ok(Planned {
        ns,
        object: s.name_any(),
        preset_ref,
        item,
    })
}

/// The one place where a bulk item's zone names are checked for existence (they are unix
/// names already, [`crate::domain::validate::unix_name`]): the zones of the stream's
/// namespace, by the same rule as a single save ([`super::zones::exists`]).
fn zones_exist(state: &ApiState, ns: &str, item: &Item) -> ApiResult<()> {
    let known = |zone: &str| super::zones::exists(state, ns, zone);
    match item.zones().find(|(_, _, zone)| !known(zone)) {
        None => Ok(()),
        Some((member, i, zone)) => Err(item_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_zone",
            item.index,
            Some(&item.name),
            &format!("/streams/{}/layout_rules/{member}/{i}", item.index),
            &format!("zone {zone} not found"),
        )),
    }
}

/// Reads the item's stream from the API server and computes its new spec.
async fn read(state: &ApiState, planned: Planned) -> ApiResult<Ready> {
    let api: Api<Stream> = Api::namespaced(state.client.clone(), &planned.ns);
    let (index, name) = (planned.item.index, planned.item.name.clone());
    let current = api
        .get_opt(&planned.object)
        .await
        .map_err(|e| ApiError::internal("reading a stream", e))?
        .filter(|s| s.metadata.deletion_timestamp.is_none() && s.watcher_name() == name)
        .ok_or_else(|| {
            item_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_stream",
                index,
                Some(&name),
                &format!("/streams/{index}/name"),
                "no such stream",
            )
        })?;
    let after =
        bulk::edited(&current.spec, &planned.item, planned.preset_ref.clone()).map_err(refusal)?;
    Ok(Ready {
        resource_version: current.resource_version().unwrap_or_default(),
        before: current.spec,
        after,
        planned,
    })
}

/// The conditional write of one item (`dry_run`: judged, not stored). Its error names the item.
async fn write(state: &ApiState, r: &Ready, dry_run: bool) -> ApiResult<Written> {
    let api: Api<Stream> = Api::namespaced(state.client.clone(), &r.planned.ns);
    let patch = bulk::conditional_patch(&r.before, &r.after, &r.resource_version);
    let pp = PatchParams {
        dry_run,
        field_manager: Some(API_MANAGER.to_string()),
        ..Default::default()
    };
    let (index, name) = (r.planned.item.index, r.planned.item.name.as_str());
    match api
        .patch(&r.planned.object, &pp, &Patch::Merge(&patch))
        .await
    {
        Ok(stored) => Ok(Written {
            index,
            name: name.to_string(),
            before: r.before.clone(),
            resource_version: stored.resource_version().unwrap_or_default(),
            stored: stored.spec,
        }),
        Err(e) => Err(refused(index, name, e)),
    }
}

/// An API-server refusal of item `index`, as the facade reports it.
fn refused(index: usize, name: &str, e: kube::Error) -> ApiError {
    let item = format!("/streams/{index}");
    match &e {
        kube::Error::Api(s) if s.code == 409 => item_error(
            StatusCode::CONFLICT,
            "conflict",
            index,
            Some(name),
            &item,
            "the stream changed while the edit was being applied; read it again and resend",
        ),
        kube::Error::Api(s) if s.code == 404 => item_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_stream",
            index,
            Some(name),
            &format!("{item}/name"),
            "no such stream",
        ),
        kube::Error::Api(s) if matches!(s.code, 400 | 403 | 422) => {
            let field = bulk::field_of_message(&s.message).unwrap_or_default();
            item_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_item",
                index,
                Some(name),
                &format!("{item}{field}"),
                &s.message,
            )
        }
        _ => {
            let mut err = ApiError::from_kube("writing a stream", e);
            err.object.title = format!("item {index} (stream {name}): {}", err.object.title);
            err.pointer(&item)
        }
    }
}

/// After the write of an item failed (`failure`): puts the `written` items back, newest
/// first, and turns `failure` into the answer listing what happened to each.
async fn undo(
    state: &ApiState,
    ready: &[Ready],
    written: Vec<Written>,
    failure: ApiError,
) -> ApiError {
    let mut outcome = Outcome {
        applied: written.iter().map(|w| w.name.clone()).collect(),
        ..Default::default()
    };
    let ns_of = |index: usize| {
        ready
            .iter()
            .find(|r| r.planned.item.index == index)
            .map(|r| (r.planned.ns.clone(), r.planned.object.clone()))
            .unwrap_or_default()
    };
    let pp = PatchParams {
        field_manager: Some(API_MANAGER.to_string()),
        ..Default::default()
    };
    let mut reverted = Vec::new();
    for w in bulk::undo_order(&written) {
        let (ns, object) = ns_of(w.index);
        let api: Api<Stream> = Api::namespaced(state.client.clone(), &ns);
        match api.patch(&object, &pp, &Patch::Merge(&w.undo())).await {
            Ok(_) => reverted.push(w.name.clone()),
            Err(error) => {
                tracing::warn!(%error, stream = %w.name, "undoing a bulk edit item");
                outcome.unrevertable.push(w.name.clone());
            }
        }
    }
    reverted.reverse();
    outcome.unrevertable.reverse();
    outcome.reverted = reverted;
    let mut err = failure;
    if outcome.clean() {
        err.object.title = format!(
            "{}; nothing was changed ({} items written before it were put back)",
            err.object.title,
            outcome.reverted.len()
        );
    } else {
        err.status = StatusCode::INTERNAL_SERVER_ERROR;
        err.object.status = err.status.as_u16().to_string();
        err.object.code = "bulk_partially_applied".into();
        err.object.title = format!(
            "{}; {} items written before it could not be put back and keep the edit: {}",
            err.object.title,
            outcome.unrevertable.len(),
            outcome.unrevertable.join(",")
        );
    }
    let meta = err.object.meta.get_or_insert_with(Default::default);
    for (k, v) in outcome.meta() {
        meta.insert(k.to_string(), v);
    }
    err
}

/// Waits (bounded) until the store holds every written version, so a read right after the
/// edit shows it (read-your-writes, as a single save's answer is).
async fn until_seen(state: &ApiState, ready: &[Ready], written: &[Written]) {
    let deadline = tokio::time::Instant::now() + crate::api::write::SEEN_WITHIN;
    for (r, w) in ready.iter().zip(written) {
        let key = ObjectRef::<Stream>::new(&r.planned.object).within(&r.planned.ns);
        crate::api::write::until_stored(&state.stores.streams, &key, &w.resource_version, deadline)
            .await;
    }
}
