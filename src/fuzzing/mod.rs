//! Fuzz target bodies. Each takes arbitrary bytes, runs one parser or
//! policy decision of the gateway on them and checks a property of the
//! answer, panicking when it does not hold (not only "does not crash").
//!
//! They are called from two places, so that what a fuzzer once found stays
//! found: the cargo-fuzz targets in `fuzz/` (nightly, libFuzzer), and
//! `tests/fuzz_corpus.rs`, which replays every saved input of
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` on the stable
//! toolchain as part of `cargo test`. Not part of the gateway's API.

mod certs;
mod client_ip;
mod config;
mod cors;
mod input;
mod path;
mod proxy_header;
mod redirect;
mod tls;

pub use certs::certificate_files;
pub use client_ip::forwarded_for;
pub use config::config_text;
pub use cors::cors_origin;
pub use path::canonical_path_and_admin;
pub use proxy_header::proxy_header;
pub use redirect::host_and_location;
pub use tls::{tls_client, tls_server};

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target by the name of its `fuzz/fuzz_targets/<name>.rs` and of its
/// corpus directories.
pub const TARGETS: &[(&str, Target)] = &[
    ("canonical_path", canonical_path_and_admin),
    ("forwarded_for", forwarded_for),
    ("host_location", host_and_location),
    ("cors_origin", cors_origin),
    ("config", config_text),
    ("certificates", certificate_files),
    ("tls_server", tls_server),
    ("tls_client", tls_client),
    ("proxy_header", proxy_header),
];

/// The body of the target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}
