//! A target's response body, read from the connection as the client takes
//! it, and the request body still being sent while the response arrives.

use super::chunked::{self, Chunk, ChunkedDecoder};
use super::conn::Conn;
use super::head::ResponseFraming;
use super::{Checkin, Upgraded};
use crate::body::{BodyError, RequestBody};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// A request body on its way to the target, written as it arrives from
/// the client: raw when its length is known, else chunked.
#[derive(Debug)]
pub(crate) struct Pump {
    body: RequestBody,
    chunked: bool,
    pending: VecDeque<Bytes>,
    /// The body's last byte (and, chunked, the last chunk) is queued.
    ended: bool,
}

/// Why the request body stopped.
#[derive(Debug)]
pub(crate) enum PumpError {
    /// The client's body failed (malformed, too slow, too large).
    Client(BodyError),
    /// The target stopped taking it.
    Write(std::io::Error),
}

impl Pump {
    pub(crate) fn new(body: RequestBody, chunked: bool) -> Self {
        Pump {
            body,
            chunked,
            pending: VecDeque::new(),
            ended: false,
        }
    }

    /// Whether the whole body has been written.
    fn is_done(&self) -> bool {
        self.ended && self.pending.is_empty()
    }

    /// Moves the body to the target until it is all written.
    pub(crate) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        conn: &mut Conn,
    ) -> Poll<Result<(), PumpError>> {
        loop {
            ready!(conn.poll_write_all(cx, &mut self.pending)).map_err(PumpError::Write)?;
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => {}
                    Ok(data) if self.chunked => {
                        self.pending.push_back(chunked::chunk_start(data.len()));
                        self.pending.push_back(data);
                        self.pending
                            .push_back(Bytes::from_static(chunked::CHUNK_END));
                    }
                    Ok(data) => self.pending.push_back(data),
                    Err(frame) => {
                        // Trailers end the body; without chunked coding
                        // there is no place for them.
                        if self.chunked {
                            self.pending
                                .push_back(chunked::last_chunk(frame.trailers_ref()));
                        }
                        self.ended = true;
                    }
                },
                Some(Err(e)) => return Poll::Ready(Err(PumpError::Client(e))),
                None => {
                    if self.chunked {
                        self.pending.push_back(chunked::last_chunk(None));
                    }
                    self.ended = true;
                }
            }
        }
    }
}

/// What one turn of `poll_frame` found.
enum Step {
    /// A frame, and whether it is the body's last.
    Frame(Frame<Bytes>, bool),
    End,
    Read,
    Fail(BodyError),
}

#[derive(Debug)]
enum Framing {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Done,
}

/// The body of a target's response. When it has been read to the end and
/// the connection can carry another request, the connection goes back to
/// the idle pool at once.
#[derive(Debug)]
pub(crate) struct OriginBody {
    conn: Option<Conn>,
    framing: Framing,
    /// The request body, if it was still being sent when the head came.
    pump: Option<Box<Pump>>,
    keep_alive: bool,
    checkin: Option<Checkin>,
}

impl OriginBody {
    pub(crate) fn new(
        conn: Conn,
        framing: ResponseFraming,
        pump: Option<Box<Pump>>,
        keep_alive: bool,
        checkin: Checkin,
    ) -> Self {
        let framing = match framing {
            ResponseFraming::Empty | ResponseFraming::Length(0) => Framing::Done,
            ResponseFraming::Length(n) => Framing::Length(n),
            ResponseFraming::Chunked => Framing::Chunked(ChunkedDecoder::new()),
            ResponseFraming::UntilClose => Framing::UntilClose,
        };
        let mut body = OriginBody {
            conn: Some(conn),
            framing,
            pump,
            keep_alive,
            checkin: Some(checkin),
        };
        if matches!(body.framing, Framing::Done) {
            body.finish();
        }
        body
    }

    /// The body of a `101 Switching Protocols`: none; the connection
    /// stays here for `into_upgraded`.
    pub(crate) fn switched(conn: Conn) -> Self {
        OriginBody {
            conn: Some(conn),
            framing: Framing::Done,
            pump: None,
            keep_alive: false,
            checkin: None,
        }
    }

    /// The connection after a `101 Switching Protocols`, with any bytes
    /// the target sent after the head.
    pub(crate) fn into_upgraded(mut self) -> Option<Upgraded> {
        self.checkin = None;
        let conn = self.conn.take()?;
        Some(Upgraded {
            io: conn.io,
            read_ahead: conn.buf.freeze(),
        })
    }

    /// The body is complete: the connection is reused if it can be.
    fn finish(&mut self) {
        self.framing = Framing::Done;
        let pump_done = self.pump.as_ref().is_none_or(|p| p.is_done());
        let (Some(conn), Some(checkin)) = (self.conn.take(), self.checkin.take()) else {
            return;
        };
        // Bytes after the body would be a response nobody asked for.
        if self.keep_alive && pump_done && conn.buf.is_empty() {
            checkin.put(conn);
        }
    }

    fn fail(
        &mut self,
        error: impl Into<BodyError>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.framing = Framing::Done;
        self.conn = None;
        Poll::Ready(Some(Err(error.into())))
    }
}

impl Body for OriginBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            if let Some(pump) = this.pump.as_mut().filter(|p| !p.is_done()) {
                match pump.poll(cx, conn) {
                    Poll::Ready(Ok(())) | Poll::Pending => {}
                    Poll::Ready(Err(PumpError::Client(e))) => return this.fail(e),
                    // The target answered and stopped reading: the rest of
                    // the response still comes, but the connection is done.
                    Poll::Ready(Err(PumpError::Write(error))) => {
                        tracing::debug!(upstream = %conn.addr, %error, "the target stopped reading the request body");
                        this.keep_alive = false;
                        this.pump = None;
                    }
                }
            }
            let step = match &mut this.framing {
                Framing::Done => Step::End,
                Framing::Length(left) if !conn.buf.is_empty() => {
                    // At most `buf.len()`, so the cast cannot truncate.
                    let take = (*left).min(conn.buf.len() as u64) as usize;
                    *left -= take as u64;
                    Step::Frame(Frame::data(conn.buf.split_to(take).freeze()), *left == 0)
                }
                Framing::Chunked(decoder) => match decoder.decode(&mut conn.buf) {
                    Ok(Some(Chunk::Data(data))) => Step::Frame(Frame::data(data), false),
                    Ok(Some(Chunk::Trailers(trailers))) => {
                        Step::Frame(Frame::trailers(trailers), true)
                    }
                    Ok(Some(Chunk::End)) => Step::End,
                    Ok(None) => Step::Read,
                    Err(e) => {
                        Step::Fail(format!("the target's chunked body is broken: {e}").into())
                    }
                },
                Framing::UntilClose if !conn.buf.is_empty() => {
                    Step::Frame(Frame::data(conn.buf.split().freeze()), false)
                }
                Framing::Length(_) | Framing::UntilClose => Step::Read,
            };
            match step {
                Step::Frame(frame, last) => {
                    if last {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Step::End => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Step::Fail(e) => return this.fail(e),
                Step::Read => match ready!(conn.poll_fill(cx)) {
                    Ok(0) if matches!(this.framing, Framing::UntilClose) => {
                        this.framing = Framing::Done;
                        this.conn = None;
                        return Poll::Ready(None);
                    }
                    Ok(0) => {
                        return this.fail("the target closed the connection before the body's end")
                    }
                    Ok(_) => {}
                    Err(e) => return this.fail(e),
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.framing {
            Framing::Done => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(*n),
            _ => SizeHint::default(),
        }
    }
}
