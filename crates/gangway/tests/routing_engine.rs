//! The routing engine through the real binary: a configuration file
//! (`GANGWAY_CONFIG`) with pools of `gangway-test-backend` processes on
//! loopback, rewrites, header changes, redirects, static files, error pages,
//! fixed answers, statistics, the matching order, reloads, `gangway check`
//! and `gangway explain`. No Docker container is started here: gangway
//! watches a Docker network that does not exist, so Docker routes nothing.

#![allow(clippy::unwrap_used)] // a panic is the intended test failure

mod common;

use common::*;
use gangway_testkit::{curl, make_cert, wait_until, CurlResult, Gangway, GangwayBuilder, TempDir};
use std::process::{Command, Output};

/// `curl [extra...] -H "Host: <host>" http://127.0.0.1:<http_port><path>`.
fn req(g: &Gangway, host: &str, path: &str, extra: &[&str]) -> CurlResult {
    let mut args: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    args.push("-H".into());
    args.push(format!("Host: {host}"));
    args.push(format!("http://127.0.0.1:{}{path}", g.http_port));
    let r = curl(&args);
    assert_eq!(
        r.exit_code,
        0,
        "curl {args:?} failed: {r:#?}\ngangway output:\n{}",
        g.output()
    );
    r
}

/// The `uri` the backend received, for a forwarded request.
fn backend_uri(r: &CurlResult) -> String {
    assert_eq!(r.status, 200, "not forwarded: {r:#?}");
    r.json()["uri"].as_str().unwrap().to_owned()
}

/// Runs the gangway binary with `args` and no inherited environment.
fn run_gangway(args: &[&str]) -> Output {
    Command::new(GANGWAY)
        .args(args)
        .env_clear()
        .output()
        .expect("run gangway")
}

/// The 1-based line of the first line of `text` equal to `line`.
fn line_of(text: &str, line: &str) -> usize {
    text.lines()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("{line:?} not in:\n{text}"))
        + 1
}

/// The 1-based line of the `n`-th (1-based) line of `text` equal to `line`.
fn nth_line_of(text: &str, line: &str, n: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| *l == line)
        .nth(n - 1)
        .unwrap_or_else(|| panic!("{line:?} is not {n} times in:\n{text}"))
        .0
        + 1
}

#[test]
fn strip_prefix_and_regex_rewrite_reach_the_backend() {
    let b = Backend::start("rw");
    let dir = TempDir::new();
    let g = start_config(
        &dir,
        &format!(
            r#"
[[pools]]
name = "b"
targets = ["{t}"]

[[routes]]
name = "strip"
hosts = ["strip.test"]
path = {{ prefix = "/api" }}
strip_prefix = "/api"
pool = "b"

[[routes]]
name = "strip-rest"
hosts = ["strip.test"]
pool = "b"

# seed 001: location /api/ {{ rewrite ^/api(/.*)$ $1 break; proxy_pass ... }}
[[routes]]
name = "regex"
hosts = ["rw.test"]
path = {{ prefix = "/api" }}
rewrite = {{ regex = '^/api(/.*)$', replacement = "$1" }}
pool = "b"

[[routes]]
name = "named"
hosts = ["rw.test"]
path = {{ prefix = "/v1" }}
rewrite = {{ regex = '^/v1/(?P<rest>.*)$', replacement = '/v2/${{rest}}' }}
pool = "b"
"#,
            t = b.target()
        ),
    );

    let uri = |host: &str, path: &str| backend_uri(&req(&g, host, path, &[]));

    // strip_prefix: the prefix goes, the query stays as received.
    assert_eq!(uri("strip.test", "/api/users?x=1"), "/users?x=1");
    assert_eq!(
        uri("strip.test", "/api/a/b?x=1&y=a%20b"),
        "/a/b?x=1&y=a%20b"
    );
    assert_eq!(uri("strip.test", "/api"), "/");
    assert_eq!(uri("strip.test", "/api/"), "/");
    assert_eq!(uri("strip.test", "/api?q=1"), "/?q=1");
    // /apix is not under the /api prefix: the other route, path untouched.
    assert_eq!(uri("strip.test", "/apix"), "/apix");
    assert_eq!(uri("strip.test", "/apix/users"), "/apix/users");

    // The seed's regex rewrite: $1 of ^/api(/.*)$, query kept.
    assert_eq!(uri("rw.test", "/api/users?x=1"), "/users?x=1");
    assert_eq!(uri("rw.test", "/api/"), "/");
    // The regex does not match /api itself: the path is forwarded as is.
    assert_eq!(uri("rw.test", "/api"), "/api");
    // /apix matches no route of rw.test.
    let r = req(&g, "rw.test", "/apix", &[]);
    assert_eq!(r.status, 404, "{r:#?}");
    // Named groups in the replacement.
    assert_eq!(uri("rw.test", "/v1/items/7?full=1"), "/v2/items/7?full=1");

    // The Host header still names the client's host.
    let r = req(&g, "strip.test", "/api/users", &[]);
    assert_eq!(r.backend_header("host").as_deref(), Some("strip.test"));
    assert_eq!(r.header("x-backend"), Some("rw"));
}

#[test]
fn request_and_response_headers_are_changed() {
    let b = Backend::start("hdr");
    let dir = TempDir::new();
    let g = start_config(
        &dir,
        &format!(
            r#"
[[pools]]
name = "b"
targets = ["{t}"]

[[routes]]
name = "hdr"
hosts = ["hdr.test"]
pool = "b"
request_headers = {{ set = {{ "X-Set" = "by-gangway", "User-Agent" = "gangway-agent" }}, add = {{ "X-Add" = "added" }}, remove = ["X-Remove", "Cookie"] }}
response_headers = {{ set = {{ "X-Resp" = "r1", "Cache-Control" = "no-store" }}, add = {{ "X-Resp-Add" = "a1" }}, remove = ["X-Backend"] }}

[[routes]]
name = "plain"
hosts = ["plain.test"]
pool = "b"
"#,
            t = b.target()
        ),
    );

    let r = req(
        &g,
        "hdr.test",
        "/",
        &[
            "-H",
            "X-Set: from-client",
            "-H",
            "X-Add: from-client",
            "-H",
            "X-Remove: secret",
            "-H",
            "Cookie: session=abc",
            "-H",
            "X-Keep: kept",
            "-A",
            "curl-agent",
        ],
    );
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.json()["name"], "hdr");
    let seen = r.backend_headers();
    let values = |name: &str| -> Vec<String> {
        seen.iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    };
    // set replaces every value the client sent.
    assert_eq!(values("x-set"), ["by-gangway"], "{seen:#?}");
    assert_eq!(values("user-agent"), ["gangway-agent"], "{seen:#?}");
    // add keeps the client's value and appends.
    assert_eq!(values("x-add"), ["from-client", "added"], "{seen:#?}");
    // remove drops them.
    assert!(values("x-remove").is_empty(), "{seen:#?}");
    assert!(values("cookie").is_empty(), "{seen:#?}");
    // Others pass, and the forwarding headers are still there.
    assert_eq!(values("x-keep"), ["kept"], "{seen:#?}");
    assert_eq!(values("x-forwarded-host"), ["hdr.test"], "{seen:#?}");
    assert_eq!(values("x-real-ip"), ["127.0.0.1"], "{seen:#?}");

    // Response: set, add and remove reach the client.
    assert_eq!(r.header("x-resp"), Some("r1"), "{r:#?}");
    assert_eq!(r.header("cache-control"), Some("no-store"), "{r:#?}");
    assert_eq!(r.header("x-resp-add"), Some("a1"), "{r:#?}");
    assert_eq!(r.header("x-backend"), None, "{r:#?}");
    assert_eq!(r.header("content-type"), Some("application/json"));

    // A route without header changes forwards them untouched.
    let r = req(
        &g,
        "plain.test",
        "/",
        &["-H", "X-Remove: secret", "-H", "Cookie: session=abc"],
    );
    assert_eq!(r.backend_header("x-remove").as_deref(), Some("secret"));
    assert_eq!(r.backend_header("cookie").as_deref(), Some("session=abc"));
    assert_eq!(r.backend_header("x-set"), None);
    assert_eq!(r.header("x-backend"), Some("hdr"));
    assert_eq!(r.header("x-resp"), None);
}

