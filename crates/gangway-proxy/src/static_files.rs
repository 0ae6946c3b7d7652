//! Files served from a directory, like nginx's `root` + `try_files $uri
//! $uri/ /index.html`: the file, else the directory's index file, else the
//! fallback (for single-page applications), else 404.
//!
//! Nothing outside the root is ever served: the decoded path may not
//! contain `..`, and the file found is resolved (symlinks included) and
//! must still lie inside the resolved root.

use crate::body::ResponseBody;
use gangway_model::StaticFiles;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// What serving a file gave.
pub(crate) enum Served {
    /// A response to send.
    Response(Box<Response<ResponseBody>>),
    /// Nothing found (and no fallback): the caller answers with its 404.
    NotFound,
    /// The path tries to leave the root or is not valid: 400.
    BadPath,
}

/// Serves `path` (already rewritten, still percent-encoded) from `files`.
pub(crate) async fn serve(
    files: &StaticFiles,
    path: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Served {
    if method != Method::GET && method != Method::HEAD {
        let mut response =
            Response::new(ResponseBody::full("only GET and HEAD are allowed here\n"));
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return Served::Response(Box::new(response));
    }
    let Some(relative) = safe_relative_path(path) else {
        return Served::BadPath;
    };
    let Ok(root) = tokio::fs::canonicalize(&files.root).await else {
        tracing::warn!(root = %files.root, "static root does not exist");
        return Served::NotFound;
    };
    let mut candidates = vec![
        root.join(&relative),
        root.join(&relative).join(&files.index),
    ];
    if let Some(fallback) = &files.fallback {
        if let Some(f) = safe_relative_path(fallback) {
            candidates.push(root.join(f));
        }
    }
    for candidate in candidates {
        if let Some(file) = open_inside(&root, &candidate).await {
            return Served::Response(Box::new(respond(file, method, headers).await));
        }
    }
    Served::NotFound
}

/// The percent-decoded path as a relative path of normal segments, or
/// `None` if it is invalid or has a `..` segment.
pub fn safe_relative_path(path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(path)?;
    let mut out = PathBuf::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return None,
            s if s.contains('\0') || s.contains('\\') => return None,
            s => out.push(s),
        }
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Two hex digits exactly: from_str_radix alone takes "+9" too.
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

struct OpenFile {
    file: tokio::fs::File,
    path: PathBuf,
    len: u64,
    modified: SystemTime,
}

/// Opens `candidate` if it is a regular file whose real path is inside
/// `root` (which is already canonical).
async fn open_inside(root: &Path, candidate: &Path) -> Option<OpenFile> {
    let real = tokio::fs::canonicalize(candidate).await.ok()?;
    if !real.starts_with(root) {
        tracing::warn!(path = %candidate.display(), "static file resolves outside the root; refused");
        return None;
    }
    let file = tokio::fs::File::open(&real).await.ok()?;
    let meta = file.metadata().await.ok()?;
    if !meta.is_file() {
        return None;
    }
    Some(OpenFile {
        file,
        path: real,
        len: meta.len(),
        modified: meta.modified().unwrap_or(UNIX_EPOCH),
    })
}

async fn respond(file: OpenFile, method: &Method, headers: &HeaderMap) -> Response<ResponseBody> {
    let mtime = file
        .modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let etag = format!("\"{mtime:x}-{:x}\"", file.len);
    let last_modified = httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(mtime));

    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, content_type(&file.path))
        .header(header::ETAG, &etag)
        .header(header::LAST_MODIFIED, &last_modified)
        .header(header::ACCEPT_RANGES, "bytes");

    if not_modified(headers, &etag, mtime) {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(ResponseBody::empty())
            .unwrap_or_else(|_| internal_error());
    }

    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| if_range_holds(headers, &etag, mtime))
        .map(|r| parse_range(r, file.len));
    let (status, start, len) = match range {
        None | Some(RangeSpec::Ignored) => (StatusCode::OK, 0, file.len),
        Some(RangeSpec::Satisfiable(start, end)) => {
            builder = builder.header(
                header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{}", file.len),
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Some(RangeSpec::Unsatisfiable) => {
            return builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{}", file.len))
                .body(ResponseBody::empty())
                .unwrap_or_else(|_| internal_error());
        }
    };
    let body = if method == Method::HEAD {
        ResponseBody::empty()
    } else {
        match ResponseBody::file(file.file, start, len).await {
            Ok(body) => body,
            Err(error) => {
                tracing::warn!(path = %file.path.display(), %error, "cannot read static file");
                return internal_error();
            }
        }
    };
    builder
        .status(status)
        .header(header::CONTENT_LENGTH, len)
        .body(body)
        .unwrap_or_else(|_| internal_error())
}

fn internal_error() -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full("the file could not be read\n"));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

