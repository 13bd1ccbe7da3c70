//! Decoding of node API responses (bodies from nodes we do not control): every decoder
//! Panoptes applies to a node's bytes must return a value or an error, never panic; and the
//! drift check must cope with any `config_on_disk`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use panoptes::flussonic::{StreamsPage, drift, node_stream_body, parse_error_body};
use panoptes::resources::wire::{NodeStream, ServerStats, ServerWhoami, StreamConfigSpec};

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<StreamsPage>(data);
    let _ = serde_json::from_slice::<NodeStream>(data);
    let _ = serde_json::from_slice::<ServerStats>(data);
    let _ = serde_json::from_slice::<ServerWhoami>(data);
    let _ = parse_error_body(data);
    if let Ok(disk) = serde_json::from_slice::<serde_json::Value>(data) {
        let body = node_stream_body("cam", &StreamConfigSpec::default());
        let _ = drift(&body, Some(&disk));
    }
});
