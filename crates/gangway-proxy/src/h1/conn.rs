//! One connection to a target: the socket, the bytes read but not yet
//! used, and reads and writes driven from whichever task polls them.

use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::task::{ready, Context, Poll};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The first read's buffer; it doubles while reads fill it, up to
/// `MAX_READ`, so a large body moves in large reads.
const FIRST_READ: usize = 8 * 1024;
const MAX_READ: usize = 256 * 1024;

#[derive(Debug)]
pub(crate) struct Conn {
    pub io: TcpStream,
    /// Bytes read from the target and not yet taken.
    pub buf: BytesMut,
    pub addr: SocketAddr,
    /// Whether the connection carried an earlier request.
    pub reused: bool,
    next_read: usize,
}

impl Conn {
    pub(crate) fn new(io: TcpStream, addr: SocketAddr) -> Self {
        Conn {
            io,
            buf: BytesMut::new(),
            addr,
            reused: false,
            next_read: FIRST_READ,
        }
    }

    /// Reads what the socket has into `buf`: `Ok(0)` is the end of the
    /// stream.
    pub(crate) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < FIRST_READ / 8 {
            self.buf.reserve(self.next_read);
        }
        let spare = self.buf.capacity() - self.buf.len();
        let n = ready!(poll_read_into(&self.io, &mut self.buf, cx))?;
        if n == spare && self.next_read < MAX_READ {
            self.next_read *= 2;
        }
        Poll::Ready(Ok(n))
    }

    /// Writes out `pieces`, front first, several per system call.
    pub(crate) fn poll_write_all(
        &mut self,
        cx: &mut Context<'_>,
        pieces: &mut VecDeque<Bytes>,
    ) -> Poll<io::Result<()>> {
        poll_write_pieces(&self.io, cx, pieces)
    }

    /// Writes out what of `bytes` follows the first `written` of them,
    /// counting `written` on as it goes.
    pub(crate) fn poll_write_from(
        &self,
        cx: &mut Context<'_>,
        bytes: &[u8],
        written: &mut usize,
    ) -> Poll<io::Result<()>> {
        while let Some(rest) = bytes.get(*written..).filter(|rest| !rest.is_empty()) {
            ready!(self.io.poll_write_ready(cx))?;
            match self.io.try_write(rest) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Whether an idle connection can take a request: nothing arrived
    /// on it while it was idle (neither bytes nor the target's close).
    /// Costs no system call unless the socket was reported readable.
    pub(crate) fn still_open(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        match self.io.try_read(&mut probe) {
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            // Bytes nobody asked for, or the end of the stream.
            Ok(_) => false,
        }
    }
}

/// Reads what the socket has into the spare room of `buf` (the caller
/// makes room): `Ok(0)` is the end of the stream.
///
/// A read that returns less than it could take has emptied the socket's
/// receive queue; the socket's readiness is then forgotten at once, so
/// that the next wait for data does not begin with a system call that
/// finds nothing (and an idle pooled connection's check costs none).
/// Tokio forgets it only if no newer readiness event came since before
/// the read, so data that arrives meanwhile is never missed.
pub(crate) fn poll_read_into(
    io: &TcpStream,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    loop {
        ready!(io.poll_read_ready(cx))?;
        let spare = buf.capacity() - buf.len();
        let mut read = None;
        let _ = io.try_io(Interest::READABLE, || {
            let result = io.try_read_buf(buf);
            let drained = matches!(result, Ok(n) if n > 0 && n < spare);
            read = Some(result);
            if drained {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(())
            }
        });
        match read {
            Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Some(result) => return Poll::Ready(result),
            // Not ready after all: wait again.
            None => continue,
        }
    }
}

/// Writes out `pieces`, front first, up to eight per system call.
pub(crate) fn poll_write_pieces(
    io: &TcpStream,
    cx: &mut Context<'_>,
    pieces: &mut VecDeque<Bytes>,
) -> Poll<io::Result<()>> {
    while !pieces.is_empty() {
        ready!(io.poll_write_ready(cx))?;
        let mut slices = [IoSlice::new(&[]); 8];
        let mut count = 0;
        for (slice, piece) in slices.iter_mut().zip(pieces.iter()) {
            *slice = IoSlice::new(piece);
            count += 1;
        }
        match io.try_write_vectored(&slices[..count]) {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(mut n) => {
                while n > 0 {
                    let Some(front) = pieces.front_mut() else {
                        break;
                    };
                    let take = n.min(front.len());
                    front.advance(take);
                    n -= take;
                    if front.is_empty() {
                        pieces.pop_front();
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    Poll::Ready(Ok(()))
}