#[test]
fn redirects_expand_host_request_uri_and_captures() {
    let dir = TempDir::new();
    let g = start_config(
        &dir,
        r#"
[[routes]]
name = "to-https"
hosts = ["plain.test"]
redirect = { to = "https://$host$request_uri", status = 308 }

# seed 002's regex route with named groups.
[[routes]]
name = "old-pages"
hosts = ["site.test"]
path = { regex = '^/(?P<controller>[a-z0-9-]+)/(?P<module>[a-z0-9-]+)/(?P<site>[a-z0-9]+\.(htm|html))$' }
redirect = { to = "/v2/${controller}/${module}/${site}", status = 301 }

[[routes]]
name = "numbered"
hosts = ["site.test"]
path = { regex = '^/n/([0-9]+)$' }
redirect = { to = "$scheme://$host/num/$1?$query&p=$path" }
"#,
    );

    // HTTP -> HTTPS: host without its port and in lower case, path and query
    // as received.
    let r = req(&g, "Plain.Test:8080", "/a/b?x=1&y=2", &[]);
    assert_eq!(r.status, 308, "{r:#?}");
    assert_eq!(
        r.header("location"),
        Some("https://plain.test/a/b?x=1&y=2"),
        "{r:#?}"
    );
    assert_eq!(r.body, "");
    let r = req(&g, "plain.test", "/", &[]);
    assert_eq!(r.header("location"), Some("https://plain.test/"), "{r:#?}");
    let r = req(&g, "plain.test", "/a%20b", &[]);
    assert_eq!(
        r.header("location"),
        Some("https://plain.test/a%20b"),
        "{r:#?}"
    );
    // Any method is redirected; 308 keeps it (the client's business).
    let r = req(&g, "plain.test", "/form", &["-X", "POST", "-d", "a=1"]);
    assert_eq!(r.status, 308, "{r:#?}");
    assert_eq!(r.header("location"), Some("https://plain.test/form"));

    // Named captures.
    let r = req(&g, "site.test", "/blog/post-list/page1.html", &[]);
    assert_eq!(r.status, 301, "{r:#?}");
    assert_eq!(
        r.header("location"),
        Some("/v2/blog/post-list/page1.html"),
        "{r:#?}"
    );
    // Not matching the regex: no route.
    let r = req(&g, "site.test", "/blog/post-list/page1.txt", &[]);
    assert_eq!(r.status, 404, "{r:#?}");

    // Numbered captures, $scheme, $query, $path; default status 302.
    let r = req(&g, "site.test", "/n/42?q=z", &[]);
    assert_eq!(r.status, 302, "{r:#?}");
    assert_eq!(
        r.header("location"),
        Some("http://site.test/num/42?q=z&p=/n/42"),
        "{r:#?}"
    );
}

#[test]
fn plain_http_port_redirects_to_https_and_https_serves() {
    let dir = TempDir::new();
    let (cert, key) = make_cert(dir.path(), "secure.test");
    let builder = GangwayBuilder::new(GANGWAY)
        .network(NO_NETWORK)
        .https(&cert, &key);
    let (http_port, https_port) = (builder.http_port(), builder.https_port());
    // docs/config.md's example: plain HTTP on the HTTP port goes to HTTPS.
    let file = dir.join("gangway.toml");
    write_atomic(
        &file,
        &format!(
            r#"
[[routes]]
name = "to-https"
hosts = ["secure.test"]
ports = [{http_port}]
priority = 100
redirect = {{ to = "https://$host$request_uri", status = 308 }}

[[routes]]
name = "site"
hosts = ["secure.test"]
respond = {{ body = "secure\n" }}

[[routes]]
name = "scheme"
hosts = ["secure.test"]
path = {{ exact = "/scheme" }}
redirect = {{ to = "$scheme://$host/x" }}
"#
        ),
    );
    let g = start(builder.env("GANGWAY_CONFIG", file.to_string_lossy()));
    let https = |path: &str| {
        curl([
            "--cacert".to_owned(),
            cert.to_string_lossy().into_owned(),
            "--resolve".to_owned(),
            format!("secure.test:{https_port}:127.0.0.1"),
            format!("https://secure.test:{https_port}{path}"),
        ])
    };

    let r = req(&g, &format!("secure.test:{http_port}"), "/a/b?x=1", &[]);
    assert_eq!(r.status, 308, "{r:#?}");
    assert_eq!(
        r.header("location"),
        Some("https://secure.test/a/b?x=1"),
        "{r:#?}"
    );
    let r = req(&g, "secure.test", "/scheme", &[]);
    assert_eq!(
        r.status, 308,
        "the port route has the higher priority: {r:#?}"
    );

    // On the HTTPS port the redirect does not apply.
    let r = https("/a/b?x=1");
    assert_eq!((r.status, r.body.as_str()), (200, "secure\n"), "{r:#?}");
    let r = https("/scheme");
    assert_eq!(r.status, 302, "{r:#?}");
    assert_eq!(
        r.header("location"),
        Some("https://secure.test/x"),
        "{r:#?}"
    );

    // explain tells the port condition apart.
    let e = g.admin_get(&format!(
        "/api/v1/explain?host=secure.test&path=/a&port={https_port}"
    ));
    let v = e.json();
    assert_eq!(v["route"], "file/site", "{v:#}");
    let to_https = v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["route"] == "file/to-https")
        .unwrap()
        .clone();
    assert_eq!(to_https["rejected_by"], "port", "{v:#}");
    assert_eq!(
        g.admin_get("/api/v1/explain?host=secure.test&path=/a")
            .json()["route"],
        "file/to-https"
    );
}

