//! Where log lines go: standard output, access lines in batches. An
//! access line (one per request) written straight to standard output
//! costs a system call on the request path; here access lines collect in
//! memory and a background thread writes them out every [`FLUSH_EVERY`],
//! or at once when [`FLUSH_AT`] bytes are waiting, and at exit. Every
//! other line (start-up, warnings, errors: rare, and wanted at once) is
//! written straight away, after the access lines waiting before it, so
//! lines stay whole and in order.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

/// The longest a line waits before it is written.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Bytes waiting that make the next line write them out at once.
const FLUSH_AT: usize = 64 * 1024;

/// Log output to standard output in batches; clone it to share it.
#[derive(Clone)]
pub struct BatchedStdout {
    waiting: Arc<Mutex<Vec<u8>>>,
    /// Held while a batch is written, so that batches go out in order.
    writing: Arc<Mutex<()>>,
}

impl BatchedStdout {
    /// Starts the thread that writes batches out; it runs until the
    /// process exits.
    pub fn start() -> io::Result<BatchedStdout> {
        let out = BatchedStdout {
            waiting: Arc::default(),
            writing: Arc::default(),
        };
        let flusher = out.clone();
        std::thread::Builder::new()
            .name("gangway-log".into())
            .spawn(move || loop {
                std::thread::sleep(FLUSH_EVERY);
                flusher.flush_now();
            })?;
        Ok(out)
    }

    /// Writes out what is waiting.
    pub fn flush_now(&self) {
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(batch) = self.take_batch() else {
            return;
        };
        let mut stdout = io::stdout().lock();
        // Nowhere to report a failed write of the log itself.
        let _ = stdout.write_all(&batch);
        let _ = stdout.flush();
    }

    /// Writes `bytes` (whole lines) with the next batch, or at once with
    /// what is waiting when that is enough to write out.
    pub fn write_batched(&self, bytes: &[u8]) {
        if self.append(bytes) {
            self.flush_now();
        }
    }

    /// Adds to what is waiting; `true` when that is enough to write out.
    fn append(&self, bytes: &[u8]) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        waiting.extend_from_slice(bytes);
        waiting.len() >= FLUSH_AT
    }

    fn take_batch(&self) -> Option<Vec<u8>> {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        (!waiting.is_empty())
            .then(|| std::mem::replace(&mut *waiting, Vec::with_capacity(FLUSH_AT)))
    }
}

/// One log line's writer.
pub struct Line<'a> {
    out: &'a BatchedStdout,
    /// An access line, which may wait for the next batch.
    batched: bool,
}

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if !self.batched {
            let _writing = self
                .out
                .writing
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let mut stdout = io::stdout().lock();
            if let Some(batch) = self.out.take_batch() {
                stdout.write_all(&batch)?;
            }
            stdout.write_all(bytes)?;
            stdout.flush()?;
        } else {
            self.out.write_batched(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedStdout {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            out: self,
            batched: false,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line<'a> {
        Line {
            out: self,
            batched: meta.target() == "access" && *meta.level() == tracing::Level::INFO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unstarted() -> BatchedStdout {
        BatchedStdout {
            waiting: Arc::default(),
            writing: Arc::default(),
        }
    }

    #[test]
    fn lines_wait_in_order_until_taken() {
        let out = unstarted();
        for i in 0..3 {
            assert!(!out.append(format!("line {i}\n").as_bytes()));
        }
        assert_eq!(out.take_batch().unwrap(), b"line 0\nline 1\nline 2\n");
        assert_eq!(out.take_batch(), None);
    }

    #[test]
    fn a_full_batch_asks_to_be_written() {
        let out = unstarted();
        let quarter = vec![b'x'; FLUSH_AT / 4];
        for _ in 0..3 {
            assert!(!out.append(&quarter));
        }
        assert!(out.append(&quarter));
    }
}
