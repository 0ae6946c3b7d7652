//! The small value parsers of the model: `parse_duration` (`250ms`, `90s`,
//! `15m`, `1h`) and `parse_status_range` (`200-399`, `204`).
//!
//! Checked besides "no panic":
//! - `parse_duration` agrees with an independent reference parser on every
//!   input (same value, or both refuse), and what it returns reads back
//!   the same when written in milliseconds;
//! - a number and a unit built from the input parse to exactly
//!   number × unit, or are refused only when that overflows u64 ms;
//! - `parse_status_range` returns `100 <= low <= high <= 599` only, which
//!   reads back the same as `low-high`; a built `low-high` is accepted
//!   exactly when it is such a range.

#![no_main]

use arbitrary::Arbitrary;
use gangway_model::{parse_duration, parse_status_range};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

#[derive(Debug, Arbitrary)]
enum Input<'a> {
    Duration(&'a str),
    BuiltDuration {
        n: u64,
        unit: u8,
        left: bool,
        right: bool,
    },
    Status(&'a str),
    BuiltRange {
        low: u16,
        high: u16,
        spaces: bool,
    },
}

const UNITS: [(&str, u64); 4] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)];

/// Written from the documentation, not from the code.
fn reference_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = t.split_at(digits);
    let n: u64 = number.parse().ok()?;
    let (_, factor) = UNITS.iter().find(|(u, _)| *u == unit)?;
    n.checked_mul(*factor).map(Duration::from_millis)
}

fn check_duration(text: &str) {
    let got = parse_duration(text);
    assert_eq!(
        got.clone().ok(),
        reference_duration(text),
        "{text:?}: {got:?}"
    );
    if let Ok(d) = got {
        let millis = format!("{}ms", d.as_millis());
        assert_eq!(parse_duration(&millis), Ok(d), "{text:?} → {millis}");
    }
}

fn check_status(text: &str) {
    if let Ok((low, high)) = parse_status_range(text) {
        assert!(100 <= low && low <= high && high <= 599, "{text:?}");
        assert_eq!(
            parse_status_range(&format!("{low}-{high}")),
            Ok((low, high))
        );
        if low == high {
            assert_eq!(parse_status_range(&low.to_string()), Ok((low, high)));
        }
    }
}

fuzz_target!(|input: Input<'_>| match input {
    Input::Duration(text) => check_duration(text),
    Input::BuiltDuration {
        n,
        unit,
        left,
        right,
    } => {
        let (name, factor) = UNITS[usize::from(unit) % UNITS.len()];
        let text = format!(
            "{}{n}{name}{}",
            if left { " \t" } else { "" },
            if right { "\n " } else { "" }
        );
        let got = parse_duration(&text);
        match n.checked_mul(factor) {
            Some(ms) => assert_eq!(got, Ok(Duration::from_millis(ms)), "{text:?}"),
            None => assert!(got.is_err(), "{text:?}: {got:?}"),
        }
        check_duration(&text);
    }
    Input::Status(text) => check_status(text),
    Input::BuiltRange { low, high, spaces } => {
        let text = if spaces {
            format!(" {low} - {high} ")
        } else {
            format!("{low}-{high}")
        };
        let ok = 100 <= low && low <= high && high <= 599;
        assert_eq!(parse_status_range(&text).is_ok(), ok, "{text:?}");
        check_status(&text);
    }
});
