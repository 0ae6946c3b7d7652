//! Writing a response to the client: the status line and fields, then the
//! body, delimited as RFC 9112 §6 says for the request it answers.

use crate::body::ResponseBody;
use crate::h1::chunked::{chunk_start, last_chunk, CHUNK_END};
use crate::h1::conn::poll_write_pieces;
use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{StatusCode, Version};
use http_body::Body;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::{SystemTime, UNIX_EPOCH};

/// Body bytes gathered before they are written, so that a short response
/// leaves in one system call with its head.
const GATHER: usize = 64 * 1024;

/// How the body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delimit {
    /// No body: HEAD, 1xx, 204, 304.
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (an HTTP/1.0 client and no length).
    Close,
}

/// Facts about the request a response answers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answering {
    pub head: bool,
    pub version: Version,
}

/// Writes the status line and fields of `parts` into `out`; decides the
/// body's framing, and whether the connection stays open (`keep_alive`
/// comes in as the client's wish and goes out as what will happen).
pub(crate) fn encode_head(
    out: &mut BytesMut,
    parts: &mut http::response::Parts,
    body: &ResponseBody,
    request: Answering,
    keep_alive: &mut bool,
) -> Delimit {
    let status = parts.status;
    let headers = &mut parts.headers;
    headers.remove(header::TRANSFER_ENCODING);
    let delimit = if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        if status != StatusCode::NOT_MODIFIED {
            headers.remove(header::CONTENT_LENGTH);
        }
        Delimit::None
    } else if request.head {
        Delimit::None
    } else if let Some(n) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        Delimit::Length(n)
    } else if let Some(n) = body.size_hint().exact() {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        Delimit::Length(n)
    } else if request.version == Version::HTTP_11 {
        headers.remove(header::CONTENT_LENGTH);
        Delimit::Chunked
    } else {
        headers.remove(header::CONTENT_LENGTH);
        *keep_alive = false;
        Delimit::Close
    };
    if status != StatusCode::SWITCHING_PROTOCOLS {
        if !*keep_alive {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        } else if request.version == Version::HTTP_10 {
            headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        }
    }

    put_status_line(out, status);
    for (name, value) in headers.iter() {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    if delimit == Delimit::Chunked {
        out.put_slice(b"transfer-encoding: chunked\r\n");
    }
    if !headers.contains_key(header::DATE) {
        out.put_slice(b"date: ");
        put_date(out);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    delimit
}

/// A short response of gangway's own that ends the connection: the
/// answer to a request that could not be read.
pub(crate) fn refusal(status: StatusCode, reason: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(192 + reason.len());
    put_status_line(&mut out, status);
    out.put_slice(b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\ndate: ");
    put_date(&mut out);
    out.put_slice(b"\r\ncontent-length: ");
    out.put_slice((reason.len() + 1).to_string().as_bytes());
    out.put_slice(b"\r\n\r\n");
    out.put_slice(reason.as_bytes());
    out.put_u8(b'\n');
    out.freeze()
}

fn put_status_line(out: &mut BytesMut, status: StatusCode) {
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.put_slice(b"\r\n");
}

thread_local! {
    /// The `Date` value and the second it was made for: formatting it for
    /// every response would cost more than the rest of the head.
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

fn put_date(out: &mut BytesMut) {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(cached_for, text)| {
        if *cached_for != second {
            let formatted = httpdate::fmt_http_date(now);
            if formatted.len() == text.len() {
                text.copy_from_slice(formatted.as_bytes());
                *cached_for = second;
            }
        }
        out.put_slice(text);
    });
}

/// Writes `head` and then the body, delimited by `delimit`. `Ok(true)`:
/// the whole response went out and the connection may carry another.
pub(crate) async fn write_response(
    io: &tokio::net::TcpStream,
    head: Bytes,
    delimit: Delimit,
    body: &mut ResponseBody,
) -> io::Result<bool> {
    let mut pieces = VecDeque::with_capacity(4);
    pieces.push_back(head);
    let mut left = match delimit {
        Delimit::Length(n) => n,
        _ => u64::MAX,
    };
    let mut ended = delimit == Delimit::None;
    let mut intact = true;
    let mut body = Pin::new(body);
    std::future::poll_fn(|cx| loop {
        let mut queued: usize = pieces.iter().map(Bytes::len).sum();
        while !ended && queued < GATHER && pieces.len() < 16 {
            let frame = match body.as_mut().poll_frame(cx) {
                Poll::Pending => break,
                Poll::Ready(None) => {
                    ended = true;
                    if delimit == Delimit::Chunked {
                        pieces.push_back(last_chunk(None));
                    }
                    // A body shorter than its length leaves the client waiting.
                    intact &= !matches!(delimit, Delimit::Length(_)) || left == 0;
                    break;
                }
                Poll::Ready(Some(Err(error))) => {
                    tracing::debug!(%error, "response body failed; closing the connection");
                    ended = true;
                    intact = false;
                    break;
                }
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            match frame.into_data() {
                Ok(mut data) if !data.is_empty() => {
                    if data.len() as u64 > left {
                        // Bounded by `left`, so the cast cannot truncate.
                        data.truncate(left as usize);
                        intact = false;
                        ended = true;
                    }
                    left = left.saturating_sub(data.len() as u64);
                    queued += data.len();
                    if delimit == Delimit::Chunked {
                        pieces.push_back(chunk_start(data.len()));
                        pieces.push_back(data);
                        pieces.push_back(Bytes::from_static(CHUNK_END));
                    } else {
                        pieces.push_back(data);
                    }
                }
                Ok(_) => {}
                Err(frame) => {
                    if let (Ok(trailers), Delimit::Chunked) = (frame.into_trailers(), delimit) {
                        pieces.push_back(last_chunk(Some(&trailers)));
                        ended = true;
                    }
                }
            }
        }
        if pieces.is_empty() {
            return if ended {
                Poll::Ready(Ok(intact && delimit != Delimit::Close))
            } else {
                Poll::Pending
            };
        }
        std::task::ready!(poll_write_pieces(io, cx, &mut pieces))?;
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_of(
        response: http::Response<ResponseBody>,
        request: Answering,
        keep_alive: bool,
    ) -> (String, Delimit, bool) {
        let (mut parts, body) = response.into_parts();
        let mut out = BytesMut::new();
        let mut keep = keep_alive;
        let delimit = encode_head(&mut out, &mut parts, &body, request, &mut keep);
        (String::from_utf8(out.to_vec()).unwrap(), delimit, keep)
    }

    const GET_11: Answering = Answering {
        head: false,
        version: Version::HTTP_11,
    };

    #[test]
    fn a_known_length_is_sent_and_a_date_added() {
        let (text, delimit, keep) = head_of(
            http::Response::new(ResponseBody::full("hello")),
            GET_11,
            true,
        );
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("content-length: 5\r\n"), "{text}");
        assert!(
            text.contains("date: ") && text.ends_with(" GMT\r\n\r\n"),
            "{text}"
        );
        assert_eq!(delimit, Delimit::Length(5));
        assert!(keep);
    }

    #[test]
    fn head_204_and_304_have_no_body() {
        let head = Answering {
            head: true,
            ..GET_11
        };
        let (_, delimit, _) = head_of(http::Response::new(ResponseBody::full("hello")), head, true);
        assert_eq!(delimit, Delimit::None);
        let mut no_content = http::Response::new(ResponseBody::empty());
        *no_content.status_mut() = StatusCode::NO_CONTENT;
        let (text, delimit, _) = head_of(no_content, GET_11, true);
        assert_eq!(delimit, Delimit::None);
        assert!(!text.contains("content-length"), "{text}");
    }

    #[test]
    fn http_1_0_clients_are_told_about_the_connection() {
        let http10 = Answering {
            head: false,
            version: Version::HTTP_10,
        };
        let (text, _, keep) = head_of(http::Response::new(ResponseBody::empty()), http10, true);
        assert!(
            text.contains("connection: keep-alive\r\n") && keep,
            "{text}"
        );
        let (text, _, keep) = head_of(http::Response::new(ResponseBody::empty()), GET_11, false);
        assert!(text.contains("connection: close\r\n") && !keep, "{text}");
    }

    #[test]
    fn refusals_close_and_explain() {
        let text = refusal(StatusCode::BAD_REQUEST, "bad framing");
        let text = std::str::from_utf8(&text).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.contains("connection: close\r\n") && text.contains("content-length: 12\r\n"));
        assert!(text.ends_with("\r\n\r\nbad framing\n"), "{text}");
    }
}
