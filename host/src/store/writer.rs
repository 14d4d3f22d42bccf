//! The store's one thread: it owns the connection, so writes need no lock, and it commits
//! in groups — everything queued since the last commit goes in one transaction.
//!
//! Within a group, an event journaled and deleted again (delivered before the commit came
//! round) is never written at all: with a healthy API most events never touch the disk.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;
use tracing::{error, info};

use super::{
    from_millis, millis, parse_text, text, DropReason, DroppedEvent, JournalSummary, RuleState,
    Shared, StoreError, StoredEvent,
};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Ops in a group at most, so that a flood still commits now and then.
const MAX_GROUP: usize = 4096;
/// How long a group gathers writes after its first: at most this many commits (and
/// fsyncs) a second. Committing each write as it came cost 3–5 KB of disk writes per fire
/// at 10,000 fires a second (every commit rewrites the pages it touches); a read or a flush
/// ends the window at once (someone waits for it).
pub(super) const COMMIT_WINDOW: Duration = Duration::from_millis(20);

pub(super) enum Op {
    /// Events to journal; `spilled`: held on disk only, for the outbox to load later.
    Insert {
        events: Vec<StoredEvent>,
        spilled: bool,
    },
    Delete(Vec<u64>),
    SaveRules(Vec<RuleState>),
    RetainRules(Vec<i64>),
    DeleteRules(Vec<i64>),
    Summary(Reply<JournalSummary>),
    Load {
        after: u64,
        /// Rows up to this id are loaded whether spilled or not (those of an earlier run).
        all_up_to: u64,
        limit: usize,
        reply: Reply<Vec<StoredEvent>>,
    },
    Trim {
        older_than: DateTime<Utc>,
        max_bytes: u64,
        reply: Reply<Vec<DroppedEvent>>,
    },
    LoadRules(Reply<HashMap<i64, RuleState>>),
    Flush(Reply<bool>),
    /// A graceful stop: the last write.
    MarkClean,
}

impl Op {
    fn is_write(&self) -> bool {
        matches!(
            self,
            Op::Insert { .. }
                | Op::Delete(_)
                | Op::SaveRules(_)
                | Op::RetainRules(_)
                | Op::DeleteRules(_)
                | Op::MarkClean
        )
    }
}

struct Writer {
    conn: Connection,
    shared: Weak<Shared>,
    /// The journal's payload bytes, kept exact through `RETURNING`.
    bytes: u64,
    /// Whether the last commit failed (logged on the change only).
    failing: bool,
}

pub(super) fn run(conn: Connection, rx: mpsc::Receiver<Op>, shared: Weak<Shared>) {
    let bytes = conn
        .query_row(
            "SELECT coalesce(sum(length(payload) + length(trigger_ref)), 0) FROM outbox",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap_or(0) as u64;
    let mut w = Writer {
        conn,
        shared,
        bytes,
        failing: false,
    };
    let mut writes = Vec::new();
    while let Ok(first) = rx.recv() {
        let window = Instant::now() + COMMIT_WINDOW;
        let mut urgent = !first.is_write();
        let mut group = vec![first];
        while group.len() < MAX_GROUP && !urgent {
            let left = window.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(op) => {
                    urgent = !op.is_write();
                    group.push(op);
                }
                Err(_) => break,
            }
        }
        for op in group {
            if op.is_write() {
                writes.push(op);
                continue;
            }
            // A read sees every write queued before it.
            let ok = w.commit(std::mem::take(&mut writes));
            w.answer(op, ok);
        }
        w.commit(std::mem::take(&mut writes));
    }
    let _ = w.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
}

