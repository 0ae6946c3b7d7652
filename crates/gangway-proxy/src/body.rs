//! The response body gangway sends to clients, and the access log line that
//! is written when that body has been sent (or abandoned).

use bytes::Bytes;
use gangway_router::PoolEntry;
use http::{Method, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// A response body: streamed from a backend, or a short one of gangway's own.
#[derive(Debug)]
pub struct ResponseBody {
    inner: Inner,
    log: Option<AccessRecord>,
}

#[derive(Debug)]
enum Inner {
    Upstream(Incoming),
    Full(Option<Bytes>),
}

impl ResponseBody {
    /// Streams a backend's body frame by frame.
    pub fn upstream(body: Incoming) -> Self {
        ResponseBody {
            inner: Inner::Upstream(body),
            log: None,
        }
    }

    /// A body gangway wrote itself.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        ResponseBody {
            inner: Inner::Full(Some(bytes.into())),
            log: None,
        }
    }

    /// Attaches the access record that is logged once the body is done.
    pub(crate) fn with_log(mut self, record: Option<AccessRecord>) -> Self {
        self.log = record;
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
        let polled = match &mut this.inner {
            Inner::Upstream(body) => Pin::new(body).poll_frame(cx),
            Inner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        };
        if let (Poll::Ready(Some(Ok(frame))), Some(log)) = (&polled, &mut this.log) {
            if let Some(data) = frame.data_ref() {
                log.bytes += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream(body) => body.is_end_stream(),
            Inner::Full(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(body) => body.size_hint(),
            Inner::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Inner::Full(None) => SizeHint::with_exact(0),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(record) = self.log.take() {
            record.emit();
        }
    }
}

/// Everything the access log line says about one request.
#[derive(Debug)]
pub(crate) struct AccessRecord {
    pub start: Instant,
    pub client: IpAddr,
    pub method: Method,
    pub host: Box<str>,
    pub uri: Uri,
    pub status: u16,
    pub bytes: u64,
    pub upstream: Option<(Arc<PoolEntry>, usize)>,
}

impl AccessRecord {
    fn emit(self) {
        let target = self
            .upstream
            .as_ref()
            .and_then(|(pool, i)| pool.targets().get(*i));
        // The query string is left out on purpose: it often carries tokens.
        tracing::info!(
            target: "access",
            client = %self.client,
            method = %self.method,
            host = &*self.host,
            path = self.uri.path(),
            status = self.status,
            bytes = self.bytes,
            duration_ms = self.start.elapsed().as_secs_f64() * 1000.0,
            upstream = target.map(|t| tracing::field::display(t.addr)),
            container = target.map(|t| &*t.name),
            "request"
        );
    }
}