/// The tree served by the static routes:
///
/// ```text
/// dir/secret.txt              outside the root
/// dir/www/index.html, style.css, app.js, page.html, data.txt
/// dir/www/sub/index.html
/// dir/www/a/                  an empty directory
/// dir/www/link-out.txt  -> ../secret.txt   (a symlink out of the root)
/// dir/www/link-dir      -> ..              (a directory symlink out of it)
/// dir/www/link-in.txt   -> data.txt        (a symlink inside: served)
/// ```
const SECRET: &str = "TOP-SECRET-OUTSIDE-THE-ROOT";
const INDEX: &str = "<!doctype html><h1>home</h1>\n";
const DATA: &str = "0123456789abcdef";

fn static_tree(dir: &TempDir) {
    let www = dir.join("www");
    std::fs::create_dir_all(www.join("sub")).unwrap();
    std::fs::create_dir_all(www.join("a")).unwrap();
    std::fs::write(dir.join("secret.txt"), SECRET).unwrap();
    std::fs::write(www.join("index.html"), INDEX).unwrap();
    std::fs::write(www.join("style.css"), "body { color: red }\n").unwrap();
    std::fs::write(www.join("app.js"), "console.log('hi');\n").unwrap();
    std::fs::write(www.join("page.html"), "<p>page</p>\n").unwrap();
    std::fs::write(www.join("data.txt"), DATA).unwrap();
    std::fs::write(www.join("sub/index.html"), "<p>sub index</p>\n").unwrap();
    std::os::unix::fs::symlink("../secret.txt", www.join("link-out.txt")).unwrap();
    std::os::unix::fs::symlink("..", www.join("link-dir")).unwrap();
    std::os::unix::fs::symlink("data.txt", www.join("link-in.txt")).unwrap();
}

#[test]
fn static_files_are_served_safely() {
    let dir = TempDir::new();
    static_tree(&dir);
    let g = start_config(
        &dir,
        r#"
# Relative to this file's directory.
[[routes]]
name = "spa"
hosts = ["static.test"]
static = { root = "www", fallback = "/index.html" }

[[routes]]
name = "plain"
hosts = ["nofb.test"]
static = { root = "www" }

[[routes]]
name = "assets"
hosts = ["static.test"]
path = { prefix = "/assets" }
strip_prefix = "/assets"
static = { root = "www" }
"#,
    );
    let get = |host: &str, path: &str, extra: &[&str]| req(&g, host, path, extra);

    // The index file at /, and in a subdirectory.
    let r = get("static.test", "/", &[]);
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.body, INDEX);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let r = get("nofb.test", "/sub/", &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "<p>sub index</p>\n"));

    // strip_prefix applies to files too.
    let r = get("static.test", "/assets/style.css", &[]);
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.body, "body { color: red }\n");
    assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
    let r = get("static.test", "/assets", &[]);
    assert_eq!((r.status, r.body.as_str()), (200, INDEX), "{r:#?}");
    let r = get("static.test", "/assets/missing.css", &[]);
    assert_eq!(r.status, 404, "no fallback on this route: {r:#?}");

    // Content types by extension.
    for (path, ct, body) in [
        (
            "/style.css",
            "text/css; charset=utf-8",
            "body { color: red }\n",
        ),
        (
            "/app.js",
            "text/javascript; charset=utf-8",
            "console.log('hi');\n",
        ),
        ("/page.html", "text/html; charset=utf-8", "<p>page</p>\n"),
        ("/data.txt", "text/plain; charset=utf-8", DATA),
    ] {
        let r = get("nofb.test", path, &[]);
        assert_eq!(r.status, 200, "{path}: {r:#?}");
        assert_eq!(r.header("content-type"), Some(ct), "{path}: {r:#?}");
        assert_eq!(r.body, body, "{path}");
    }

    // ETag and If-None-Match.
    let r = get("nofb.test", "/style.css", &[]);
    let etag = r.header("etag").expect("an ETag").to_owned();
    let last_modified = r.header("last-modified").expect("Last-Modified").to_owned();
    let inm = format!("If-None-Match: {etag}");
    let r = get("nofb.test", "/style.css", &["-H", &inm]);
    assert_eq!(r.status, 304, "{r:#?}");
    assert_eq!(r.body, "");
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = get(
        "nofb.test",
        "/style.css",
        &["-H", "If-None-Match: \"other\""],
    );
    assert_eq!(r.status, 200, "{r:#?}");
    // Last-Modified and If-Modified-Since.
    let ims = format!("If-Modified-Since: {last_modified}");
    let r = get("nofb.test", "/style.css", &["-H", &ims]);
    assert_eq!(r.status, 304, "{r:#?}");
    assert_eq!(r.body, "");
    let r = get(
        "nofb.test",
        "/style.css",
        &["-H", "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT"],
    );
    assert_eq!(r.status, 200, "{r:#?}");

    // Ranges.
    let r = get("nofb.test", "/data.txt", &["-H", "Range: bytes=0-4"]);
    assert_eq!(r.status, 206, "{r:#?}");
    assert_eq!(r.header("content-range"), Some("bytes 0-4/16"), "{r:#?}");
    assert_eq!(r.header("content-length"), Some("5"), "{r:#?}");
    assert_eq!(r.body, "01234");
    let r = get("nofb.test", "/data.txt", &["-H", "Range: bytes=-3"]);
    assert_eq!((r.status, r.body.as_str()), (206, "def"), "{r:#?}");
    let r = get("nofb.test", "/data.txt", &["-H", "Range: bytes=100-"]);
    assert_eq!(r.status, 416, "{r:#?}");
    assert_eq!(r.header("content-range"), Some("bytes */16"), "{r:#?}");

    // HEAD: the headers, no body.
    let r = get("nofb.test", "/data.txt", &["-I"]);
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.header("content-length"), Some("16"), "{r:#?}");
    assert_eq!(r.body, "", "{r:#?}");

    // Single-page application fallback; without a fallback, 404.
    let r = get("static.test", "/some/deep/route", &[]);
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.body, INDEX);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let r = get("nofb.test", "/some/deep/route", &[]);
    assert_eq!(r.status, 404, "{r:#?}");

    // Path traversal: dot segments are resolved before routing (so these
    // stay inside the root: the fallback, or 404 without one); an encoded
    // slash is refused with 400. Never the secret.
    for host in ["static.test", "nofb.test"] {
        for path in [
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E/secret.txt",
            "/a/%2e%2e/%2e%2e/secret.txt",
            "/..%2fsecret.txt",
            "/a/../../secret.txt",
            "/assets/../secret.txt",
            "/assets/%2e%2e/secret.txt",
        ] {
            let r = get(host, path, &["--path-as-is"]);
            assert!(!r.body.contains(SECRET), "{host}{path} leaked: {r:#?}");
            let expected = match (path.contains("%2f"), host) {
                (true, _) => 400,
                (false, "static.test") => 200,
                (false, _) => 404,
            };
            assert_eq!(r.status, expected, "{host}{path}: {r:#?}");
            if expected == 200 {
                assert_eq!(r.body, INDEX, "{host}{path}");
            }
        }
    }

    // A symlink inside the root that leads outside: treated as missing, so
    // the fallback with it, 404 without.
    for path in [
        "/link-out.txt",
        "/link-dir/secret.txt",
        "/link-dir/www/../secret.txt",
    ] {
        let r = get("static.test", path, &["--path-as-is"]);
        assert!(!r.body.contains(SECRET), "{path} leaked: {r:#?}");
        if !path.contains("..") {
            assert_eq!(r.status, 200, "{path}: {r:#?}");
            assert_eq!(r.body, INDEX, "{path}");
        }
        let r = get("nofb.test", path, &["--path-as-is"]);
        assert!(!r.body.contains(SECRET), "{path} leaked: {r:#?}");
        if !path.contains("..") {
            assert_eq!(r.status, 404, "{path}: {r:#?}");
        }
    }
    // A symlink that stays inside the root is served.
    let r = get("nofb.test", "/link-in.txt", &[]);
    assert_eq!((r.status, r.body.as_str()), (200, DATA), "{r:#?}");

    // Only GET and HEAD.
    for method in ["POST", "PUT", "DELETE"] {
        let r = get("static.test", "/index.html", &["-X", method, "-d", "x=1"]);
        assert_eq!(r.status, 405, "{method}: {r:#?}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{r:#?}");
    }
}

