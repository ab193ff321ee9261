//! TLS on both sides of the gateway.

pub mod certs;
pub mod client_auth;
pub mod connect;
pub mod hello;
pub mod multiplex;
pub mod pkcs12;
pub mod pool;
pub mod resume;
pub mod server;
pub mod stream;
pub mod suites;
pub mod upkeep;
pub mod upstream;

/// Building a TLS config or client failed; `key` is the config key it is
/// about, so the error can be located in the file (file:line:col).
#[derive(Debug)]
pub struct BuildError {
    pub key: String,
    pub message: String,
}

impl BuildError {
    pub fn new(key: impl Into<String>, message: impl std::fmt::Display) -> Self {
        BuildError {
            key: key.into(),
            message: message.to_string(),
        }
    }
}
