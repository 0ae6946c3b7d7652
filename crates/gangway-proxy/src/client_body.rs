//! A client's request body on its way to a backend, with the limits a
//! client must keep: a largest size per route and a longest pause between
//! two pieces. When the client breaks one (or sends a malformed body), the
//! reason is noted so that the request is answered as the client's fault
//! (400, 408, 413) and never counted against the backend.

use crate::body::BodyError;
use crate::h1::server::H1RequestBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Why a client's body stopped short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFault {
    /// Not valid HTTP framing (a bad chunk size, say), or the client went
    /// away mid-body.
    Malformed = 1,
    /// No data for longer than the body timeout.
    Stalled = 2,
    /// Longer than the route's `max_body_size`.
    TooLarge = 3,
}

impl BodyFault {
    fn from_u8(n: u8) -> Option<BodyFault> {
        match n {
            1 => Some(BodyFault::Malformed),
            2 => Some(BodyFault::Stalled),
            3 => Some(BodyFault::TooLarge),
            _ => None,
        }
    }

    /// The reason, for the log line and the response.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            BodyFault::Malformed => "the request body is malformed or was cut off\n",
            BodyFault::Stalled => "the request body paused longer than the body timeout\n",
            BodyFault::TooLarge => "the request body is larger than this route allows\n",
        }
    }

    /// The status that answers it.
    pub(crate) fn status(self) -> http::StatusCode {
        match self {
            BodyFault::Malformed => http::StatusCode::BAD_REQUEST,
            BodyFault::Stalled => http::StatusCode::REQUEST_TIMEOUT,
            BodyFault::TooLarge => http::StatusCode::PAYLOAD_TOO_LARGE,
        }
    }
}

impl std::fmt::Display for BodyFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason().trim_end())
    }
}

impl std::error::Error for BodyFault {}

/// Where a [`ClientBody`] leaves its fault for the request handler, which
/// keeps the other end after the body has been handed to the client.
#[derive(Debug, Default)]
pub(crate) struct FaultCell(AtomicU8);

impl FaultCell {
    pub(crate) fn get(&self) -> Option<BodyFault> {
        BodyFault::from_u8(self.0.load(Ordering::Acquire))
    }

    fn set(&self, fault: BodyFault) {
        self.0.store(fault as u8, Ordering::Release);
    }
}

/// A request body as the server that read the head hands it over.
#[derive(Debug)]
pub enum IncomingBody {
    /// From hyper's server (TLS and HTTP/2 listeners).
    Hyper(Incoming),
    /// From gangway's own HTTP/1.1 server.
    H1(H1RequestBody),
    /// No body.
    Empty,
}

impl Body for IncomingBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            IncomingBody::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            IncomingBody::H1(body) => Pin::new(body).poll_frame(cx),
            IncomingBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            IncomingBody::Hyper(body) => body.is_end_stream(),
            IncomingBody::H1(body) => body.is_end_stream(),
            IncomingBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            IncomingBody::Hyper(body) => body.size_hint(),
            IncomingBody::H1(body) => body.size_hint(),
            IncomingBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// The client's body, with the size limit and the pause timeout enforced.
#[derive(Debug)]
pub(crate) struct ClientBody {
    inner: IncomingBody,
    idle: Duration,
    /// Started the first time the body has nothing to give, so that
    /// requests without a body never touch the timer wheel.
    timer: Option<Pin<Box<Sleep>>>,
    /// Bytes still allowed; `None` without a limit.
    allowed: Option<u64>,
    fault: Arc<FaultCell>,
    failed: bool,
}

impl ClientBody {
    pub(crate) fn new(
        inner: IncomingBody,
        idle: Duration,
        max_size: Option<u64>,
        fault: Arc<FaultCell>,
    ) -> Self {
        ClientBody {
            inner,
            idle,
            timer: None,
            allowed: max_size,
            fault,
            failed: false,
        }
    }

    fn fail(&mut self, fault: BodyFault) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.failed = true;
        self.fault.set(fault);
        Poll::Ready(Some(Err(Box::new(fault))))
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if timer.as_mut().poll(cx).is_ready() {
                    return this.fail(BodyFault::Stalled);
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(allowed)) = (frame.data_ref(), &mut this.allowed) {
                    match allowed.checked_sub(data.len() as u64) {
                        Some(left) => *allowed = left,
                        None => return this.fail(BodyFault::TooLarge),
                    }
                }
                if let Some(timer) = &mut this.timer {
                    timer.as_mut().reset(Instant::now() + this.idle);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                tracing::debug!(%error, "request body failed");
                this.fail(BodyFault::Malformed)
            }
            Poll::Ready(None) => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
