//! The response body gangway sends to clients, and the access log line that
//! is written when that body has been sent (or abandoned).

use crate::access_log::AccessLine;
use crate::client_body::ClientBody;
use crate::h1::OriginBody;
use crate::handler::{ip_text, socket_text, IP_TEXT, SOCKET_TEXT};
use bytes::{Bytes, BytesMut};
use gangway_router::PoolEntry;
use http::{Method, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncSeekExt, ReadBuf};

/// A response body: streamed from a backend, or a short one of gangway's own.
#[derive(Debug)]
pub struct ResponseBody {
    inner: Inner,
    /// Boxed: a response is moved whole through every level of the request
    /// path, and most run with access logs off.
    log: Option<Box<AccessRecord>>,
}

#[derive(Debug)]
enum Inner {
    /// A backend's body, cut off at the deadline (a pool's request timeout).
    Upstream(UpstreamBody, Option<Pin<Box<tokio::time::Sleep>>>),
    Full(Option<Bytes>),
    File {
        file: tokio::fs::File,
        remaining: u64,
        buf: BytesMut,
    },
}

/// How much of a file is read per frame.
const FILE_CHUNK: u64 = 64 * 1024;

/// Errors a response body can end with.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl ResponseBody {
    /// Streams a backend's body frame by frame.
    pub(crate) fn upstream(body: UpstreamBody, deadline: Option<tokio::time::Instant>) -> Self {
        ResponseBody {
            inner: Inner::Upstream(
                body,
                deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            ),
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

    /// A body with no bytes.
    pub fn empty() -> Self {
        Self::full(Bytes::new())
    }

    /// Streams `len` bytes of `file` from `start` on.
    pub(crate) async fn file(
        mut file: tokio::fs::File,
        start: u64,
        len: u64,
    ) -> std::io::Result<Self> {
        if start > 0 {
            file.seek(std::io::SeekFrom::Start(start)).await?;
        }
        Ok(ResponseBody {
            inner: Inner::File {
                file,
                remaining: len,
                buf: BytesMut::new(),
            },
            log: None,
        })
    }

    /// Attaches the access record that is logged once the body is done.
    pub(crate) fn set_log(&mut self, record: Option<Box<AccessRecord>>) {
        self.log = record;
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let polled = match &mut this.inner {
            Inner::Upstream(body, deadline) => {
                if deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready())
                {
                    *deadline = None;
                    tracing::warn!("response cut off: the pool's request timeout passed");
                    return Poll::Ready(Some(Err("the request timeout passed".into())));
                }
                Pin::new(body).poll_frame(cx)
            }
            Inner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::File {
                file,
                remaining,
                buf,
            } => poll_file(file, remaining, buf, cx),
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
            Inner::Upstream(body, _) => body.is_end_stream(),
            Inner::Full(bytes) => bytes.is_none(),
            Inner::File { remaining, .. } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(body, _) => body.size_hint(),
            Inner::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Inner::Full(None) => SizeHint::with_exact(0),
            Inner::File { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}

fn poll_file(
    file: &mut tokio::fs::File,
    remaining: &mut u64,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
    if *remaining == 0 {
        return Poll::Ready(None);
    }
    // Bounded by FILE_CHUNK, so the cast cannot truncate.
    let want = (*remaining).min(FILE_CHUNK) as usize;
    buf.resize(want, 0);
    let mut read = ReadBuf::new(&mut buf[..]);
    match Pin::new(file).poll_read(cx, &mut read) {
        Poll::Pending => Poll::Pending,
        Poll::Ready(Err(e)) => Poll::Ready(Some(Err(Box::new(e)))),
        Poll::Ready(Ok(())) => {
            let n = read.filled().len();
            if n == 0 {
                // The file shrank while being sent.
                *remaining = 0;
                return Poll::Ready(Some(Err("file ended early".into())));
            }
            *remaining -= n as u64;
            Poll::Ready(Some(Ok(Frame::data(buf.split_to(n).freeze()))))
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
    pub host: http::HeaderValue,
    pub uri: Uri,
    pub request_id: http::HeaderValue,
    pub status: u16,
    pub bytes: u64,
    pub upstream: Option<(Arc<PoolEntry>, usize)>,
}

impl AccessRecord {
    fn emit(&self) {
        let target = self
            .upstream
            .as_ref()
            .and_then(|(pool, i)| pool.targets().get(*i));
        // Addresses as text without `core::fmt` (a tenth of the cost).
        let mut client = [0u8; IP_TEXT];
        let mut upstream = [0u8; SOCKET_TEXT];
        AccessLine {
            client: std::str::from_utf8(ip_text(self.client, &mut client)).unwrap_or_default(),
            method: self.method.as_str(),
            // Checked to be visible ASCII when the request came in.
            host: self.host.to_str().unwrap_or_default(),
            path: self.uri.path(),
            request_id: self.request_id.to_str().unwrap_or_default(),
            status: self.status,
            bytes: self.bytes,
            duration_ms: self.start.elapsed().as_secs_f64() * 1000.0,
            upstream: target.map(|t| {
                std::str::from_utf8(socket_text(t.addr, &mut upstream)).unwrap_or_default()
            }),
            container: target.map(|t| &*t.name),
        }
        .write();
    }
}

/// A target's response body, from whichever client fetched it.
#[derive(Debug)]
pub(crate) enum UpstreamBody {
    /// From gangway's own HTTP/1.1 client.
    Own(OriginBody),
    /// From hyper's client (HTTP/2, TLS).
    Hyper(Incoming),
    /// Nothing (the connection was taken over by an upgrade).
    Empty,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            UpstreamBody::Own(body) => Pin::new(body).poll_frame(cx),
            UpstreamBody::Hyper(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|e| Box::new(e) as BodyError),
            UpstreamBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Own(body) => body.is_end_stream(),
            UpstreamBody::Hyper(body) => body.is_end_stream(),
            UpstreamBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Own(body) => body.size_hint(),
            UpstreamBody::Hyper(body) => body.size_hint(),
            UpstreamBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// A request body on its way to a backend: streamed as it arrives, or kept
/// in memory (small ones) so that a failed attempt can be sent again.
#[derive(Debug)]
pub enum RequestBody {
    /// Streamed from the client; can be sent once.
    Stream(ClientBody),
    /// Kept; each attempt sends a copy (a cheap reference-counted one).
    Replay(Option<Bytes>),
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut *self {
            RequestBody::Stream(body) => Pin::new(body).poll_frame(cx),
            RequestBody::Replay(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Stream(body) => body.is_end_stream(),
            RequestBody::Replay(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Stream(body) => body.size_hint(),
            RequestBody::Replay(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
