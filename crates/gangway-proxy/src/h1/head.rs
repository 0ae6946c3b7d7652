//! Message heads: the request line and fields gangway writes to a target,
//! and the status line and fields it reads back, with the body framing
//! that follows from them (RFC 9112 §6.3).

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use std::mem::MaybeUninit;

/// The most response header fields gangway reads; more is a bad response.
const MAX_FIELDS: usize = 256;
/// The largest response head gangway reads (status line and fields).
pub const MAX_HEAD: usize = 64 * 1024;

/// How a request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestFraming {
    /// `Content-Length: n` (also 0, when the client sent one).
    Length(u64),
    /// No body and no length field (a GET, say).
    None,
    /// `Transfer-Encoding: chunked`: a streamed body of unknown length.
    Chunked,
}

/// Writes the request line and fields. `Content-Length` and
/// `Transfer-Encoding` in `headers` are replaced by what `framing` says.
pub(crate) fn encode_request(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    framing: RequestFraming,
) {
    out.put_slice(method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(target.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    match framing {
        RequestFraming::Length(n) => {
            out.put_slice(b"content-length: ");
            out.put_slice(itoa(n, &mut [0; 20]));
            out.put_slice(b"\r\n");
        }
        RequestFraming::Chunked => out.put_slice(b"transfer-encoding: chunked\r\n"),
        RequestFraming::None => {}
    }
    out.put_slice(b"\r\n");
}

/// `n` in decimal, without allocating.
fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        // A digit: the cast cannot truncate.
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body: a response to HEAD, a 204 or a 304.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the target closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: ResponseFraming,
    /// Whether the connection may carry another request afterwards.
    pub keep_alive: bool,
    /// The head's length in bytes.
    pub len: usize,
}

/// Why a response head is unusable. Each is the target's fault: the
/// request gets a 502 and the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("the response head is not valid HTTP/1.1: {0}")]
    Syntax(httparse::Error),
    #[error("the response head is larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("the response has a header field that is not valid: {0}")]
    Field(String),
    #[error("the response's Content-Length is not valid: {0:?}")]
    Length(String),
}

/// Fields whose places are noted on the stack; a head with more takes a
/// heap vector (clearing room for all of them on every message would cost
/// more than the rest of the parse).
const USUAL_PLACES: usize = 24;

/// Where a field's name and value lie in a head, as offsets: unlike the
/// parser's slices they do not borrow the read buffer, so the head can be
/// taken off it first and the values then made to point into the head
/// without being copied.
#[derive(Clone, Copy, Default)]
pub(crate) struct FieldAt {
    name: (u32, u32),
    value: (u32, u32),
}

impl FieldAt {
    pub(crate) fn name<'h>(&self, head: &'h [u8]) -> &'h [u8] {
        &head[span(self.name)]
    }

    pub(crate) fn value(&self, head: &Bytes) -> Bytes {
        head.slice(span(self.value))
    }
}

/// Where `part`, a slice of `base`, lies in it. Heads are at most
/// `MAX_HEAD` bytes: the casts cannot truncate.
pub(crate) fn place(base: &[u8], part: &[u8]) -> (u32, u32) {
    (
        (part.as_ptr() as usize - base.as_ptr() as usize) as u32,
        part.len() as u32,
    )
}

pub(crate) fn span((start, len): (u32, u32)) -> std::ops::Range<usize> {
    start as usize..(start + len) as usize
}

/// The places of a head's fields, in order.
#[derive(Default)]
pub(crate) struct FieldPlaces {
    usual: [FieldAt; USUAL_PLACES],
    more: Vec<FieldAt>,
    len: usize,
}

