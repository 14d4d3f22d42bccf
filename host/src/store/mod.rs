//! The state store: what must outlive the process — events not yet delivered (the outbox's
//! journal) and each rule's timer state — in one SQLite database, `state.db`, in the state
//! directory (docs/durability.md).
//!
//! - One daemon per directory: [`Store::open`] takes an exclusive lock on `<dir>/lock` and
//!   refuses a directory another process holds ([`StoreError::Locked`]).
//! - Crash-safe: WAL journal, `synchronous=FULL` (a commit survives a power cut), written by
//!   one thread in group commits: everything queued since the last commit goes in one
//!   transaction, never an fsync per event, and nobody waits for it (the clock and the
//!   outbox hand their writes over and go on).
//! - Never wiped: a file that is not a database, a failed integrity check, or a schema newer
//!   than this build is refused at open with a clear message; the file is left as it is.
//! - A write that fails (disk full, I/O error, a directory made read-only) is logged loudly
//!   once, the daemon carries on in memory, and the next successful commit says so.
//!
//! May use: `support`. Never: anything above it — the store keeps plain records (ids,
//! refs, instants, JSON text) and knows nothing of rules, clocks or HTTP.

mod schema;
mod writer;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::telemetry::Metrics;
use writer::Op;

/// The database file inside the state directory.
pub const DB_FILE: &str = "state.db";
/// The lock file inside the state directory.
pub const LOCK_FILE: &str = "lock";

/// Why the store cannot be used. Each message names the directory or file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {}: {source}", .dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the state directory {} is in use by another timer sensor (it holds {}); \
         give each daemon its own ATTUNE_STATE_DIR",
        .dir.display(), LOCK_FILE
    )]
    Locked { dir: PathBuf },
    #[error("cannot lock the state directory {}: {source}", .dir.display())]
    Lock {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the state store {} is damaged ({detail}); it was left untouched — move it aside \
         (or restore a backup) to start with an empty store",
        .file.display()
    )]
    Corrupt { file: PathBuf, detail: String },
    #[error(
        "the state store {} was written by a newer version of the timer sensor (schema \
         version {found}; this build knows up to {supported}); run the newer version, or \
         move the file aside",
        .file.display()
    )]
    NewerSchema {
        file: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("cannot open the state store {}: {source}", .file.display())]
    Open {
        file: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the state store is closed")]
    Closed,
    #[error("the state store's opening task failed: {0}")]
    Task(String),
    #[error("state store query failed: {0}")]
    Query(#[source] rusqlite::Error),
}

/// One undelivered event as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// The outbox's id: increasing in the order events were accepted.
    pub id: u64,
    pub rule_id: i64,
    pub trigger_ref: String,
    pub scheduled_at: DateTime<Utc>,
    /// When the outbox accepted it (wall time): the start of its age.
    pub enqueued_at: DateTime<Utc>,
    /// The payload, a JSON object's text.
    pub payload: String,
}

impl StoredEvent {
    /// What it counts for against `ATTUNE_OUTBOX_MAX_BYTES`.
    pub fn bytes(&self) -> u64 {
        (self.payload.len() + self.trigger_ref.len()) as u64
    }
}

/// An event the store dropped to stay within its limits.
#[derive(Debug, Clone, PartialEq)]
pub struct DroppedEvent {
    pub id: u64,
    pub rule_id: i64,
    pub trigger_ref: String,
    pub scheduled_at: DateTime<Utc>,
    pub reason: DropReason,
    /// Journaled as spilled (see [`Store::insert_events`]).
    pub spilled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Older than the outbox's maximum age.
    TooOld,
    /// The journal was over its byte limit; the oldest went first.
    OverSize,
}

/// The journal's size, as last committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalSummary {
    pub events: u64,
    pub bytes: u64,
    /// The highest event id ever stored (0 for none): new ids start above it.
    pub max_id: u64,
    /// When the oldest journaled event was accepted (ids grow with it).
    pub oldest_enqueued_at: Option<DateTime<Utc>>,
}

/// One rule's timer state: enough to continue its schedule after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleState {
    pub rule_id: i64,
    /// The trigger ref and normalized schedule (`spec`) the timer ran: the state applies
    /// only to a rule that validates to the same.
    pub trigger_ref: String,
    pub spec: String,
    /// When its timer started (interval ticks count from it).
    pub started_at: DateTime<Utc>,
    /// The last tick it fired for; `None` before its first fire.
    pub last_tick: Option<DateTime<Utc>>,
    pub execution_count: u64,
}

