//! The chunked transfer coding (RFC 9112 §7.1): decoding a target's
//! response body and encoding a streamed request body.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The longest chunk-size line, extensions included.
const MAX_SIZE_LINE: usize = 4096;
/// The largest trailer section.
const MAX_TRAILERS: usize = 64 * 1024;
/// The most trailer fields.
const MAX_TRAILER_FIELDS: usize = 64;

/// What the decoder found next.
#[derive(Debug, PartialEq)]
pub enum Chunk {
    Data(Bytes),
    /// The trailer section, which ends the body.
    Trailers(HeaderMap),
    /// The end of a body without trailers.
    End,
}

/// Why a chunked body is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("invalid chunk size line")]
    SizeLine,
    #[error("chunk size too large")]
    SizeOverflow,
    #[error("chunk data not followed by CRLF")]
    DataEnd,
    #[error("invalid trailer section")]
    Trailers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// Decodes a chunked body from the front of a buffer, as bytes arrive.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder { state: State::Size }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Takes the next piece from the front of `buf`: `Ok(None)` when more
    /// bytes are needed. Data is split off `buf` without copying.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Chunk>, ChunkError> {
        loop {
            match self.state {
                State::Size => {
                    let window = &buf[..buf.len().min(MAX_SIZE_LINE)];
                    let Some(lf) = window.iter().position(|b| *b == b'\n') else {
                        if buf.len() >= MAX_SIZE_LINE {
                            return Err(ChunkError::SizeLine);
                        }
                        return Ok(None);
                    };
                    let size = parse_size_line(&buf[..lf])?;
                    buf.advance(lf + 1);
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    // At most `buf.len()`, so the cast cannot truncate.
                    let take = left.min(buf.len() as u64) as usize;
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Some(Chunk::Data(data)));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ChunkError::DataEnd);
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers => return self.trailers(buf),
                State::Done => return Ok(Some(Chunk::End)),
            }
        }
    }

    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Option<Chunk>, ChunkError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        if &buf[..2] == b"\r\n" {
            buf.advance(2);
            self.state = State::Done;
            return Ok(Some(Chunk::End));
        }
        let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
        let window = &buf[..buf.len().min(MAX_TRAILERS)];
        let (len, fields) = match httparse::parse_headers(window, &mut fields) {
            Ok(httparse::Status::Complete(done)) => done,
            Ok(httparse::Status::Partial) if buf.len() < MAX_TRAILERS => return Ok(None),
            _ => return Err(ChunkError::Trailers),
        };
        let mut trailers = HeaderMap::with_capacity(fields.len());
        for field in fields {
            let name =
                HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| ChunkError::Trailers)?;
            let value = HeaderValue::from_bytes(field.value).map_err(|_| ChunkError::Trailers)?;
            trailers.append(name, value);
        }
        buf.advance(len);
        self.state = State::Done;
        Ok(Some(Chunk::Trailers(trailers)))
    }
}

/// `1*HEXDIG [BWS ";" chunk-ext] CR` (the LF already cut off).
fn parse_size_line(line: &[u8]) -> Result<u64, ChunkError> {
    let line = line.strip_suffix(b"\r").ok_or(ChunkError::SizeLine)?;
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(ChunkError::SizeLine);
    }
    let rest = &line[digits..];
    let ext = rest.trim_ascii_start();
    if !(ext.is_empty() || ext.starts_with(b";"))
        || rest.iter().any(|b| b.is_ascii_control() && *b != b'\t')
    {
        return Err(ChunkError::SizeLine);
    }
    let digits = &line[..digits];
    // Leading zeros are allowed; sixteen significant digits fill a u64.
    let significant = &digits[digits.iter().take_while(|b| **b == b'0').count()..];
    if significant.len() > 16 {
        return Err(ChunkError::SizeOverflow);
    }
    Ok(significant.iter().fold(0u64, |n, d| {
        // A hex digit: to_digit cannot fail.
        (n << 4) | u64::from(char::from(*d).to_digit(16).unwrap_or(0))
    }))
}

/// The line that starts a chunk of `len` bytes.
pub fn chunk_start(len: usize) -> Bytes {
    let mut line = BytesMut::with_capacity(18);
    line.put_slice(format!("{len:x}\r\n").as_bytes());
    line.freeze()
}

/// The CRLF that ends a chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";

