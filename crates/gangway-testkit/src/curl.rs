//! Running the real `curl` and reading its `-i` output.

use std::process::Command;

/// What `curl -sS -i` printed, parsed.
#[derive(Debug, Clone, Default)]
pub struct CurlResult {
    /// The final (non-1xx) response's status; 0 when curl got no response.
    pub status: u16,
    /// The protocol of the status line: `HTTP/1.1`, `HTTP/2`, ...
    pub version: String,
    /// The final response's headers, in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The response body (lossy UTF-8).
    pub body: String,
    /// curl's exit code (0 on success; e.g. 7 connection refused, 28 time-out,
    /// 35 TLS handshake failure, 56 receive failure).
    pub exit_code: i32,
    /// curl's stderr (the error message when `exit_code != 0`).
    pub stderr: String,
}

impl CurlResult {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body parsed as JSON; panics (with the whole result) if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {self:#?}"))
    }

    /// For a response from `gangway-test-backend`: the request headers the
    /// backend received, as (lower-case name, value) pairs in order.
    pub fn backend_headers(&self) -> Vec<(String, String)> {
        let v = self.json();
        v["headers"]
            .as_array()
            .unwrap_or_else(|| panic!("no \"headers\" array in backend answer: {self:#?}"))
            .iter()
            .map(|pair| {
                (
                    pair[0].as_str().unwrap_or_default().to_string(),
                    pair[1].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// For a response from `gangway-test-backend`: the first value of the
    /// request header `name` the backend received.
    pub fn backend_header(&self, name: &str) -> Option<String> {
        self.backend_headers()
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// Runs `curl -sS -i --max-time 10 --noproxy '*' <args>` and parses its
/// output. Never
/// panics on curl errors: look at `exit_code` and `stderr`.
pub fn curl<I, S>(args: I) -> CurlResult
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "10", "--noproxy", "*"])
        .args(args)
        .output()
        .expect("run curl (is it installed?)");
    let mut r = parse_curl_output(&out.stdout);
    r.exit_code = out.status.code().unwrap_or(-1);
    r.stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    r
}

/// `curl -H "Host: <host>" http://127.0.0.1:<port><path>`.
pub fn get(port: u16, host: &str, path: &str) -> CurlResult {
    curl([
        "-H".to_string(),
        format!("Host: {host}"),
        format!("http://127.0.0.1:{port}{path}"),
    ])
}

/// Parses the stdout of `curl -i`: skips interim (1xx) header blocks, returns
/// the final status, its headers and the body. Handles `HTTP/1.1 200 OK`,
/// `HTTP/2 200`, CRLF or LF line ends. `exit_code` and `stderr` are left
/// empty.
pub fn parse_curl_output(raw: &[u8]) -> CurlResult {
    let mut rest = raw;
    let mut result = CurlResult::default();
    while rest.starts_with(b"HTTP/") {
        let (block, after) = split_header_block(rest);
        rest = after;
        let text = String::from_utf8_lossy(block);
        let mut lines = text.lines().map(|l| l.trim_end_matches('\r'));
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.split_whitespace();
        let version = parts.next().unwrap_or_default().to_string();
        let status = parts
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(0);
        let headers = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        result = CurlResult {
            status,
            version,
            headers,
            ..CurlResult::default()
        };
        if !((100..200).contains(&status) && status != 101) {
            break;
        }
    }
    result.body = String::from_utf8_lossy(rest).into_owned();
    result
}

/// Splits at the first empty line: (header block, rest after the empty line).
fn split_header_block(raw: &[u8]) -> (&[u8], &[u8]) {
    let mut i = 0;
    while i < raw.len() {
        if raw[i..].starts_with(b"\r\n\r\n") {
            return (&raw[..i], &raw[i + 4..]);
        }
        if raw[i..].starts_with(b"\n\n") {
            return (&raw[..i], &raw[i + 2..]);
        }
        i += 1;
    }
    (raw, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http1() {
        let raw = b"HTTP/1.1 200 OK\r\nx-backend: b1\r\nContent-Type: application/json\r\ncontent-length: 7\r\n\r\n{\"a\":1}";
        let r = parse_curl_output(raw);
        assert_eq!(r.status, 200);
        assert_eq!(r.version, "HTTP/1.1");
        assert_eq!(r.header("X-Backend"), Some("b1"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.headers.len(), 3);
        assert_eq!(r.body, "{\"a\":1}");
        assert_eq!(r.json()["a"], 1);
    }

    #[test]
    fn parses_http2_status_line_without_reason() {
        let raw = b"HTTP/2 200 \r\nx-backend: b1\r\n\r\nhello\r\n\r\nworld";
        let r = parse_curl_output(raw);
        assert_eq!(r.status, 200);
        assert_eq!(r.version, "HTTP/2");
        assert_eq!(r.header("x-backend"), Some("b1"));
        assert_eq!(r.body, "hello\r\n\r\nworld");
    }

    #[test]
    fn skips_interim_responses() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nnot found";
        let r = parse_curl_output(raw);
        assert_eq!(r.status, 404);
        assert_eq!(r.header("content-length"), Some("9"));
        assert_eq!(r.body, "not found");
    }

    #[test]
    fn keeps_101_and_repeated_headers_and_colons_in_values() {
        let raw = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nx-url: http://x:1/\r\n\r\n";
        let r = parse_curl_output(raw);
        assert_eq!(r.status, 101);
        assert_eq!(r.header_all("Set-Cookie"), vec!["a=1", "b=2"]);
        assert_eq!(r.header("x-url"), Some("http://x:1/"));
        assert_eq!(r.body, "");
    }

    #[test]
    fn no_response_is_status_zero() {
        let r = parse_curl_output(b"");
        assert_eq!(r.status, 0);
        assert!(r.headers.is_empty());
        assert_eq!(r.body, "");
    }

    #[test]
    fn lf_only_line_ends() {
        let r = parse_curl_output(b"HTTP/1.0 503 Service Unavailable\nx: y\n\nbody");
        assert_eq!(r.status, 503);
        assert_eq!(r.header("x"), Some("y"));
        assert_eq!(r.body, "body");
    }

    #[test]
    fn backend_headers_from_json() {
        let raw = b"HTTP/1.1 200 OK\r\n\r\n{\"headers\":[[\"host\",\"h1.test\"],[\"x-forwarded-for\",\"1.2.3.4, 127.0.0.1\"]]}";
        let r = parse_curl_output(raw);
        assert_eq!(r.backend_header("Host").as_deref(), Some("h1.test"));
        assert_eq!(
            r.backend_header("X-Forwarded-For").as_deref(),
            Some("1.2.3.4, 127.0.0.1")
        );
        assert_eq!(r.backend_header("x-real-ip"), None);
    }
}
