//! The re-encrypting half: the HTTPS client to the GIS server. Connections
//! are opened verified (`connect`, `verify`), kept alive (`pool`) or
//! multiplexed over HTTP/2 (`multiplex`), resumed (`resume`) and closed when
//! idle (`upkeep`); `client` picks the protocol, and `error` says why an
//! exchange failed. There is no plaintext mode.

pub mod client;
pub mod connect;
pub mod error;
pub mod multiplex;
pub mod pool;
pub mod resume;
pub mod upkeep;
pub mod verify;
