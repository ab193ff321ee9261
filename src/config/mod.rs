//! `gateway.toml`: raw file structs, validation into typed settings, and
//! errors that carry file:line:col.

mod client_auth;
mod error;
pub mod keys;
mod proxy_protocol;
pub(crate) mod raw;
mod rules;
mod syntax;
mod types;
mod validate;
mod validate_rules;

pub use error::{ConfigError, ConfigErrors, Locator};
pub use proxy_protocol::{ProxyProtocol, ProxyProtocolMode};
pub use rules::{
    parse_rate, AccessRule, BodyLimitRule, Rate, RateError, RateLimitRule, RuleScope, Tokens,
};
pub use validate::*;
