//! The facade's query engine on arbitrary query pairs (`select`, `sort`, `limit`, `cursor`,
//! `q`, filters): it must answer or refuse, never panic, and a `next` cursor it hands out must
//! be accepted on the next request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use panoptes::api::query::{CollectionSpec, Field, run};
use serde_json::{Value, json};

const SPEC: CollectionSpec<'static> = CollectionSpec {
    default_sort: "name",
    tiebreak: "name",
    default_limit: 3,
    max_limit: 100,
    search: &["name", "title", "inputs.url"],
    filters: &[
        Field::new("organization_id"),
        Field::new("title"),
        Field::new("stats.alive"),
        Field::new("stats.bitrate"),
    ],
    passthrough: &[],
    members: &[],
};

fn items() -> Vec<Value> {
    (0..12)
        .map(|i| {
            json!({
                "name": format!("cam{i}"),
                "title": if i % 3 == 0 { Value::Null } else { json!(format!("Gate {}", i % 4)) },
                "organization_id": i % 2,
                "inputs": [{ "url": format!("rtsp://10.0.0.{i}/h264") }],
                "stats": { "alive": i % 2 == 0, "bitrate": i * 100 },
            })
        })
        .collect()
}

fuzz_target!(|pairs: Vec<(String, String)>| {
    let items = items();
    if let Ok(page) = run(&items, pairs.iter().map(|(k, v)| (k, v)), &SPEC) {
        // Written as the facade writes it (straight from the shared items), read back.
        let envelope = serde_json::to_value(page.into_envelope("streams", json!({})))
            .expect("an envelope always serializes");
        if let Some(next) = envelope.get("next").and_then(Value::as_str) {
            let mut follow: Vec<(String, String)> = pairs
                .iter()
                .filter(|(k, _)| k != "cursor")
                .cloned()
                .collect();
            follow.push(("cursor".into(), next.to_string()));
            assert!(
                run(&items, follow.iter().map(|(k, v)| (k, v)), &SPEC).is_ok(),
                "a cursor the engine issued was refused"
            );
        }
    }
});
