//! JSON log lines (`LOG_FORMAT=json`), written straight into the line
//! buffer.
//!
//! The same lines as tracing-subscriber's JSON format (`timestamp`,
//! `level`, the event's fields in order, `target`), made without its
//! detour through serde: there every field went through `core::fmt` into
//! serde's string escaping byte by byte, and an access line (one per
//! request) cost about 28,000 instructions, as much as proxying the
//! request itself (`INSTR_LOGS=1 bench/instructions.sh`). Here text that
//! needs no escaping is copied whole, numbers are written as numbers, and
//! the timestamp's date and time of day are formatted once a second.
//! Access lines skip the event's field-by-field visit too: the proxy hands
//! [`JsonAccessLines`] their fields, whose names and order are known ahead
//! (about 3,200 instructions a line; 6,200 through the visit).

use crate::log_output::BatchedStdout;
use gangway_proxy::access_log::{AccessLine, AccessLog};
use std::cell::RefCell;
use std::fmt::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats events as one JSON object per line.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        with_line(|line| {
            write_line(line, event);
            writer.write_str(line)
        })
    }
}

/// Access lines as [`JsonLines`] writes the `request` event, made straight
/// from their fields, into the batched output.
pub struct JsonAccessLines(pub BatchedStdout);

impl AccessLog for JsonAccessLines {
    fn write(&self, access: &AccessLine<'_>) {
        with_line(|line| {
            write_access_line(line, access, SystemTime::now());
            self.0.write_batched(line.as_bytes());
        })
    }
}

/// Runs `make` with an empty line to write into.
fn with_line<T>(make: impl FnOnce(&mut String) -> T) -> T {
    thread_local! {
        /// The line being made, its room kept from line to line.
        static LINE: RefCell<String> = const { RefCell::new(String::new()) };
    }
    LINE.with(|kept| {
        // A fresh line for an event logged while a field of another
        // was formatted (the kept one is in use then).
        let mut fresh = String::new();
        let mut kept = kept.try_borrow_mut();
        let line = match &mut kept {
            Ok(kept) => {
                kept.clear();
                &mut **kept
            }
            Err(_) => &mut fresh,
        };
        make(line)
    })
}

fn write_line(line: &mut String, event: &Event<'_>) {
    let meta = event.metadata();
    line.push_str("{\"timestamp\":\"");
    write_timestamp(line, SystemTime::now());
    line.push_str("\",\"level\":\"");
    line.push_str(meta.level().as_str());
    line.push('"');
    event.record(&mut Fields(line));
    line.push_str(",\"target\":");
    push_string(line, meta.target());
    line.push_str("}\n");
}

/// The line [`write_line`] makes of [`AccessLine::trace`]'s event, with
/// its keys known ahead: 1,900 instructions instead of 4,400.
fn write_access_line(line: &mut String, access: &AccessLine<'_>, now: SystemTime) {
    line.push_str("{\"timestamp\":\"");
    write_timestamp(line, now);
    line.push_str("\",\"level\":\"INFO\",\"message\":\"request\",\"client\":");
    push_string(line, access.client);
    line.push_str(",\"method\":");
    push_string(line, access.method);
    line.push_str(",\"host\":");
    push_string(line, access.host);
    line.push_str(",\"path\":");
    push_string(line, access.path);
    line.push_str(",\"request_id\":");
    push_string(line, access.request_id);
    line.push_str(",\"status\":");
    line.push_str(itoa::Buffer::new().format(access.status));
    line.push_str(",\"bytes\":");
    line.push_str(itoa::Buffer::new().format(access.bytes));
    line.push_str(",\"duration_ms\":");
    push_f64(line, access.duration_ms);
    if let Some(upstream) = access.upstream {
        line.push_str(",\"upstream\":");
        push_string(line, upstream);
    }
    if let Some(container) = access.container {
        line.push_str(",\"container\":");
        push_string(line, container);
    }
    line.push_str(",\"target\":\"access\"}\n");
}

/// Writes an event's fields as `,"name":value` pairs.
struct Fields<'a>(&'a mut String);