impl Writer {
    /// Commits a group of writes; `true` when it committed (or there was nothing).
    fn commit(&mut self, ops: Vec<Op>) -> bool {
        if ops.is_empty() {
            return !self.failing;
        }
        let started = Instant::now();
        let deleted: HashSet<u64> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Delete(ids) => Some(ids.iter().copied()),
                _ => None,
            })
            .flatten()
            .collect();
        let before = self.bytes;
        let result = self.write(&ops, &deleted);
        let shared = self.shared.upgrade();
        match result {
            Ok(()) => {
                if let Some(s) = &shared {
                    s.commits.fetch_add(1, Ordering::Relaxed);
                    s.writable.store(true, Ordering::Relaxed);
                    s.metrics.store_commit(started.elapsed(), false);
                }
                if self.failing {
                    self.failing = false;
                    info!("State store writable again: new events and rule state are saved");
                }
                tracing::trace!(
                    ops = ops.len(),
                    micros = started.elapsed().as_micros() as u64,
                    "State store commit"
                );
                true
            }
            Err(e) => {
                self.bytes = before;
                if let Some(s) = &shared {
                    s.write_errors.fetch_add(1, Ordering::Relaxed);
                    s.writable.store(false, Ordering::Relaxed);
                    s.metrics.store_commit(started.elapsed(), true);
                }
                if !self.failing {
                    self.failing = true;
                    error!(
                        error = %e,
                        dir = %shared.as_ref().map(|s| s.dir.display().to_string()).unwrap_or_default(),
                        "State store write failed: events and rule state are kept in memory only \
                         until it recovers (a crash or restart now loses them)"
                    );
                }
                false
            }
        }
    }

    fn write(&mut self, ops: &[Op], deleted: &HashSet<u64>) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        let mut bytes = self.bytes;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO outbox
                 (id, rule_id, trigger_ref, scheduled_at, enqueued_at_ms, payload, spilled)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut delete = tx.prepare_cached(
                "DELETE FROM outbox WHERE id = ?1 RETURNING length(payload) + length(trigger_ref)",
            )?;
            let mut save = tx.prepare_cached(
                // An upsert updates the row in place (REPLACE would delete and insert it).
                "INSERT INTO rule_state
                 (rule_id, trigger_ref, spec, started_at, last_tick, execution_count, saved_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (rule_id) DO UPDATE SET trigger_ref = ?2, spec = ?3, started_at = ?4,
                     last_tick = ?5, execution_count = ?6, saved_at_ms = ?7",
            )?;
            let mut forget = tx.prepare_cached("DELETE FROM rule_state WHERE rule_id = ?1")?;
            let mut clean =
                tx.prepare_cached("UPDATE meta SET value = '1' WHERE key = 'clean_stop'")?;
            let now = millis(&Utc::now());
            for op in ops {
                match op {
                    Op::Insert { events, spilled } => {
                        for e in events.iter().filter(|e| !deleted.contains(&e.id)) {
                            let n = insert.execute(params![
                                e.id as i64,
                                e.rule_id,
                                e.trigger_ref,
                                text(&e.scheduled_at),
                                millis(&e.enqueued_at),
                                e.payload,
                                spilled,
                            ])?;
                            if n == 1 {
                                bytes += e.bytes();
                            }
                        }
                    }
                    Op::Delete(ids) => {
                        for id in ids {
                            let freed: Option<i64> =
                                delete.query_row([*id as i64], |r| r.get(0)).optional()?;
                            bytes = bytes.saturating_sub(freed.unwrap_or(0) as u64);
                        }
                    }
                    Op::SaveRules(states) => {
                        for s in states {
                            save.execute(params![
                                s.rule_id,
                                s.trigger_ref,
                                s.spec,
                                text(&s.started_at),
                                s.last_tick.as_ref().map(text),
                                s.execution_count as i64,
                                now,
                            ])?;
                        }
                    }
                    Op::MarkClean => {
                        clean.execute([])?;
                    }
                    Op::DeleteRules(ids) => {
                        for id in ids {
                            forget.execute([id])?;
                        }
                    }
                    Op::RetainRules(keep) => {
                        let keep: HashSet<i64> = keep.iter().copied().collect();
                        let stored: Vec<i64> = tx
                            .prepare_cached("SELECT rule_id FROM rule_state")?
                            .query_map([], |r| r.get(0))?
                            .collect::<rusqlite::Result<_>>()?;
                        for id in stored.into_iter().filter(|id| !keep.contains(id)) {
                            forget.execute([id])?;
                        }
                    }
                    _ => unreachable!("only writes are grouped"),
                }
            }
        }
        tx.commit()?;
        self.bytes = bytes;
        Ok(())
    }

    fn answer(&mut self, op: Op, committed: bool) {
        match op {
            Op::Flush(reply) => {
                let _ = reply.send(Ok(committed));
            }
            Op::Summary(reply) => {
                let _ = reply.send(self.summary().map_err(StoreError::Query));
            }
            Op::Load {
                after,
                all_up_to,
                limit,
                reply,
            } => {
                let _ = reply.send(
                    self.load(after, all_up_to, limit)
                        .map_err(StoreError::Query),
                );
            }
            Op::Trim {
                older_than,
                max_bytes,
                reply,
            } => {
                let result = self.trim(older_than, max_bytes);
                if result.is_err() {
                    self.bytes = self.count_bytes().unwrap_or(self.bytes);
                }
                let _ = reply.send(result.map_err(StoreError::Query));
            }
            Op::LoadRules(reply) => {
                let _ = reply.send(self.load_rules().map_err(StoreError::Query));
            }
            _ => unreachable!("writes are grouped"),
        }
    }

    fn summary(&self) -> rusqlite::Result<JournalSummary> {
        let (events, max_id): (i64, i64) = self.conn.query_row(
            "SELECT count(*), coalesce(max(id), 0) FROM outbox",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let oldest_ms: Option<i64> = self
            .conn
            .query_row(
                "SELECT enqueued_at_ms FROM outbox ORDER BY id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(JournalSummary {
            events: events as u64,
            bytes: self.bytes,
            max_id: max_id as u64,
            oldest_enqueued_at: oldest_ms.and_then(DateTime::<Utc>::from_timestamp_millis),
        })
    }

    fn count_bytes(&self) -> rusqlite::Result<u64> {
        self.conn.query_row(
            "SELECT coalesce(sum(length(payload) + length(trigger_ref)), 0) FROM outbox",
            [],
            |r| r.get::<_, i64>(0).map(|n| n as u64),
        )
    }

    fn load(&self, after: u64, all_up_to: u64, limit: usize) -> rusqlite::Result<Vec<StoredEvent>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, rule_id, trigger_ref, scheduled_at, enqueued_at_ms, payload
             FROM outbox WHERE id > ?1 AND (spilled = 1 OR id <= ?2) ORDER BY id LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![after as i64, all_up_to as i64, limit as i64], |r| {
            let scheduled: String = r.get(3)?;
            Ok(StoredEvent {
                id: r.get::<_, i64>(0)? as u64,
                rule_id: r.get(1)?,
                trigger_ref: r.get(2)?,
                scheduled_at: parse_text(&scheduled).unwrap_or(DateTime::<Utc>::MIN_UTC),
                enqueued_at: from_millis(r.get(4)?),
                payload: r.get(5)?,
            })
        })?;
        rows.collect()
    }

    /// Drops the oldest events (by id, the order they were accepted in) while they are too
    /// old or the journal is too big.
    fn trim(
        &mut self,
        older_than: DateTime<Utc>,
        max_bytes: u64,
    ) -> rusqlite::Result<Vec<DroppedEvent>> {
        let cutoff = millis(&older_than);
        let oldest: Option<i64> = self
            .conn
            .query_row(
                "SELECT enqueued_at_ms FROM outbox ORDER BY id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if oldest.is_none_or(|t| t >= cutoff) && self.bytes <= max_bytes {
            return Ok(Vec::new());
        }
        let tx = self.conn.transaction()?;
        let mut dropped = Vec::new();
        let mut bytes = self.bytes;
        {
            let mut scan = tx.prepare_cached(
                "SELECT id, rule_id, trigger_ref, scheduled_at, enqueued_at_ms,
                        length(payload) + length(trigger_ref), spilled
                 FROM outbox ORDER BY id",
            )?;
            let mut delete = tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
            let mut rows = scan.query([])?;
            while let Some(r) = rows.next()? {
                let enqueued: i64 = r.get(4)?;
                let reason = if enqueued < cutoff {
                    DropReason::TooOld
                } else if bytes > max_bytes {
                    DropReason::OverSize
                } else {
                    break;
                };
                let id = r.get::<_, i64>(0)?;
                let scheduled: String = r.get(3)?;
                delete.execute([id])?;
                bytes = bytes.saturating_sub(r.get::<_, i64>(5)? as u64);
                dropped.push(DroppedEvent {
                    id: id as u64,
                    rule_id: r.get(1)?,
                    trigger_ref: r.get(2)?,
                    scheduled_at: parse_text(&scheduled).unwrap_or(DateTime::<Utc>::MIN_UTC),
                    reason,
                    spilled: r.get::<_, i64>(6)? == 1,
                });
            }
        }
        tx.commit()?;
        self.bytes = bytes;
        Ok(dropped)
    }

    fn load_rules(&self) -> rusqlite::Result<HashMap<i64, RuleState>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT rule_id, trigger_ref, spec, started_at, last_tick, execution_count
             FROM rule_state",
        )?;
        let rows = stmt.query_map([], |r| {
            let started: String = r.get(3)?;
            let last: Option<String> = r.get(4)?;
            Ok((
                started,
                last,
                RuleState {
                    rule_id: r.get(0)?,
                    trigger_ref: r.get(1)?,
                    spec: r.get(2)?,
                    started_at: DateTime::<Utc>::MIN_UTC,
                    last_tick: None,
                    execution_count: r.get::<_, i64>(5)?.max(0) as u64,
                },
            ))
        })?;
        let mut out = HashMap::new();
        for row in rows {
            let (started, last, mut state) = row?;
            // A row whose instants do not read back is ignored: that rule starts afresh.
            let Some(started_at) = parse_text(&started) else {
                continue;
            };
            state.started_at = started_at;
            state.last_tick = last.as_deref().and_then(parse_text);
            out.insert(state.rule_id, state);
        }
        Ok(out)
    }
}
