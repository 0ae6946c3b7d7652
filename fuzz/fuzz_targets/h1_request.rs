//! What a client sends to gangway's own HTTP/1.1 server: the request head
//! (`parse_request`: request line, fields, and the body framing of RFC
//! 9112 §6.3; the chunked body itself goes through the decoder that the
//! `h1_response` target covers).
//!
//! Checked besides "no panic":
//! - a parsed head was taken off the front of the buffer, ends with an
//!   empty line, is at most `MAX_REQUEST_HEAD` bytes, parses the same
//!   without the bytes after it, and cut one byte short is not a complete
//!   head; an incomplete head is shorter than `MAX_REQUEST_HEAD`;
//! - its framing agrees with a reference reading of RFC 9112 §6.3 over
//!   the fields it kept: chunked only with `Transfer-Encoding` (on
//!   HTTP/1.1, without `Content-Length`); a length only with exactly one
//!   `Content-Length` field of that value; no body otherwise, with no
//!   `Transfer-Encoding` and at most a zero length;
//! - the connection is kept only without a `close` option, and on
//!   HTTP/1.0 only with `keep-alive`; an upgrade only on HTTP/1.1 with an
//!   `Upgrade` field;
//! - a refusal has one of the statuses gangway documents for the parser
//!   (400, 414, 431, 501, 505).

#![no_main]

use bytes::BytesMut;
use gangway_proxy::fuzzing::{parse_request, BodyFraming, RequestHead, MAX_REQUEST_HEAD};
use http::header::{self, HeaderMap};
use http::Version;
use libfuzzer_sys::fuzz_target;

fn tokens(headers: &HeaderMap, name: header::HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|t| String::from_utf8_lossy(t.trim_ascii()).to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

fn check_framing(head: &RequestHead) {
    let h = &head.headers;
    let lengths: Vec<_> = h.get_all(header::CONTENT_LENGTH).iter().collect();
    let has_coding = h.contains_key(header::TRANSFER_ENCODING);
    match head.framing {
        BodyFraming::Chunked => {
            assert!(
                has_coding && lengths.is_empty(),
                "chunked framing from {h:?}"
            );
            assert_eq!(head.version, Version::HTTP_11);
            assert_eq!(tokens(h, header::TRANSFER_ENCODING), ["chunked"]);
        }
        BodyFraming::Length(n) => {
            assert!(n > 0 && !has_coding, "length framing from {h:?}");
            assert_eq!(lengths.len(), 1, "{h:?}");
            let value = std::str::from_utf8(lengths[0].as_bytes()).ok();
            assert_eq!(
                value.and_then(|v| v.trim().parse::<u64>().ok()),
                Some(n),
                "{h:?}"
            );
        }
        BodyFraming::None => {
            assert!(!has_coding, "no body although {h:?}");
            for value in lengths {
                for part in value.as_bytes().split(|b| *b == b',') {
                    assert!(part.trim_ascii().iter().all(|d| *d == b'0'), "{h:?}");
                }
            }
        }
    }
    let options = tokens(h, header::CONNECTION);
    let close = options.iter().any(|t| t == "close");
    let keep = options.iter().any(|t| t == "keep-alive");
    let expected = !close && (head.version == Version::HTTP_11 || keep);
    assert_eq!(head.keep_alive, expected, "keep-alive from {options:?}");
    if head.wants_upgrade {
        assert_eq!(head.version, Version::HTTP_11);
        assert!(h.contains_key(header::UPGRADE));
        assert!(options.iter().any(|t| t == "upgrade"));
    }
}

fuzz_target!(|bytes: &[u8]| {
    let mut buf = BytesMut::from(bytes);
    match parse_request(&mut buf) {
        Ok(Some(head)) => {
            let used = bytes.len() - buf.len();
            assert_eq!(
                &bytes[used..],
                &buf[..],
                "the rest is not what followed the head"
            );
            assert!(used <= MAX_REQUEST_HEAD, "a head of {used} bytes");
            assert!(bytes[..used].ends_with(b"\n\n") || bytes[..used].ends_with(b"\n\r\n"));
            check_framing(&head);
            let alone = parse_request(&mut BytesMut::from(&bytes[..used]))
                .ok()
                .flatten()
                .expect("the head alone does not parse");
            assert_eq!(
                (
                    &alone.method,
                    &alone.uri,
                    alone.version,
                    alone.framing,
                    alone.headers.len()
                ),
                (
                    &head.method,
                    &head.uri,
                    head.version,
                    head.framing,
                    head.headers.len()
                )
            );
            let short = parse_request(&mut BytesMut::from(&bytes[..used - 1]));
            assert!(
                !matches!(short, Ok(Some(_))),
                "a head cut short is complete"
            );
        }
        Ok(None) => assert!(
            bytes.len() < MAX_REQUEST_HEAD,
            "{} bytes still incomplete",
            bytes.len()
        ),
        Err(refusal) => assert!(
            matches!(refusal.status.as_u16(), 400 | 414 | 431 | 501 | 505),
            "{refusal:?}"
        ),
    }
});
