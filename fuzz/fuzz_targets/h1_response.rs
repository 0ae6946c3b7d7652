//! What a target sends back to gangway's own HTTP/1.1 client: the
//! response head (`parse_response`: status line, fields, the body framing
//! of RFC 9112 §6.3 and whether the connection may be reused) and the
//! chunked decoder (`ChunkedDecoder`, RFC 9112 §7.1).
//!
//! Checked besides "no panic":
//! - a parsed head lies inside the input, ends with an empty line, is at
//!   most `MAX_HEAD` bytes, is taken off the buffer (the bytes after it
//!   stay), parses the same without the bytes after it, and cut one byte
//!   short is not a complete head; an incomplete head is shorter than
//!   `MAX_HEAD` and stays in the buffer;
//! - its framing agrees with a reference reading of RFC 9112 §6.3 over
//!   the fields it kept: no body for HEAD, 1xx, 204 and 304;
//!   `Transfer-Encoding` wins (chunked only as the final coding) and
//!   `Content-Length` is then dropped; else one `Content-Length` value;
//!   else until the close. The connection is reused unless the response
//!   says `close` (in any position, RFC 9112 §9.3), is HTTP/1.0 without
//!   `keep-alive`, runs until the close, or had both length fields;
//! - the chunked decoder gives the same data, trailers, end and error
//!   whether the input comes at once or cut into arbitrary pieces, and
//!   leaves the bytes after the body in the buffer; no empty data chunk;
//! - what the request pump's encoder writes (`chunk_start`, `CHUNK_END`,
//!   `last_chunk`) decodes back to the same data and trailer fields.

#![no_main]

use arbitrary::Arbitrary;
use bytes::BytesMut;
use gangway_proxy::fuzzing::{
    chunk_start, last_chunk, parse_response, Chunk, ChunkError, ChunkedDecoder, HeadError,
    ResponseFraming, ResponseHead, CHUNK_END, MAX_HEAD,
};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Input<'a> {
    /// Bytes as the answer to a GET, or to a HEAD.
    Head { head: bool, bytes: &'a [u8] },
    /// A chunked body, fed in pieces of the given sizes.
    Chunked { cuts: Vec<u16>, bytes: &'a [u8] },
    /// Data and trailers encoded as the request pump does, then decoded.
    RoundTrip {
        pieces: Vec<Vec<u8>>,
        trailers: Vec<(String, String)>,
        cuts: Vec<u16>,
        after: &'a [u8],
    },
}

/// Parses `bytes` as a fresh read buffer, as gangway's client does.
fn parse(bytes: &[u8], method: &Method) -> (Result<Option<ResponseHead>, HeadError>, BytesMut) {
    let mut buf = BytesMut::from(bytes);
    let parsed = parse_response(&mut buf, method);
    (parsed, buf)
}

fn check_head(bytes: &[u8], method: &Method) {
    let (parsed, rest) = parse(bytes, method);
    let head = match parsed {
        Ok(Some(head)) => head,
        Ok(None) => {
            assert!(
                bytes.len() < MAX_HEAD,
                "{} bytes still incomplete",
                bytes.len()
            );
            assert_eq!(rest, bytes, "an incomplete head must stay in the buffer");
            return;
        }
        Err(HeadError::TooLarge) => {
            assert!(
                bytes.len() >= MAX_HEAD,
                "too large at {} bytes",
                bytes.len()
            );
            return;
        }
        Err(_) => return,
    };
    assert!(
        head.len <= bytes.len() && head.len <= MAX_HEAD,
        "{}",
        head.len
    );
    let raw = &bytes[..head.len];
    assert_eq!(rest, &bytes[head.len..], "the head, and only it, is taken off");
    assert!(
        raw.ends_with(b"\n\n") || raw.ends_with(b"\n\r\n"),
        "the head does not end with an empty line: {:?}",
        String::from_utf8_lossy(raw)
    );
    match parse(raw, method).0 {
        Ok(Some(alone)) => {
            assert_eq!(
                (
                    alone.status,
                    alone.version,
                    alone.framing,
                    alone.keep_alive,
                    alone.len
                ),
                (
                    head.status,
                    head.version,
                    head.framing,
                    head.keep_alive,
                    head.len
                )
            );
            assert_eq!(alone.headers, head.headers);
        }
        other => panic!("the head alone: {other:?}"),
    }
    if let (Ok(Some(short)), _) = parse(&raw[..raw.len() - 1], method) {
        panic!("complete one byte short: {short:?}");
    }
    check_framing(&head, raw, method);
}

/// The tokens of every `name` field, trimmed, in lower case.
fn tokens(headers: &HeaderMap, name: header::HeaderName) -> Vec<Vec<u8>> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|t| t.trim_ascii().to_ascii_lowercase())
        .collect()
}

/// Whether the raw head has a field named `name` (response fields have no
/// space before the colon, and no continuation lines).
fn raw_has_field(raw: &[u8], name: &str) -> bool {
    raw.split(|b| *b == b'\n').skip(1).any(|line| {
        line.iter()
            .position(|b| *b == b':')
            .is_some_and(|colon| line[..colon].eq_ignore_ascii_case(name.as_bytes()))
    })
}