impl FieldPlaces {
    /// Notes where each of `fields`, parsed from `base`, lies in it.
    /// (Filled in place: returned by value, the places were copied whole.)
    #[inline]
    pub(crate) fn note(&mut self, base: &[u8], fields: &[httparse::Header<'_>]) {
        self.len = fields.len();
        let at = if fields.len() <= USUAL_PLACES {
            &mut self.usual[..fields.len()]
        } else {
            self.more.resize(fields.len(), FieldAt::default());
            &mut self.more[..]
        };
        for (field, at) in fields.iter().zip(at.iter_mut()) {
            *at = FieldAt {
                name: place(base, field.name.as_bytes()),
                value: place(base, field.value),
            };
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, FieldAt> {
        if self.len <= USUAL_PLACES {
            self.usual[..self.len].iter()
        } else {
            self.more.iter()
        }
    }
}

/// Parses a response head from the start of `buf`: `Ok(None)` when more
/// bytes are needed. On success the head's bytes are taken off `buf`; the
/// field values point into them without being copied.
pub fn parse_response(
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Option<ResponseHead>, HeadError> {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut response = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut fields,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(HeadError::Syntax(error)),
    };
    if len > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let status = response
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(HeadError::Syntax(httparse::Error::Status))?;
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut places = FieldPlaces::default();
    places.note(buf, response.headers);
    let head = buf.split_to(len).freeze();
    // With room for what gangway adds on the way back (`Via`,
    // `X-Request-Id`, route header operations), so that the map never grows.
    let mut headers = HeaderMap::with_capacity(places.len() + 6);
    // `close` wins over `keep-alive`, whichever comes first (RFC 9112
    // §9.3); `keep-alive` only matters to an HTTP/1.0 response.
    let mut chunked = None;
    let mut length: Option<u64> = None;
    for at in places.iter() {
        let bad_field = || HeadError::Field(String::from_utf8_lossy(at.name(&head)).into());
        let name = HeaderName::from_bytes(at.name(&head)).map_err(|_| bad_field())?;
        let value = HeaderValue::from_maybe_shared(at.value(&head)).map_err(|_| bad_field())?;
        if name == header::TRANSFER_ENCODING {
            // Only the final coding counts (RFC 9112 §6.3 point 4).
            let last = value.as_bytes().rsplit(|b| *b == b',').next();
            chunked = Some(last.is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked")));
        } else if name == header::CONTENT_LENGTH {
            let bad_length = || HeadError::Length(String::from_utf8_lossy(value.as_bytes()).into());
            // A list of identical values is one value (RFC 9110 §8.6).
            for part in value.as_bytes().split(|b| *b == b',') {
                let n = parse_length(part.trim_ascii()).ok_or_else(bad_length)?;
                if length.is_some_and(|l| l != n) {
                    return Err(bad_length());
                }
                length = Some(n);
            }
        }
        headers.append(name, value);
    }
    let (saw_close, saw_keep_alive, _) = connection_options(&headers);
    let mut close = saw_close || (version == Version::HTTP_10 && !saw_keep_alive);
    let framing = if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        ResponseFraming::Empty
    } else if let Some(chunked) = chunked {
        // Transfer-Encoding overrides Content-Length, and a message with
        // both may be an attempt at smuggling: the connection is not
        // used again (RFC 9112 §6.3 point 3).
        if length.is_some() {
            headers.remove(header::CONTENT_LENGTH);
            close = true;
        }
        if chunked {
            ResponseFraming::Chunked
        } else {
            close = true;
            ResponseFraming::UntilClose
        }
    } else if let Some(n) = length {
        ResponseFraming::Length(n)
    } else {
        close = true;
        ResponseFraming::UntilClose
    };
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
        framing,
        keep_alive: !close,
        len,
    }))
}

