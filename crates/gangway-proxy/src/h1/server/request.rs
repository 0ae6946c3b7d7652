//! Reading a client's request head (RFC 9112 §2–§3, §5–§6): the request
//! line and fields, checked, and how the body that follows is delimited.
//! Whatever is ambiguous is refused here, before any route sees it: two
//! lengths, a length with a transfer coding, a coding other than chunked.

use crate::h1::head::{connection_options, parse_length, place, span, FieldPlaces};
use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};
use std::mem::MaybeUninit;

/// The largest request head (request line and fields): nginx's large
/// header buffers are 4 x 8 KiB; 64 KiB leaves room and still bounds the
/// memory one client can hold.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header fields in one request (hyper's and Go's bound is 100).
const MAX_FIELDS: usize = 100;

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// `Content-Length: n`, n > 0.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed and checked request head.
#[derive(Debug)]
pub struct RequestHead {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: BodyFraming,
    /// Whether the client keeps the connection open after the response
    /// (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// `Expect: 100-continue` (RFC 9110 §10.1.1).
    pub expects_continue: bool,
    /// `Connection: upgrade` with an `Upgrade` field, on HTTP/1.1.
    pub wants_upgrade: bool,
}

/// A request gangway answers with an error and then closes the
/// connection, since what follows the head cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    /// For the log line and the response body.
    pub reason: &'static str,
}

const fn refuse(status: StatusCode, reason: &'static str) -> Refusal {
    Refusal { status, reason }
}

const BAD_SYNTAX: Refusal = refuse(
    StatusCode::BAD_REQUEST,
    "malformed request line or header field (RFC 9112 §2-§5)",
);
const BAD_NAME: Refusal = refuse(StatusCode::BAD_REQUEST, "invalid header field name");
const BAD_VALUE: Refusal = refuse(StatusCode::BAD_REQUEST, "invalid header field value");
const BAD_METHOD: Refusal = refuse(StatusCode::BAD_REQUEST, "invalid method");
const BAD_TARGET: Refusal = refuse(StatusCode::BAD_REQUEST, "invalid request target");
const BAD_VERSION: Refusal = refuse(
    StatusCode::HTTP_VERSION_NOT_SUPPORTED,
    "unsupported HTTP version: HTTP/1.0 and HTTP/1.1 are served here",
);
const H2_PREFACE: Refusal = refuse(
    StatusCode::HTTP_VERSION_NOT_SUPPORTED,
    "HTTP2 preface on a listener without h2c (set `h2c = true` on the listener or GANGWAY_H2C=true)",
);
const TOO_MANY_FIELDS: Refusal = refuse(
    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    "more than 100 header fields",
);
const HEAD_TOO_LARGE: Refusal = refuse(
    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    "request head larger than 64 KiB",
);
const URI_TOO_LONG: Refusal = refuse(StatusCode::URI_TOO_LONG, "request line longer than 64 KiB");
const BAD_LENGTH: Refusal = refuse(
    StatusCode::BAD_REQUEST,
    "invalid or conflicting Content-Length (RFC 9110 §8.6)",
);
const LENGTH_AND_CODING: Refusal = refuse(
    StatusCode::BAD_REQUEST,
    "both Content-Length and Transfer-Encoding (RFC 9112 §6.1)",
);
const CODING_ON_HTTP_1_0: Refusal = refuse(
    StatusCode::BAD_REQUEST,
    "Transfer-Encoding on an HTTP/1.0 request (RFC 9112 §6.1)",
);
const CHUNKED_NOT_LAST: Refusal = refuse(
    StatusCode::BAD_REQUEST,
    "Transfer-Encoding does not end with chunked (RFC 9112 §6.1)",
);
const UNKNOWN_CODING: Refusal = refuse(
    StatusCode::NOT_IMPLEMENTED,
    "transfer coding other than chunked (RFC 9112 §6.1)",
);

/// Room in the field map for what the request path adds before the
/// request goes on (the `X-Forwarded-*` family, `X-Request-Id`, `Via`,
/// `Forwarded`), so that it never grows.
const ADDED_FIELDS: usize = 10;

