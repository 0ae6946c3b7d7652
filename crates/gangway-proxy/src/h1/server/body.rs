//! A client's request body, read from the client's connection by whoever
//! polls it: the request handler, or a client sending it on to a target.
//! When the body is complete, the bytes read past its end (a pipelined
//! request) go back to the connection, which can then serve the next
//! request; a body dropped before its end makes the connection close.

use crate::body::BodyError;
use crate::h1::chunked::{Chunk, ChunkedDecoder};
use crate::h1::conn::poll_read_into;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};

/// Bytes asked of the socket per read of a body.
const BODY_READ: usize = 16 * 1024;

#[derive(Debug)]
enum Framing {
    Length(u64),
    Chunked(ChunkedDecoder),
    Done,
}

/// The body of a request on gangway's own HTTP/1.1 server.
#[derive(Debug)]
pub(crate) struct H1RequestBody {
    io: Arc<TcpStream>,
    buf: BytesMut,
    framing: Framing,
    /// Asks the connection for `100 Continue` at the first read.
    wants_continue: Option<Arc<Notify>>,
    /// Where the unused bytes go when the body is complete.
    back: Option<oneshot::Sender<BytesMut>>,
}

impl H1RequestBody {
    /// A body of `length` bytes (chunked when `None`) whose first bytes
    /// may already be in `buf`.
    pub(crate) fn new(
        io: Arc<TcpStream>,
        buf: BytesMut,
        length: Option<u64>,
        wants_continue: Option<Arc<Notify>>,
        back: oneshot::Sender<BytesMut>,
    ) -> Self {
        let framing = match length {
            Some(n) => Framing::Length(n),
            None => Framing::Chunked(ChunkedDecoder::new()),
        };
        H1RequestBody {
            io,
            buf,
            framing,
            wants_continue,
            back: Some(back),
        }
    }

    /// The body is complete: the rest of the buffer goes back.
    fn finish(&mut self) {
        self.framing = Framing::Done;
        if let Some(back) = self.back.take() {
            let _ = back.send(std::mem::take(&mut self.buf));
        }
    }

    fn fail(
        &mut self,
        error: impl Into<BodyError>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.framing = Framing::Done;
        self.back = None;
        Poll::Ready(Some(Err(error.into())))
    }
}

impl Body for H1RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Some(wants) = this.wants_continue.take() {
            wants.notify_one();
        }
        loop {
            match &mut this.framing {
                Framing::Done => return Poll::Ready(None),
                Framing::Length(0) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Framing::Length(left) if !this.buf.is_empty() => {
                    // Bounded by the buffer's length, so the cast cannot truncate.
                    let take = (*left).min(this.buf.len() as u64) as usize;
                    *left -= take as u64;
                    let data = this.buf.split_to(take).freeze();
                    if *left == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Length(_) => {}
                Framing::Chunked(decoder) => match decoder.decode(&mut this.buf) {
                    Ok(Some(Chunk::Data(data))) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Some(Chunk::Trailers(trailers))) => {
                        this.finish();
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Ok(Some(Chunk::End)) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(None) => {}
                    Err(error) => return this.fail(error),
                },
            }
            if this.buf.capacity() - this.buf.len() < BODY_READ / 8 {
                this.buf.reserve(BODY_READ);
            }
            match ready!(poll_read_into(&this.io, &mut this.buf, cx)) {
                Ok(0) => return this.fail("the client closed the connection mid-body"),
                Ok(_) => {}
                Err(error) => return this.fail(error),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Done | Framing::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Done => SizeHint::with_exact(0),
            Framing::Chunked(_) => SizeHint::default(),
        }
    }
}
