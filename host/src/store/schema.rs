//! The database's schema and its migrations. `PRAGMA user_version` is the schema version:
//! 0 is a new file; each migration moves it up by one inside a transaction, so a crash
//! mid-migration leaves the old version. A version above [`VERSION`] was written by a newer
//! build and is refused, never downgraded.

use std::path::Path;

use rusqlite::{Connection, ErrorCode};

use super::StoreError;

/// The schema version this build writes.
pub const VERSION: i64 = 1;

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: [&str; VERSION as usize] = [
    // 1: the outbox's journal and the rules' timer state. Instants are RFC 3339 text (read
    // them with `sqlite3`), except `enqueued_at_ms`, which the age limit compares.
    "CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        rule_id INTEGER NOT NULL,
        trigger_ref TEXT NOT NULL,
        scheduled_at TEXT NOT NULL,
        enqueued_at_ms INTEGER NOT NULL,
        payload TEXT NOT NULL,
        -- 1: accepted while the outbox's memory was full, so held on disk only.
        spilled INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE rule_state (
        rule_id INTEGER PRIMARY KEY,
        trigger_ref TEXT NOT NULL,
        spec TEXT NOT NULL,
        started_at TEXT NOT NULL,
        last_tick TEXT,
        execution_count INTEGER NOT NULL,
        saved_at_ms INTEGER NOT NULL
    );
    -- 'clean_stop': '1' once a run closed the store gracefully, '0' while one runs.
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );",
];

/// Checks the file is a sound database of a version this build knows, then brings its
/// schema up to [`VERSION`].
pub fn check_and_migrate(conn: &Connection, file: &Path) -> Result<(), StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        file: file.to_path_buf(),
        detail,
    };
    let classify = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => corrupt(e.to_string()),
        _ => StoreError::Open {
            file: file.to_path_buf(),
            source: e,
        },
    };
    // The first read of the file: a file that is not a database fails here.
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(classify)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(corrupt(format!("cannot use a WAL journal (got {mode})")));
    }
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(classify)?;
    if check != "ok" {
        return Err(corrupt(format!("integrity check: {check}")));
    }
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(classify)?;
    if found > VERSION {
        return Err(StoreError::NewerSchema {
            file: file.to_path_buf(),
            found,
            supported: VERSION,
        });
    }
    if found < 0 {
        return Err(corrupt(format!("schema version {found}")));
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let next = version as i64 + 1;
        let migrate = || -> rusqlite::Result<()> {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", next)?;
            tx.commit()
        };
        migrate().map_err(classify)?;
        tracing::info!(
            file = %file.display(),
            schema_version = next,
            "State store schema migrated to version {next}"
        );
    }
    Ok(())
}