/// Parses the request head at the front of `buf`. `Ok(None)`: it is not
/// complete yet. On success the head's bytes are taken off `buf`; the
/// URI and field values point into them without being copied.
pub fn parse_request(buf: &mut BytesMut) -> Result<Option<RequestHead>, Refusal> {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut parsed = httparse::Request::new(&mut []);
    let status = parsed.parse_with_uninit_headers(buf, &mut fields);
    let len = match status {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if buf.len() < MAX_HEAD {
                return Ok(None);
            }
            return Err(if buf.contains(&b'\n') {
                HEAD_TOO_LARGE
            } else {
                URI_TOO_LONG
            });
        }
        Err(httparse::Error::TooManyHeaders) => return Err(TOO_MANY_FIELDS),
        Err(httparse::Error::Version) if buf.starts_with(b"PRI * HTTP/2.0") => {
            return Err(H2_PREFACE)
        }
        Err(httparse::Error::Version) if names_a_version(buf) => return Err(BAD_VERSION),
        Err(httparse::Error::HeaderName) => return Err(BAD_NAME),
        Err(httparse::Error::HeaderValue) => return Err(BAD_VALUE),
        Err(_) => return Err(BAD_SYNTAX),
    };
    if len > MAX_HEAD {
        return Err(HEAD_TOO_LARGE);
    }
    let version = match parsed.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Err(BAD_VERSION),
    };
    let method =
        Method::from_bytes(parsed.method.unwrap_or_default().as_bytes()).map_err(|_| BAD_METHOD)?;
    let target = parsed.path.unwrap_or_default();
    let target_at = place(buf, target.as_bytes());
    let mut places = FieldPlaces::default();
    places.note(buf, parsed.headers);

    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(span(target_at))).map_err(|_| BAD_TARGET)?;
    let mut headers = HeaderMap::with_capacity(places.len() + ADDED_FIELDS);
    for at in places.iter() {
        let name = HeaderName::from_bytes(at.name(&head)).map_err(|_| BAD_NAME)?;
        let value = HeaderValue::from_maybe_shared(at.value(&head)).map_err(|_| BAD_VALUE)?;
        headers.append(name, value);
    }
    let framing = body_framing(&mut headers, version)?;
    let (close, keep_alive, upgrade) = connection_options(&headers);
    let keep_alive = !close && (version == Version::HTTP_11 || keep_alive);
    let expects_continue = version == Version::HTTP_11
        && headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let wants_upgrade =
        version == Version::HTTP_11 && upgrade && headers.contains_key(header::UPGRADE);
    Ok(Some(RequestHead {
        method,
        uri,
        version,
        headers,
        framing,
        keep_alive,
        expects_continue,
        wants_upgrade,
    }))
}

/// The body framing the fields declare (RFC 9112 §6.3). Several equal
/// `Content-Length` values are folded into one.
fn body_framing(headers: &mut HeaderMap, version: Version) -> Result<BodyFraming, Refusal> {
    let has_coding = headers.contains_key(header::TRANSFER_ENCODING);
    let mut length: Option<u64> = None;
    let mut lengths = 0;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        lengths += 1;
        for part in value.as_bytes().split(|b| *b == b',') {
            let n = parse_length(part.trim_ascii()).ok_or(BAD_LENGTH)?;
            if length.is_some_and(|l| l != n) {
                return Err(BAD_LENGTH);
            }
            length = Some(n);
        }
    }
    if has_coding {
        if lengths > 0 {
            return Err(LENGTH_AND_CODING);
        }
        if version == Version::HTTP_10 {
            return Err(CODING_ON_HTTP_1_0);
        }
        // Only `chunked` is decoded; it must come last and only once.
        let mut last: Option<&[u8]> = None;
        let (mut chunked_before, mut other) = (false, false);
        for coding in headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|c| !c.is_empty())
        {
            if let Some(before) = last {
                if is_chunked(before) {
                    chunked_before = true;
                } else {
                    other = true;
                }
            }
            last = Some(coding);
        }
        return match last {
            Some(coding) if is_chunked(coding) && !chunked_before && !other => {
                Ok(BodyFraming::Chunked)
            }
            Some(coding) if is_chunked(coding) && !chunked_before => Err(UNKNOWN_CODING),
            _ => Err(CHUNKED_NOT_LAST),
        };
    }
    match length {
        None | Some(0) => Ok(BodyFraming::None),
        Some(n) => {
            let listed = headers
                .get(header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes().contains(&b','));
            if lengths > 1 || listed {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            Ok(BodyFraming::Length(n))
        }
    }
}

/// Whether the request line ends in a well-formed `HTTP/x.y` (RFC 9112
/// §2.3), so that a version gangway does not speak gets 505 and anything
/// else (`http/1.1`, a missing version) the 400 of a syntax error.
fn names_a_version(buf: &[u8]) -> bool {
    let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let version = line.rsplit(|b| *b == b' ').next().unwrap_or_default();
    matches!(version, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
        if major.is_ascii_digit() && minor.is_ascii_digit())
}

fn is_chunked(coding: &[u8]) -> bool {
    coding.eq_ignore_ascii_case(b"chunked")
}

