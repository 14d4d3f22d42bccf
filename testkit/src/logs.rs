//! [`LogCapture`]: the daemon's own log subscriber (`attune_timer::app::logging`) writing
//! into a buffer, read back as JSON lines.

use std::sync::{Arc, Mutex};

use serde_json::Value;

/// Captures the daemon's log output (its own JSON subscriber) in memory for the current
/// thread (tests run on a current-thread runtime; the outbox and the renewal loop carry the
/// subscriber into their tasks).
#[derive(Clone, Default)]
pub struct LogCapture {
    buf: Arc<Mutex<Vec<u8>>>,
}

pub struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = CaptureWriter;
    fn make_writer(&'a self) -> CaptureWriter {
        CaptureWriter(self.buf.clone())
    }
}

impl LogCapture {
    /// Installs a JSON subscriber at `level` as this thread's default until the guard drops.
    pub fn start(level: &str) -> (LogCapture, tracing::subscriber::DefaultGuard) {
        Self::start_with(level, attune_timer::daemon::config::LogFormat::Json)
    }

    pub fn start_with(
        level: &str,
        format: attune_timer::daemon::config::LogFormat,
    ) -> (LogCapture, tracing::subscriber::DefaultGuard) {
        let capture = LogCapture::default();
        let subscriber =
            attune_timer::app::logging::subscriber(level, format, capture.clone()).unwrap();
        let guard = tracing::subscriber::set_default(subscriber);
        (capture, guard)
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }

    /// The JSON lines written so far.
    pub fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
            })
            .collect()
    }

    /// The JSON lines whose `message` is `message`.
    pub fn with_message(&self, message: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["message"].as_str() == Some(message))
            .collect()
    }

    /// The JSON lines whose `message` starts with `prefix`.
    pub fn with_message_prefix(&self, prefix: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
            .collect()
    }
}
