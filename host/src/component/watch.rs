//! What asks for a component swap: SIGHUP, and changes to the component file.
//!
//! The SIGHUP handler is installed when [`Triggers`] is made, so a SIGHUP during startup
//! does not kill the process. The component file's modification time and size are polled
//! every [`POLL_EVERY`]; a change is acted on once the file has stayed the same for one
//! poll (a copy in progress is not loaded half-written).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tracing::{debug, info, warn};

/// How often the component file is looked at.
pub const POLL_EVERY: Duration = Duration::from_secs(2);

/// Why a swap was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Sighup,
    FileChanged,
}

/// The file's identity as far as the watch is concerned; `None` when it cannot be read.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &std::path::Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

#[cfg(unix)]
type Sighup = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Sighup = ();

/// What asks for a swap: SIGHUP, and changes to the component file.
pub struct Triggers {
    sighup: Option<Sighup>,
    file: Option<PathBuf>,
    poll: Duration,
    /// The file as last loaded (or tried).
    loaded: Stamp,
    /// The file at the previous poll.
    seen: Stamp,
}

impl Triggers {
    /// Installs the SIGHUP handler and notes the component file's state now. Call it
    /// early (before loading the component): a change from here on is noticed, and a
    /// SIGHUP no longer kills the process. Needs a tokio runtime.
    pub fn install(file: Option<PathBuf>, poll: Duration) -> Self {
        #[cfg(not(unix))]
        let sighup = None;
        #[cfg(unix)]
        let sighup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(e) => {
                warn!("Cannot install the SIGHUP handler ({e}); the component is swapped only when its file changes");
                None
            }
        };
        let now = file.as_deref().map(stamp).unwrap_or(None);
        Self {
            sighup,
            file,
            poll,
            loaded: now,
            seen: now,
        }
    }

    /// The next reason to swap.
    pub async fn next(&mut self) -> Trigger {
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + self.poll, self.poll);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = recv_sighup(&mut self.sighup) => {
                    info!("SIGHUP received: reloading the timer component");
                    if let Some(path) = &self.file {
                        self.loaded = stamp(path);
                        self.seen = self.loaded;
                    }
                    return Trigger::Sighup;
                }
                _ = ticks.tick(), if self.file.is_some() => {
                    let path = self.file.as_deref().expect("watched file");
                    let now = stamp(path);
                    let stable = now == self.seen;
                    self.seen = now;
                    if now != self.loaded && stable {
                        self.loaded = now;
                        info!(path = %path.display(), "The timer component file changed: reloading it");
                        return Trigger::FileChanged;
                    }
                    if now != self.loaded {
                        debug!(path = %path.display(), "The timer component file is changing; waiting for it to settle");
                    }
                }
            }
        }
    }
}

#[cfg(unix)]
async fn recv_sighup(sighup: &mut Option<Sighup>) {
    match sighup.as_mut() {
        Some(signal) => {
            if signal.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn recv_sighup(_sighup: &mut Option<Sighup>) {
    std::future::pending().await
}
