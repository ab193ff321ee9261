//! TLS on both sides of the gateway.

pub mod certs;
pub mod server;
pub mod suites;
pub mod upstream;
