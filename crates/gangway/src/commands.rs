//! The one-shot commands: `gangway check FILE` and `gangway explain`.

use crate::admin::{admin_get, form_encode};
use crate::config_file;
use crate::settings::ExplainArgs;
use gangway_model::Severity;
use std::path::Path;
use std::process::ExitCode;

/// Prints a file's problems, compiler style; exit 1 if there are errors.
pub fn check(file: &Path) -> ExitCode {
    let parsed = match config_file::load(file) {
        Ok((_, parsed)) => parsed,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    for p in &parsed.problems {
        eprintln!("{}", config_file::render(file, p));
    }
    let errors = parsed
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    let warnings = parsed.problems.len() - errors;
    if errors > 0 {
        eprintln!(
            "{}: {errors} error(s), {warnings} warning(s); the file cannot be used",
            file.display()
        );
        return ExitCode::FAILURE;
    }
    println!(
        "{}: ok: {} route(s), {} pool(s), {} error page(s), {warnings} warning(s)",
        file.display(),
        parsed.fragment.routes.len(),
        parsed.fragment.pools.len(),
        parsed.fragment.error_pages.len(),
    );
    ExitCode::SUCCESS
}

/// Asks a running gangway how it would route a request and prints why.
pub fn explain(args: &ExplainArgs) -> ExitCode {
    let mut query = format!(
        "/api/v1/explain?host={}&path={}&method={}",
        form_encode(&args.host),
        form_encode(&args.path),
        form_encode(&args.method)
    );
    for header in &args.headers {
        query.push_str("&header=");
        query.push_str(&form_encode(header));
    }
    if let Some(port) = args.port {
        query.push_str(&format!("&port={port}"));
    }
    if args.websocket {
        query.push_str("&websocket=true");
    }
    let (status, body) = match admin_get(&args.control_plane_addr, &query) {
        Ok(answer) => answer,
        Err(error) => {
            eprintln!(
                "cannot ask gangway at {} (CONTROL_PLANE_ADDR): {error}",
                args.control_plane_addr
            );
            return ExitCode::FAILURE;
        }
    };
    let value: serde_json::Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(_) => {
            eprintln!("gangway answered {status} with something that is not JSON:\n{body}");
            return ExitCode::FAILURE;
        }
    };
    if status != 200 {
        eprintln!(
            "gangway refused the question: {} ({})",
            value["title"].as_str().unwrap_or("error"),
            value["detail"].as_str().unwrap_or_default()
        );
        return ExitCode::FAILURE;
    }
    if args.json {
        println!("{body}");
        return ExitCode::SUCCESS;
    }
    print!("{}", describe(&value));
    ExitCode::SUCCESS
}

/// The explanation for people.
fn describe(v: &serde_json::Value) -> String {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let mut out = String::new();
    match v["route"].as_str() {
        Some(route) => {
            out.push_str(&format!("route:  {route}\naction: {}\n", s(&v["action"])));
            if let Some(pool) = v["pool"].as_str() {
                out.push_str(&format!("pool:   {pool}\n"));
                match v["target"].as_object() {
                    Some(t) => out.push_str(&format!(
                        "target: {} ({})\n",
                        t.get("addr").map(s).unwrap_or_default(),
                        t.get("name").map(s).unwrap_or_default()
                    )),
                    None => out.push_str("target: none (the pool is empty: 503)\n"),
                }
            }
        }
        None => out.push_str("route:  none (404)\n"),
    }
    if let Some(captures) = v["captures"].as_array().filter(|c| !c.is_empty()) {
        out.push_str("captures:");
        for c in captures {
            out.push_str(&format!(" {}={}", s(&c[0]), s(&c[1])));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "host as routed: {}  (snapshot {})\n",
        s(&v["host"]),
        v["snapshot"]
    ));
    out.push_str("candidates, in the order they are tried:\n");
    for c in v["candidates"].as_array().into_iter().flatten() {
        let why = match c["outcome"].as_str() {
            Some("rejected") => format!(
                "rejected by {}: wanted {}",
                s(&c["rejected_by"]),
                s(&c["wanted"])
            ),
            Some("matched") => "matches too, but an earlier route won".to_owned(),
            other => other.unwrap_or_default().to_owned(),
        };
        out.push_str(&format!(
            "  {:<32} priority {:<4} {why}\n",
            s(&c["route"]),
            c["priority"]
        ));
    }
    out
}
