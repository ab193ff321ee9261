//! The client's request body on its way upstream, counted against the
//! request's size limit (`limits.max_body_bytes`, `[[body_limit]]`). A
//! body that passes the limit ends in an error: the upstream request is
//! aborted there, before the over-limit part is sent, and the client is
//! answered 413 (or, if the response has begun, its connection closed).

use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

pub struct RequestBody {
    inner: Incoming,
    /// Bytes the body may still carry; `None`: no limit.
    remaining: Option<u64>,
    /// Set when the limit was passed. An HTTP/2 upstream stream is reset
    /// on a body error without the error in the send's own (its response
    /// future sees only the reset), so the proxy looks here.
    tripped: Option<Arc<AtomicBool>>,
}

/// Tells the proxy whether a limited body passed its limit.
#[derive(Debug, Clone, Default)]
pub struct LimitWatch(Option<Arc<AtomicBool>>);

impl LimitWatch {
    pub fn passed(&self) -> bool {
        self.0.as_ref().is_some_and(|t| t.load(Ordering::Acquire))
    }
}

/// Why a request body stopped.
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    /// The client's body failed (reset, truncated, malformed chunks).
    #[error("client request body: {0}")]
    Client(#[source] hyper::Error),
    /// More bytes than the request's limit.
    #[error("request body over its size limit")]
    TooLarge,
}

impl RequestBody {
    /// The body, held to `limit` bytes, and a watch on whether it passed
    /// them (nothing is allocated without a limit).
    pub fn new(inner: Incoming, limit: Option<u64>) -> (Self, LimitWatch) {
        let tripped = limit.map(|_| Arc::new(AtomicBool::new(false)));
        let watch = LimitWatch(tripped.clone());
        let body = Self {
            inner,
            remaining: limit,
            tripped,
        };
        (body, watch)
    }
}

/// The [`RequestBodyError`] in an upstream send's error chain, if the
/// send failed because of the client's body.
pub fn failure_of<'e>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e RequestBodyError> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<RequestBodyError>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        let this = &mut *self;
        let polled = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(p) => p,
        };
        let frame = match polled {
            None => return Poll::Ready(None),
            Some(Err(e)) => return Poll::Ready(Some(Err(RequestBodyError::Client(e)))),
            Some(Ok(frame)) => frame,
        };
        if let (Some(remaining), Some(data)) = (&mut this.remaining, frame.data_ref()) {
            let len = data.len() as u64;
            if len > *remaining {
                if let Some(tripped) = &this.tripped {
                    tripped.store(true, Ordering::Release);
                }
                return Poll::Ready(Some(Err(RequestBodyError::TooLarge)));
            }
            *remaining -= len;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