#[test]
fn error_pages_replace_errors() {
    let b = Backend::start("err");
    let dir = TempDir::new();
    const PAGE_5XX: &str = "<h1>gangway: something broke</h1>\n";
    const PAGE_404: &str = "<h1>gangway: nothing here</h1>\n";
    std::fs::write(dir.join("50x.html"), PAGE_5XX).unwrap();
    std::fs::create_dir_all(dir.join("pages")).unwrap();
    std::fs::write(dir.join("pages/404.html"), PAGE_404).unwrap();
    // Nobody listens there: connections are refused.
    let refusing = gangway_testkit::RefusedPort::new();
    let dead = refusing.port;
    let g = start_config(
        &dir,
        &format!(
            r#"
[[pools]]
name = "dead"
targets = ["127.0.0.1:{dead}"]

[[pools]]
name = "b"
targets = ["{t}"]

[[routes]]
name = "dead"
hosts = ["dead.test"]
pool = "dead"

[[routes]]
name = "intercept"
hosts = ["icpt.test"]
pool = "b"
intercept_errors = true

[[routes]]
name = "pass"
hosts = ["pass.test"]
pool = "b"

[[error_pages]]
status = [502, "5xx"]
file = "50x.html"

[[error_pages]]
status = [404]
file = "pages/404.html"
content_type = "text/html"
"#,
            t = b.target()
        ),
    );

    // The backend refuses the connection: 502 with the 5xx page.
    let r = req(&g, "dead.test", "/", &[]);
    assert_eq!(r.status, 502, "{r:#?}");
    assert_eq!(r.body, PAGE_5XX);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));

    // No route: 404 with the 404 page.
    let r = req(&g, "unknown.test", "/", &[]);
    assert_eq!(r.status, 404, "{r:#?}");
    assert_eq!(r.body, PAGE_404);
    assert_eq!(r.header("content-type"), Some("text/html"));

    // intercept_errors: the backend's error answers get the page for their
    // status, with the status kept.
    let r = req(&g, "icpt.test", "/status/500", &[]);
    assert_eq!(r.status, 500, "{r:#?}");
    assert_eq!(r.body, PAGE_5XX);
    let r = req(&g, "icpt.test", "/status/503", &[]);
    assert_eq!((r.status, r.body.as_str()), (503, PAGE_5XX), "{r:#?}");
    let r = req(&g, "icpt.test", "/status/404", &[]);
    assert_eq!((r.status, r.body.as_str()), (404, PAGE_404), "{r:#?}");
    // No page for 418: the backend's own answer passes.
    let r = req(&g, "icpt.test", "/status/418", &[]);
    assert_eq!(r.status, 418, "{r:#?}");
    assert_eq!(r.json()["uri"], "/status/418");
    // Successes are not touched.
    let r = req(&g, "icpt.test", "/ok", &[]);
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.json()["uri"], "/ok");

    // Without intercept_errors the backend's body passes.
    let r = req(&g, "pass.test", "/status/500", &[]);
    assert_eq!(r.status, 500, "{r:#?}");
    assert!(!r.body.contains("something broke"), "{r:#?}");
    assert_eq!(r.json()["name"], "err");
    assert_eq!(r.json()["uri"], "/status/500");
    assert_eq!(r.header("x-backend"), Some("err"));
}