/// Counters since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub commits: u64,
    pub write_errors: u64,
    /// Whether the last write committed.
    pub writable: bool,
}

/// How the store is opened. Defaults: see each field.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// An upper bound on the database's pages (SQLite's `max_page_count`), so that a test
    /// can fill the "disk" for real. `None` (the default): no bound but the disk's.
    pub max_pages: Option<u32>,
    /// Where commit times and failures are counted. Default: a set of its own.
    pub metrics: Metrics,
}

struct Shared {
    dir: PathBuf,
    /// Whether the run before this one closed the store gracefully.
    previous_clean: bool,
    ops: Mutex<Option<mpsc::Sender<Op>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    writable: AtomicBool,
    commits: AtomicU64,
    write_errors: AtomicU64,
    metrics: Metrics,
    /// Held for the store's life: the directory's lock.
    _lock: File,
}

/// The state store: a handle to its writer thread. Cheap to clone. [`Store::close`] commits
/// what is queued and stops the thread; the last handle dropped does the same.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating it if needed) the store in `dir`: creates the directory, takes its
    /// lock, checks and migrates the database, and starts the writer thread. Blocking: call
    /// it from a blocking thread in async code.
    pub fn open(dir: &Path, opts: &StoreOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let lock = lock_dir(dir)?;
        let file = dir.join(DB_FILE);
        let conn = open_db(&file, opts)?;
        let previous_clean = mark_running(&conn).map_err(|source| StoreError::Open {
            file: file.clone(),
            source,
        })?;
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            previous_clean,
            dir: dir.to_path_buf(),
            ops: Mutex::new(Some(tx)),
            writer: Mutex::new(None),
            writable: AtomicBool::new(true),
            commits: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            metrics: opts.metrics.clone(),
            _lock: lock,
        });
        let weak = Arc::downgrade(&shared);
        // The writer logs where its opener logs.
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        let thread = std::thread::Builder::new()
            .name("state-store".into())
            .spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || writer::run(conn, rx, weak))
            })
            .map_err(|source| StoreError::Lock {
                dir: dir.to_path_buf(),
                source,
            })?;
        *shared.writer.lock().expect("store writer lock") = Some(thread);
        Ok(Store { shared })
    }

    /// [`Store::open`] on a blocking thread (it reads and checks the file), logging what it
    /// found: `State store opened`, and a warning when the previous run did not stop
    /// cleanly.
    pub async fn open_in_background(dir: PathBuf, opts: StoreOptions) -> Result<Store, StoreError> {
        let store = tokio::task::spawn_blocking(move || Store::open(&dir, &opts))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
        tracing::info!(state_dir = %store.dir().display(), "State store opened");
        if !store.previous_run_clean() {
            tracing::warn!(
                state_dir = %store.dir().display(),
                "The previous run did not stop cleanly (a crash, a kill or a power cut): the \
                 fires of its last moments may be missing or may come twice \
                 (docs/durability.md)"
            );
        }
        Ok(store)
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Whether the run before this one stopped gracefully ([`Store::close`]); `false` after
    /// a crash, a kill or a power cut — then the last moments' fires may not all be in the
    /// store (docs/durability.md). A new store counts as clean.
    pub fn previous_run_clean(&self) -> bool {
        self.shared.previous_clean
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            commits: self.shared.commits.load(Ordering::Relaxed),
            write_errors: self.shared.write_errors.load(Ordering::Relaxed),
            writable: self.shared.writable.load(Ordering::Relaxed),
        }
    }

    /// Whether the last write committed.
    pub fn is_writable(&self) -> bool {
        self.shared.writable.load(Ordering::Relaxed)
    }

    fn send(&self, op: Op) -> bool {
        let ops = self.shared.ops.lock().expect("store ops lock");
        match ops.as_ref() {
            Some(tx) => tx.send(op).is_ok(),
            None => false,
        }
    }

    async fn ask<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Op,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        if !self.send(make(tx)) {
            return Err(StoreError::Closed);
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Journals events (committed with the next group). Never blocks. `spilled`: the
    /// events are held on disk only (the outbox's memory is full), for
    /// [`load_events`](Self::load_events) to bring back.
    pub fn insert_events(&self, events: Vec<StoredEvent>, spilled: bool) {
        if !events.is_empty() {
            self.send(Op::Insert { events, spilled });
        }
    }

    /// Removes delivered (or given-up) events from the journal. Never blocks.
    pub fn delete_events(&self, ids: Vec<u64>) {
        if !ids.is_empty() {
            self.send(Op::Delete(ids));
        }
    }

    /// The journal's size, after everything queued before the call.
    pub async fn journal_summary(&self) -> Result<JournalSummary, StoreError> {
        self.ask(Op::Summary).await
    }

    /// Up to `limit` journaled events with ids above `after` that are spilled or have ids up
    /// to `all_up_to` (an earlier run's), oldest first, after everything queued before the
    /// call is committed.
    pub async fn load_events(
        &self,
        after: u64,
        all_up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.ask(|reply| Op::Load {
            after,
            all_up_to,
            limit,
            reply,
        })
        .await
    }

    /// Drops the oldest events while the oldest was enqueued before `older_than` or the
    /// journal holds more than `max_bytes`; returns what it dropped, oldest first.
    pub async fn trim_events(
        &self,
        older_than: DateTime<Utc>,
        max_bytes: u64,
    ) -> Result<Vec<DroppedEvent>, StoreError> {
        self.ask(|reply| Op::Trim {
            older_than,
            max_bytes,
            reply,
        })
        .await
    }

    /// Saves rule states (replacing what was stored for those rules). Never blocks.
    pub fn save_rules(&self, states: Vec<RuleState>) {
        if !states.is_empty() {
            self.send(Op::SaveRules(states));
        }
    }

    /// Forgets the state of rules that are not in `keep`.
    pub fn retain_rules(&self, keep: Vec<i64>) {
        self.send(Op::RetainRules(keep));
    }

    /// Forgets rules' states.
    pub fn delete_rules(&self, ids: Vec<i64>) {
        if !ids.is_empty() {
            self.send(Op::DeleteRules(ids));
        }
    }

    /// Every stored rule state.
    pub async fn load_rules(&self) -> Result<HashMap<i64, RuleState>, StoreError> {
        self.ask(Op::LoadRules).await
    }

    /// Waits until everything queued before the call is committed; `Ok(false)` when that
    /// commit failed (the store is not writable now).
    pub async fn flush(&self) -> Result<bool, StoreError> {
        self.ask(Op::Flush).await
    }

    /// Commits what is queued, records a graceful stop, and stops the writer. Idempotent;
    /// other handles then see [`StoreError::Closed`].
    pub async fn close(&self) {
        self.send(Op::MarkClean);
        let tx = self.shared.ops.lock().expect("store ops lock").take();
        drop(tx);
        let thread = self.shared.writer.lock().expect("store writer lock").take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The writer ends once its channel closes; it holds no strong handle to this.
        if let Some(tx) = self.ops.get_mut().ok().and_then(Option::take) {
            drop(tx);
        }
        if let Some(thread) = self.writer.get_mut().ok().and_then(Option::take) {
            // The writer itself may hold the last handle for a moment: never join oneself.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// Reads whether the last run stopped cleanly and records that one runs now.
fn mark_running(conn: &Connection) -> rusqlite::Result<bool> {
    use rusqlite::OptionalExtension;
    let clean: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'clean_stop'", [], |r| {
            r.get(0)
        })
        .optional()?;
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('clean_stop', '0')
         ON CONFLICT (key) DO UPDATE SET value = '0'",
        [],
    )?;
    Ok(clean.is_none_or(|v| v == "1"))
}

fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StoreError::Lock {
            dir: dir.to_path_buf(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Lock {
            dir: dir.to_path_buf(),
            source,
        }),
    }
}

fn open_db(file: &Path, opts: &StoreOptions) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        file: file.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_err)?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(open_err)?;
    schema::check_and_migrate(&conn, file)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open_err)?;
    if let Some(pages) = opts.max_pages {
        conn.pragma_update(None, "max_page_count", pages)
            .map_err(open_err)?;
    }
    Ok(conn)
}

/// Milliseconds since the epoch, as the journal keeps `enqueued_at`.
fn millis(t: &DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Instants as text (RFC 3339, nanoseconds when there are any): readable with `sqlite3`.
fn text(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn parse_text(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