/// RFC 9110 §13.1.2 and §13.1.3: `If-None-Match` decides when present;
/// else `If-Modified-Since`.
fn not_modified(headers: &HeaderMap, etag: &str, mtime: u64) -> bool {
    if let Some(inm) = headers.get(header::IF_NONE_MATCH) {
        let Ok(inm) = inm.to_str() else {
            return false;
        };
        return inm
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag);
    }
    headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .and_then(|since| since.duration_since(UNIX_EPOCH).ok())
        .is_some_and(|since| mtime <= since.as_secs())
}

/// RFC 9110 §13.1.5: a range applies only if `If-Range` (when present)
/// still names this version of the file.
fn if_range_holds(headers: &HeaderMap, etag: &str, mtime: u64) -> bool {
    let Some(value) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if value.starts_with('"') {
        return value == etag;
    }
    httpdate::parse_http_date(value)
        .ok()
        .and_then(|d| d.duration_since(UNIX_EPOCH).ok())
        .is_some_and(|d| d.as_secs() == mtime)
}

/// What a `Range` header asks of a file of a given length.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// Serve the whole file (no usable single range).
    Ignored,
    /// Inclusive byte positions.
    Satisfiable(u64, u64),
    /// No byte of the range is in the file: 416.
    Unsatisfiable,
}

/// Parses a single `bytes=` range (RFC 9110 §14.1.2). Several ranges are
/// answered with the whole file, which the RFC allows.
pub fn parse_range(value: &str, len: u64) -> RangeSpec {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeSpec::Ignored;
    };
    if spec.contains(',') {
        return RangeSpec::Ignored;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeSpec::Ignored;
    };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), parse(first), parse(last)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(n)) => {
            if n == 0 || len == 0 {
                RangeSpec::Unsatisfiable
            } else {
                RangeSpec::Satisfiable(len.saturating_sub(n), len - 1)
            }
        }
        (false, Some(start), end) if last.trim().is_empty() || end.is_some() => {
            if start >= len {
                return RangeSpec::Unsatisfiable;
            }
            let end = end.map_or(len - 1, |e| e.min(len - 1));
            if end < start {
                RangeSpec::Ignored
            } else {
                RangeSpec::Satisfiable(start, end)
            }
        }
        _ => RangeSpec::Ignored,
    }
}

/// The `Content-Type` for a file name's extension.
fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "webmanifest" => "application/manifest+json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_dot_is_refused_even_when_encoded() {
        for path in [
            "/../etc/passwd",
            "/a/../../x",
            "/%2e%2e/etc/passwd",
            "/%2E%2E%2Fetc",
            "/a/%2e%2e/%2e%2e/b",
        ] {
            assert_eq!(safe_relative_path(path), None, "{path}");
        }
        assert_eq!(
            safe_relative_path("/a/./b//c"),
            Some(PathBuf::from("a/b/c"))
        );
        assert_eq!(
            safe_relative_path("/caf%C3%A9.txt"),
            Some(PathBuf::from("café.txt"))
        );
        assert_eq!(safe_relative_path("/bad%zz"), None);
        // Found by the proxy_paths fuzz target: "%+9" decoded to a tab.
        assert_eq!(safe_relative_path("/a%+9"), None);
        assert_eq!(safe_relative_path("/nul%00"), None);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeSpec::Satisfiable(0, 9));
        assert_eq!(
            parse_range("bytes=90-", 100),
            RangeSpec::Satisfiable(90, 99)
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            RangeSpec::Satisfiable(90, 99)
        );
        assert_eq!(
            parse_range("bytes=50-500", 100),
            RangeSpec::Satisfiable(50, 99)
        );
        assert_eq!(parse_range("bytes=100-", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeSpec::Ignored);
        assert_eq!(parse_range("items=0-1", 100), RangeSpec::Ignored);
        assert_eq!(parse_range("bytes=9-2", 100), RangeSpec::Ignored);
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type(Path::new("a/index.HTML")),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("app.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
    }
}
