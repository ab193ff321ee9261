//! The response body: the upstream's, streamed frame by frame in constant
//! memory, or a small one the gateway made. It carries the request's
//! record, so the access log line and metrics are written when the body
//! has really been sent (or the client went away), with the bytes counted.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::observe::access::RequestRecord;
use crate::upstream::client::Lease;

pub struct ResponseBody {
    inner: Inner,
    bytes: u64,
    record: Option<Box<RequestRecord>>,
    /// The pooled upstream connection the body arrives on, given back as
    /// soon as the body has been read to its end.
    lease: Option<Lease>,
    /// A frame was handed to the connection and the body has not been
    /// asked for more since: the client's send timeout runs.
    handed: bool,
}

enum Inner {
    Upstream(Incoming),
    Full(Option<Bytes>),
}

impl ResponseBody {
    pub fn upstream(body: Incoming, lease: Option<Lease>) -> Self {
        let mut this = Self::new(Inner::Upstream(body));
        this.lease = lease;
        this
    }
    pub fn full(data: impl Into<Bytes>) -> Self {
        Self::new(Inner::Full(Some(data.into())))
    }
    pub fn empty() -> Self {
        Self::new(Inner::Full(None))
    }
    fn new(inner: Inner) -> Self {
        ResponseBody {
            inner,
            bytes: 0,
            record: None,
            lease: None,
            handed: false,
        }
    }

    /// Gives the upstream connection back once its response is complete.
    fn release_if_done(&mut self) {
        if matches!(&self.inner, Inner::Upstream(body) if body.is_end_stream()) {
            self.release();
        }
    }

    fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
    }
    /// The send timeout (`limits.send_timeout`) runs from a frame handed
    /// to the connection until the body is asked for the next one: hyper
    /// asks only once it could send the last (HTTP/1.1: written to the
    /// socket; HTTP/2: flow-control window). Waiting for the upstream is
    /// not counted.
    fn note_handed(&mut self) {
        if let Some(record) = &self.record {
            record.conn.activity.frame_handed();
            self.handed = true;
        }
    }

    fn note_taken(&mut self, progress: bool) {
        if std::mem::take(&mut self.handed) {
            if let Some(record) = &self.record {
                record.conn.activity.frame_taken(progress);
            }
        }
    }

    pub fn with_record(mut self, record: RequestRecord) -> Self {
        self.record = Some(Box::new(record));
        self
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        // Asked for more: the connection sent what it was handed.
        this.note_taken(true);
        let polled = match &mut this.inner {
            Inner::Upstream(body) => Pin::new(body).poll_frame(cx),
            Inner::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                }
                this.release_if_done();
                this.note_handed();
            }
            Poll::Ready(None) => this.release(),
            // A broken body: its connection is not reused.
            Poll::Ready(Some(Err(_))) => this.lease = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream(b) => b.is_end_stream(),
            Inner::Full(d) => d.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(b) => b.size_hint(),
            Inner::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            Inner::Full(None) => SizeHint::with_exact(0),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // A body that was empty from the start (HEAD, 204, 304) is never
        // polled; one dropped half-read closes its connection.
        self.release_if_done();
        self.note_taken(false);
        if let Some(mut record) = self.record.take() {
            record.bytes = self.bytes;
            record.finish();
        }
    }
}
