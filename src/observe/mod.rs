//! What operators look at: Prometheus metrics, health, the security and
//! certificate resources, and the access log.

pub mod access;
pub mod endpoints;
pub mod metrics;