/// A `Content-Length` value (`1*DIGIT`): digits only, no sign, no
/// overflow.
pub(crate) fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The `Connection` options `close`, `keep-alive` and `upgrade`, in any
/// of the fields and in any position (RFC 9112 §9.3, §9.6).
pub(crate) fn connection_options(headers: &HeaderMap) -> (bool, bool, bool) {
    let (mut close, mut keep_alive, mut upgrade) = (false, false, false);
    for value in headers.get_all(header::CONNECTION) {
        for token in value.as_bytes().split(|b| *b == b',') {
            let token = token.trim_ascii();
            close |= token.eq_ignore_ascii_case(b"close");
            keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            upgrade |= token.eq_ignore_ascii_case(b"upgrade");
        }
    }
    (close, keep_alive, upgrade)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<ResponseHead>, HeadError> {
        parse_response(&mut BytesMut::from(text), &Method::GET)
    }

    fn head(text: &str) -> ResponseHead {
        match parse(text) {
            Ok(Some(head)) => head,
            other => panic!("{text:?} did not parse: {other:?}"),
        }
    }

    #[test]
    fn request_head_has_the_framing_it_is_given() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("a.test"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
        let mut out = Vec::new();
        encode_request(
            &mut out,
            &Method::POST,
            "/x?y=1",
            &headers,
            RequestFraming::Length(12),
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "POST /x?y=1 HTTP/1.1\r\nhost: a.test\r\ncontent-length: 12\r\n\r\n"
        );
        out.clear();
        encode_request(
            &mut out,
            &Method::PUT,
            "/",
            &headers,
            RequestFraming::Chunked,
        );
        assert!(out.ends_with(b"host: a.test\r\ntransfer-encoding: chunked\r\n\r\n"));
        out.clear();
        encode_request(
            &mut out,
            &Method::GET,
            "/",
            &HeaderMap::new(),
            RequestFraming::None,
        );
        assert_eq!(out, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn itoa_writes_decimal() {
        for n in [0, 7, 10, 12345, u64::MAX] {
            assert_eq!(itoa(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }

    #[test]
    fn framing_follows_rfc_9112_section_6_3() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(
            (h.framing, h.keep_alive, h.len),
            (ResponseFraming::Length(5), true, 38)
        );
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (ResponseFraming::Chunked, true));
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        assert_eq!(
            (h.framing, h.keep_alive),
            (ResponseFraming::UntilClose, false)
        );
        let h = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(
            (h.framing, h.keep_alive),
            (ResponseFraming::UntilClose, false)
        );
        let h = head("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(h.framing, ResponseFraming::Empty);
        let h = head("HTTP/1.1 304 Not Modified\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (ResponseFraming::Empty, true));
        let h = head("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
        assert_eq!(h.framing, ResponseFraming::Empty);
        let h = parse_response(
            &mut BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
            &Method::HEAD,
        );
        assert_eq!(
            h.ok().flatten().map(|h| h.framing),
            Some(ResponseFraming::Empty)
        );
    }

    #[test]
    fn the_head_is_taken_off_the_buffer_and_its_values_are_not_copied() {
        let text = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
        let mut buf = BytesMut::from(text);
        let start = buf.as_ptr() as usize;
        let h = match parse_response(&mut buf, &Method::GET) {
            Ok(Some(h)) => h,
            other => panic!("{other:?}"),
        };
        assert_eq!(&buf[..], b"hello");
        let value = h.headers[header::CONTENT_TYPE].as_bytes();
        assert_eq!(value, b"text/plain");
        let at = value.as_ptr() as usize;
        assert!((start..start + h.len).contains(&at), "a copy");

        let mut partial = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Le");
        assert!(matches!(
            parse_response(&mut partial, &Method::GET),
            Ok(None)
        ));
        assert_eq!(&partial[..], b"HTTP/1.1 200 OK\r\nContent-Le");
    }

    #[test]
    fn both_lengths_mean_chunked_and_no_reuse() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (ResponseFraming::Chunked, false));
        assert!(!h.headers.contains_key(header::CONTENT_LENGTH));
    }

    #[test]
    fn connection_close_and_http_1_0() {
        let h = head("HTTP/1.1 200 OK\r\nConnection: foo, Close\r\nContent-Length: 0\r\n\r\n");
        assert!(!h.keep_alive);
        let h = head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert_eq!((h.version, h.keep_alive), (Version::HTTP_10, false));
        let h = head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n");
        assert!(h.keep_alive);
        // Found writing the h1_response fuzz target: a `keep-alive` after
        // `close` kept an HTTP/1.0 connection open.
        for fields in [
            "Connection: close, keep-alive\r\n",
            "Connection: close\r\nConnection: keep-alive\r\n",
            "Connection: keep-alive, close\r\n",
        ] {
            for version in ["1.0", "1.1"] {
                let h = head(&format!(
                    "HTTP/{version} 200 OK\r\n{fields}Content-Length: 0\r\n\r\n"
                ));
                assert!(!h.keep_alive, "HTTP/{version} {fields:?}");
            }
        }
    }

    #[test]
    fn lengths_that_are_not_one_number_are_refused() {
        for bad in [
            "-1",
            "+5",
            "5 5",
            "0x10",
            "",
            "99999999999999999999",
            "5, 6",
        ] {
            let text = format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n");
            assert!(matches!(parse(&text), Err(HeadError::Length(_))), "{bad:?}");
        }
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
        assert!(matches!(parse(text), Err(HeadError::Length(_))));
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(h.framing, ResponseFraming::Length(5));
    }

    #[test]
    fn partial_heads_wait_and_huge_or_broken_ones_fail() {
        assert!(matches!(parse("HTTP/1.1 200 OK\r\nContent-Le"), Ok(None)));
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(parse(&huge).err(), Some(HeadError::TooLarge));
        assert!(matches!(
            parse("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n"),
            Err(HeadError::Syntax(_))
        ));
        assert!(matches!(
            parse("HTTP/1.1 2000 OK\r\n\r\n"),
            Err(HeadError::Syntax(_))
        ));
        assert!(matches!(
            parse("SSH-2.0-OpenSSH\r\n\r\n"),
            Err(HeadError::Syntax(_))
        ));
    }

    #[test]
    fn many_fields_are_read_up_to_the_limit() {
        let fields = |n: usize| {
            (0..n)
                .map(|i| format!("x-{i}: {i}\r\n"))
                .collect::<String>()
        };
        let h = head(&format!(
            "HTTP/1.1 200 OK\r\n{}Content-Length: 0\r\n\r\n",
            fields(200)
        ));
        assert_eq!(h.headers.len(), 201);
        let too_many = format!("HTTP/1.1 200 OK\r\n{}\r\n", fields(MAX_FIELDS + 1));
        assert_eq!(
            parse(&too_many).err(),
            Some(HeadError::Syntax(httparse::Error::TooManyHeaders))
        );
    }
}
