//! The access log: one line per request, written when its response has
//! been sent (or abandoned).
//!
//! Lines go to the `tracing` event `request` (target `access`) unless the
//! program installs an [`AccessLog`] of its own with [`set_access_log`].
//! An event is general: each field passes through `tracing`'s visitor one
//! by one, and the formatter finds out the names, kinds and order as it
//! goes. An access line's fields are always the same, so a writer that
//! knows them ahead writes the line for a fraction of that (gangway's JSON
//! lines: `INSTR_LOGS=1 bench/instructions.sh`). Whether access lines are
//! wanted at all is still `tracing`'s filter's to say (`RUST_LOG`); it is
//! asked once per request, when the request starts.

use std::sync::OnceLock;

/// What one access line says.
#[derive(Debug)]
pub struct AccessLine<'a> {
    /// The client's address (as gangway saw it: forwarding headers are
    /// not read here).
    pub client: &'a str,
    pub method: &'a str,
    pub host: &'a str,
    /// The path without its query string, which often carries tokens.
    pub path: &'a str,
    pub request_id: &'a str,
    pub status: u16,
    /// Body bytes sent to the client.
    pub bytes: u64,
    /// From the request's head to the end of its response.
    pub duration_ms: f64,
    /// The target that answered, when one did.
    pub upstream: Option<&'a str>,
    /// That target's name (its container's, for Docker targets).
    pub container: Option<&'a str>,
}

/// Writes access lines in place of the `tracing` event.
pub trait AccessLog: Send + Sync {
    /// Writes `line`; access lines are known to be wanted when it is called.
    fn write(&self, line: &AccessLine<'_>);
}

/// The writer installed for this process, if any.
static ACCESS_LOG: OnceLock<Box<dyn AccessLog>> = OnceLock::new();

/// Installs `log` as the writer of every access line from now on, once per
/// process, like `tracing`'s global subscriber; `Err` gives `log` back when
/// one was installed before.
pub fn set_access_log(log: Box<dyn AccessLog>) -> Result<(), Box<dyn AccessLog>> {
    ACCESS_LOG.set(log)
}

impl AccessLine<'_> {
    /// Writes the line with the installed writer, or as the `tracing`
    /// event when there is none.
    pub(crate) fn write(&self) {
        match ACCESS_LOG.get() {
            Some(log) => log.write(self),
            None => self.trace(),
        }
    }

    /// The line as a `tracing` event: target `access`, message `request`,
    /// the fields in the order of [`AccessLine`]'s and without the targets'
    /// when none answered. A writer of its own should say the same.
    pub fn trace(&self) {
        tracing::info!(
            target: "access",
            client = self.client,
            method = self.method,
            host = self.host,
            path = self.path,
            request_id = self.request_id,
            status = self.status,
            bytes = self.bytes,
            duration_ms = self.duration_ms,
            upstream = self.upstream,
            container = self.container,
            "request"
        );
    }
}
