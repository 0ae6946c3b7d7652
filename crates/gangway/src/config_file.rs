//! The configuration file (`GANGWAY_CONFIG`): loaded at start, then checked
//! every second; a valid change is applied at once, an invalid one is
//! logged with file, line and column and the last good configuration stays.

use crate::listeners::FileListeners;
use crate::routing::{Change, Routes};
use gangway_model::{parse_file, FileProblem, ParsedFile, Severity};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the file is looked at.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Reads and parses a configuration file.
pub fn load(path: &Path) -> Result<(Vec<u8>, ParsedFile), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let parsed = parse(path, &bytes)?;
    Ok((bytes, parsed))
}

fn parse(path: &Path, bytes: &[u8]) -> Result<ParsedFile, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| format!("{} is not UTF-8 text: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    Ok(parse_file(text, base, &mut |page| {
        std::fs::read_to_string(page).map_err(|e| e.to_string())
    }))
}

/// `path:line:column: severity: message`, as compilers print.
pub fn render(path: &Path, problem: &FileProblem) -> String {
    format!("{}:{problem}", path.display())
}

/// Logs the warnings of a file that was accepted.
fn log_warnings(path: &Path, parsed: &ParsedFile) {
    for p in parsed
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Warning)
    {
        tracing::warn!(file = %path.display(), line = p.line, column = p.column, problem = %p.message, "config file warning");
    }
}

/// Starts and stops the file's listeners, then publishes its routes. A
/// listener that cannot start refuses the whole file.
pub async fn apply(
    routes: &Routes,
    listeners: &FileListeners,
    path: &Path,
    parsed: ParsedFile,
    cause: &str,
) -> Result<(), String> {
    listeners.reconcile(&parsed.fragment.listeners).await?;
    log_warnings(path, &parsed);
    tracing::info!(
        file = %path.display(),
        routes = parsed.fragment.routes.len(),
        pools = parsed.fragment.pools.len(),
        error_pages = parsed.fragment.error_pages.len(),
        "config file loaded"
    );
    routes.apply(Change {
        fragment: parsed.fragment,
        cause: cause.to_owned(),
        event_time: Some(SystemTime::now()),
    });
    Ok(())
}

/// Watches the file until the process ends. `last` is the content already
/// applied.
pub async fn watch(
    path: PathBuf,
    mut last: Vec<u8>,
    routes: Arc<Routes>,
    listeners: Arc<FileListeners>,
) {
    let mut missing_reported = false;
    let mut failed: Option<Vec<u8>> = None;
    let mut interval = tokio::time::interval(POLL_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(error) => {
                if !missing_reported {
                    tracing::error!(file = %path.display(), %error, "config file cannot be read; keeping the last good configuration");
                    missing_reported = true;
                }
                continue;
            }
        };
        missing_reported = false;
        if bytes == last {
            continue;
        }
        let parsed = match parse(&path, &bytes) {
            Ok(parsed) => parsed,
            Err(error) => {
                tracing::error!(file = %path.display(), %error, "config file rejected; keeping the last good configuration");
                last = bytes;
                continue;
            }
        };
        if parsed.is_valid() {
            // A listener that cannot start (its port is taken) is retried
            // every second until it can, or the file changes; reported once.
            match apply(&routes, &listeners, &path, parsed, "config file changed").await {
                Ok(()) => {
                    last = bytes;
                    failed = None;
                }
                Err(problem) => {
                    if failed.as_ref() != Some(&bytes) {
                        tracing::error!(file = %path.display(), %problem, "config file rejected; keeping the last good configuration");
                    }
                    failed = Some(bytes);
                }
            }
        } else {
            last = bytes;
            let errors = parsed
                .problems
                .iter()
                .filter(|p| p.severity == Severity::Error);
            for p in errors {
                tracing::error!(file = %path.display(), line = p.line, column = p.column, problem = %p.message, "config file rejected; keeping the last good configuration");
            }
        }
    }
}