fn check_framing(head: &ResponseHead, raw: &[u8], method: &Method) {
    let h = &head.headers;
    let status = head.status;
    let no_body = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let has_te = h.contains_key(header::TRANSFER_ENCODING);
    let expected = if no_body {
        ResponseFraming::Empty
    } else if has_te {
        assert!(
            !h.contains_key(header::CONTENT_LENGTH),
            "Content-Length kept beside Transfer-Encoding"
        );
        if tokens(h, header::TRANSFER_ENCODING)
            .last()
            .map(Vec::as_slice)
            == Some(b"chunked")
        {
            ResponseFraming::Chunked
        } else {
            ResponseFraming::UntilClose
        }
    } else {
        let lengths: Vec<u64> = tokens(h, header::CONTENT_LENGTH)
            .iter()
            .map(|t| {
                assert!(
                    !t.is_empty() && t.iter().all(u8::is_ascii_digit),
                    "accepted Content-Length {:?}",
                    String::from_utf8_lossy(t)
                );
                t.iter()
                    .try_fold(0u64, |n, d| {
                        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
                    })
                    .expect("accepted a Content-Length past u64")
            })
            .collect();
        match lengths.first() {
            Some(&n) => {
                assert!(lengths.iter().all(|l| *l == n), "lengths {lengths:?}");
                ResponseFraming::Length(n)
            }
            None => ResponseFraming::UntilClose,
        }
    };
    assert_eq!(head.framing, expected, "{:?}", String::from_utf8_lossy(raw));

    let connection = tokens(h, header::CONNECTION);
    let says = |t: &[u8]| connection.iter().any(|c| c == t);
    let http_1_0 = head.version == Version::HTTP_10;
    let both_lengths = !no_body && has_te && raw_has_field(raw, "content-length");
    let reused = !(says(b"close")
        || (http_1_0 && !says(b"keep-alive"))
        || expected == ResponseFraming::UntilClose
        || both_lengths);
    assert_eq!(
        head.keep_alive,
        reused,
        "{:?}",
        String::from_utf8_lossy(raw)
    );
}

/// What decoding a chunked body found.
#[derive(Debug, Default, PartialEq)]
struct Decoded {
    data: Vec<u8>,
    trailers: Option<HeaderMap>,
    end: bool,
    error: Option<ChunkError>,
    /// The bytes after the body (when it ended).
    left: Vec<u8>,
}

/// Decodes `bytes` fed in pieces of the sizes in `cuts` (the rest at once
/// when they run out), until the body ends, fails or the bytes run out.
fn decode(bytes: &[u8], cuts: &[u16]) -> Decoded {
    let mut decoder = ChunkedDecoder::new();
    let mut buf = BytesMut::new();
    let mut cuts = cuts.iter();
    let mut fed = 0;
    let mut out = Decoded::default();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(Chunk::Data(data))) => {
                assert!(!data.is_empty(), "an empty data chunk");
                out.data.extend_from_slice(&data);
            }
            Ok(Some(Chunk::Trailers(trailers))) => {
                out.trailers = Some(trailers);
                out.end = true;
                break;
            }
            Ok(Some(Chunk::End)) => {
                out.end = true;
                break;
            }
            Ok(None) if fed < bytes.len() => {
                let step = cuts
                    .next()
                    .map_or(bytes.len(), |c| usize::from(*c).max(1))
                    .min(bytes.len() - fed);
                buf.extend_from_slice(&bytes[fed..fed + step]);
                fed += step;
            }
            Ok(None) => break,
            Err(e) => {
                out.error = Some(e);
                break;
            }
        }
    }
    if out.end {
        assert!(decoder.is_done());
        assert_eq!(decoder.decode(&mut buf), Ok(Some(Chunk::End)));
        out.left = [&buf[..], &bytes[fed..]].concat();
        assert!(out.data.len() < bytes.len() - out.left.len());
    }
    assert!(out.data.len() <= bytes.len());
    out
}

fn check_chunked(bytes: &[u8], cuts: &[u16]) {
    let whole = decode(bytes, &[]);
    let pieces = decode(bytes, cuts);
    assert_eq!(whole, pieces, "at once and in pieces {cuts:?}");
}

fn round_trip(pieces: &[Vec<u8>], fields: &[(String, String)], cuts: &[u16], after: &[u8]) {
    let mut trailers = HeaderMap::new();
    // The decoder takes up to 64 trailer fields.
    for (name, value) in fields.iter().take(64) {
        let value = value.trim_matches([' ', '\t']);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            trailers.append(name, value);
        }
    }
    let mut wire = Vec::new();
    let mut data = Vec::new();
    // The pump sends no empty chunk: that would be the last one.
    for piece in pieces.iter().filter(|p| !p.is_empty()) {
        wire.extend_from_slice(&chunk_start(piece.len()));
        wire.extend_from_slice(piece);
        wire.extend_from_slice(CHUNK_END);
        data.extend_from_slice(piece);
    }
    wire.extend_from_slice(&last_chunk(Some(&trailers)));
    wire.extend_from_slice(after);
    let got = decode(&wire, cuts);
    let want = Decoded {
        data,
        trailers: (!trailers.is_empty()).then_some(trailers),
        end: true,
        error: None,
        left: after.to_vec(),
    };
    assert_eq!(got, want);
}

fuzz_target!(|input: Input<'_>| match input {
    Input::Head { head, bytes } => {
        check_head(bytes, if head { &Method::HEAD } else { &Method::GET });
    }
    Input::Chunked { cuts, bytes } => check_chunked(bytes, &cuts),
    Input::RoundTrip {
        pieces,
        trailers,
        cuts,
        after,
    } => round_trip(&pieces, &trailers, &cuts, after),
});