/// The last chunk with the trailer section (possibly empty).
pub fn last_chunk(trailers: Option<&HeaderMap>) -> Bytes {
    let mut out = BytesMut::from(&b"0\r\n"[..]);
    for (name, value) in trailers.into_iter().flatten() {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes.
    fn decode_in_steps(
        input: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, Option<HeaderMap>), ChunkError> {
        let mut decoder = ChunkedDecoder::new();
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut fed = 0;
        loop {
            match decoder.decode(&mut buf)? {
                Some(Chunk::Data(d)) => data.extend_from_slice(&d),
                Some(Chunk::Trailers(t)) => return Ok((data, Some(t))),
                Some(Chunk::End) => return Ok((data, None)),
                None => {
                    assert!(fed < input.len(), "ran out of input");
                    let end = (fed + step).min(input.len());
                    buf.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
            }
        }
    }

    #[test]
    fn decodes_in_any_piece_size() {
        let input = b"5\r\nhello\r\n1;ext=1\r\n \r\n006\r\nworld!\r\n0\r\n\r\n";
        for step in [1, 2, 3, 7, 100] {
            let (data, trailers) = decode_in_steps(input, step).expect("decodes");
            assert_eq!(data, b"hello world!", "step {step}");
            assert!(trailers.is_none());
        }
    }

    #[test]
    fn trailers_end_the_body() {
        let input = b"3\r\nabc\r\n0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n";
        for step in [1, 5, 100] {
            let (data, trailers) = decode_in_steps(input, step).expect("decodes");
            assert_eq!(data, b"abc");
            let trailers = trailers.expect("trailers");
            assert_eq!(
                trailers.get("grpc-status").map(|v| v.as_bytes()),
                Some(&b"0"[..])
            );
            assert_eq!(trailers.len(), 2);
        }
    }

    #[test]
    fn bytes_after_the_body_stay_in_the_buffer() {
        let mut buf = BytesMut::from(&b"0\r\n\r\nHTTP/1.1 200"[..]);
        let mut decoder = ChunkedDecoder::new();
        assert_eq!(decoder.decode(&mut buf), Ok(Some(Chunk::End)));
        assert!(decoder.is_done());
        assert_eq!(&buf[..], b"HTTP/1.1 200");
    }

    #[test]
    fn broken_encodings_are_errors() {
        let cases: [(&[u8], ChunkError); 8] = [
            (b"x\r\n", ChunkError::SizeLine),
            (b"\r\n", ChunkError::SizeLine),
            (b"5\n", ChunkError::SizeLine),
            (b"5 x\r\n", ChunkError::SizeLine),
            (b"5;a\0b\r\n", ChunkError::SizeLine),
            (b"-5\r\n", ChunkError::SizeLine),
            (b"10000000000000000\r\n", ChunkError::SizeOverflow),
            (b"3\r\nabcX\r\n", ChunkError::DataEnd),
        ];
        for (input, error) in cases {
            assert_eq!(
                decode_in_steps(input, 100).err(),
                Some(error),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let long_line = format!("5;{}\r\n", "a".repeat(MAX_SIZE_LINE));
        assert_eq!(
            decode_in_steps(long_line.as_bytes(), 10_000).err(),
            Some(ChunkError::SizeLine)
        );
        assert_eq!(
            decode_in_steps(b"0\r\nbad field\r\n\r\n", 100).err(),
            Some(ChunkError::Trailers)
        );
    }

    #[test]
    fn leading_zeros_do_not_overflow() {
        let (data, _) =
            decode_in_steps(b"00000000000000000001\r\na\r\n0\r\n\r\n", 100).expect("decodes");
        assert_eq!(data, b"a");
    }

    #[test]
    fn encoding_round_trips() {
        let mut wire = Vec::new();
        for piece in [&b"hello"[..], &[7u8; 300][..]] {
            wire.extend_from_slice(&chunk_start(piece.len()));
            wire.extend_from_slice(piece);
            wire.extend_from_slice(CHUNK_END);
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("x-sum", HeaderValue::from_static("42"));
        wire.extend_from_slice(&last_chunk(Some(&trailers)));
        let (data, got) = decode_in_steps(&wire, 9).expect("decodes");
        assert_eq!(data.len(), 305);
        assert_eq!(got, Some(trailers));
        assert_eq!(&last_chunk(None)[..], b"0\r\n\r\n");
    }
}
