//! Names, ids and references: one rule each, applied alike by the controllers and the facade.

use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use panoptes::domain::ids::{Holding, ID_ANNOTATION};
use panoptes::resources::common::condition;
use panoptes::resources::{Organization, Preset, Stream};
use serde_json::json;

use crate::api_support::{Facade, set_status};
use crate::support::operator::Operator;
use crate::support::scenario::{apply, fleet, holdings, stream};
use crate::support::{TestNamespace, events_with_reason, eventually};

const WAIT: Duration = Duration::from_secs(30);

fn ready(s: &Stream) -> Option<(String, String, String)> {
    condition(&s.status.as_ref()?.common.conditions, "Ready").map(|c| {
        (
            c.status.to_string(),
            c.reason.to_string(),
            c.message.to_string(),
        )
    })
}

/// A Stream whose `organizationRef` has a typo is reported like a User's: `Ready=False
/// MissingReference` and an Event. The camera keeps recording meanwhile (the stream is still
/// placed and pushed), and creating the organization later clears the condition.
#[tokio::test]
async fn a_streams_typod_organization_is_a_missing_reference_until_it_exists() {
    let (ns, sim) = fleet("names-ref", 1).await;
    let op = Operator::start(&ns);
    stream(&ns, "cam", json!({ "organizationRef": "city-secruity" })).await;
    let streams = ns.api::<Stream>();
    let s = eventually(WAIT, "Ready=False MissingReference", || async {
        let s = streams.get("cam").await.unwrap();
        ready(&s)
            .filter(|r| r.1 == "MissingReference")
            .map(|r| (s, r))
    })
    .await;
    let (status, _, message) = s.1;
    assert_eq!(status, "False");
    assert!(
        message.contains("city-secruity") && message.contains("spec.organizationRef"),
        "{message}"
    );
    eventually(WAIT, "the stream still runs on its node", || async {
        holdings(&sim)
            .values()
            .any(|h| h.contains("cam"))
            .then_some(())
    })
    .await;
    eventually(WAIT, "MissingReference event", || async {
        events_with_reason(&ns, "MissingReference", "cam")
            .await
            .then_some(())
    })
    .await;

    apply(
        &ns.api::<Organization>(),
        json!({ "kind": "Organization", "metadata": { "name": "city-secruity" }, "spec": { "title": "City" } }),
    )
    .await;
    eventually(WAIT, "the reference resolves", || async {
        let s = streams.get("cam").await.unwrap();
        ready(&s).filter(|r| r.1 != "MissingReference").map(|_| ())
    })
    .await;
    op.stop().await;
}

/// After an id is pinned on an object that already holds another one, the facade shows the
/// id the controllers work with (the pinned one), not the one its status still records.
#[tokio::test]
async fn the_facade_shows_the_id_the_controllers_use_after_a_re_pin() {
    let ns = TestNamespace::new("names-id").await;
    let f = Facade::start(&ns).await;
    let presets = ns.api::<Preset>();
    apply(
        &presets,
        json!({ "kind": "Preset", "metadata": { "name": "p" }, "spec": { "title": "Re-pinned" } }),
    )
    .await;
    // What the Preset controller records for an assigned id: annotation and status.
    presets
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "annotations": { ID_ANNOTATION: "3" } } })),
        )
        .await
        .unwrap();
    set_status::<Preset>(&ns, "p", json!({ "id": 3 })).await;
    // GitOps pins another id (allowed while none was pinned).
    let pinned = apply(
        &presets,
        json!({ "kind": "Preset", "metadata": { "name": "p" }, "spec": { "title": "Re-pinned", "id": 7 } }),
    )
    .await;
    let controllers = Holding::of(&pinned).wanted();
    assert_eq!(controllers, Some(7));
    let store = f.state.stores.presets.clone();
    eventually(WAIT, "the facade's store sees the pin", || async {
        store
            .get(&ObjectRef::new("p").within(&ns.name))
            .filter(|p| p.spec.id == Some(7) && p.status.is_some())
            .map(|_| ())
    })
    .await;
    let (code, list) = f.get("/presets").await;
    assert!(code.is_success(), "{code} {list}");
    let shown = list["presets"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .find(|p| p["title"] == "Re-pinned")
        .unwrap_or_else(|| panic!("{list}"))["id"]
        .as_i64();
    assert_eq!(
        shown,
        controllers,
        "the facade shows another id than the controllers use for {}",
        pinned.name_any()
    );
}
