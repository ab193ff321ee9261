//! What the listeners serve, handed to them by the gateway (which starts
//! them, so they never name it).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::sync::Semaphore;

use super::open_connections::OpenConnections;
use crate::body::ResponseBody;
use crate::conn::ConnInfo;
use crate::live::Live;

/// `Box::pin(make())`, with the box allocated before the future is
/// built. The request's future is ~9 KiB (its largest state, the upstream
/// exchange); built first and then moved, the move is a 9 KiB `memcpy` per
/// request, which the release build (it unwinds on a panic, src/task.rs)
/// does not optimize away: 11k instructions per request (callgrind).
pub fn built_in_its_box<F: Future>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    Box::into_pin(Box::write(Box::new_uninit(), make()))
}
/// What the listeners serve and the state they read: handed to them by
/// the gateway, which they do not name (it starts them).
pub trait Service: Send + Sync + 'static {
    /// The running state a new connection takes its TLS and limits from.
    fn live(&self) -> Arc<Live>;
    /// Permits for client connections on the public listeners.
    fn connection_limit(&self) -> Arc<Semaphore>;
    /// The open connections the drain waits for.
    fn connections(&self) -> &Arc<OpenConnections>;
    /// One request's response, on a connection of `info.kind`.
    fn respond(self: Arc<Self>, info: Arc<ConnInfo>, req: Request<Incoming>) -> Responding;
}
/// A request's response under way, boxed (`built_in_its_box`).
pub type Responding =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>> + Send>>;