#[test]
fn respond_and_statistics_actions() {
    let b = Backend::start("stats");
    let dir = TempDir::new();
    let g = start_config(
        &dir,
        &format!(
            r#"
[[pools]]
name = "b"
targets = ["{t}"]

[[routes]]
name = "ping"
path = {{ exact = "/ping" }}
respond = {{ body = "pong\n" }}

[[routes]]
name = "teapot"
hosts = ["tea.test"]
respond = {{ status = 418, body = "short and stout", content_type = "text/x-tea" }}

[[routes]]
name = "statistics"
hosts = ["root.localhost"]
path = {{ exact = "/statistics" }}
methods = ["GET"]
statistics = true

[[routes]]
name = "fwd"
hosts = ["fwd.test"]
pool = "b"
"#,
            t = b.target()
        ),
    );

    // respond: on any host, default status and content type.
    for host in ["a.test", "x.test", "localhost"] {
        let r = req(&g, host, "/ping", &[]);
        assert_eq!(r.status, 200, "{host}: {r:#?}");
        assert_eq!(r.body, "pong\n");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    }
    // A route for the exact host comes before one for any host.
    let r = req(&g, "tea.test", "/ping", &[]);
    assert_eq!(r.status, 418, "{r:#?}");
    let r = req(&g, "tea.test", "/", &[]);
    assert_eq!(r.status, 418, "{r:#?}");
    assert_eq!(r.body, "short and stout");
    assert_eq!(r.header("content-type"), Some("text/x-tea"));

    let stats = || {
        let r = req(&g, "root.localhost", "/statistics", &[]);
        assert_eq!(r.status, 200, "{r:#?}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        r.json()
    };
    let route = |v: &serde_json::Value, name: &str| -> serde_json::Value {
        v["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no route {name} in {v:#}"))
            .clone()
    };
    let target = |v: &serde_json::Value| -> serde_json::Value {
        let pool = v["pools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "file/b")
            .unwrap_or_else(|| panic!("no pool file/b in {v:#}"))
            .clone();
        pool["targets"][0].clone()
    };
    let n = |v: &serde_json::Value, key: &str| v[key].as_u64().unwrap();

    let before = stats();
    for name in ["file/ping", "file/teapot", "file/statistics", "file/fwd"] {
        route(&before, name);
    }
    assert_eq!(target(&before)["addr"], b.target());

    for _ in 0..3 {
        assert_eq!(req(&g, "x.test", "/ping", &[]).status, 200);
    }
    assert_eq!(req(&g, "tea.test", "/", &[]).status, 418);
    assert_eq!(req(&g, "fwd.test", "/", &[]).status, 200);
    assert_eq!(req(&g, "fwd.test", "/status/503", &[]).status, 503);
    // The statistics route only answers GET.
    assert_eq!(
        req(&g, "root.localhost", "/statistics", &["-X", "POST"]).status,
        404
    );

    let after = stats();
    let (p0, p1) = (route(&before, "file/ping"), route(&after, "file/ping"));
    assert_eq!(n(&p1, "requests"), n(&p0, "requests") + 3, "{after:#}");
    assert_eq!(n(&p1, "status_2xx"), n(&p0, "status_2xx") + 3, "{after:#}");
    let (t0, t1) = (route(&before, "file/teapot"), route(&after, "file/teapot"));
    assert_eq!(n(&t1, "requests"), n(&t0, "requests") + 1, "{after:#}");
    assert_eq!(n(&t1, "status_4xx"), n(&t0, "status_4xx") + 1, "{after:#}");
    let (f0, f1) = (route(&before, "file/fwd"), route(&after, "file/fwd"));
    assert_eq!(n(&f1, "requests"), n(&f0, "requests") + 2, "{after:#}");
    assert_eq!(n(&f1, "status_2xx"), n(&f0, "status_2xx") + 1, "{after:#}");
    assert_eq!(n(&f1, "status_5xx"), n(&f0, "status_5xx") + 1, "{after:#}");
    let (s0, s1) = (
        route(&before, "file/statistics"),
        route(&after, "file/statistics"),
    );
    assert!(n(&s1, "requests") > n(&s0, "requests"), "{after:#}");
    let (tg0, tg1) = (target(&before), target(&after));
    assert_eq!(n(&tg1, "requests"), n(&tg0, "requests") + 2, "{after:#}");
    assert_eq!(n(&tg1, "failures"), n(&tg0, "failures"), "{after:#}");
}

#[test]
fn matching_by_method_header_query_wildcard_host_and_priority() {
    let dir = TempDir::new();
    let g = start_config(
        &dir,
        r#"
[[routes]]
name = "method-post"
hosts = ["m.test"]
path = { exact = "/m" }
methods = ["POST", "put"]
respond = { body = "post-or-put" }

[[routes]]
name = "method-any"
hosts = ["m.test"]
path = { exact = "/m" }
respond = { body = "any-method" }

[[routes]]
name = "hdr-exact"
hosts = ["m.test"]
path = { exact = "/h" }
headers = [{ name = "X-Env", exact = "beta" }]
respond = { body = "beta" }

[[routes]]
name = "hdr-regex"
hosts = ["m.test"]
path = { exact = "/ua" }
headers = [{ name = "User-Agent", regex = "(?i)mobile" }]
respond = { body = "mobile" }

[[routes]]
name = "hdr-present"
hosts = ["m.test"]
path = { exact = "/p" }
headers = [{ name = "X-Debug" }]
respond = { body = "debug" }

[[routes]]
name = "hdr-none"
hosts = ["m.test"]
path = { prefix = "/" }
respond = { body = "fallthrough" }

[[routes]]
name = "query-exact"
hosts = ["m.test"]
path = { exact = "/q" }
query = [{ name = "v", exact = "2" }]
respond = { body = "v2" }

[[routes]]
name = "query-regex"
hosts = ["m.test"]
path = { exact = "/q" }
query = [{ name = "id", regex = "^[0-9]+$" }]
respond = { body = "numeric-id" }

[[routes]]
name = "wild"
hosts = ["*.wild.test"]
respond = { body = "wildcard" }

[[routes]]
name = "wild-eu"
hosts = ["*.eu.wild.test"]
respond = { body = "wildcard-eu" }

[[routes]]
name = "wild-exact"
hosts = ["a.wild.test"]
respond = { body = "exact-host" }

[[routes]]
name = "low"
hosts = ["prio.test"]
path = { exact = "/p/x" }
respond = { body = "low" }

[[routes]]
name = "high"
hosts = ["prio.test"]
methods = ["GET"]
priority = 10
respond = { body = "high" }

[[routes]]
name = "negative"
hosts = ["prio.test"]
path = { exact = "/neg" }
priority = -5
respond = { body = "negative" }

[[routes]]
name = "order-exact"
hosts = ["order.test"]
path = { exact = "/a/b" }
respond = { body = "exact" }

[[routes]]
name = "order-regex"
hosts = ["order.test"]
path = { regex = "^/a/[a-z]+$" }
respond = { body = "regex" }

[[routes]]
name = "order-long"
hosts = ["order.test"]
path = { prefix = "/a/b" }
respond = { body = "long-prefix" }

[[routes]]
name = "order-short"
hosts = ["order.test"]
path = { prefix = "/a" }
respond = { body = "short-prefix" }
"#,
    );
    let body = |host: &str, path: &str, extra: &[&str]| -> String {
        let r = req(&g, host, path, extra);
        if r.status == 200 {
            r.body
        } else {
            format!("status {}", r.status)
        }
    };

    // Method.
    assert_eq!(body("m.test", "/m", &["-X", "POST"]), "post-or-put");
    assert_eq!(body("m.test", "/m", &["-X", "PUT"]), "post-or-put");
    assert_eq!(body("m.test", "/m", &[]), "any-method");
    assert_eq!(body("m.test", "/m", &["-X", "DELETE"]), "any-method");

    // Header exact, regex, present; header names without regard to case.
    assert_eq!(body("m.test", "/h", &["-H", "X-Env: beta"]), "beta");
    assert_eq!(body("m.test", "/h", &["-H", "x-env: beta"]), "beta");
    assert_eq!(body("m.test", "/h", &["-H", "X-Env: Beta"]), "fallthrough");
    assert_eq!(body("m.test", "/h", &["-H", "X-Env: beta2"]), "fallthrough");
    assert_eq!(body("m.test", "/h", &[]), "fallthrough");
    assert_eq!(
        body("m.test", "/ua", &["-A", "Some MOBILE browser"]),
        "mobile"
    );
    assert_eq!(body("m.test", "/ua", &["-A", "desktop"]), "fallthrough");
    assert_eq!(body("m.test", "/p", &["-H", "X-Debug: 1"]), "debug");
    assert_eq!(body("m.test", "/p", &[]), "fallthrough");

    // Query parameters (percent-decoding applied).
    assert_eq!(body("m.test", "/q?v=2", &[]), "v2");
    assert_eq!(body("m.test", "/q?a=1&v=%32", &[]), "v2");
    assert_eq!(body("m.test", "/q?v=3", &[]), "fallthrough");
    assert_eq!(body("m.test", "/q?id=123", &[]), "numeric-id");
    assert_eq!(body("m.test", "/q?id=12a", &[]), "fallthrough");
    assert_eq!(body("m.test", "/q", &[]), "fallthrough");

    // Wildcard hosts: any depth, not the bare domain; exact and longer
    // wildcards first; case, port and a trailing dot ignored.
    assert_eq!(body("b.wild.test", "/", &[]), "wildcard");
    assert_eq!(body("x.y.wild.test", "/", &[]), "wildcard");
    assert_eq!(body("B.Wild.Test:8080", "/", &[]), "wildcard");
    assert_eq!(body("b.wild.test.", "/", &[]), "wildcard");
    assert_eq!(body("a.wild.test", "/", &[]), "exact-host");
    assert_eq!(body("A.WILD.TEST:80", "/", &[]), "exact-host");
    assert_eq!(body("x.eu.wild.test", "/", &[]), "wildcard-eu");
    assert_eq!(body("wild.test", "/", &[]), "status 404");
    assert_eq!(body("awild.test", "/", &[]), "status 404");

    // Priority beats specificity; a route that does not match lets a lower
    // one win.
    assert_eq!(body("prio.test", "/p/x", &[]), "high");
    assert_eq!(body("prio.test", "/p/x", &["-X", "POST"]), "low");
    assert_eq!(body("prio.test", "/neg", &[]), "high");
    assert_eq!(body("prio.test", "/neg", &["-X", "POST"]), "negative");
    assert_eq!(body("prio.test", "/other", &["-X", "POST"]), "status 404");

    // Exact, then regex, then the longest prefix.
    assert_eq!(body("order.test", "/a/b", &[]), "exact");
    assert_eq!(body("order.test", "/a/c", &[]), "regex");
    assert_eq!(body("order.test", "/a/b/c", &[]), "long-prefix");
    assert_eq!(body("order.test", "/a/1", &[]), "short-prefix");
    assert_eq!(body("order.test", "/a", &[]), "short-prefix");
    assert_eq!(body("order.test", "/ab", &[]), "status 404");

    // No route: gangway's own short 404 (no error page configured).
    let r = req(&g, "nothing.test", "/", &[]);
    assert_eq!(r.status, 404, "{r:#?}");
    assert_eq!(r.body, "no service is configured for this host\n");
}

/// A configuration with one `respond` route per name, on `reload.test`.
fn reload_config(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| {
            format!(
                "[[routes]]\nname = \"{n}\"\nhosts = [\"reload.test\"]\npath = {{ exact = \"/{n}\" }}\nrespond = {{ body = \"{n}\" }}\n\n"
            )
        })
        .collect()
}