impl Fields<'_> {
    fn key(&mut self, field: &Field) -> &mut String {
        let name = field.name();
        // Room for the name and its four marks at once: one capacity
        // check instead of one per piece.
        self.0.reserve(name.len() + 4);
        self.0.push_str(",\"");
        push_escaped(self.0, name);
        self.0.push_str("\":");
        self.0
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        push_string(self.key(field), value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let out = self.key(field);
        out.push('"');
        // A `Debug` that fails leaves what it wrote.
        let _ = write!(Escaped(out), "{value:?}");
        out.push('"');
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field).push_str(itoa::Buffer::new().format(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field).push_str(itoa::Buffer::new().format(value));
    }

    // 128-bit integers go to `record_debug`: a string, as serde makes them.

    fn record_f64(&mut self, field: &Field, value: f64) {
        push_f64(self.key(field), value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field)
            .push_str(if value { "true" } else { "false" });
    }
}

/// `value` as a JSON number.
fn push_f64(out: &mut String, value: f64) {
    // JSON has no NaN or infinity; serde writes them as null too.
    let mut number = zmij::Buffer::new();
    out.push_str(match value.is_finite() {
        true => number.format_finite(value),
        false => "null",
    });
}

/// `text` as a JSON string.
fn push_string(out: &mut String, text: &str) {
    out.push('"');
    push_escaped(out, text);
    out.push('"');
}

/// `text` escaped for a JSON string (RFC 8259 §7).
fn push_escaped(out: &mut String, text: &str) {
    // Most log text needs no escaping: checked first, then copied whole.
    if is_plain(text.as_bytes()) {
        out.push_str(text);
        return;
    }
    let mut clean = 0;
    for (i, b) in text.bytes().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        // Cut before an ASCII byte: always on a character boundary.
        out.push_str(&text[clean..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        clean = i + 1;
    }
    out.push_str(&text[clean..]);
}

/// Whether no byte of `text` needs escaping, eight bytes at a time
/// instead of byte by byte (`INSTR_LOGS=1 bench/instructions.sh`: 33,750
/// -> 33,341 instructions a request when access lines went through the
/// field visit).
fn is_plain(text: &[u8]) -> bool {
    let mut chunks = text.chunks_exact(8);
    let mut special = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        special |= special_bytes(u64::from_le_bytes(word));
    }
    // The rest padded with a byte that needs no escaping.
    let mut last = [b'a'; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    special |= special_bytes(u64::from_le_bytes(last));
    special == 0
}

/// Not zero when a byte of `word` is below 0x20, a quote or a backslash.
/// Subtracting a bound from every byte at once sets the high bit of each
/// byte below it; a borrow can set it in other bytes too, but only above
/// one that was below, so the word's answer is right. Bytes of 0x80 and
/// above (parts of longer UTF-8 characters) are masked out by `!w`. A
/// quote or backslash is found as a zero byte (below 1) after an XOR.
/// ("Bit Twiddling Hacks": "Determine if a word has a byte less than n".)
fn special_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = ONES * 0x80;
    let below = |w: u64, bound: u8| w.wrapping_sub(ONES * u64::from(bound)) & !w & HIGH_BITS;
    below(word, 0x20)
        | below(word ^ (ONES * u64::from(b'"')), 1)
        | below(word ^ (ONES * u64::from(b'\\')), 1)
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Escapes what a `Debug` or `Display` writes.
struct Escaped<'a>(&'a mut String);

impl Write for Escaped<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        push_escaped(self.0, text);
        Ok(())
    }
}

/// Writes `at` as RFC 3339 in UTC with microseconds
/// (`2026-11-25T02:56:52.606224Z`), as tracing-subscriber does.
fn write_timestamp(out: &mut String, at: SystemTime) {
    thread_local! {
        /// The second last formatted on this thread, and its text.
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    // Before 1970 only on a clock gone wrong: written as 1970.
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|second| {
        let mut second = second.borrow_mut();
        if second.0 != secs {
            let text = &mut second.1;
            text.clear();
            write_date_time(text, secs);
            second.0 = secs;
        }
        out.push_str(&second.1);
    });
    let mut fraction = *b".000000Z";
    let mut micros = since.subsec_micros();
    for digit in fraction[1..7].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    // Only ASCII digits went in.
    out.push_str(std::str::from_utf8(&fraction).unwrap_or(".000000Z"));
}