#[cfg(test)]
fn parse(text: &[u8]) -> Result<Option<RequestHead>, Refusal> {
    parse_request(&mut BytesMut::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> RequestHead {
        parse(text.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn a_simple_request_and_what_is_left() {
        let mut buf =
            BytesMut::from(&b"GET /a?b HTTP/1.1\r\nHost: a.test\r\nX-A: 1\r\n\r\nNEXT"[..]);
        let head = parse_request(&mut buf).unwrap().unwrap();
        assert_eq!(head.method, Method::GET);
        assert_eq!(head.uri, "/a?b");
        assert_eq!(head.version, Version::HTTP_11);
        assert_eq!(head.headers["host"], "a.test");
        assert_eq!(head.headers["x-a"], "1");
        assert_eq!(head.framing, BodyFraming::None);
        assert!(head.keep_alive && !head.expects_continue && !head.wants_upgrade);
        assert_eq!(&buf[..], b"NEXT");
    }

    #[test]
    fn partial_heads_wait() {
        for text in [
            "",
            "GET",
            "GET / HTTP/1.1\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n",
        ] {
            assert!(parse(text.as_bytes()).unwrap().is_none(), "{text:?}");
        }
    }

    #[test]
    fn framing_follows_rfc_9112_section_6_3() {
        let framing = |fields: &str| parse(format!("POST / HTTP/1.1\r\n{fields}\r\n").as_bytes());
        let ok = |fields: &str| framing(fields).unwrap().unwrap().framing;
        assert_eq!(ok(""), BodyFraming::None);
        assert_eq!(ok("Content-Length: 0\r\n"), BodyFraming::None);
        assert_eq!(ok("Content-Length: 5\r\n"), BodyFraming::Length(5));
        assert_eq!(
            ok("Content-Length: 5\r\nContent-Length: 5\r\n"),
            BodyFraming::Length(5)
        );
        assert_eq!(ok("Content-Length: 5, 5\r\n"), BodyFraming::Length(5));
        assert_eq!(ok("Transfer-Encoding: chunked\r\n"), BodyFraming::Chunked);
        assert_eq!(ok("Transfer-Encoding:\tCHUNKED\r\n"), BodyFraming::Chunked);
        let folded = framing("Content-Length: 5\r\nContent-Length: 5\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(folded.headers.get_all("content-length").iter().count(), 1);
        for (fields, status) in [
            ("Content-Length: 3\r\nContent-Length: 5\r\n", 400),
            ("Content-Length: 5, 41\r\n", 400),
            ("Content-Length: +5\r\n", 400),
            ("Content-Length: -5\r\n", 400),
            ("Content-Length: 0x5\r\n", 400),
            ("Content-Length: 1 5\r\n", 400),
            ("Content-Length:\r\n", 400),
            ("Content-Length: 18446744073709551616\r\n", 400),
            ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400),
            ("Transfer-Encoding: chunked, identity\r\n", 400),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
                400,
            ),
            ("Transfer-Encoding: gzip, chunked\r\n", 501),
            ("Transfer-Encoding: xchunked\r\n", 400),
            ("Transfer-Encoding: \"chunked\"\r\n", 400),
            ("Transfer-Encoding: \r\n", 400),
        ] {
            let refused = framing(fields).unwrap_err();
            assert_eq!(refused.status, status, "{fields:?}: {}", refused.reason);
        }
        let http10 = parse(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap_err();
        assert_eq!(http10, CODING_ON_HTTP_1_0);
    }

    #[test]
    fn keep_alive_upgrade_and_continue() {
        assert!(!head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
        let ws = "GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert!(head(ws).wants_upgrade);
        assert!(!head("GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n").wants_upgrade);
        let ws10 = "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert!(!head(ws10).wants_upgrade);
        let expect = "POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n";
        assert!(head(expect).expects_continue);
    }

    #[test]
    fn syntax_errors_are_refused_with_their_status() {
        for (text, status) in [
            ("GET / HTTP/1.1\r\nX-A : b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
            ("GET /a\0b HTTP/1.1\r\n\r\n", 400),
            ("G(T / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/9.9\r\n\r\n", 505),
            ("GET / http/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1x\r\n\r\n", 400),
            ("GET /\r\n\r\n", 400),
            ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
        ] {
            match parse(text.as_bytes()) {
                Err(refused) => assert_eq!(refused.status, status, "{text:?}: {}", refused.reason),
                Ok(head) => panic!("{text:?} was accepted: {head:?}"),
            }
        }
        assert_eq!(parse(b"PRI * HTTP/2.0\r\n\r\n").unwrap_err(), H2_PREFACE);
    }

    #[test]
    fn limits() {
        let mut long_line = b"GET /".to_vec();
        long_line.resize(MAX_HEAD + 10, b'a');
        assert_eq!(parse(&long_line).unwrap_err(), URI_TOO_LONG);
        let mut long_field = b"GET / HTTP/1.1\r\nX-A: ".to_vec();
        long_field.resize(MAX_HEAD + 10, b'a');
        assert_eq!(parse(&long_field).unwrap_err(), HEAD_TOO_LARGE);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_FIELDS {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many).unwrap_err(), TOO_MANY_FIELDS);
        let mut hundred = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_FIELDS {
            hundred.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        hundred.extend_from_slice(b"\r\n");
        assert_eq!(
            head(std::str::from_utf8(&hundred).unwrap()).headers.len(),
            MAX_FIELDS
        );
    }
}
