//! The placement algorithm: pure functions over a snapshot, no I/O.