/// `YYYY-MM-DDTHH:MM:SS` of `secs` after the Unix epoch.
fn write_date_time(out: &mut String, secs: u64) {
    let days = secs / 86_400;
    let (year, month, day) = civil_date(days);
    let of_day = secs % 86_400;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    );
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for days on or after the epoch).
fn civil_date(days: u64) -> (u64, u64, u64) {
    // Counted from 0000-03-01, so that the leap day ends a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tracing_subscriber::fmt::time::FormatTime;
    use tracing_subscriber::fmt::MakeWriter;

    /// Lines written, for a subscriber under test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// The events every comparison logs: each kind of field, text that
    /// needs escaping, and an access line as the proxy writes it.
    fn log_events() {
        let address: std::net::SocketAddr = "10.0.0.7:8080".parse().unwrap();
        tracing::info!(
            target: "access",
            client = "192.0.2.1",
            method = "GET",
            path = "/a \"quoted\" \\ path\twith\ncontrols \u{1} and ünïcødé",
            status = 200u64,
            bytes = 0u64,
            duration_ms = 1.25f64,
            upstream = %address,
            container = Option::<&str>::None,
            "request"
        );
        tracing::warn!(
            retry_in_ms = 100,
            negative = -3i64,
            flag = true,
            ratio = f64::NAN,
            error = %"Socket not found: \"/tmp/none.sock\"",
            debugged = ?vec![1, 2],
            "docker unavailable; serving the last known routes and retrying"
        );
        tracing::error!(big = u128::MAX, "message with {} arguments", 2);
    }

    fn lines_of<S: Subscriber + Send + Sync>(subscriber: S, captured: &Captured) -> Vec<String> {
        tracing::subscriber::with_default(subscriber, log_events);
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// A line as a JSON object without its timestamp, and its keys in the
    /// order they appear.
    fn parsed(line: &str) -> (serde_json::Value, Vec<String>) {
        let mut value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
        let object = value.as_object_mut().unwrap();
        object.remove("timestamp").expect("a timestamp");
        let mut keys: Vec<String> = object.keys().cloned().collect();
        keys.sort_by_key(|key| line.find(&format!("\"{key}\":")));
        (value, keys)
    }

    #[test]
    fn lines_say_what_tracing_subscribers_json_lines_say() {
        let ours = Captured::default();
        let theirs = Captured::default();
        let our_lines = lines_of(
            tracing_subscriber::fmt()
                .with_writer(ours.clone())
                .event_format(JsonLines)
                .finish(),
            &ours,
        );
        let their_lines = lines_of(
            tracing_subscriber::fmt()
                .with_writer(theirs.clone())
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .finish(),
            &theirs,
        );
        assert_eq!(our_lines.len(), 3, "{our_lines:#?}");
        assert_eq!(their_lines.len(), 3, "{their_lines:#?}");
        for (ours, theirs) in our_lines.iter().zip(&their_lines) {
            assert_eq!(parsed(ours), parsed(theirs), "\n{ours}\n{theirs}");
        }
        // Spot checks of what the comparison rests on.
        let (access, _) = parsed(&our_lines[0]);
        assert_eq!(
            access["path"],
            "/a \"quoted\" \\ path\twith\ncontrols \u{1} and ünïcødé"
        );
        assert_eq!(access["upstream"], "10.0.0.7:8080");
        assert_eq!(access["duration_ms"], 1.25);
        assert_eq!(access["target"], "access");
        let (warning, _) = parsed(&our_lines[1]);
        assert_eq!(warning["ratio"], serde_json::Value::Null);
        assert_eq!(warning["level"], "WARN");
    }

    #[test]
    fn access_lines_say_what_the_request_event_says() {
        let lines = [
            AccessLine {
                client: "192.0.2.1",
                method: "GET",
                host: "app.test",
                path: "/a \"quoted\" \\ path\twith\ncontrols \u{1} and ünïcødé",
                request_id: "7d3c0a1e5b9f4a2c8e6d1b0f3a5c7e9d",
                status: 200,
                bytes: 1_048_576,
                duration_ms: 0.052587999999999996,
                upstream: Some("10.0.0.7:8080"),
                container: Some("web-1"),
            },
            AccessLine {
                client: "2001:db8::1",
                method: "POST",
                host: "none.test",
                path: "/",
                request_id: "id",
                status: 404,
                bytes: 0,
                duration_ms: 12.0,
                upstream: None,
                container: None,
            },
        ];
        let theirs = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(theirs.clone())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, || lines.iter().for_each(AccessLine::trace));
        let their_lines = String::from_utf8(theirs.0.lock().unwrap().clone()).unwrap();
        let their_lines: Vec<&str> = their_lines.lines().collect();
        assert_eq!(their_lines.len(), lines.len());
        for (access, theirs) in lines.iter().zip(their_lines) {
            let mut ours = String::new();
            write_access_line(&mut ours, access, SystemTime::now());
            assert!(ours.ends_with('\n'), "{ours}");
            let (ours, theirs) = (ours.trim_end(), theirs.trim_end());
            assert_eq!(parsed(ours), parsed(theirs), "\n{ours}\n{theirs}");
            // Byte for byte after the timestamp.
            let after = r#"{"timestamp":"2026-11-25T02:56:52.606224Z""#.len();
            assert_eq!(ours[after..], theirs[after..]);
        }
    }

    #[test]
    fn every_byte_is_escaped_wherever_it_stands_in_a_word() {
        let escaped = |text: &str| {
            let mut out = String::new();
            push_string(&mut out, text);
            out
        };
        // Every place in whole eight-byte words and in the padded rest.
        let words: [&[u8]; 2] = [
            b"abcdefghijklmnopqrstuvwxyz",
            b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH",
        ];
        for (word, byte) in words
            .into_iter()
            .flat_map(|w| (0u8..0x80).chain([0xc3]).map(move |b| (w, b)))
        {
            for at in 0..word.len() {
                let mut text: Vec<u8> = word.to_vec();
                let replaced = if byte == 0xc3 { "\u{e9}" } else { "" };
                let text = if replaced.is_empty() {
                    text[at] = byte;
                    String::from_utf8(text).unwrap()
                } else {
                    let mut s = String::from_utf8(text).unwrap();
                    s.insert_str(at, replaced);
                    s
                };
                let out = escaped(&text);
                let back: String = serde_json::from_str(&out)
                    .unwrap_or_else(|error| panic!("{error}: {out:?} for {text:?}"));
                assert_eq!(back, text, "{out:?}");
                if !needs_escape(byte) {
                    assert_eq!(out, format!("\"{text}\""), "copied as it is");
                }
            }
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let at = |secs: u64, micros: u64| {
            let mut text = String::new();
            let time = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros);
            write_timestamp(&mut text, time);
            text
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 999_999), "2000-02-29T00:00:00.999999Z");
        assert_eq!(at(951_868_799, 7), "2000-02-29T23:59:59.000007Z");
        assert_eq!(at(951_868_800, 7), "2000-03-01T00:00:00.000007Z");
        assert_eq!(at(1_795_574_212, 606_224), "2026-11-25T02:36:52.606224Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
        // The second's text is cached per thread: a later second on the
        // same thread is formatted anew, an earlier one too.
        assert_eq!(at(86_399, 1), "1970-01-01T23:59:59.000001Z");
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn dates_agree_with_tracing_subscribers_clock() {
        // Theirs reads the clock itself: compared to the second, tried
        // again if a second turned in between.
        for _ in 0..5 {
            let now = SystemTime::now();
            let mut theirs = String::new();
            tracing_subscriber::fmt::time::SystemTime
                .format_time(&mut Writer::new(&mut theirs))
                .unwrap();
            let mut ours = String::new();
            write_timestamp(&mut ours, now);
            if ours[..19] == theirs[..19] {
                assert_eq!(ours.len(), theirs.len(), "{ours} {theirs}");
                return;
            }
        }
        panic!("the date and time of day differ from tracing-subscriber's");
    }

    #[test]
    fn every_day_of_four_centuries_follows_the_one_before() {
        let mut previous = civil_date(0);
        assert_eq!(previous, (1970, 1, 1));
        for days in 1..146_097 {
            let (y, m, d) = civil_date(days);
            let (py, pm, pd) = previous;
            let next_day = (y, m, d) == (py, pm, pd + 1);
            let next_month = (y, m, d) == (py, pm + 1, 1) && pd >= 28;
            let next_year = (y, m, d) == (py + 1, 1, 1) && (pm, pd) == (12, 31);
            assert!(
                next_day || next_month || next_year,
                "{previous:?} -> {:?}",
                (y, m, d)
            );
            let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
            if m == 2 && d == 29 {
                assert!(leap, "{y}-02-29");
            }
            previous = (y, m, d);
        }
    }
}
