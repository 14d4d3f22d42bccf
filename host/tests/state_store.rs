//! The state store's file and directory on a real filesystem: one daemon per directory,
//! a damaged or newer file refused with a clear message and left untouched, an unusable
//! directory a clear error, and what is written read back after a reopen.

use std::collections::HashMap;

use attune_timer::store::{RuleState, Store, StoreError, StoreOptions, DB_FILE};
use chrono::{TimeZone, Utc};

fn open(dir: &std::path::Path) -> Result<Store, StoreError> {
    Store::open(dir, &StoreOptions::default())
}

#[tokio::test]
async fn a_second_daemon_on_one_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path()).unwrap();
    let second = open(dir.path()).unwrap_err();
    assert!(matches!(second, StoreError::Locked { .. }), "{second:?}");
    let message = second.to_string();
    assert!(
        message.contains("is in use by another timer sensor")
            && message.contains(&dir.path().display().to_string())
            && message.contains("ATTUNE_STATE_DIR"),
        "{message}"
    );
    // The lock goes with its holder.
    first.close().await;
    drop(first);
    open(dir.path()).unwrap().close().await;
}

#[tokio::test]
async fn a_damaged_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(DB_FILE);
    let garbage = b"this is not a database, but an operator's file that must survive".repeat(100);
    std::fs::write(&file, &garbage).unwrap();
    let e = open(dir.path()).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    let message = e.to_string();
    assert!(
        message.contains("is damaged") && message.contains("left untouched"),
        "{message}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), garbage, "never wiped");
}

#[tokio::test]
async fn a_store_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path()).unwrap().close().await;
    let file = dir.path().join(DB_FILE);
    {
        let conn = rusqlite::Connection::open(&file).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let before = std::fs::read(&file).unwrap();
    let e = open(dir.path()).unwrap_err();
    assert!(
        matches!(e, StoreError::NewerSchema { found: 99, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("written by a newer version"), "{e}");
    assert_eq!(std::fs::read(&file).unwrap(), before, "left as it was");
}

/// A directory that cannot be created (here inside `/proc`, read-only even for root, where
/// permission bits would not stop a root test) is a clear error naming it.
#[tokio::test]
async fn an_unusable_directory_is_a_clear_error() {
    let dir = std::path::Path::new("/proc/attune-timer-sensor-state");
    let e = open(dir).unwrap_err();
    assert!(matches!(e, StoreError::CreateDir { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("cannot create the state directory /proc/attune-timer-sensor-state"),
        "{e}"
    );
    // A path whose parent is a file.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let e = open(&file.join("state")).unwrap_err();
    assert!(matches!(e, StoreError::CreateDir { .. }), "{e:?}");
}

#[tokio::test]
async fn rule_states_read_back_after_a_reopen_and_retain_forgets_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let t = |s| Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, s).unwrap();
    let state = |id: i64| RuleState {
        rule_id: id,
        trigger_ref: "core.intervaltimer".into(),
        spec: format!(r#"{{"interval_ms":{id}000}}"#),
        started_at: t(1) + chrono::Duration::nanoseconds(123_456_789),
        last_tick: (id % 2 == 0).then(|| t(30)),
        execution_count: id as u64 * 10,
    };
    let store = open(dir.path()).unwrap();
    store.save_rules((1..=4).map(state).collect());
    store.retain_rules(vec![1, 2, 4]);
    assert!(store.flush().await.unwrap());
    store.close().await;
    drop(store);
    let store = open(dir.path()).unwrap();
    let loaded = store.load_rules().await.unwrap();
    let expected: HashMap<i64, RuleState> =
        [1, 2, 4].into_iter().map(|id| (id, state(id))).collect();
    assert_eq!(loaded, expected);
    store.close().await;
}

/// A graceful close is recorded; a store dropped without one (a crash) is reported as an
/// unclean stop at the next open. A new store counts as clean.
#[tokio::test]
async fn the_next_open_knows_whether_the_last_run_stopped_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    assert!(store.previous_run_clean(), "a new store");
    store.close().await;
    drop(store);
    let store = open(dir.path()).unwrap();
    assert!(store.previous_run_clean());
    drop(store); // no close: as after a kill
    let store = open(dir.path()).unwrap();
    assert!(!store.previous_run_clean());
    store.close().await;
}
