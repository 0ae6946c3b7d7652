//! The configuration file: any UTF-8 text → `parse_file` (TOML, conversion
//! to the model, validation). Checked besides "no panic":
//! - every problem has a line and column inside the text (1-based; the
//!   column may be one past the line's last character, where an
//!   unexpected end of line or file is reported) and a message;
//! - errors come before warnings, and `is_valid` ⇔ no error;
//! - a file judged valid compiles into a routing table without a single
//!   route left out: validation promises what compilation needs.

#![no_main]

use gangway_model::{parse_file, Severity, Snapshot};
use gangway_router::RouteTable;
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_file(text, Path::new("/etc/gangway"), &mut |p| {
        if p.ends_with("50x.html") {
            Ok("<h1>down</h1>".into())
        } else {
            Err("No such file or directory".into())
        }
    });

    let lines: Vec<&str> = text.split('\n').collect();
    for p in &parsed.problems {
        assert!(
            (1..=lines.len()).contains(&p.line),
            "line {} of {}: {p}",
            p.line,
            lines.len()
        );
        let width = lines[p.line - 1].chars().count();
        assert!(
            (1..=width + 1).contains(&p.column),
            "column {} of a line of {width}: {p}",
            p.column
        );
        assert!(!p.message.trim().is_empty(), "{p}");
        assert!(p
            .to_string()
            .starts_with(&format!("{}:{}: ", p.line, p.column)));
    }
    let first_warning = parsed
        .problems
        .iter()
        .position(|p| p.severity == Severity::Warning)
        .unwrap_or(parsed.problems.len());
    assert!(
        parsed.problems[first_warning..]
            .iter()
            .all(|p| p.severity == Severity::Warning),
        "errors first: {:#?}",
        parsed.problems
    );
    assert_eq!(
        parsed.is_valid(),
        !parsed
            .problems
            .iter()
            .any(|p| p.severity == Severity::Error)
    );

    if parsed.is_valid() {
        let snapshot = Arc::new(Snapshot::build(1, "fuzz", &[parsed.fragment]));
        let (table, errors) = RouteTable::compile(snapshot, &RouteTable::default());
        assert!(
            errors.is_empty(),
            "a valid file has routes that do not compile: {errors:#?}\n{text}"
        );
        assert_eq!(table.routes().len(), table.snapshot().routes.len());
    }
});