#[test]
fn reload_applies_valid_files_and_keeps_the_last_good_one() {
    let dir = TempDir::new();
    let file = dir.join("gangway.toml");
    write_atomic(&file, &reload_config(&["one"]));
    let mut g = start_with(&file);
    let pid = g.pid();
    let body = |path: &str| {
        let r = req(&g, "reload.test", path, &[]);
        if r.status == 200 {
            r.body
        } else {
            format!("status {}", r.status)
        }
    };
    let loaded = |g: &Gangway| g.messages("config file loaded").len();
    assert_eq!(body("/one"), "one");
    assert_eq!(body("/two"), "status 404");
    assert_eq!(loaded(&g), 1, "{}", g.output());

    // Written beside and renamed over.
    write_atomic(&file, &reload_config(&["one", "two"]));
    assert!(
        wait_until(WAIT, || body("/two") == "two"),
        "renamed file not applied:\n{}",
        g.output()
    );
    assert!(
        wait_until(WAIT, || loaded(&g) >= 2),
        "no \"config file loaded\" line:\n{}",
        g.output()
    );
    assert_eq!(body("/one"), "one");

    // Overwritten in place.
    std::fs::write(&file, reload_config(&["one", "two", "three"])).unwrap();
    assert!(
        wait_until(WAIT, || body("/three") == "three"
            && body("/one") == "one"
            && body("/two") == "two"),
        "overwritten file not applied:\n{}",
        g.output()
    );
    let loaded_before_bad = loaded(&g);

    // An invalid file: an unknown key on a known line.
    let mut bad = reload_config(&["one", "two", "three", "four"]);
    bad.push_str("[[routes]]\nname = \"five\"\nhots = [\"reload.test\"]\nrespond = {}\n");
    let bad_line = line_of(&bad, "hots = [\"reload.test\"]");
    write_atomic(&file, &bad);
    let file_str = file.to_string_lossy().into_owned();
    let rejected = g
        .wait_for_message(
            "config file rejected; keeping the last good configuration",
            |_| true,
            WAIT,
        )
        .unwrap_or_else(|| panic!("the invalid file was not reported:\n{}", g.output()));
    assert_eq!(rejected["file"], file_str.as_str(), "{rejected}");
    assert_eq!(rejected["line"], bad_line, "{rejected}");
    assert_eq!(rejected["column"], 1, "{rejected}");
    assert!(
        rejected["problem"]
            .as_str()
            .unwrap_or_default()
            .contains("hots"),
        "{rejected}"
    );
    // The last good routes stay; the new one is not served.
    assert_eq!(body("/one"), "one");
    assert_eq!(body("/two"), "two");
    assert_eq!(body("/three"), "three");
    assert_eq!(body("/four"), "status 404");
    assert_eq!(loaded(&g), loaded_before_bad, "{}", g.output());

    // A semantic error (a pool that does not exist) points at its route.
    let mut bad = reload_config(&["one"]);
    bad.push_str("[[routes]]\nname = \"nopool\"\npool = \"missing\"\n");
    let bad_line = line_of(&bad, "name = \"nopool\"") - 1;
    write_atomic(&file, &bad);
    let rejected = g
        .wait_for_message(
            "config file rejected; keeping the last good configuration",
            |v| {
                v["problem"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("missing")
            },
            WAIT,
        )
        .unwrap_or_else(|| panic!("the invalid file was not reported:\n{}", g.output()));
    assert_eq!(rejected["file"], file_str.as_str(), "{rejected}");
    assert_eq!(rejected["line"], bad_line, "{rejected}");
    assert_eq!(rejected["column"], 1, "{rejected}");
    assert_eq!(body("/two"), "two");
    assert_eq!(body("/three"), "three");

    // A valid file again is applied.
    write_atomic(&file, &reload_config(&["one", "five"]));
    assert!(
        wait_until(WAIT, || body("/five") == "five"),
        "valid file after an invalid one not applied:\n{}",
        g.output()
    );
    assert!(
        wait_until(WAIT, || body("/two") == "status 404"),
        "{}",
        g.output()
    );
    assert_eq!(body("/one"), "one");
    assert!(loaded(&g) > loaded_before_bad, "{}", g.output());

    // All without a restart.
    assert_eq!(g.pid(), pid);
    assert!(g.try_exit().is_none(), "gangway exited:\n{}", g.output());
}

#[test]
fn an_invalid_file_stops_start_up_with_exit_code_2() {
    let dir = TempDir::new();
    let file = dir.join("gangway.toml");
    let text = "[[routes]]\nname = \"a\"\nrespond = { body = \"x\" }\n\n[[routes]]\nname = \"b\"\npath = { regex = \"^/(x\" }\nrespond = { body = \"y\" }\n";
    write_atomic(&file, text);
    let builder = GangwayBuilder::new(GANGWAY)
        .network(NO_NETWORK)
        .env("GANGWAY_CONFIG", file.to_string_lossy());
    let http_port = builder.http_port();
    let mut g = builder.spawn();
    let status = g
        .wait_exit(WAIT)
        .unwrap_or_else(|| panic!("gangway did not exit:\n{}", g.output()));
    assert_eq!(status.code(), Some(2), "{}", g.output());
    let stderr = g.stderr_lines().join("\n");
    assert!(stderr.contains("GANGWAY_CONFIG"), "{stderr}");
    let at = format!(
        "{}:{}:1: error:",
        file.display(),
        line_of(text, "name = \"b\"") - 1
    );
    assert!(stderr.contains(&at), "no {at:?} in:\n{stderr}");
    assert!(stderr.contains("regex"), "{stderr}");
    // Nothing was listening.
    let r = curl([format!("http://127.0.0.1:{http_port}/")]);
    assert_eq!(r.exit_code, 7, "{r:#?}");

    // A syntax error: its own line and column.
    let text = "[[routes]]\nname = \"a\"\nrespond = { body = \"x\" }\npriority = = 3\n";
    write_atomic(&file, text);
    let mut g = GangwayBuilder::new(GANGWAY)
        .network(NO_NETWORK)
        .env("GANGWAY_CONFIG", file.to_string_lossy())
        .spawn();
    let status = g
        .wait_exit(WAIT)
        .unwrap_or_else(|| panic!("gangway did not exit:\n{}", g.output()));
    assert_eq!(status.code(), Some(2), "{}", g.output());
    let stderr = g.stderr_lines().join("\n");
    assert!(stderr.contains("GANGWAY_CONFIG"), "{stderr}");
    let at = format!("{}:4:", file.display());
    assert!(stderr.contains(&at), "no {at:?} in:\n{stderr}");

    // A file that does not exist.
    let missing = dir.join("missing.toml");
    let mut g = GangwayBuilder::new(GANGWAY)
        .network(NO_NETWORK)
        .env("GANGWAY_CONFIG", missing.to_string_lossy())
        .spawn();
    let status = g
        .wait_exit(WAIT)
        .unwrap_or_else(|| panic!("gangway did not exit:\n{}", g.output()));
    assert_eq!(status.code(), Some(2), "{}", g.output());
    let stderr = g.stderr_lines().join("\n");
    assert!(stderr.contains("GANGWAY_CONFIG"), "{stderr}");
    assert!(stderr.contains("missing.toml"), "{stderr}");
}

#[test]
fn check_reports_errors_and_warnings_with_positions() {
    let dir = TempDir::new();
    std::fs::write(dir.join("50x.html"), "down").unwrap();

    // A good file.
    let good = dir.join("good.toml");
    write_atomic(
        &good,
        r#"
[[pools]]
name = "api"
targets = ["127.0.0.1:9", "[::1]:9"]

[[routes]]
name = "api"
hosts = ["example.com"]
path = { prefix = "/api" }
strip_prefix = "/api"
pool = "api"

[[routes]]
name = "site"
hosts = ["example.com"]
static = { root = "www", fallback = "/index.html" }

[[error_pages]]
status = [500, "5xx"]
file = "50x.html"
"#,
    );
    let good_str = good.to_string_lossy().into_owned();
    let out = run_gangway(&["check", &good_str]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("ok"), "{stdout}");
    assert!(stdout.contains("2 route(s)"), "{stdout}");
    assert!(!stderr.contains("error"), "{stderr}");

    // An unknown key.
    let typo = dir.join("typo.toml");
    let text = "[[routes]]\nname = \"a\"\nrespond = { body = \"x\" }\nhots = [\"a.test\"]\n";
    write_atomic(&typo, text);
    let typo_str = typo.to_string_lossy().into_owned();
    let out = run_gangway(&["check", &typo_str]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let at = format!("{typo_str}:4:1: error: ");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(&at) && l.contains("hots")),
        "no {at:?} line about hots in:\n{stderr}"
    );

    // Several errors, each on its own line with its route's position.
    let bad = dir.join("bad.toml");
    let text = r#"[[pools]]
name = "p"
targets = ["127.0.0.1:9"]

[[routes]]
name = "regex"
path = { regex = "^/(?P<x>[a-z+$" }
pool = "p"

[[routes]]
name = "nopool"
hosts = ["a.test"]
pool = "apis"

[[routes]]
name = "dup"
hosts = ["b.test"]
respond = { body = "1" }

[[routes]]
name = "dup"
hosts = ["c.test"]
respond = { body = "2" }
"#;
    write_atomic(&bad, text);
    let bad_str = bad.to_string_lossy().into_owned();
    let out = run_gangway(&["check", &bad_str]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let route_line = |n: usize| nth_line_of(text, "[[routes]]", n);
    for (line, needle) in [
        (route_line(1), "path regex"),
        (route_line(2), "pool \"apis\" does not exist"),
        (route_line(4), "two routes have this name"),
    ] {
        let at = format!("{bad_str}:{line}:1: error: ");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&at) && l.contains(needle)),
            "no {at:?} line with {needle:?} in:\n{stderr}"
        );
    }
    assert!(
        stderr.contains("3 error(s)") && stderr.contains("cannot be used"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A shadowed route: a warning, still exit 0.
    let shadow = dir.join("shadow.toml");
    let text = "[[routes]]\nname = \"catch-all\"\npriority = 10\nrespond = { body = \"all\" }\n\n[[routes]]\nname = \"blog\"\nhosts = [\"blog.test\"]\nrespond = { body = \"blog\" }\n";
    write_atomic(&shadow, text);
    let shadow_str = shadow.to_string_lossy().into_owned();
    let out = run_gangway(&["check", &shadow_str]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let at = format!("{shadow_str}:6:1: warning: route \"blog\": it can never match");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(&at) && l.contains("catch-all")),
        "no {at:?} in:\n{stderr}"
    );
    assert!(
        stdout.contains("ok") && stdout.contains("1 warning(s)"),
        "{stdout}"
    );

    // A file that cannot be read.
    let missing = dir.join("missing.toml");
    let out = run_gangway(&["check", &missing.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

#[test]
fn explain_names_the_route_and_why_others_were_rejected() {
    let b = Backend::start("explained");
    let dir = TempDir::new();
    let g = start_config(
        &dir,
        &format!(
            r#"
[[pools]]
name = "b"
targets = ["{t}"]

[[routes]]
name = "api"
hosts = ["app.test"]
path = {{ prefix = "/api" }}
pool = "b"

[[routes]]
name = "admin"
hosts = ["app.test"]
path = {{ prefix = "/admin" }}
methods = ["POST"]
respond = {{ body = "admin" }}

[[routes]]
name = "beta"
hosts = ["app.test"]
path = {{ exact = "/beta" }}
headers = [{{ name = "X-Env", exact = "beta" }}]
respond = {{ body = "beta" }}

[[routes]]
name = "old"
hosts = ["app.test"]
path = {{ regex = '^/old/(?P<page>[a-z]+)$' }}
redirect = {{ to = "https://$host/new/${{page}}", status = 301 }}

[[routes]]
name = "other"
hosts = ["other.test"]
respond = {{ body = "other" }}
"#,
            t = b.target()
        ),
    );
    let addr = format!("127.0.0.1:{}", g.control_port);
    let explain = |args: &[&str]| -> (i32, String, String) {
        let mut all = vec!["explain", "--control-plane-addr", addr.as_str()];
        all.extend_from_slice(args);
        let out = run_gangway(&all);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let candidate = |v: &serde_json::Value, name: &str| -> serde_json::Value {
        v["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["route"] == name)
            .unwrap_or_else(|| panic!("no candidate {name} in {v:#}"))
            .clone()
    };

    // Human output: the route, the pool and target, and every rejection.
    let (code, out, err) = explain(&["--host", "app.test", "--path", "/api/users"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("route:  file/api"), "{out}");
    assert!(out.contains("action: forward to pool file/b"), "{out}");
    assert!(out.contains("pool:   file/b"), "{out}");
    assert!(out.contains(&format!("target: {}", b.target())), "{out}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name} in:\n{out}"))
            .to_owned()
    };
    assert!(line("file/api").ends_with("chosen"), "{out}");
    assert!(
        line("file/admin").contains("rejected by method: wanted one of POST"),
        "{out}"
    );
    assert!(
        line("file/beta").contains("rejected by path: wanted exactly /beta"),
        "{out}"
    );
    assert!(
        line("file/old").contains("rejected by path: wanted regex"),
        "{out}"
    );
    assert!(
        line("file/other").contains("rejected by host: wanted one of other.test"),
        "{out}"
    );

    // Captures, and a header condition.
    let (code, out, err) = explain(&["--host", "app.test", "--path", "/old/page"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("route:  file/old"), "{out}");
    assert!(
        out.contains("action: redirect 301 to https://$host/new/${page}"),
        "{out}"
    );
    assert!(out.contains("captures: 1=page page=page"), "{out}");
    let (_, out, _) = explain(&["--host", "app.test", "--path", "/beta"]);
    assert!(out.contains("route:  none (404)"), "{out}");
    assert!(
        out.contains("rejected by header x-env: wanted exactly \"beta\""),
        "{out}"
    );
    let (_, out, _) = explain(&[
        "--host",
        "App.Test:8080",
        "--path",
        "/beta",
        "--header",
        "X-Env: beta",
    ]);
    assert!(out.contains("route:  file/beta"), "{out}");
    assert!(out.contains("host as routed: app.test"), "{out}");
    let (_, out, _) = explain(&[
        "--host", "app.test", "--path", "/admin/x", "--method", "POST",
    ]);
    assert!(out.contains("route:  file/admin"), "{out}");

    // --json.
    let (code, out, err) = explain(&["--host", "app.test", "--path", "/old/abc?x=1", "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["route"], "file/old");
    assert_eq!(v["host"], "app.test");
    assert_eq!(
        v["captures"],
        serde_json::json!([["1", "abc"], ["page", "abc"]])
    );
    assert_eq!(candidate(&v, "file/old")["outcome"], "chosen");
    assert_eq!(candidate(&v, "file/api")["rejected_by"], "path");
    assert_eq!(candidate(&v, "file/api")["wanted"], "prefix /api");
    assert_eq!(candidate(&v, "file/other")["rejected_by"], "host");
    assert!(v["snapshot"].as_u64().is_some(), "{v:#}");

    // The same from the admin listener.
    let r = g.admin_get("/api/v1/explain?host=app.test&path=/api/users&method=GET");
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["route"], "file/api");
    assert_eq!(v["pool"], "file/b");
    assert_eq!(v["target"]["addr"], b.target());
    assert_eq!(v["captures"], serde_json::json!([]));
    assert_eq!(candidate(&v, "file/api")["outcome"], "chosen");
    assert_eq!(candidate(&v, "file/admin")["rejected_by"], "method");
    assert_eq!(candidate(&v, "file/admin")["wanted"], "one of POST");
    assert_eq!(candidate(&v, "file/beta")["rejected_by"], "path");
    assert_eq!(candidate(&v, "file/other")["rejected_by"], "host");
    assert_eq!(candidate(&v, "file/other")["wanted"], "one of other.test");
    let r = g.admin_get("/api/v1/explain?host=app.test&path=/beta&header=X-Env:%20gamma");
    let v = r.json();
    assert_eq!(v["route"], serde_json::Value::Null, "{v:#}");
    assert_eq!(candidate(&v, "file/beta")["rejected_by"], "header x-env");
    let r = g.admin_get("/api/v1/explain?host=app.test&path=/beta&header=X-Env:%20beta");
    assert_eq!(r.json()["route"], "file/beta");
    let r = g.admin_get("/api/v1/explain?host=app.test&path=/admin&method=post");
    assert_eq!(r.json()["route"], "file/admin");

    // explain does not send anything: the backend got no request, and the
    // real request goes where explain said.
    let real = req(&g, "app.test", "/api/users", &[]);
    assert_eq!(real.json()["uri"], "/api/users");
    assert_eq!(real.header("x-backend"), Some("explained"));

    // Bad parameters: 400 with a problem document.
    for query in [
        "path=/x",
        "host=app.test&method=BAD%20METHOD",
        "host=app.test&header=no-colon",
        "host=app.test&port=abc",
        "host=app.test&path=relative",
        "host=app.test&color=blue",
    ] {
        let r = g.admin_get(&format!("/api/v1/explain?{query}"));
        assert_eq!(r.status, 400, "{query}: {r:#?}");
        assert_eq!(
            r.header("content-type"),
            Some("application/problem+json"),
            "{query}: {r:#?}"
        );
        let v = r.json();
        assert_eq!(v["status"], 400, "{query}: {v:#}");
        assert!(
            !v["title"].as_str().unwrap_or_default().is_empty(),
            "{query}: {v:#}"
        );
    }
    // The command reports the refusal and exits 1.
    let (code, _, err) = explain(&["--host", "app.test", "--path", "relative"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the path must start with /"), "{err}");
}
