//! `gateway.toml`: raw file structs, validation into typed settings, and
//! errors that carry file:line:col.

mod client_auth;
mod error;
pub mod keys;
mod proxy_protocol;
pub(crate) mod raw;
mod syntax;
mod types;
mod validate;

pub use error::{ConfigError, ConfigErrors, Locator};
pub use proxy_protocol::{ProxyProtocol, ProxyProtocolMode};
pub use validate::*;
