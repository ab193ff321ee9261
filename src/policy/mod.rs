//! Request policy for the gisgate gateway: canonical paths, queries, the admin gate,
//! client addresses, the HTTPS redirect and CORS / Private Network Access.
//!
//! Every function here fails closed: when input is ambiguous or malformed,
//! the answer is the restrictive one (an error, `None`, or no grant).

pub mod admin;
pub mod client_cert;
pub mod client_ip;
pub mod cors;
pub mod path;
pub mod query;
pub mod redirect;
pub mod sni_host;
mod utf8;

pub use admin::{parse_ip_or_cidr, AdminDecision, AdminGate};
pub use client_ip::client_ip;
pub use cors::{is_preflight, CorsPolicy};
pub use path::{canonical_path, PathError};
pub use query::{check_query, QueryError};
pub use redirect::{https_location, LocationError};
