//! The cursor decoder on arbitrary text (cursors come back from clients untouched or not):
//! a forged or corrupted cursor is a clear 4xx, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use panoptes::api::query::{CollectionSpec, run};
use serde_json::{Value, json};

const SPEC: CollectionSpec<'static> = CollectionSpec {
    default_sort: "-stats.bitrate",
    tiebreak: "name",
    default_limit: 2,
    max_limit: 100,
    search: &[],
    filters: &[],
    passthrough: &[],
    members: &[],
};

fuzz_target!(|data: (String, u8)| {
    let (cursor, sort) = data;
    let items: Vec<Value> = (0..5)
        .map(|i| json!({ "name": format!("s{i}"), "stats": { "bitrate": i } }))
        .collect();
    let sort = ["name", "-name", "-stats.bitrate,name", "stats.bitrate"][usize::from(sort % 4)];
    let pairs = [("cursor", cursor.as_str()), ("sort", sort)];
    if let Err(e) = run(&items, pairs, &SPEC) {
        assert!(
            (400..500).contains(&e.status()),
            "a bad cursor is a client error"
        );
    }
});
