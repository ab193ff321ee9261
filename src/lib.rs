//! gisgate: a TLS policy gateway in front of an ArcGIS-style GIS server.
//! It terminates client TLS, applies the site's transport security policy
//! and re-encrypts every request to the upstream over HTTPS. It never
//! offloads TLS: there is no plaintext hop to the upstream.
#![forbid(unsafe_code)]

pub mod body;
pub mod certtool;
pub mod check;
pub mod cli;
pub mod client_cert;
pub mod config;
pub mod conn;
pub mod demo;
pub mod devpki;
pub mod diff;
pub mod error;
// Fuzz target bodies, shared by fuzz/ and tests/fuzz_corpus.rs.
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod headers;
pub mod host;
pub mod listen;
pub mod live;
pub mod logging;
pub mod observe;
pub mod policy;
pub mod probe;
pub mod proxy;
pub mod reload;
pub mod request_body;
pub mod run;
pub mod task;
pub mod tls;
pub mod tunnel;
pub(crate) mod upstream;
