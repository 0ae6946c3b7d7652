//! Reading HTTP/1.1 off the wire in tests that speak it with raw sockets:
//! message heads and chunked bodies, parsed plainly so that a test sees
//! exactly what was sent.

use std::sync::{Mutex, MutexGuard};

/// Fields in the order received, names in lower case.
pub type Fields = Vec<(String, String)>;

/// Locks `m`, also after a test thread panicked holding it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The first field named `name` (lower case).
pub fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A message head without its final CRLF CRLF: the start line and the
/// fields (names in lower case, values trimmed).
pub fn split_head(head: &[u8]) -> (String, Fields) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let start = lines.next().unwrap_or_default().to_owned();
    let fields = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (start, fields)
}

/// A chunked body taken from the front of a buffer.
pub struct Chunked {
    pub data: Vec<u8>,
    pub trailers: Fields,
    /// The bytes of the buffer it took.
    pub used: usize,
}

/// Decodes a whole chunked body (RFC 9112 §7.1) from the front of `buf`;
/// `Ok(None)` while it is incomplete.
pub fn decode_chunked(buf: &[u8]) -> Result<Option<Chunked>, String> {
    let mut at = 0;
    let mut data = Vec::new();
    loop {
        let Some(eol) = find(&buf[at..], b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&buf[at..at + eol]).into_owned();
        let digits = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(digits, 16)
            .map_err(|_| format!("invalid chunk size line {line:?}"))?;
        at += eol + 2;
        if size == 0 {
            let mut trailers = Vec::new();
            loop {
                let Some(eol) = find(&buf[at..], b"\r\n") else {
                    return Ok(None);
                };
                let line = String::from_utf8_lossy(&buf[at..at + eol]).into_owned();
                at += eol + 2;
                if line.is_empty() {
                    return Ok(Some(Chunked {
                        data,
                        trailers,
                        used: at,
                    }));
                }
                let (name, value) = line
                    .split_once(':')
                    .ok_or_else(|| format!("invalid trailer field {line:?}"))?;
                trailers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        data.extend_from_slice(&buf[at..at + size]);
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err(format!("chunk data of {size} bytes not followed by CRLF"));
        }
        at += size + 2;
    }
}
