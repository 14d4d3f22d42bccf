//! The daemon's logs: its production subscriber (JSON), counted, written where asked.
//! Errors that give an event up are counted by the outbox's documented alert message,
//! `Failed to create event` (see the outbox's module docs).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

use attune_timer::daemon::config::LogFormat;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogMode {
    Null,
    File,
    Off,
}

/// What the daemon logged during a scenario.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LogFigures {
    pub lines: u64,
    pub bytes: u64,
    pub errors: u64,
    pub warnings: u64,
    pub failed_to_create_event: u64,
}

#[derive(Default)]
pub struct LogCounters {
    lines: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    warnings: AtomicU64,
    failed_events: AtomicU64,
}

impl LogCounters {
    /// The counts so far; starts counting from zero again.
    pub fn take(&self) -> LogFigures {
        let t = |c: &AtomicU64| c.swap(0, Ordering::Relaxed);
        LogFigures {
            lines: t(&self.lines),
            bytes: t(&self.bytes),
            errors: t(&self.errors),
            warnings: t(&self.warnings),
            failed_to_create_event: t(&self.failed_events),
        }
    }
}

#[derive(Clone)]
struct LogSink {
    counters: Arc<LogCounters>,
    file: Option<Arc<std::fs::File>>,
}

struct LogWriter(LogSink);

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

impl std::io::Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        // This runs on the daemon's threads: keep it cheap. The level is near the start of a
        // JSON line (`{"timestamp":"…","level":"INFO",…`).
        let c = &self.0.counters;
        c.lines.fetch_add(
            data.iter().filter(|b| **b == b'\n').count() as u64,
            Ordering::Relaxed,
        );
        c.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        let head = &data[..data.len().min(96)];
        if contains(head, b"\"level\":\"ERROR\"") {
            c.errors.fetch_add(1, Ordering::Relaxed);
            if contains(data, b"Failed to create event") {
                c.failed_events.fetch_add(1, Ordering::Relaxed);
            }
        } else if contains(head, b"\"level\":\"WARN\"") {
            c.warnings.fetch_add(1, Ordering::Relaxed);
        }
        match &self.0.file {
            // One write(2) per line, as the daemon writes stderr.
            Some(f) => (&**f).write_all(data).map(|()| data.len()),
            None => Ok(data.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        LogWriter(self.clone())
    }
}

pub fn install_logging(mode: LogMode, log_path: &Path) -> Arc<LogCounters> {
    let counters = Arc::new(LogCounters::default());
    let file = match mode {
        LogMode::Off => return counters,
        LogMode::Null => std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .expect("open /dev/null"),
        LogMode::File => std::fs::File::create(log_path).expect("create the log file"),
    };
    let sink = LogSink {
        counters: counters.clone(),
        file: Some(Arc::new(file)),
    };
    let subscriber =
        attune_timer::app::logging::subscriber("info", LogFormat::Json, sink).expect("subscriber");
    tracing::subscriber::set_global_default(subscriber).expect("global subscriber");
    counters
}
