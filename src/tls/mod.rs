//! TLS on the gateway's own side: the server configuration and its
//! certificates, and the TLS stream both sides speak over (the upstream
//! client is `crate::upstream`).

pub mod certs;
pub mod chosen_cert;
pub mod client_auth;
pub mod hello;
pub mod pkcs12;
pub mod server;
pub mod stream;
pub mod suites;

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
